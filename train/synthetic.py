"""Synthetic camera motion over still images: pans, zooms and rotations rendered as clips.

Each clip follows one random affine trajectory (linear in time): a crop window of the image that
translates, scales and rotates from frame to frame, resampled bilinearly with ``grid_sample``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["random_camera_path", "render_camera_path"]


def random_camera_path(
    num_frames: int,
    generator: torch.Generator,
    max_shift: float = 3.0,
    max_zoom: float = 0.02,
    max_rotation_deg: float = 1.5,
    zoom_range: tuple[float, float] = (0.5, 2.0),
) -> Tensor:
    """(num_frames, 4) per-frame (scale, angle_rad, shift_x_px, shift_y_px) of a linear trajectory.

    Per-frame motion is drawn uniformly up to ``max_shift`` pixels, ``max_zoom`` relative zoom and
    ``max_rotation_deg`` degrees; the start scale (output pixels per source pixel) log-uniformly in
    ``zoom_range``.
    """
    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    scale0 = math.exp(uniform(math.log(zoom_range[0]), math.log(zoom_range[1])))
    angle0 = uniform(-math.pi, math.pi) * 0.1
    velocity = torch.tensor(
        [uniform(-max_zoom, max_zoom), math.radians(uniform(-max_rotation_deg, max_rotation_deg)), uniform(-max_shift, max_shift), uniform(-max_shift, max_shift)]
    )
    steps = torch.arange(num_frames, dtype=torch.float32)[:, None]  # (T, 1)
    path = torch.tensor([0.0, angle0, 0.0, 0.0]) + steps * velocity  # (T, 4)
    path[:, 0] = scale0 * torch.exp(path[:, 0])  # zoom compounds multiplicatively
    return path


def render_camera_path(image: Tensor, path: Tensor, size: int, center: tuple[float, float]) -> Tensor:
    """Render a ``size x size`` window of ``image`` (3, H, W) along ``path`` (T, 4) -> (T, 3, size, size).

    ``center``: the window centre in source pixels (x, y) at frame 0; shifts are in output pixels.
    """
    _, height, width = image.shape
    scale, angle, shift_x, shift_y = path.unbind(1)  # each (T,)
    # Source pixels covered by one output pixel = 1 / scale; normalised coords span 2 / extent.
    half_x = size / scale / width  # (T,) half window width in normalised source coords
    half_y = size / scale / height
    cx = (2.0 * (center[0] + shift_x / scale) / width) - 1.0  # (T,)
    cy = (2.0 * (center[1] + shift_y / scale) / height) - 1.0
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([half_x * cos, -half_x * sin, cx], 1), torch.stack([half_y * sin, half_y * cos, cy], 1)], 1
    )  # (T, 2, 3): output [-1, 1]^2 -> source normalised coords
    grid = F.affine_grid(theta, [path.shape[0], 3, size, size], align_corners=False)  # (T, size, size, 2)
    frames = image[None].expand(path.shape[0], -1, -1, -1)  # (T, 3, H, W)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
