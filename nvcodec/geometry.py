"""Padding, cropping and tiling: the one place where frame geometry is decided.

Pure torch, no upward imports: codec/, hypernerv/ and the API all use these helpers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["pad_to_multiple", "crop_to", "TileGrid"]


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


@dataclass(frozen=True)
class TileGrid:
    """A grid of ``tile_h x tile_w`` tiles that covers an ``height x width`` frame.

    Tiles are laid at stride ``tile - overlap``; the last row/column is shifted back so that it ends
    at the padded border (the frame is padded up to at least one tile). ``starts`` give each tile's
    top-left corner in the padded frame.
    """

    height: int
    width: int
    tile_h: int
    tile_w: int
    overlap: int = 0

    def __post_init__(self) -> None:
        if self.tile_h <= 2 * self.overlap or self.tile_w <= 2 * self.overlap:
            raise ValueError(f"overlap {self.overlap} too large for tile {self.tile_h}x{self.tile_w}")

    @staticmethod
    def _axis_starts(length: int, tile: int, overlap: int) -> list[int]:
        if length <= tile:
            return [0]
        stride = tile - overlap
        starts = list(range(0, length - tile + 1, stride))
        if starts[-1] + tile < length:
            starts.append(length - tile)
        return starts

    @property
    def padded_hw(self) -> tuple[int, int]:
        return max(self.height, self.tile_h), max(self.width, self.tile_w)

    @property
    def row_starts(self) -> list[int]:
        return self._axis_starts(self.padded_hw[0], self.tile_h, self.overlap)

    @property
    def col_starts(self) -> list[int]:
        return self._axis_starts(self.padded_hw[1], self.tile_w, self.overlap)

    @property
    def starts(self) -> list[tuple[int, int]]:
        return [(r, c) for r in self.row_starts for c in self.col_starts]

    @property
    def num_tiles(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def split(self, x: Tensor) -> Tensor:
        """``x``: (..., H, W) -> tiles (num_tiles, ..., tile_h, tile_w), padding by replication first."""
        ph, pw = self.padded_hw
        if (ph, pw) != tuple(x.shape[-2:]):
            flat = x.reshape(-1, *x.shape[-3:]) if x.dim() >= 3 else x[None, None]
            flat = F.pad(flat, (0, pw - x.shape[-1], 0, ph - x.shape[-2]), mode="replicate")
            x = flat.reshape(*x.shape[:-2], ph, pw)
        return torch.stack([x[..., r : r + self.tile_h, c : c + self.tile_w] for r, c in self.starts])

    def blend_window(self, device: torch.device | None = None) -> Tensor:
        """(tile_h, tile_w) weights: 1 inside, linear ramps over ``overlap`` pixels at each edge."""
        def ramp(n: int) -> Tensor:
            w = torch.ones(n, device=device)
            if self.overlap > 0:
                edge = (torch.arange(self.overlap, device=device, dtype=torch.float32) + 0.5) / self.overlap
                w[: self.overlap] = edge
                w[-self.overlap :] = edge.flip(0)
            return w

        return ramp(self.tile_h)[:, None] * ramp(self.tile_w)[None, :]

    def merge(self, tiles: Tensor) -> Tensor:
        """tiles (num_tiles, ..., tile_h, tile_w) -> (..., H, W): overlap-blended, cropped to the frame.

        Every output pixel is covered by at least one tile; where tiles overlap, linear ramps blend
        them (weights are normalised, so a pixel covered once keeps its value exactly).
        """
        ph, pw = self.padded_hw
        lead = tiles.shape[1:-2]
        out = tiles.new_zeros(*lead, ph, pw)
        norm = tiles.new_zeros(ph, pw)
        window = self.blend_window(tiles.device).to(tiles.dtype)
        for tile, (r, c) in zip(tiles, self.starts):
            out[..., r : r + self.tile_h, c : c + self.tile_w] += tile * window
            norm[r : r + self.tile_h, c : c + self.tile_w] += window
        return crop_to(out / norm, self.height, self.width)
