"""Training entry points: LightningCLI runs (incl. 2-process DDP on CPU), checkpoint export, weights metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CONFIGS = REPO / "train" / "configs"


def _train(kind: str, config: str, tmp_path: Path, media: Path, *extra: str) -> subprocess.CompletedProcess:
    data_args = (
        ["--data.paths", json.dumps([str(media / "camera.png"), str(media / "coffee.png")])]
        if kind == "image"
        else ["--data.videos", json.dumps([str(media / "carphone_pristine.mp4")]), "--data.images", json.dumps([str(media / "camera.png")])]
    )
    command = [
        sys.executable, "-m", "nvcodec.cli", "train", kind, "--config", str(CONFIGS / config),
        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_checkpointing", "true",
        *data_args, *extra,
    ]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_image_training_ddp_two_cpu_processes_then_export(tmp_path: Path, media: Path) -> None:
    result = _train(
        "image", "intra-tiny-test.yaml", tmp_path, media,
        "--trainer.max_steps", "2", "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoints = sorted(tmp_path.rglob("*.ckpt"))
    assert checkpoints, "training wrote no checkpoint"
    import torch

    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=False)
    assert state["global_step"] == 2
    assert state["hyper_parameters"]["model_name"] == "intra-tiny"

    from nvcodec import registry
    from nvcodec.train.export import export_checkpoint

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    path, digest = export_checkpoint(checkpoints[-1], "intra-tiny", weights_dir=weights_dir)
    tables = weights_dir / "intra-tiny.tables.safetensors"  # the rANS tables, built from the file as written
    assert json.loads((weights_dir / "MANIFEST.json").read_text()) == {path.name: digest, tables.name: registry.sha256_file(tables)}
    assert registry.sha256_file(path) == digest
    model, name = registry.load_weights(path)
    assert name == "intra-tiny"
    assert model.config == registry.create_config("intra-tiny")
    trained = {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())
    from safetensors.torch import load_file

    from nvcodec.entropy import entropy_tables

    model.update_entropy_models()
    stored = load_file(str(tables))
    rebuilt = entropy_tables(model)
    assert sorted(stored) == sorted(rebuilt) and all(torch.equal(stored[k], rebuilt[k]) for k in rebuilt)


def test_hypernerv_training_runs_and_resumes(tmp_path: Path, media: Path) -> None:
    first = _train("hypernerv", "hypernerv-tiny-test.yaml", tmp_path, media, "--trainer.max_steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = sorted(tmp_path.rglob("*.ckpt"))[-1]
    resumed = _train(
        "hypernerv", "hypernerv-tiny-test.yaml", tmp_path, media, "--trainer.max_steps", "3", "--ckpt_path", str(checkpoint)
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    import torch

    latest = max(tmp_path.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    assert torch.load(latest, map_location="cpu", weights_only=False)["global_step"] == 3


def test_export_refuses_wrong_codec(tmp_path: Path) -> None:
    import torch

    from nvcodec.errors import InputError
    from nvcodec.train.export import export_checkpoint

    fake = tmp_path / "fake.ckpt"
    torch.save({"hyper_parameters": {"model_name": "hypernerv-tiny"}, "state_dict": {}}, fake)
    with pytest.raises(InputError, match="not a intra model"):
        export_checkpoint(fake, "intra-tiny", weights_dir=tmp_path)


def test_unknown_training_kind_is_bad_input(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "nvcodec.cli", "train", "audio"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "unknown training kind" in result.stderr


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_name_only_real_arguments(config: str) -> None:
    """Every key of a shipped config is a parameter of the system / data module / Trainer it feeds
    (a typo would otherwise only show up when someone starts a long run)."""
    import inspect

    import pytorch_lightning as pl
    import yaml

    from nvcodec.train.cli import TRAINERS, _import

    kind = "image" if config.startswith("intra-") else "hypernerv"
    system, data = (_import(path) for path in TRAINERS[kind])
    values = yaml.safe_load((CONFIGS / config).read_text())
    assert set(values) <= {"seed_everything", "trainer", "model", "data"}, config
    for section, target in (("trainer", pl.Trainer), ("model", system), ("data", data)):
        accepted = set(inspect.signature(target.__init__).parameters) - {"self"}
        unknown = set(values.get(section) or {}) - accepted
        assert not unknown, f"{config}: {section} does not take {sorted(unknown)}"
