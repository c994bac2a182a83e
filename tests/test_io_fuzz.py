"""Fuzzing the I/O layer: mutated copies of a small MP4 and MKV decode cleanly or raise ``InputError``.

Whatever the damage (bit flips, overwritten bytes and box sizes, truncation, insertion, deletion,
duplicated ranges), ``io.read_video`` must return well-formed frames (a shorter result warns with
``PartialInputWarning``) or raise ``InputError``: never another exception, never a hang (each case
runs under a generous CPU-time guard, ``nvcodec.testing.time_limit``). Seeded: reproducible.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import moving_clip
from nvcodec import io
from nvcodec.testing import time_limit
from nvcodec.errors import InputError
from test_input_policy import write_av

CASES_PER_SEED = 500  # x 2 seeds = 1000 mutated inputs
INTERESTING_U32 = (0, 1, 7, 8, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000, 32, 8192, 8193)


def seed_file(path: Path, fmt: str) -> bytes:
    """A valid 4-frame 32x32 video: H.264 in MP4 (moov first) or FFV1 in Matroska."""
    if fmt == "mp4":
        write_av(path, moving_clip(4, 32, 32), "mp4", "libx264", "yuv420p", movflags="faststart")
    else:
        write_av(path, moving_clip(4, 32, 32), "matroska", "ffv1", "bgr0")
    return path.read_bytes()


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random kind of damage; positions favour the first 512 bytes (headers) half the time."""
    buf = bytearray(data)

    def position() -> int:
        return rng.randrange(min(len(buf), 512)) if rng.random() < 0.5 else rng.randrange(len(buf))

    kind = rng.choice(("flip", "bytes", "u32", "truncate", "insert", "delete", "duplicate"))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            buf[position()] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        for _ in range(rng.randint(1, 4)):
            buf[position()] = rng.randrange(256)
    elif kind == "u32":
        at = min(position(), len(buf) - 4)
        buf[at : at + 4] = rng.choice(INTERESTING_U32).to_bytes(4, rng.choice(("big", "little")))
    elif kind == "truncate":
        del buf[rng.randrange(1, len(buf)) :]
    elif kind == "insert":
        at = position()
        buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == "delete":
        at = position()
        del buf[at : at + rng.randint(1, 64)]
    else:
        at, length = position(), rng.randint(1, 256)
        buf[at:at] = buf[at : at + length]
    return kind, bytes(buf)


@pytest.mark.parametrize("fmt,seed", [("mp4", 11), ("matroska", 12)])
def test_mutated_videos_decode_or_raise_input_error(tmp_path: Path, fmt: str, seed: int) -> None:
    original = seed_file(tmp_path / "seed.bin", fmt)
    assert io.read_video(tmp_path / "seed.bin").frames.shape == (4, 32, 32, 3)
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    case = tmp_path / "case.bin"
    for index in range(CASES_PER_SEED):
        kind, data = mutate(original, rng)
        case.write_bytes(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", io.PartialInputWarning)
                with time_limit(20.0):  # a hang guard, not a timing assertion
                    video = io.read_video(case)
        except InputError:
            outcomes["InputError"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the failure this test exists to find
            (tmp_path.parent / f"io-fuzz-{fmt}-{index}.bin").write_bytes(data)
            pytest.fail(f"case {index} ({kind}, seed {seed}): {type(exc).__name__}: {exc}")
        frames = video.frames
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] >= 1 and frames.shape[3] == 3, (index, kind)
        assert 1 <= frames.shape[1] <= io.MAX_DIMENSION and 1 <= frames.shape[2] <= io.MAX_DIMENSION, (index, kind)
        outcomes["short" if video.shortfall else "decoded"] += 1
    assert sum(outcomes.values()) == CASES_PER_SEED
    assert outcomes["InputError"] > 0 and outcomes["decoded"] + outcomes["short"] > 0, outcomes  # both paths exercised
