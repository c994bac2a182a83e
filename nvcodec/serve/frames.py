"""Frames of stored streams: decoded chunk by chunk (only the covering chunks) through the LRU cache.

Runs in the server's decode threads, never on the event loop. Decoding goes through
``nvcodec.api.iter_decode`` (the CLI's decoder), so a served frame equals ``nvcodec.decode``'s.
"""

from __future__ import annotations

import io as _bytes_io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nvcodec import api, container, io
from nvcodec.serve.cache import ChunkCache

__all__ = ["FrameStore", "IMAGE_FORMATS", "RANGE_FORMATS", "MEDIA_TYPES"]

IMAGE_FORMATS = ("png", "jpeg", "npy")
RANGE_FORMATS = ("mp4", "mkv", "npy")
MEDIA_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "npy": "application/x-npy",
    "mp4": "video/mp4",
    "mkv": "video/x-matroska",
}
_JPEG_QUALITY = 90


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = _bytes_io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def encode_image(frame: np.ndarray, fmt: str) -> bytes:
    """One frame (H, W, 3) uint8 -> PNG (lossless), JPEG or .npy bytes."""
    if fmt == "npy":
        return _npy_bytes(frame)
    from PIL import Image

    buffer = _bytes_io.BytesIO()
    if fmt == "png":
        Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)
    else:
        Image.fromarray(frame).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue()


class FrameStore:
    """Decoded frames of the streams under ``DIR/streams``, with one shared chunk cache."""

    def __init__(self, cache: ChunkCache, tmp_dir: Path) -> None:
        self.cache = cache
        self.tmp_dir = tmp_dir
        self._headers: dict[str, container.StreamHeader] = {}
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()

    def header(self, video_id: str, path: Path) -> container.StreamHeader:
        with self._lock:
            header = self._headers.get(video_id)
        if header is None:
            with open(path, "rb") as handle:
                header = container.StreamReader(handle).header
            with self._lock:
                self._headers[video_id] = header
        return header

    def forget(self, video_id: str) -> None:
        with self._lock:
            self._headers.pop(video_id, None)
        self.cache.drop(lambda key: key[0] == video_id)

    def _decode_chunk(self, path: Path, index: int) -> np.ndarray:
        """Chunk ``index`` of the stream at ``path``: (n, H, W, 3) uint8, read and decoded alone."""
        from nvcodec import registry

        with open(path, "rb") as handle:
            reader = container.StreamReader(handle)
            entry = reader.header.chunks[index]
            with self._model_lock:  # load each model once, not once per concurrent first request
                registry.load_codec(reader.header.model, "cpu", allow_untrained=not registry.get_spec(reader.header.model).weights_file)
            (block,) = api.iter_decode(reader, slice(entry.frame_start, entry.frame_stop))
            return block

    def chunk(self, video_id: str, path: Path, index: int) -> np.ndarray:
        return self.cache.get((video_id, index), lambda: self._decode_chunk(path, index))

    def blocks(self, video_id: str, path: Path, start: int, stop: int) -> Iterator[np.ndarray]:
        """Frames ``[start, stop)`` chunk by chunk ((n, H, W, 3) uint8 views); bounds checked by the caller."""
        header = self.header(video_id, path)
        for index in header.chunks_for(start, stop):
            entry = header.chunks[index]
            block = self.chunk(video_id, path, index)
            yield block[max(start - entry.frame_start, 0) : min(stop, entry.frame_stop) - entry.frame_start]

    def frames(self, video_id: str, path: Path, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` as one (T, H, W, 3) uint8 array."""
        return np.concatenate(list(self.blocks(video_id, path, start, stop)), axis=0)

    def frame_bytes(self, video_id: str, path: Path, index: int, fmt: str) -> bytes:
        return encode_image(self.frames(video_id, path, index, index + 1)[0], fmt)

    def range_bytes(self, video_id: str, path: Path, start: int, stop: int, fmt: str) -> bytes:
        """Frames ``[start, stop)`` as .npy (T, H, W, 3), lossless FFV1 .mkv or H.264 .mp4 bytes."""
        header = self.header(video_id, path)
        if fmt == "npy":
            return _npy_bytes(self.frames(video_id, path, start, stop))
        target = self.tmp_dir / f"range-{video_id}-{start}-{stop}-{threading.get_ident()}.{fmt}"
        try:
            with io.atomic_output(target, force=True) as tmp:
                with io.VideoWriter(tmp, fmt, header.width, header.height, header.fps) as writer:
                    for block in self.blocks(video_id, path, start, stop):
                        writer.write(block)
            return target.read_bytes()
        finally:
            target.unlink(missing_ok=True)
