"""Video and image I/O on PyAV and Pillow, behind one input policy: everything becomes uint8 RGB ``(T, H, W, 3)``.

Input policy (untrusted input). Every reader of media (CLI, API, bench, training data, the HTTP
service) goes through ``open_input`` / ``check_input``:

- the path is opened by Python as a plain local regular file and PyAV gets the file object, so
  no protocol prefix (``concat:``, ``subfile:``, ``file:``, URLs) and no image-sequence pattern is
  ever interpreted by FFmpeg;
- the format is detected from the file's first bytes against ``INPUT_FORMATS`` (MP4/MOV,
  Matroska/WebM, AVI, MPEG-TS, MPEG-PS, Ogg, FLV, Y4M; PNG, JPEG, WebP, BMP, TIFF), whatever the
  file's name says, and that demuxer (or Pillow plugin) is forced: FFmpeg never probes;
- playlists (HLS, DASH), concat lists, text (FFmpeg's tty demuxer), and anything unrecognised are
  refused with an ``InputError`` naming what was detected;
- FFmpeg may not open anything else: ``protocol_whitelist=file``, the mov demuxer's external data
  references off (``enable_drefs=0``), and any nested open a demuxer attempts is refused.

Partial input is reported, never silent: one frame-range rule (``frame_bounds`` then
``clamp_frames``) for encode and decode; a result with fewer frames than asked for, or than the
input's header claims, carries a ``FrameShortfall`` and warns with ``PartialInputWarning``.

Grayscale, RGBA, palette and 10-bit sources are converted to 8-bit RGB. Writers: lossless FFV1
``.mkv`` (bit-exact RGB), H.264 ``.mp4``, ``.y4m`` (16-bit 4:4:4, RGB round trip bit-exact), one
``.png``, or a folder of PNGs. Outputs are written to a temporary name and renamed into place (see
``atomic_output``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nvcodec.container import MAX_FRAMES
from nvcodec.container import MAX_SIDE as MAX_DIMENSION
from nvcodec.errors import InputError

__all__ = [
    "Video",
    "VideoProbe",
    "InputFormat",
    "INPUT_FORMATS",
    "OpenedInput",
    "FrameShortfall",
    "PartialInputWarning",
    "IMAGE_SUFFIXES",
    "MAX_DIMENSION",
    "MAX_FRAMES",
    "check_input",
    "open_input",
    "frame_bounds",
    "clamp_frames",
    "probe",
    "iter_frames",
    "read_video",
    "write_video",
    "VideoWriter",
    "atomic_output",
    "output_kind",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}  # for folder scans; content decides
DEFAULT_FPS = Fraction(25, 1)
SNIFF_BYTES = 4096  # what format detection reads: every signature below lies in the first 4 KiB


# -- the input policy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFormat:
    """One accepted input format: ``demuxer`` (FFmpeg, forced on open) for video, ``pillow`` for images."""

    name: str  # what check_input returns
    label: str  # for messages and docs
    demuxer: str | None = None
    pillow: str | None = None

    @property
    def is_image(self) -> bool:
        return self.pillow is not None


INPUT_FORMATS: tuple[InputFormat, ...] = (
    InputFormat("mp4", "MP4/MOV", demuxer="mov"),
    InputFormat("matroska", "Matroska/WebM", demuxer="matroska"),
    InputFormat("avi", "AVI", demuxer="avi"),
    InputFormat("mpegts", "MPEG-TS", demuxer="mpegts"),
    InputFormat("mpegps", "MPEG-PS", demuxer="mpeg"),
    InputFormat("ogg", "Ogg", demuxer="ogg"),
    InputFormat("flv", "FLV", demuxer="flv"),
    InputFormat("y4m", "Y4M", demuxer="yuv4mpegpipe"),
    InputFormat("png", "PNG", pillow="PNG"),
    InputFormat("jpeg", "JPEG", pillow="JPEG"),
    InputFormat("webp", "WebP", pillow="WEBP"),
    InputFormat("bmp", "BMP", pillow="BMP"),
    InputFormat("tiff", "TIFF", pillow="TIFF"),
)
_FORMATS = {f.name: f for f in INPUT_FORMATS}
# Names FFmpeg reports for the demuxers above (short and long spellings).
_ALLOWED_DEMUXERS = {f.demuxer for f in INPUT_FORMATS if f.demuxer} | {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"}
_ACCEPTED = ", ".join(f.label for f in INPUT_FORMATS)
_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}  # a QuickTime file's first box
_TS_LAYOUTS = ((188, 0), (192, 4), (204, 0))  # MPEG-TS, M2TS (4-byte timecode first), TS with FEC
_URL_LIKE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*:|subfile,)")  # "http://", "concat:", "file:", "subfile,,start,..."
_PLAYLIST = "playlists and concat lists are not accepted"


def _local_file(path: str | os.PathLike) -> tuple[Path, BinaryIO]:
    """Open ``path`` as a plain local regular file (no protocols, no devices or FIFOs); ``InputError`` if not."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"input must be a file path, got {type(path).__name__}")
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except FileNotFoundError:
        if _URL_LIKE.match(str(path)):
            raise InputError(f"input {path} is not a local file; URLs and FFmpeg protocols are not accepted") from None
        raise InputError(f"input not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"input is a directory, expected a video or image file: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)  # of what was opened, not of a name that may have changed since
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"input is a directory, expected a video or image file: {path}")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"input {path} is not a regular file (a device, FIFO or socket)")
        if info.st_size == 0:
            raise InputError(f"input is empty: {path}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return path, os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _looks_like_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a character cut at the end of the sniffed bytes is fine
            return False
        text = head[: exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\t\r\n\f\v\x1b" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


def _refusal(name: str, head: bytes) -> str:
    """The one-line reason an unaccepted input is refused, naming what it looks like."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()  # a UTF-8 BOM, leading blank lines
    lowered = text[:SNIFF_BYTES].lower()
    if text.startswith(b"#EXTM3U") or text.startswith(b"#EXT-X-"):
        return f"{name} is an HLS playlist; {_PLAYLIST}"
    if b"<mpd" in lowered or b"urn:mpeg:dash" in lowered:
        return f"{name} is a DASH manifest (MPD); {_PLAYLIST}"
    if text.startswith(b"ffconcat"):
        return f"{name} is an ffconcat list; {_PLAYLIST}"
    if _looks_like_text(head):
        if re.search(rb"(?m)^\s*file\s+\S", text):
            return f"{name} is a concat list (lines 'file ...'); {_PLAYLIST}"
        if re.search(rb"(?m)^\s*(https?|rtmp|rtsp|udp|tcp|srt)://", lowered):
            return f"{name} is a text file listing network addresses; network inputs are not accepted"
        if text.startswith(b"v=0"):
            return f"{name} is an SDP session description; network inputs are not accepted"
        return f"{name} is a text file, not a video or image"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return f"{name} is a GIF image; GIF is not accepted (accepted: {_ACCEPTED})"
    if len(head) >= 2 and head[:1] == b"P" and head[1:2] in b"123456":
        return f"{name} is a Netpbm (PPM/PGM) image; it is not accepted (accepted: {_ACCEPTED})"
    return f"{name}: unrecognised format (starts with {head[:8].hex(' ')}); accepted: {_ACCEPTED}"


def _sniff(head: bytes) -> InputFormat | None:
    """The accepted format whose signature ``head`` (the file's first bytes) carries, else None."""
    strong = (
        (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"\x1a\x45\xdf\xa3", "matroska"),
        (b"OggS", "ogg"), (b"FLV\x01", "flv"), (b"YUV4MPEG2 ", "y4m"), (b"\0\0\1\xba", "mpegps"),
        (b"II*\0", "tiff"), (b"MM\0*", "tiff"),
    )
    for signature, name in strong:
        if head.startswith(signature):
            return _FORMATS[name]
    if head.startswith(b"RIFF") and head[8:12] in (b"WEBP", b"AVI "):
        return _FORMATS["webp" if head[8:12] == b"WEBP" else "avi"]
    if head[4:8] == b"ftyp":
        return _FORMATS["mp4"]
    if _looks_like_text(head):  # the weaker signatures below could match the first bytes of a text
        return None
    if len(head) >= 8 and head[4:8] in _MP4_BOXES:
        return _FORMATS["mp4"]
    if head.startswith(b"BM") and len(head) >= 26:
        return _FORMATS["bmp"]
    for packet, sync in _TS_LAYOUTS:
        positions = range(sync, min(len(head), sync + 4 * packet), packet)
        if len(head) > sync and all(head[i] == 0x47 for i in positions):
            return _FORMATS["mpegts"]
    return None


def _detect(path: Path, handle: BinaryIO) -> InputFormat:
    head = handle.read(SNIFF_BYTES)
    handle.seek(0)
    detected = _sniff(head)
    if detected is None:
        raise InputError(_refusal(str(path), head))
    return detected


def check_input(path: str | os.PathLike) -> str:
    """Cheap policy check of an input file: the accepted format its content shows (e.g. ``"mp4"``).

    Opens ``path`` as a plain local file and reads its first bytes only. Raises ``InputError`` for a
    missing, empty or non-regular file, and for anything not in ``INPUT_FORMATS`` (playlists,
    concat lists, text, unknown formats), naming what was detected.
    """
    path, handle = _local_file(path)
    with handle:
        return _detect(path, handle).name


class _NestedOpenRefused(InputError):
    """A demuxer tried to open another file or address than the input (HLS segment, dref, ...)."""


@dataclass
class OpenedInput:
    """An input opened under the policy: ``container`` (PyAV) for video, ``image`` (Pillow) for images.

    Close it (or use it as a context manager) to release the container or image and the file.
    """

    path: Path
    format: InputFormat
    file: BinaryIO
    container: object | None = None  # av.container.InputContainer
    image: object | None = None  # PIL.Image.Image

    def close(self) -> None:
        for resource in (self.container, self.image, self.file):
            if resource is not None:
                with contextlib.suppress(Exception):
                    resource.close()
        self.container = self.image = None

    def __enter__(self) -> OpenedInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_input(path: str | os.PathLike) -> OpenedInput:
    """Open ``path`` under the input policy (see the module docstring); ``InputError`` if refused.

    Video: a PyAV container with the detected demuxer forced, holding a video stream whose size is
    within ``MAX_DIMENSION``. Image: a Pillow image (size checked, pixels not yet decoded).
    """
    path, handle = _local_file(path)
    try:
        detected = _detect(path, handle)
        opened = OpenedInput(path, detected, handle)
        if detected.is_image:
            opened.image = _open_image(path, handle, detected)
        else:
            opened.container = _open_container(path, handle, detected)
        return opened
    except BaseException:
        handle.close()
        raise


def _open_image(path: Path, handle: BinaryIO, detected: InputFormat):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(handle, formats=[detected.pillow])
    except Image.DecompressionBombError as exc:  # Pillow refuses huge sizes itself, before we see them
        raise InputError(f"{path}: image too large, above {MAX_DIMENSION} per side ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read {detected.label} image {path}: {exc}") from None
    try:
        _check_dimensions(path, *image.size)
    except BaseException:
        image.close()
        raise
    return image


def _open_container(path: Path, handle: BinaryIO, detected: InputFormat):
    import av

    def refuse_nested_open(url: str, flags: int, options: dict) -> BinaryIO:
        raise _NestedOpenRefused(f"{path} ({detected.label}) refers to another file or address ({url!r}); refused")

    options = {"protocol_whitelist": "file"}
    if detected.demuxer == "mov":
        options.update(enable_drefs="0", use_absolute_path="0")  # external data references stay off
    try:
        container = av.open(
            handle, format=detected.demuxer, container_options=options, io_open=refuse_nested_open,
            metadata_errors="replace",
        )
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read {path} as {detected.label}: {exc}") from None
    try:
        used = container.format.name
        if used not in _ALLOWED_DEMUXERS:
            raise InputError(f"{path}: FFmpeg chose the {used!r} demuxer, which is not on the allow-list")
        if not container.streams.video:
            raise InputError(f"{path} has no video stream")
        context = container.streams.video[0].codec_context
        if context is None:  # a codec FFmpeg has no decoder for (or a damaged codec id)
            raise InputError(f"{path}: its video stream's codec cannot be decoded")
        _check_dimensions(path, context.width, context.height)
    except BaseException:
        container.close()
        raise
    return container


# -- frame ranges: one rule for encode and decode -----------------------------------------------


class PartialInputWarning(UserWarning):
    """A result holds fewer frames than asked for, or than its input's header claims."""


@dataclass(frozen=True)
class FrameShortfall:
    """Why a result holds fewer frames than asked for (``asked_stop`` past the end) or than claimed.

    ``available``: frames the source really holds (decoding reached its end); ``claimed``: frames
    its header claims when that is more; ``stopped_by``: the decoder error that ended it early.
    """

    source: str
    asked_start: int
    asked_stop: int | None
    available: int
    claimed: int | None = None
    stopped_by: str | None = None
    noun: str = "input"

    @property
    def delivered(self) -> tuple[int, int]:
        return self.asked_start, self.available

    def message(self, verb: str = "read") -> str:
        """One line, e.g. ``clip.mp4: asked for frames 130:150, input has 137; encoded 130:137``."""
        parts = []
        if self.asked_stop is not None and self.asked_stop > self.available:
            parts.append(f"asked for frames {self.asked_start}:{self.asked_stop}, {self.noun} has {self.available}")
        if self.claimed is not None:
            parts.append(f"its header claims {self.claimed} frames but only {self.available} decode")
        if self.stopped_by:
            parts.append(f"decoding stopped: {self.stopped_by}")
        return f"{self.source}: {'; '.join(parts)}; {verb} {self.asked_start}:{self.available}"


def frame_bounds(frames: slice | None) -> tuple[int, int | None]:
    """Check a frame selection ``slice(A, B)`` (contiguous, ``0 <= A < B``) -> ``(A, B or None)``.

    With ``clamp_frames`` this is the one frame-range rule of encode and decode, CLI and API.
    """
    if frames is None:
        return 0, None
    if not isinstance(frames, slice):
        raise InputError(f"frames must be a slice (e.g. slice(10, 20)), got {type(frames).__name__}")
    if frames.step not in (None, 1):
        raise InputError(f"frame ranges must be contiguous (step 1), got step {frames.step}")
    start = 0 if frames.start is None else frames.start
    stop = frames.stop
    for value in (start, stop):
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
            raise InputError(f"frame range bounds must be integers, got {value!r}")
    start = int(start)
    stop = None if stop is None else int(stop)
    if start < 0 or (stop is not None and stop <= start):
        raise InputError(f"bad frame range {start}:{'' if stop is None else stop}; need 0 <= A < B")
    return start, stop


def clamp_frames(
    source: str, start: int, stop: int | None, available: int, claimed: int | None = None,
    stopped_by: str | None = None, noun: str = "input",
) -> tuple[int, int, FrameShortfall | None]:
    """Apply the frame-range rule to a source of ``available`` frames -> ``(start, stop, shortfall)``.

    ``A`` past the end is an ``InputError``; ``B`` past the end (or omitted) is clamped, and a
    shortfall is returned when ``B`` was past the end or the header ``claimed`` more frames.
    """
    if available <= 0:
        raise InputError(f"{source} holds no video frames" + (f" (its header claims {claimed})" if claimed else "")
                         + (f"; decoding failed: {stopped_by}" if stopped_by else ""))
    if start >= available:
        claim = f" (its header claims {claimed})" if claimed and claimed > available else ""
        stopped = f"; decoding stopped: {stopped_by}" if stopped_by else ""
        raise InputError(
            f"{source}: frames {start}:{'' if stop is None else stop} start past the end; "
            f"{noun} has {available} frame{'' if available == 1 else 's'}{claim}{stopped}"
        )
    end = available if stop is None else min(stop, available)
    reaches_end = stop is None or stop > available
    claimed = claimed if claimed is not None and claimed > available and reaches_end else None
    stopped_by = stopped_by if reaches_end else None
    if (stop is not None and stop > available) or claimed is not None or stopped_by is not None:
        return start, end, FrameShortfall(source, start, stop, available, claimed, stopped_by, noun)
    return start, end, None


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Video:
    """Decoded frames ``(T, H, W, 3)`` uint8 RGB, their rate, and why there are fewer than asked (if so)."""

    frames: np.ndarray
    fps: Fraction
    shortfall: FrameShortfall | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


@dataclass(frozen=True)
class VideoProbe:
    """What a source holds, read from its headers (``num_frames`` may be an estimate for video)."""

    width: int
    height: int
    num_frames: int
    fps: Fraction
    is_image: bool
    format: str = ""  # check_input's name


def _check_dimensions(path: Path, width: int, height: int) -> None:
    if width < 1 or height < 1 or width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise InputError(f"{path}: frame size {width}x{height} outside 1..{MAX_DIMENSION} per side")


def _image_to_rgb(image) -> np.ndarray:  # PIL.Image.Image -> (H, W, 3) uint8
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        gray = np.clip(np.round(array / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        rgba = np.asarray(image, dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        # Composite over white: transparent pixels have no colour of their own.
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _read_image(opened: OpenedInput) -> np.ndarray:
    """(H, W, 3) uint8 of an opened image; decoding errors become ``InputError``."""
    from PIL import Image

    try:
        opened.image.load()
        return _image_to_rgb(opened.image)
    except Image.DecompressionBombError as exc:
        raise InputError(f"{opened.path}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"cannot decode {opened.format.label} image {opened.path}: {exc}") from None


def _claimed_frames(stream) -> int | None:
    """The frame count a video's header states (MP4, AVI), or None where the container has none."""
    return int(stream.frames) if stream.frames and stream.frames > 0 else None


def probe(path: str | os.PathLike) -> VideoProbe:
    """Size, frame count and rate of a source without decoding its frames (images are opened)."""
    with open_input(path) as opened:
        if opened.image is not None:
            width, height = opened.image.size
            return VideoProbe(width, height, 1, DEFAULT_FPS, True, opened.format.name)
        stream = opened.container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        fps = Fraction(stream.average_rate) if stream.average_rate else DEFAULT_FPS
        frames = stream.frames or 0
        if frames == 0 and stream.duration and stream.time_base:
            frames = int(round(float(stream.duration * stream.time_base) * float(fps)))
        return VideoProbe(width, height, int(frames), fps, False, opened.format.name)


@dataclass
class _ReadState:
    """How a frame read went: filled in while ``_video_frames`` runs."""

    seen: int = 0  # frames the source yielded, counted from its first (absolute index of the next one)
    reached_end: bool = False
    stopped_by: str | None = None  # the decoder error that ended the read early
    claimed: int | None = None
    fps: Fraction = DEFAULT_FPS


def _open_video_stream(path: Path):
    opened = open_input(path)
    if opened.container is None:
        opened.close()
        raise InputError(f"{path} is an image, not a video")
    stream = opened.container.streams.video[0]
    stream.thread_type = "AUTO"
    return opened, stream


def _video_frames(path: Path, start: int, stop: int | None, state: _ReadState) -> Iterator[np.ndarray]:
    """Frames ``start .. stop-1`` of a video as (H, W, 3) uint8; ``state`` records how the read ended.

    A decoder error after the first frame ends the read (a truncated or damaged tail) and is
    recorded; before any frame, it is an ``InputError``.
    """
    import av

    frames = _seek_frames(path, start, state) if start > 0 else None
    if frames is None:
        frames = _counted_frames(path, start, state)
    with contextlib.closing(frames):
        try:
            for frame in frames:
                yield _frame_to_rgb(frame)
                if stop is not None and state.seen >= stop:
                    return
            state.reached_end = True
        except (av.error.FFmpegError, ValueError, OverflowError, MemoryError) as exc:
            if state.seen == 0:
                raise InputError(f"cannot decode {path}: {exc}") from None
            state.reached_end, state.stopped_by = True, str(exc)


def _counted_frames(path: Path, start: int, state: _ReadState) -> Iterator:
    """Decoded ``av.VideoFrame``s from frame ``start`` on, decoding (and counting) from the first."""
    opened, stream = _open_video_stream(path)
    state.seen, state.claimed = 0, _claimed_frames(stream)
    state.fps = Fraction(stream.average_rate) if stream.average_rate else DEFAULT_FPS
    with opened:
        for frame in opened.container.decode(stream):
            state.seen += 1
            if state.seen > start:
                yield frame


def _seek_frames(path: Path, start: int, state: _ReadState) -> Iterator | None:
    """Decoded frames from ``start`` on after a keyframe seek, or None if the timestamps can't place them."""
    import av

    opened, stream = _open_video_stream(path)
    fps = Fraction(stream.average_rate) if stream.average_rate else None
    if not fps or not stream.time_base:
        opened.close()
        return None
    frame_ticks = 1 / (fps * Fraction(stream.time_base))  # pts units per frame
    first_pts = stream.start_time if stream.start_time is not None else 0
    try:
        opened.container.seek(int(first_pts + start * frame_ticks), stream=stream, backward=True, any_frame=False)
        decoded = opened.container.decode(stream)
        previous = None
        for frame in decoded:
            position = None if frame.pts is None else (frame.pts - first_pts) / frame_ticks
            index = None if position is None else round(position)
            if index is None or abs(position - index) > 0.25 or index > start or (previous is not None and index != previous + 1):
                break  # irregular (variable frame rate, gaps): the caller counts from the first frame
            previous = index
            if index == start:
                state.seen, state.claimed, state.fps = start, _claimed_frames(stream), fps
                return _chain_and_close(opened, frame, decoded, state)
    except (av.error.FFmpegError, ValueError, OverflowError):
        pass
    opened.close()
    return None


def _chain_and_close(opened: OpenedInput, first, rest: Iterator, state: _ReadState) -> Iterator:
    with opened:
        state.seen += 1
        yield first
        for frame in rest:
            state.seen += 1
            yield frame


def _frame_to_rgb(frame) -> np.ndarray:
    # 10-bit, 4:4:4, Y4M's 16-bit and other formats: libswscale converts to 8-bit RGB.
    return frame.to_ndarray(format="rgb24")


def iter_frames(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Yield frames ``start .. stop-1`` of a video (opened under the input policy) as (H, W, 3) uint8.

    Frames are counted in presentation order from the first decoded frame, whatever their
    timestamps say (variable frame rate included). With ``start > 0`` it seeks to the keyframe before
    ``start`` and uses timestamps only to find where it landed; if they are irregular there (not on
    the ``1 / fps`` grid, not consecutive, or past ``start``) it decodes from the beginning instead.
    A shorter result than asked for or than the header claims warns with ``PartialInputWarning``.
    """
    start, stop = frame_bounds(slice(start, stop))
    state = _ReadState()
    yield from _video_frames(Path(path), start, stop, state)
    if state.reached_end:
        _, _, shortfall = clamp_frames(str(path), start, stop, state.seen, state.claimed, state.stopped_by)
        if shortfall is not None:
            warnings.warn(shortfall.message(), PartialInputWarning, stacklevel=2)


def read_video(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Video:
    """Read frames ``[start, stop)`` of an accepted video, or an image as a one-frame video.

    Returns ``Video`` with ``frames`` (T, H, W, 3) uint8 RGB. The frame-range rule applies
    (``clamp_frames``): ``start`` past the end is an ``InputError``; fewer frames than asked for or
    than the header claims set ``Video.shortfall`` and warn with ``PartialInputWarning``. Raises
    ``InputError`` for anything the input policy refuses or that does not decode, and for a source
    larger than ``MAX_DIMENSION`` per side.
    """
    start, stop = frame_bounds(slice(start, stop))
    name = str(path)
    if _FORMATS[check_input(path)].is_image:
        with open_input(path) as opened:
            rgb = _read_image(opened)
        _, _, shortfall = clamp_frames(name, start, stop, 1)
        video = Video(rgb[None], DEFAULT_FPS, shortfall)
    else:
        state = _ReadState()
        frames = []
        for frame in _video_frames(Path(path), start, stop, state):
            frames.append(frame)
            if len(frames) > MAX_FRAMES:
                raise InputError(f"{path} has more than {MAX_FRAMES} frames")
        shortfall = None
        if state.reached_end:
            _, _, shortfall = clamp_frames(name, start, stop, state.seen, state.claimed, state.stopped_by)
        video = Video(np.stack(frames), state.fps, shortfall)
    if video.shortfall is not None:
        warnings.warn(video.shortfall.message(), PartialInputWarning, stacklevel=2)
    return video


OUTPUT_KINDS = ("mkv", "mp4", "y4m", "png")
Y4M_PIX_FMT = "yuv444p16le"  # 16-bit 4:4:4 (BT.601, limited range): 8-bit RGB -> Y4M -> RGB is exact


def output_kind(path: str | os.PathLike) -> str:
    """'mkv' (lossless FFV1), 'mp4' (H.264), 'y4m' (16-bit 4:4:4), 'png' (one frame) or 'dir' (PNGs)."""
    suffix = Path(path).suffix.lower()
    if suffix[1:] in OUTPUT_KINDS:
        return suffix[1:]
    if suffix == "":
        return "dir"
    raise InputError(f"output {path}: unknown extension {suffix!r}; use .mkv, .mp4, .y4m, .png or a folder name")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, on any error remove it.

    Refuses an existing ``path`` unless ``force``. Works for files and folders.
    """
    import shutil

    path = Path(os.path.abspath(path))  # "." or "dir/..": a real name to put the temporary beside
    if path.exists() and not force:
        raise InputError(f"output {path} exists; pass --force to overwrite")
    if not path.parent.exists():
        raise InputError(f"output folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial{path.suffix}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif tmp.is_dir() and (path.is_symlink() or path.exists()):
            path.unlink()  # a folder of PNGs replaces a file (or a link): rename can't do that
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


class VideoWriter:
    """Write frames clip by clip to ``.mkv`` (FFV1, RGB, lossless), ``.mp4`` (H.264), ``.y4m``, ``.png`` or a folder.

    ``.y4m`` holds 16-bit 4:4:4 YUV (``C444p16``, BT.601 limited range: FFmpeg's default reading of
    it), the depth at which 8-bit RGB survives the YUV round trip bit for bit; 8-bit 4:4:4 would not.
    ``path`` is written directly: wrap it in ``atomic_output`` for all-or-nothing outputs.
    """

    def __init__(self, path: str | os.PathLike, kind: str, width: int, height: int, fps: Fraction) -> None:
        self.path = Path(path)
        self.kind = kind
        self.width, self.height = width, height
        self.count = 0
        self._container = None
        self._stream = None
        self._y4m = None
        if kind == "dir":
            self.path.mkdir(parents=False, exist_ok=False)
        elif kind in ("mkv", "mp4", "y4m"):
            import av

            if kind == "mkv":
                self._container = av.open(str(self.path), mode="w", format="matroska")
                self._stream = self._container.add_stream("ffv1", rate=fps)
                self._stream.pix_fmt = "bgr0"
            elif kind == "y4m":
                # Written here, not by FFmpeg's muxer: see _y4m_planes. (FFmpeg calls 16-bit Y4M "not
                # official" and reads it back with its yuv4mpegpipe demuxer; mjpegtools can't read it.)
                self._y4m = open(self.path, "wb")
                self._y4m.write(f"YUV4MPEG2 W{width} H{height} F{fps.numerator}:{fps.denominator} Ip A0:0 C444p16 XYSCSS=444P16\n".encode())
            else:
                self._container = av.open(str(self.path), mode="w", format="mp4")
                self._stream = self._container.add_stream("libx264", rate=fps)
                self._stream.pix_fmt = "yuv420p"
                self._stream.options = {"crf": "16", "preset": "medium"}
                # yuv420p needs even sizes: pad with the edge, players crop via the stream size.
                width, height = width + width % 2, height + height % 2
            if kind != "y4m":
                self._stream.width, self._stream.height = width, height

    def write(self, frames: np.ndarray) -> None:
        """frames: (n, H, W, 3) uint8."""
        import av

        for frame in frames:
            if self.kind == "png":
                if self.count > 0:
                    raise InputError("a .png output holds one frame; use --frames A:A+1 or a folder output")
                _save_png(frame, self.path)
            elif self.kind == "dir":
                _save_png(frame, self.path / f"frame_{self.count:06d}.png")
            elif self.kind == "y4m":
                self._y4m.write(b"FRAME\n")
                for plane in _y4m_planes(frame):
                    self._y4m.write(plane.astype("<u2").tobytes())
            else:
                if self.kind == "mp4" and (frame.shape[0] % 2 or frame.shape[1] % 2):
                    frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for packet in self._stream.encode(video_frame):
                    self._container.mux(packet)
            self.count += 1

    def close(self) -> None:
        if self.kind == "y4m" and not self._y4m.closed:
            self._y4m.close()
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _y4m_planes(frame: np.ndarray) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB -> Y, U, V planes (H, W) uint16 of 16-bit 4:4:4 (``Y4M_PIX_FMT``).

    libswscale converts an RGB frame whose width is not a multiple of its SIMD block with a result
    that varied from call to call (it reads the frame's uninitialised row padding: measured 4
    different outputs in 15 identical conversions of a 40-pixel-wide frame, most of them not
    exact after the round trip). Padding the row with copies of its last pixel to a multiple of 64
    (plus 64) and cropping gives one result, exact after FFmpeg's own read-back for every width
    tried (1, 40, 64, 175) and for all 2^24 colours.
    """
    import av

    height, width = frame.shape[:2]
    padded_width = -(-width // 64) * 64 + 64
    padded = np.pad(frame, ((0, 0), (0, padded_width - width), (0, 0)), mode="edge")
    converted = av.VideoFrame.from_ndarray(padded, format="rgb24").reformat(format=Y4M_PIX_FMT)
    return [np.frombuffer(bytes(p), np.uint16).reshape(height, -1)[:, :width] for p in converted.planes]


def _save_png(frame: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path, format="PNG")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: Fraction = DEFAULT_FPS, force: bool = False) -> None:
    """Write all ``frames`` (T, H, W, 3) uint8 atomically; the format follows ``path`` (see ``output_kind``)."""
    kind = output_kind(path)
    with atomic_output(path, force=force) as tmp:
        with VideoWriter(tmp, kind, frames.shape[2], frames.shape[1], fps) as writer:
            writer.write(frames)
