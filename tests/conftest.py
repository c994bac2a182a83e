"""Shared fixtures: paths to the shared media and small synthetic clips."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
NVCODEC = [sys.executable, "-m", "nvcodec.cli"]


@pytest.fixture(scope="session")
def load_tool():
    """Import a script of ``tools/`` (not a package) by its name: ``load_tool("intra_retune_levels")``."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.skip(f"shared media not found at {MEDIA}")
    return MEDIA


def moving_clip(frames: int = 6, height: int = 40, width: int = 56, seed: int = 0) -> np.ndarray:
    """A smooth synthetic clip (T, H, W, 3) uint8: a gradient with a moving bright square."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1), np.full_like(xx, 128.0)], -1)
    clip = np.repeat(base[None], frames, 0)
    for t in range(frames):
        y0, x0 = (3 + 2 * t) % max(height - 8, 1), (5 + 3 * t) % max(width - 8, 1)
        clip[t, y0 : y0 + 8, x0 : x0 + 8] = 250
    clip += rng.normal(0, 2, clip.shape)
    return np.clip(np.round(clip), 0, 255).astype(np.uint8)


@pytest.fixture
def clip() -> np.ndarray:
    return moving_clip()
