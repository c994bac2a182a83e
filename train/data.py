"""Image training data: random crops, flips and rescales from image folders and video frames (PyAV).

Sources are decoded once into memory as uint8 (H, W, 3) arrays: every image file under the given
paths, and every ``video_frame_stride``-th frame of every video (read through ``nvcodec.io``,
i.e. PyAV), except the files named in ``exclude`` (the validation split: no training run sees
them). Images whose longer side exceeds ``max_side`` are downscaled by the smallest integer factor
(at least 2) that brings them under it, with area averaging: it hides JPEG artefacts of the large
wallpapers and matches the detail density of the smaller photographs. Each sample draws a source (images and video frames weighted by ``image_weight``), a
random scale in ``[min_scale, 1]`` (a crop of ``crop / scale`` pixels resized down to ``crop``), a
random position and random horizontal/vertical flips. Randomness comes from torch's global RNG, so
``seed_everything`` makes a run reproducible (``num_workers=0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from nvcodec.errors import InputError
from nvcodec.geometry import frames_to_tensor
from nvcodec.io import IMAGE_SUFFIXES, iter_frames, read_video

__all__ = ["ImageDataModule", "RandomCropDataset", "load_sources", "area_downscale", "SHARED_MEDIA"]

SHARED_MEDIA = str(Path(__file__).resolve().parents[2] / "shared" / "media")  # ../shared/media of the repo
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m"}


def _files(paths: Sequence[str], exclude: Sequence[str] = ()) -> list[Path]:
    """Files under ``paths`` (recursively), minus those whose name is in ``exclude``."""
    excluded = {Path(name).name for name in exclude}
    files: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"training data path not found: {path}")
    return [f for f in files if f.name not in excluded]


def area_downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> the image shrunk by the smallest integer factor >= 2 that makes
    ``max(H, W) <= max_side`` (area averaging), or unchanged when it already fits."""
    longest = max(image.shape[:2])
    if longest <= max_side:
        return image
    factor = max(2, -(-longest // max_side))
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    blocks = image[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).astype(np.float32)
    return np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)


def load_sources(
    paths: Sequence[str],
    video_frame_stride: int = 4,
    max_frames_per_video: int = 64,
    exclude: Sequence[str] = (),
    max_side: int | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(images, video_frames): lists of (H, W, 3) uint8 arrays read from ``paths`` (files or folders),
    without the files named in ``exclude``; images larger than ``max_side`` are area-downscaled."""
    images: list[np.ndarray] = []
    frames: list[np.ndarray] = []
    for path in _files(paths, exclude):
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            image = read_video(path).frames[0]
            images.append(area_downscale(image, max_side) if max_side else image)
        elif suffix in VIDEO_SUFFIXES:
            for index, frame in enumerate(iter_frames(path)):
                if index % video_frame_stride == 0:
                    frames.append(frame)
                if len(frames) and index // video_frame_stride >= max_frames_per_video:
                    break
    if not images and not frames:
        raise InputError(f"no images or videos found under {list(paths)}")
    return images, frames


def _random_crop(source: np.ndarray, crop: int, min_scale: float) -> Tensor:
    """One augmented crop (3, crop, crop) float in [0, 1] from (H, W, 3) uint8."""
    height, width = source.shape[:2]
    scale = float(torch.empty(()).uniform_(min_scale, 1.0))
    size = min(int(round(crop / scale)), height, width)
    size = max(size, 1)
    top = int(torch.randint(0, height - size + 1, ()))
    left = int(torch.randint(0, width - size + 1, ()))
    patch = frames_to_tensor(source[top : top + size, left : left + size])  # (3, size, size)
    if size != crop:
        patch = F.interpolate(patch[None], size=(crop, crop), mode="bilinear", antialias=True, align_corners=False)[0]
    if torch.rand(()) < 0.5:
        patch = patch.flip(-1)
    if torch.rand(()) < 0.5:
        patch = patch.flip(-2)
    return patch.clamp_(0.0, 1.0)


class RandomCropDataset(Dataset[Tensor]):
    """``length`` random crops (3, crop, crop) per epoch; the index is ignored (fresh draw each time)."""

    def __init__(
        self,
        images: list[np.ndarray],
        frames: list[np.ndarray],
        crop: int,
        length: int,
        image_weight: float = 0.5,
        min_scale: float = 0.5,
    ) -> None:
        self.images, self.frames = images, frames
        self.crop, self.length, self.min_scale = crop, length, min_scale
        self.image_weight = image_weight if images and frames else (1.0 if images else 0.0)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        pool = self.images if torch.rand(()) < self.image_weight else self.frames
        source = pool[int(torch.randint(0, len(pool), ()))]
        return _random_crop(source, self.crop, self.min_scale)


class ImageDataModule(pl.LightningDataModule):
    """Random crops from image files and video frames. ``paths`` default to the shared media folder.

    Args:
        paths: files or folders (searched recursively) of images and videos.
        crop_size: side of the square training crops (a multiple of 64 for the intra codec).
        batch_size: crops per step.
        epoch_length: crops per "epoch" (only sets how often Lightning's epoch counter ticks).
        video_frame_stride: keep every n-th video frame; max_frames_per_video caps each video.
        image_weight: probability that a crop comes from a still image rather than a video frame.
        min_scale: crops are taken at a random scale in [min_scale, 1] (downscaling adds variety).
        num_workers: DataLoader workers (0 keeps training on one core).
        exclude: file names never trained on (the validation split; listed in the config).
        max_side: images with a longer side are area-downscaled by an integer factor >= 2 (None: never).
    """

    def __init__(
        self,
        paths: list[str] | None = None,
        crop_size: int = 128,
        batch_size: int = 8,
        epoch_length: int = 8000,
        video_frame_stride: int = 4,
        max_frames_per_video: int = 40,
        image_weight: float = 0.5,
        min_scale: float = 0.5,
        num_workers: int = 0,
        exclude: list[str] | None = None,
        max_side: int | None = None,
    ) -> None:
        super().__init__()
        self.exclude, self.max_side = list(exclude or []), max_side
        self.paths = list(paths) if paths else [SHARED_MEDIA]
        self.crop_size, self.batch_size, self.epoch_length = crop_size, batch_size, epoch_length
        self.video_frame_stride, self.max_frames_per_video = video_frame_stride, max_frames_per_video
        self.image_weight, self.min_scale, self.num_workers = image_weight, min_scale, num_workers
        self.train_set: RandomCropDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            images, frames = load_sources(
                self.paths, self.video_frame_stride, self.max_frames_per_video, self.exclude, self.max_side
            )
            self.train_set = RandomCropDataset(
                images, frames, self.crop_size, self.epoch_length, self.image_weight, self.min_scale
            )

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        assert self.train_set is not None
        return DataLoader(
            self.train_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers, drop_last=True
        )
