"""``HyperNervVideoCodec``: the hypernerv adapter between the container/API and ``HyperNerv``.

Geometry: the video splits into clips of ``clip_len`` frames (the last may be shorter) and every
frame into the tiles of a ``nvcodec.geometry.TileGrid`` (replicate padding at the borders). ONE
chunk per clip; its payload holds every tile's entropy-coded weight tokens. Header params (JSON):
format version, quality, clip length, tile size, overlap, refine steps (informational) and, from
params version 2, the tiling:

- version 2 (written now): ``"tiling": "even"``: neighbouring tiles overlap by at least
  ``overlap`` pixels on every frame size (tile/16 by default; extra tiles where the size needs them),
  spread evenly and cross-faded with raised-cosine windows, so no tile grid shows.
  Optional ``"clip_stride"`` S (default ``clip_len``; a version-2 option, see ``clip_stride``):
  chunk k shows frames ``k*S .. k*S + S - 1`` but codes the whole ``clip_len``-frame window
  centred on them (frames clamped to the video at its ends), and decodes only the window's middle
  S frames, so the clip-edge frames, where a clip's quality dips, are never shown. Every chunk
  still decodes on its own; the rate grows about ``clip_len / S`` times.
- version 1 (still decoded): the ``"shift"`` layout, linear ramps over ``overlap`` pixels (the old
  default picked as much overlap, up to tile/8, as cost no extra tile: 0 on many sizes).

The params are parsed and checked once per stream into a ``HyperNervParams`` record (quality,
tiling, stride and the tile grid of the frame size).

Chunk payload, little-endian. Version 2 (written now) carries only what changes per chunk; the
quality level, the frame count (the chunk table's) and the tile count (the grid's) are the stream's::

    u8 version (= 2) | num_tiles x (u32 length | rANS string)

Version 1 (still decoded) repeated the per-stream fields in every chunk::

    u8 version | u8 quality level | u16 num_frames | u16 num_tiles | u16 num_tokens | u16 code_channels
    num_tiles x (u32 length | rANS string)     (``entropy.rans.pack_strings``; must end at the payload end)

A payload version this build does not know raises ``UnsupportedVersionError``. Every field is
checked against the params, the frame size and the model before anything is decoded; any
inconsistency raises ``BitstreamError``. The encoder builds its reconstruction by
decoding its own payload bytes with the same code path as ``decode_chunk``, so both are identical.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import Tensor

from nvcodec.entropy.rans import pack_strings, unpack_strings
from nvcodec.errors import BitstreamError, InputError, UnsupportedVersionError
from nvcodec.geometry import TILINGS, TileGrid, frames_to_tensor, tensor_to_frames
from nvcodec.interface import MAX_SIDE, ChunkData, EncodedVideo, JSONValue, ProgressFn, StreamParams, VideoCodec, single_thread

from .model import REFINE_EDGE_WEIGHT, REFINE_LR, CompressedClip, HyperNerv, edge_weights

__all__ = ["HyperNervVideoCodec", "HyperNervParams", "PAYLOAD_VERSION", "free_overlap", "pack_payload", "unpack_payload"]

PAYLOAD_VERSION = 2  # written; 1 is still decoded
PARAMS_VERSION = 2  # 1: "shift" tiling (decoded, no longer written); 2: adds "tiling"
_HEAD_V1 = struct.Struct("<BBHHHH")
MAX_STRING_BYTES = 1 << 20  # per tile: far above any real token string (hundreds of bytes)
MAX_TILES = 1 << 16
MAX_REFINE_STEPS = 100_000


@dataclass(frozen=True)
class HyperNervParams(StreamParams):
    """A hypernerv stream's checked header: quality, the frames per chunk (``stride``), the first
    shown frame of a chunk's coded window (``margin``) and the tile grid of the frame size (which
    holds the overlap and the tiling, and so the params version)."""

    quality: int
    stride: int
    margin: int
    grid: TileGrid

    @property
    def overlap(self) -> int:
        return self.grid.overlap

    @property
    def tiling(self) -> str:
        return self.grid.tiling

    @property
    def version(self) -> int:
        """Params version: 1 for the "shift" tiling, 2 for "even" (``parse_params`` checks they agree)."""
        return 1 if self.grid.tiling == "shift" else PARAMS_VERSION


def pack_payload(compressed: CompressedClip, num_tokens: int, code_channels: int, version: int = PAYLOAD_VERSION) -> bytes:
    """One clip's coded tiles -> chunk payload bytes (see module docstring); ``version=1``: the old layout (tests)."""
    if version == 1:
        head = _HEAD_V1.pack(1, compressed.quality, compressed.num_frames, len(compressed.strings), num_tokens, code_channels)
        return head + pack_strings(compressed.strings)
    if version != PAYLOAD_VERSION:
        raise ValueError(f"hypernerv payload version {version} cannot be written (this build writes 1 or {PAYLOAD_VERSION})")
    return bytes([PAYLOAD_VERSION]) + pack_strings(compressed.strings)


def unpack_payload(payload: bytes, stream: HyperNervParams, num_frames: int, num_tokens: int, code_channels: int) -> CompressedClip:
    """Chunk payload of ``num_frames`` frames -> ``CompressedClip``; structural damage raises ``BitstreamError``."""
    if not payload:
        raise BitstreamError("hypernerv chunk payload is empty")
    version, num_tiles, offset = payload[0], stream.grid.num_tiles, 1
    if version == 1:
        if len(payload) < _HEAD_V1.size:
            raise BitstreamError(f"hypernerv chunk payload of {len(payload)} bytes is shorter than its {_HEAD_V1.size}-byte header")
        _, quality, frames, tiles, tokens, channels = _HEAD_V1.unpack_from(payload, 0)
        if (tokens, channels) != (num_tokens, code_channels):
            raise BitstreamError(f"chunk codes {tokens}x{channels} weight tokens, the model has {num_tokens}x{code_channels}")
        if frames != num_frames:
            raise BitstreamError(f"chunk payload codes {frames} frames, the chunk table says {num_frames}")
        if quality != stream.quality:
            raise BitstreamError(f"chunk payload uses quality {quality}, the header says {stream.quality}")
        if tiles != num_tiles:
            raise BitstreamError(f"chunk payload has {tiles} tiles, a {stream.width}x{stream.height} frame has {num_tiles}")
        offset = _HEAD_V1.size
    elif version != PAYLOAD_VERSION:
        raise UnsupportedVersionError(f"hypernerv chunk payload version {version}, this build reads 1 and {PAYLOAD_VERSION}")
    if len(payload) < offset + 4 * num_tiles:
        raise BitstreamError(f"chunk payload of {len(payload)} bytes is too short for {num_tiles} tile strings")
    strings, end = unpack_strings(payload, num_tiles, offset)
    if end != len(payload):
        raise BitstreamError(f"chunk payload is {len(payload)} bytes, its strings end at byte {end}")
    if any(not 0 < len(string) <= MAX_STRING_BYTES for string in strings):
        raise BitstreamError(f"a tile string is empty or longer than {MAX_STRING_BYTES} bytes")
    return CompressedClip(strings, stream.quality, num_frames)


def free_overlap(height: int, width: int, tile: int, limit: int) -> int:
    """The largest overlap <= ``limit`` whose ``"shift"`` ``TileGrid`` has as many tiles as overlap 0 (0 if none).

    The version-1 default; kept to reproduce (and benchmark against) version-1 streams.
    """
    base = TileGrid(height, width, tile, tile, 0).num_tiles
    return next(o for o in range(limit, -1, -1) if TileGrid(height, width, tile, tile, o).num_tiles == base)


class HyperNervVideoCodec(VideoCodec):
    """Clips x tiles -> one hypernetwork pass each -> coded weight tokens; decoding is batched."""

    codec_name = "hypernerv"
    params_type = HyperNervParams
    # Minimum tile overlap in pixels ("even" tiling); None = tile_size // 16 (4 on 64-pixel tiles:
    # seam ratio 1.00-1.02 at +11-19 % bytes on 640x272 and 320x180, bench/hypernerv_seams.py; 8 cost more, gained nothing).
    overlap: int | None = None
    # "even" (params version 2) or "shift" (writes version-1 streams, whose default overlap is
    # :func:`free_overlap`: kept for benchmarks against the old layout and for compatibility tests).
    tiling: str = "even"
    # Frames per chunk; None = clip_len (one clip per chunk). Smaller: overlapping windows of which
    # only the middle ``clip_stride`` frames show (no clip-edge quality dip, ~clip_len/stride x rate).
    clip_stride: int | None = None
    tiles_per_batch: int = 64  # tiles decoded in one grouped-conv pass (bounds memory on big frames)
    refine_lr: float = REFINE_LR  # Adam step size of the optional code refinement (hypernerv.model.REFINE_LR)
    # Distortion weight of a clip's first and last frames in that refinement, linear down to 1 at the
    # centre (hypernerv.model.edge_weights): it spends the refined bits where the clip-edge dip is.
    # Streams with clip_stride < clip_len hide the edge frames and refine them unweighted.
    refine_edge_weight: float = REFINE_EDGE_WEIGHT

    def __init__(
        self, model: HyperNerv, model_name: str, device: str = "cpu", overlap: int | None = None, tiling: str | None = None,
        clip_stride: int | None = None,
    ) -> None:
        super().__init__(model, model_name, device)
        if overlap is not None:
            self.overlap = overlap
        if clip_stride is not None:
            clip_len = model.config.clip_len
            if isinstance(clip_stride, bool) or not isinstance(clip_stride, int) or not 1 <= clip_stride <= clip_len:
                raise InputError(f"clip_stride {clip_stride!r} outside 1..{clip_len} (the model's clip length)")
            self.clip_stride = clip_stride
        if tiling is not None:
            if tiling not in TILINGS:
                raise InputError(f"unknown tiling {tiling!r}; use one of {', '.join(TILINGS)}")
            self.tiling = tiling
        self.model.eval().to(device)

    @property
    def quality_levels(self) -> int:
        return self.model.config.quality_levels

    def refine_weights(self) -> Tensor | None:
        """The refinement's distortion weights by clip position (clip_len,), or None (frames alike):
        :func:`edge_weights` at ``refine_edge_weight`` when the chunks show the clip-edge frames (stride =
        clip_len); streams with a smaller stride hide them and refine unweighted."""
        clip_len = self.model.config.clip_len
        return edge_weights(clip_len, self.refine_edge_weight) if self.stride == clip_len else None

    # ----------------------------------------------------------------- params
    def overlap_for(self, height: int, width: int) -> int:
        """The tile overlap the encoder uses on ``height x width`` frames."""
        if self.overlap is not None:
            return self.overlap
        tile = self.model.config.tile_size
        return tile // 16 if self.tiling == "even" else free_overlap(height, width, tile, tile // 8)

    def _params(self, quality: int, refine_steps: int, overlap: int) -> dict[str, JSONValue]:
        cfg = self.model.config
        params: dict[str, JSONValue] = {
            "version": PARAMS_VERSION if self.tiling == "even" else 1,
            "quality": quality,
            "clip_len": cfg.clip_len,
            "tile_size": cfg.tile_size,
            "overlap": overlap,
            "refine_steps": refine_steps,
        }
        if self.tiling == "even":
            params["tiling"] = "even"
        if self.stride != cfg.clip_len:
            if self.tiling != "even":
                raise InputError("clip_stride needs the version-2 (even) tiling")
            params["clip_stride"] = self.stride
        return params

    @property
    def stride(self) -> int:
        """Frames per chunk the encoder writes."""
        return self.model.config.clip_len if self.clip_stride is None else self.clip_stride

    def _margin(self, stride: int) -> int:
        """First shown frame of a chunk's coded window: the window is centred on the chunk's frames."""
        return (self.model.config.clip_len - stride) // 2

    def parse_params(self, params: Mapping[str, JSONValue], height: int, width: int) -> HyperNervParams:
        """Header params + frame size -> ``HyperNervParams``, or ``BitstreamError`` naming the bad field."""
        cfg = self.model.config

        def integer(key: str, low: int, high: int) -> int:
            value = params.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise BitstreamError(f"hypernerv header field {key!r} = {value!r}, expected an integer in {low}..{high}")
            return value

        version = params.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > PARAMS_VERSION:
            raise UnsupportedVersionError(f"hypernerv params version {version} unsupported (this build reads 1..{PARAMS_VERSION})")
        version = integer("version", 1, PARAMS_VERSION)
        quality = integer("quality", 0, self.quality_levels - 1)
        clip_len = integer("clip_len", cfg.clip_len, cfg.clip_len)
        integer("tile_size", cfg.tile_size, cfg.tile_size)
        overlap = integer("overlap", 0, (cfg.tile_size - 1) // 2)
        integer("refine_steps", 0, MAX_REFINE_STEPS)
        tiling = params.get("tiling", "shift" if version == 1 else None)
        if tiling != ("shift" if version == 1 else "even"):
            raise BitstreamError(f"hypernerv header field 'tiling' = {tiling!r} does not match params version {version}")
        if version == 1 and "clip_stride" in params:
            raise BitstreamError("hypernerv header field 'clip_stride' needs params version 2")
        stride = integer("clip_stride", 1, clip_len) if "clip_stride" in params else clip_len
        if not (isinstance(height, int) and isinstance(width, int) and 1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
            raise BitstreamError(f"frame size {width}x{height} out of range")
        grid = self._grid(height, width, overlap, tiling)
        if grid.num_tiles > MAX_TILES:
            raise BitstreamError(f"frame size {width}x{height} needs {grid.num_tiles} tiles, more than {MAX_TILES}")
        return HyperNervParams(height, width, quality, stride, self._margin(stride), grid)

    # ----------------------------------------------------------------- encode
    def _check_encode_args(self, frames: np.ndarray, quality: int, refine_steps: int) -> int:
        self.check_frames(frames)
        quality = self.check_quality(quality)
        if not isinstance(refine_steps, int) or not 0 <= refine_steps <= MAX_REFINE_STEPS:
            raise InputError(f"refine_steps {refine_steps!r} outside 0..{MAX_REFINE_STEPS}")
        return quality

    def compress_clips(self, frames: np.ndarray, quality: int, *, refine_steps: int = 0) -> Iterator[ChunkData]:
        """``frames``: (T, H, W, 3) uint8 RGB -> one chunk per clip of ``clip_len`` frames, lazily.

        The bitstream only (hypernetwork [+ refinement] + rANS per tile), no reconstruction: what a
        sender needs; :meth:`encode` adds the encoder-side reconstruction and stats.
        """
        quality = self._check_encode_args(frames, quality, refine_steps)
        height, width = frames.shape[1:3]
        grid = self._grid(height, width, self.overlap_for(height, width), self.tiling)
        for chunk, _ in self._compress(frames, quality, refine_steps, grid):
            yield chunk

    def _compress(self, frames: np.ndarray, quality: int, refine_steps: int, grid: TileGrid) -> Iterator[tuple[ChunkData, CompressedClip]]:
        """Checked arguments -> (chunk, its coded tiles) per clip of ``clip_len`` frames."""
        clip_len, stride, count = self.model.config.clip_len, self.stride, frames.shape[0]
        side = self.model.config.hypernet.context_frames
        weights = self.refine_weights() if refine_steps else None
        for start in range(0, count, stride):
            stop = min(start + stride, count)
            if stride == clip_len:
                indices = np.arange(start, stop)  # the clip itself, short at the end
            else:  # the clip_len frames centred on start:stop, clamped to the video
                first = start - self._margin(stride)
                indices = np.clip(np.arange(first, first + clip_len), 0, count - 1)
            tiles = grid.split(frames_to_tensor(frames[indices], self.device)).contiguous()  # (num_tiles, n, 3, tile, tile)
            clip_weights = None if weights is None else weights[: len(indices)]  # a short last clip: its first n
            context = None
            if side:  # the frames either side of the window, clamped to the video (the encoder reads them)
                around = np.concatenate([np.arange(indices[0] - side, indices[0]), np.arange(indices[-1] + 1, indices[-1] + 1 + side)])
                context = grid.split(frames_to_tensor(frames[np.clip(around, 0, count - 1)], self.device)).contiguous()
            strings: list[bytes] = []
            for first in range(0, grid.num_tiles, self.tiles_per_batch):
                part = slice(first, first + self.tiles_per_batch)
                coded = self.model.compress(
                    tiles[part], quality, refine_steps, self.refine_lr, None if context is None else context[part],
                    clip_weights,
                )
                strings.extend(coded.strings)
            compressed = CompressedClip(strings, quality, stop - start)
            yield ChunkData(start, stop, pack_payload(compressed, self.model.num_weight_tokens, self.model.config.hypernet.code_channels)), compressed

    def encode(
        self,
        frames: np.ndarray,
        quality: int,
        *,
        refine_steps: int = 0,
        progress: ProgressFn | None = None,
    ) -> EncodedVideo:
        """``frames``: (T, H, W, 3) uint8 RGB -> one chunk per clip of ``clip_len`` frames, with the reconstruction."""
        quality = self._check_encode_args(frames, quality, refine_steps)
        height, width = frames.shape[1:3]
        params = self._params(quality, refine_steps, self.overlap_for(height, width))
        stream = self.parse_params(params, height, width)
        grid = stream.grid
        chunks, reconstructions = [], []
        token_bytes = 0
        for chunk, compressed in self._compress(frames, quality, refine_steps, grid):
            chunks.append(chunk)
            token_bytes += sum(len(s) for s in compressed.strings)
            reconstructions.append(self.decode_chunk(stream, chunk, height, width))
            if progress is not None:
                progress(chunk.num_frames)
        stats = {"token_bytes": float(token_bytes), "num_tiles": float(grid.num_tiles), "num_clips": float(len(chunks))}
        return EncodedVideo(params, chunks, np.concatenate(reconstructions), stats)

    # ----------------------------------------------------------------- decode
    def _grid(self, height: int, width: int, overlap: int, tiling: str) -> TileGrid:
        tile = self.model.config.tile_size
        return TileGrid(height, width, tile, tile, overlap, tiling)

    def grid_for(self, params: Mapping[str, JSONValue], height: int, width: int) -> TileGrid:
        """The tile grid a stream with header ``params`` uses on ``height x width`` frames (checked)."""
        return self.parse_params(params, height, width).grid

    def _parse_chunk(self, stream: HyperNervParams, chunk: ChunkData) -> CompressedClip:
        """Check one chunk against its stream's params -> its coded tiles."""
        if not 1 <= chunk.num_frames <= stream.stride:
            raise BitstreamError(f"chunk covers {chunk.num_frames} frames ({chunk.frame_start}:{chunk.frame_stop}), chunks hold 1..{stream.stride}")
        return unpack_payload(chunk.payload, stream, chunk.num_frames, self.model.num_weight_tokens, self.model.config.hypernet.code_channels)

    @staticmethod
    def _to_uint8(grid: TileGrid, tiles: Tensor) -> np.ndarray:
        """tiles (num_tiles, n, 3, tile, tile) -> merged frames (n, H, W, 3) uint8."""
        frames = grid.merge(tiles)  # (n, 3, H, W)
        return tensor_to_frames(frames)

    def decode_chunk(self, params: Mapping[str, JSONValue] | StreamParams, chunk: ChunkData, height: int, width: int) -> np.ndarray:
        """One chunk -> (chunk.num_frames, height, width, 3) uint8; inconsistencies -> ``BitstreamError``."""
        stream = cast(HyperNervParams, self.stream_params(params, height, width))
        compressed = self._parse_chunk(stream, chunk)
        with single_thread():  # bit-exact whatever the caller's thread count (nvcodec.interface)
            return self._to_uint8(stream.grid, self._decode_tiles(compressed, stream.margin))

    def decode_chunks(self, items: Sequence[tuple[Mapping[str, JSONValue] | StreamParams, ChunkData, int, int]]) -> list[np.ndarray]:
        """Several chunks, of one or several streams of this model -> their frames, as ``decode_chunk`` gives them.

        NeRV-Dec batching: chunks with the same quality level and frame count pool their tiles, so
        the tiles of many clips (of many videos) go through one token decode and one grouped-conv
        decoder pass per ``tiles_per_batch`` tiles.
        """
        with single_thread():
            return self._decode_chunks(items)

    def _decode_chunks(self, items: Sequence[tuple[Mapping[str, JSONValue] | StreamParams, ChunkData, int, int]]) -> list[np.ndarray]:
        streams = [cast(HyperNervParams, self.stream_params(params, height, width)) for params, _, height, width in items]
        parsed = [(stream.grid, self._parse_chunk(stream, item[1])) for stream, item in zip(streams, items)]
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i, (_, compressed) in enumerate(parsed):
            groups.setdefault((compressed.quality, compressed.num_frames, streams[i].margin), []).append(i)
        out: list[np.ndarray | None] = [None] * len(items)
        for (quality, num_frames, first_frame), members in groups.items():
            strings = [s for i in members for s in parsed[i][1].strings]
            tiles = self._decode_tiles(CompressedClip(strings, quality, num_frames), first_frame)  # (sum of tiles, n, 3, t, t)
            first = 0
            for i in members:
                grid = parsed[i][0]
                out[i] = self._to_uint8(grid, tiles[first : first + grid.num_tiles])
                first += grid.num_tiles
        return out  # type: ignore[return-value]

    def _decode_tiles(self, compressed: CompressedClip, first_frame: int = 0) -> Tensor:
        """All tiles of a clip, ``tiles_per_batch`` decoders per batched pass -> (num_tiles, n, 3, tile, tile)
        of clip frames ``first_frame .. first_frame + n - 1``."""
        parts = []
        for first in range(0, len(compressed.strings), self.tiles_per_batch):
            strings = compressed.strings[first : first + self.tiles_per_batch]
            parts.append(self.model.decompress(CompressedClip(strings, compressed.quality, compressed.num_frames), first_frame))
        return torch.cat(parts)
