"""Clip data for hypernerv meta-training: random clips x tiles of videos, plus synthetic motion.

Samples are (T, 3, tile, tile) float clips in [0, 1]. Videos are decoded once with PyAV
(``nvcodec.io.read_video``) and kept in memory as uint8; each video can also be kept at extra
downscales (``video_scales``) so that large frames give tiles with real detail. Still images feed
``train/synthetic.py`` camera paths. Validation is a fixed, seeded set of clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from nvcodec.geometry import frames_to_tensor, unit_float
from nvcodec.io import read_video

from .synthetic import random_camera_path, render_camera_path

__all__ = ["ClipDataset", "ClipDataModule", "load_videos", "load_images"]


def _resize(frames: Tensor, scale: float) -> Tensor:
    """(T, 3, H, W) uint8 -> downscaled (T, 3, h, w) uint8 (antialiased)."""
    if scale == 1.0:
        return frames
    height, width = frames.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    out = [F.interpolate(frames[i : i + 16].float(), size=size, mode="bilinear", antialias=True, align_corners=False) for i in range(0, len(frames), 16)]
    return torch.cat(out).round().clamp(0, 255).to(torch.uint8)


def load_videos(paths: Sequence[str], scales: Sequence[float] = (1.0,), max_frames: int | None = None) -> list[Tensor]:
    """Each path at each scale -> (T, 3, H, W) uint8 tensors."""
    videos = []
    for path in paths:
        frames = torch.from_numpy(read_video(path, 0, max_frames).frames).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)
        videos.extend(_resize(frames, scale) for scale in scales)
    return videos


def load_images(paths: Sequence[str]) -> list[Tensor]:
    """Still images -> (3, H, W) float in [0, 1]."""
    return [frames_to_tensor(read_video(path).frames[0]) for path in paths]


class ClipDataset(Dataset):
    """``length`` random clips; item ``i`` is drawn from a generator seeded by ``seed + i`` (reproducible)."""

    def __init__(
        self,
        videos: Sequence[Tensor],
        images: Sequence[Tensor],
        clip_len: int,
        tile_size: int,
        length: int,
        synthetic_fraction: float = 0.3,
        seed: int = 0,
    ) -> None:
        if not videos and not images:
            raise ValueError("ClipDataset needs at least one video or image")
        self.videos = [v for v in videos if v.shape[0] >= clip_len and min(v.shape[-2:]) >= tile_size]
        self.images = list(images)
        self.clip_len = clip_len
        self.tile_size = tile_size
        self.length = length
        self.synthetic_fraction = synthetic_fraction if self.videos else 1.0
        if not self.images:
            self.synthetic_fraction = 0.0
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed + index)
        if float(torch.rand((), generator=generator)) < self.synthetic_fraction:
            clip = self._synthetic(generator)
        else:
            clip = self._video(generator)
        if float(torch.rand((), generator=generator)) < 0.5:
            clip = clip.flip(-1)
        return clip

    def _randint(self, high: int, generator: torch.Generator) -> int:
        return int(torch.randint(0, max(1, high), (), generator=generator))

    def _video(self, generator: torch.Generator) -> Tensor:
        video = self.videos[self._randint(len(self.videos), generator)]  # (N, 3, H, W) uint8
        frames, _, height, width = video.shape
        stride = 2 if float(torch.rand((), generator=generator)) < 0.25 and frames >= 2 * self.clip_len else 1
        span = (self.clip_len - 1) * stride + 1
        start = self._randint(frames - span + 1, generator)
        top = self._randint(height - self.tile_size + 1, generator)
        left = self._randint(width - self.tile_size + 1, generator)
        clip = video[start : start + span : stride, :, top : top + self.tile_size, left : left + self.tile_size]
        if float(torch.rand((), generator=generator)) < 0.2:
            clip = clip.flip(0)  # time reversal: plausible motion, doubles the variety
        return unit_float(clip)  # (T, 3, tile, tile)

    def _synthetic(self, generator: torch.Generator) -> Tensor:
        image = self.images[self._randint(len(self.images), generator)]  # (3, H, W)
        path = random_camera_path(self.clip_len, generator)
        _, height, width = image.shape
        center = (width * (0.2 + 0.6 * float(torch.rand((), generator=generator))), height * (0.2 + 0.6 * float(torch.rand((), generator=generator))))
        return render_camera_path(image, path, self.tile_size, center).clamp(0.0, 1.0)


class ClipDataModule(pl.LightningDataModule):
    """Random (T, 3, tile, tile) clips from ``videos`` (PyAV) and synthetic motion over ``images``."""

    def __init__(
        self,
        videos: list[str] | None = None,
        images: list[str] | None = None,
        val_videos: list[str] | None = None,
        clip_len: int = 8,
        tile_size: int = 64,
        video_scales: list[float] | None = None,
        max_frames: int | None = None,
        batch_size: int = 8,
        train_length: int = 100_000,
        val_length: int = 64,
        synthetic_fraction: float = 0.3,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_set: ClipDataset | None = None
        self.val_set: ClipDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        scales = hp.video_scales or [1.0]
        if self.train_set is None:
            videos = load_videos(hp.videos or [], scales, hp.max_frames)
            images = load_images(hp.images or [])
            self.train_set = ClipDataset(videos, images, hp.clip_len, hp.tile_size, hp.train_length, hp.synthetic_fraction, hp.seed)
        if self.val_set is None and hp.val_videos:
            val = load_videos(hp.val_videos, [1.0], hp.max_frames)
            self.val_set = ClipDataset(val, [], hp.clip_len, hp.tile_size, hp.val_length, 0.0, seed=10_000_019)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True, num_workers=self.hparams.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, shuffle=False, num_workers=self.hparams.num_workers)
