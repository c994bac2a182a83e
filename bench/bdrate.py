"""Bjontegaard delta rate (BD-rate): average rate difference at equal quality, in percent.

Log-rate is interpolated as a function of PSNR with monotone piecewise-cubic (PCHIP) curves and
integrated over the PSNR range both curves cover (the modern, overshoot-free variant of the
original cubic-polynomial fit, as in VCEG-AL22 follow-ups and most learned-compression papers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = ["bd_rate"]


def _curve(rate: Sequence[float], psnr: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64)
    p = np.asarray(psnr, dtype=np.float64)
    if r.shape != p.shape or r.ndim != 1:
        raise ValueError(f"rate and psnr must be 1-D and equally long, got {r.shape} and {p.shape}")
    keep = np.isfinite(r) & np.isfinite(p) & (r > 0)
    r, p = r[keep], p[keep]
    order = np.argsort(p)
    p, log_r = p[order], np.log(r[order])
    # equal PSNRs would break the interpolation: keep the lowest rate at each PSNR
    unique_p, first = np.unique(p, return_index=True)
    log_r = np.array([log_r[p == value].min() for value in unique_p]) if len(unique_p) != len(p) else log_r[first]
    return unique_p, log_r


def bd_rate(
    rate_anchor: Sequence[float],
    psnr_anchor: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
) -> float:
    """Average rate change of ``test`` vs ``anchor`` at equal PSNR, in percent (negative = saving).

    Identical curves give 0; a test that needs half the anchor's rate everywhere gives -50. Returns
    ``nan`` when a curve has fewer than two usable points or the PSNR ranges do not overlap.
    """
    p_a, lr_a = _curve(rate_anchor, psnr_anchor)
    p_t, lr_t = _curve(rate_test, psnr_test)
    if len(p_a) < 2 or len(p_t) < 2:
        return float("nan")
    low, high = max(p_a[0], p_t[0]), min(p_a[-1], p_t[-1])
    if not high > low:
        return float("nan")
    integral_a = PchipInterpolator(p_a, lr_a).integrate(low, high)
    integral_t = PchipInterpolator(p_t, lr_t).integrate(low, high)
    mean_diff = (integral_t - integral_a) / (high - low)
    return float((math.exp(mean_diff) - 1.0) * 100.0)
