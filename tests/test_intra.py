"""Intra codec: attention score terms, frequency split, slice layout, exact round trips, bit-exact
decoding in fresh processes (1 and 2 threads), stream validation, a training smoke run."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nvcodec.bench.analysis import low_frequency_share, slice_low_frequency_shares
from nvcodec.codec.layers import FrequencyDisentangle, WindowAttention, hadamard_scores
from nvcodec.codec.model import IntraCodec, IntraConfig
from nvcodec.codec.video import IntraVideoCodec, pack_chunk, unpack_chunk
from nvcodec.errors import BitstreamError, EntropyModelNotReadyError, InputError, UnsupportedVersionError
from nvcodec.interface import ChunkData
from nvcodec.registry import create_config, create_model, get_spec, load_weights, save_weights

TINY = "intra-tiny"


def _tiny_model(seed: int = 0, ready: bool = True) -> IntraCodec:
    torch.manual_seed(seed)
    model = create_model(TINY).eval()
    if ready:
        model.update_entropy_models()
    return model


@pytest.fixture(scope="module")
def tiny_codec() -> IntraVideoCodec:
    return IntraVideoCodec(_tiny_model(), TINY)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 3.0, yy * 2.0, (xx + yy) * 1.5], -1) % 256
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


# -- attention ---------------------------------------------------------------------------------
def _qk(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 16, 8, generator=gen), torch.randn(2, 3, 16, 8, generator=gen)


def test_query_side_hadamard_term_cancels_in_softmax() -> None:
    q, k = _qk()
    p_ek = torch.randn(3, 8) * 5
    plain = hadamard_scores(q, k)
    with_ek = hadamard_scores(q, k, p_ek=p_ek)
    assert not torch.allclose(plain, with_ek)  # the logits do change ...
    assert torch.allclose(plain.softmax(-1), with_ek.softmax(-1), atol=1e-6)  # ... the attention does not


def test_key_side_hadamard_term_and_position_bias_change_attention() -> None:
    q, k = _qk()
    plain = hadamard_scores(q, k).softmax(-1)
    p_eq = torch.randn(3, 8)
    with_eq = hadamard_scores(q, k, p_eq=p_eq).softmax(-1)
    assert (plain - with_eq).abs().max() > 1e-2
    # the p_eq term is exactly p_eq . (q_j * k_j) added to column j
    manual = q @ k.transpose(-2, -1) + torch.einsum("bhjd,hd->bhj", q * k, p_eq)[:, :, None, :]
    assert torch.allclose(hadamard_scores(q, k, p_eq=p_eq), manual, atol=1e-5)
    bias = torch.randn(3, 16, 16)
    with_bias = hadamard_scores(q, k, bias=bias).softmax(-1)
    assert (plain - with_bias).abs().max() > 1e-2


def test_window_attention_uses_relative_bias_and_hadamard_switch() -> None:
    torch.manual_seed(0)
    attention = WindowAttention(16, heads=2, window=4, hadamard=True)
    bias = attention.relative_bias()
    assert bias.shape == (2, 16, 16)
    # b[i - j] depends on the offset only: tokens (0,0)->(0,1) and (1,1)->(1,2) share an entry
    assert torch.equal(bias[:, 0, 1], bias[:, 5, 6])
    x = torch.randn(1, 16, 6, 10)  # not a multiple of the window: padded inside
    before = attention(x)
    assert before.shape == x.shape
    with torch.no_grad():
        attention.p_eq.normal_(0, 1)
    assert not torch.allclose(before, attention(x))
    assert WindowAttention(16, heads=2, window=4, hadamard=False).p_eq is None


# -- frequency split ---------------------------------------------------------------------------
def test_low_frequency_share_of_simple_signals() -> None:
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    smooth = torch.cos(2 * torch.pi * xx / 16)  # 1/16 cycles per sample
    checker = (-1.0) ** (xx + yy)  # 0.5 cycles per sample on both axes
    shares = low_frequency_share(torch.stack([smooth, checker])[None], cutoff=0.25)
    assert shares[0] > 0.99 and shares[1] < 0.01
    per_slice = slice_low_frequency_shares(torch.stack([smooth, smooth, checker])[None], (2, 1))
    assert [s.channel_stop for s in per_slice] == [2, 3]
    assert per_slice[0].low_share > 0.99 and per_slice[1].low_share < 0.01


def test_frequency_disentangle_puts_low_frequency_first() -> None:
    torch.manual_seed(0)
    module = FrequencyDisentangle(16, low_channels=8, high_channels=8)
    with torch.no_grad():
        out = module(torch.randn(4, 16, 32, 32))
    low, high = slice_low_frequency_shares(out, (8, 8), cutoff=0.25)
    assert low.low_share > 0.8
    assert low.low_share > high.low_share + 0.3


# -- configuration -------------------------------------------------------------------------------
def test_tiny_config_and_slices() -> None:
    config = create_config(TINY)
    assert (config.channels, config.latent_channels, config.slice_sizes, config.hyper_channels) == (16, 32, (4, 4, 8, 16), 16)
    assert config.coding_slice_sizes == (4, 4, 8, 16) and config.low_channels == 8
    ablation = dataclasses.replace(config, frequency_order=False)
    assert ablation.coding_slice_sizes == (8, 8, 8, 8)
    assert IntraCodec(ablation).slice_coder.slice_sizes == (8, 8, 8, 8)
    with pytest.raises(ValueError):
        IntraConfig(latent_channels=32, slice_sizes=(4, 4))
    assert create_config("intra-small").quality_levels == 6


def test_forward_shapes() -> None:
    model = _tiny_model().train()
    x = torch.rand(2, 3, 64, 128)
    out = model(x, 2)
    assert out.x_hat.shape == x.shape
    assert out.y_likelihoods.shape == (2, 32, 4, 8) and out.z_likelihoods.shape == (2, 16, 1, 2)
    assert float(out.bits().detach()) > 0


def test_rate_grows_with_the_level_gain() -> None:
    """Level q codes y * gain[q]: with gains 2, 4, ..., 64 the coded bytes grow strictly with q.

    The untrained tiny model's initial gains (0.19 .. 1) leave its small y all zeros at every level
    (36 bytes each), so the gains are set explicitly: this checks that ``compress`` quantises with
    the gain of the level it is given, not that training makes the learned gains monotonic.
    """
    model = _tiny_model()
    with torch.no_grad():
        log_gains = math.log(2.0) * (torch.arange(6, dtype=torch.float32) + 1)  # (L,) gains 2 .. 64
        model.log_gain.copy_(log_gains[:, None].expand_as(model.log_gain))
        model.log_inv_gain.copy_(-model.log_gain)
    image = torch.from_numpy(_image(64, 96)).permute(2, 0, 1)[None].float() / 255
    sizes = [model.compress(image, q).num_bytes for q in range(6)]
    assert all(low < high for low, high in zip(sizes, sizes[1:])), sizes


# -- coding --------------------------------------------------------------------------------------
def test_compress_before_update_raises() -> None:
    model = _tiny_model(ready=False)
    with pytest.raises(EntropyModelNotReadyError):
        model.compress(torch.rand(1, 3, 32, 32), 0)


@pytest.mark.parametrize("height,width", [(143, 175), (1, 1), (64, 64), (5, 130)])
def test_round_trip_odd_sizes(tiny_codec: IntraVideoCodec, height: int, width: int) -> None:
    frames = np.stack([_image(height, width, 0), _image(height, width, 1)])
    progress: list[int] = []
    encoded = tiny_codec.encode(frames, 3, progress=progress.append)
    assert progress == [1, 1] and len(encoded.chunks) == 2
    assert encoded.reconstruction is not None and encoded.reconstruction.shape == frames.shape
    for chunk in encoded.chunks:
        decoded = tiny_codec.decode_chunk(encoded.params, chunk, height, width)
        assert decoded.shape == (1, height, width, 3) and decoded.dtype == np.uint8
        assert np.array_equal(decoded[0], encoded.reconstruction[chunk.frame_start])


def test_encoder_reconstruction_equals_decompress() -> None:
    model = _tiny_model()
    x = torch.rand(1, 3, 70, 90)
    encoded = model.encode(x, 1)
    assert torch.equal(encoded.x_hat, model.decompress(encoded.compressed))
    assert encoded.x_hat.shape == x.shape


def test_damaged_chunks_raise_bitstream_error(tiny_codec: IntraVideoCodec) -> None:
    frames = _image(40, 50)[None]
    encoded = tiny_codec.encode(frames, 2)
    payload = encoded.chunks[0].payload
    assert encoded.params["chunk_version"] == 2 and payload[0] == 2  # version, latent size, the strings
    bad = {
        "empty": b"",
        "truncated length": payload[:3],
        "truncated strings": payload[:-3],
        "trailing bytes": payload + b"\x00",
        "bad version": b"\x09" + payload[1:],
        "version 1 byte in a version-2 stream": b"\x01" + payload[1:],
        "other latent size": payload[:1] + b"\x02\x00" + payload[3:],
        "huge length": payload[:5] + b"\xff\xff\xff\x7f" + payload[9:],
    }
    for reason, data in bad.items():
        try:
            tiny_codec.decode_chunk(encoded.params, ChunkData(0, 1, data), 40, 50)
        except BitstreamError:
            continue
        pytest.fail(f"{reason}: decoded without BitstreamError")
    with pytest.raises(BitstreamError):
        tiny_codec.decode_chunk(encoded.params, encoded.chunks[0], 40, 70)  # a frame size with another latent size
    for params in ({"quality": 9, "chunk_version": 2}, {"quality": 2, "chunk_version": "2"}):
        with pytest.raises(BitstreamError):
            tiny_codec.decode_chunk(params, encoded.chunks[0], 40, 50)
    with pytest.raises(UnsupportedVersionError, match="chunk version 3"):
        tiny_codec.decode_chunk({"quality": 2, "chunk_version": 3}, encoded.chunks[0], 40, 50)
    with pytest.raises(InputError):
        tiny_codec.encode(frames, 6)


def test_version_1_chunks_still_decode_and_are_checked(tiny_codec: IntraVideoCodec) -> None:
    """The old layout repeated quality and sizes in every chunk: it decodes to the same frame, and a
    chunk that disagrees with its header is refused."""
    frames = _image(40, 50)[None]
    encoded = tiny_codec.encode(frames, 2)
    stream = tiny_codec.parse_params(encoded.params, 40, 50)
    v1 = pack_chunk(unpack_chunk(encoded.chunks[0].payload, stream), version=1)
    assert len(v1) == len(encoded.chunks[0].payload) + 11
    old_params = {"quality": 2}  # the oldest headers had no chunk_version
    np.testing.assert_array_equal(tiny_codec.decode_chunk(old_params, ChunkData(0, 1, v1), 40, 50), encoded.reconstruction)
    for reason, data, height in [("other quality", v1[:1] + b"\x05" + v1[2:], 40), ("reserved", v1[:2] + b"\x01\x00" + v1[4:], 40),
                                 ("frame size mismatch", v1, 41), ("truncated header", v1[:7], 40)]:
        with pytest.raises(BitstreamError):
            tiny_codec.decode_chunk(old_params, ChunkData(0, 1, data), height, 50)
            pytest.fail(reason)
    with pytest.raises(BitstreamError, match="differs from the header"):  # a v1 chunk in a v2 stream
        tiny_codec.decode_chunk(encoded.params, ChunkData(0, 1, v1), 40, 50)


def test_stream_params_are_parsed_once_into_a_frozen_record(tiny_codec: IntraVideoCodec) -> None:
    encoded = tiny_codec.encode(_image(40, 50)[None], 1)
    stream = tiny_codec.parse_params(encoded.params, 40, 50)
    assert (stream.quality, stream.chunk_version, stream.height, stream.width) == (1, 2, 40, 50)
    assert stream.latent_hw == tiny_codec.model.latent_hw_for((40, 50))
    with pytest.raises(dataclasses.FrozenInstanceError):
        stream.quality = 2  # type: ignore[misc]
    np.testing.assert_array_equal(tiny_codec.decode_chunk(stream, encoded.chunks[0], 40, 50), encoded.reconstruction)
    with pytest.raises(BitstreamError, match="parsed for 50x40"):
        tiny_codec.decode_chunk(stream, encoded.chunks[0], 41, 50)


_DECODE_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, torch
    from nvcodec.codec.video import IntraVideoCodec
    from nvcodec.interface import ChunkData
    from nvcodec.registry import load_weights
    weights, stream, out = sys.argv[1:4]
    model, name = load_weights(weights, "intra-small")
    model.update_entropy_models()
    payload = open(stream, "rb").read()
    for threads in (1, 2):  # one fresh process (start-up is the slow part), two thread counts
        torch.set_num_threads(threads)
        frame = IntraVideoCodec(model, name).decode_chunk({"quality": 4, "chunk_version": 2}, ChunkData(0, 1, payload), 200, 264)
        np.save(f"{out}{threads}.npy", frame[0])
    """
)


def test_bit_exact_decode_in_fresh_process(tmp_path: Path) -> None:
    """intra-small's real widths: the shipped weights when present (a trained model is where thread-dependent
    float noise used to flip means and pixels), else an untrained intra-small stored and reloaded."""
    spec = get_spec("intra-small")
    if spec.has_weights:
        weights = spec.weights_path
    else:
        torch.manual_seed(3)
        untrained = create_model("intra-small").eval()
        with torch.no_grad():  # larger gains: more non-zero symbols, as in a trained model
            untrained.log_gain.add_(2.0)
        weights = tmp_path / "small.safetensors"
        save_weights(untrained, "intra-small", weights)
    model, _ = load_weights(weights, "intra-small")  # the stored (float16-rounded) weights, as a decoder sees them
    model.update_entropy_models()
    codec = IntraVideoCodec(model, "intra-small")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller multi-threaded, the decoders 1 and 2: all must agree
    try:
        encoded = codec.encode(_image(200, 264, seed=5)[None], 4)
    finally:
        torch.set_num_threads(previous_threads)
    stream = tmp_path / "chunk.bin"
    stream.write_bytes(encoded.chunks[0].payload)
    script = tmp_path / "decode.py"
    script.write_text(_DECODE_SCRIPT)
    out = tmp_path / "decoded"
    subprocess.run([sys.executable, str(script), str(weights), str(stream), str(out)], check=True)
    for threads in (1, 2):
        assert np.array_equal(np.load(f"{out}{threads}.npy"), encoded.reconstruction[0]), f"{threads} thread(s)"


# -- training ------------------------------------------------------------------------------------
def test_training_smoke(tmp_path: Path) -> None:
    """Three manual-optimisation steps of IntraSystem on a generated image + video folder."""
    pytest.importorskip("pytorch_lightning")
    import pytorch_lightning as pl
    from PIL import Image

    from nvcodec.io import write_video
    from nvcodec.train.data import ImageDataModule
    from nvcodec.train.image import IntraSystem

    Image.fromarray(_image(80, 100)).save(tmp_path / "still.png")
    write_video(tmp_path / "clip.mp4", np.stack([_image(72, 96, s) for s in range(4)]))
    data = ImageDataModule(paths=[str(tmp_path)], crop_size=64, batch_size=2, epoch_length=6, video_frame_stride=2)
    data.setup("fit")
    assert data.train_set is not None and len(data.train_set.images) == 1 and len(data.train_set.frames) == 2
    system = IntraSystem(model_name=TINY, model_overrides={"slice_sizes": [8, 8, 8, 8]})
    assert system.model.config.slice_sizes == (8, 8, 8, 8)
    before = {k: v.clone() for k, v in system.model.state_dict().items() if "g_a" in k}
    trainer = pl.Trainer(
        max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(system, datamodule=data)
    assert trainer.global_step == 3
    after = system.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(k.startswith("model.") for k in system.state_dict())


def test_budget_fractions_follow_the_trainers_max_time(tmp_path: Path) -> None:
    """``_budget_used`` reads Lightning's Timer: a 3-second budget ends near 1.0 with the rate dropped;
    without ``max_time`` a budget-relative schedule is refused when training starts."""
    pytest.importorskip("pytorch_lightning")
    import pytorch_lightning as pl
    from PIL import Image

    from nvcodec.train.data import ImageDataModule
    from nvcodec.train.image import IntraSystem

    Image.fromarray(_image(80, 100)).save(tmp_path / "still.png")
    data = ImageDataModule(paths=[str(tmp_path)], crop_size=64, batch_size=1, epoch_length=4)
    system = IntraSystem(model_name=TINY, lr=1e-3, lr_drop_at=0.5, lr_drop_factor=0.25)
    assert system._budget_used() == 0.0 and system._current_lr() == pytest.approx(1e-3)  # no trainer yet
    quiet = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer = pl.Trainer(max_time={"seconds": 3}, max_steps=100000, **quiet)
    trainer.fit(system, datamodule=data)
    assert 0.9 <= system._budget_used() <= 1.2 and trainer.global_step > 2
    assert system._current_lr() == pytest.approx(2.5e-4)
    with pytest.raises(ValueError, match="max_time"):
        pl.Trainer(max_steps=1, **quiet).fit(IntraSystem(model_name=TINY, lr_drop_at=0.5), datamodule=data)


def test_init_weights_on_a_new_ladder_shift_the_gains(tmp_path: Path) -> None:
    """Fine-tuning onto other lambdas: level q's gains start scaled by sqrt(new/old lambda), the rest as stored."""
    pytest.importorskip("pytorch_lightning")
    from nvcodec.train.image import IntraSystem

    source = _tiny_model(seed=3)
    path = tmp_path / "tiny.safetensors"
    save_weights(source, TINY, path)
    old = source.config.lambdas
    new = tuple(lam * 4.0 ** (q / (len(old) - 1)) for q, lam in enumerate(old))  # level 0 kept, top x4
    system = IntraSystem(model_name=TINY, model_overrides={"lambdas": list(new)}, init_weights=str(path))
    model = system.model
    assert model.config.lambdas == new
    stored, _ = load_weights(path)
    for q in range(len(old)):
        ratio = (model._gain(q) / stored._gain(q)).flatten()
        expected = math.sqrt(new[q] / old[q])
        assert torch.allclose(ratio, torch.full_like(ratio, expected), rtol=1e-5), q
        assert torch.allclose(model._gain(q) * model._inv_gain(q), stored._gain(q) * stored._inv_gain(q), rtol=1e-5)
    assert torch.equal(model.g_s[0].weight, stored.g_s[0].weight)
    same = IntraSystem(model_name=TINY, init_weights=str(path)).model  # same ladder: gains untouched
    assert torch.equal(same.log_gain, stored.log_gain)


@pytest.mark.parametrize(
    "override, new_modules, zero_started",
    [
        ({"bypass": True}, ("g_a_bypass", "g_s_bypass"), ("g_a_bypass.weight", "g_s_bypass.weight")),
        ({"detail_units": True}, ("g_s_detail",), ("g_s_detail.0.body.2.weight", "g_s_detail.1.body.2.weight")),
        ({"stride8_units": 2}, ("g_s_stride8",), ("g_s_stride8.0.body.2.weight", "g_s_stride8.1.body.2.weight")),
        ({"linear_path": True}, ("g_a_linear", "g_s_linear"), ("g_a_linear.weight", "g_s_linear.weight")),
    ],
)
def test_zero_initialised_additions_start_as_the_model_without_them_and_learn(
    override: dict, new_modules: tuple[str, ...], zero_started: tuple[str, ...]
) -> None:
    """The stride-16 bypass convolutions and the g_s residual units start at zero: a model without them
    loads into one with them (only their own tensors missing) and computes the same function; their
    zero-started weights get gradient from the first step, and once non-zero they change the output."""
    plain = _tiny_model()
    grown = create_model(TINY, **override).eval()
    result = grown.load_state_dict(plain.state_dict(), strict=False)
    added = sorted(k for k in grown.state_dict() if k.split(".")[0] in new_modules)
    assert added and sorted(result.missing_keys) == added
    assert not result.unexpected_keys
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(grown.synthesis(grown.analysis(x), 2), plain.synthesis(plain.analysis(x), 2))
    ((grown.synthesis(grown.analysis(x), 2) - x) ** 2).mean().backward()
    assert all(grown.get_parameter(name).grad.abs().sum() > 0 for name in zero_started)
    with torch.no_grad():
        for name in zero_started:
            grown.get_parameter(name).normal_(0.0, 0.05)
        assert not torch.equal(grown.synthesis(grown.analysis(x), 2), plain.synthesis(plain.analysis(x), 2))


def test_added_modules_learn_at_the_scaled_rate(tmp_path: Path) -> None:
    """With ``init_weights`` and ``model_overrides``, the parameters the file lacks form their own Adam
    group whose step size is ``lr * new_lr_scale``; everything loaded keeps ``lr``."""
    pytest.importorskip("pytorch_lightning")
    from unittest import mock

    from nvcodec.train.image import IntraSystem

    path = tmp_path / "tiny.safetensors"
    save_weights(_tiny_model(seed=5), TINY, path)
    system = IntraSystem(
        model_name=TINY, model_overrides={"linear_path": True}, init_weights=str(path), lr=1e-3, new_lr_scale=10.0
    )
    assert system.fresh_parameters == {"g_a_linear.weight", "g_a_linear.bias", "g_s_linear.weight", "g_s_linear.bias"}
    net_opt, _ = system.configure_optimizers()
    base, fresh = net_opt.param_groups
    names = {id(p): name for name, p in system.model.named_parameters()}
    assert {names[id(p)] for p in fresh["params"]} == system.fresh_parameters
    assert len(base["params"]) + len(fresh["params"]) == len(list(system.model.parameters())) - 1  # less the quantiles
    batch = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with (
        mock.patch.object(IntraSystem, "optimizers", return_value=(mock.MagicMock(param_groups=net_opt.param_groups), mock.MagicMock())),
        mock.patch.object(IntraSystem, "manual_backward"),
        mock.patch.object(IntraSystem, "clip_gradients"),
        mock.patch.object(IntraSystem, "global_step", new_callable=mock.PropertyMock, return_value=101),
    ):
        system.training_step(batch, 0)
    assert base["lr"] == pytest.approx(1e-3) and fresh["lr"] == pytest.approx(1e-2)
    plain = IntraSystem(model_name=TINY, init_weights=str(path), new_lr_scale=10.0)  # nothing added: one group
    assert not plain.fresh_parameters and len(plain.configure_optimizers()[0].param_groups) == 1
    unscaled = IntraSystem(model_name=TINY, model_overrides={"linear_path": True}, init_weights=str(path))
    assert len(unscaled.configure_optimizers()[0].param_groups) == 1  # scale 1: the layout older checkpoints resume into


def test_learning_rate_warms_up_then_drops() -> None:
    """``lr_warmup_steps`` ramps the step size linearly from lr / warmup to lr; ``lr_drop_step`` then scales it."""
    from unittest import mock

    from nvcodec.train.image import IntraSystem

    system = IntraSystem(model_name=TINY, lr=1e-3, lr_warmup_steps=4, lr_drop_step=10, lr_drop_factor=0.5)
    expected = {0: 2.5e-4, 1: 5e-4, 3: 1e-3, 4: 1e-3, 9: 1e-3, 10: 5e-4, 50: 5e-4}
    with mock.patch.object(IntraSystem, "global_step", new_callable=mock.PropertyMock) as step:
        for value, lr in expected.items():
            step.return_value = value
            assert system._current_lr() == pytest.approx(lr), value
    assert IntraSystem(model_name=TINY, lr=1e-3)._current_lr() == pytest.approx(1e-3)  # no warm-up by default


def test_budget_schedule_drops_the_rate_and_grows_the_units() -> None:
    """``lr_drop_at`` / ``grow_units_at`` are fractions of the wall-time budget: before ``grow_units_at`` the
    zero-started residual units are skipped (no gradient, same output), after it they join and learn; the
    learning rate drops once ``lr_drop_at`` of the budget has passed. Both refuse what they cannot do."""
    pytest.importorskip("pytorch_lightning")
    from unittest import mock

    from nvcodec.codec.layers import ResidualUnit
    from nvcodec.train.image import IntraSystem

    overrides = {"detail_units": True, "stride8_units": 1}
    torch.manual_seed(0)
    system = IntraSystem(model_name=TINY, model_overrides=overrides, lr=1e-3, lr_drop_at=0.6, lr_drop_factor=0.5, grow_units_at=0.3)
    units = [m for m in system.model.modules() if isinstance(m, ResidualUnit)]
    assert len(system.growing) == len(units) == 3
    net_opt, _ = system.configure_optimizers()
    batch = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    unit_params = [p for unit in units for p in unit.parameters()]

    def step(budget: float) -> float:
        for p in system.model.parameters():
            p.grad = None
        with (
            mock.patch.object(IntraSystem, "_budget_used", return_value=budget),
            mock.patch.object(IntraSystem, "optimizers", return_value=(net_opt, mock.MagicMock())),
            mock.patch.object(IntraSystem, "manual_backward", side_effect=lambda loss: loss.backward()),
            mock.patch.object(IntraSystem, "clip_gradients"),
            mock.patch.object(IntraSystem, "log_dict"),
        ):
            system.training_step(batch, 0)
        return net_opt.param_groups[0]["lr"]

    assert step(0.1) == pytest.approx(1e-3)
    assert not any(unit.active for unit in units) and all(p.grad is None for p in unit_params)
    assert all(unit.is_zero for unit in units)  # skipped: untouched
    assert step(0.4) == pytest.approx(1e-3)
    assert all(unit.active for unit in units) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in unit_params)
    assert not all(unit.is_zero for unit in units)  # they learn once grown
    assert step(0.7) == pytest.approx(5e-4)

    with pytest.raises(ValueError, match="residual units"):
        IntraSystem(model_name=TINY, grow_units_at=0.5)  # intra-tiny has none
    with pytest.raises(ValueError, match="fraction"):
        IntraSystem(model_name=TINY, lr_drop_at=1.5)
    with pytest.raises(ValueError, match="not both"):
        IntraSystem(model_name=TINY, lr_drop_at=0.5, lr_drop_step=100)
    with pytest.raises(ValueError, match="at zero"):  # trained units cannot be skipped without changing the model
        IntraSystem(model_name="intra-small", init_weights="intra-small", grow_units_at=0.5)


def test_resume_with_a_longer_budget_refuses_to_undo_the_schedule() -> None:
    """Resumed with a longer ``max_time``, the fractions lie later: trained units before ``grow_units_at`` and a
    restored dropped rate before ``lr_drop_at`` are refused at train start; a fresh run starts."""
    pytest.importorskip("pytorch_lightning")
    from unittest import mock

    from nvcodec.train.image import IntraSystem

    system = IntraSystem(model_name=TINY, model_overrides={"detail_units": True}, lr=1e-3, lr_drop_at=0.6, grow_units_at=0.5)
    net_opt, _ = system.configure_optimizers()

    def start(budget: float) -> None:
        with (
            mock.patch.object(IntraSystem, "_timer", return_value=mock.MagicMock()),
            mock.patch.object(IntraSystem, "_budget_used", return_value=budget),
            mock.patch.object(IntraSystem, "optimizers", return_value=(net_opt, mock.MagicMock())),
        ):
            system.on_train_start()

    start(0.3)  # fresh: units at zero, rate as configured
    with torch.no_grad():
        system.growing[0].body[2].weight.add_(1.0)  # as a resumed run whose units have grown
    with pytest.raises(ValueError, match="grow_units_at"):
        start(0.3)
    start(0.55)  # past grow_units_at: fine
    net_opt.param_groups[0]["lr"] = 1e-4  # restored from a run whose rate had dropped
    with pytest.raises(ValueError, match="lr_drop_at"):
        start(0.55)
    start(0.7)  # past lr_drop_at: fine


def test_live_bypass_starts_the_bypass_at_default_init_only_from_scratch() -> None:
    """``live_bypass``: a from-scratch intra's bypass convolutions start non-zero (so y gets the M-channel route
    from step 0 and the model's function differs from the zero-started one); refused with weights or without bypass."""
    pytest.importorskip("pytorch_lightning")
    from nvcodec.train.image import IntraSystem

    torch.manual_seed(0)
    zero = IntraSystem(model_name=TINY, model_overrides={"bypass": True})
    live = IntraSystem(model_name=TINY, model_overrides={"bypass": True}, live_bypass=True)
    for system, started in ((zero, False), (live, True)):
        for layer in (system.model.g_a_bypass, system.model.g_s_bypass):
            assert bool(layer.weight.abs().sum() > 0) is started
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        main_path = live.model.g_a(x)  # y without the bypass
        assert not torch.allclose(live.model.analysis(x), main_path)  # the bypass adds to y from step 0
        assert torch.equal(zero.model.analysis(x), zero.model.g_a(x))  # zero-started: no contribution yet
    with pytest.raises(ValueError, match="from scratch"):
        IntraSystem(model_name=TINY, live_bypass=True)  # no bypass
    with pytest.raises(ValueError, match="from scratch"):
        IntraSystem(model_name="intra-small", init_weights="intra-small", live_bypass=True)


def test_train_only_freezes_all_but_the_named_parts(tmp_path: Path) -> None:
    """``train_only`` prefixes: only those parameters get trained (a training step leaves the rest
    bit-identical), the aux step is skipped when the quantiles are frozen, and an unknown prefix is an error."""
    pytest.importorskip("pytorch_lightning")
    from unittest import mock

    from nvcodec.train.image import IntraSystem

    path = tmp_path / "tiny.safetensors"
    save_weights(_tiny_model(seed=7), TINY, path)
    system = IntraSystem(model_name=TINY, init_weights=str(path), lr=1e-3, train_only=["g_a.", "log_gain"])
    assert not system.train_aux
    trainable = {name for name, p in system.model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("g_a.", "log_gain")) for name in trainable)
    net_opt, aux_opt = system.configure_optimizers()
    before = {k: v.clone() for k, v in system.model.state_dict().items()}
    batch = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with (
        mock.patch.object(IntraSystem, "optimizers", return_value=(net_opt, aux_opt)),
        mock.patch.object(IntraSystem, "manual_backward", side_effect=lambda loss: loss.backward()),
        mock.patch.object(IntraSystem, "clip_gradients"),
        mock.patch.object(IntraSystem, "global_step", new_callable=mock.PropertyMock, return_value=101),
    ):
        system.training_step(batch, 0)
    after = system.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("g_a.", "log_gain")) for k in changed)
    with pytest.raises(ValueError, match="matches no parameter"):
        IntraSystem(model_name=TINY, train_only=["g_x."])
