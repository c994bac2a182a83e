"""Checkpoint -> registered safetensors weights (``nvcodec export CKPT -o NAME``).

Convention of every training system here: hyperparameters hold ``model_name`` and
``model_overrides``, and the ``nn.Module`` is the attribute ``model`` (state keys ``model.*``).
"""

from __future__ import annotations

import json
from pathlib import Path

from nvcodec import registry
from nvcodec.errors import InputError

__all__ = ["export_checkpoint", "update_manifest"]


def update_manifest(weights_dir: Path, file_name: str, digest: str) -> None:
    """Record ``file_name``'s sha256 in ``weights_dir/MANIFEST.json`` (other entries are kept)."""
    path = weights_dir / "MANIFEST.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest[file_name] = digest
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    tmp.replace(path)


def export_checkpoint(
    checkpoint: str | Path, name: str, weights_dir: str | Path | None = None, force: bool = False
) -> tuple[Path, str]:
    """Load a Lightning checkpoint, rebuild its model, write ``NAME.safetensors``; return (path, sha256)."""
    import torch

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"checkpoint not found: {checkpoint}")
    spec = registry.get_spec(name)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise InputError(f"cannot read checkpoint {checkpoint}: {exc}") from None
    hparams = state.get("hyper_parameters", {})
    trained_name = hparams.get("model_name")
    if trained_name is None or registry.get_spec(trained_name).codec != spec.codec:
        raise InputError(f"checkpoint {checkpoint} trained {trained_name!r}, not a {spec.codec} model like {name!r}")
    overrides = dict(hparams.get("model_overrides") or {})
    model = registry.create_model(trained_name, **overrides)
    model_state = {k[len("model.") :]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(model_state, strict=True)
    model.eval()
    weights_dir = Path(weights_dir) if weights_dir else registry.WEIGHTS_DIR
    path = weights_dir / (spec.weights_file or f"{name}.safetensors")
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to replace the shipped weights")
    digest = registry.save_weights(model, name, path)
    update_manifest(weights_dir, path.name, digest)
    return path, digest
