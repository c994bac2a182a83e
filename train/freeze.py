"""Train part of a model: the rules both training systems use for ``train_only``."""

from __future__ import annotations

from torch import nn

from nvcodec.entropy import split_aux_parameters

__all__ = ["restrict_training", "trains_aux"]


def restrict_training(model: nn.Module, prefixes: str | list[str] | tuple[str, ...] | None, model_name: str) -> None:
    """Freeze every parameter of ``model`` whose name starts with none of ``prefixes`` (e.g. ``"hypernet."``,
    or ``["g_a.", "g_a_bypass."]``); ``None`` or empty trains everything; raises ``ValueError`` when a prefix
    matches nothing."""
    if not prefixes:
        return
    wanted = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
    names = [name for name, _ in model.named_parameters()]
    for prefix in wanted:
        if not any(name.startswith(prefix) for name in names):
            raise ValueError(f"train_only {prefix!r} matches no parameter of {model_name}")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(wanted))


def trains_aux(model: nn.Module) -> bool:
    """Whether the entropy bottlenecks' quantiles train (the aux step is skipped when they are frozen)."""
    return any(p.requires_grad for p in split_aux_parameters(model)[1])
