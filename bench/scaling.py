"""Scaling benchmark: wall time and peak memory of encode and decode against frame count and resolution.

Every (codec, stage, frames, size) point runs in a **fresh subprocess** (``python -m
nvcodec.bench.scaling --worker ...``), so that imports, weights and earlier points do not pollute its
memory figure. Inside the worker: build a synthetic clip, load the model and run a small untimed
warm-up, then reset the kernel's RSS high-water mark (``/proc/self/clear_refs``, Linux) and time the
stage. ``peak_rss_mib`` is the process's peak resident set during the stage (``VmHWM``; on systems
without ``clear_refs`` it is ``ru_maxrss`` since start and ``peak_is_stage_only`` is false);
``stage_rss_mib`` is that peak minus the resident set just before the stage (the memory the stage
itself added). torch allocations are invisible to ``tracemalloc``, hence RSS.

Fits: slope of log(seconds) and log(stage RSS) against log(frames) (frame-count axis, fixed size)
or log(pixels per frame) (resolution axis, fixed frame count); 1.0 = linear.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np

from nvcodec.bench.models import NVCODEC_CODECS, model_for, synthetic_clip
from nvcodec.errors import InputError

__all__ = ["ScalingGrid", "ScalingPoint", "ScalingFit", "ScalingReport", "run_scaling", "write_outputs", "format_table", "RESULT_FILES"]

SCHEMA_VERSION = 1
RESULT_FILES = ("scaling.json", "scaling.png")
Stage = Literal["encode", "decode"]
Axis = Literal["frames", "resolution"]
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class ScalingGrid:
    codecs: tuple[str, ...] = (*NVCODEC_CODECS, "x264", "x265")
    frame_counts: tuple[int, ...] = (8, 16, 32, 64, 128)  # at base_size
    sizes: tuple[tuple[int, int], ...] = ((128, 128), (256, 256), (512, 512), (1280, 720))  # (W, H) at base_frames
    base_size: tuple[int, int] = (256, 256)
    base_frames: int = 16
    quality: int | None = None  # nvcodec quality level (None: the middle one)
    device: str = "cpu"
    timeout_s: float = 600.0


@dataclass(frozen=True)
class ScalingPoint:
    codec: str
    model: str
    axis: Axis
    stage: Stage
    frames: int
    width: int
    height: int
    seconds: float  # NaN when the point failed
    peak_rss_mib: float
    stage_rss_mib: float
    peak_is_stage_only: bool
    bytes: int  # size of the encoded stream
    error: str | None = None

    @property
    def x(self) -> int:
        """The fitted variable: frames, or pixels per frame."""
        return self.frames if self.axis == "frames" else self.width * self.height


@dataclass(frozen=True)
class ScalingFit:
    codec: str
    stage: Stage
    axis: Axis
    time_slope: float  # d log(seconds) / d log(x); NaN with fewer than 2 good points
    memory_slope: float  # d log(stage RSS) / d log(x)
    points: int


@dataclass(frozen=True)
class ScalingReport:
    schema_version: int
    created_utc: str
    machine: str
    cpu_count: int
    grid: ScalingGrid
    points: tuple[ScalingPoint, ...]
    fits: tuple[ScalingFit, ...]


# ----------------------------------------------------------------------------- worker (subprocess)


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak() -> bool:
    """Reset the RSS high-water mark (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_mib(reset_ok: bool) -> float:
    if reset_ok:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _worker(args: argparse.Namespace) -> dict:
    import nvcodec
    from nvcodec.bench import classical

    frames = synthetic_clip(args.frames, args.height, args.width)
    stream_path = Path(args.stream)
    is_nvcodec = args.codec in NVCODEC_CODECS
    # Untimed warm-up: libraries, weights, entropy tables, torch kernels.
    warm_frames = frames[:1, :32, :32]
    if is_nvcodec:
        warm = nvcodec.encode(warm_frames, codec=args.codec, quality=args.quality, model=args.model, device=args.device)
        nvcodec.decode(warm, device=args.device)
    else:
        classical.decode(classical.encode(warm_frames, args.codec, args.quality))
    if args.stage == "encode":
        baseline = _rss_mib()
        reset_ok = _reset_peak()
        started = time.perf_counter()
        if is_nvcodec:
            data = nvcodec.encode(frames, codec=args.codec, quality=args.quality, model=args.model, device=args.device)
        else:
            data = classical.encode(frames, args.codec, args.quality).to_bytes()
        _sync(args.device)
        seconds = time.perf_counter() - started
        stream_path.write_bytes(data)
    else:
        data = stream_path.read_bytes()
        stream = None if is_nvcodec else classical.ClassicalStream.from_bytes(data)
        del frames
        baseline = _rss_mib()
        reset_ok = _reset_peak()
        started = time.perf_counter()
        decoded = nvcodec.decode(data, device=args.device) if is_nvcodec else classical.decode(stream)
        _sync(args.device)
        seconds = time.perf_counter() - started
        assert decoded.shape == (args.frames, args.height, args.width, 3)
    peak = _peak_mib(reset_ok)
    return {"seconds": seconds, "peak_rss_mib": peak, "stage_rss_mib": max(peak - baseline, 0.0),
            "peak_is_stage_only": reset_ok, "bytes": len(data)}


# ----------------------------------------------------------------------------- parent


def _run_point(codec: str, model: str, axis: Axis, stage: Stage, frames: int, size: tuple[int, int],
               quality: int, grid: ScalingGrid, stream: Path) -> ScalingPoint:
    width, height = size
    command = [
        sys.executable, "-m", "nvcodec.bench.scaling", "--worker", "--stage", stage, "--codec", codec, "--model", model,
        "--frames", str(frames), "--width", str(width), "--height", str(height), "--quality", str(quality),
        "--device", grid.device, "--stream", str(stream),
    ]
    failed = dict(seconds=math.nan, peak_rss_mib=math.nan, stage_rss_mib=math.nan, peak_is_stage_only=False, bytes=0)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=grid.timeout_s)
    except subprocess.TimeoutExpired:
        return ScalingPoint(codec, model, axis, stage, frames, width, height, error=f"timeout after {grid.timeout_s:.0f} s", **failed)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return ScalingPoint(codec, model, axis, stage, frames, width, height, error=f"exit {done.returncode}: {tail}", **failed)
    return ScalingPoint(codec, model, axis, stage, frames, width, height, **json.loads(lines[-1]))


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    good = [(x, y) for x, y in zip(xs, ys) if x > 0 and math.isfinite(y) and y > 0]
    if len({x for x, _ in good}) < 2:
        return math.nan
    log_x, log_y = np.log([x for x, _ in good]), np.log([y for _, y in good])
    return float(np.polyfit(log_x, log_y, 1)[0])


def _fits(points: Sequence[ScalingPoint]) -> list[ScalingFit]:
    fits = []
    keys = dict.fromkeys((p.codec, p.stage, p.axis) for p in points)
    for codec, stage, axis in keys:
        mine = [p for p in points if (p.codec, p.stage, p.axis) == (codec, stage, axis) and p.error is None]
        fits.append(ScalingFit(codec, stage, axis, _slope([p.x for p in mine], [p.seconds for p in mine]),
                               _slope([p.x for p in mine], [p.stage_rss_mib for p in mine]), len(mine)))
    return fits


def _quality_for(codec: str, grid: ScalingGrid, model: str) -> int:
    if codec in NVCODEC_CODECS:
        from nvcodec import registry

        levels = registry.get_spec(model).quality_levels
        return levels // 2 if grid.quality is None else grid.quality
    from nvcodec.bench import classical

    params = classical.CODECS[codec].default_params
    return params[len(params) // 2]


def run_scaling(grid: ScalingGrid, model_overrides: Sequence[str] = (), log: LogFn | None = None) -> ScalingReport:
    """Run every point of ``grid`` (frame-count axis, then resolution axis) for each codec and stage."""
    import platform

    from nvcodec.bench import classical

    log = log or (lambda line: None)
    unknown = [c for c in grid.codecs if c not in NVCODEC_CODECS and c not in classical.CODECS]
    if unknown:
        raise InputError(f"unknown codec(s) {', '.join(unknown)}")
    if any(n < 1 for n in (*grid.frame_counts, grid.base_frames)):
        raise InputError("frame counts must be >= 1")
    plan: list[tuple[Axis, int, tuple[int, int]]] = [("frames", n, grid.base_size) for n in grid.frame_counts]
    plan += [("resolution", grid.base_frames, size) for size in grid.sizes]
    points = []
    with tempfile.TemporaryDirectory(prefix="nvcodec-scaling-") as scratch:
        for codec in grid.codecs:
            model = model_for(codec, model_overrides) if codec in NVCODEC_CODECS else classical.CODECS[codec].library
            quality = _quality_for(codec, grid, model)
            for axis, frames, size in plan:
                stream = Path(scratch) / f"{codec}-{axis}-{frames}-{size[0]}x{size[1]}.bin"
                for stage in ("encode", "decode"):
                    if stage == "decode" and not stream.exists():
                        break  # the encode failed: nothing to decode
                    point = _run_point(codec, model, axis, stage, frames, size, quality, grid, stream)
                    points.append(point)
                    log(f"{codec:<9} {stage:<6} {frames:>4} x {size[0]}x{size[1]:<5} "
                        + (f"{point.seconds:8.3f} s  peak {point.peak_rss_mib:7.1f} MiB  stage +{point.stage_rss_mib:7.1f} MiB"
                           if point.error is None else f"FAILED: {point.error}"))
    return ScalingReport(
        schema_version=SCHEMA_VERSION,
        created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        machine=f"{platform.platform()}, {grid.device}",
        cpu_count=os.cpu_count() or 0,
        grid=grid,
        points=tuple(points),
        fits=tuple(_fits(points)),
    )


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def format_table(report: ScalingReport) -> str:
    lines = [f"{'codec':<10}{'stage':<8}{'axis':<12}{'points':>6}  {'time slope':>10}  {'memory slope':>12}"]
    for fit in report.fits:
        lines.append(f"{fit.codec:<10}{fit.stage:<8}{fit.axis:<12}{fit.points:>6}  {fit.time_slope:>10.2f}  {fit.memory_slope:>12.2f}")
    return "\n".join(lines) + "\n"


def _plot(report: ScalingReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    slopes = {(f.codec, f.stage, f.axis): f for f in report.fits}
    for col, axis in enumerate(("frames", "resolution")):
        for codec, stage in dict.fromkeys((p.codec, p.stage) for p in report.points):
            mine = sorted((p for p in report.points if (p.codec, p.stage, p.axis) == (codec, stage, axis) and p.error is None),
                          key=lambda p: p.x)
            if not mine:
                continue
            fit = slopes[(codec, stage, axis)]
            style = "-" if stage == "encode" else "--"
            xs = [p.x for p in mine]
            axes[0, col].plot(xs, [p.seconds for p in mine], style, marker="o", ms=3,
                              label=f"{codec} {stage} (slope {fit.time_slope:.2f})")
            axes[1, col].plot(xs, [max(p.stage_rss_mib, 1e-3) for p in mine], style, marker="o", ms=3,
                              label=f"{codec} {stage} (slope {fit.memory_slope:.2f})")
        xlabel = (f"frames (at {report.grid.base_size[0]}x{report.grid.base_size[1]})" if axis == "frames"
                  else f"pixels per frame (at {report.grid.base_frames} frames)")
        for row, ylabel in ((0, "wall time (s)"), (1, "stage peak RSS increase (MiB)")):
            ax = axes[row, col]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(f"scaling, {report.machine}, {report.cpu_count} CPU(s), {report.created_utc}", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)


def write_outputs(report: ScalingReport, out_dir: str | os.PathLike) -> list[Path]:
    """Write scaling.json (``dataclasses.asdict(report)``, NaN as null) and scaling.png into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / RESULT_FILES[0], out / RESULT_FILES[1]
    tmp = json_path.with_name(f".{json_path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(_json_safe(dataclasses.asdict(report)), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, json_path)
    _plot(report, png_path)
    return [json_path, png_path]


def _worker_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m nvcodec.bench.scaling --worker")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--stage", choices=("encode", "decode"), required=True)
    parser.add_argument("--codec", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--quality", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stream", required=True)
    print(json.dumps(_worker(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
