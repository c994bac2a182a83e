"""Video and image I/O on PyAV and Pillow: everything becomes uint8 RGB ``(T, H, W, 3)``.

Readers: any container PyAV opens, and PNG/JPEG (and other Pillow formats) as one-frame videos;
grayscale, RGBA, palette and 10-bit sources are converted to 8-bit RGB. Writers: lossless FFV1
``.mkv`` (bit-exact RGB), H.264 ``.mp4``, one ``.png``, or a folder of PNGs. Outputs are written to
a temporary name and renamed into place (see ``atomic_output``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from nvcodec.errors import InputError

__all__ = [
    "Video",
    "VideoProbe",
    "IMAGE_SUFFIXES",
    "MAX_DIMENSION",
    "MAX_FRAMES",
    "probe",
    "read_video",
    "write_video",
    "VideoWriter",
    "atomic_output",
    "output_kind",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MAX_DIMENSION = 8192  # per side; a larger source is refused before any frame is decoded
MAX_FRAMES = 100_000
DEFAULT_FPS = Fraction(25, 1)


@dataclass(frozen=True)
class Video:
    """Decoded frames ``(T, H, W, 3)`` uint8 RGB and their rate in frames per second."""

    frames: np.ndarray
    fps: Fraction

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


def _check_source(path: Path) -> None:
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, expected a video or image file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"input is empty: {path}")


def _check_dimensions(path: Path, width: int, height: int) -> None:
    if width < 1 or height < 1 or width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise InputError(f"{path}: frame size {width}x{height} outside 1..{MAX_DIMENSION} per side")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


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


@contextlib.contextmanager
def _open_image(path: Path) -> Iterator:
    """A Pillow image whose size was checked before any pixel is decoded; errors become ``InputError``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            _check_dimensions(path, *image.size)
            yield image
    except Image.DecompressionBombError as exc:  # Pillow refuses huge sizes itself, before we see them
        raise InputError(f"{path}: image too large, above {MAX_DIMENSION} per side ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def _read_image(path: Path) -> Video:
    with _open_image(path) as image:
        image.load()
        rgb = _image_to_rgb(image)
    return Video(rgb[None], DEFAULT_FPS)


def _open_container(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read {path} as a video or image: {exc}") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} has no video stream")
    return container


def probe(path: str | os.PathLike) -> VideoProbe:
    """Size, frame count and rate of a source without decoding its frames (images are opened)."""
    path = Path(path)
    _check_source(path)
    if _is_image(path):
        with _open_image(path) as image:
            width, height = image.size
        return VideoProbe(width, height, 1, DEFAULT_FPS, True)
    with contextlib.closing(_open_container(path)) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_dimensions(path, width, height)
        fps = Fraction(stream.average_rate) if stream.average_rate else DEFAULT_FPS
        frames = stream.frames or 0
        if frames == 0 and stream.duration and stream.time_base:
            frames = int(round(float(stream.duration * stream.time_base) * float(fps)))
        return VideoProbe(width, height, int(frames), fps, False)


def iter_frames(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Yield frames ``start .. stop-1`` of a video as (H, W, 3) uint8.

    Frames are counted in presentation order from the first decoded frame, whatever their
    timestamps say (variable frame rate included). With ``start > 0`` it seeks to the keyframe before
    ``start`` and uses timestamps only to find where it landed; if they are irregular there (not on
    the ``1 / fps`` grid, not consecutive, or past ``start``) it decodes from the beginning instead.
    """
    import av

    path = Path(path)
    _check_source(path)
    if start < 0 or (stop is not None and stop < start):
        raise InputError(f"bad frame range {start}:{stop}")
    if stop is not None and stop == start:
        return
    try:
        frames = _seek_frames(path, start) if start > 0 else None
        if frames is None:
            frames = _counted_frames(path, start)
        with contextlib.closing(frames):
            for index, frame in enumerate(frames, start):
                yield _frame_to_rgb(frame)
                if stop is not None and index + 1 >= stop:
                    break
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot decode {path}: {exc}") from None


def _open_video_stream(path: Path):
    container = _open_container(path)
    stream = container.streams.video[0]
    _check_dimensions(path, stream.codec_context.width, stream.codec_context.height)
    stream.thread_type = "AUTO"
    return container, stream


def _counted_frames(path: Path, start: int) -> Iterator:
    """Decoded ``av.VideoFrame``s from frame ``start`` on, decoding (and counting) from the first."""
    container, stream = _open_video_stream(path)
    with contextlib.closing(container):
        for index, frame in enumerate(container.decode(stream)):
            if index >= start:
                yield frame


def _seek_frames(path: Path, start: int) -> Iterator | None:
    """Decoded frames from ``start`` on after a keyframe seek, or None if the timestamps can't place them."""
    import av

    container, stream = _open_video_stream(path)
    fps = Fraction(stream.average_rate) if stream.average_rate else None
    if not fps or not stream.time_base:
        container.close()
        return None
    frame_ticks = 1 / (fps * Fraction(stream.time_base))  # pts units per frame
    first_pts = stream.start_time if stream.start_time is not None else 0
    try:
        container.seek(int(first_pts + start * frame_ticks), stream=stream, backward=True, any_frame=False)
        decoded = container.decode(stream)
        previous = None
        for frame in decoded:
            position = None if frame.pts is None else (frame.pts - first_pts) / frame_ticks
            index = None if position is None else round(position)
            if index is None or abs(position - index) > 0.25 or index > start or (previous is not None and index != previous + 1):
                break  # irregular (variable frame rate, gaps): the caller counts from the first frame
            previous = index
            if index == start:
                return _chain_and_close(container, frame, decoded)
    except av.error.FFmpegError:
        pass
    container.close()
    return None


def _chain_and_close(container, first, rest: Iterator) -> Iterator:
    with contextlib.closing(container):
        yield first
        yield from rest


def _frame_to_rgb(frame) -> np.ndarray:
    # 10-bit and other formats: libswscale converts to 8-bit RGB.
    return frame.to_ndarray(format="rgb24")


def read_video(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Video:
    """Read frames ``[start, stop)`` of any video PyAV reads, or an image as a one-frame video.

    Returns ``Video`` with ``frames`` (T, H, W, 3) uint8 RGB. Raises ``InputError`` for anything
    unreadable, an empty range, or a source larger than ``MAX_DIMENSION`` per side.
    """
    path = Path(path)
    _check_source(path)
    if _is_image(path):
        video = _read_image(path)
        frames = video.frames[start:stop]
        if len(frames) == 0:
            raise InputError(f"frame range {start}:{stop} is empty for the one-frame image {path}")
        return Video(frames, video.fps)
    info = probe(path)
    frames = []
    for frame in iter_frames(path, start, stop):
        frames.append(frame)
        if len(frames) > MAX_FRAMES:
            raise InputError(f"{path} has more than {MAX_FRAMES} frames")
    if not frames:
        where = "holds no video frames" if start == 0 and stop is None else f"has no frames in range {start}:{'' if stop is None else stop}"
        raise InputError(f"{path} {where}")
    return Video(np.stack(frames), info.fps)


def output_kind(path: str | os.PathLike) -> str:
    """'mkv' (lossless FFV1), 'mp4' (H.264), 'png' (one frame) or 'dir' (a folder of PNGs)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".mkv", ".mp4", ".png"):
        return suffix[1:]
    if suffix == "":
        return "dir"
    raise InputError(f"output {path}: unknown extension {suffix!r}; use .mkv, .mp4, .png or a folder name")


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
    """Write frames clip by clip to an ``.mkv`` (FFV1, RGB, lossless), ``.mp4`` (H.264), ``.png`` or folder.

    ``path`` is written directly: wrap it in ``atomic_output`` for all-or-nothing outputs.
    """

    def __init__(self, path: str | os.PathLike, kind: str, width: int, height: int, fps: Fraction) -> None:
        self.path = Path(path)
        self.kind = kind
        self.width, self.height = width, height
        self.count = 0
        self._container = None
        self._stream = None
        if kind == "dir":
            self.path.mkdir(parents=False, exist_ok=False)
        elif kind in ("mkv", "mp4"):
            import av

            # PyAV picks the muxer from the extension; the temporary name keeps the suffix.
            self._container = av.open(str(self.path), mode="w", format="matroska" if kind == "mkv" else "mp4")
            if kind == "mkv":
                self._stream = self._container.add_stream("ffv1", rate=fps)
                self._stream.pix_fmt = "bgr0"
            else:
                self._stream = self._container.add_stream("libx264", rate=fps)
                self._stream.pix_fmt = "yuv420p"
                self._stream.options = {"crf": "16", "preset": "medium"}
                # yuv420p needs even sizes: pad with the edge, players crop via the stream size.
                width, height = width + width % 2, height + height % 2
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
            else:
                if self.kind == "mp4" and (frame.shape[0] % 2 or frame.shape[1] % 2):
                    frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for packet in self._stream.encode(video_frame):
                    self._container.mux(packet)
            self.count += 1

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _save_png(frame: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path, format="PNG")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: Fraction = DEFAULT_FPS, force: bool = False) -> None:
    """Write all ``frames`` (T, H, W, 3) uint8 atomically; the format follows ``path`` (see ``output_kind``)."""
    kind = output_kind(path)
    with atomic_output(path, force=force) as tmp:
        with VideoWriter(tmp, kind, frames.shape[2], frames.shape[1], fps) as writer:
            writer.write(frames)
