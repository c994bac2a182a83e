"""Frame <-> tensor conversion, padding, cropping and tiling: the one place where frame geometry is decided.

Pure torch, no upward imports: codec/, hypernerv/ and the API all use these helpers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["frames_to_tensor", "tensor_to_frames", "unit_float", "quantise_uint8", "pad_to_multiple", "crop_to", "TileGrid", "TILINGS"]


def unit_float(x: Tensor) -> Tensor:
    """uint8 samples -> float32 in [0, 1] (same shape)."""
    return x.float() / 255.0


def quantise_uint8(x: Tensor) -> Tensor:
    """Float samples, nominally in [0, 1] -> uint8 (same shape): clamped, scaled, rounded half to even.

    The one rounding of every reconstruction: encoders and decoders must agree on it bit for bit.
    """
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def frames_to_tensor(frames: np.ndarray, device: torch.device | str | None = None) -> Tensor:
    """uint8 RGB frames (..., H, W, 3) -> float32 (..., 3, H, W) in [0, 1] on ``device``."""
    return unit_float(torch.from_numpy(np.ascontiguousarray(frames)).to(device).movedim(-1, -3))


def tensor_to_frames(x: Tensor) -> np.ndarray:
    """Float (..., 3, H, W), nominally in [0, 1] -> uint8 RGB frames (..., H, W, 3) on the CPU."""
    return quantise_uint8(x).movedim(-3, -1).cpu().numpy()


def pad_to_multiple(x: Tensor, multiple: int, mode: str = "replicate") -> Tensor:
    """Pad the last two dims of ``x`` (…, H, W) at the bottom/right up to multiples of ``multiple``.

    Replicate padding keeps the border content smooth, which costs fewer bits than zeros.
    Undo with ``crop_to(y, H, W)``.
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == "replicate" and (pad_h >= height or pad_w >= width) and x.dim() < 3:
        mode = "constant"
    flat = x.reshape(-1, *x.shape[-3:]) if x.dim() >= 3 else x[None, None]
    padded = F.pad(flat.float() if not flat.is_floating_point() else flat, (0, pad_w, 0, pad_h), mode=mode)
    padded = padded.to(x.dtype)
    return padded.reshape(*x.shape[:-2], height + pad_h, width + pad_w)


def crop_to(x: Tensor, height: int, width: int) -> Tensor:
    """Crop the last two dims of ``x`` back to ``(height, width)`` (top-left anchored)."""
    return x[..., :height, :width]


TILINGS = ("shift", "even")  # TileGrid layouts; "shift" is the version-1 hypernerv stream layout


def _rise(n: int, device: torch.device | None) -> Tensor:
    """(n,) raised-cosine ramp sin^2(pi/2 (k + 0.5) / n): with its mirror it sums to 1 at every pixel."""
    k = torch.arange(n, device=device, dtype=torch.float32)
    return torch.sin(0.5 * torch.pi * (k + 0.5) / n) ** 2


@dataclass(frozen=True)
class TileGrid:
    """A grid of ``tile_h x tile_w`` tiles that covers an ``height x width`` frame.

    The frame is padded (replicate, bottom/right) up to at least one tile. ``starts`` give each
    tile's top-left corner in the padded frame. Two layouts (``tiling``):

    - ``"shift"``: tiles at stride ``tile - overlap``; the last row/column is shifted back so that
      it ends at the padded border; linear ramps over ``overlap`` pixels at every tile edge. On
      sizes that are not a stride multiple the shifted tile overlaps its neighbour by some other
      amount, and at ``overlap`` 0 the seams are hard.
    - ``"even"``: ``overlap`` is a minimum: per axis, the fewest tiles whose neighbours all overlap
      by at least ``overlap`` pixels, spread evenly (any spare pixels become extra overlap), and
      raised-cosine cross-fades over each whole overlap (the two weights sum to 1 across it); no
      ramp at the frame border.
    """

    height: int
    width: int
    tile_h: int
    tile_w: int
    overlap: int = 0
    tiling: str = "shift"

    def __post_init__(self) -> None:
        if self.tile_h <= 2 * self.overlap or self.tile_w <= 2 * self.overlap:
            raise ValueError(f"overlap {self.overlap} too large for tile {self.tile_h}x{self.tile_w}")
        if self.tiling not in TILINGS:
            raise ValueError(f"unknown tiling {self.tiling!r}; use one of {TILINGS}")

    def _axis_starts(self, length: int, tile: int) -> list[int]:
        if length <= tile:
            return [0]
        if self.tiling == "even":
            count = 1 + -(-(length - tile) // (tile - self.overlap))  # fewest tiles with >= overlap
            return [round(i * (length - tile) / (count - 1)) for i in range(count)]
        starts = list(range(0, length - tile + 1, tile - self.overlap))
        if starts[-1] + tile < length:
            starts.append(length - tile)
        return starts

    @property
    def padded_hw(self) -> tuple[int, int]:
        return max(self.height, self.tile_h), max(self.width, self.tile_w)

    @property
    def row_starts(self) -> list[int]:
        return self._axis_starts(self.padded_hw[0], self.tile_h)

    @property
    def col_starts(self) -> list[int]:
        return self._axis_starts(self.padded_hw[1], self.tile_w)

    @property
    def starts(self) -> list[tuple[int, int]]:
        return [(r, c) for r in self.row_starts for c in self.col_starts]

    @property
    def num_tiles(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    @property
    def min_overlap(self) -> int:
        """The smallest overlap between neighbouring tiles (along either axis; 0 with one tile)."""
        gaps = [
            tile - (b - a)
            for starts, tile in ((self.row_starts, self.tile_h), (self.col_starts, self.tile_w))
            for a, b in zip(starts, starts[1:])
        ]
        return min(gaps, default=0)

    def split(self, x: Tensor) -> Tensor:
        """``x``: (..., H, W) -> tiles (num_tiles, ..., tile_h, tile_w), padding by replication first."""
        ph, pw = self.padded_hw
        if (ph, pw) != tuple(x.shape[-2:]):
            flat = x.reshape(-1, *x.shape[-3:]) if x.dim() >= 3 else x[None, None]
            flat = F.pad(flat, (0, pw - x.shape[-1], 0, ph - x.shape[-2]), mode="replicate")
            x = flat.reshape(*x.shape[:-2], ph, pw)
        return torch.stack([x[..., r : r + self.tile_h, c : c + self.tile_w] for r, c in self.starts])

    def blend_window(self, device: torch.device | None = None) -> Tensor:
        """``"shift"`` layout: (tile_h, tile_w) weights, 1 inside, linear ramps over ``overlap`` px at each edge."""
        def ramp(n: int) -> Tensor:
            w = torch.ones(n, device=device)
            if self.overlap > 0:
                edge = (torch.arange(self.overlap, device=device, dtype=torch.float32) + 0.5) / self.overlap
                w[: self.overlap] = edge
                w[-self.overlap :] = edge.flip(0)
            return w

        return ramp(self.tile_h)[:, None] * ramp(self.tile_w)[None, :]

    def _axis_windows(self, starts: list[int], tile: int, device: torch.device | None) -> list[Tensor]:
        """``"even"`` layout: per tile along one axis, (tile,) weights that cross-fade each overlap."""
        windows = []
        for i, start in enumerate(starts):
            w = torch.ones(tile, device=device)
            if i > 0 and (lead := starts[i - 1] + tile - start) > 0:
                w[:lead] *= _rise(lead, device)
            if i + 1 < len(starts) and (trail := start + tile - starts[i + 1]) > 0:
                w[tile - trail :] *= _rise(trail, device).flip(0)
            windows.append(w)
        return windows

    def windows(self, device: torch.device | None = None) -> list[Tensor]:
        """One (tile_h, tile_w) blend weight map per tile, in ``starts`` order."""
        if self.tiling == "shift":
            return [self.blend_window(device)] * self.num_tiles
        rows = self._axis_windows(self.row_starts, self.tile_h, device)
        cols = self._axis_windows(self.col_starts, self.tile_w, device)
        return [r[:, None] * c[None, :] for r in rows for c in cols]

    def merge(self, tiles: Tensor) -> Tensor:
        """tiles (num_tiles, ..., tile_h, tile_w) -> (..., H, W): overlap-blended, cropped to the frame.

        Every output pixel is covered by at least one tile; where tiles overlap, the layout's
        windows blend them (weights are normalised, so a pixel covered once keeps its value exactly).
        """
        ph, pw = self.padded_hw
        lead = tiles.shape[1:-2]
        out = tiles.new_zeros(*lead, ph, pw)
        norm = tiles.new_zeros(ph, pw)
        for tile, window, (r, c) in zip(tiles, self.windows(tiles.device), self.starts):
            window = window.to(tiles.dtype)
            out[..., r : r + self.tile_h, c : c + self.tile_w] += tile * window
            norm[r : r + self.tile_h, c : c + self.tile_w] += window
        return crop_to(out / norm, self.height, self.width)
