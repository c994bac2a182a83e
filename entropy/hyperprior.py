"""Mean-scale hyperprior (Minnen et al. 2018): ``h_a``, ``h_s`` and a factorized prior on ``z``.

::

    y (B, M, h, w) --h_a--> z (B, H, h/4, w/4) --Q/EB--> z_hat --h_s--> (mean_support, scale_support)
                                                                          each (B, M, h, w)

The supports are not yet the Gaussian parameters: the slice coder (``slices.py``) turns them,
together with already decoded slices, into each slice's mean and scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor, nn

from nvcodec.entropy.rans import float32, require_ready

__all__ = ["HyperPrior", "HyperPriorOutput"]


@dataclass(frozen=True)
class HyperPriorOutput:
    """``z_hat``: (B, H, h/4, w/4); ``z_likelihoods`` same shape; supports: (B, M, h, w) each."""

    z_hat: Tensor
    z_likelihoods: Tensor
    mean_support: Tensor
    scale_support: Tensor


class HyperPrior(nn.Module):
    """Hyper analysis/synthesis around an ``EntropyBottleneck``.

    ``latent_channels`` (M) is y's channel count, ``hyper_channels`` (H) z's. Total hyper stride 4,
    so an image padded to a multiple of 64 (16 x 4) always has an integral z.
    """

    def __init__(self, latent_channels: int, hyper_channels: int) -> None:
        super().__init__()
        m, h = latent_channels, hyper_channels
        self.latent_channels = m
        self.hyper_channels = h
        self.h_a = nn.Sequential(
            nn.Conv2d(m, h, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(h, h, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv2d(h, h, 5, stride=2, padding=2),
        )
        self.h_s = nn.Sequential(
            nn.ConvTranspose2d(h, h, 5, stride=2, padding=2, output_padding=1),
            nn.GELU(),
            nn.ConvTranspose2d(h, 2 * h, 5, stride=2, padding=2, output_padding=1),
            nn.GELU(),
            nn.Conv2d(2 * h, 2 * m, 3, padding=1),
        )
        self.entropy_bottleneck = EntropyBottleneck(h)

    def _supports(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        mean_support, scale_support = self.h_s(z_hat).float().chunk(2, dim=1)  # (B, M, h, w) each
        return mean_support, scale_support

    def forward(self, y: Tensor) -> HyperPriorOutput:
        """Training path: additive-noise proxy for z. ``y``: (B, M, h, w).

        Under bf16 autocast (training) ``h_a`` / ``h_s`` run in bfloat16 like the transforms; the
        entropy bottleneck (z's likelihoods) and the supports handed on are float32."""
        z = self.h_a(y)
        with float32(z):
            z_hat, z_likelihoods = self.entropy_bottleneck(z.float())
        mean_support, scale_support = self._supports(z_hat)
        return HyperPriorOutput(z_hat, z_likelihoods, mean_support, scale_support)

    def compress(self, y: Tensor) -> tuple[list[bytes], HyperPriorOutput]:
        """Code z; returns one string per batch item and the supports *as the decoder sees them*."""
        require_ready(self.entropy_bottleneck, "entropy_bottleneck")
        z = self.h_a(y)
        strings = self.entropy_bottleneck.compress(z)
        # z_hat through the decoder's own path, so both sides feed h_s identical tensors
        return strings, self.decompress(strings, tuple(z.shape[-2:]))

    def decompress(self, strings: list[bytes], z_hw: tuple[int, int]) -> HyperPriorOutput:
        require_ready(self.entropy_bottleneck, "entropy_bottleneck")
        z_hat = self.entropy_bottleneck.decompress(strings, z_hw)
        mean_support, scale_support = self._supports(z_hat)
        return HyperPriorOutput(z_hat, torch.ones_like(z_hat), mean_support, scale_support)
