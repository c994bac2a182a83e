"""The ``.nvc`` container: magic, version, flags, a typed JSON header with a chunk table, CRC'd chunks.

Layout (little-endian)::

    magic     8 bytes  b"\\x89NVC\\r\\n\\x1a\\n"   (high bit + CRLF + ^Z + LF: catches text-mode damage)
    version   u16      FORMAT_VERSION
    flags     u16      no bits defined yet: any set bit is refused
    hlen      u32      header length, <= MAX_HEADER_BYTES
    header    hlen     UTF-8 JSON object (see StreamHeader)
    hcrc      u32      CRC32 of everything above
    chunks             for each chunk: u32 length, payload, u32 CRC32(payload)

Chunk offsets in the header count from the first byte after ``hcrc``. Every length, dimension and
count is checked against fixed bounds and the stream size before anything is allocated; any
inconsistency raises ``BitstreamError`` (``UnsupportedVersionError`` for a version or flag from the
future). Rate is the file size: ``bpp = 8 * len(stream) / (frames * W * H)``.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO

from nvcodec.errors import BitstreamError, UnsupportedVersionError
from nvcodec.interface import MAX_FRAMES, MAX_SIDE, ChunkData, JSONValue

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "CODEC_IDS",
    "CODEC_NAMES",
    "ChunkEntry",
    "StreamHeader",
    "pack_stream",
    "frame_stream",
    "StreamReader",
    "MAX_SIDE",
    "MAX_FRAMES",
]

MAGIC = b"\x89NVC\r\n\x1a\n"
FORMAT_VERSION = 1
KNOWN_FLAGS = 0x0000
_PREFIX = struct.Struct("<8sHHI")
_U32 = struct.Struct("<I")

# Frozen codec id table: ids are never reused or reordered.
CODEC_IDS: dict[int, str] = {1: "intra", 2: "hypernerv"}
_CODEC_TO_ID = {name: cid for cid, name in CODEC_IDS.items()}
CODEC_NAMES: tuple[str, ...] = tuple(CODEC_IDS.values())  # every codec name, in id order (CLI choices etc.)

MAX_HEADER_BYTES = 4 << 20
MAX_CHUNK_BYTES = 1 << 30
MAX_FPS_TERM = 1_000_000
PIXEL_FORMATS = ("rgb24",)
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ChunkEntry:
    """Where a chunk lies (``offset`` from the chunk area's start, ``length`` of its payload)."""

    offset: int
    length: int
    frame_start: int
    frame_stop: int

    @property
    def stored_size(self) -> int:
        return 4 + self.length + 4


@dataclass(frozen=True)
class StreamHeader:
    codec: str
    model: str
    weights: str  # sha256 prefix of the weights file ("" for an untrained test model)
    width: int
    height: int
    frame_count: int
    fps: Fraction
    chunks: tuple[ChunkEntry, ...]
    params: dict[str, JSONValue] = field(default_factory=dict)
    pixel_format: str = "rgb24"
    made_on: str = "cpu"  # where the entropy parameters were computed

    def chunks_for(self, start: int, stop: int) -> list[int]:
        """Indexes of the chunks that cover frames ``[start, stop)``."""
        return [i for i, c in enumerate(self.chunks) if c.frame_start < stop and c.frame_stop > start]

    def to_json(self) -> bytes:
        record = {
            "codec_id": _CODEC_TO_ID[self.codec],
            "model": self.model,
            "weights": self.weights,
            "width": self.width,
            "height": self.height,
            "frame_count": self.frame_count,
            "fps": [self.fps.numerator, self.fps.denominator],
            "pixel_format": self.pixel_format,
            "made_on": self.made_on,
            "params": self.params,
            "chunks": [[c.offset, c.length, c.frame_start, c.frame_stop] for c in self.chunks],
        }
        return json.dumps(record, separators=(",", ":"), sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, text: bytes) -> StreamHeader:
        try:
            record = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise BitstreamError(f"header is not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise BitstreamError("header is not a JSON object")

        def get(key: str, kind: type | tuple[type, ...]):
            value = record.get(key)
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise BitstreamError(f"header field {key!r} missing or of the wrong type: {value!r}")
            return value

        codec_id = get("codec_id", int)
        if codec_id not in CODEC_IDS:
            raise BitstreamError(f"unknown codec id {codec_id}")
        width, height, frames = get("width", int), get("height", int), get("frame_count", int)
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise BitstreamError(f"frame size {width}x{height} outside 1..{MAX_SIDE} per side")
        if not 1 <= frames <= MAX_FRAMES:
            raise BitstreamError(f"frame count {frames} outside 1..{MAX_FRAMES}")
        fps_pair = get("fps", list)
        if len(fps_pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_FPS_TERM for v in fps_pair):
            raise BitstreamError(f"bad fps {fps_pair!r}")
        pixel_format = get("pixel_format", str)
        if pixel_format not in PIXEL_FORMATS:
            raise BitstreamError(f"unknown pixel format {pixel_format!r}")
        made_on = get("made_on", str)
        if made_on not in DEVICES:
            raise BitstreamError(f"unknown encoding device {made_on!r}")
        raw_chunks = get("chunks", list)
        if not 1 <= len(raw_chunks) <= frames:
            raise BitstreamError(f"chunk count {len(raw_chunks)} outside 1..{frames}")
        chunks = []
        expected_offset, expected_frame = 0, 0
        for index, raw in enumerate(raw_chunks):
            if not (isinstance(raw, list) and len(raw) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in raw)):
                raise BitstreamError(f"chunk table entry {index} malformed: {raw!r}")
            entry = ChunkEntry(*raw)
            if entry.offset != expected_offset or not 0 <= entry.length <= MAX_CHUNK_BYTES:
                raise BitstreamError(f"chunk {index}: offset {entry.offset} / length {entry.length} inconsistent")
            if entry.frame_start != expected_frame or not entry.frame_start < entry.frame_stop <= frames:
                raise BitstreamError(f"chunk {index}: frames {entry.frame_start}:{entry.frame_stop} do not tile 0:{frames}")
            expected_offset += entry.stored_size
            expected_frame = entry.frame_stop
            chunks.append(entry)
        if expected_frame != frames:
            raise BitstreamError(f"chunks cover frames 0:{expected_frame}, header says {frames}")
        params = get("params", dict)
        return cls(
            codec=CODEC_IDS[codec_id],
            model=get("model", str),
            weights=get("weights", str),
            width=width,
            height=height,
            frame_count=frames,
            fps=Fraction(*fps_pair),
            chunks=tuple(chunks),
            params=params,
            pixel_format=pixel_format,
            made_on=made_on,
        )

    @property
    def chunk_area_bytes(self) -> int:
        return sum(c.stored_size for c in self.chunks)


def pack_stream(
    *,
    codec: str,
    model: str,
    weights: str,
    width: int,
    height: int,
    fps: Fraction,
    params: dict[str, JSONValue],
    chunks: Sequence[ChunkData],
    made_on: str = "cpu",
) -> bytes:
    """Serialise a complete ``.nvc`` stream. ``chunks`` must tile ``[0, frame_count)`` in order."""
    if codec not in _CODEC_TO_ID:
        raise ValueError(f"codec {codec!r} has no id in CODEC_IDS")
    entries, offset = [], 0
    for chunk in chunks:
        entries.append(ChunkEntry(offset, len(chunk.payload), chunk.frame_start, chunk.frame_stop))
        offset += entries[-1].stored_size
    header = StreamHeader(
        codec=codec,
        model=model,
        weights=weights,
        width=width,
        height=height,
        frame_count=chunks[-1].frame_stop if chunks else 0,
        fps=Fraction(fps).limit_denominator(MAX_FPS_TERM),
        chunks=tuple(entries),
        params=dict(params),
        made_on=made_on,
    )
    header_bytes = header.to_json()
    StreamHeader.from_json(header_bytes)  # the writer never emits what the reader would refuse
    return frame_stream(header_bytes, [chunk.payload for chunk in chunks])


def frame_stream(header_bytes: bytes, payloads: Sequence[bytes], version: int = FORMAT_VERSION, flags: int = 0) -> bytes:
    """The byte framing of a stream: prefix + header + header CRC, then length + payload + CRC per chunk.

    The one writer of the layout. ``pack_stream`` hands it a validated header; the test tools
    (``nvcodec.testing``) hand it forged ones, to reach the checks behind the CRCs.
    """
    prefix = _PREFIX.pack(MAGIC, version, flags, len(header_bytes)) + header_bytes
    out = io.BytesIO()
    out.write(prefix)
    out.write(_U32.pack(zlib.crc32(prefix)))
    for payload in payloads:
        out.write(_U32.pack(len(payload)))
        out.write(payload)
        out.write(_U32.pack(zlib.crc32(payload)))
    return out.getvalue()


class StreamReader:
    """Random access to a ``.nvc`` stream held in memory or in a seekable binary file.

    The header is parsed and validated on construction; ``read_chunk(i)`` reads and CRC-checks one
    chunk only. ``chunks_read`` records which chunks were read (random-access tests use it).
    """

    def __init__(self, source: bytes | bytearray | memoryview | BinaryIO) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(bytes(source))
        self._file = source
        self._file.seek(0, io.SEEK_END)
        self.size = self._file.tell()
        self._file.seek(0)
        self.chunks_read: list[int] = []
        prefix = self._read_exact(_PREFIX.size, "prefix")
        magic, version, flags, header_len = _PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise BitstreamError(f"not an .nvc stream (magic {magic!r})")
        if version != FORMAT_VERSION:
            raise UnsupportedVersionError(f"format version {version} unsupported (this build reads {FORMAT_VERSION})")
        if flags & ~KNOWN_FLAGS:
            raise UnsupportedVersionError(f"unknown flag bits 0x{flags & ~KNOWN_FLAGS:04x}")
        if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len + 4 > self.size:
            raise BitstreamError(f"header length {header_len} exceeds the stream ({self.size} bytes)")
        header_bytes = self._read_exact(header_len, "header")
        (stored_crc,) = _U32.unpack(self._read_exact(4, "header CRC"))
        if zlib.crc32(prefix + header_bytes) != stored_crc:
            raise BitstreamError("header CRC mismatch: the stream is damaged")
        self.header = StreamHeader.from_json(header_bytes)
        self._chunk_base = _PREFIX.size + header_len + 4
        expected_size = self._chunk_base + self.header.chunk_area_bytes
        if expected_size != self.size:
            raise BitstreamError(f"stream is {self.size} bytes, its chunk table says {expected_size}")

    def _read_exact(self, count: int, what: str) -> bytes:
        data = self._file.read(count)
        if len(data) != count:
            raise BitstreamError(f"stream truncated in the {what} (wanted {count} bytes, got {len(data)})")
        return data

    def read_chunk(self, index: int) -> ChunkData:
        entry = self.header.chunks[index]
        self._file.seek(self._chunk_base + entry.offset)
        (length,) = _U32.unpack(self._read_exact(4, f"chunk {index} length"))
        if length != entry.length:
            raise BitstreamError(f"chunk {index}: length {length} disagrees with the table ({entry.length})")
        payload = self._read_exact(length, f"chunk {index}")
        (stored_crc,) = _U32.unpack(self._read_exact(4, f"chunk {index} CRC"))
        if zlib.crc32(payload) != stored_crc:
            raise BitstreamError(f"chunk {index} (frames {entry.frame_start}:{entry.frame_stop}) CRC mismatch: the stream is damaged")
        self.chunks_read.append(index)
        return ChunkData(entry.frame_start, entry.frame_stop, payload)

    def verify(self) -> None:
        """Read every chunk and check its length and CRC; ``BitstreamError`` names the first damaged one.

        That the chunk table covers every frame exactly once, in order, and accounts for every byte
        of the stream was already checked when the header was parsed (``StreamHeader.from_json``).
        """
        for index in range(len(self.header.chunks)):
            self.read_chunk(index)
