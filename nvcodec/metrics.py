"""Quality and rate metrics: PSNR on RGB and on Y (BT.601), MS-SSIM, bits per pixel from bytes.

Inputs are uint8 arrays ``(T, H, W, 3)`` or ``(H, W, 3)``; PSNR is the mean over frames of each
frame's PSNR (the convention of the classical anchors in shared/media/README.md), capped at 100 dB
for identical frames.
"""

from __future__ import annotations

import numpy as np

__all__ = ["psnr_rgb", "psnr_y", "ms_ssim", "bpp", "rgb_to_y", "PSNR_CAP_DB"]

PSNR_CAP_DB = 100.0
_BT601 = np.array([0.299, 0.587, 0.114])


def _as_video(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) or (H, W, 3), got {x.shape}")
    return x


def _psnr_frames(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of the per-frame PSNR; a, b: (T, ...) float64 in [0, 255]."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    mse = ((a - b) ** 2).reshape(a.shape[0], -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        per_frame = np.where(mse > 0, 10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-300)), PSNR_CAP_DB)
    return float(np.minimum(per_frame, PSNR_CAP_DB).mean())


def psnr_rgb(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB over the three RGB channels, averaged over frames."""
    return _psnr_frames(_as_video(reference).astype(np.float64), _as_video(test).astype(np.float64))


def rgb_to_y(frames: np.ndarray) -> np.ndarray:
    """Full-range BT.601 luma of uint8 RGB: (..., 3) -> (...) float64 in [0, 255]."""
    return np.asarray(frames, dtype=np.float64) @ _BT601


def psnr_y(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of BT.601 luma (full range), averaged over frames."""
    return _psnr_frames(rgb_to_y(_as_video(reference)), rgb_to_y(_as_video(test)))


_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Multi-scale SSIM (Wang et al. 2003) on RGB in [0, 255], mean over frames and channels.

    Gaussian window 11 / sigma 1.5. Small images use as many scales as fit (the window must fit at
    the coarsest scale) with the weights renormalised; that is stated so results stay comparable.
    Computed in float64 with the (separable) Gaussian applied as two 1-D passes, a few frames at a
    time so that memory stays bounded for long or large clips.
    """
    import torch

    ref_all, tst_all = _as_video(reference), _as_video(test)
    if ref_all.shape != tst_all.shape:
        raise ValueError(f"shape mismatch {ref_all.shape} vs {tst_all.shape}")
    min_side = min(ref_all.shape[1:3])
    win = min(11, min_side if min_side % 2 else min_side - 1)  # odd, fits the frame
    scales = 1
    while scales < len(_MS_SSIM_WEIGHTS) and min_side // (2**scales) >= win:
        scales += 1
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
    weights = weights / weights.sum()
    coords = torch.arange(win, dtype=torch.float64) - win // 2
    gauss = torch.exp(-(coords**2) / (2 * 1.5**2))
    gauss = gauss / gauss.sum()
    # ~32 MB of float64 input per batch: bounded memory whatever the clip size.
    batch = max(1, (4 << 20) // (ref_all.shape[1] * ref_all.shape[2] * 3))
    per_frame = []
    for start in range(0, ref_all.shape[0], batch):
        ref = torch.from_numpy(ref_all[start : start + batch].astype(np.float64)).permute(0, 3, 1, 2).contiguous()
        tst = torch.from_numpy(tst_all[start : start + batch].astype(np.float64)).permute(0, 3, 1, 2).contiguous()
        per_frame.append(_ms_ssim_frames(ref, tst, gauss, weights, scales))
    return float(torch.cat(per_frame).mean())


def _gauss_valid(x, gauss, dim: int):
    """'valid' correlation of ``x`` with the 1-D window ``gauss`` along ``dim`` (-1 or -2)."""
    win = gauss.numel()
    size = x.shape[dim] - win + 1
    out = x.narrow(dim, 0, size) * float(gauss[0])
    for k in range(1, win):
        out.add_(x.narrow(dim, k, size), alpha=float(gauss[k]))
    return out


def _ms_ssim_frames(x, y, gauss, weights, scales: int):
    """MS-SSIM per frame and channel: x, y (N, 3, H, W) float64 -> (N, 3); gauss: (win,) 1-D window."""
    import torch
    import torch.nn.functional as F

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for scale in range(scales):
        maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (N, 15, H, W)
        # Separable 'valid' Gaussian: along W, then along H, as sums of shifted slices (no im2col
        # copy, which blows up memory for wide frames; float64 conv2d has no fast CPU kernel).
        filtered = _gauss_valid(_gauss_valid(maps, gauss, dim=-1), gauss, dim=-2)  # (N, 15, H', W')
        mu_x, mu_y, exx, eyy, exy = filtered.chunk(5, dim=1)  # each (N, 3, H', W')
        sxx = exx - mu_x**2
        syy = eyy - mu_y**2
        sxy = exy - mu_x * mu_y
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if scale == scales - 1:
            ssim = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
            values.append(ssim.mean(dim=(-2, -1)).clamp_min(0))
        else:
            values.append(cs.mean(dim=(-2, -1)).clamp_min(0))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=0)  # (scales, N, 3)
    return torch.prod(stacked ** weights[:, None, None], dim=0)


def bpp(num_bytes: int, frames: int, height: int, width: int) -> float:
    """Bits per pixel of a stream of ``num_bytes`` bytes: ``8 * bytes / (frames * H * W)``."""
    return 8.0 * num_bytes / (frames * height * width)
