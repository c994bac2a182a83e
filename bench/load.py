"""``nvcodec bench load``: how fast random clips arrive as tensors (the NeRV-Dec loading claim).

Every loader delivers the SAME random clips (``--clips`` clips of ``--clip-len`` frames, seeded
starts) as (T, 3, H, W) uint8 torch tensors, from the same source frames (the first ``--frames``
frames of INPUT, optionally centre-cropped):

- ``hypernerv``, ``intra``: ``nvcodec.data.NvcClipDataset`` over a ``.nvc`` stream of those frames,
  one clip per call (``dataset[i]``); ``hypernerv-batch``: ``--batch`` clips per call
  (``__getitems__``, one grouped decode for all their chunks, as a ``DataLoader`` batch does).
- ``pyav``: PyAV (through ``nvcodec.io``'s input policy) opening an H.264 ``.mp4`` of those frames,
  seeking to the keyframe before the clip and decoding up to its end (x264 CRF 16 medium, the
  writer's defaults: one keyframe at the start of a short clip, so seeks decode from frame 0).
- ``npy``: the frames as a ``.npy`` loaded into RAM, sliced (the upper bound: no decoding).

Timed: clip delivery only, after one warm-up clip (model loading, file opening). Reported per
loader: clips/s, frames/s, seconds, plus the stream's bytes and bpp and its PSNR. Single process,
``torch`` threads as the environment sets them (``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import nvcodec
from nvcodec import io, metrics
from nvcodec.errors import InputError

__all__ = ["LOADERS", "LoadOptions", "run_load", "format_table", "write_json"]

LOADERS = ("hypernerv", "hypernerv-batch", "intra", "pyav", "npy")
RESULT_FILES = ("load.json",)


@dataclass(frozen=True)
class LoadOptions:
    loaders: tuple[str, ...] = LOADERS
    frames: int = 24
    crop: tuple[int, int] | None = None  # (W, H)
    clips: int = 64
    clip_len: int = 8
    batch: int = 8
    seed: int = 0
    quality: int | None = None


@dataclass
class LoaderResult:
    loader: str
    clips: int
    frames: int
    seconds: float
    clips_per_s: float
    frames_per_s: float
    setup_s: float  # open + warm-up clip (model loading, first file open)
    stream_bytes: int | None = None
    bpp: float | None = None
    psnr_rgb: float | None = None


def _timed(deliver: Callable[[list[int]], list[torch.Tensor]], starts: list[int], batch: int, clip_len: int, check: Callable) -> tuple[float, float]:
    """-> (warm-up seconds, timed seconds) of delivering ``starts`` in calls of ``batch`` clips."""
    began = time.perf_counter()
    check(deliver(starts[:1])[0], starts[0])
    setup = time.perf_counter() - began
    began = time.perf_counter()
    for first in range(0, len(starts), batch):
        clips = deliver(starts[first : first + batch])
        assert all(c.shape[0] == clip_len and c.dtype == torch.uint8 for c in clips)
    return setup, time.perf_counter() - began


def run_load(path: str | Path, options: LoadOptions, log: Callable[[str], None] = lambda line: None) -> dict:
    """Run every loader of ``options`` on ``path``; returns the JSON-ready report."""
    from nvcodec.bench.rd import load_input  # one reader + crop for every bench input
    from nvcodec.data import NvcClipDataset

    unknown = [name for name in options.loaders if name not in LOADERS]
    if unknown:
        raise InputError(f"unknown loader(s) {', '.join(unknown)}; choose from {', '.join(LOADERS)}")
    if options.clip_len < 1 or options.clips < 1 or options.batch < 1:
        raise InputError("--clip-len, --clips and --batch must be >= 1")
    source = load_input(path, options.frames, options.crop, Path(path).stem)
    frames = source.frames  # (T, H, W, 3) uint8
    count, height, width = frames.shape[:3]
    if count < options.clip_len:
        raise InputError(f"{path} gave {count} frames, fewer than one clip of {options.clip_len}")
    rng = np.random.default_rng(options.seed)
    starts = [int(s) for s in rng.integers(0, count - options.clip_len + 1, options.clips)]
    reference = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W)
    results: list[LoaderResult] = []
    with tempfile.TemporaryDirectory(prefix="nvcodec-load-") as tmp:
        tmp = Path(tmp)
        streams: dict[str, tuple[Path, int, float]] = {}

        def stream(codec: str) -> tuple[Path, int, float]:
            if codec not in streams:
                log(f"encoding {count} frames {width}x{height} with {codec}")
                data = nvcodec.encode(frames, codec, options.quality)
                target = tmp / f"{codec}.nvc"
                target.write_bytes(data)
                psnr = metrics.psnr_rgb(frames, nvcodec.decode(data))
                streams[codec] = (target, len(data), psnr)
            return streams[codec]

        for name in options.loaders:
            extra: dict = {}
            if name in ("hypernerv", "hypernerv-batch", "intra"):
                codec = "intra" if name == "intra" else "hypernerv"
                target, size, psnr = stream(codec)
                dataset = NvcClipDataset([target], options.clip_len, clips=[(0, s) for s in starts])
                index = {s: i for i, s in enumerate(starts)}
                deliver = lambda group, d=dataset, ix=index: d.__getitems__([ix[s] for s in group])  # noqa: E731
                decoded = nvcodec.decode(target)
                check = lambda clip, s, d=decoded: _same(clip, torch.from_numpy(d[s : s + options.clip_len]).permute(0, 3, 1, 2), name)  # noqa: E731
                extra = {"stream_bytes": size, "bpp": metrics.bpp(size, count, height, width), "psnr_rgb": psnr}
            elif name == "pyav":
                target = tmp / "source.mp4"
                if not target.exists():
                    io.write_video(target, frames, source.fps)
                size = target.stat().st_size
                psnr = metrics.psnr_rgb(frames, io.read_video(target).frames)
                extra = {"stream_bytes": size, "bpp": metrics.bpp(size, count, height, width), "psnr_rgb": psnr}

                def deliver(group: list[int], target: Path = target) -> list[torch.Tensor]:
                    out = []
                    for s in group:
                        clip = np.stack(list(io.iter_frames(target, s, s + options.clip_len)))
                        out.append(torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous())
                    return out

                check = lambda clip, s: clip.shape == reference[s : s + options.clip_len].shape or _fail(name)  # noqa: E731
            else:  # npy
                target = tmp / "frames.npy"
                np.save(target, frames)
                in_ram = np.load(target)

                def deliver(group: list[int], array: np.ndarray = in_ram) -> list[torch.Tensor]:
                    return [torch.from_numpy(array[s : s + options.clip_len]).permute(0, 3, 1, 2).contiguous() for s in group]

                check = lambda clip, s: _same(clip, reference[s : s + options.clip_len], name)  # noqa: E731
            batch = options.batch if name == "hypernerv-batch" else 1
            setup, seconds = _timed(deliver, starts, batch, options.clip_len, check)
            result = LoaderResult(
                loader=name, clips=len(starts), frames=len(starts) * options.clip_len, seconds=seconds,
                clips_per_s=len(starts) / seconds, frames_per_s=len(starts) * options.clip_len / seconds, setup_s=setup, **extra,
            )
            log(f"{name:16s} {result.clips_per_s:8.2f} clips/s {result.frames_per_s:8.1f} frames/s")
            results.append(result)
    return {
        "input": asdict(source.info),
        "options": {**asdict(options), "loaders": list(options.loaders)},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(), "device": "cpu"},
        "results": [asdict(r) for r in results],
    }


def _same(clip: torch.Tensor, expected: torch.Tensor, name: str) -> bool:
    if not torch.equal(clip, expected):
        _fail(name)
    return True


def _fail(name: str) -> bool:
    raise AssertionError(f"loader {name} delivered a clip that differs from its reference decode")


def format_table(report: dict) -> str:
    lines = ["| loader | clips/s | frames/s | setup s | bytes | bpp | PSNR-RGB |", "|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        def fmt(value, spec):
            return "-" if value is None else format(value, spec)

        lines.append(
            f"| {r['loader']} | {r['clips_per_s']:.2f} | {r['frames_per_s']:.1f} | {r['setup_s']:.2f} | "
            f"{fmt(r['stream_bytes'], 'd')} | {fmt(r['bpp'], '.4f')} | {fmt(r['psnr_rgb'], '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def write_json(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "load.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    return [path]


def parse_loaders(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())
