"""The contract between the container/API layer and a codec (``intra``, ``hypernerv``).

A codec turns uint8 RGB frames into header parameters plus chunks (each chunk covers a contiguous
frame range and decodes on its own), and turns one chunk back into frames. It never touches files.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from nvcodec.errors import BitstreamError, InputError


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the enclosed torch code with one intra-op thread, restoring the caller's count after.

    Every codec decodes (and builds its encoder-side reconstruction) inside this: CPU kernels split
    their work differently with more threads and the float results change in the last bits
    (intra-small: 3.6e-7 in the hyper-synthesis output, enough to flip a 1/64 mean rounding;
    hypernerv-small: uint8 pixels off by 1 between 1 and 2 threads), so with one thread the decoder
    reproduces the encoder's reconstruction exactly whatever ``torch.get_num_threads()`` the caller uses.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

__all__ = ["ChunkData", "EncodedVideo", "StreamParams", "VideoCodec", "ProgressFn", "JSONValue", "MAX_SIDE", "MAX_FRAMES", "single_thread"]

JSONValue = Any  # int | float | str | bool | None | list | dict, JSON-serialisable

# The size limits of every stream, in one place: the container, the API, the input readers and both
# codecs check against these (the container re-exports them).
MAX_SIDE = 8192  # pixels per side of a frame
MAX_FRAMES = 100_000  # frames per stream
ProgressFn = Callable[[int], None]  # called with the number of frames just finished


@dataclass(frozen=True)
class ChunkData:
    """One independently decodable unit: frames ``[frame_start, frame_stop)`` of the video."""

    frame_start: int
    frame_stop: int
    payload: bytes

    @property
    def num_frames(self) -> int:
        return self.frame_stop - self.frame_start


@dataclass(frozen=True)
class StreamParams:
    """Base of the per-codec typed stream-parameter records (``IntraParams``, ``HyperNervParams``).

    A codec's ``parse_params`` checks a stream's JSON header params against its model and the frame
    size ONCE and returns its frozen record; ``decode_chunk`` then only checks what each chunk carries.
    """

    height: int
    width: int


@dataclass(frozen=True)
class EncodedVideo:
    """What a codec's ``encode`` returns.

    ``params``: codec-specific header fields (JSON-serialisable, e.g. quality, tile and clip geometry),
    handed back verbatim to ``decode_chunk``. ``reconstruction``: the encoder-side decoded frames
    (T, H, W, 3) uint8, exactly what a decoder must reproduce.
    """

    params: Mapping[str, JSONValue]
    chunks: Sequence[ChunkData]
    reconstruction: np.ndarray | None = None
    stats: Mapping[str, float] = field(default_factory=dict)  # e.g. likelihood-estimated bits, named so


class VideoCodec(ABC):
    """Base class of the per-codec adapters; built by ``nvcodec.registry.load_codec``."""

    codec_name: ClassVar[str]  # "intra" | "hypernerv": must match nvcodec.container.CODEC_IDS
    params_type: ClassVar[type[StreamParams]]  # the record ``parse_params`` returns

    def __init__(self, model: Any, model_name: str, device: str = "cpu") -> None:
        self.model = model
        self.model_name = model_name
        self.device = device

    @property
    @abstractmethod
    def quality_levels(self) -> int:
        """Number of shipped rate points; valid ``quality`` values are ``0 .. quality_levels - 1``."""

    @property
    def default_quality(self) -> int:
        """The level used when none is asked for: the middle of the ladder."""
        return self.quality_levels // 2

    def check_quality(self, quality: int) -> int:
        """``quality`` as an int in ``0 .. quality_levels - 1``, else ``InputError`` naming it."""
        if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 0 <= quality < self.quality_levels:
            raise InputError(f"quality {quality!r} outside 0..{self.quality_levels - 1} for model {self.model_name!r}")
        return int(quality)

    @staticmethod
    def check_frames(frames: np.ndarray) -> None:
        """``InputError`` unless ``frames`` is a (T, H, W, 3) uint8 array with T, H, W >= 1."""
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[:3]) < 1:
            raise InputError(f"frames must be a (T, H, W, 3) uint8 array, got {getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}")

    @abstractmethod
    def encode(
        self,
        frames: np.ndarray,
        quality: int,
        *,
        refine_steps: int = 0,
        progress: ProgressFn | None = None,
    ) -> EncodedVideo:
        """``frames``: (T, H, W, 3) uint8 RGB, any H and W >= 1."""

    @abstractmethod
    def parse_params(self, params: Mapping[str, JSONValue], height: int, width: int) -> StreamParams:
        """A stream's header params and frame size -> this codec's typed record, checked against the
        model; ``BitstreamError`` (``UnsupportedVersionError`` for a version this build does not
        read) naming the bad field. Call once per stream and hand the record to ``decode_chunk``."""

    def stream_params(self, params: Mapping[str, JSONValue] | StreamParams, height: int, width: int) -> StreamParams:
        """``params`` as a checked record: a record parsed for this frame size is returned as is, a
        mapping is parsed (convenient for one-off calls; decoders parse once per stream instead)."""
        if isinstance(params, StreamParams):
            if not isinstance(params, self.params_type):
                raise BitstreamError(f"{type(params).__name__} given to the {self.codec_name} codec, which reads {self.params_type.__name__}")
            if (params.height, params.width) != (height, width):
                raise BitstreamError(f"stream params were parsed for {params.width}x{params.height} frames, not {width}x{height}")
            return params
        return self.parse_params(params, height, width)

    @abstractmethod
    def decode_chunk(
        self, params: Mapping[str, JSONValue] | StreamParams, chunk: ChunkData, height: int, width: int
    ) -> np.ndarray:
        """Decode one chunk into (chunk.num_frames, height, width, 3) uint8.

        ``params``: the record from ``parse_params`` (or the raw header params, parsed on the spot).
        Raises ``BitstreamError`` if the payload is inconsistent with the params or the frame size.
        """

    def decode_chunks(
        self, items: Sequence[tuple[Mapping[str, JSONValue] | StreamParams, ChunkData, int, int]]
    ) -> list[np.ndarray]:
        """Decode several ``(params, chunk, height, width)`` items (of one or several streams of this
        model): the same frames as ``decode_chunk`` on each. Codecs that can batch the work override it."""
        return [self.decode_chunk(*item) for item in items]
