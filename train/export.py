"""Checkpoint -> registered safetensors weights (``nvcodec export CKPT -o NAME``).

Convention of every training system here: hyperparameters hold ``model_name`` and
``model_overrides``, and the ``nn.Module`` is the attribute ``model`` (state keys ``model.*``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nvcodec import registry
from nvcodec.errors import InputError

__all__ = ["export_checkpoint", "load_checkpoint", "model_state", "update_manifest"]


def update_manifest(weights_dir: Path, file_name: str, digest: str) -> None:
    """Record ``file_name``'s sha256 in ``weights_dir/MANIFEST.json`` (other entries are kept)."""
    path = weights_dir / "MANIFEST.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest[file_name] = digest
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    tmp.replace(path)


def model_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A training system's state dict -> its ``model``'s state dict (keys ``model.*`` unprefixed)."""
    return {k[len("model.") :]: v for k, v in state_dict.items() if k.startswith("model.")}


def load_checkpoint(checkpoint: str | Path, codec: str | None = None) -> Any:
    """Read a Lightning checkpoint of any training system here -> its model, in eval mode.

    The model is rebuilt with the checkpoint's ``model_overrides`` (as the systems do) and gets the
    checkpoint's weights. Raises ``InputError`` for a missing or unreadable file,
    or when ``codec`` is given and the checkpoint trained a model of another codec.
    """
    import torch

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"checkpoint not found: {checkpoint}")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise InputError(f"cannot read checkpoint {checkpoint}: {exc}") from None
    hparams = state.get("hyper_parameters", {})
    trained_name = hparams.get("model_name")
    if trained_name is None or (codec is not None and registry.get_spec(trained_name).codec != codec):
        raise InputError(f"checkpoint {checkpoint} trained {trained_name!r}, not a {codec or 'registered'} model")
    model = registry.create_model(trained_name, **dict(hparams.get("model_overrides") or {}))
    model.load_state_dict(model_state(state["state_dict"]), strict=True)
    model.eval()
    return model


def export_checkpoint(
    checkpoint: str | Path, name: str, weights_dir: str | Path | None = None, force: bool = False
) -> tuple[Path, str]:
    """Load a Lightning checkpoint, rebuild its model, write ``NAME.safetensors``; return (path, sha256).

    Floating tensors are stored in the registered model's ``storage_dtype`` (``save_weights``).
    """
    spec = registry.get_spec(name)
    model = load_checkpoint(checkpoint, codec=spec.codec)
    weights_dir = Path(weights_dir) if weights_dir else registry.WEIGHTS_DIR
    path = weights_dir / (spec.weights_file or f"{name}.safetensors")
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to replace the shipped weights")
    digest = registry.save_weights(model, name, path)
    update_manifest(weights_dir, path.name, digest)
    return path, digest
