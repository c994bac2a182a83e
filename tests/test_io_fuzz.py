"""Fuzzing the I/O layer: mutated copies of a small MP4 and MKV decode cleanly or raise ``InputError``.

Whatever the damage (bit flips, overwritten bytes and box sizes, truncation, insertion, deletion,
duplicated ranges), ``io.read_video`` must return well-formed frames (a shorter result warns with
``PartialInputWarning``) or raise ``InputError``: never another exception, never a hang (each case
runs under a generous CPU-time guard, ``nvcodec.testing.time_limit``). Seeded: reproducible.

The cases run in a child process (this file run as a script), so that a native crash inside
FFmpeg cannot take pytest down with it: the parent reads which case the child was decoding when
it died, keeps that input and replays it alone in fresh processes. A crash that replays is a
failure; one that does not (a race in FFmpeg's decoder threads, seen once in the whole suite on a
CI machine and never in isolation) is reported as a warning with the kept input, and the run
resumes after it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nvcodec import io
from nvcodec.testing import time_limit
from nvcodec.errors import InputError

CASES_PER_SEED = 500  # x 2 seeds = 1000 mutated inputs
REPLAYS = 3  # fresh processes that replay an input whose decode killed the child
INTERESTING_U32 = (0, 1, 7, 8, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000, 32, 8192, 8193)


def seed_file(path: Path, fmt: str) -> bytes:
    """A valid 4-frame 32x32 video: H.264 in MP4 (moov first) or FFV1 in Matroska."""
    from conftest import moving_clip
    from test_input_policy import write_av

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


def decode_case(path: Path) -> str:
    """One input through ``io.read_video``: "InputError", "decoded", "short", or "bad: ..." for anything else."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", io.PartialInputWarning)
            with time_limit(20.0):  # a hang guard, not a timing assertion
                video = io.read_video(path)
    except InputError:
        return "InputError"
    except Exception as exc:  # noqa: BLE001 - the failure this test exists to find
        return f"bad: {type(exc).__name__}: {exc}"
    frames = video.frames
    if not (frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] >= 1 and frames.shape[3] == 3):
        return f"bad: frames {frames.dtype} {frames.shape}"
    if not (1 <= frames.shape[1] <= io.MAX_DIMENSION and 1 <= frames.shape[2] <= io.MAX_DIMENSION):
        return f"bad: frames {frames.shape}"
    return "short" if video.shortfall else "decoded"


def run_cases(seed_path: Path, seed: int, first: int, work: Path) -> None:
    """The child: cases ``first ..`` of ``seed``; before each decode, the input goes to
    ``work/case-INDEX.bin`` and ``begin INDEX KIND`` to stdout, after it ``end INDEX OUTCOME``."""
    original = seed_path.read_bytes()
    rng = random.Random(seed)
    for index in range(CASES_PER_SEED):
        kind, data = mutate(original, rng)  # drawn for every index, so case i is the same in any child
        if index < first:
            continue
        case = work / f"case-{index}.bin"
        case.write_bytes(data)
        print("begin", index, kind, flush=True)
        outcome = decode_case(case)
        print("end", index, json.dumps(outcome), flush=True)
        if not outcome.startswith("bad"):
            case.unlink()


def child(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-X", "faulthandler", __file__, *args], capture_output=True, text=True, env=env, timeout=1800)


@pytest.mark.parametrize("fmt,seed", [("mp4", 11), ("matroska", 12)])
def test_mutated_videos_decode_or_raise_input_error(tmp_path: Path, fmt: str, seed: int) -> None:
    seed_path = tmp_path / "seed.bin"
    seed_file(seed_path, fmt)
    assert io.read_video(seed_path).frames.shape == (4, 32, 32, 3)
    outcomes: Counter[str] = Counter()
    first = 0
    while first < CASES_PER_SEED:
        run = child("cases", str(seed_path), str(seed), str(first), str(tmp_path))
        begun = None
        for line in run.stdout.splitlines():
            word, index, rest = line.split(" ", 2)
            if word == "begin":
                begun = (int(index), rest)
                continue
            outcome = json.loads(rest)
            if outcome.startswith("bad"):
                (tmp_path.parent / f"io-fuzz-{fmt}-{index}.bin").write_bytes((tmp_path / f"case-{index}.bin").read_bytes())
                pytest.fail(f"case {index} ({begun[1]}, seed {seed}): {outcome}")
            outcomes[outcome] += 1
            begun = None
        if run.returncode == 0 and begun is None:
            break
        # The child died (a native crash) while decoding case ``begun``: keep it, replay it alone.
        assert begun is not None, f"child failed outside a case (exit {run.returncode}): {run.stderr[-2000:]}"
        index, kind = begun
        kept = tmp_path.parent / f"io-fuzz-{fmt}-{index}.bin"
        kept.write_bytes((tmp_path / f"case-{index}.bin").read_bytes())
        replays = [child("replay", str(kept)) for _ in range(REPLAYS)]
        crashed = [r.returncode for r in replays if r.returncode != 0]
        assert not crashed, (
            f"case {index} ({kind}, seed {seed}) kills the decoding process (exit {run.returncode}, and {crashed} "
            f"in {len(crashed)} of {REPLAYS} replays); input kept at {kept}\n{run.stderr[-2000:]}"
        )
        for replay in replays:
            outcome = replay.stdout.strip()
            assert not outcome.startswith("bad"), f"case {index} ({kind}, seed {seed}) replayed: {outcome}"
        warnings.warn(
            f"case {index} ({kind}, seed {seed}) crashed the decoding process once (exit {run.returncode}) but not in "
            f"{REPLAYS} fresh replays; input kept at {kept}; stderr tail: {run.stderr[-600:]!r}"
        )
        outcomes["crash-not-replayed"] += 1
        first = index + 1
    assert sum(outcomes.values()) == CASES_PER_SEED, outcomes
    assert outcomes["InputError"] > 0 and outcomes["decoded"] + outcomes["short"] > 0, outcomes  # both paths exercised


if __name__ == "__main__":  # the child process of the test above
    if sys.argv[1] == "cases":
        run_cases(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
    else:
        print(decode_case(Path(sys.argv[2])))
