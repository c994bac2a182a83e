"""Checkpoint -> registered safetensors weights (``nvcodec export CKPT -o NAME``).

Checkpoints are read by ``nvcodec.checkpoints`` (re-exported here), so that benchmarks can read
them without importing ``train``.
"""

from __future__ import annotations

import json
from pathlib import Path

from nvcodec import registry
from nvcodec.checkpoints import load_checkpoint, model_state
from nvcodec.errors import InputError

__all__ = ["export_checkpoint", "load_checkpoint", "model_state", "update_manifest", "write_entropy_tables"]


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
    """Load a Lightning checkpoint, rebuild its model, write ``NAME.safetensors``; return (path, sha256).

    Floating tensors are stored in the registered model's ``storage_dtype`` (``save_weights``). The
    rANS tables are then built from the file as written (its rounded parameters) and stored beside
    it (``write_entropy_tables``).
    """
    spec = registry.get_spec(name)
    model = load_checkpoint(checkpoint, codec=spec.codec)
    weights_dir = Path(weights_dir) if weights_dir else registry.WEIGHTS_DIR
    path = weights_dir / (spec.weights_file or f"{name}.safetensors")
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to replace the shipped weights")
    digest = registry.save_weights(model, name, path)
    update_manifest(weights_dir, path.name, digest)
    write_entropy_tables(path, name)
    return path, digest


def write_entropy_tables(weights: str | Path, name: str) -> Path:
    """Build the rANS tables of weights file ``weights`` on this machine and write them beside it as
    ``NAME.tables.safetensors`` (listed in the manifest); decoders everywhere then use these tables.

    Run once per weights file, on the machine whose tables its streams were coded with.
    """
    weights = Path(weights)
    model, _ = registry.load_weights(weights, name)
    model.update_entropy_models()
    path = registry.tables_path_for(weights)
    update_manifest(weights.parent, path.name, registry.save_entropy_tables(model, path))
    return path
