"""``IntraVideoCodec``: the intra codec as a ``VideoCodec`` (every frame coded independently).

Header params (JSON): ``quality``, ``chunk_version`` (absent in the oldest streams: 1) and
``pad_multiple`` (informational). They are parsed once per stream into an ``IntraParams`` record.

Chunk layout (one chunk per frame), little-endian. Version 2 (written now) carries the strings
and, as a guard, the latent grid they were coded for; quality and frame size come from the header::

    u8  version (= 2)     u16 latent_h     u16 latent_w
    u32 len(z) + z string                  u32 len(y) + y string

The latent size is checked against the header's frame size before anything is decoded, so a forged
frame size cannot make the rANS decoder read symbols past the end of strings coded for a smaller grid.

Version 1 (still decoded) repeated the per-stream fields in every chunk (16 bytes)::

    u8  version (= 1)     u8  quality      u16 reserved (= 0)
    u32 height            u32 width        u16 latent_h     u16 latent_w
    u32 len(z) + z string                  u32 len(y) + y string

A chunk's version must equal the header's ``chunk_version``; a version this build does not know
raises ``UnsupportedVersionError``. Every field is checked against the header (``params``, frame
size) and every length against the bytes present before anything is decoded; any inconsistency
raises ``BitstreamError``.

Bit-exactness: encoding and decoding run with ONE intra-op thread (``single_thread``). CPU conv
kernels split their work differently with more threads and the float results change in the last
bits (measured on intra-small: 3.6e-7 in the hyper-synthesis output, enough to flip a 1/64 mean
rounding, and 7e-5 in x_hat, enough to flip uint8 pixels); with one thread the decoder reproduces
the encoder's reconstruction exactly whatever ``torch.get_num_threads()`` the caller uses.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from nvcodec.codec.model import IntraCodec, IntraCompressed
from nvcodec.errors import BitstreamError, InputError, NvcodecError, UnsupportedVersionError
from nvcodec.geometry import frames_to_tensor, tensor_to_frames
from nvcodec.interface import MAX_SIDE, ChunkData, EncodedVideo, JSONValue, ProgressFn, StreamParams, VideoCodec, single_thread

__all__ = ["IntraVideoCodec", "IntraParams", "CHUNK_VERSION", "CHUNK_VERSIONS", "CHUNK_FRAMING", "header_params", "pack_chunk", "unpack_chunk"]

CHUNK_VERSION = 2  # written
CHUNK_VERSIONS = (1, 2)  # decoded
_HEADER_V1 = struct.Struct("<BBHIIHH")
_HEADER_V2 = struct.Struct("<BHH")
CHUNK_FRAMING = _HEADER_V2.size + 2 * 4  # bytes a written chunk adds to its two strings: header + two u32 lengths


@dataclass(frozen=True)
class IntraParams(StreamParams):
    """An intra stream's checked header: quality level, chunk version and the latent size of its frames."""

    quality: int
    chunk_version: int
    latent_hw: tuple[int, int]


def header_params(quality: int, pad_multiple: int) -> dict[str, JSONValue]:
    """The header params of a stream this build writes."""
    return {"quality": quality, "chunk_version": CHUNK_VERSION, "pad_multiple": pad_multiple}


def pack_chunk(compressed: IntraCompressed, version: int = CHUNK_VERSION) -> bytes:
    """Serialise one coded frame (see module docstring); ``version=1`` writes the old layout (tests)."""
    if version == 1:
        (h, w), (lh, lw) = compressed.image_hw, compressed.latent_hw
        return _HEADER_V1.pack(1, compressed.quality, 0, h, w, lh, lw) + compressed.to_bytes()
    if version != CHUNK_VERSION:
        raise ValueError(f"intra chunk version {version} cannot be written (this build writes 1 or {CHUNK_VERSION})")
    return _HEADER_V2.pack(CHUNK_VERSION, *compressed.latent_hw) + compressed.to_bytes()


def unpack_chunk(payload: bytes, stream: IntraParams) -> IntraCompressed:
    """Parse and validate one chunk against its stream's params (quality, frame size, latent size)."""
    if not payload:
        raise BitstreamError("intra chunk is empty")
    if payload[0] != stream.chunk_version:
        raise BitstreamError(f"intra chunk version {payload[0]} differs from the header's chunk_version {stream.chunk_version}")
    if stream.chunk_version == 1:
        return _unpack_chunk_v1(payload, stream)
    if len(payload) < _HEADER_V2.size:
        raise BitstreamError(f"intra chunk of {len(payload)} bytes is shorter than its {_HEADER_V2.size}-byte header")
    _, lh, lw = _HEADER_V2.unpack_from(payload, 0)
    if (lh, lw) != stream.latent_hw:
        raise BitstreamError(f"intra chunk latent size {lh}x{lw}, a {stream.width}x{stream.height} frame has {stream.latent_hw[0]}x{stream.latent_hw[1]}")
    return IntraCompressed.from_bytes(payload[_HEADER_V2.size :], stream.quality, (stream.height, stream.width), stream.latent_hw)


def _unpack_chunk_v1(payload: bytes, stream: IntraParams) -> IntraCompressed:
    """A version-1 chunk: its 16-byte header must repeat the stream's quality, frame and latent size."""
    quality, height, width, latent_hw = stream.quality, stream.height, stream.width, stream.latent_hw
    if len(payload) < _HEADER_V1.size:
        raise BitstreamError(f"intra chunk of {len(payload)} bytes is shorter than its {_HEADER_V1.size}-byte header")
    _, chunk_quality, reserved, h, w, lh, lw = _HEADER_V1.unpack_from(payload, 0)
    if reserved != 0:
        raise BitstreamError(f"intra chunk reserved field is {reserved}, expected 0")
    if chunk_quality != quality:
        raise BitstreamError(f"intra chunk quality {chunk_quality} differs from the header's {quality}")
    if (h, w) != (height, width):
        raise BitstreamError(f"intra chunk frame size {h}x{w} differs from the header's {height}x{width}")
    if (lh, lw) != tuple(latent_hw):
        raise BitstreamError(f"intra chunk latent size {lh}x{lw}, expected {latent_hw[0]}x{latent_hw[1]}")
    return IntraCompressed.from_bytes(payload[_HEADER_V1.size :], quality, (h, w), (lh, lw))


class IntraVideoCodec(VideoCodec):
    """Adapter: frames <-> one chunk per frame, coded by an ``IntraCodec`` (entropy models updated)."""

    codec_name = "intra"
    params_type = IntraParams

    def __init__(self, model: IntraCodec, model_name: str, device: str = "cpu") -> None:
        super().__init__(model, model_name, device)
        self.model: IntraCodec = model

    @property
    def quality_levels(self) -> int:
        return self.model.config.quality_levels

    def encode(
        self,
        frames: np.ndarray,
        quality: int,
        *,
        refine_steps: int = 0,
        progress: ProgressFn | None = None,
    ) -> EncodedVideo:
        """``frames``: (T, H, W, 3) uint8. ``refine_steps`` > 0: encode-time refinement of every
        frame's latent (``IntraCodec.encode``); the decoder and the stream format are unchanged."""
        quality = self.check_quality(quality)
        self.check_frames(frames)
        if max(frames.shape[1:3]) > MAX_SIDE:
            raise InputError(f"frame size {frames.shape[2]}x{frames.shape[1]} exceeds {MAX_SIDE} per side")
        self.model.eval()
        chunks: list[ChunkData] = []
        reconstruction = np.empty_like(frames)
        total_bits = 0
        with torch.inference_mode(refine_steps <= 0), single_thread():  # refinement needs autograd
            for index, frame in enumerate(frames):
                image = frames_to_tensor(frame, self.device)[None]  # (1, 3, H, W)
                encoded = self.model.encode(image, quality, refine_steps=refine_steps)
                payload = pack_chunk(encoded.compressed)
                chunks.append(ChunkData(index, index + 1, payload))
                reconstruction[index] = tensor_to_frames(encoded.x_hat[0])
                total_bits += 8 * len(payload)
                if progress is not None:
                    progress(1)
        height, width = frames.shape[1:3]
        params = header_params(quality, self.model.config.pad_multiple)
        stats = {"chunk_bpp": total_bits / (frames.shape[0] * height * width)}
        return EncodedVideo(params=params, chunks=chunks, reconstruction=reconstruction, stats=stats)

    def parse_params(self, params: Mapping[str, JSONValue], height: int, width: int) -> IntraParams:
        """Header params + frame size -> ``IntraParams`` (see ``VideoCodec.parse_params``)."""
        quality = params.get("quality")
        if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality < self.quality_levels:
            raise BitstreamError(f"header quality {quality!r} out of range 0..{self.quality_levels - 1}")
        version = params.get("chunk_version", 1)
        if isinstance(version, bool) or not isinstance(version, int):
            raise BitstreamError(f"header chunk_version {version!r} is not an integer")
        if version not in CHUNK_VERSIONS:
            raise UnsupportedVersionError(f"intra chunk version {version} unsupported (this build reads {', '.join(map(str, CHUNK_VERSIONS))})")
        if not (isinstance(height, int) and isinstance(width, int) and 0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
            raise BitstreamError(f"frame size {height}x{width} out of range")
        return IntraParams(height, width, quality, version, self.model.latent_hw_for((height, width)))

    def decode_chunk(self, params: Mapping[str, JSONValue] | StreamParams, chunk: ChunkData, height: int, width: int) -> np.ndarray:
        """Decode one chunk (one frame) into (1, height, width, 3) uint8."""
        stream = cast(IntraParams, self.stream_params(params, height, width))
        if chunk.num_frames != 1:
            raise BitstreamError(f"intra chunks hold one frame each, this one covers {chunk.num_frames}")
        compressed = unpack_chunk(chunk.payload, stream)
        self.model.eval()
        try:
            with torch.inference_mode(), single_thread():
                x_hat = self.model.decompress(compressed)
        except NvcodecError:
            raise
        except Exception as exc:  # the rANS decoder / entropy models reject damaged strings in their own ways
            raise BitstreamError(f"intra chunk for frames {chunk.frame_start}:{chunk.frame_stop} is damaged: {exc}") from None
        return tensor_to_frames(x_hat)  # (1, H, W, 3)
