"""Frequency analysis of latents: how much of each channel slice's energy lies at low spatial frequency.

Pure torch. Used to check that the frequency-disentangled transform puts low-frequency content in
the first slices (the ones coded first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SliceSpectrum", "low_frequency_share", "slice_low_frequency_shares"]


@dataclass(frozen=True)
class SliceSpectrum:
    """Energy share below ``cutoff`` of channels ``[channel_start, channel_stop)``."""

    slice_index: int
    channel_start: int
    channel_stop: int
    low_share: float


def low_frequency_share(y: Tensor, cutoff: float = 0.25) -> Tensor:
    """Share of each channel's AC energy at radial spatial frequency <= ``cutoff`` (cycles/sample).

    ``y``: (B, C, H, W). The per-channel spatial mean (DC) is removed first, since it would count as
    "low" for every channel. Frequencies run from 0 to 0.5*sqrt(2) (corner). Returns (C,) in [0, 1]
    (energy summed over the batch; a channel with no AC energy gets share 1).
    """
    y = y.detach().double()
    y = y - y.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(y).abs().square().sum(dim=0)  # (C, H, W)
    fy = torch.fft.fftfreq(y.shape[-2], dtype=torch.float64, device=y.device)
    fx = torch.fft.fftfreq(y.shape[-1], dtype=torch.float64, device=y.device)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # (H, W)
    low = (power * (radius <= cutoff)).sum(dim=(-2, -1))
    total = power.sum(dim=(-2, -1))
    return torch.where(total > 0, low / total.clamp_min(1e-300), torch.ones_like(total)).float()


def slice_low_frequency_shares(y: Tensor, slice_sizes: Sequence[int], cutoff: float = 0.25) -> list[SliceSpectrum]:
    """Per slice (in coding order), the share of its AC energy at frequency <= ``cutoff``.

    ``y``: (B, M, H, W) with ``sum(slice_sizes) == M``. Channel energies are pooled within a slice.
    """
    if sum(slice_sizes) != y.shape[1]:
        raise ValueError(f"slice sizes {tuple(slice_sizes)} do not sum to {y.shape[1]} channels")
    y = y.detach().double()
    y = y - y.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(y).abs().square().sum(dim=0)  # (M, H, W)
    fy = torch.fft.fftfreq(y.shape[-2], dtype=torch.float64, device=y.device)
    fx = torch.fft.fftfreq(y.shape[-1], dtype=torch.float64, device=y.device)
    is_low = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) <= cutoff
    results: list[SliceSpectrum] = []
    start = 0
    for index, size in enumerate(slice_sizes):
        block = power[start : start + size]
        total = float(block.sum())
        share = float((block * is_low).sum()) / total if total > 0 else 1.0
        results.append(SliceSpectrum(index, start, start + size, share))
        start += size
    return results
