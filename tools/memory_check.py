"""Peak memory of ``nvcodec decode`` against the number of frames decoded (it should not grow).

    python tools/memory_check.py [--frames 32 128] [--size 256] [--codec intra hypernerv] [--out DIR]

Builds one clip of ``max(--frames)`` frames (``--size`` square crops of bigbuckbunny.mp4 from the
shared media, or a synthetic clip if it is missing), encodes it once per codec (shipped weights
if present, else the tiny test model), then runs ``nvcodec decode STREAM -o OUT.mkv --frames 0:N``
for each N in a fresh process and reads that process's peak RSS from ``os.wait4`` (the kernel's
``ru_maxrss``). Decoding writes frames out chunk by chunk, so the peaks should differ by less than
``--tolerance`` (default 20 %); the exit status is 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nvcodec.container import CODEC_NAMES

__all__ = ["MemoryRun", "peak_rss_of", "build_clip", "main"]

DEFAULT_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "bigbuckbunny.mp4"


@dataclass(frozen=True)
class MemoryRun:
    codec: str
    model: str
    frames: int
    width: int
    height: int
    peak_rss_mib: float
    seconds: float


def peak_rss_of(command: list[str], cwd: Path | None = None) -> tuple[float, float, int]:
    """Run ``command``; return (its peak RSS in MiB, wall seconds, exit status)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child can't block
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}): {stderr.strip()}")
    return usage.ru_maxrss / 1024.0, seconds, proc.returncode  # ru_maxrss is in KiB on Linux


def build_clip(frames: int, size: int, media: Path = DEFAULT_MEDIA) -> np.ndarray:
    """(frames, size, size, 3) uint8: centre crops of ``media`` (looped if short), else synthetic."""
    from nvcodec import io

    if media.is_file():
        video = io.read_video(media, 0, frames).frames
        top, left = max((video.shape[1] - size) // 2, 0), max((video.shape[2] - size) // 2, 0)
        crops = video[:, top : top + size, left : left + size]
        return np.ascontiguousarray(np.resize(crops, (frames, *crops.shape[1:])))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    clip = np.stack([(xx + 3 * t) % 256 for t in range(frames)])[..., None].repeat(3, axis=3)
    clip[..., 1] = yy
    return np.clip(clip + rng.normal(0, 4, clip.shape), 0, 255).astype(np.uint8)


def _model(codec: str) -> str:
    from nvcodec import registry

    shipped = registry.get_spec(registry.default_model(codec))
    return shipped.name if shipped.has_weights else f"{codec}-tiny"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/memory_check.py", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--codec", nargs="+", choices=CODEC_NAMES, default=list(CODEC_NAMES))
    parser.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    parser.add_argument("--out", type=Path, default=None, help="keep the streams and a JSON report here")
    parser.add_argument("--tolerance", type=float, default=0.20)
    args = parser.parse_args(argv)

    import nvcodec

    work = args.out or Path(tempfile.mkdtemp(prefix="nvcodec-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    clip = build_clip(max(args.frames), args.size, args.media)
    source = args.media.name if args.media.is_file() else "synthetic"
    print(f"clip: {clip.shape[0]} frames {clip.shape[2]}x{clip.shape[1]} from {source}", flush=True)
    # the floor every decode starts from: interpreter + torch + compressai (+ its imports) + PyAV
    imports = [sys.executable, "-W", "ignore", "-c", "import nvcodec.cli, nvcodec.codec.model, nvcodec.hypernerv.video, av"]
    print(f"baseline (imports only): peak RSS {peak_rss_of(imports)[0]:8.1f} MiB", flush=True)
    runs: list[MemoryRun] = []
    worst = 0.0
    for codec in args.codec:
        model = _model(codec)
        stream = work / f"{codec}.nvc"
        started = time.perf_counter()
        stream.write_bytes(nvcodec.encode(clip, codec=codec, model=model))
        print(f"{codec} ({model}): encoded {stream.stat().st_size} bytes in {time.perf_counter() - started:.0f} s", flush=True)
        peaks = []
        for frames in sorted(args.frames):
            output = work / f"{codec}-{frames}.mkv"
            command = [sys.executable, "-m", "nvcodec.cli", "decode", str(stream), "-o", str(output),
                       "--frames", f"0:{frames}", "--force", "--quiet"]
            peak, seconds, _ = peak_rss_of(command)
            output.unlink(missing_ok=True)
            runs.append(MemoryRun(codec, model, frames, clip.shape[2], clip.shape[1], peak, seconds))
            peaks.append(peak)
            print(f"  decode {frames:>4} frames: peak RSS {peak:8.1f} MiB, {seconds:6.1f} s", flush=True)
        ratio = peaks[-1] / peaks[0]
        worst = max(worst, ratio - 1.0)
        # for scale: what holding the extra frames would cost (uint8 RGB; float32 is 4x that)
        extra_mib = (max(args.frames) - min(args.frames)) * clip.shape[1] * clip.shape[2] * 3 / 2**20
        print(f"  {codec}: peak RSS ratio {max(args.frames)}/{min(args.frames)} frames = {ratio:.3f} "
              f"({peaks[-1] - peaks[0]:+.1f} MiB; holding the {max(args.frames) - min(args.frames)} extra frames "
              f"would add {extra_mib:.0f} MiB as uint8, {4 * extra_mib:.0f} MiB as float32)", flush=True)
    (work / "memory.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))
    verdict = "PASS" if worst < args.tolerance else "FAIL"
    print(f"{verdict}: largest growth {100 * worst:.1f} % (limit {100 * args.tolerance:.0f} %); report {work / 'memory.json'}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
