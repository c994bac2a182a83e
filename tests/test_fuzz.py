"""Fuzzing (small, in the suite): mutated streams of every codec decode or raise an ``NvcodecError``.

The mutations (raw damage, hostile payloads with fixed CRCs, forged header fields with a correct
header CRC) live in ``nvcodec.testing``; ``python -m nvcodec.testing --count 10000`` is the
long run. Untrained tiny models keep each decode at milliseconds.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nvcodec
from nvcodec import testing as fuzz
from nvcodec.container import CODEC_NAMES
from nvcodec.errors import BitstreamError, NvcodecError, UnsupportedVersionError

CODECS = CODEC_NAMES
SMALL_SHAPES = ((1, 16, 16), (2, 23, 37))  # (frames, H, W)


@lru_cache(maxsize=None)
def seed_streams(codec: str) -> tuple[bytes, ...]:
    """Valid tiny-model streams: the SMALL_SHAPES (and, for hypernerv, one of two chunks)."""
    fuzz.warm_up_models()  # a forged model name must not time model loading as decoding
    return tuple(fuzz.seed_streams(codec, f"{codec}-tiny", shapes=SMALL_SHAPES))


@pytest.mark.parametrize("codec", CODECS)
@settings(
    max_examples=150,
    deadline=None,  # the time bound per decode is fuzz.time_limit's
    derandomize=True,  # the suite is reproducible; the long script explores
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_mutated_streams_decode_or_raise_nvcodec_error(codec: str, data) -> None:
    stream = data.draw(st.sampled_from(seed_streams(codec)), label="seed stream")
    rng = data.draw(st.randoms(use_true_random=False), label="mutation rng")
    kind, mutated = fuzz.mutate(stream, rng)
    try:
        with fuzz.time_limit(10.0):
            frames = nvcodec.decode(mutated)
    except NvcodecError:
        return
    header = nvcodec.info(mutated)
    assert frames.shape == (header.frame_count, header.height, header.width, 3), kind


@pytest.mark.parametrize("codec", CODECS)
def test_seed_streams_survive_the_forger_unchanged(codec: str) -> None:
    # build_stream(parse_stream(s)) must be the identity, or the header forgeries would test nothing
    for stream in seed_streams(codec):
        assert fuzz.build_stream(fuzz.parse_stream(stream)) == stream


@pytest.mark.parametrize(
    "codec,field,value",
    [
        ("intra", "quality", 99), ("intra", "quality", -1), ("intra", "quality", "3"), ("intra", "quality", None),
        ("intra", "quality", 1.5), ("intra", "chunk_version", "2"), ("intra", "chunk_version", True),
        ("hypernerv", "quality", 4), ("hypernerv", "quality", True), ("hypernerv", "tile_size", 1 << 20),
        ("hypernerv", "tile_size", 3), ("hypernerv", "clip_len", 1 << 30), ("hypernerv", "clip_len", 0),
        ("hypernerv", "overlap", 1 << 20), ("hypernerv", "overlap", -1), ("hypernerv", "version", 0),
        ("hypernerv", "refine_steps", -5),
    ],
)
def test_forged_params_raise_bitstream_error(codec: str, field: str, value) -> None:
    """A hostile writer's params (valid header CRC) are checked against the model config."""
    stream = seed_streams(codec)[1]
    params = fuzz.parse_stream(stream).record["params"]
    assert field in params
    forged = fuzz.forge_header(stream, params={**params, field: value})
    with pytest.raises(BitstreamError) as raised:
        nvcodec.decode(forged)
    message = str(raised.value)
    assert field in message or repr(value) in message or str(value) in message, message  # names the culprit


@pytest.mark.parametrize("codec,field,value", [("intra", "chunk_version", 3), ("hypernerv", "version", 3)])
def test_future_stream_versions_raise_unsupported_version_error(codec: str, field: str, value: int) -> None:
    stream = seed_streams(codec)[1]
    params = fuzz.parse_stream(stream).record["params"]
    forged = fuzz.forge_header(stream, params={**params, field: value})
    with pytest.raises(UnsupportedVersionError, match=f"version {value}"):
        nvcodec.decode(forged)


@pytest.mark.parametrize("codec", CODECS)
def test_forged_frame_counts_and_sizes_raise_bitstream_error(codec: str) -> None:
    """A chunk claiming 100000 frames, or a header frame size the payload was not coded for."""
    stream = seed_streams(codec)[1]  # 2 frames, 23x37
    table = [list(entry) for entry in fuzz.parse_stream(stream).record["chunks"]]
    table[-1][3] = 100_000
    forged = fuzz.forge_header(stream, frame_count=100_000, chunks=table)
    with pytest.raises(BitstreamError, match="100000|99999"):
        nvcodec.decode(forged, frames=slice(table[-1][2], table[-1][2] + 1))  # reads the forged chunk only
    for width, height in ((8192, 8192), (4096, 23)) + (((37, 64),) if codec == "hypernerv" else ()):
        with pytest.raises(BitstreamError):
            nvcodec.decode(fuzz.forge_header(stream, width=width, height=height))
    if codec == "intra":  # 64x37 pads to the same 1x1 latent grid as 23x37: the chunks hold no frame size
        # (intra chunk version 2), so it decodes, and its first 23 rows are the true frames
        taller = nvcodec.decode(fuzz.forge_header(stream, width=37, height=64))
        assert taller.shape == (2, 64, 37, 3)
        np.testing.assert_array_equal(taller[:, :23], nvcodec.decode(stream))
