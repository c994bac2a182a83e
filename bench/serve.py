"""``nvcodec bench serve``: random single-frame GETs against ``nvcodec serve``, and the classical way.

For an intra and a hypernerv stream of the same frames, ``clients`` threads (1, 4, 16) each send
their share of ``requests`` random ``GET /v1/videos/{id}/frames/{n}`` over HTTP (httpx, keep-alive)
to a real server (uvicorn, subprocess); frames/s = requests / wall time, latencies per request.
Each level runs twice: with ``--cache-mb 0`` (every request decodes its chunk: ``cold``) and with
the chunk cache warmed by one pass over all frames (``warm``).

The baseline serves the same frames from an H.264 MP4 of the same source (x264, CRF 16, preset
medium, the default GOP), opening it with PyAV, seeking to the keyframe before frame n and decoding
up to n for every request, with the same image encoding of the reply. It runs in-process on a thread
pool with no HTTP in between, which flatters it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from nvcodec.container import CODEC_NAMES
from nvcodec.errors import InputError

__all__ = ["ServeBenchOptions", "ServeLevel", "ServeReport", "run_serve_bench", "write_json", "format_table", "RESULT_FILES"]

RESULT_FILES = ("serve.json",)
DEFAULT_INPUT = Path(__file__).resolve().parents[1] / "nvcodec" / "media" / "demo.mp4"


@dataclass(frozen=True)
class ServeBenchOptions:
    input: Path = DEFAULT_INPUT
    frames: int = 24  # the first N frames of the input
    clients: tuple[int, ...] = (1, 4, 16)
    requests: int = 96  # per (system, cache, clients) level
    image_format: str = "png"
    quality: int | None = None
    workers: int = 1
    decode_threads: int = 2
    seed: int = 0


@dataclass(frozen=True)
class ServeLevel:
    system: str  # "intra", "hypernerv" (nvcodec serve) or "h264-pyav" (the baseline)
    model: str
    cache: str  # "cold" (no chunk cache), "warm" (cache holds every chunk) or "none" (baseline)
    clients: int
    requests: int
    errors: int
    frames_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float


@dataclass(frozen=True)
class ServeReport:
    command: str
    created_utc: str
    machine: str
    cpu_count: int
    input: str
    frames: int
    width: int
    height: int
    image_format: str
    stream_bytes: dict[str, int]
    decode_threads: int
    levels: list[ServeLevel]
    note: str = ""


def _percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q)) if seconds else float("nan")


def _drive(fetch: Callable[[int], bool], indices: Sequence[int], clients: int) -> tuple[float, list[float], int]:
    """Send ``indices`` through ``clients`` threads (round-robin split); -> wall s, latencies, errors."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(share: Sequence[int]) -> None:
        for index in share:
            started = time.perf_counter()
            ok = fetch(index)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors[0] += 0 if ok else 1

    threads = [threading.Thread(target=worker, args=(indices[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, errors[0]


def _level(system: str, model: str, cache: str, clients: int, wall: float, latencies: list[float], errors: int) -> ServeLevel:
    return ServeLevel(
        system=system, model=model, cache=cache, clients=clients, requests=len(latencies), errors=errors,
        frames_per_s=len(latencies) / wall if wall > 0 else float("nan"),
        p50_ms=_percentile_ms(latencies, 50), p99_ms=_percentile_ms(latencies, 99),
        mean_ms=float(np.mean(latencies) * 1000.0) if latencies else float("nan"),
    )


def _http_fetcher(url: str, key: str, video_id: str, image_format: str, clients: int):
    import httpx

    local = threading.local()
    clients_made: list = []

    def fetch(index: int) -> bool:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300)
            clients_made.append(client)
        response = client.get(f"/v1/videos/{video_id}/frames/{index}", params={"format": image_format})
        return response.status_code == 200 and len(response.content) > 0

    def close() -> None:
        for client in clients_made:
            client.close()

    return fetch, close


def _wait_ready(url: str, key: str, video_id: str, timeout_s: float = 1800) -> dict:
    import httpx

    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        while time.monotonic() < deadline:
            record = client.get(f"/v1/videos/{video_id}").json()
            if record["status"] == "ready":
                return record
            if record["status"] == "failed":
                raise InputError(f"bench serve: the encode of {video_id} failed: {record['error']}")
            time.sleep(0.2)
    raise InputError(f"bench serve: video {video_id} not ready after {timeout_s:.0f} s")


def _baseline_fetcher(mp4: Path, image_format: str):
    from nvcodec import io
    from nvcodec.serve.frames import encode_image

    def fetch(index: int) -> bool:
        frame = next(io.iter_frames(mp4, index, index + 1))
        return len(encode_image(frame, image_format)) > 0

    return fetch


def run_serve_bench(options: ServeBenchOptions, log: Callable[[str], None], command: str) -> ServeReport:
    import httpx

    from nvcodec import io
    from nvcodec.serve.catalogue import Catalogue
    from nvcodec.serve.config import DataLayout
    from nvcodec.serve.process import ServerProcess

    if options.frames < 1 or options.requests < 1 or not options.clients or min(options.clients) < 1:
        raise InputError("bench serve: --frames, --requests and every --clients value must be >= 1")
    if options.image_format not in ("png", "jpeg", "npy"):
        raise InputError(f"bench serve: --format {options.image_format!r}: use png, jpeg or npy")
    source = io.read_video(options.input, 0, options.frames)
    frames = source.num_frames
    rng = random.Random(options.seed)
    indices = [rng.randrange(frames) for _ in range(options.requests)]
    levels: list[ServeLevel] = []
    stream_bytes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="nvcodec-bench-serve-") as tmp:
        root = Path(tmp)
        source_path = root / "source.mkv"  # lossless: both systems start from the same frames
        io.write_video(source_path, source.frames, source.fps)
        mp4 = root / "baseline.mp4"
        io.write_video(mp4, source.frames, source.fps)
        stream_bytes["h264-pyav"] = mp4.stat().st_size
        layout = DataLayout(root / "data")
        layout.create()
        key = Catalogue(layout.catalogue).add_key("bench")
        common = ("--workers", str(options.workers), "--decode-threads", str(options.decode_threads), "--log-level", "warning")
        ids: dict[str, tuple[str, str]] = {}
        for cache, cache_mb in (("cold", "0"), ("warm", "1024")):
            server = ServerProcess(layout.root, (*common, "--cache-mb", cache_mb), log=root / "serve.log")
            server.start()
            try:
                if not ids:
                    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
                        for codec in CODEC_NAMES:
                            params = {"codec": codec} | ({"quality": options.quality} if options.quality is not None else {})
                            response = client.post("/v1/videos", params=params, content=source_path.read_bytes())
                            if response.status_code != 202:
                                raise InputError(f"bench serve: upload refused: {response.text}")
                            ids[codec] = (response.json()["id"], "")
                        for codec, (video_id, _) in ids.items():
                            log(f"encoding {codec} ({frames} frames {source.width}x{source.height}) in the server")
                            record = _wait_ready(server.url, key, video_id)
                            ids[codec] = (video_id, record["model"])
                            stream_bytes[codec] = record["stream"]["total_bytes"]
                for codec, (video_id, model) in ids.items():
                    fetch, close = _http_fetcher(server.url, key, video_id, options.image_format, max(options.clients))
                    try:
                        _drive(fetch, list(range(frames)), 1)  # warm-up: models loaded; warm: every chunk cached
                        for clients in options.clients:
                            wall, latencies, errors = _drive(fetch, indices, clients)
                            levels.append(_level(codec, model, cache, clients, wall, latencies, errors))
                            log(_row(levels[-1]))
                    finally:
                        close()
            finally:
                server.stop()
        fetch = _baseline_fetcher(mp4, options.image_format)
        _drive(fetch, list(range(min(frames, 4))), 1)
        for clients in options.clients:
            wall, latencies, errors = _drive(fetch, indices, clients)
            levels.append(_level("h264-pyav", "libx264 crf16 medium", "none", clients, wall, latencies, errors))
            log(_row(levels[-1]))
    return ServeReport(
        command=command,
        created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        machine=platform.platform(),
        cpu_count=os.cpu_count() or 0,
        input=str(options.input),
        frames=frames,
        width=source.width,
        height=source.height,
        image_format=options.image_format,
        stream_bytes=stream_bytes,
        decode_threads=options.decode_threads,
        levels=levels,
        note="h264-pyav runs in-process without HTTP (flatters it); cold = --cache-mb 0, warm = every chunk cached",
    )


def _row(level: ServeLevel) -> str:
    return (
        f"{level.system:<10} {level.cache:<5} {level.clients:>3} clients  {level.frames_per_s:8.1f} frames/s  "
        f"p50 {level.p50_ms:8.1f} ms  p99 {level.p99_ms:8.1f} ms  errors {level.errors}"
    )


def format_table(report: ServeReport) -> str:
    lines = [f"bench serve: {report.frames} frames {report.width}x{report.height}, {report.image_format}, {report.machine}, {report.cpu_count} CPU(s)"]
    lines += [_row(level) for level in report.levels]
    return "\n".join(lines) + "\n"


def write_json(report: ServeReport, out_dir: str | os.PathLike) -> Path:
    from nvcodec import io
    from nvcodec.bench.results import _nan_to_none  # the package's one NaN -> null rule

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULT_FILES[0]
    with io.atomic_output(path, force=True) as tmp:
        tmp.write_text(json.dumps(_nan_to_none(dataclasses.asdict(report)), indent=1, allow_nan=False) + "\n")
    return path
