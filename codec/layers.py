"""Building blocks of the intra transforms: Hadamard-augmented window attention, frequency disentangle.

Hadamard-augmented attention score, for query token i and key token j of one window (per head)::

    s_ij = q_i . k_j  +  p_ek . (q_i * k_i)  +  p_eq . (q_j * k_j)  +  b[i - j]        softmax over j

``*`` is the element-wise (Hadamard) product, ``p_ek``/``p_eq`` learned per-head vectors and ``b`` a
learned relative-position bias (Swin). The ``p_ek`` term depends on i only, i.e. it is constant along
the softmax axis j and cancels: it cannot change the attention. We therefore keep only the terms
that have an effect (q.k, the key-side Hadamard term ``p_eq . (q_j * k_j)`` and ``b[i - j]``);
``hadamard_scores`` still accepts ``p_ek`` so that a test can show the cancellation. No shifted
windows: the blocks sit at stride 8 and 16 only, where a window already covers 64-128 pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["hadamard_scores", "WindowAttention", "AttentionBlock", "FrequencyDisentangle", "lowpass"]


def hadamard_scores(
    q: Tensor,
    k: Tensor,
    p_eq: Tensor | None = None,
    bias: Tensor | None = None,
    p_ek: Tensor | None = None,
) -> Tensor:
    """Attention logits of Hadamard-augmented attention.

    Args:
        q, k: (B, heads, n, d) queries and keys (q already scaled by d**-0.5).
        p_eq: (heads, d) key-side Hadamard weights: adds ``p_eq . (q_j * k_j)`` to column j.
        bias: (heads, n, n) relative-position bias ``b[i - j]``.
        p_ek: (heads, d) query-side Hadamard weights: adds ``p_ek . (q_i * k_i)`` to row i. It is a
            per-row constant, so ``softmax(scores, -1)`` does not depend on it (kept for tests only).
    Returns:
        (B, heads, n, n) logits; softmax is taken over the last axis (keys j).
    """
    scores = q @ k.transpose(-2, -1)  # (B, heads, n, n)
    if p_eq is not None or p_ek is not None:
        self_product = q * k  # (B, heads, n, d): token t's own q_t * k_t
        if p_eq is not None:
            scores = scores + torch.einsum("bhnd,hd->bhn", self_product, p_eq)[:, :, None, :]
        if p_ek is not None:
            scores = scores + torch.einsum("bhnd,hd->bhn", self_product, p_ek)[:, :, :, None]
    if bias is not None:
        scores = scores + bias[None]
    return scores


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``window x window`` windows of (B, C, H, W).

    H and W that are not multiples of ``window`` are zero-padded at the bottom/right (then cropped).
    """

    def __init__(self, channels: int, heads: int, window: int, hadamard: bool = True) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels {channels} not divisible by heads {heads}")
        self.channels, self.heads, self.window = channels, heads, window
        self.head_dim = channels // heads
        self.hadamard = hadamard
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.p_eq = nn.Parameter(torch.zeros(heads, self.head_dim)) if hadamard else None
        self.bias_table = nn.Parameter(torch.zeros(heads, (2 * window - 1) ** 2))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        relative = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, n, n), in [0, 2w-2]
        self.register_buffer("bias_index", relative[0] * (2 * window - 1) + relative[1], persistent=False)

    def relative_bias(self) -> Tensor:
        """(heads, n, n) bias b[i - j] gathered from the table, n = window**2."""
        n = self.window**2
        return self.bias_table[:, self.bias_index.reshape(-1)].reshape(self.heads, n, n)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        win = self.window
        pad_h, pad_w = (-h) % win, (-w) % win
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        # (B, C, Hp, Wp) -> (B * windows, n, C), n = win * win
        tokens = x.reshape(b, c, hp // win, win, wp // win, win).permute(0, 2, 4, 3, 5, 1).reshape(-1, win * win, c)
        qkv = self.qkv(tokens).reshape(tokens.shape[0], win * win, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B * windows, heads, n, d)
        q = q * self.head_dim**-0.5
        scores = hadamard_scores(q, k, p_eq=self.p_eq, bias=self.relative_bias())
        out = scores.softmax(dim=-1) @ v  # (B * windows, heads, n, d)
        out = self.proj(out.transpose(1, 2).reshape(tokens.shape[0], win * win, c))
        # (B * windows, n, C) -> (B, C, Hp, Wp)
        out = out.reshape(b, hp // win, wp // win, win, win, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, hp, wp)
        return out[:, :, :h, :w]


class AttentionBlock(nn.Module):
    """Pre-norm transformer block on feature maps: x + attn(LN(x)); x + MLP(LN(x)). (B, C, H, W)."""

    def __init__(self, channels: int, heads: int, window: int, hadamard: bool = True, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.attn = WindowAttention(channels, heads, window, hadamard)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(
            nn.Linear(channels, mlp_ratio * channels), nn.GELU(), nn.Linear(mlp_ratio * channels, channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        channels_last = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        return (channels_last + self.mlp(self.norm2(channels_last))).permute(0, 3, 1, 2)


class ResidualUnit(nn.Module):
    """x + conv3(LeakyReLU(conv3(x))), (B, C, H, W) -> same. The second conv starts at zero, so a new unit
    is the identity and can be added to trained weights without changing their function."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(channels, channels, 3, padding=1)
        )
        nn.init.zeros_(self.body[2].weight)
        nn.init.zeros_(self.body[2].bias)
        self.active = True  # training only: a unit still at zero may be skipped (IntraSystem's grow_units_at)

    @property
    def is_zero(self) -> bool:
        """True while the unit is the identity (its last conv still all zero)."""
        return not any(bool(t.any()) for t in (self.body[2].weight, self.body[2].bias))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) if self.active else x


def lowpass(x: Tensor, factor: int = 2) -> Tensor:
    """Average-pool by ``factor`` then bilinear upsample back: (B, C, H, W) -> (B, C, H, W)."""
    pooled = F.avg_pool2d(x, factor, ceil_mode=True, count_include_pad=False)
    return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)


class FrequencyDisentangle(nn.Module):
    """Split features into a low-frequency and a high-frequency latent, concatenated ``[low | high]``.

    ::

        low  = up2(conv(GELU(conv(avgpool2(x)))))            (B, low_channels, H, W)   band-limited
        high = conv(GELU(conv(x - lowpass(x))))              (B, high_channels, H, W)  local residual

    The low path works at half resolution and is bilinearly upsampled, so it cannot carry content
    above its Nyquist; the high path only sees the residual that the low-pass removed.
    """

    def __init__(self, in_channels: int, low_channels: int, high_channels: int, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.low = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.GELU(), nn.Conv2d(in_channels, low_channels, 3, padding=1)
        )
        self.high = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.GELU(), nn.Conv2d(in_channels, high_channels, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, low_channels + high_channels, H, W)."""
        pooled = F.avg_pool2d(x, self.factor, ceil_mode=True, count_include_pad=False)
        low = F.interpolate(self.low(pooled), size=x.shape[-2:], mode="bilinear", align_corners=False)
        high = self.high(x - lowpass(x, self.factor))
        return torch.cat([low, high], dim=1)
