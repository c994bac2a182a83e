"""Bridge to compressai's rANS coder: readiness checks and bounded (de)serialisation of strings.

compressai's entropy models only code after ``update()`` has built their quantised CDF tables;
``require_ready`` turns "tables empty" into ``EntropyModelNotReadyError`` instead of a cryptic
failure deep inside the C++ coder. ``pack_strings``/``unpack_strings`` frame byte strings with u32
little-endian lengths; every length is checked against the bytes actually present (and against a
caller-given cap) before anything is sliced, so a damaged payload raises ``BitstreamError``.

``entropy_tables``/``install_entropy_tables`` read and set those tables as plain tensors. ``update()``
derives them from the learned densities in float32, and vectorised kernels differ between CPUs
(AVX-512, AVX2, SSE), so one weights file can give tables that differ by a few CDF steps on another
machine, and a rANS string then decodes to garbage there. Shipped models therefore carry their tables
as data, computed once when the weights are exported (``registry.save_entropy_tables``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import torch
from compressai.entropy_models import EntropyModel, GaussianConditional
from torch import Tensor, nn

from nvcodec.errors import BitstreamError, EntropyModelNotReadyError

__all__ = ["RANS_TABLES", "float32", "require_ready", "entropy_tables", "install_entropy_tables", "split_aux_parameters", "pack_strings", "unpack_strings"]

_U32 = struct.Struct("<I")
RANS_TABLES = ("_quantized_cdf", "_cdf_length", "_offset")


def _table_names(module: EntropyModel) -> tuple[str, ...]:
    # a Gaussian conditional also needs its scale table: build_indexes compares scales against it
    return RANS_TABLES + ("scale_table",) if isinstance(module, GaussianConditional) else RANS_TABLES


def float32(like: Tensor) -> torch.autocast:
    """A block where autocast is off (on ``like``'s device): likelihoods and rates are computed in
    float32 even when training under bf16 autocast. Outside autocast it changes nothing."""
    return torch.autocast(device_type=like.device.type, enabled=False)


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


def entropy_tables(model: nn.Module) -> dict[str, Tensor]:
    """The rANS tables of every compressai entropy model in ``model`` (each ``require_ready``), by
    state-dict name: ``"<module>._quantized_cdf"``, ``._cdf_length``, ``._offset`` and, for a Gaussian
    conditional, ``.scale_table``."""
    tables = {}
    for prefix, module in model.named_modules():
        if isinstance(module, EntropyModel):
            require_ready(module, prefix)
            tables.update({f"{prefix}.{b}": getattr(module, b).detach().clone() for b in _table_names(module)})
    return tables


def install_entropy_tables(model: nn.Module, tables: Mapping[str, Tensor]) -> None:
    """Set ``model``'s rANS tables to ``tables`` (as ``entropy_tables`` returns them), resizing the buffers.

    The names must be exactly those of ``model``'s entropy models: ``ValueError`` otherwise, so a
    tables file can never leave one entropy model with its own, machine-dependent tables.
    """
    modules = {prefix: m for prefix, m in model.named_modules() if isinstance(m, EntropyModel)}
    expected = {f"{prefix}.{b}" for prefix, module in modules.items() for b in _table_names(module)}
    if set(tables) != expected:
        raise ValueError(f"entropy tables for {sorted(set(tables) ^ expected)} do not match the model's entropy models")
    for prefix, module in modules.items():
        for b in _table_names(module):  # as compressai's update() does: the buffer is replaced, shape and all
            setattr(module, b, tables[f"{prefix}.{b}"].to(dtype=getattr(module, b).dtype, copy=True))


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
