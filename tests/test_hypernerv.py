"""hypernerv: decoder spec and fusion, tiling, token coding, codec round trips, bit-exact decoding."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from nvcodec.errors import BitstreamError, EntropyModelNotReadyError, InputError, ModelConfigError, UnsupportedVersionError
from nvcodec.geometry import TileGrid
from nvcodec.hypernerv.decoder import NervDecoder, fuse_weights, positional_encoding
from nvcodec.hypernerv.model import CompressedClip, edge_weights
from nvcodec.hypernerv.video import HyperNervVideoCodec, pack_payload, unpack_payload
from nvcodec.interface import ChunkData
from nvcodec.registry import create_config, create_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = create_model("hypernerv-tiny").eval()
    model.update_entropy_models()
    return model


@pytest.fixture(scope="module")
def codec(model):
    return HyperNervVideoCodec(model, "hypernerv-tiny")


@pytest.fixture(scope="module")
def clip_frames() -> np.ndarray:
    """A 12-frame 40x56 clip with structure (moving gradient + noise), (T, H, W, 3) uint8."""
    rng = np.random.default_rng(1)
    t, y, x = np.meshgrid(np.arange(12), np.arange(40), np.arange(56), indexing="ij")
    base = 128 + 60 * np.sin((x + 2 * t) / 7.0) + 40 * np.cos(y / 5.0)
    frames = np.stack([base, base[:, ::-1] * 0.8, 255 - base], axis=-1) + rng.normal(0, 8, (12, 40, 56, 3))
    return frames.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def encoded(codec, clip_frames):
    return codec.encode(clip_frames, quality=2)


def test_fused_weight_shapes_match_spec(model):
    specs = model.layer_specs
    codes = torch.randn(3, model.num_weight_tokens, model.config.hypernet.code_channels)
    modulations = model.token_decoder(codes)
    fused = model.decoder.fused_weights(modulations)
    assert [s.name for s in specs] == list(fused)
    for spec in specs:
        assert tuple(modulations[spec.name].shape) == (3, *spec.modulation_shape)
        assert tuple(fused[spec.name].shape) == (3, *spec.shape)
    # A modulation of ones gives back the base weights (fusion renormalises to the base norm).
    ones = {s.name: torch.ones(2, *s.modulation_shape) for s in specs}
    for spec in specs:
        torch.testing.assert_close(model.decoder.fused_weights(ones)[spec.name][1], model.decoder.weights[spec.name])


def test_modulation_shape_mismatch_is_a_clear_error(model):
    specs = model.layer_specs
    bad = {s.name: torch.ones(1, *s.modulation_shape) for s in specs}
    bad[specs[2].name] = torch.ones(1, specs[2].groups, specs[2].in_features + 1)
    with pytest.raises(ValueError, match=specs[2].name):
        model.decoder.fused_weights(bad)
    with pytest.raises(ValueError, match="spec needs"):
        model.decoder.fused_weights({k: v for k, v in bad.items() if k != "head"})
    with pytest.raises(ValueError):
        fuse_weights(torch.ones(6, 4, 3, 3), torch.ones(1, 4, 4))  # 4 groups do not divide 6 outputs


def test_positional_encoding_range():
    t = torch.linspace(0, 1, 101)
    pe = positional_encoding(t, 8)
    assert pe.shape == (101, 16)
    assert pe.min() >= -1.0 and pe.max() <= 1.0
    assert pe.min() < -0.99 and pe.max() > 0.99  # the range is used, not squashed
    torch.testing.assert_close(pe[:, :8] ** 2 + pe[:, 8:] ** 2, torch.ones(101, 8))
    assert len({tuple(row.tolist()) for row in positional_encoding(torch.arange(8) / 8, 4)}) == 8


@pytest.mark.parametrize("size,tile,overlap", [((143, 175), 64, 0), ((143, 175), 64, 8), ((40, 56), 16, 0), ((10, 7), 16, 2)])
def test_tiling_covers_every_pixel_once_after_cropping(size, tile, overlap):
    height, width = size
    grid = TileGrid(height, width, tile, tile, overlap)
    frame = torch.arange(height * width, dtype=torch.float32).reshape(1, height, width)
    tiles = grid.split(frame)
    assert tiles.shape == (grid.num_tiles, 1, tile, tile)
    coverage = torch.zeros(*grid.padded_hw)
    for r, c in grid.starts:
        coverage[r : r + tile, c : c + tile] += 1
    assert coverage.min() >= 1  # every (padded) pixel is covered by some tile
    merged = grid.merge(tiles)
    assert merged.shape == frame.shape  # cropped back to the frame
    # Blend weights are normalised, so each pixel is counted exactly once in total: identity.
    if overlap == 0:
        torch.testing.assert_close(merged, frame, rtol=0, atol=0)
    else:
        torch.testing.assert_close(merged, frame, rtol=1e-6, atol=1e-3)
    marked = grid.merge(torch.ones_like(tiles))
    torch.testing.assert_close(marked, torch.ones_like(frame), rtol=0, atol=1e-6)


def test_token_quantisation_round_trip(model):
    coder = model.token_coder
    tokens = torch.randn(4, coder.num_tokens, coder.channels) * 3
    strings = coder.compress(tokens)
    assert len(strings) == 4 and all(isinstance(s, bytes) and s for s in strings)
    decoded = coder.decompress(strings)
    rounded, _ = coder(tokens, training=False)
    torch.testing.assert_close(decoded, rounded, rtol=0, atol=0)
    assert (decoded - tokens).abs().max() <= 0.5 + 1e-5


def test_level_entropy_models_code_each_level_with_its_own_density(clip_frames):
    """``level_entropy_models``: one density per quality level, chosen by the stream's level; a level's
    strings decode only with its own density, and the codec round trip still equals the encoder's view."""
    torch.manual_seed(0)
    model = create_model("hypernerv-tiny", level_entropy_models=True).eval()
    coder = model.token_coder
    assert coder.levels == model.config.quality_levels and len(coder.bottlenecks) == coder.levels
    with torch.no_grad():  # make the levels' densities differ, as fitted ones do
        for level, bottleneck in enumerate(coder.bottlenecks):
            bottleneck.quantiles[:, :, 1] += 0.25 * level
            bottleneck.biases[0].add_(0.5 * level)
    model.update_entropy_models()
    tokens = torch.randn(4, coder.num_tokens, coder.channels) * 3
    levels = torch.tensor([0, 1, 1, 3])
    rounded, likelihoods = coder(tokens, training=False, levels=levels)
    for i, level in enumerate(levels.tolist()):
        strings = coder.compress(tokens[i : i + 1], level)
        torch.testing.assert_close(coder.decompress(strings, level), rounded[i : i + 1], rtol=0, atol=0)
        _, own = coder(tokens[i : i + 1], training=False, levels=levels[i : i + 1])
        torch.testing.assert_close(own, likelihoods[i : i + 1])
    assert coder.compress(tokens[:1], 0) != coder.compress(tokens[:1], 3)
    with pytest.raises(ValueError, match="levels of shape"):
        coder(tokens, training=False)
    codec = HyperNervVideoCodec(model, "hypernerv-tiny")
    for quality in (0, 3):
        encoded = codec.encode(clip_frames[:8], quality=quality)
        np.testing.assert_array_equal(codec.decode_chunk(encoded.params, encoded.chunks[0], 40, 56), encoded.reconstruction)


def test_coding_before_update_raises():
    fresh = create_model("hypernerv-tiny")
    with pytest.raises(EntropyModelNotReadyError):
        fresh.token_coder.compress(torch.zeros(1, fresh.num_weight_tokens, fresh.config.hypernet.code_channels))


def test_encode_decode_round_trip_equals_reconstruction(codec, encoded, clip_frames):
    assert [(c.frame_start, c.frame_stop) for c in encoded.chunks] == [(0, 8), (8, 12)]  # short last clip
    assert encoded.reconstruction.shape == clip_frames.shape and encoded.reconstruction.dtype == np.uint8
    decoded = np.concatenate([codec.decode_chunk(encoded.params, c, 40, 56) for c in encoded.chunks])
    np.testing.assert_array_equal(decoded, encoded.reconstruction)
    json.dumps(encoded.params)  # header params are JSON-able
    assert encoded.params["clip_len"] == 8 and encoded.params["tile_size"] == 16
    # The bitstream-only path yields the same chunks, and the stats count the token strings' bytes.
    assert list(codec.compress_clips(clip_frames, 2)) == encoded.chunks
    framing = sum(len(c.payload) for c in encoded.chunks) - encoded.stats["token_bytes"]
    assert framing == 2 * (1 + 4 * encoded.stats["num_tiles"])  # per chunk: version byte + u32 length per tile


def test_decode_middle_chunk_only(model, clip_frames):
    codec = HyperNervVideoCodec(model, "hypernerv-tiny")
    frames = np.concatenate([clip_frames, clip_frames[::-1]])  # 24 frames -> 3 chunks
    encoded = codec.encode(frames, quality=1)
    middle = encoded.chunks[1]
    assert (middle.frame_start, middle.frame_stop) == (8, 16)
    fresh = HyperNervVideoCodec(model, "hypernerv-tiny")
    np.testing.assert_array_equal(fresh.decode_chunk(encoded.params, middle, 40, 56), encoded.reconstruction[8:16])


def test_odd_size_and_overlap(model):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (3, 23, 37, 3), dtype=np.uint8)
    codec = HyperNervVideoCodec(model, "hypernerv-tiny", overlap=4)
    encoded = codec.encode(frames, quality=0)
    assert encoded.params["overlap"] == 4
    np.testing.assert_array_equal(codec.decode_chunk(encoded.params, encoded.chunks[0], 23, 37), encoded.reconstruction)


def test_refine_steps_lower_the_rd_loss(codec, model, clip_frames):
    clip = torch.from_numpy(clip_frames[:8]).permute(0, 3, 1, 2).float() / 255.0
    grid = TileGrid(40, 56, 16, 16)
    tiles = grid.split(clip)  # (B, 8, 3, 16, 16)
    with torch.no_grad():
        codes = model.hypernet(tiles)
    refined = model.refine(codes, tiles, quality=3, steps=30, lr=0.05)
    assert not torch.equal(refined, codes)

    def mse(c: torch.Tensor) -> float:
        with torch.no_grad():
            qualities = torch.full((c.shape[0],), 3)
            q, _ = model.token_coder(c * model.gains(qualities), training=False)
            return float(((model.decode_codes(q / model.gains(qualities), 8) - tiles) ** 2).mean())

    assert mse(refined) < mse(codes)


def test_refine_frame_weights_favour_the_weighted_frames(model, clip_frames):
    clip = torch.from_numpy(clip_frames[:8]).permute(0, 3, 1, 2).float() / 255.0
    tiles = TileGrid(40, 56, 16, 16).split(clip)
    with torch.no_grad():
        codes = model.hypernet(tiles)

    def refine(weights: torch.Tensor | None) -> torch.Tensor:
        torch.manual_seed(5)  # the rate term's noise
        return model.refine(codes, tiles, quality=3, steps=30, lr=0.05, frame_weights=weights)

    plain, uniform, first = refine(None), refine(torch.full((8,), 3.0)), refine(torch.eye(8)[0])
    torch.testing.assert_close(uniform, plain)  # weights are normalised to mean 1

    def frame_mse(c: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            qualities = torch.full((c.shape[0],), 3)
            q, _ = model.token_coder(c * model.gains(qualities), training=False)
            return ((model.decode_codes(q / model.gains(qualities), 8) - tiles) ** 2).mean((0, 2, 3, 4))  # (8,)

    assert frame_mse(first)[0] < frame_mse(plain)[0]
    assert frame_mse(first)[1:].mean() > frame_mse(plain)[1:].mean()


def test_codec_refinement_weights_the_clip_edges(model, clip_frames, monkeypatch):
    seen = []
    monkeypatch.setattr(model, "refine", lambda codes, clip, quality, steps, lr, weights=None: seen.append(weights) or codes)
    codec = HyperNervVideoCodec(model, "hypernerv-tiny")
    codec.refine_edge_weight = 2.0
    codec.encode(clip_frames, quality=1, refine_steps=2)  # chunks of 8 and 4 frames
    profile = edge_weights(8, 2.0)
    assert profile[0] == profile[7] == 2.0 and float(profile.min()) < 1.2
    assert [w.tolist() for w in seen] == [profile.tolist(), profile[:4].tolist()]
    seen.clear()
    strided = HyperNervVideoCodec(model, "hypernerv-tiny", clip_stride=6)
    strided.refine_edge_weight = 2.0
    strided.encode(clip_frames, quality=1, refine_steps=2)
    assert seen == [None, None]  # the edge frames are hidden: unweighted
    seen.clear()
    codec.encode(clip_frames, quality=1)  # no refinement: refine is never called
    assert seen == []


def test_damaged_payloads_raise_bitstream_error(codec, encoded):
    chunk = encoded.chunks[0]
    params = encoded.params
    assert chunk.payload[0] == 2  # version, then the tile strings
    cases = [
        b"",  # empty
        chunk.payload[:3],  # truncated length field
        chunk.payload[:-1],  # truncated strings
        chunk.payload + b"\x00",  # trailing bytes
        chunk.payload[:1] + b"\xff\xff\xff\x7f" + chunk.payload[5:],  # absurd string length
        chunk.payload[:1] + b"\x00\x00\x00\x00" + chunk.payload[5:],  # empty tile string
        b"\x01" + chunk.payload[1:],  # a version-1 byte before version-2 contents
    ]
    for payload in cases:
        with pytest.raises(BitstreamError):
            codec.decode_chunk(params, ChunkData(0, 8, payload), 40, 56)
    with pytest.raises(UnsupportedVersionError):
        codec.decode_chunk(params, ChunkData(0, 8, bytes([9]) + chunk.payload[1:]), 40, 56)
    with pytest.raises(BitstreamError):
        codec.decode_chunk(params, chunk, 40, 90)  # frame size needs more tiles than coded
    with pytest.raises(BitstreamError):
        codec.decode_chunk(params, ChunkData(0, 9, chunk.payload), 40, 56)  # more frames than a chunk holds
    for key, value in [("quality", 7), ("tile_size", 32), ("clip_len", 0), ("overlap", "2"), ("version", 0), ("version", 1), ("tiling", "shift"), ("tiling", None)]:
        with pytest.raises(BitstreamError, match=key):
            codec.decode_chunk({**params, key: value}, chunk, 40, 56)
    with pytest.raises(UnsupportedVersionError, match="params version 3"):
        codec.decode_chunk({**params, "version": 3}, chunk, 40, 56)


def test_version_1_payloads_still_decode_and_are_checked(codec, encoded):
    """The old payload repeated quality, frame and tile counts and the token shape in every chunk."""
    chunk, params = encoded.chunks[0], encoded.params
    model = codec.model
    stream = codec.parse_params(params, 40, 56)
    shape = (model.num_weight_tokens, model.config.hypernet.code_channels)
    clip = unpack_payload(chunk.payload, stream, chunk.num_frames, *shape)
    v1 = pack_payload(clip, *shape, version=1)
    assert len(v1) == len(chunk.payload) + 9
    np.testing.assert_array_equal(codec.decode_chunk(params, ChunkData(0, 8, v1), 40, 56), encoded.reconstruction[:8])
    for payload in [v1[:5], v1[:1] + bytes([3]) + v1[2:], v1[:8] + b"\x00\x00" + v1[10:]]:  # short, quality, channels
        with pytest.raises(BitstreamError):
            codec.decode_chunk(params, ChunkData(0, 8, payload), 40, 56)
    with pytest.raises(BitstreamError, match="codes 8 frames"):
        codec.decode_chunk(params, ChunkData(0, 7, v1), 40, 56)


def test_payload_pack_unpack(codec, encoded):
    stream = codec.parse_params(encoded.params, 40, 56)
    strings = [b"abc", b"de"] + [b"f"] * (stream.grid.num_tiles - 2)
    clip = CompressedClip(strings, stream.quality, 5)
    payload = pack_payload(clip, 7, 4)
    assert unpack_payload(payload, stream, 5, 7, 4) == clip
    assert unpack_payload(pack_payload(clip, 7, 4, version=1), stream, 5, 7, 4) == clip
    with pytest.raises(BitstreamError):
        unpack_payload(pack_payload(clip, 7, 4, version=1), stream, 5, 8, 4)
    with pytest.raises(BitstreamError):
        unpack_payload(pack_payload(CompressedClip(strings[:-1], stream.quality, 5), 7, 4), stream, 5, 7, 4)


def test_stream_params_are_parsed_once_into_a_frozen_record(codec, encoded):
    stream = codec.parse_params(encoded.params, 40, 56)
    assert (stream.version, stream.tiling, stream.stride, stream.margin) == (2, "even", 8, 0)
    assert stream.grid == codec.grid_for(encoded.params, 40, 56)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stream.quality = 0  # type: ignore[misc]
    np.testing.assert_array_equal(codec.decode_chunk(stream, encoded.chunks[0], 40, 56), encoded.reconstruction[:8])
    with pytest.raises(BitstreamError, match="parsed for 56x40"):
        codec.decode_chunk(stream, encoded.chunks[0], 40, 90)


_DECODE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from nvcodec.hypernerv.video import HyperNervVideoCodec
    from nvcodec.interface import ChunkData
    from nvcodec.registry import create_model
    spec = json.load(open(sys.argv[1]))
    state = torch.load(sys.argv[2])
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model = create_model("hypernerv-tiny").eval()
        model.load_state_dict(state)
        model.update_entropy_models()  # CDF tables rebuilt in this process, with this thread count
        codec = HyperNervVideoCodec(model, "hypernerv-tiny")
        out = [codec.decode_chunk(spec["params"], ChunkData(a, b, bytes.fromhex(p)), spec["h"], spec["w"]) for a, b, p in spec["chunks"]]
        np.save(sys.argv[3] + f".{threads}.npy", np.concatenate(out))
    """
)


def test_bit_exact_in_fresh_process_with_1_and_2_threads(tmp_path, model, encoded):
    spec = {"params": dict(encoded.params), "h": 40, "w": 56, "chunks": [(c.frame_start, c.frame_stop, c.payload.hex()) for c in encoded.chunks]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    (tmp_path / "decode.py").write_text(_DECODE_SCRIPT)
    out = tmp_path / "decoded"
    subprocess.run([sys.executable, str(tmp_path / "decode.py"), str(tmp_path / "spec.json"), str(tmp_path / "model.pt"), str(out)], check=True, timeout=120)
    for threads in (1, 2):
        np.testing.assert_array_equal(np.load(f"{out}.{threads}.npy"), encoded.reconstruction, err_msg=f"{threads} threads")


def test_tiny_is_a_registry_entry_with_its_own_sub_configs():
    tiny = create_config("hypernerv-tiny")
    small = create_config("hypernerv-small")
    assert (tiny.tile_size, tiny.hypernet.tile_size, tiny.hypernet.dim) == (16, 16, 32)
    assert (small.tile_size, small.hypernet.dim, small.quality_levels) == (64, 128, 4)
    # Overrides reach the sub-config they name; nothing is silently ignored.
    wider = create_config("hypernerv-tiny", hypernet={"token_hidden": 12}, lambdas=[1.0, 2.0])
    assert wider.hypernet.token_hidden == 12 and wider.hypernet.dim == 32 and wider.lambdas == (1.0, 2.0)
    with pytest.raises(ModelConfigError, match="tiny"):
        create_config("hypernerv-tiny", tiny=True)
    with pytest.raises(ModelConfigError, match="tile_size"):
        create_config("hypernerv-tiny", hypernet={"tile_size": 32})  # must match the decoder's tile


def test_training_system_smoke(tmp_path, media):  # the tiny config reads ../shared/media: skips without it
    from pathlib import Path

    import nvcodec.train
    from nvcodec.train.cli import build_cli

    config = Path(nvcodec.train.__file__).parent / "configs" / "hypernerv-tiny-test.yaml"
    cli = build_cli("hypernerv", ["--config", str(config), "--trainer.max_steps", "4", "--trainer.default_root_dir", str(tmp_path)])
    before = {k: v.clone() for k, v in cli.model.model.state_dict().items()}
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 4  # 2 batches x (network + aux optimiser)
    after = cli.model.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(key.startswith("model.") for key in cli.model.state_dict())
    clip = cli.datamodule.train_set[0]
    assert clip.shape == (8, 3, 16, 16) and 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0


def test_spatial_token_seed_starts_as_no_op_and_stays_local():
    torch.manual_seed(0)
    plain = create_model("hypernerv-tiny", hypernet={"spatial_tokens": False}).eval()
    seeded = create_model("hypernerv-tiny").eval()
    missing = seeded.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["hypernet.spatial_proj.bias", "hypernet.spatial_proj.weight"]
    clip = torch.rand(2, 8, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(plain.hypernet(clip), seeded.hypernet(clip))  # zero-initialised seed: same function
        hypernet = seeded.hypernet
        torch.nn.init.normal_(hypernet.spatial_proj.weight)
        first, side = hypernet.spatial_offset, hypernet.spatial_side  # tiny: stem2 tokens 2..17, a 4x4 layout
        assert (first, side) == (2, 4)
        tokens = hypernet.weight_tokens.expand(2, -1, -1)
        changed = clip.clone()
        changed[:, :, :, :4, :4] += 0.5  # top-left 4x4 pixels = stem position 0 only
        before = hypernet._seed_spatial_tokens(tokens, hypernet.patch_embed(clip.transpose(1, 2)))
        after = hypernet._seed_spatial_tokens(tokens, hypernet.patch_embed(changed.transpose(1, 2)))
    differs = (before - after).abs().amax(dim=(0, 2)) > 0  # (N_w,)
    assert differs.nonzero().flatten().tolist() == [first]


def test_init_checkpoint_allows_new_modules_only(tmp_path):
    from nvcodec.train.hypernerv import HyperNervSystem

    plain = HyperNervSystem("hypernerv-tiny", model_overrides={"hypernet": {"spatial_tokens": False}})
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": plain.state_dict()}, path)
    seeded = HyperNervSystem("hypernerv-tiny", init_checkpoint=str(path))
    assert torch.equal(seeded.model.decoder.weights["block0"], plain.model.decoder.weights["block0"])
    torch.save({"state_dict": seeded.state_dict()}, path)
    with pytest.raises(ValueError, match="spatial_proj"):
        HyperNervSystem("hypernerv-tiny", model_overrides={"hypernet": {"spatial_tokens": False}}, init_checkpoint=str(path))


def test_frame_weights_weight_the_distortion_by_clip_position(model):
    torch.manual_seed(3)
    length = model.config.clip_len
    clip = torch.rand(2, length, 3, 16, 16)
    qualities = torch.tensor([0, 1])
    with torch.no_grad():
        output = model(clip, qualities)
        plain = model.rd_loss(output, clip, qualities)
        uniform = model.rd_loss(output, clip, qualities, torch.full((length,), 5.0))
        only_first = model.rd_loss(output, clip, qualities, torch.eye(length)[0])
    torch.testing.assert_close(uniform.loss, plain.loss)
    first_mse = ((output.reconstruction[:, 0] - clip[:, 0]) ** 2).flatten(1).mean(1)
    expected = (plain.bpp + model.lambdas[qualities] * first_mse).mean()  # weights are normalised to mean 1
    torch.testing.assert_close(only_first.loss, expected)
    torch.testing.assert_close(only_first.mse, plain.mse)  # the logged MSE stays the plain mean


def test_edge_weight_profile_and_init_weights(tmp_path):
    from nvcodec.train.hypernerv import HyperNervSystem

    system = HyperNervSystem("hypernerv-tiny", edge_weight=3.0)
    weights = system.frame_weights
    length = system.model.config.clip_len
    assert weights.shape == (length,) and float(weights[0]) == float(weights[-1]) == 3.0
    assert float(weights.min()) < 1.5 and torch.equal(weights, weights.flip(0))
    assert HyperNervSystem("hypernerv-tiny").frame_weights is None
    with pytest.raises(ValueError, match="edge_weight"):
        HyperNervSystem("hypernerv-tiny", edge_weight=0.5)
    with pytest.raises(ValueError, match="not both"):
        HyperNervSystem("hypernerv-tiny", init_checkpoint="x.ckpt", init_weights="hypernerv-small")


def test_init_weights_starts_from_the_shipped_file():
    from nvcodec import registry
    from nvcodec.train.hypernerv import HyperNervSystem

    shipped, _ = registry.load_weights(registry.get_spec("hypernerv-small").weights_path)
    system = HyperNervSystem("hypernerv-small", init_weights="hypernerv-small")
    own, theirs = system.model.state_dict(), shipped.state_dict()
    learned = [k for k in theirs if not (k.endswith("pedestal") or k.endswith(".bound"))]
    assert learned and all(torch.equal(own[k], theirs[k].to(own[k].dtype)) for k in learned)


def test_temporal_terms_start_as_no_op_then_vary_frames_linearly_in_clip_position():
    from nvcodec.train.hypernerv import HyperNervSystem

    torch.manual_seed(0)
    plain = create_model("hypernerv-tiny").eval()
    timed = create_model("hypernerv-tiny", hypernet={"temporal_terms": 2}).eval()
    missing = timed.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["token_decoder.temporal_head.bias", "token_decoder.temporal_head.weight"]
    clip = torch.rand(2, 8, 3, 16, 16)
    qualities = torch.tensor([0, 2])
    with torch.no_grad():
        assert torch.equal(plain(clip, qualities).reconstruction, timed(clip, qualities).reconstruction)
        torch.nn.init.normal_(timed.token_decoder.temporal_head.weight, std=0.5)
        codes = timed.hypernet(clip)
        times = timed.frame_times(8)
        offset = timed.stem_offset(codes, times)  # (B, F, S*S*C0)
        coeffs = timed.token_decoder.temporal(codes)  # (B, K, S*S*C0)
        u = torch.linspace(-1, 1, 8)
        torch.testing.assert_close(offset, u[None, :, None] * coeffs[:, :1] + u[None, :, None] ** 2 * coeffs[:, 1:])
        assert offset.abs().amax() > 0
        assert not torch.equal(plain(clip, qualities).reconstruction, timed(clip, qualities).reconstruction)
        # a frame range decodes the same frames as the whole clip (u is the frame's place in the clip)
        torch.testing.assert_close(timed.decode_codes(codes, 3, first=4), timed.decode_codes(codes, 8)[:, 4:7])
    # a layout token's coefficients reach only its own stem position
    changed = codes.clone()
    first = timed.token_decoder.layout_offset
    changed[:, first] += 1.0
    with torch.no_grad():
        moved = (timed.token_decoder.temporal(changed) - coeffs).abs().amax(dim=(0, 1)).view(-1, timed.token_decoder.stem_channels)
    assert (moved.amax(1) > 0).nonzero().flatten().tolist() == [0]
    # fine-tuning a temporal model from the shipped file (which has no such term): the tensors load,
    # the new head keeps its zero start
    system = HyperNervSystem("hypernerv-small", model_overrides={"hypernet": {"temporal_terms": 2}}, init_weights="hypernerv-small")
    shipped = HyperNervSystem("hypernerv-small", init_weights="hypernerv-small").model.state_dict()
    own = system.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in shipped.items())
    assert float(system.model.token_decoder.temporal_head.weight.abs().sum()) == 0.0


def test_per_video_baseline_learns_the_clip(model, clip_frames):
    from nvcodec.bench.baseline import fit_per_video_nerv

    # A step budget, not a time budget: the outcome does not depend on how busy the machine is.
    result = fit_per_video_nerv(clip_frames, model.config.decoder, max_steps=400, target_psnr=24.0, batch_frames=4)
    steps = [p.steps for p in result.points]
    assert steps == sorted(set(steps)) and steps[-1] < 400  # stopped at the target, well before the budget
    assert result.points[-1].psnr >= 24.0 > result.points[0].psnr + 8.0  # it fits the clip, not just its mean
    assert result.reconstruction.shape == clip_frames.shape and result.reconstruction.dtype == np.uint8
    short = fit_per_video_nerv(clip_frames, model.config.decoder, max_steps=5, batch_frames=4)
    assert [p.steps for p in short.points] == [1, 2, 3, 4, 5] and short.points[-1].psnr < 24.0


@pytest.mark.parametrize(
    ("size", "expected"),
    [((144, 176), 8), ((512, 512), 0), ((720, 1280), 0), ((40, 56), 8), ((64, 64), 8), ((200, 300), 5)],
)
def test_free_overlap_never_adds_tiles(size, expected):
    from nvcodec.hypernerv.video import free_overlap

    height, width = size
    chosen = free_overlap(height, width, 64, 8)
    assert chosen == expected
    assert TileGrid(height, width, 64, 64, chosen).num_tiles == TileGrid(height, width, 64, 64, 0).num_tiles
    if chosen < 8:
        assert TileGrid(height, width, 64, 64, chosen + 1).num_tiles > TileGrid(height, width, 64, 64, 0).num_tiles


def test_default_overlap_is_recorded_and_decoded(codec, encoded):
    # tiny model: tile 16, default minimum overlap 16 // 16 = 1; a 40x56 frame takes 3x4 tiles
    assert codec.overlap is None and encoded.params["overlap"] == 1 and encoded.stats["num_tiles"] == 12
    assert codec.grid_for(encoded.params, 40, 56).min_overlap >= 1
    fixed = HyperNervVideoCodec(codec.model, "hypernerv-tiny", overlap=0)
    assert fixed.overlap_for(40, 56) == 0
    legacy = HyperNervVideoCodec(codec.model, "hypernerv-tiny", tiling="shift")  # version 1: the free overlap
    assert legacy.overlap_for(40, 56) == 2


@pytest.mark.parametrize("size", [(144, 176), (180, 320), (272, 640), (70, 64), (122, 200), (40, 56)])
@pytest.mark.parametrize("overlap", [4, 8])
def test_even_tiling_overlaps_everywhere_and_cross_fades(size, overlap):
    height, width = size
    grid = TileGrid(height, width, 64, 64, overlap, "even")
    shift = TileGrid(height, width, 64, 64, 0)
    assert grid.min_overlap >= overlap or grid.num_tiles == 1
    for starts, length in ((grid.row_starts, height), (grid.col_starts, width)):
        assert starts[0] == 0 and starts[-1] == max(length, 64) - 64  # spread over the frame, no padding past a tile
        assert len(starts) == 1 or len(starts) == 1 + -(-(length - 64) // (64 - overlap))  # the fewest tiles that overlap enough
    assert grid.num_tiles >= shift.num_tiles
    # Where at most two tiles meet, the cross-fades sum to 1 (a partition of unity; merge still
    # normalises where three do, on frames just over two tiles), rising from ~0 at an inner edge.
    total, count = torch.zeros(*grid.padded_hw), torch.zeros(*grid.padded_hw)
    for window, (r, c) in zip(grid.windows(), grid.starts):
        total[r : r + 64, c : c + 64] += window
        count[r : r + 64, c : c + 64] += 1
        assert window.min() > 0 and (grid.num_tiles == 1 or window.min() < 0.01)
    two = count <= 2
    torch.testing.assert_close(total[two], torch.ones_like(total[two]), rtol=0, atol=1e-5)
    frame = torch.rand(2, 3, height, width)
    torch.testing.assert_close(grid.merge(grid.split(frame)), frame, rtol=0, atol=1e-5)


def test_version_1_shift_streams_still_decode(model, clip_frames):
    legacy = HyperNervVideoCodec(model, "hypernerv-tiny", tiling="shift")
    old = legacy.encode(clip_frames[:8], quality=1)
    assert old.params["version"] == 1 and "tiling" not in old.params
    current = HyperNervVideoCodec(model, "hypernerv-tiny")  # writes version 2, reads both
    assert current.grid_for(old.params, 40, 56) == TileGrid(40, 56, 16, 16, old.params["overlap"], "shift")
    np.testing.assert_array_equal(current.decode_chunk(old.params, old.chunks[0], 40, 56), old.reconstruction)
    new = current.encode(clip_frames[:8], quality=1)
    assert new.params["version"] == 2 and new.params["tiling"] == "even"
    assert current.grid_for(new.params, 40, 56).tiling == "even"
    with pytest.raises(InputError, match="tiling"):
        HyperNervVideoCodec(model, "hypernerv-tiny", tiling="diagonal")


def test_clip_stride_windows_decode_chunk_by_chunk(model, clip_frames):
    # tiny model: clip_len 8; stride 4 -> 3 chunks of 4 frames over 12, each coding an 8-frame window
    codec = HyperNervVideoCodec(model, "hypernerv-tiny", clip_stride=4)
    encoded = codec.encode(clip_frames, quality=1)
    assert encoded.params["clip_stride"] == 4 and [(c.frame_start, c.frame_stop) for c in encoded.chunks] == [(0, 4), (4, 8), (8, 12)]
    for chunk in encoded.chunks:  # every chunk decodes alone, to the encoder's reconstruction
        np.testing.assert_array_equal(codec.decode_chunk(encoded.params, chunk, 40, 56), encoded.reconstruction[chunk.frame_start : chunk.frame_stop])
    plain = HyperNervVideoCodec(model, "hypernerv-tiny")  # the decoder follows the header, not its own setting
    np.testing.assert_array_equal(plain.decode_chunk(encoded.params, encoded.chunks[1], 40, 56), encoded.reconstruction[4:8])
    assert not np.array_equal(encoded.reconstruction, plain.encode(clip_frames, quality=1).reconstruction)
    with pytest.raises(BitstreamError, match="chunks hold 1..4"):
        codec.decode_chunk(encoded.params, ChunkData(0, 8, encoded.chunks[0].payload), 40, 56)
    for value in (0, 9, "4"):
        with pytest.raises(BitstreamError, match="clip_stride"):
            codec.decode_chunk({**encoded.params, "clip_stride": value}, encoded.chunks[0], 40, 56)
    with pytest.raises(InputError, match="clip_stride"):
        HyperNervVideoCodec(model, "hypernerv-tiny", clip_stride=9)


def test_shipped_hypernerv_decodes_the_same_with_one_or_two_threads(media: Path) -> None:
    # hypernerv-small's grouped convs gave uint8 pixels off by 1 between 1 and 2 intra-op threads
    # (the served frame then differed from nvcodec.decode); decoding now runs single-threaded.
    import nvcodec
    from nvcodec import io

    clip = io.read_video(media / "carphone_pristine.mp4", 0, 8).frames  # 176x144: 9 tiles
    data = nvcodec.encode(clip, codec="hypernerv", quality=1)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = nvcodec.decode(data)
        torch.set_num_threads(1)
        one = nvcodec.decode(data)
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(one, two)


def test_clip_stride_through_the_api(clip_frames):
    """``nvcodec.encode(..., clip_stride=S)`` (the CLI's ``--clip-stride``): chunks of S frames that decode
    to the encoder's frames; the option is refused for intra and outside 1..clip_len."""
    import nvcodec

    stream = nvcodec.encode(clip_frames, codec="hypernerv", model="hypernerv-tiny", quality=1, clip_stride=4)
    info = nvcodec.info(stream)
    assert info.params["clip_stride"] == 4 and [(c.frame_start, c.frame_stop) for c in info.chunks] == [(0, 4), (4, 8), (8, 12)]
    plain = nvcodec.encode(clip_frames, codec="hypernerv", model="hypernerv-tiny", quality=1)
    assert "clip_stride" not in nvcodec.info(plain).params and len(stream) > len(plain)
    np.testing.assert_array_equal(nvcodec.decode(stream, frames=slice(4, 8)), nvcodec.decode(stream)[4:8])
    for codec, model, stride in [("intra", "intra-tiny", 4), ("hypernerv", "hypernerv-tiny", 0), ("hypernerv", "hypernerv-tiny", 9)]:
        with pytest.raises(InputError, match="stride"):
            nvcodec.encode(clip_frames[:2], codec=codec, model=model, clip_stride=stride)


def test_context_frames_start_as_no_op_and_reach_only_the_edge_tubelets():
    torch.manual_seed(0)
    plain = create_model("hypernerv-tiny").eval()
    reader = create_model("hypernerv-tiny", hypernet={"context_frames": 2}).eval()
    missing = reader.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == [f"hypernet.context_{side}.{p}" for side in ("after", "before") for p in ("bias", "weight")]
    clip, context = torch.rand(2, 8, 3, 16, 16), torch.rand(2, 4, 3, 16, 16)
    hypernet = reader.hypernet
    with torch.no_grad():
        assert torch.equal(plain.hypernet(clip), hypernet(clip, context))  # zero-initialised: the shipped function
        torch.nn.init.normal_(hypernet.context_before.weight)
        torch.nn.init.normal_(hypernet.context_after.weight)
        x = torch.zeros(2, 64, 32)  # tiny: 4 tubelets x 4x4 patches, D 32
        tokens = hypernet._add_context(x, clip, context)
        later = context.clone()
        later[:, 2:] += 0.5  # the frames after the clip
        moved = (hypernet._add_context(x, clip, later) - tokens).abs().amax(dim=(0, 2)) > 0  # (N_patch,)
        assert moved.nonzero().flatten().tolist() == list(range(48, 64))  # the last tubelet's tokens only
        assert not torch.equal(hypernet(clip, context), hypernet(clip, later))
        repeated = torch.cat([clip[:, :1].expand(-1, 2, -1, -1, -1), clip[:, -1:].expand(-1, 2, -1, -1, -1)], dim=1)
        assert torch.equal(hypernet(clip), hypernet(clip, repeated))  # no context given: the edge frames repeated
    with pytest.raises(ValueError, match="context shape"):
        hypernet(clip, context[:, :2])
    with pytest.raises(ValueError, match="reads no context"):
        plain.hypernet(clip, context)
    with pytest.raises(ValueError, match="multiple of tubelet_frames"):
        create_model("hypernerv-tiny", hypernet={"context_frames": 1})


def test_context_encoder_reads_the_neighbouring_clip_and_decodes_unchanged(clip_frames):
    torch.manual_seed(0)
    reader = create_model("hypernerv-tiny", hypernet={"context_frames": 2}).eval()
    with torch.no_grad():
        torch.nn.init.normal_(reader.hypernet.context_after.weight, std=0.5)
    reader.update_entropy_models()
    codec = HyperNervVideoCodec(reader, "hypernerv-tiny")
    encoded = codec.encode(clip_frames, quality=1)
    changed = clip_frames.copy()
    changed[8] = 255 - changed[8]  # the first frame after chunk 0 (clip_len 8)
    other = codec.encode(changed, quality=1)
    assert encoded.chunks[0].payload != other.chunks[0].payload  # chunk 0's encoder read frames 8 and 9
    for chunk in encoded.chunks:  # the decoder needs nothing but the chunk
        np.testing.assert_array_equal(codec.decode_chunk(encoded.params, chunk, 40, 56), encoded.reconstruction[chunk.frame_start : chunk.frame_stop])


def test_train_only_freezes_everything_else_and_context_clips_split(tmp_path):
    from nvcodec.train.hypernerv import HyperNervSystem

    system = HyperNervSystem("hypernerv-tiny", model_overrides={"hypernet": {"context_frames": 2}}, train_only="hypernet.")
    trainable = {name for name, p in system.model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("hypernet.") for name in trainable) and "hypernet.context_before.weight" in trainable
    assert not system.train_aux
    net_opt, _ = system.configure_optimizers()
    assert sum(p.numel() for group in net_opt.param_groups for p in group["params"]) == sum(p.numel() for name, p in system.model.named_parameters() if name in trainable)
    batch = torch.rand(2, 12, 3, 16, 16)
    clip, context = system.split_batch(batch)
    assert torch.equal(clip, batch[:, 2:10]) and torch.equal(context, torch.cat([batch[:, :2], batch[:, 10:]], dim=1))
    with pytest.raises(ValueError, match="set data.clip_len"):
        system.split_batch(torch.rand(2, 8, 3, 16, 16))
    with pytest.raises(ValueError, match="matches no parameter"):
        HyperNervSystem("hypernerv-tiny", train_only="nothing.")
    assert HyperNervSystem("hypernerv-tiny").train_aux
