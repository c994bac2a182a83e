"""Fuzzing the I/O layer: mutated copies of a small MP4 and MKV decode cleanly or raise ``InputError``.

Whatever the damage (bit flips, overwritten bytes and box sizes, truncation, insertion, deletion,
duplicated ranges), ``io.read_video`` must return well-formed frames (a shorter result warns with
``PartialInputWarning``) or raise ``InputError``: never another exception, never a hang (each case
runs under a generous CPU-time guard, ``nvcodec.testing.time_limit``). Seeded: reproducible.

The cases run in a child process (this file run as a script), so that a native crash inside
FFmpeg cannot take pytest down with it. The child names each case before decoding it and keeps its
input until the next one starts; a watchdog (``nvcodec.testing``'s) ends it if one decode hangs in a
C call. When the child dies, the parent keeps the input of the case it died in (or just after) and
replays it alone in fresh processes: a crash or hang that replays is a failure; one that does not
is reported as a warning with the kept input, and the run resumes after that case. Why: the full
suite once died of a segfault here on a CI machine, and 1000 cases run alone have never crashed on
this one (six runs); a race in FFmpeg's decoder threads is the guess, not a finding.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nvcodec import io
from nvcodec.testing import FuzzTimeout, _Watchdog, time_limit
from nvcodec.errors import InputError

CASES_PER_SEED = 500  # x 2 seeds = 1000 mutated inputs
REPLAYS = 3  # fresh processes that replay an input whose decode killed the child
HANG_S = 60.0  # CPU or wall seconds of one decode after which the watchdog ends the child
LINE = re.compile(r"(begin|end) (\d+) (.*)")
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
    except FuzzTimeout:
        return "bad: over 20 s of CPU time"
    except Exception as exc:  # noqa: BLE001 - the failure this test exists to find
        return f"bad: {type(exc).__name__}: {exc}"
    frames = video.frames
    if not (frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] >= 1 and frames.shape[3] == 3):
        return f"bad: frames {frames.dtype} {frames.shape}"
    if not (1 <= frames.shape[1] <= io.MAX_DIMENSION and 1 <= frames.shape[2] <= io.MAX_DIMENSION):
        return f"bad: frames {frames.shape}"
    return "short" if video.shortfall else "decoded"


def run_cases(seed_path: Path, seed: int, first: int, work: Path) -> None:
    """The child: cases ``first ..`` of ``seed``. Before each decode its input goes to ``work/case-INDEX.bin``
    (kept until the next case starts) and ``begin INDEX KIND`` to stdout; after it, ``end INDEX OUTCOME``.
    Stops at the first bad outcome."""
    original = seed_path.read_bytes()
    rng = random.Random(seed)
    watchdog = hang_watchdog()
    previous: Path | None = None
    for index in range(CASES_PER_SEED):
        kind, data = mutate(original, rng)  # drawn for every index, so case i is the same in any child
        if index < first:
            continue
        case = work / f"case-{index}.bin"
        case.write_bytes(data)
        if previous is not None:
            previous.unlink()
        previous = case
        print("begin", index, kind, flush=True)
        watchdog.start()
        outcome = decode_case(case)
        watchdog.stop()
        print("end", index, outcome, flush=True)
        if outcome.startswith("bad"):
            return


def hang_watchdog() -> _Watchdog:
    """Ends the child (exit 3) when one decode passes ``HANG_S`` of CPU or wall time."""
    return _Watchdog(HANG_S, on_expire=lambda: print("hang", file=sys.stderr, flush=True), wall_limit=HANG_S)


def replay(path: Path) -> None:
    """The child of a replay: one input, under the same watchdog; prints its outcome."""
    watchdog = hang_watchdog()
    watchdog.start()
    print(decode_case(path), flush=True)


def run_child(*args: str) -> tuple[int, str, str]:
    """This file as a script in a fresh process -> (exit status, stdout, stderr); a child that outlives
    every watchdog is killed, as status -9."""
    try:
        run = subprocess.run([sys.executable, "-X", "faulthandler", __file__, *args], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        return -9, (exc.stdout or b"").decode(errors="replace"), (exc.stderr or b"").decode(errors="replace")
    return run.returncode, run.stdout, run.stderr


def parse_child(stdout: str, first: int) -> tuple[list[tuple[int, str, str]], tuple[int, str] | None]:
    """The child's lines -> ([(index, kind, outcome)] of the cases it finished, in order from ``first``,
    the (index, kind) of a case it began and never finished, or None). A last line without its newline
    (cut by a crash) is dropped; any other line that is not the protocol's fails the test."""
    lines = stdout.split("\n")[:-1]
    done: list[tuple[int, str, str]] = []
    begun: tuple[int, str] | None = None
    expected = first
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, f"unexpected line from the fuzz child: {line!r}\n{stdout[-2000:]}"
        word, index, rest = match[1], int(match[2]), match[3]
        assert index == expected, f"fuzz child reported case {index}, expected {expected}\n{stdout[-2000:]}"
        if word == "begin":
            assert begun is None, stdout[-2000:]
            begun = (index, rest)
        else:
            assert begun is not None and begun[0] == index, stdout[-2000:]
            done.append((index, begun[1], rest))
            begun, expected = None, index + 1
    return done, begun


@pytest.mark.parametrize("fmt,seed", [("mp4", 11), ("matroska", 12)])
def test_mutated_videos_decode_or_raise_input_error(tmp_path: Path, fmt: str, seed: int) -> None:
    seed_path = tmp_path / "seed.bin"
    seed_file(seed_path, fmt)
    assert io.read_video(seed_path).frames.shape == (4, 32, 32, 3)
    outcomes: Counter[str] = Counter()

    def keep(index: int) -> Path:
        kept = tmp_path.parent / f"io-fuzz-{fmt}-{index}.bin"
        kept.write_bytes((tmp_path / f"case-{index}.bin").read_bytes())
        return kept

    first = 0
    while first < CASES_PER_SEED:
        status, stdout, stderr = run_child("cases", str(seed_path), str(seed), str(first), str(tmp_path))
        done, begun = parse_child(stdout, first)
        for index, kind, outcome in done:
            if outcome.startswith("bad"):
                pytest.fail(f"case {index} ({kind}, seed {seed}): {outcome}; input kept at {keep(index)}")
        if status == 0 and begun is None:
            outcomes.update(outcome for *_, outcome in done)
            assert done and done[-1][0] == CASES_PER_SEED - 1, stdout[-2000:]
            break
        # The child died (a native crash, or the watchdog on a hang) in case ``begun``, or just after
        # the last case it finished (tearing it down): keep that input and replay it alone.
        assert begun or done, f"fuzz child died before its first case (exit {status}): {stderr[-2000:]}"
        index, kind = begun or done.pop()[:2]
        outcomes.update(outcome for *_, outcome in done)
        kept = keep(index)
        replays = [run_child("replay", str(kept)) for _ in range(REPLAYS)]
        failed = [(code, out.strip(), err[-1000:]) for code, out, err in replays if code != 0 or not out.strip() or out.startswith("bad")]
        assert not failed, (
            f"case {index} ({kind}, seed {seed}) ended the decoding process (exit {status}) and fails {len(failed)} of "
            f"{REPLAYS} replays alone (exit, stdout, stderr tail): {failed}; input kept at {kept}\n{stderr[-2000:]}"
        )
        warnings.warn(
            f"case {index} ({kind}, seed {seed}) ended the decoding process once (exit {status}) but decoded cleanly in "
            f"{REPLAYS} fresh replays; input kept at {kept}; stderr tail: {stderr[-600:]!r}"
        )
        outcomes["ended-the-process-once"] += 1
        first = index + 1
    assert sum(outcomes.values()) == CASES_PER_SEED, outcomes
    assert outcomes["InputError"] > 0 and outcomes["decoded"] + outcomes["short"] > 0, outcomes  # both paths exercised


if __name__ == "__main__":  # the child process of the test above
    if sys.argv[1] == "cases":
        run_cases(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
    else:
        replay(Path(sys.argv[2]))
