"""The one error hierarchy of nvcodec: every failure caused by the input is an ``NvcodecError``."""

from __future__ import annotations

__all__ = [
    "NvcodecError",
    "BitstreamError",
    "UnsupportedVersionError",
    "UnknownModelError",
    "ModelConfigError",
    "InputError",
    "EntropyModelNotReadyError",
]


class NvcodecError(Exception):
    """Base class: the input (file, stream, argument) is at fault, not nvcodec. The CLI exits 2."""


class BitstreamError(NvcodecError):
    """A ``.nvc`` stream is damaged, truncated or inconsistent."""


class UnsupportedVersionError(NvcodecError):
    """A ``.nvc`` stream uses a format version or flag this build does not know."""


class UnknownModelError(NvcodecError):
    """A model name, codec id or weights fingerprint is not registered or does not match."""


class ModelConfigError(UnknownModelError):
    """A model config does not match its registered name (weights metadata) or names a field it lacks."""


class InputError(NvcodecError):
    """A source file or argument is unusable (missing, not a video, bad size, bad range)."""


class EntropyModelNotReadyError(NvcodecError):
    """Entropy coding was asked for before ``update()`` built the CDF tables."""
