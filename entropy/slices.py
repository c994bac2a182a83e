"""Channel-wise autoregressive slice coding with latent residual prediction (ChARM, Minnen & Singh 2020).

y (B, M, h, w) is split along channels into uneven slices (ELIC style), e.g. ``(16, 16, 32, 64)``;
when the transform orders y's channels low frequency first, the low-frequency slices are coded
first and condition all the others. For slice ``i``::

    support_i = [hyper support (B, M, h, w) | y_hat slices 0..i-1]
    mean_i  = mean_net_i([mean_support  | y_hat_<i])          (B, s_i, h, w)
    scale_i = scale_net_i([scale_support | y_hat_<i])
    y_hat_i = round(y_i - Q(mean_i)) + Q(mean_i)              symbols coded with N(Q(mean_i), scale_i)
    y_hat_i += Q(0.5 * tanh(lrp_net_i([mean_support | y_hat_<i | y_hat_i])))   (LRP)

Bit-exactness: the parameters that cross the encoder/decoder boundary are deterministically
quantised: means and LRP residuals to the 1/64 grid (``quantize_param``), scales to indexes of
compressai's scale table. The encoder runs exactly the decoder's code path (``_code``) to produce
y_hat, so the encoder's reconstruction is the decoder's, up to platform float differences that
would have to cross a 1/64 rounding or scale-table boundary to matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import GaussianConditional
from torch import Tensor, nn

from nvcodec.entropy.rans import float32, require_ready

__all__ = ["SliceCoder", "SliceOutput", "quantize_param", "PARAM_GRID", "scale_table"]

PARAM_GRID = 64  # means / LRP residuals are rounded to multiples of 1 / PARAM_GRID


def scale_table(minimum: float = 0.11, maximum: float = 256.0, levels: int = 64) -> Tensor:
    """Log-spaced Gaussian scale table (compressai's default), (levels,)."""
    return torch.exp(torch.linspace(torch.log(torch.tensor(minimum)), torch.log(torch.tensor(maximum)), levels))


def quantize_param(x: Tensor, grid: int = PARAM_GRID) -> Tensor:
    """Round ``x`` to multiples of ``1 / grid``: a deterministic entropy-parameter grid."""
    return torch.round(x * grid) / grid


def _ste_round(x: Tensor) -> Tensor:
    return (torch.round(x) - x).detach() + x


def _param_net(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(hidden, hidden, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(hidden, out_channels, 3, padding=1),
    )


@dataclass(frozen=True)
class SliceOutput:
    """``y_hat``: (B, M, h, w); ``likelihoods``: (B, M, h, w), slice likelihoods concatenated."""

    y_hat: Tensor
    likelihoods: Tensor


class SliceCoder(nn.Module):
    """Codes y slice by slice; each slice's Gaussian is conditioned on the hyperprior + earlier slices.

    Args:
        slice_sizes: channels per slice, in coding order; they sum to M.
        hidden: width of the per-slice mean/scale/LRP networks.
    """

    def __init__(self, slice_sizes: Sequence[int], hidden: int) -> None:
        super().__init__()
        self.slice_sizes = tuple(int(s) for s in slice_sizes)
        if not self.slice_sizes or min(self.slice_sizes) <= 0:
            raise ValueError(f"slice sizes must be positive, got {self.slice_sizes}")
        m = sum(self.slice_sizes)
        self.latent_channels = m
        starts = [sum(self.slice_sizes[:i]) for i in range(len(self.slice_sizes))]
        self.mean_nets = nn.ModuleList(_param_net(m + c0, hidden, s) for c0, s in zip(starts, self.slice_sizes))
        self.scale_nets = nn.ModuleList(_param_net(m + c0, hidden, s) for c0, s in zip(starts, self.slice_sizes))
        self.lrp_nets = nn.ModuleList(_param_net(m + c0 + s, hidden, s) for c0, s in zip(starts, self.slice_sizes))
        self.gaussian_conditional = GaussianConditional(None)

    def update(self, force: bool = True) -> None:
        """Build the quantised CDF tables of the Gaussian conditional."""
        self.gaussian_conditional.update_scale_table(scale_table(), force=force)

    def forward(self, y: Tensor, mean_support: Tensor, scale_support: Tensor, noisy_y_hat: bool = False) -> SliceOutput:
        """Training/estimation path. y, supports: (B, M, h, w).

        Likelihoods use compressai's additive-noise proxy (in training mode). Under bf16 autocast
        (training) the mean / scale / LRP networks run in bfloat16 and their outputs are cast to
        float32; the Gaussian likelihoods are float32. The y_hat fed onward (to
        later slices, LRP and the synthesis) is ``round(y - mean) + mean`` with a straight-through
        gradient, as at test time, or with ``noisy_y_hat`` ``y + U(-0.5, 0.5)``: noise keeps the
        information of a still-small y visible to the decoder and learns much faster early on.
        """
        y_slices = y.split(self.slice_sizes, dim=1)
        decoded: list[Tensor] = []
        likelihoods: list[Tensor] = []
        for index, y_slice in enumerate(y_slices):
            mean, scale = self._gaussian(index, mean_support, scale_support, decoded)
            with float32(y_slice):
                _, slice_likelihoods = self.gaussian_conditional(y_slice, scale, means=mean)
            likelihoods.append(slice_likelihoods)
            if noisy_y_hat:
                y_hat_slice = y_slice + torch.empty_like(y_slice).uniform_(-0.5, 0.5)
            else:
                y_hat_slice = _ste_round(y_slice - mean) + mean
            decoded.append(y_hat_slice + self._lrp(index, mean_support, decoded, y_hat_slice))
        return SliceOutput(torch.cat(decoded, dim=1), torch.cat(likelihoods, dim=1))

    def _gaussian(
        self, index: int, mean_support: Tensor, scale_support: Tensor, decoded: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        mean = self.mean_nets[index](torch.cat([mean_support, *decoded], dim=1)).float()
        scale = self.scale_nets[index](torch.cat([scale_support, *decoded], dim=1)).float()
        return mean, scale

    def _lrp(self, index: int, mean_support: Tensor, decoded: list[Tensor], y_hat_slice: Tensor) -> Tensor:
        return 0.5 * torch.tanh(self.lrp_nets[index](torch.cat([mean_support, *decoded, y_hat_slice], dim=1)).float())

    def _code(
        self,
        mean_support: Tensor,
        scale_support: Tensor,
        y: Tensor | None,
        decoder: RansDecoder | None,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """The one coding path, shared by encoder (``y`` given) and decoder (``decoder`` given).

        Supports: (1, M, h, w). Returns y_hat (1, M, h, w), per-slice int32 symbols and indexes.
        """
        gc = self.gaussian_conditional
        cdf = gc.quantized_cdf.tolist()
        cdf_lengths = gc.cdf_length.reshape(-1).int().tolist()
        offsets = gc.offset.reshape(-1).int().tolist()
        decoded: list[Tensor] = []
        symbols_out: list[Tensor] = []
        indexes_out: list[Tensor] = []
        y_slices = y.split(self.slice_sizes, dim=1) if y is not None else [None] * len(self.slice_sizes)
        for index, y_slice in enumerate(y_slices):
            mean, scale = self._gaussian(index, mean_support, scale_support, decoded)
            mean = quantize_param(mean)
            indexes = gc.build_indexes(scale).int()
            if y_slice is not None:
                symbols = torch.round(y_slice - mean).int()
            else:
                assert decoder is not None
                values = decoder.decode_stream(indexes.reshape(-1).tolist(), cdf, cdf_lengths, offsets)
                symbols = torch.tensor(values, dtype=torch.int32).reshape(indexes.shape)
            y_hat_slice = symbols.to(mean.dtype) + mean
            y_hat_slice = y_hat_slice + quantize_param(self._lrp(index, mean_support, decoded, y_hat_slice))
            decoded.append(y_hat_slice)
            symbols_out.append(symbols)
            indexes_out.append(indexes)
        return torch.cat(decoded, dim=1), symbols_out, indexes_out

    def compress(self, y: Tensor, mean_support: Tensor, scale_support: Tensor) -> tuple[list[bytes], Tensor]:
        """Code y (B, M, h, w): one rANS string per batch item, and y_hat exactly as decoded."""
        require_ready(self.gaussian_conditional, "gaussian_conditional")
        gc = self.gaussian_conditional
        cdf = gc.quantized_cdf.tolist()
        cdf_lengths = gc.cdf_length.reshape(-1).int().tolist()
        offsets = gc.offset.reshape(-1).int().tolist()
        strings: list[bytes] = []
        y_hats: list[Tensor] = []
        for b in range(y.shape[0]):
            y_hat, symbols, indexes = self._code(mean_support[b : b + 1], scale_support[b : b + 1], y[b : b + 1], None)
            encoder = BufferedRansEncoder()
            for slice_symbols, slice_indexes in zip(symbols, indexes):
                encoder.encode_with_indexes(
                    slice_symbols.reshape(-1).tolist(), slice_indexes.reshape(-1).tolist(), cdf, cdf_lengths, offsets
                )
            strings.append(encoder.flush())
            y_hats.append(y_hat)
        return strings, torch.cat(y_hats, dim=0)

    def decompress(self, strings: Sequence[bytes], mean_support: Tensor, scale_support: Tensor) -> Tensor:
        """Decode one string per batch item into y_hat (B, M, h, w); supports (B, M, h, w)."""
        require_ready(self.gaussian_conditional, "gaussian_conditional")
        if len(strings) != mean_support.shape[0]:
            raise ValueError(f"{len(strings)} strings for a batch of {mean_support.shape[0]}")
        y_hats: list[Tensor] = []
        for b, string in enumerate(strings):
            decoder = RansDecoder()
            decoder.set_stream(bytes(string))
            y_hat, _, _ = self._code(mean_support[b : b + 1], scale_support[b : b + 1], None, decoder)
            y_hats.append(y_hat)
        return torch.cat(y_hats, dim=0)
