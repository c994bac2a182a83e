"""The NeRV decoder: frame index -> frame, with video-agnostic base weights that weight tokens modulate.

Data flow (one tile decoder; ``C0 .. Cn`` = ``channels``, ``S`` = ``stem_hw``)::

    t = i / T  (normalised time in the clip, in [0, 1))
      -> positional encoding  (2L,) = [sin(2^l pi t), cos(2^l pi t)]_l      values in [-1, 1]
      -> stem: Linear(2L, stem_hidden) -> GELU -> Linear(stem_hidden, S*S*C0)   -> (C0, S, S)
      -> n blocks: Conv3x3(Ck, 4*Ck+1) -> PixelShuffle(2) -> GELU              -> (Cn, S*2^n, S*2^n)
      -> head: Conv3x3(Cn, 3) -> sigmoid                                       -> (3, tile, tile)

Every layer (linear layers are 1x1 "convolutions") is listed in a parameter-shape spec
(:class:`LayerSpec`). A *modulation* for a layer is a tensor (B, groups, C_in): one vector over
input channels per group of output channels, broadcast over the kernel window (TransINR-style
weight grouping). Fusion multiplies the base weight by it and
renormalises every output filter to the base filter's L2 norm (:func:`fuse_weights`).

Decoding is batched: ``B`` tile decoders with fused weights run as ONE grouped convolution per layer
(``groups=B``), and all frames are the convolution's batch dimension, so a clip of any number of
tiles and frames decodes in a handful of kernels (:meth:`NervDecoder.decode`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DecoderConfig", "LayerSpec", "positional_encoding", "fuse_weights", "NervDecoder"]


@dataclass(frozen=True)
class DecoderConfig:
    """Shape of the NeRV decoder. ``tile_size = stem_hw * 2 ** (len(channels) - 1)``."""

    pe_levels: int = 8  # L: frequencies 2^0 .. 2^(L-1) times pi
    stem_hidden: int = 128
    stem_hw: int = 4  # S: side of the stem's feature map
    channels: tuple[int, ...] = (64, 48, 32, 24, 16)  # C0 .. Cn, one upsampling block between each
    stem_groups: int = 4  # output groups of the first stem layer
    conv_groups: int = 8  # output groups of each conv block (<= its output channels)

    @property
    def num_blocks(self) -> int:
        return len(self.channels) - 1

    @property
    def tile_size(self) -> int:
        return self.stem_hw * 2**self.num_blocks

    @property
    def pe_dim(self) -> int:
        return 2 * self.pe_levels


@dataclass(frozen=True)
class LayerSpec:
    """One modulated layer: base weight ``shape`` = (C_out, C_in, k, k) split into ``groups`` output groups."""

    name: str
    shape: tuple[int, int, int, int]
    groups: int

    @property
    def in_features(self) -> int:
        return self.shape[1]

    @property
    def modulation_shape(self) -> tuple[int, int]:
        """Per tile: (groups, C_in)."""
        return (self.groups, self.shape[1])


def positional_encoding(t: Tensor, levels: int) -> Tensor:
    """``t``: (F,) normalised times in [0, 1] -> (F, 2 * levels) in [-1, 1]: sin then cos of 2^l pi t."""
    freqs = math.pi * 2.0 ** torch.arange(levels, dtype=t.dtype, device=t.device)  # (L,)
    angles = t[:, None] * freqs[None, :]  # (F, L)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def fuse_weights(base: Tensor, modulation: Tensor, eps: float = 1e-8) -> Tensor:
    """Fuse base weights with per-tile modulations.

    ``base``: (C_out, C_in, k, k); ``modulation``: (B, G, C_in) with G dividing C_out.
    Returns (B, C_out, C_in, k, k): ``base * modulation`` (each group's vector repeated over its
    C_out / G output filters and over the kernel window), every output filter rescaled to the L2
    norm of the corresponding base filter, so a modulation of ones gives back the base weights.
    """
    c_out, c_in = base.shape[:2]
    batch, groups, mod_in = modulation.shape
    if mod_in != c_in or c_out % groups != 0:
        raise ValueError(f"modulation {tuple(modulation.shape)} does not fit base weight {tuple(base.shape)}")
    per_out = modulation.repeat_interleave(c_out // groups, dim=1)  # (B, C_out, C_in)
    fused = base[None] * per_out[..., None, None]  # (B, C_out, C_in, k, k)
    base_norm = base.flatten(1).norm(dim=1)  # (C_out,)
    fused_norm = fused.flatten(2).norm(dim=2)  # (B, C_out)
    scale = base_norm[None] / (fused_norm + eps)  # (B, C_out)
    return fused * scale[..., None, None, None]


class NervDecoder(nn.Module):
    """Video-agnostic NeRV base weights plus the batched, modulated forward pass."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        for spec in self.layer_specs():
            c_out, c_in, k, _ = spec.shape
            weight = torch.empty(spec.shape)
            # He init keeps the signal alive through the GELU stack; PyTorch's default conv init
            # shrinks it layer by layer and measurably slowed meta-training (15 vs 19 dB at step 60).
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
            self.weights[spec.name] = nn.Parameter(weight)
            self.biases[spec.name] = nn.Parameter(torch.zeros(c_out))

    def layer_specs(self) -> list[LayerSpec]:
        """The parameter-shape spec: every modulated layer in data-flow order."""
        cfg = self.config
        c0 = cfg.channels[0]
        specs = [
            LayerSpec("stem1", (cfg.stem_hidden, cfg.pe_dim, 1, 1), cfg.stem_groups),
            # Output index = position * C0 + channel: one group per stem position, so the tokens of
            # this layer lay out the tile's coarse spatial content.
            LayerSpec("stem2", (cfg.stem_hw**2 * c0, cfg.stem_hidden, 1, 1), cfg.stem_hw**2),
        ]
        for index in range(cfg.num_blocks):
            c_in, c_next = cfg.channels[index], cfg.channels[index + 1]
            specs.append(LayerSpec(f"block{index}", (4 * c_next, c_in, 3, 3), min(cfg.conv_groups, 4 * c_next)))
        specs.append(LayerSpec("head", (3, cfg.channels[-1], 3, 3), 1))
        return specs

    def fused_weights(self, modulations: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-layer fused weights (B, C_out, C_in, k, k); checks ``modulations`` against the spec."""
        specs = self.layer_specs()
        if set(modulations) != {s.name for s in specs}:
            raise ValueError(f"modulations for {sorted(modulations)}, decoder spec needs {[s.name for s in specs]}")
        batch = None
        fused = {}
        for spec in specs:
            mod = modulations[spec.name]
            if mod.dim() != 3 or tuple(mod.shape[1:]) != spec.modulation_shape:
                raise ValueError(
                    f"modulation of layer {spec.name!r} has shape {tuple(mod.shape)}, spec needs (B, {spec.modulation_shape[0]}, {spec.modulation_shape[1]})"
                )
            if batch is not None and mod.shape[0] != batch:
                raise ValueError(f"modulation of layer {spec.name!r} has batch {mod.shape[0]}, others {batch}")
            batch = mod.shape[0]
            fused[spec.name] = fuse_weights(self.weights[spec.name], mod)
        return fused

    def decode(self, weights: dict[str, Tensor], frame_times: Tensor, stem_offset: Tensor | None = None) -> Tensor:
        """Run ``B`` tile decoders on ``F`` frame times at once.

        ``weights``: layer name -> (B, C_out, C_in, k, k) (from :meth:`fused_weights`, or free
        per-tile weights for the per-video baseline); ``frame_times``: (F,) in [0, 1];
        ``stem_offset`` (B, F, S*S*C0), optional: added to the stem's output (the time-dependent
        term of a model with ``temporal_terms``, see ``HyperNerv.stem_offset``).
        Returns (B, F, 3, tile, tile) in [0, 1].
        """
        cfg = self.config
        batch = weights["stem1"].shape[0]
        frames = frame_times.shape[0]
        pe = positional_encoding(frame_times, cfg.pe_levels)  # (F, 2L)
        w1 = weights["stem1"].flatten(2)  # (B, hidden, 2L)
        hidden = torch.einsum("fi,boi->bfo", pe, w1) + self.biases["stem1"]  # (B, F, hidden)
        hidden = F.gelu(hidden)
        w2 = weights["stem2"].flatten(2)  # (B, S*S*C0, hidden)
        stem = torch.einsum("bfi,boi->bfo", hidden, w2) + self.biases["stem2"]  # (B, F, S*S*C0)
        if stem_offset is not None:
            stem = stem + stem_offset
        side, c0 = cfg.stem_hw, cfg.channels[0]
        x = stem.view(batch, frames, side, side, c0)  # (B, F, S, S, C0): output index = position * C0 + c
        x = x.permute(1, 0, 4, 2, 3).reshape(frames, batch * c0, side, side)  # (F, B*C0, S, S)
        for index in range(cfg.num_blocks):
            name = f"block{index}"
            x = self._grouped_conv(x, weights[name], self.biases[name], batch)  # (F, B*4*C, H, W)
            # Channels are (B, C, 4) in order, so PixelShuffle keeps tiles apart: (F, B*C, 2H, 2W).
            x = F.gelu(F.pixel_shuffle(x, 2))
        x = self._grouped_conv(x, weights["head"], self.biases["head"], batch)  # (F, B*3, tile, tile)
        x = torch.sigmoid(x)
        tile = x.shape[-1]
        return x.view(frames, batch, 3, tile, tile).transpose(0, 1)  # (B, F, 3, tile, tile)

    @staticmethod
    def _grouped_conv(x: Tensor, weight: Tensor, bias: Tensor, batch: int) -> Tensor:
        """``x``: (F, B*C_in, H, W), ``weight``: (B, C_out, C_in, k, k) -> (F, B*C_out, H, W)."""
        c_out = weight.shape[1]
        kernel = weight.reshape(batch * c_out, *weight.shape[2:])  # (B*C_out, C_in, k, k)
        return F.conv2d(x, kernel, bias.repeat(batch), padding=weight.shape[-1] // 2, groups=batch)

    def forward(self, modulations: dict[str, Tensor], frame_times: Tensor, stem_offset: Tensor | None = None) -> Tensor:
        """Fuse and decode: modulations (B, G, C_in) per layer, ``frame_times`` (F,) -> (B, F, 3, tile, tile)."""
        return self.decode(self.fused_weights(modulations), frame_times, stem_offset)
