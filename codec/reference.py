"""A plain compressai ``MeanScaleHyperprior`` with the same gain-unit variable rate as ``IntraCodec``.

Diagnosis reference only (issue #14): it answers "do intra's additions (attention, frequency
disentangle, slices, LRP) cost quality at equal training time?". Nothing ships with it and no
stream format carries it; ``compress`` returns the two rANS strings, and ``num_bytes`` counts them
plus the framing an intra chunk adds (``CHUNK_FRAMING``), so that its rate is comparable with intra's
chunks (``bench/intra_eval.py --reference-checkpoint`` counts a whole one-frame file).

    x --g_a--> y * gain[q] --h_a--> z --EB--> z_hat --h_s--> (scale, mean)
      y_hat = round(y - mean) + mean (straight-through) --* inv_gain[q]--> g_s --> x_hat
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compressai.models import MeanScaleHyperprior
from torch import Tensor, nn

from nvcodec.codec.model import DEFAULT_LAMBDAS, RDOutput
from nvcodec.codec.video import CHUNK_FRAMING
from nvcodec.entropy.slices import scale_table

__all__ = ["ReferenceConfig", "GainedMeanScaleHyperprior", "ReferenceCompressed"]


@dataclass(frozen=True)
class ReferenceConfig:
    channels: int = 64  # N
    latent_channels: int = 128  # M
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS

    @property
    def quality_levels(self) -> int:
        return len(self.lambdas)

    @property
    def stride(self) -> int:
        return 16  # y's stride, as intra's

    @property
    def pad_multiple(self) -> int:
        return 64


@dataclass(frozen=True)
class ReferenceCompressed:
    y_string: bytes
    z_string: bytes
    z_hw: tuple[int, int]
    quality: int

    @property
    def num_bytes(self) -> int:
        return len(self.y_string) + len(self.z_string) + CHUNK_FRAMING


class GainedMeanScaleHyperprior(nn.Module):
    """compressai's MeanScaleHyperprior (Minnen et al. 2018) + per-level gain / inverse-gain vectors."""

    def __init__(self, config: ReferenceConfig) -> None:
        super().__init__()
        self.config = config
        self.net = MeanScaleHyperprior(config.channels, config.latent_channels)
        lambdas = torch.tensor(config.lambdas, dtype=torch.float32)
        log_gain = 0.5 * torch.log(lambdas / lambdas.max())
        m = config.latent_channels
        self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, m).contiguous())  # (L, M)
        self.log_inv_gain = nn.Parameter(-log_gain[:, None].repeat(1, m).contiguous())

    def _gain(self, quality: int) -> Tensor:
        return self.log_gain[quality].exp()[None, :, None, None]

    def _inv_gain(self, quality: int) -> Tensor:
        return self.log_inv_gain[quality].exp()[None, :, None, None]

    def forward(self, x: Tensor, quality: int | None = None, noisy_y_hat: bool = False) -> RDOutput:
        """x (B, 3, H, W) in [0, 1], H and W multiples of 64."""
        q = self.config.quality_levels - 1 if quality is None else int(quality)
        net = self.net
        y = net.g_a(x) * self._gain(q)
        z_hat, z_likelihoods = net.entropy_bottleneck(net.h_a(y))
        scales, means = net.h_s(z_hat).chunk(2, 1)
        _, y_likelihoods = net.gaussian_conditional(y, scales, means=means)
        if noisy_y_hat:
            y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_hat = (torch.round(y - means) - (y - means)).detach() + y
        x_hat = net.g_s(y_hat * self._inv_gain(q))
        return RDOutput(x_hat, y_likelihoods, z_likelihoods)

    def aux_loss(self) -> Tensor:
        return self.net.entropy_bottleneck.loss()

    def update_entropy_models(self) -> None:
        self.net.entropy_bottleneck.update(force=True)
        self.net.gaussian_conditional.update_scale_table(scale_table(), force=True)

    @torch.inference_mode()
    def compress(self, x: Tensor, quality: int) -> ReferenceCompressed:
        """x (1, 3, H, W), H and W multiples of 64."""
        net = self.net
        y = net.g_a(x) * self._gain(quality)
        z = net.h_a(y)
        z_strings = net.entropy_bottleneck.compress(z)
        z_hat = net.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales, means = net.h_s(z_hat).chunk(2, 1)
        indexes = net.gaussian_conditional.build_indexes(scales)
        y_strings = net.gaussian_conditional.compress(y, indexes, means=means)
        return ReferenceCompressed(y_strings[0], z_strings[0], (int(z.shape[-2]), int(z.shape[-1])), quality)

    @torch.inference_mode()
    def decompress(self, compressed: ReferenceCompressed) -> Tensor:
        net = self.net
        z_hat = net.entropy_bottleneck.decompress([compressed.z_string], compressed.z_hw)
        scales, means = net.h_s(z_hat).chunk(2, 1)
        indexes = net.gaussian_conditional.build_indexes(scales)
        y_hat = net.gaussian_conditional.decompress([compressed.y_string], indexes, means=means)
        return net.g_s(y_hat * self._inv_gain(compressed.quality)).clamp(0.0, 1.0)
