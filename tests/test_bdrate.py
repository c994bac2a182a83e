"""BD-rate (nvcodec.bench.bdrate): exact answers on constructed curves, NaN where undefined."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nvcodec.bench.bdrate import bd_rate

RATES = [0.05, 0.1, 0.2, 0.4, 0.8]
PSNRS = [30.0, 32.5, 35.1, 37.4, 39.0]


def test_identical_curves_give_zero() -> None:
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("factor,expected", [(0.5, -50.0), (2.0, 100.0), (0.9, -10.0)])
def test_constant_rate_factor(factor: float, expected: float) -> None:
    test_rates = [r * factor for r in RATES]
    assert bd_rate(RATES, PSNRS, test_rates, PSNRS) == pytest.approx(expected, abs=1e-9)


def test_rate_halved_with_other_sampling_points() -> None:
    # The test curve samples the same log-linear RD curve at other PSNRs: still exactly -50 %.
    def rate_at(psnr: np.ndarray) -> np.ndarray:
        return 0.01 * np.exp(0.2 * psnr)

    anchor_psnr = np.array([28.0, 31.0, 34.0, 37.0, 40.0])
    test_psnr = np.array([29.0, 33.0, 36.5, 39.5])
    result = bd_rate(rate_at(anchor_psnr), anchor_psnr, 0.5 * rate_at(test_psnr), test_psnr)
    assert result == pytest.approx(-50.0, abs=1e-6)


def test_non_overlapping_psnr_ranges_give_nan() -> None:
    assert math.isnan(bd_rate(RATES, PSNRS, RATES, [p + 20.0 for p in PSNRS]))
    # Touching at one point is an overlap of zero length: still undefined.
    assert math.isnan(bd_rate([0.1, 0.2], [30.0, 32.0], [0.3, 0.4], [32.0, 34.0]))


def test_too_few_points_give_nan() -> None:
    assert math.isnan(bd_rate(RATES, PSNRS, [0.1], [33.0]))
    assert math.isnan(bd_rate(RATES, PSNRS, [0.1, -1.0, math.nan], [33.0, 34.0, 35.0]))


def test_unsorted_input_is_sorted_first() -> None:
    order = [3, 0, 4, 1, 2]
    shuffled_rates = [RATES[i] for i in order]
    shuffled_psnrs = [PSNRS[i] for i in order]
    half = [r / 2 for r in shuffled_rates]
    assert bd_rate(shuffled_rates, shuffled_psnrs, half, shuffled_psnrs) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, half, shuffled_psnrs) == pytest.approx(-50.0, abs=1e-9)


def test_sign_follows_quality() -> None:
    # A better codec (same rate, +1 dB everywhere) needs fewer bits at equal PSNR.
    assert bd_rate(RATES, PSNRS, RATES, [p + 1.0 for p in PSNRS]) < 0.0
    assert bd_rate(RATES, PSNRS, RATES, [p - 1.0 for p in PSNRS]) > 0.0


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError):
        bd_rate(RATES, PSNRS[:-1], RATES, PSNRS)
