"""NeRV-Dec-style loading: frames and clips of ``.nvc`` streams by index, as torch tensors.

``NvcVideo(path)`` decodes frames by index, like torchcodec's ``VideoDecoder``: ``get_frames_at([3,
17, 42])`` reads and decodes only the chunks that hold those frames, each once.
``NvcClipDataset(paths, clip_len)`` is a map-style ``torch.utils.data.Dataset`` of fixed-length clips
over one or more streams; ``dataset[i]`` is a (T, 3, H, W) uint8 tensor.

Workers: nothing is opened at construction beyond reading each header once (to index the clips);
stream files and models open lazily, on first use in each process, and stay open for the process's
life (one file handle per stream, one model per (model name, device)). A dataset therefore pickles
into ``DataLoader`` workers and each worker opens its own.

Grouped decode: ``DataLoader`` hands a whole batch of indices to ``__getitems__``, which decodes
every needed chunk of every stream in one ``VideoCodec.decode_chunks`` call per model. hypernerv
pools the tiles of all those clips (any stream made with the same model, at the same quality and
clip length) into one grouped-conv decoder pass. intra decodes chunk by chunk: each of its chunks is
one frame whose entropy decoding (autoregressive slices, one rANS string each) is sequential and
single-threaded for bit-exactness, so there is no shared pass to pool into.

Decoded frames equal ``nvcodec.decode`` / ``nvcodec decode`` of the same frames exactly.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nvcodec import api, container
from nvcodec.errors import BitstreamError, InputError

__all__ = ["NvcVideo", "NvcClipDataset", "decode_frames"]

PathLike = str | os.PathLike

# Per-process caches (a forked or spawned DataLoader worker starts its own): models by
# (model name, device). Loading a model verifies its weights' sha256 once per process.
_CODECS: dict[tuple[str, str, str], Any] = {}


def _codec_for(header: container.StreamHeader, device: str) -> Any:
    key = (header.model, header.weights, device)
    if key not in _CODECS:
        _CODECS[key] = api.stream_codec(header, device)
    return _CODECS[key]


class NvcVideo:
    """One ``.nvc`` stream, decoded by frame index (opened lazily; picklable before and after use)."""

    def __init__(self, path: PathLike, device: str = "cpu") -> None:
        self.path = Path(path)
        self.device = device
        self._handle = None
        self._reader: container.StreamReader | None = None
        self.header  # reads and validates the header now: a bad path or stream fails here

    # ------------------------------------------------------------ lifecycle
    def _open(self) -> container.StreamReader:
        if self._reader is None:
            if not self.path.is_file():
                raise InputError(f"stream not found: {self.path}" if not self.path.exists() else f"not a file: {self.path}")
            handle = open(self.path, "rb")
            try:
                self._reader = container.StreamReader(handle)
            except BaseException:
                handle.close()
                raise
            self._handle = handle
        return self._reader

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle, self._reader = None, None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"], state["_reader"] = None, None  # each process opens its own file
        state["_header"] = self.header
        return state

    def __del__(self) -> None:
        self.close()

    # ------------------------------------------------------------ metadata
    @property
    def header(self) -> container.StreamHeader:
        if "_header" not in self.__dict__:
            self._header = self._open().header
        return self._header

    def __len__(self) -> int:
        return self.header.frame_count

    def stream_params(self, codec: Any) -> Any:
        """The stream's header params as ``codec``'s checked record (``VideoCodec.parse_params``), parsed once."""
        if "_stream_params" not in self.__dict__:
            self._stream_params = codec.parse_params(self.header.params, self.header.height, self.header.width)
        return self._stream_params

    @property
    def chunks_read(self) -> list[int]:
        """Indexes of the chunks this process has read from the file so far."""
        return [] if self._reader is None else list(self._reader.chunks_read)

    def chunk_of(self, index: int) -> int:
        """The chunk that holds frame ``index`` (the chunk table tiles the frames in order)."""
        if "_starts" not in self.__dict__:
            self._starts = [c.frame_start for c in self.header.chunks]
        return bisect.bisect_right(self._starts, index) - 1

    def check_indices(self, indices: Iterable[int]) -> list[int]:
        """``indices`` as a list of ints in ``0 .. len - 1``, else ``InputError`` naming the bad one."""
        out = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self):
                raise InputError(f"frame index {index!r} outside 0..{len(self) - 1} of {self.path}")
            out.append(int(index))
        return out

    # -------------------------------------------------------------- decode
    def get_frames_at(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` (any order, repeats allowed) -> (N, 3, H, W) uint8, decoding only their chunks."""
        return decode_frames([(self, indices)])[0]

    def get_frames_in_range(self, start: int, stop: int) -> torch.Tensor:
        """Frames ``start .. stop - 1`` -> (stop - start, 3, H, W) uint8."""
        if not 0 <= start < stop <= len(self):
            raise InputError(f"frame range {start}:{stop} outside 0:{len(self)} of {self.path}")
        return self.get_frames_at(range(start, stop))


def decode_frames(requests: Sequence[tuple[NvcVideo, Sequence[int]]]) -> list[torch.Tensor]:
    """Several ``(video, frame indices)`` requests -> one (N, 3, H, W) uint8 tensor each.

    Every needed chunk of every video is read once and decoded in one ``decode_chunks`` call per
    (model, device): hypernerv pools the tiles of all of them into shared grouped-conv passes.
    """
    checked = [(video, video.check_indices(indices)) for video, indices in requests]
    needed: dict[tuple[int, int], tuple[NvcVideo, int]] = {}  # (id(video), chunk) -> (video, chunk)
    for video, indices in checked:
        for index in indices:
            chunk = video.chunk_of(index)
            needed.setdefault((id(video), chunk), (video, chunk))
    by_codec: dict[int, tuple[Any, list[tuple[int, int]]]] = {}
    for key, (video, _) in needed.items():
        codec = _codec_for(video.header, video.device)
        by_codec.setdefault(id(codec), (codec, []))[1].append(key)
    decoded: dict[tuple[int, int], np.ndarray] = {}
    for codec, keys in by_codec.values():
        items, where = [], []
        for key in keys:
            video, chunk_index = needed[key]
            header = video.header
            items.append((video.stream_params(codec), video._open().read_chunk(chunk_index), header.height, header.width))
            where.append(f"{video.path} chunk {chunk_index}")
        try:
            frames = codec.decode_chunks(items)
        except BitstreamError as exc:
            raise BitstreamError(f"{', '.join(where)}: {exc}") from None
        for key, block in zip(keys, frames):
            video, chunk_index = needed[key]
            decoded[key] = api.check_decoded(block, video.header, chunk_index)
    out = []
    for video, indices in checked:
        starts = video.header.chunks
        frames = [decoded[(id(video), k)][i - starts[k].frame_start] for i in indices for k in [video.chunk_of(i)]]
        height, width = video.header.height, video.header.width
        array = np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)
        out.append(torch.from_numpy(array).permute(0, 3, 1, 2).contiguous())  # (N, 3, H, W)
    return out


class NvcClipDataset(Dataset):
    """Clips of ``clip_len`` consecutive frames from ``.nvc`` streams; ``dataset[i]``: (T, 3, H, W) uint8.

    Clip ``i`` is ``clips[i] = (stream number, first frame)``: by default every ``stride`` frames
    (``clip_len`` unless given) of every stream that has at least ``clip_len`` frames. Pass ``clips``
    to choose them yourself (e.g. random starts). A ``DataLoader`` batch decodes through
    ``__getitems__``: all its clips' chunks in one grouped decode (see the module docstring).
    """

    def __init__(
        self,
        paths: Sequence[PathLike],
        clip_len: int = 8,
        *,
        stride: int | None = None,
        clips: Sequence[tuple[int, int]] | None = None,
        device: str = "cpu",
    ) -> None:
        if isinstance(clip_len, bool) or not isinstance(clip_len, int) or clip_len < 1:
            raise InputError(f"clip_len {clip_len!r} must be a positive integer")
        stride = clip_len if stride is None else stride
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise InputError(f"stride {stride!r} must be a positive integer")
        if not paths:
            raise InputError("no streams given")
        self.clip_len = clip_len
        self.videos = [NvcVideo(path, device) for path in paths]
        for video in self.videos:
            video.close()  # headers are read; the file reopens lazily in whichever process decodes
        if clips is None:
            clips = [(v, start) for v, video in enumerate(self.videos) for start in range(0, len(video) - clip_len + 1, stride)]
        self.clips = [self._check_clip(clip) for clip in clips]

    def _check_clip(self, clip: tuple[int, int]) -> tuple[int, int]:
        video, start = clip
        if not 0 <= video < len(self.videos):
            raise InputError(f"clip {clip!r}: no stream number {video} ({len(self.videos)} streams)")
        if not 0 <= start <= len(self.videos[video]) - self.clip_len:
            raise InputError(f"clip {clip!r}: {self.clip_len} frames from {start} do not fit {self.videos[video].path} ({len(self.videos[video])} frames)")
        return int(video), int(start)

    def __len__(self) -> int:
        return len(self.clips)

    def _request(self, index: int) -> tuple[NvcVideo, range]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip index {index} outside 0..{len(self) - 1}")
        video, start = self.clips[index]
        return self.videos[video], range(start, start + self.clip_len)

    def __getitem__(self, index: int) -> torch.Tensor:
        return decode_frames([self._request(index)])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        """A batch of clips in one grouped decode (``DataLoader`` calls this with a batch's indices)."""
        return decode_frames([self._request(i) for i in indices])
