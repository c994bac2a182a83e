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
    """
    import torch
    import torch.nn.functional as F

    ref = torch.from_numpy(_as_video(reference).astype(np.float64)).permute(0, 3, 1, 2)
    tst = torch.from_numpy(_as_video(test).astype(np.float64)).permute(0, 3, 1, 2)
    if ref.shape != tst.shape:
        raise ValueError(f"shape mismatch {tuple(ref.shape)} vs {tuple(tst.shape)}")
    min_side = min(ref.shape[-2:])
    win = min(11, min_side if min_side % 2 else min_side - 1)  # odd, fits the frame
    scales = 1
    while scales < len(_MS_SSIM_WEIGHTS) and min_side // (2**scales) >= win:
        scales += 1
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
    weights = weights / weights.sum()
    coords = torch.arange(win, dtype=torch.float64) - win // 2
    gauss = torch.exp(-(coords**2) / (2 * 1.5**2))
    gauss = gauss / gauss.sum()
    kernel = (gauss[:, None] * gauss[None, :]).expand(3, 1, win, win)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=3)

    values = []
    x, y = ref, tst
    for scale in range(scales):
        mu_x, mu_y = filt(x), filt(y)
        sxx = filt(x * x) - mu_x**2
        syy = filt(y * y) - mu_y**2
        sxy = filt(x * y) - mu_x * mu_y
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if scale == scales - 1:
            ssim = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
            values.append(ssim.mean(dim=(-2, -1)).clamp_min(0))
        else:
            values.append(cs.mean(dim=(-2, -1)).clamp_min(0))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=0)  # (scales, T, 3)
    result = torch.prod(stacked ** weights[:, None, None], dim=0)
    return float(result.mean())


def bpp(num_bytes: int, frames: int, height: int, width: int) -> float:
    """Bits per pixel of a stream of ``num_bytes`` bytes: ``8 * bytes / (frames * H * W)``."""
    return 8.0 * num_bytes / (frames * height * width)
