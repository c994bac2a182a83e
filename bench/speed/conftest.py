"""Fixtures of the speed suite (run by ``nvcodec bench speed``; not part of ``make test``).

Settings come from the environment so that ``nvcodec bench speed`` can pass them through pytest:
``NVCODEC_BENCH_SIZE`` (WxH, default 256x256), ``NVCODEC_BENCH_FRAMES`` (default 8),
``NVCODEC_BENCH_DEVICE`` (cpu|cuda), ``NVCODEC_BENCH_ROUNDS`` (timed rounds, default 3),
``NVCODEC_BENCH_MODELS`` (comma-separated model names replacing the defaults).
Models: the shipped ones when their weights are installed, else the untrained test configs
(``nvcodec.bench.models.model_for``); every result names its model in ``extra_info``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest


@dataclass(frozen=True)
class SpeedSettings:
    width: int
    height: int
    frames: int
    device: str
    rounds: int
    models: tuple[str, ...]

    def sync(self) -> None:
        """Wait for queued GPU work so that the timer sees it (no-op on CPU)."""
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def extra_info(self, **fields: Any) -> dict[str, Any]:
        import torch

        device = self.device if self.device == "cpu" else f"cuda ({torch.cuda.get_device_name()})"
        return {
            "device": device,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "frames": self.frames,
            "width": self.width,
            "height": self.height,
            **fields,
        }


@pytest.fixture(scope="session")
def settings() -> SpeedSettings:
    from nvcodec.bench.rd import parse_size

    width, height = parse_size(os.environ.get("NVCODEC_BENCH_SIZE", "256x256"))
    device = os.environ.get("NVCODEC_BENCH_DEVICE", "cpu")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            pytest.skip("NVCODEC_BENCH_DEVICE=cuda but CUDA is not available")
    models = tuple(m for m in os.environ.get("NVCODEC_BENCH_MODELS", "").split(",") if m)
    return SpeedSettings(width, height, int(os.environ.get("NVCODEC_BENCH_FRAMES", "8")), device,
                         int(os.environ.get("NVCODEC_BENCH_ROUNDS", "3")), models)


@pytest.fixture(scope="session")
def clip(settings: SpeedSettings) -> np.ndarray:
    from nvcodec.bench.models import synthetic_clip

    return synthetic_clip(settings.frames, settings.height, settings.width)


@pytest.fixture
def run(benchmark, settings: SpeedSettings) -> Callable[..., Any]:
    """``run(fn, group, setup=None, **extra)``: time ``fn`` (after one warm-up round) with CUDA sync."""

    def timed(fn: Callable[..., Any], group: str, setup: Callable[[], tuple] | None = None, **extra: Any) -> Any:
        benchmark.group = group
        benchmark.extra_info.update(settings.extra_info(**extra))

        def synced(*args: Any) -> Any:
            result = fn(*args)
            settings.sync()
            return result

        kwargs: dict[str, Any] = {"rounds": settings.rounds, "warmup_rounds": 1, "iterations": 1}
        if setup is not None:
            kwargs["setup"] = lambda: (setup(), {})
        return benchmark.pedantic(synced, **kwargs)

    return timed
