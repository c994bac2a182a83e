"""``nvcodec bench speed``: run the pytest-benchmark suite in ``bench/speed`` and keep its JSON."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["SPEED_SUITE", "run_speed"]

SPEED_SUITE = Path(__file__).resolve().parent / "speed"


def run_speed(out: Path, size: str, frames: int, device: str, pytest_args: Sequence[str] = (),
              rounds: int = 3, models: Sequence[str] = ()) -> int:
    """Run the suite in a subprocess; writes ``out/speed.json`` (pytest-benchmark's format).

    Returns pytest's exit code. The suite is not collected by ``make test`` (testpaths = tests/).
    """
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "NVCODEC_BENCH_SIZE": size,
        "NVCODEC_BENCH_FRAMES": str(frames),
        "NVCODEC_BENCH_DEVICE": device,
        "NVCODEC_BENCH_ROUNDS": str(rounds),
        "NVCODEC_BENCH_MODELS": ",".join(models),
    }
    command = [
        sys.executable, "-m", "pytest", str(SPEED_SUITE), "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
        f"--benchmark-json={out / 'speed.json'}", "--benchmark-sort=name",
        "--benchmark-columns=min,median,mean,stddev,rounds", *pytest_args,
    ]
    return subprocess.call(command, env=env)
