"""Entropy layer: exact slice-coding round trips, causality of the slice order, readiness, framing."""

from __future__ import annotations

import pytest
import torch

from nvcodec.entropy import HyperPrior, SliceCoder, pack_strings, quantize_param, require_ready, unpack_strings
from nvcodec.errors import BitstreamError, EntropyModelNotReadyError

SLICES = (2, 2, 4, 8)


def _coder(seed: int = 0) -> SliceCoder:
    torch.manual_seed(seed)
    coder = SliceCoder(SLICES, hidden=8).eval()
    return coder


def _inputs(batch: int = 1, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    m = sum(SLICES)
    y = torch.randn(batch, m, 5, 7, generator=gen) * 4
    return y, torch.randn(batch, m, 5, 7, generator=gen), torch.randn(batch, m, 5, 7, generator=gen)


def test_slice_round_trip_is_exact_on_random_latents() -> None:
    coder = _coder()
    coder.update()
    y, mean_support, scale_support = _inputs(batch=2)
    with torch.inference_mode():
        strings, y_hat_encoder = coder.compress(y, mean_support, scale_support)
        y_hat_decoder = coder.decompress(strings, mean_support, scale_support)
    assert len(strings) == 2 and all(len(s) > 0 for s in strings)
    assert torch.equal(y_hat_encoder, y_hat_decoder)
    # y_hat = round(y - mean) + mean + LRP (|LRP| <= 0.5): within 1 of y (+ grid rounding)
    assert (y_hat_decoder - y).abs().max() <= 1.0 + 1.0 / 64


def test_means_and_lrp_live_on_the_parameter_grid() -> None:
    x = torch.tensor([0.0, 0.01, 0.5 / 64, 1.0 / 3.0, -2.7])
    q = quantize_param(x)
    assert torch.equal(q * 64, torch.round(q * 64))
    assert (q - x).abs().max() <= 0.5 / 64 + 1e-7


def test_earlier_slices_do_not_see_later_ones() -> None:
    """Slice i's Gaussian depends on slices < i only: changing later channels leaves earlier likelihoods."""
    coder = _coder()
    y, mean_support, scale_support = _inputs()
    first = SLICES[0] + SLICES[1]
    changed = y.clone()
    changed[:, first:] += 3.0
    with torch.no_grad():
        base = coder(y, mean_support, scale_support).likelihoods
        other = coder(changed, mean_support, scale_support).likelihoods
    assert torch.equal(base[:, :first], other[:, :first])
    assert not torch.equal(base[:, first:], other[:, first:])
    changed_first = y.clone()
    changed_first[:, : SLICES[0]] += 3.0
    with torch.no_grad():
        later = coder(changed_first, mean_support, scale_support).likelihoods
    assert not torch.equal(base[:, SLICES[0] :], later[:, SLICES[0] :])  # later slices are conditioned on it


def test_slice_sizes_are_kept_in_order() -> None:
    coder = _coder()
    assert coder.slice_sizes == SLICES
    assert [net[-1].out_channels for net in coder.mean_nets] == list(SLICES)
    # slice i's networks read the M support channels + all earlier slices
    assert [net[0].in_channels for net in coder.mean_nets] == [16, 18, 20, 24]


def test_coding_before_update_raises() -> None:
    coder = _coder()
    y, mean_support, scale_support = _inputs()
    with pytest.raises(EntropyModelNotReadyError):
        coder.compress(y, mean_support, scale_support)
    with pytest.raises(EntropyModelNotReadyError):
        coder.decompress([b"\x00" * 8], mean_support, scale_support)
    hyper = HyperPrior(16, 8)
    with pytest.raises(EntropyModelNotReadyError):
        hyper.compress(torch.randn(1, 16, 8, 8))
    with pytest.raises(EntropyModelNotReadyError):
        require_ready(hyper.entropy_bottleneck, "entropy_bottleneck")


def test_hyperprior_round_trip_supports_match() -> None:
    torch.manual_seed(0)
    hyper = HyperPrior(16, 8).eval()
    hyper.entropy_bottleneck.update(force=True)
    y = torch.randn(1, 16, 8, 12) * 3
    with torch.inference_mode():
        strings, encoder_side = hyper.compress(y)
        decoder_side = hyper.decompress(strings, (2, 3))
    assert encoder_side.z_hat.shape == (1, 8, 2, 3)
    assert torch.equal(encoder_side.mean_support, decoder_side.mean_support)
    assert torch.equal(encoder_side.scale_support, decoder_side.scale_support)


def test_string_framing_round_trip_and_bounds() -> None:
    strings = [b"", b"abc", bytes(range(256))]
    data = pack_strings(strings)
    parsed, end = unpack_strings(data, 3)
    assert parsed == strings and end == len(data)
    with pytest.raises(BitstreamError):
        unpack_strings(data[:-1], 3)
    with pytest.raises(BitstreamError):
        unpack_strings(data, 4)
    with pytest.raises(BitstreamError):
        unpack_strings(b"\xff\xff\xff\xff" + b"x" * 10, 1)  # a 4 GiB length is refused, not allocated


def test_shift_density_translates_each_channel_exactly() -> None:
    """``shift_density`` moves a token density by a per-channel offset: p'(x + d) == p(x), medians + d,
    the coded stream of shifted data equals the original's, and a density moved onto far-away data
    codes it cheaply (the floored likelihoods are gone)."""
    from compressai.entropy_models import EntropyBottleneck

    from nvcodec.entropy.tokens import shift_density

    torch.manual_seed(0)
    bottleneck = EntropyBottleneck(3, init_scale=1.0).eval()  # a narrow density
    with torch.no_grad():  # per-channel shapes, so that a wrong broadcast or channel index would show
        for name, parameter in bottleneck.named_parameters():
            if not name.endswith("quantiles"):
                parameter.add_(torch.randn_like(parameter) * 0.7)
    shift = torch.tensor([6.25, -2.5, 0.75])
    x = torch.linspace(-4, 4, 17).repeat(3, 1, 1)  # (C, 1, N)
    before = bottleneck._likelihood(x)[0]
    medians = bottleneck._get_medians().detach().flatten().clone()
    data = (torch.randn(4, 3, 1) * 2.0 + medians.view(1, 3, 1)).round()
    bottleneck.update(force=True)
    strings = bottleneck.compress(data)
    shift_density(bottleneck, shift)
    after = bottleneck._likelihood(x + shift.view(3, 1, 1))[0]
    assert torch.allclose(after, before, atol=1e-5)
    assert torch.allclose(bottleneck._get_medians().detach().flatten(), medians + shift)
    bottleneck.update(force=True)
    assert bottleneck.compress(data + shift.view(1, 3, 1)) == strings
    assert torch.allclose(bottleneck.decompress(strings, (1,)), data + shift.view(1, 3, 1), atol=1e-5)
    far = torch.full((1, 3, 1), 30.0)  # far outside the density's mass: floored likelihoods
    _, floored = bottleneck(far, training=False)
    assert float(floored.min()) <= 1e-6
    shift_density(bottleneck, 30.0 - bottleneck._get_medians().detach().flatten())
    _, fixed = bottleneck(far, training=False)
    assert float(fixed.min()) > 1e-3
