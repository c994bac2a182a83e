"""Bridge to compressai's rANS coder: readiness checks and bounded (de)serialisation of strings.

compressai's entropy models only code after ``update()`` has built their quantised CDF tables;
``require_ready`` turns "tables empty" into ``EntropyModelNotReadyError`` instead of a cryptic
failure deep inside the C++ coder. ``pack_strings``/``unpack_strings`` frame byte strings with u32
little-endian lengths; every length is checked against the bytes actually present (and against a
caller-given cap) before anything is sliced, so a damaged payload raises ``BitstreamError``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from torch import nn

from nvcodec.errors import BitstreamError, EntropyModelNotReadyError

__all__ = ["require_ready", "split_aux_parameters", "pack_strings", "unpack_strings"]

_U32 = struct.Struct("<I")


def require_ready(model: nn.Module, name: str) -> None:
    """Raise ``EntropyModelNotReadyError`` unless compressai entropy model ``model`` was updated.

    Checks that the quantised CDF table, the CDF lengths and the offsets are all non-empty.
    """
    for buffer_name in ("_quantized_cdf", "_cdf_length", "_offset"):
        buffer = getattr(model, buffer_name, None)
        if buffer is None or buffer.numel() == 0:
            raise EntropyModelNotReadyError(
                f"entropy model {name!r} has an empty {buffer_name} table: call update_entropy_models() "
                "(compressai update()) before compress/decompress"
            )


def split_aux_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(net, aux)`` parameters of ``model``: ``aux`` are the compressai ``EntropyBottleneck``
    quantiles (parameters named ``*.quantiles``), trained by their own optimiser on ``aux_loss``."""
    net, aux = [], []
    for name, parameter in model.named_parameters():
        (aux if name.endswith(".quantiles") else net).append(parameter)
    return net, aux


def pack_strings(strings: Sequence[bytes]) -> bytes:
    """Concatenate byte strings, each prefixed with its u32 little-endian length."""
    parts: list[bytes] = []
    for string in strings:
        if len(string) >= 2**32:
            raise ValueError(f"string of {len(string)} bytes does not fit a u32 length")
        parts.append(_U32.pack(len(string)))
        parts.append(bytes(string))
    return b"".join(parts)


def unpack_strings(data: bytes, count: int, offset: int = 0) -> tuple[list[bytes], int]:
    """Read ``count`` length-prefixed strings from ``data[offset:]``.

    Returns ``(strings, end_offset)``. Raises ``BitstreamError`` if a length runs past the data.
    """
    strings: list[bytes] = []
    for index in range(count):
        if offset + _U32.size > len(data):
            raise BitstreamError(f"string {index}: length field at byte {offset} runs past {len(data)} bytes")
        (length,) = _U32.unpack_from(data, offset)
        offset += _U32.size
        if length > len(data) - offset:
            raise BitstreamError(
                f"string {index}: length {length} at byte {offset} exceeds the {len(data) - offset} bytes left"
            )
        strings.append(bytes(data[offset : offset + length]))
        offset += length
    return strings, offset
