"""nvcodec: neural video codec and representation service (hypernerv video, intra image codec)."""

from __future__ import annotations

from nvcodec.errors import (
    BitstreamError,
    EntropyModelNotReadyError,
    InputError,
    NvcodecError,
    UnknownModelError,
    UnsupportedVersionError,
)

__version__ = "0.1.0"

__all__ = [
    "encode",
    "decode",
    "info",
    "encode_file",
    "decode_file",
    "StreamInfo",
    "NvcodecError",
    "BitstreamError",
    "UnsupportedVersionError",
    "UnknownModelError",
    "InputError",
    "EntropyModelNotReadyError",
]

_API = {"encode", "decode", "info", "encode_file", "decode_file", "StreamInfo", "EncodeReport", "DecodeReport"}


def __getattr__(name: str):
    # The API pulls in numpy (and torch on first use); keep `import nvcodec` light for the CLI.
    if name in _API:
        from nvcodec import api

        return getattr(api, name)
    raise AttributeError(f"module 'nvcodec' has no attribute {name!r}")
