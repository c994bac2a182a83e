"""The Python API: ``encode``, ``decode``, ``info``, ``encode_file``, ``decode_file``.

The CLI is a thin layer over these. Every failure caused by the input raises an ``NvcodecError``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nvcodec import container, io, metrics
from nvcodec.errors import BitstreamError, InputError

__all__ = [
    "encode",
    "decode",
    "info",
    "encode_file",
    "decode_file",
    "iter_decode",
    "StreamInfo",
    "EncodeReport",
    "DecodeReport",
    "parse_frame_range",
    "PartialInputWarning",
]

PartialInputWarning = io.PartialInputWarning  # a result holds fewer frames than asked for or claimed

VideoSource = str | os.PathLike | np.ndarray
ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class ChunkInfo:
    index: int
    frame_start: int
    frame_stop: int
    bytes: int


@dataclass(frozen=True)
class StreamInfo:
    """What ``nvcodec info`` shows: header fields, sizes and rate of a ``.nvc`` stream."""

    codec: str
    model: str
    weights: str
    width: int
    height: int
    frame_count: int
    fps: Fraction
    pixel_format: str
    made_on: str
    params: dict
    total_bytes: int
    header_bytes: int
    chunks: tuple[ChunkInfo, ...]
    verified: bool = False  # every chunk's CRC was checked (``info(..., verify=True)``)

    @property
    def bpp(self) -> float:
        return metrics.bpp(self.total_bytes, self.frame_count, self.height, self.width)

    def to_json_dict(self) -> dict:
        return {
            "codec": self.codec,
            "model": self.model,
            "weights": self.weights,
            "width": self.width,
            "height": self.height,
            "frame_count": self.frame_count,
            "fps": str(self.fps),
            "pixel_format": self.pixel_format,
            "made_on": self.made_on,
            "params": self.params,
            "total_bytes": self.total_bytes,
            "header_bytes": self.header_bytes,
            "bpp": self.bpp,
            "chunks": [vars(c) for c in self.chunks],
            "verified": self.verified,
        }


@dataclass(frozen=True)
class EncodeReport:
    """The one-line summary of an encode; PSNR compares the encoder's reconstruction with the input."""

    bytes: int
    bpp: float
    frames: int
    width: int
    height: int
    psnr_rgb: float
    seconds: float
    warning: str | None = None  # fewer frames than asked for or than the input claims (see io.FrameShortfall)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        return (
            f"encoded {self.frames} frame(s) {self.width}x{self.height}: {self.bytes} bytes, "
            f"{self.bpp:.4f} bpp, PSNR {self.psnr_rgb:.2f} dB, {self.fps:.2f} fps"
        )


@dataclass(frozen=True)
class DecodeReport:
    bytes: int
    bpp: float
    frames: int
    width: int
    height: int
    seconds: float
    warning: str | None = None  # frames asked for past the stream's end (clamped)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        return (
            f"decoded {self.frames} frame(s) {self.width}x{self.height} from {self.bytes} bytes "
            f"({self.bpp:.4f} bpp), {self.fps:.2f} fps"
        )


def parse_frame_range(text: str | None, frame_count: int | None = None) -> slice | None:
    """``"A:B"``, ``"A:"``, ``":B"`` or ``"A"`` (= ``A:A+1``) -> slice, checked by ``io.frame_bounds``.

    With ``frame_count`` the rest of the rule applies too (``io.clamp_frames``: ``A`` past the end
    raises ``InputError``; a ``B`` past the end is clamped later, with a warning).
    """
    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) == 1:
            start = int(parts[0])
            stop = start + 1
        elif len(parts) == 2:
            start = int(parts[0]) if parts[0] else 0
            stop = int(parts[1]) if parts[1] else None
        else:
            raise ValueError
    except ValueError:
        raise InputError(f"bad frame range {text!r}; expected A:B") from None
    start, stop = io.frame_bounds(slice(start, stop))
    if frame_count is not None:
        io.clamp_frames("input", start, stop, frame_count)
    return slice(start, stop)


def _resolve_range(frames: slice | None, frame_count: int, source: str) -> tuple[int, int, io.FrameShortfall | None]:
    """The frame-range rule on a stream of ``frame_count`` frames -> (start, stop, shortfall)."""
    start, stop = io.frame_bounds(frames)
    return io.clamp_frames(source, start, stop, frame_count, noun="stream")


def _source_name(data: bytes | str | os.PathLike) -> str:
    return "stream" if isinstance(data, (bytes, bytearray, memoryview)) else str(data)


def _check_device(device: str) -> str:
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r}; use cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda requested but CUDA is not available")
    return device


def _load_source(video: VideoSource, frames: slice | None) -> io.Video:
    if isinstance(video, np.ndarray):
        array = video[None] if video.ndim == 3 else video
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise InputError(f"array input must be uint8 (T, H, W, 3) or (H, W, 3), got {array.dtype} {video.shape}")
        if array.shape[0] == 0 or array.shape[1] < 1 or array.shape[2] < 1:
            raise InputError(f"array input has no pixels: shape {video.shape}")
        if max(array.shape[1:3]) > container.MAX_SIDE:
            raise InputError(f"frame size {array.shape[2]}x{array.shape[1]} above {container.MAX_SIDE} per side")
        start, stop, shortfall = io.clamp_frames("array", *io.frame_bounds(frames), array.shape[0])
        if shortfall is not None:
            warnings.warn(shortfall.message("encoded"), PartialInputWarning, stacklevel=3)
        return io.Video(np.ascontiguousarray(array[start:stop]), io.DEFAULT_FPS, shortfall)
    return io.read_video(video, *io.frame_bounds(frames))  # warns itself on a shortfall


def _encode_video(
    source: io.Video, codec: str, quality: int | None, model: str | None, refine_steps: int, device: str,
    progress: ProgressFn | None, clip_stride: int | None = None,
) -> tuple[bytes, np.ndarray | None]:
    from nvcodec import registry

    device = _check_device(device)
    model_name = model or registry.default_model(codec)
    spec = registry.get_spec(model_name)
    if spec.codec != codec:
        raise InputError(f"model {model_name!r} belongs to codec {spec.codec!r}, not {codec!r}")
    if refine_steps < 0 or refine_steps > 100_000:
        raise InputError(f"--refine-steps {refine_steps} outside 0..100000")
    adapter = registry.load_codec(model_name, device, allow_untrained=not spec.weights_file)
    if clip_stride is not None:
        if codec != "hypernerv":
            raise InputError(f"--clip-stride is a hypernerv option; codec {codec!r} codes every frame on its own")
        adapter = type(adapter)(adapter.model, model_name, device, clip_stride=clip_stride)
    quality = adapter.check_quality(adapter.default_quality if quality is None else quality)
    encoded = adapter.encode(source.frames, quality, refine_steps=refine_steps, progress=progress)
    stream = container.pack_stream(
        codec=codec,
        model=model_name,
        weights=registry.weights_fingerprint(model_name),
        width=source.width,
        height=source.height,
        fps=source.fps,
        params=dict(encoded.params),
        chunks=list(encoded.chunks),
        made_on=device,
    )
    return stream, encoded.reconstruction


def encode(
    video: VideoSource,
    codec: str = "intra",
    quality: int | None = None,
    *,
    model: str | None = None,
    refine_steps: int = 0,
    frames: slice | None = None,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    clip_stride: int | None = None,
) -> bytes:
    """Encode a video (path, or uint8 array (T, H, W, 3)) into a complete ``.nvc`` stream.

    ``quality`` picks a shipped rate point, 0 .. levels-1 (higher = better; default: the middle one).
    ``clip_stride`` (hypernerv only, 1 .. clip length): frames shown per chunk, each chunk coding
    the clip-length window centred on them (no clip-edge quality dip, about clip_len / S x rate).
    ``frames=slice(A, B)``: ``A`` past the end raises ``InputError``; ``B`` past the end, or an
    input with fewer frames than its header claims, encodes what there is and warns with
    ``PartialInputWarning``.
    """
    stream, _ = _encode_video(_load_source(video, frames), codec, quality, model, refine_steps, device, progress, clip_stride)
    return stream


def info(data: bytes | str | os.PathLike, verify: bool = False) -> StreamInfo:
    """Header, sizes and rate of a stream given as bytes or a file path.

    Reads the header only (its CRC and chunk table are always checked: the table must cover every
    frame exactly once). ``verify=True`` also reads every chunk and checks its CRC; the first
    damaged chunk raises ``BitstreamError`` naming it.
    """
    with _open_reader(data) as reader:
        header = reader.header
        if verify:
            reader.verify()
        chunks = tuple(ChunkInfo(i, c.frame_start, c.frame_stop, c.length) for i, c in enumerate(header.chunks))
        return StreamInfo(
            codec=header.codec,
            model=header.model,
            weights=header.weights,
            width=header.width,
            height=header.height,
            frame_count=header.frame_count,
            fps=header.fps,
            pixel_format=header.pixel_format,
            made_on=header.made_on,
            params=header.params,
            total_bytes=reader.size,
            header_bytes=reader.size - header.chunk_area_bytes,
            chunks=chunks,
            verified=verify,
        )


class _open_reader:
    """Context manager: a ``StreamReader`` over bytes or over an open file (closed on exit)."""

    def __init__(self, data: bytes | str | os.PathLike) -> None:
        self._handle: BinaryIO | None = None
        if isinstance(data, (bytes, bytearray, memoryview)):
            self.reader = container.StreamReader(data)
            return
        path = Path(data)
        if not path.is_file():
            raise InputError(f"stream not found: {path}" if not path.exists() else f"not a file: {path}")
        self._handle = open(path, "rb")
        try:
            self.reader = container.StreamReader(self._handle)
        except BaseException:
            self._handle.close()
            raise

    def __enter__(self) -> container.StreamReader:
        return self.reader

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()


def stream_codec(header: container.StreamHeader, device: str = "cpu"):
    """The checked ``VideoCodec`` adapter that decodes streams with ``header`` on ``device``.

    Refuses (``BitstreamError``) a stream made on another device kind, one whose model belongs to
    another codec, or one made with other weights than the installed ones.
    """
    from nvcodec import registry

    device = _check_device(device)
    if header.made_on != device:
        # Entropy parameters computed on another device kind may differ in the last bits, which
        # would desynchronise the rANS decoder and produce garbage: refuse instead.
        raise BitstreamError(
            f"stream was encoded on {header.made_on}; decode it with --device {header.made_on} "
            f"(cross-device decoding is not bit-exact)"
        )
    spec = registry.get_spec(header.model)
    if spec.codec != header.codec:
        raise BitstreamError(f"stream says codec {header.codec!r} but model {header.model!r} is {spec.codec!r}")
    registry.check_fingerprint(header.model, header.weights)
    return registry.load_codec(header.model, device, allow_untrained=not spec.weights_file)


def check_decoded(decoded: np.ndarray, header: container.StreamHeader, index: int) -> np.ndarray:
    """``BitstreamError`` unless chunk ``index`` decoded to (its frames, H, W, 3) uint8."""
    chunk = header.chunks[index]
    expected = (chunk.frame_stop - chunk.frame_start, header.height, header.width, 3)
    if decoded.shape != expected or decoded.dtype != np.uint8:
        raise BitstreamError(f"chunk {index} decoded to {decoded.shape}, expected {expected}")
    return decoded


def iter_decode(
    reader: container.StreamReader, frames: slice | None = None, device: str = "cpu",
    progress: ProgressFn | None = None,
) -> Iterator[np.ndarray]:
    """Yield decoded frames chunk by chunk ((n, H, W, 3) uint8), reading only the covering chunks.

    The frame-range rule of ``io.clamp_frames``: ``A`` past the end raises ``InputError``, ``B``
    past the end is clamped with a ``PartialInputWarning``.
    """
    header = reader.header
    adapter = stream_codec(header, device)
    start, stop, shortfall = _resolve_range(frames, header.frame_count, "stream")
    if shortfall is not None:
        warnings.warn(shortfall.message("decoded"), PartialInputWarning, stacklevel=2)
    stream = adapter.parse_params(header.params, header.height, header.width)  # checked once per stream
    for index in header.chunks_for(start, stop):
        chunk = reader.read_chunk(index)
        try:
            decoded = adapter.decode_chunk(stream, chunk, header.height, header.width)
        except BitstreamError as exc:  # say where: the codec knows what, not which chunk
            raise BitstreamError(f"chunk {index} (frames {chunk.frame_start}:{chunk.frame_stop}): {exc}") from None
        check_decoded(decoded, header, index)
        lo = max(start - chunk.frame_start, 0)
        hi = min(stop, chunk.frame_stop) - chunk.frame_start
        if progress is not None:
            progress(hi - lo)
        yield decoded[lo:hi]


def decode(data: bytes | str | os.PathLike, frames: slice | None = None, device: str = "cpu") -> np.ndarray:
    """Decode a stream (bytes or path) into uint8 frames (T, H, W, 3); ``frames`` selects a range.

    ``frames=slice(A, B)``: ``A`` past the end raises ``InputError``; ``B`` past the end is clamped
    with a ``PartialInputWarning``.
    """
    with _open_reader(data) as reader:
        start, stop, shortfall = _resolve_range(frames, reader.header.frame_count, _source_name(data))
        if shortfall is not None:
            warnings.warn(shortfall.message("decoded"), PartialInputWarning, stacklevel=2)
        return np.concatenate(list(iter_decode(reader, slice(start, stop), device)), axis=0)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_output(src: Path, dst: Path) -> None:
    source, target = src.resolve(), dst.resolve()
    if source == target or _same_file(src, dst):
        raise InputError(f"output {dst} is the input; choose another name")
    if target in source.parents:  # --force would replace the folder, and the input with it
        raise InputError(f"output {dst} is a folder that holds the input {src}; choose another name")


def encode_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    codec: str = "intra",
    quality: int | None = None,
    *,
    model: str | None = None,
    refine_steps: int = 0,
    frames: slice | None = None,
    device: str = "cpu",
    force: bool = False,
    progress: ProgressFn | None = None,
    on_loaded: Callable[[int], None] | None = None,
    clip_stride: int | None = None,
) -> EncodeReport:
    """Encode ``src`` into the ``.nvc`` file ``dst`` (written atomically; never over ``src``).

    A shorter input than asked for or claimed is encoded as far as it goes: ``report.warning`` says
    so (and a ``PartialInputWarning`` is issued).
    """
    src, dst = Path(src), Path(dst)
    _check_output(src, dst)
    if dst.exists() and not force:
        raise InputError(f"output {dst} exists; pass --force to overwrite")
    source = _load_source(src, frames)
    if on_loaded is not None:
        on_loaded(source.num_frames)
    started = time.perf_counter()
    stream, reconstruction = _encode_video(source, codec, quality, model, refine_steps, device, progress, clip_stride)
    seconds = time.perf_counter() - started
    with io.atomic_output(dst, force=force) as tmp:
        tmp.write_bytes(stream)
    psnr = metrics.psnr_rgb(source.frames, reconstruction) if reconstruction is not None else float("nan")
    return EncodeReport(
        bytes=len(stream),
        bpp=metrics.bpp(len(stream), source.num_frames, source.height, source.width),
        frames=source.num_frames,
        width=source.width,
        height=source.height,
        psnr_rgb=psnr,
        seconds=seconds,
        warning=None if source.shortfall is None else source.shortfall.message("encoded"),
    )


def decode_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    frames: slice | None = None,
    *,
    device: str = "cpu",
    force: bool = False,
    progress: ProgressFn | None = None,
    on_loaded: Callable[[int], None] | None = None,
) -> DecodeReport:
    """Decode ``src`` into ``dst`` (.mkv lossless FFV1, .mp4 H.264, .y4m, .png, or a folder of PNGs).

    Frames are written chunk by chunk, so memory does not grow with the frame count. The output is
    written to a temporary name and renamed: an error or an interrupt leaves no partial file.
    """
    src, dst = Path(src), Path(dst)
    _check_output(src, dst)
    kind = io.output_kind(dst)
    if dst.exists() and not force:
        raise InputError(f"output {dst} exists; pass --force to overwrite")
    with _open_reader(src) as reader:
        header = reader.header
        start, stop, shortfall = _resolve_range(frames, header.frame_count, str(src))
        warning = None if shortfall is None else shortfall.message("decoded")
        if warning is not None:
            warnings.warn(warning, PartialInputWarning, stacklevel=2)
        if kind == "png" and stop - start != 1:
            raise InputError(f"a .png output holds one frame; {stop - start} selected (use --frames A:A+1 or a folder)")
        if on_loaded is not None:
            on_loaded(stop - start)
        started = time.perf_counter()
        count = 0
        with io.atomic_output(dst, force=force) as tmp:
            with io.VideoWriter(tmp, kind, header.width, header.height, header.fps) as writer:
                for block in iter_decode(reader, slice(start, stop), device, progress):
                    writer.write(block)
                    count += len(block)
        seconds = time.perf_counter() - started
        return DecodeReport(
            bytes=reader.size,
            bpp=metrics.bpp(reader.size, header.frame_count, header.height, header.width),
            frames=count,
            width=header.width,
            height=header.height,
            seconds=seconds,
            warning=warning,
        )
