"""The transformer hypernetwork (encoder side) and the token-to-modulation heads (decoder side).

Data flow for a batch of B tile clips::

    clip (B, T, 3, tile, tile) in [0, 1]
      -> tubelet patches (pt x p x p) -> Linear to D + learned position embedding   (B, N_patch, D)
      ++ learnable weight tokens, one per output group of every decoder layer      (B, N_patch + N_w, D)
         (``spatial_tokens``: the S*S stem2 tokens, one per stem position, each plus a linear map of
          the mean patch embedding over that position's area and all tubelets; zero-initialised)
      -> depth x timm ViT Block -> LayerNorm -> keep the weight tokens               (B, N_w, D)
      -> Linear(D, C_code)                                       = codes, the transmitted weight tokens
    codes (B, N_w, C_code) (quantised on the way)
      -> TokenDecoder: Linear(C_code, H) + per-token embedding -> GELU -> per-layer Linear(H, C_in)
      -> 1 + that = modulations {layer: (B, groups, C_in)}, fused with the base weights by the decoder

Why the spatial seed: stem2's tokens lay out each 16x16-pixel cell of the tile, but learnable tokens
must find their cell's pixels through attention, which meta-training learnt slowly (the stage-2 model
was no better than 16x16 block means on carphone). Seeding them from their own pixels, in an 11-minute
fine-tune from the same weights, gave +0.4 dB on carphone and +0.9 dB on a bbb crop
(train/configs/hypernerv-small-stage3a.yaml).

The split keeps the bitstream small: only C_code numbers per weight token are sent (NeRV-Enc sends
the weight tokens; we add the low-dimensional bottleneck so the entropy model sees few channels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from .decoder import LayerSpec

__all__ = ["HypernetConfig", "HyperNetwork", "TokenDecoder", "num_weight_tokens"]


@dataclass(frozen=True)
class HypernetConfig:
    """Transformer hypernetwork shape."""

    dim: int = 128  # D
    depth: int = 4
    heads: int = 4
    tubelet_frames: int = 2  # pt
    patch_size: int = 8  # p
    clip_len: int = 8  # T
    tile_size: int = 64
    code_channels: int = 16  # C_code: numbers per transmitted weight token
    token_hidden: int = 64  # H of the decoder-side token MLP
    spatial_tokens: bool = True  # seed the stem2 (spatial layout) tokens with the pooled patches under them
    # K > 0: each stem2 (layout) token also gives K feature offsets, added to its stem position's
    # output weighted by u^1 .. u^K, u in [-1, 1] the frame's place in the clip (zero-initialised):
    # the clip's frames then differ by more than the time embedding (the clip-edge dip, issue #15).
    temporal_terms: int = 0
    # F > 0: the encoder also reads F frames before and F after the clip (frames of the neighbouring
    # clips, clamped to the video): their tubelets' patch embeddings, through a zero-initialised linear
    # map per side, are added to the tokens of the clip's first and last tubelets. Encoder side only
    # (the decoder and the bitstream are unchanged): the one-shot codes of the clip-edge frames can
    # then use what comes before and after them (the clip-edge dip, issue #15). A multiple of pt.
    context_frames: int = 0

    @property
    def num_patches(self) -> int:
        return (self.clip_len // self.tubelet_frames) * (self.tile_size // self.patch_size) ** 2


def num_weight_tokens(specs: Sequence[LayerSpec]) -> int:
    """One weight token per output group of every modulated layer."""
    return sum(spec.groups for spec in specs)


class HyperNetwork(nn.Module):
    """Clip tiles -> continuous codes (B, N_w, C_code), in ONE forward pass."""

    def __init__(self, config: HypernetConfig, specs: Sequence[LayerSpec]) -> None:
        super().__init__()
        if config.clip_len % config.tubelet_frames or config.tile_size % config.patch_size:
            raise ValueError(f"tubelet {config.tubelet_frames}x{config.patch_size}^2 does not tile a clip {config.clip_len}x{config.tile_size}^2")
        if config.context_frames < 0 or config.context_frames % config.tubelet_frames:
            raise ValueError(f"context_frames {config.context_frames} must be a non-negative multiple of tubelet_frames {config.tubelet_frames}")
        if config.context_frames and config.clip_len < 2 * config.tubelet_frames:
            raise ValueError(f"context_frames needs at least two tubelets per clip (clip_len {config.clip_len}, tubelet_frames {config.tubelet_frames})")
        self.config = config
        self.num_tokens = num_weight_tokens(specs)
        pt, p = config.tubelet_frames, config.patch_size
        self.patch_embed = nn.Conv3d(3, config.dim, kernel_size=(pt, p, p), stride=(pt, p, p))
        self.pos_embed = nn.Parameter(torch.randn(1, config.num_patches, config.dim) * 0.02)
        self.weight_tokens = nn.Parameter(torch.randn(1, self.num_tokens, config.dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(config.dim, config.heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(config.dim)
        self.to_code = nn.Linear(config.dim, config.code_channels)
        self.spatial_offset, self.spatial_side = _spatial_tokens(specs) if config.spatial_tokens else (0, 0)
        self.spatial_proj = nn.Linear(config.dim, config.dim) if config.spatial_tokens else None
        if self.spatial_proj is not None:
            # Zero start: the seed begins as a no-op, so a model trained without it fine-tunes from the same function.
            nn.init.zeros_(self.spatial_proj.weight)
            nn.init.zeros_(self.spatial_proj.bias)
        self.context_before = self.context_after = None
        if config.context_frames:
            # Zero start: a model trained without context fine-tunes from the same function.
            self.context_before = nn.Linear(config.dim, config.dim)
            self.context_after = nn.Linear(config.dim, config.dim)
            for layer in (self.context_before, self.context_after):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, clip: Tensor, context: Tensor | None = None) -> Tensor:
        """``clip``: (B, T, 3, tile, tile) in [0, 1] -> codes (B, N_w, C_code).

        ``context`` (B, 2F, 3, tile, tile): the F frames before the clip, then the F after it
        (``context_frames`` F > 0 only; default: the clip's first and last frames repeated).
        """
        cfg = self.config
        if tuple(clip.shape[1:]) != (cfg.clip_len, 3, cfg.tile_size, cfg.tile_size):
            raise ValueError(f"clip shape {tuple(clip.shape)}, hypernetwork needs (B, {cfg.clip_len}, 3, {cfg.tile_size}, {cfg.tile_size})")
        patches = self.patch_embed(clip.transpose(1, 2) - 0.5)  # (B, D, T/pt, tile/p, tile/p)
        x = patches.flatten(2).transpose(1, 2) + self.pos_embed  # (B, N_patch, D)
        if cfg.context_frames:
            x = self._add_context(x, clip, context)
        elif context is not None:
            raise ValueError("this hypernetwork reads no context frames (context_frames is 0)")
        tokens = self.weight_tokens.expand(x.shape[0], -1, -1)  # (B, N_w, D)
        if self.spatial_proj is not None:
            tokens = self._seed_spatial_tokens(tokens, patches)
        x = self.blocks(torch.cat([x, tokens], dim=1))  # (B, N_patch + N_w, D)
        x = self.norm(x[:, -self.num_tokens :])  # (B, N_w, D)
        return self.to_code(x)  # (B, N_w, C_code)

    def _add_context(self, x: Tensor, clip: Tensor, context: Tensor | None) -> Tensor:
        """Add the projected context tubelets to the tokens of the clip's first and last tubelets.

        ``x``: (B, N_patch, D) patch tokens, tubelet-major. Each side's tubelets are averaged per
        patch position before their side's linear map.
        """
        cfg = self.config
        side = cfg.context_frames
        if context is None:
            context = torch.cat([clip[:, :1].expand(-1, side, -1, -1, -1), clip[:, -1:].expand(-1, side, -1, -1, -1)], dim=1)
        if tuple(context.shape) != (clip.shape[0], 2 * side, *clip.shape[2:]):
            raise ValueError(f"context shape {tuple(context.shape)}, hypernetwork needs ({clip.shape[0]}, {2 * side}, 3, {cfg.tile_size}, {cfg.tile_size})")
        assert self.context_before is not None and self.context_after is not None
        embedded = self.patch_embed(context.transpose(1, 2) - 0.5)  # (B, D, 2F/pt, h, w)
        half = embedded.shape[2] // 2
        before = self.context_before(embedded[:, :, :half].mean(2).flatten(2).transpose(1, 2))  # (B, h*w, D)
        after = self.context_after(embedded[:, :, half:].mean(2).flatten(2).transpose(1, 2))
        per_tubelet = before.shape[1]
        middle = x[:, per_tubelet:-per_tubelet]
        return torch.cat([x[:, :per_tubelet] + before, middle, x[:, -per_tubelet:] + after], dim=1)

    def _seed_spatial_tokens(self, tokens: Tensor, patches: Tensor) -> Tensor:
        """Add to stem position p's token the projected mean (over time and area) of the patches under p.

        ``tokens``: (B, N_w, D); ``patches``: (B, D, T/pt, h, w). The stem's S x S positions tile the
        clip's area row-major, like the patch grid, so every layout token starts from its own pixels.
        """
        side, first = self.spatial_side, self.spatial_offset
        pooled = torch.nn.functional.adaptive_avg_pool2d(patches.mean(2), side)  # (B, D, S, S)
        local = self.spatial_proj(pooled.flatten(2).transpose(1, 2))  # (B, S*S, D)
        last = first + side * side
        return torch.cat([tokens[:, :first], tokens[:, first:last] + local, tokens[:, last:]], dim=1)


def _spatial_tokens(specs: Sequence[LayerSpec]) -> tuple[int, int]:
    """(index of the first stem2 weight token, stem side S): stem2 has one output group per position."""
    offset, spec = _layout_layer(specs)
    side = math.isqrt(spec.groups)
    if side * side != spec.groups:
        raise ValueError(f"stem2 has {spec.groups} groups, not a square number of positions")
    return offset, side


def _layout_layer(specs: Sequence[LayerSpec]) -> tuple[int, LayerSpec]:
    """(index of the first stem2 weight token, the stem2 spec): the layer whose tokens lay out the tile."""
    offset = 0
    for spec in specs:
        if spec.name == "stem2":
            return offset, spec
        offset += spec.groups
    raise ValueError("the decoder spec has no stem2 layer")


class TokenDecoder(nn.Module):
    """Decoded codes (B, N_w, C_code) -> per-layer modulations {name: (B, groups, C_in)}."""

    def __init__(self, config: HypernetConfig, specs: Sequence[LayerSpec]) -> None:
        super().__init__()
        self.specs = list(specs)
        self.num_tokens = num_weight_tokens(specs)
        self.code_channels = config.code_channels
        self.embed = nn.Linear(config.code_channels, config.token_hidden)
        self.token_bias = nn.Parameter(torch.zeros(1, self.num_tokens, config.token_hidden))
        self.heads = nn.ModuleDict({spec.name: nn.Linear(config.token_hidden, spec.in_features) for spec in self.specs})
        for head in self.heads.values():
            # Modulations start at 1 + O(1) noise: video specifics flow from the first step
            # (std 0.02 kept them near 1 and the hypernetwork was slow to take effect).
            nn.init.normal_(head.weight, std=0.3)
            nn.init.zeros_(head.bias)
        self.temporal_terms = config.temporal_terms
        self.temporal_head = None
        if config.temporal_terms > 0:
            self.layout_offset, layout = _layout_layer(self.specs)
            self.layout_tokens, self.stem_channels = layout.groups, layout.shape[0] // layout.groups
            self.temporal_head = nn.Linear(config.token_hidden, config.temporal_terms * self.stem_channels)
            # Zero start: a model trained without the term fine-tunes from the same function.
            nn.init.zeros_(self.temporal_head.weight)
            nn.init.zeros_(self.temporal_head.bias)

    def _hidden(self, codes: Tensor, tokens: slice = slice(None)) -> Tensor:
        """Codes (B, N_w, C_code) -> the token MLP's hidden layer (B, n, H) of the ``tokens`` only."""
        if codes.dim() != 3 or tuple(codes.shape[1:]) != (self.num_tokens, self.code_channels):
            raise ValueError(f"codes of shape {tuple(codes.shape)}, decoder spec needs (B, {self.num_tokens}, {self.code_channels})")
        return torch.nn.functional.gelu(self.embed(codes[:, tokens]) + self.token_bias[:, tokens])

    def temporal(self, codes: Tensor) -> Tensor | None:
        """Codes (B, N_w, C_code) -> the stem offsets' coefficients (B, K, S*S*C0), or None (K = 0).

        The last axis is indexed position * C0 + channel, like the stem's output.
        """
        if self.temporal_head is None:
            return None
        first = self.layout_offset
        layout = self._hidden(codes, slice(first, first + self.layout_tokens))  # (B, S*S, H)
        coeffs = self.temporal_head(layout).view(codes.shape[0], self.layout_tokens, self.temporal_terms, self.stem_channels)
        return coeffs.transpose(1, 2).flatten(2)  # (B, K, S*S*C0)

    def forward(self, codes: Tensor) -> dict[str, Tensor]:
        hidden = self._hidden(codes)  # (B, N_w, H)
        modulations = {}
        start = 0
        for spec in self.specs:
            part = hidden[:, start : start + spec.groups]  # (B, groups, H)
            modulations[spec.name] = 1.0 + self.heads[spec.name](part)  # (B, groups, C_in)
            start += spec.groups
        return modulations
