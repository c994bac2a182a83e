"""Read a training checkpoint back into its model (torch only: no Lightning needed to read one).

Convention of every training system in ``nvcodec.train``: hyperparameters hold ``model_name`` and
``model_overrides``, and the ``nn.Module`` is the attribute ``model`` (state keys ``model.*``).
Here, not in ``train``, so that benchmarks (which never import ``train``) can evaluate checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nvcodec import registry
from nvcodec.errors import InputError

__all__ = ["load_checkpoint", "load_reference_checkpoint", "model_state"]


def model_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A training system's state dict -> its ``model``'s state dict (keys ``model.*`` unprefixed)."""
    return {k[len("model.") :]: v for k, v in state_dict.items() if k.startswith("model.")}


def _read(checkpoint: str | Path) -> dict[str, Any]:
    import torch

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"checkpoint not found: {checkpoint}")
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise InputError(f"cannot read checkpoint {checkpoint}: {exc}") from None


def _with_weights(model: Any, state: dict[str, Any]) -> Any:
    """``model`` with the checkpoint's ``model.*`` weights (strict), in eval mode."""
    model.load_state_dict(model_state(state["state_dict"]), strict=True)
    return model.eval()


def load_checkpoint(checkpoint: str | Path, codec: str | None = None) -> Any:
    """Read a Lightning checkpoint of any training system here -> its model, in eval mode.

    The model is rebuilt with the checkpoint's ``model_overrides`` (as the systems do) and gets the
    checkpoint's weights. Raises ``InputError`` for a missing or unreadable file, for the diagnosis
    reference (``load_reference_checkpoint`` reads those), or when ``codec`` is given and the
    checkpoint trained a model of another codec.
    """
    state = _read(checkpoint)
    hparams = state.get("hyper_parameters", {})
    if hparams.get("reference"):
        raise InputError(f"checkpoint {checkpoint} trained the diagnosis reference (reference: true), not a registered model")
    trained_name = hparams.get("model_name")
    if trained_name is None or (codec is not None and registry.get_spec(trained_name).codec != codec):
        raise InputError(f"checkpoint {checkpoint} trained {trained_name!r}, not a {codec or 'registered'} model")
    return _with_weights(registry.create_model(trained_name, **dict(hparams.get("model_overrides") or {})), state)


def load_reference_checkpoint(checkpoint: str | Path) -> Any:
    """Read a checkpoint of ``IntraSystem(reference=True)`` -> its ``GainedMeanScaleHyperprior``, in eval mode."""
    from nvcodec.codec.reference import GainedMeanScaleHyperprior, ReferenceConfig

    state = _read(checkpoint)
    hparams = state.get("hyper_parameters", {})
    if not hparams.get("reference"):
        raise InputError(f"checkpoint {checkpoint} did not train the diagnosis reference (reference: true)")
    return _with_weights(GainedMeanScaleHyperprior(registry.config_from_dict(ReferenceConfig(), hparams.get("model_overrides") or {})), state)
