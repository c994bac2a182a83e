"""tools/intra_retune_levels.py: continuous levels between the learned gains, and where the levels go."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvcodec.codec.video import IntraVideoCodec
from nvcodec.registry import load_codec


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("intra_retune_levels")


def test_continuous_rows_hit_the_learned_rows_and_extend_the_end_segments(tool):
    table = torch.tensor([[0.0, 1.0], [1.0, 3.0], [3.0, 4.0]])
    for level in range(3):
        assert torch.equal(tool.continuous_rows(table, float(level)), table[level])
    assert torch.allclose(tool.continuous_rows(table, 0.25), torch.tensor([0.25, 1.5]))
    assert torch.allclose(tool.continuous_rows(table, -1.0), torch.tensor([-1.0, -1.0]))  # row 0 - (row 1 - row 0)
    assert torch.allclose(tool.continuous_rows(table, 3.5), torch.tensor([6.0, 5.5]))  # row 2 + 1.5 (row 2 - row 1)


def test_levels_are_placed_step_db_apart_below_the_saturation(tool):
    grid = list(np.arange(-3.0, 9.01, 0.5))
    psnr = [31.0 - 6.0 * np.exp(-0.5 * (t + 3.0)) for t in grid]  # saturating, like the transforms
    psnr[-1] -= 0.01  # noise at the saturated top is ignored (envelope)
    placed = tool.place_levels(grid, psnr, levels=6, top_drop_db=0.05, step_db=0.9)
    assert placed == sorted(placed)
    reached = np.interp(placed, grid, np.maximum.accumulate(psnr))
    best = max(psnr)
    assert reached[-1] == pytest.approx(best - 0.05, abs=0.02)
    assert np.diff(reached) == pytest.approx([0.9] * 5, abs=0.02)
    with pytest.raises(SystemExit, match="lower --t-min"):
        tool.place_levels(grid, psnr, levels=6, top_drop_db=0.05, step_db=2.0)


def test_measure_at_a_learned_level_codes_as_that_level(tool):
    codec = load_codec("intra-tiny", allow_untrained=True)
    model = codec.model
    gain, inv_gain = model.log_gain.detach().clone(), model.log_inv_gain.detach().clone()
    with torch.no_grad():  # distinct rows, so that using the wrong one shows
        model.log_gain.copy_(gain + torch.linspace(-1.0, 0.0, gain.shape[0])[:, None])
        model.log_inv_gain.copy_(-model.log_gain.detach())
    gain, inv_gain = model.log_gain.detach().clone(), model.log_inv_gain.detach().clone()
    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    encoded = codec.encode(image[None], 2)
    bpp, psnr = tool.measure(IntraVideoCodec(model, "intra-tiny"), [image], gain, inv_gain, 2.0)
    assert bpp == pytest.approx(8.0 * len(encoded.chunks[0].payload) / (64 * 64))
    from nvcodec.metrics import psnr_rgb

    assert psnr == pytest.approx(psnr_rgb(image, encoded.reconstruction[0]))
