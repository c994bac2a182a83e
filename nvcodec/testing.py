"""Test tools for the ``.nvc`` format: stream forging and a fuzzer of the decoders (a check, not a benchmark).

    python -m nvcodec.testing --codec intra|hypernerv|all --count N --seed S --timeout 5

``parse_stream`` / ``build_stream`` / ``forge_header`` rewrite a valid stream's header with correct
framing and CRCs (``container.frame_stream``, the container's own writer), so that tests reach the
checks behind the CRCs. The fuzzer mutates valid streams of every codec and decodes them with a time bound.

Seed streams are encoded with the shipped models when their weights exist, else with the tiny test
models (a few frames at small sizes, so each decode takes milliseconds). Each mutation is one of:

- raw damage to the bytes: bit flips, truncation, insertion, deletion, an overwritten u32;
- a hostile writer: a modified header JSON re-serialised with a correct CRC (huge or negative
  dimensions and frame counts, forged chunk tables, params out of range or of the wrong type,
  another model's name, ``made_on``), or a modified chunk payload with its length and CRC fixed,
  so that the damage reaches the codec's payload parser and decoder instead of the CRC check.

Every mutated stream goes through ``nvcodec.decode`` (sometimes a frame range) in this process
under a time limit: by default this process's CPU time (SIGPROF), so that a busy machine cannot
pass for a hang; ``--clock wall`` uses wall time. A watchdog thread ends the process (keeping the
stream) if a C call never lets the timer's handler run.
The only acceptable outcomes are decoded frames or an ``NvcodecError``; the report counts streams
by outcome and the exit status is 1 if any other exception or a time-out occurred. Offending
streams are saved under ``--crash-dir`` for replay (``--replay FILE``).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import os
import random
import resource
import signal
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nvcodec.container import _PREFIX, CODEC_NAMES, frame_stream

__all__ = [
    "ParsedStream",
    "parse_stream",
    "build_stream",
    "forge_header",
    "mutate",
    "MUTATIONS",
    "seed_streams",
    "time_limit",
    "FuzzTimeout",
    "decode_outcome",
    "warm_up_models",
    "main",
]

_U32 = struct.Struct("<I")

# Values a hostile writer tries in integer fields: bounds, off-by-ones, sign and width edges.
INTERESTING_INTS = (
    0, 1, 2, 3, 7, 8, 15, 16, 17, 63, 64, 65, 255, 256, 1023, 4096, 8191, 8192, 8193, 65535, 65536,
    100_000, 1 << 20, 1 << 31, (1 << 31) - 1, 1 << 32, 1 << 53, 1 << 63, 1 << 64, -1, -2, -(1 << 31),
)
INTERESTING_VALUES = (*INTERESTING_INTS, 0.5, -0.0, 1e308, float("nan"), float("inf"), "", "x", None, True, False, [], {}, [0], [1, 1], [1 << 40, 1 << 40])


@dataclass
class ParsedStream:
    """A stream split into its parts: header record (JSON object) and chunk payloads."""

    version: int
    flags: int
    record: dict
    payloads: list[bytes]


def parse_stream(data: bytes) -> ParsedStream:
    """Split a *valid* stream (as ``pack_stream`` writes it) into header record and payloads."""
    _magic, version, flags, header_len = _PREFIX.unpack_from(data)
    header_end = _PREFIX.size + header_len
    record = json.loads(data[_PREFIX.size : header_end])
    offset = header_end + 4
    payloads = []
    for _offset, length, _start, _stop in record["chunks"]:
        payloads.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length + 4
    return ParsedStream(version, flags, record, payloads)


def build_stream(parsed: ParsedStream, *, fix_table: bool = True) -> bytes:
    """Serialise ``parsed`` with correct framing and CRCs (a hostile but careful writer).

    ``fix_table``: rewrite the chunk table's offsets and lengths to match the payloads (keeping the
    frame ranges); False keeps the record's table verbatim (a forged table).
    """
    record = dict(parsed.record)
    if fix_table and isinstance(record.get("chunks"), list) and len(record["chunks"]) == len(parsed.payloads):
        table, offset = [], 0
        for entry, payload in zip(record["chunks"], parsed.payloads):
            frames = list(entry[2:4]) if isinstance(entry, list) and len(entry) == 4 else [0, 1]
            table.append([offset, len(payload), *frames])
            offset += 4 + len(payload) + 4
        record["chunks"] = table
    header = json.dumps(record, separators=(",", ":"), sort_keys=True, allow_nan=True).encode("utf-8")
    return frame_stream(header, parsed.payloads, parsed.version, parsed.flags)


def forge_header(data: bytes, **changes) -> bytes:
    """``data`` with header fields replaced by ``changes`` and a correct CRC (tests use this)."""
    parsed = parse_stream(data)
    parsed.record.update(changes)
    return build_stream(parsed, fix_table="chunks" not in changes)


# -- mutations -------------------------------------------------------------------------------------


def _damage_bytes(data: bytes, rng: random.Random) -> bytes:
    """One raw edit of ``data``: flip bits, truncate, insert, delete, or overwrite a u32."""
    buf = bytearray(data)
    kind = rng.choice(("flip", "flip", "truncate", "insert", "delete", "u32"))
    if not buf or kind == "insert":
        at = rng.randint(0, len(buf))
        buf[at:at] = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 1, 4, 17, 300))))
    elif kind == "flip":
        for _ in range(rng.choice((1, 1, 2, 8))):
            at = rng.randrange(len(buf) * 8)
            buf[at // 8] ^= 1 << (at % 8)
    elif kind == "truncate":
        del buf[rng.randrange(len(buf)) :]
    elif kind == "delete":
        at = rng.randrange(len(buf))
        del buf[at : at + rng.choice((1, 1, 4, 64))]
    else:
        at = rng.randrange(len(buf))
        value = rng.choice((0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 1 << 24, len(buf), len(buf) + 1, rng.getrandbits(32)))
        buf[at : at + 4] = _U32.pack(value)
    return bytes(buf)


def _mutate_value(value, rng: random.Random):
    """A hostile replacement for one JSON value (sometimes a near miss of the original)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or rng.random() < 0.6:
        if isinstance(value, list) and value and rng.random() < 0.5:
            copy = list(value)
            index = rng.randrange(len(copy))
            copy[index] = _mutate_value(copy[index], rng)
            return copy
        if isinstance(value, dict) and value and rng.random() < 0.7:
            return _mutate_params(value, rng)
        return rng.choice(INTERESTING_VALUES)
    return type(value)(value + rng.choice((-1, 1, -value, value, 7, -100)))


def _mutate_params(params: dict, rng: random.Random) -> dict:
    params = dict(params)
    action = rng.random()
    if params and action < 0.75:
        key = rng.choice(sorted(params))
        params[key] = _mutate_value(params[key], rng)
    elif params and action < 0.9:
        del params[rng.choice(sorted(params))]
    else:
        params[rng.choice(("extra", "quality", "tile", "clip_len", "frames"))] = rng.choice(INTERESTING_VALUES)
    return params


def _mutate_table(record: dict, rng: random.Random) -> None:
    table = [list(entry) for entry in record["chunks"]]
    frames = record["frame_count"]
    action = rng.choice(("entry", "merge", "one", "drop", "dup", "frames"))
    if action == "entry":
        entry = rng.choice(table)
        field_index = rng.randrange(4)
        entry[field_index] = _mutate_value(entry[field_index], rng)
    elif action == "merge" and len(table) > 1:
        # one chunk claims the frames of two: a decoder must not produce more frames than it holds
        index = rng.randrange(len(table) - 1)
        table[index][3] = table[index + 1][3]
        del table[index + 1]
    elif action == "one":
        record["frame_count"] = rng.choice((frames, frames * 50, 100_000))
        table[-1][3] = record["frame_count"]
    elif action == "drop" and len(table) > 1:
        del table[rng.randrange(len(table))]
    elif action == "dup":
        table.append(list(table[-1]))
    else:
        record["frame_count"] = max(1, frames + rng.choice((-1, 1, 1000)))
    record["chunks"] = table


def _mutate_header(parsed: ParsedStream, rng: random.Random) -> tuple[str, bool]:
    """Change one header field in place; returns (what, whether the chunk table must be kept verbatim)."""
    from nvcodec.registry import MODELS

    record = parsed.record
    target = rng.choice(("params", "params", "params", "params", "dims", "frames", "table", "model", "other"))
    if target == "params":
        record["params"] = _mutate_params(record.get("params") or {}, rng)
    elif target == "dims":
        key = rng.choice(("width", "height"))
        record[key] = rng.choice((1, 2, 15, 16, 17, 64, 65, 255, 4096, 8192, record[key] + 1, record[key] * 2, record[key] - 1))
    elif target == "frames":
        record["frame_count"] = rng.choice((1, record["frame_count"] + 1, 100_000))
        record["chunks"][-1][3] = record["frame_count"]
    elif target == "table":
        _mutate_table(record, rng)
        return "header:table", rng.random() < 0.5
    elif target == "model":
        name = rng.choice(sorted(MODELS))
        record["model"] = name
        if rng.random() < 0.5:
            record["codec_id"] = {"intra": 1, "hypernerv": 2}[MODELS[name].codec]
    else:
        key = rng.choice(("codec_id", "weights", "fps", "pixel_format", "made_on", "model"))
        record[key] = _mutate_value(record.get(key), rng)
    return f"header:{target}", False


def mutate(stream: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of the valid ``stream``; returns ``(kind, mutated bytes)``."""
    roll = rng.random()
    if roll < 0.25:
        return "raw", _damage_bytes(stream, rng)
    parsed = parse_stream(stream)
    if roll < 0.6:
        # hostile payload: the damage survives the CRC and reaches the codec's parser
        index = rng.randrange(len(parsed.payloads))
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            parsed.payloads[index] = _damage_bytes(parsed.payloads[index], rng)
        return "payload", build_stream(parsed)
    if roll < 0.65:
        # payloads swapped between chunks, or one chunk's payload repeated
        i, j = rng.randrange(len(parsed.payloads)), rng.randrange(len(parsed.payloads))
        parsed.payloads[i], parsed.payloads[j] = parsed.payloads[j], parsed.payloads[i]
        return "payload:swap", build_stream(parsed)
    kind, verbatim = _mutate_header(parsed, rng)
    if rng.random() < 0.2:
        parsed.payloads[-1] = _damage_bytes(parsed.payloads[-1], rng)
        kind += "+payload"
    return kind, build_stream(parsed, fix_table=not verbatim)


# -- seed streams ----------------------------------------------------------------------------------


def _clip(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """A smooth synthetic clip (T, H, W, 3) uint8 with a moving square and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1), np.full_like(xx, 100.0)], -1)
    clip = np.repeat(base[None], frames, 0)
    for t in range(frames):
        y0, x0 = (2 * t) % max(height - 4, 1), (3 * t) % max(width - 4, 1)
        clip[t, y0 : y0 + 4, x0 : x0 + 4] = 240
    clip += rng.normal(0, 3, clip.shape)
    return np.clip(np.round(clip), 0, 255).astype(np.uint8)


# (frames, H, W): small and odd sizes; intra decodes cost a model pass per frame, so fewer frames
SEED_SHAPES = {
    "intra": ((1, 16, 16), (2, 23, 37), (1, 33, 20), (2, 9, 70)),
    "hypernerv": ((1, 16, 16), (3, 40, 56), (2, 23, 37), (5, 33, 20)),
}


def fuzz_model(codec: str, prefer_shipped: bool = True) -> str:
    """The shipped model of ``codec`` if its weights exist (and ``prefer_shipped``), else the tiny one."""
    from nvcodec import registry

    shipped = registry.get_spec(registry.default_model(codec))
    return shipped.name if prefer_shipped and shipped.has_weights else f"{codec}-tiny"


def seed_streams(codec: str, model: str, shapes=None) -> list[bytes]:
    """Valid streams of ``model``: every seed shape, quality levels spread over the range."""
    import nvcodec
    from nvcodec import registry

    shapes = SEED_SHAPES[codec] if shapes is None else shapes
    levels = registry.get_spec(model).quality_levels
    streams = []
    for index, (frames, height, width) in enumerate(shapes):
        quality = (index * (levels - 1)) // max(len(shapes) - 1, 1)
        streams.append(nvcodec.encode(_clip(frames, height, width, index), codec=codec, model=model, quality=quality))
    if codec == "hypernerv":  # more frames than one clip: several chunks
        from nvcodec.registry import load_codec

        clip_len = int(getattr(load_codec(model, "cpu", allow_untrained=True).model.config, "clip_len", 4))
        streams.append(nvcodec.encode(_clip(clip_len + 2, 24, 30, 9), codec=codec, model=model, quality=levels - 1))
    return streams


# -- running ---------------------------------------------------------------------------------------


class FuzzTimeout(BaseException):
    """Raised in the main thread when one decode overruns its limit (BaseException: not swallowed)."""


_CLOCKS = {"cpu": (signal.ITIMER_PROF, signal.SIGPROF), "wall": (signal.ITIMER_REAL, signal.SIGALRM)}


@contextlib.contextmanager
def time_limit(seconds: float, clock: str = "cpu") -> Iterator[None]:
    """Raise ``FuzzTimeout`` in the main thread after ``seconds`` of this process's CPU time
    (``clock="cpu"``: immune to a busy machine stretching wall time) or of wall time ("wall")."""
    timer, signum = _CLOCKS[clock]

    def on_expiry(signum, frame):
        raise FuzzTimeout(f"over {seconds} s of {clock} time")

    previous = signal.signal(signum, on_expiry)
    signal.setitimer(timer, seconds)
    try:
        yield
    finally:
        signal.setitimer(timer, 0)
        signal.signal(signum, previous)


def decode_outcome(stream: bytes, rng: random.Random | None = None, timeout: float = 5.0, clock: str = "cpu") -> str:
    """Decode ``stream`` (all frames, or a random range) and name the outcome.

    "decoded", an ``NvcodecError`` subclass name, "timeout", or "other:<ExceptionType>".
    """
    import nvcodec
    from nvcodec.errors import NvcodecError

    frames = None
    if rng is not None and rng.random() < 0.2:
        start = rng.randrange(0, 8)
        frames = slice(start, start + rng.randrange(1, 8))
    try:
        with time_limit(timeout, clock):
            if rng is not None and rng.random() < 0.1:
                nvcodec.info(stream)
            result = nvcodec.decode(stream, frames=frames)
        if result.dtype != np.uint8 or result.ndim != 4 or result.shape[-1] != 3:
            return f"other:bad-result-{result.dtype}-{result.shape}"
        return "decoded"
    except FuzzTimeout:
        return "timeout"
    except NvcodecError as exc:
        return type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - that is what the fuzzer looks for
        return f"other:{type(exc).__name__}"


@dataclass
class FuzzReport:
    codec: str
    model: str
    tried: int = 0
    outcomes: Counter = field(default_factory=Counter)
    by_mutation: dict[str, Counter] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bad(self) -> int:
        return sum(n for kind, n in self.outcomes.items() if kind.startswith("other") or kind == "timeout")

    def lines(self) -> list[str]:
        out = [f"{self.codec} ({self.model}): {self.tried} streams in {self.seconds:.0f} s, {self.bad} bad"]
        for kind, n in sorted(self.outcomes.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"  {kind:<28} {n}")
        out.append("  by mutation (decoded / refused / bad):")
        for mutation, counts in sorted(self.by_mutation.items()):
            decoded = counts.get("decoded", 0)
            bad = sum(n for k, n in counts.items() if k.startswith("other") or k == "timeout")
            out.append(f"    {mutation:<26} {decoded:>6} / {sum(counts.values()) - decoded - bad:>6} / {bad}")
        for failure in self.failures[:20]:
            out.append(f"  saved {failure}")
        return out


class _Watchdog:
    """Ends the process if one decode runs far past its limit (a C call that never lets the
    timer's signal handler run): ``cpu_limit`` seconds of process CPU time, or ``wall_limit`` of wall time."""

    WALL_LIMIT = 600.0

    def __init__(self, cpu_limit: float, on_expire: Callable[[], None], wall_limit: float = WALL_LIMIT) -> None:
        self.cpu_limit = cpu_limit
        self.wall_limit = wall_limit
        self.on_expire = on_expire
        self.started: tuple[float, float] | None = None  # (process CPU time, wall time) at the case's start
        threading.Thread(target=self._watch, daemon=True).start()

    def start(self) -> None:
        self.started = (time.process_time(), time.monotonic())

    def stop(self) -> None:
        self.started = None

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            started = self.started
            if started is None:
                continue
            if time.process_time() - started[0] > self.cpu_limit or time.monotonic() - started[1] > self.wall_limit:
                self.on_expire()
                os._exit(3)


def warm_up_models() -> list[str]:
    """Load every model a mutated header can name, so that loading is never timed as decoding."""
    from nvcodec import registry

    loaded = []
    for spec in registry.list_models():
        if spec.has_weights or not spec.weights_file:
            registry.load_codec(spec.name, "cpu", allow_untrained=not spec.weights_file)
            loaded.append(spec.name)
    return loaded


def fuzz_codec(
    codec: str, count: int, seed: int, timeout: float, crash_dir: Path, prefer_shipped: bool = True,
    log: Callable[[str], None] = print, shard: int = 0, clock: str = "cpu",
) -> FuzzReport:
    model = fuzz_model(codec, prefer_shipped)
    warm_up_models()
    seeds = seed_streams(codec, model)
    for stream in seeds:  # the seeds themselves must decode
        outcome = decode_outcome(stream, timeout=timeout * 4, clock=clock)
        if outcome != "decoded":
            raise SystemExit(f"seed stream of {model} does not decode: {outcome}")
    report = FuzzReport(codec, model)
    rng = random.Random(seed)
    crash_dir.mkdir(parents=True, exist_ok=True)
    current = crash_dir / f"current-{codec}-{shard}.nvc"

    def on_hang() -> None:
        sys.stderr.write(f"fuzz: a decode hung ({timeout * 3} s CPU or {_Watchdog.WALL_LIMIT:.0f} s wall); stream kept at {current}\n")

    watchdog = _Watchdog(timeout * 3, on_hang)
    started = last_log = time.monotonic()
    for index in range(count):
        case_rng = random.Random(rng.getrandbits(64))
        kind, stream = mutate(rng.choice(seeds), case_rng)
        current.write_bytes(stream)  # survives a hard crash (segfault, watchdog) for replay
        watchdog.start()
        outcome = decode_outcome(stream, case_rng, timeout, clock)
        watchdog.stop()
        report.tried += 1
        report.outcomes[outcome] += 1
        report.by_mutation.setdefault(kind, Counter())[outcome] += 1
        if outcome.startswith("other") or outcome == "timeout":
            path = crash_dir / f"{codec}-{shard}-{index:06d}-{outcome.replace(':', '-')}.nvc"
            path.write_bytes(stream)
            report.failures.append(f"{path} ({kind} -> {outcome})")
        if time.monotonic() - last_log > 30:
            last_log = time.monotonic()
            log(f"  {codec}[{shard}]: {index + 1}/{count} streams, {report.bad} bad, {dict(report.outcomes.most_common(4))}")
    current.unlink(missing_ok=True)
    report.seconds = time.monotonic() - started
    return report


def _merge(reports: list[FuzzReport]) -> FuzzReport:
    merged = FuzzReport(reports[0].codec, reports[0].model)
    for report in reports:
        merged.tried += report.tried
        merged.outcomes.update(report.outcomes)
        for mutation, counts in report.by_mutation.items():
            merged.by_mutation.setdefault(mutation, Counter()).update(counts)
        merged.failures += report.failures
        merged.seconds = max(merged.seconds, report.seconds)
    return merged


def _worker(args: tuple) -> FuzzReport:
    codec, count, seed, timeout, crash_dir, prefer_shipped, threads, max_memory_gb, shard, clock = args
    _limit_process(threads, max_memory_gb)
    return fuzz_codec(codec, count, seed, timeout, crash_dir, prefer_shipped,
                      log=lambda line: print(line, flush=True), shard=shard, clock=clock)


def _limit_process(threads: int, max_memory_gb: float) -> None:
    import torch

    torch.set_num_threads(threads)
    faulthandler.enable()
    if max_memory_gb > 0:  # a giant allocation then fails (and is reported) instead of swapping
        cap = int(max_memory_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))


def run_codec(codec: str, count: int, seed: int, timeout: float, crash_dir: Path, prefer_shipped: bool,
              threads: int, max_memory_gb: float, jobs: int, clock: str = "cpu") -> FuzzReport:
    """``count`` streams in ``jobs`` worker processes (seeds ``seed * 1000 + shard``), one merged report."""
    import concurrent.futures
    import multiprocessing

    if jobs <= 1:
        _limit_process(threads, max_memory_gb)
        return fuzz_codec(codec, count, seed, timeout, crash_dir, prefer_shipped, log=lambda line: print(line, flush=True), clock=clock)
    shares = [count // jobs + (shard < count % jobs) for shard in range(jobs)]
    tasks = [(codec, n, seed * 1000 + shard, timeout, crash_dir, prefer_shipped, threads, max_memory_gb, shard, clock)
             for shard, n in enumerate(shares)]
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch state shared by fork
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        try:
            reports = list(pool.map(_worker, tasks))
        except concurrent.futures.process.BrokenProcessPool:
            raise SystemExit(f"a fuzz worker died (crash or hang): see {crash_dir}/current-{codec}-*.nvc") from None
    return _merge(reports)


def _replay(path: Path, timeout: float) -> int:
    import traceback

    import nvcodec

    stream = path.read_bytes()
    warm_up_models()
    try:
        with time_limit(timeout, "cpu"):
            frames = nvcodec.decode(stream)
        print(f"decoded {frames.shape}")
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nvcodec.testing", description=__doc__.split("\n")[0])
    parser.add_argument("--codec", choices=(*CODEC_NAMES, "all"), default="all")
    parser.add_argument("--count", type=int, default=1000, help="mutated streams per codec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per decode (see --clock)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="time-out on this process's CPU time (default: a loaded machine can't fake a hang) or wall time")
    parser.add_argument("--tiny", action="store_true", help="use the tiny test models even if shipped weights exist")
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--max-memory-gb", type=float, default=8.0, help="address-space cap: a giant allocation fails instead of swapping")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (each takes a share of --count)")
    parser.add_argument("--replay", type=Path, default=None, help="decode one saved stream and print its traceback")
    args = parser.parse_args(argv)

    if args.replay is not None:
        _limit_process(args.threads, args.max_memory_gb)
        return _replay(args.replay, args.timeout)
    codecs = CODEC_NAMES if args.codec == "all" else (args.codec,)
    reports = []
    for codec in codecs:
        print(f"fuzzing {codec}: {args.count} streams, seed {args.seed}, timeout {args.timeout} s ({args.clock}), {args.jobs} job(s)", flush=True)
        report = run_codec(codec, args.count, args.seed, args.timeout, args.crash_dir, not args.tiny,
                           args.threads, args.max_memory_gb, args.jobs, args.clock)
        reports.append(report)
        print("\n".join(report.lines()), flush=True)
    total_bad = sum(r.bad for r in reports)
    total = sum(r.tried for r in reports)
    print(f"total: {total} streams, {total_bad} outcomes other than decoded / NvcodecError / in time")
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
