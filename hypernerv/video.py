"""``HyperNervVideoCodec``: the hypernerv adapter between the container/API and ``HyperNerv``.

Geometry: the video splits into clips of ``clip_len`` frames (the last may be shorter) and every
frame into the tiles of a ``nvcodec.geometry.TileGrid`` (replicate padding at the borders, overlap
blended by linear ramps; by default as much overlap, up to tile/8, as costs no extra tile). ONE
chunk per clip; its payload holds every tile's entropy-coded weight tokens. Header params (JSON):
format version, quality, clip length, tile size, overlap and refine steps (informational).

Chunk payload, little-endian, version 1::

    u8 version | u8 quality level | u16 num_frames | u16 num_tiles | u16 num_tokens | u16 code_channels
    num_tiles x (u32 length | rANS string)     (``entropy.rans.pack_strings``; must end at the payload end)

Every field is checked against the params, the frame size and the model before anything is
decoded; any inconsistency raises ``BitstreamError``. The encoder builds its reconstruction by
decoding its own payload bytes with the same code path as ``decode_chunk``, so both are identical.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from nvcodec.entropy.rans import pack_strings, unpack_strings
from nvcodec.errors import BitstreamError, InputError
from nvcodec.geometry import TileGrid
from nvcodec.interface import ChunkData, EncodedVideo, JSONValue, ProgressFn, VideoCodec

from .model import CompressedClip, HyperNerv

__all__ = ["HyperNervVideoCodec", "PAYLOAD_VERSION", "free_overlap", "pack_payload", "unpack_payload"]

PAYLOAD_VERSION = 1
PARAMS_VERSION = 1
_HEAD = struct.Struct("<BBHHHH")
MAX_STRING_BYTES = 1 << 20  # per tile: far above any real token string (hundreds of bytes)
MAX_TILES = 1 << 16
MAX_REFINE_STEPS = 100_000


def pack_payload(compressed: CompressedClip, num_tokens: int, code_channels: int) -> bytes:
    """One clip's coded tiles -> chunk payload bytes (see module docstring)."""
    head = _HEAD.pack(PAYLOAD_VERSION, compressed.level, compressed.num_frames, len(compressed.strings), num_tokens, code_channels)
    return head + pack_strings(compressed.strings)


def unpack_payload(payload: bytes, num_tokens: int, code_channels: int) -> CompressedClip:
    """Chunk payload -> ``CompressedClip``; structural damage raises ``BitstreamError``."""
    if len(payload) < _HEAD.size:
        raise BitstreamError(f"hypernerv chunk payload of {len(payload)} bytes is shorter than its {_HEAD.size}-byte header")
    version, level, num_frames, num_tiles, tokens, channels = _HEAD.unpack_from(payload, 0)
    if version != PAYLOAD_VERSION:
        raise BitstreamError(f"hypernerv chunk payload version {version}, this build reads {PAYLOAD_VERSION}")
    if (tokens, channels) != (num_tokens, code_channels):
        raise BitstreamError(f"chunk codes {tokens}x{channels} weight tokens, the model has {num_tokens}x{code_channels}")
    if num_tiles == 0 or num_frames == 0:
        raise BitstreamError(f"chunk has {num_tiles} tiles and {num_frames} frames; both must be positive")
    if len(payload) < _HEAD.size + 4 * num_tiles:
        raise BitstreamError(f"chunk payload of {len(payload)} bytes is too short for {num_tiles} tile strings")
    strings, end = unpack_strings(payload, num_tiles, _HEAD.size)
    if end != len(payload):
        raise BitstreamError(f"chunk payload is {len(payload)} bytes, its strings end at byte {end}")
    if any(not 0 < len(string) <= MAX_STRING_BYTES for string in strings):
        raise BitstreamError(f"a tile string is empty or longer than {MAX_STRING_BYTES} bytes")
    return CompressedClip(strings, level, num_frames)


def free_overlap(height: int, width: int, tile: int, limit: int) -> int:
    """The largest overlap <= ``limit`` whose ``TileGrid`` has as many tiles as overlap 0 (0 if none)."""
    base = TileGrid(height, width, tile, tile, 0).num_tiles
    return next(o for o in range(limit, -1, -1) if TileGrid(height, width, tile, tile, o).num_tiles == base)


class HyperNervVideoCodec(VideoCodec):
    """Clips x tiles -> one hypernetwork pass each -> coded weight tokens; decoding is batched."""

    codec_name = "hypernerv"
    # Tile overlap in pixels; None = the largest overlap up to tile_size // 8 that needs no more tiles
    # than overlap 0 on the frame size at hand (free seam blending; :func:`free_overlap`).
    overlap: int | None = None
    tiles_per_batch: int = 64  # tiles decoded in one grouped-conv pass (bounds memory on big frames)
    refine_lr: float = 0.05  # Adam step size of the optional code refinement (0.01/0.03/0.1 gave +0.9/+2.3/+4.1 dB at 20 steps)

    def __init__(self, model: HyperNerv, model_name: str, device: str = "cpu", overlap: int | None = None) -> None:
        super().__init__(model, model_name, device)
        if overlap is not None:
            self.overlap = overlap
        self.model.eval().to(device)

    @property
    def quality_levels(self) -> int:
        return self.model.config.quality_levels

    # ----------------------------------------------------------------- params
    def overlap_for(self, height: int, width: int) -> int:
        """The tile overlap the encoder uses on ``height x width`` frames."""
        if self.overlap is not None:
            return self.overlap
        tile = self.model.config.tile_size
        return free_overlap(height, width, tile, tile // 8)

    def _params(self, quality: int, refine_steps: int, overlap: int) -> dict[str, JSONValue]:
        cfg = self.model.config
        return {
            "version": PARAMS_VERSION,
            "quality": quality,
            "clip_len": cfg.clip_len,
            "tile_size": cfg.tile_size,
            "overlap": overlap,
            "refine_steps": refine_steps,
        }

    def _check_params(self, params: Mapping[str, JSONValue]) -> tuple[int, int, int]:
        """-> (quality, clip_len, overlap), or ``BitstreamError`` naming the bad field."""
        cfg = self.model.config

        def integer(key: str, low: int, high: int) -> int:
            value = params.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise BitstreamError(f"hypernerv header field {key!r} = {value!r}, expected an integer in {low}..{high}")
            return value

        integer("version", PARAMS_VERSION, PARAMS_VERSION)
        quality = integer("quality", 0, self.quality_levels - 1)
        clip_len = integer("clip_len", cfg.clip_len, cfg.clip_len)
        integer("tile_size", cfg.tile_size, cfg.tile_size)
        overlap = integer("overlap", 0, (cfg.tile_size - 1) // 2)
        integer("refine_steps", 0, MAX_REFINE_STEPS)
        return quality, clip_len, overlap

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
        grid = self._grid(height, width, self.overlap_for(height, width))
        for chunk, _ in self._compress(frames, quality, refine_steps, grid):
            yield chunk

    def _compress(self, frames: np.ndarray, quality: int, refine_steps: int, grid: TileGrid) -> Iterator[tuple[ChunkData, CompressedClip]]:
        """Checked arguments -> (chunk, its coded tiles) per clip of ``clip_len`` frames."""
        clip_len = self.model.config.clip_len
        for start in range(0, frames.shape[0], clip_len):
            stop = min(start + clip_len, frames.shape[0])
            clip = torch.from_numpy(frames[start:stop]).to(self.device).permute(0, 3, 1, 2).float() / 255.0  # (n, 3, H, W)
            tiles = grid.split(clip).contiguous()  # (num_tiles, n, 3, tile, tile)
            strings: list[bytes] = []
            for first in range(0, grid.num_tiles, self.tiles_per_batch):
                part = self.model.compress(tiles[first : first + self.tiles_per_batch], quality, refine_steps, self.refine_lr)
                strings.extend(part.strings)
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
        overlap = self.overlap_for(height, width)
        grid = self._grid(height, width, overlap)
        params = self._params(quality, refine_steps, overlap)
        chunks, reconstructions = [], []
        token_bytes = 0
        for chunk, compressed in self._compress(frames, quality, refine_steps, grid):
            chunks.append(chunk)
            token_bytes += sum(len(s) for s in compressed.strings)
            reconstructions.append(self.decode_chunk(params, chunk, height, width))
            if progress is not None:
                progress(chunk.num_frames)
        stats = {"token_bytes": float(token_bytes), "num_tiles": float(grid.num_tiles), "num_clips": float(len(chunks))}
        return EncodedVideo(params, chunks, np.concatenate(reconstructions), stats)

    # ----------------------------------------------------------------- decode
    def _grid(self, height: int, width: int, overlap: int) -> TileGrid:
        tile = self.model.config.tile_size
        return TileGrid(height, width, tile, tile, overlap)

    def decode_chunk(self, params: Mapping[str, JSONValue], chunk: ChunkData, height: int, width: int) -> np.ndarray:
        """One chunk -> (chunk.num_frames, height, width, 3) uint8; inconsistencies -> ``BitstreamError``."""
        quality, clip_len, overlap = self._check_params(params)
        if not (isinstance(height, int) and isinstance(width, int) and 1 <= height <= 1 << 16 and 1 <= width <= 1 << 16):
            raise BitstreamError(f"frame size {width}x{height} out of range")
        grid = self._grid(height, width, overlap)
        if grid.num_tiles > MAX_TILES:
            raise BitstreamError(f"frame size {width}x{height} needs {grid.num_tiles} tiles, more than {MAX_TILES}")
        if not 1 <= chunk.num_frames <= clip_len:
            raise BitstreamError(f"chunk covers {chunk.num_frames} frames ({chunk.frame_start}:{chunk.frame_stop}), clips hold 1..{clip_len}")
        compressed = unpack_payload(chunk.payload, self.model.num_weight_tokens, self.model.config.hypernet.code_channels)
        if compressed.num_frames != chunk.num_frames:
            raise BitstreamError(f"chunk payload codes {compressed.num_frames} frames, the chunk table says {chunk.num_frames}")
        if compressed.level != quality:
            raise BitstreamError(f"chunk payload uses quality {compressed.level}, the header says {quality}")
        if len(compressed.strings) != grid.num_tiles:
            raise BitstreamError(f"chunk payload has {len(compressed.strings)} tiles, a {width}x{height} frame has {grid.num_tiles}")
        tiles = self._decode_tiles(compressed)  # (num_tiles, n, 3, tile, tile)
        frames = grid.merge(tiles)  # (n, 3, H, W)
        return (frames * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def _decode_tiles(self, compressed: CompressedClip) -> Tensor:
        """All tiles of a clip, ``tiles_per_batch`` decoders per batched pass -> (num_tiles, n, 3, tile, tile)."""
        parts = []
        for first in range(0, len(compressed.strings), self.tiles_per_batch):
            strings = compressed.strings[first : first + self.tiles_per_batch]
            parts.append(self.model.decompress(CompressedClip(strings, compressed.level, compressed.num_frames)))
        return torch.cat(parts)
