"""The .nvc container: round trips, random access, and damage always raising a stream error."""

from __future__ import annotations

from fractions import Fraction

import pytest

from nvcodec.container import MAGIC, MAX_SIDE, StreamHeader, StreamReader, pack_stream
from nvcodec.errors import BitstreamError, UnsupportedVersionError
from nvcodec.interface import ChunkData

CHUNKS = [ChunkData(0, 2, b"abc"), ChunkData(2, 3, b""), ChunkData(3, 7, bytes(range(40)))]


def small_stream(**changes) -> bytes:
    fields = dict(
        codec="intra", model="intra-tiny", weights="0123456789abcdef", width=17, height=9,
        fps=Fraction(30000, 1001), params={"quality": 2, "tile": [64, 64]}, chunks=CHUNKS,
    )
    fields.update(changes)
    return pack_stream(**fields)


def test_header_and_chunks_round_trip() -> None:
    reader = StreamReader(small_stream())
    header = reader.header
    assert (header.codec, header.model, header.weights) == ("intra", "intra-tiny", "0123456789abcdef")
    assert (header.width, header.height, header.frame_count) == (17, 9, 7)
    assert header.fps == Fraction(30000, 1001)
    assert header.params == {"quality": 2, "tile": [64, 64]}
    assert [reader.read_chunk(i) for i in range(3)] == CHUNKS


def test_random_access_reads_only_covering_chunks() -> None:
    reader = StreamReader(small_stream())
    assert reader.header.chunks_for(2, 4) == [1, 2]
    assert reader.header.chunks_for(0, 1) == [0]
    reader.read_chunk(2)
    assert reader.chunks_read == [2]


def test_every_truncation_raises_stream_error() -> None:
    data = small_stream()
    for cut in range(len(data)):
        with pytest.raises((BitstreamError, UnsupportedVersionError)):
            reader = StreamReader(data[:cut])
            for i in range(len(reader.header.chunks)):
                reader.read_chunk(i)


def test_every_bit_flip_raises_stream_error() -> None:
    data = small_stream()
    for bit in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((BitstreamError, UnsupportedVersionError)):
            reader = StreamReader(bytes(damaged))
            for i in range(len(reader.header.chunks)):
                reader.read_chunk(i)


def _forge(header_json: bytes) -> bytes:
    """A stream whose header is ``header_json`` with valid framing and CRC (a hostile writer)."""
    import struct
    import zlib

    prefix = struct.pack("<8sHHI", MAGIC, 1, 0, len(header_json)) + header_json
    return prefix + struct.pack("<I", zlib.crc32(prefix))


@pytest.mark.parametrize(
    "field,value",
    [("width", 1_000_000), ("height", 1_000_000), ("frame_count", 1_000_000_000), ("width", 0), ("fps", [0, 1])],
)
def test_huge_or_bad_dimensions_refused_before_allocation(field: str, value) -> None:
    import json

    record = json.loads(StreamHeader.from_json(StreamReader(small_stream()).header.to_json()).to_json())
    record[field] = value
    expected = {"width": "frame size", "height": "frame size", "frame_count": "frame count", "fps": "fps"}[field]
    with pytest.raises(BitstreamError, match=expected):
        StreamReader(_forge(json.dumps(record).encode()))


def test_future_version_and_unknown_flags_refused() -> None:
    data = bytearray(small_stream())
    data[8] = 2  # version
    with pytest.raises(UnsupportedVersionError):
        StreamReader(bytes(data))
    data = bytearray(small_stream())
    data[10] = 0x01  # flags
    with pytest.raises(UnsupportedVersionError):
        StreamReader(bytes(data))


def test_writer_refuses_out_of_bounds_size() -> None:
    with pytest.raises(BitstreamError):
        small_stream(width=MAX_SIDE + 1)
