"""Parts of ``nvcodec serve`` without a server: chunk cache, byte ranges, catalogue, job states."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest

from nvcodec.errors import InputError
from nvcodec.serve.cache import ChunkCache
from nvcodec.serve.catalogue import Catalogue, hash_key


def test_concurrent_misses_on_one_chunk_compute_it_once() -> None:
    cache = ChunkCache(1 << 20)
    calls = []
    release = threading.Event()

    def decode() -> np.ndarray:
        calls.append(1)
        release.wait(10)  # every other thread asks while this one is still decoding
        return np.ones((2, 4, 4, 3), np.uint8)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(("v", 0), decode))) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while cache.stats().hits < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1 and len(results) == 8
    assert all(r is results[0] for r in results)
    stats = cache.stats()
    assert (stats.misses, stats.hits, stats.entries) == (1, 7, 1)
    with pytest.raises(ValueError):
        results[0][0, 0, 0, 0] = 5  # shared between requests: read-only


def test_cache_stays_within_its_byte_bound_lru_first() -> None:
    block = np.zeros((1, 10, 10, 3), np.uint8)  # 300 bytes
    cache = ChunkCache(1000)
    for index in range(3):
        cache.get(("v", index), block.copy)
    cache.get(("v", 0), block.copy)  # 0 becomes the most recent
    cache.get(("v", 3), block.copy)  # evicts 1, the least recent
    stats = cache.stats()
    assert stats.bytes == 900 and stats.entries == 3 and stats.evictions == 1
    cache.get(("v", 1), block.copy)
    assert cache.stats().misses == 5  # 1 was decoded again, 0 was not
    cache.get(("big", 0), lambda: np.zeros(2000, np.uint8))  # larger than the bound: served, not kept
    assert cache.stats().bytes <= 1000
    cache.drop(lambda key: key[0] == "v")
    assert cache.stats().bytes == 0


def test_a_failed_decode_is_raised_to_every_waiter_and_not_cached() -> None:
    cache = ChunkCache(1 << 20)

    def broken() -> np.ndarray:
        raise InputError("damaged")

    with pytest.raises(InputError):
        cache.get(("v", 0), broken)
    assert cache.get(("v", 0), lambda: np.zeros(3, np.uint8)).shape == (3,)


@pytest.mark.parametrize(
    "header,expected",
    [("bytes=0-9", (0, 10)), ("bytes=90-", (90, 100)), ("bytes=-5", (95, 100)), ("bytes=50-500", (50, 100)),
     ("bytes=-500", (0, 100)), ("BYTES = 1-1", (1, 2))],
)
def test_byte_ranges(header: str, expected: tuple[int, int]) -> None:
    from nvcodec.serve.routers.videos import parse_byte_range

    assert parse_byte_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-2", "bytes=-0", "bytes=0-1,5-6", "items=0-1", "bytes=a-b", "bytes=-", "bytes=٣-"])
def test_bad_byte_ranges_are_416(header: str) -> None:
    from fastapi import HTTPException

    from nvcodec.serve.routers.videos import parse_byte_range

    with pytest.raises(HTTPException) as raised:
        parse_byte_range(header, 100)
    assert raised.value.status_code == 416 and raised.value.headers["Content-Range"] == "bytes */100"


def test_keys_are_stored_as_hashes_only(tmp_path) -> None:
    catalogue = Catalogue(tmp_path / "c.sqlite3")
    key = catalogue.add_key("alice")
    assert catalogue.key_for(key).name == "alice"
    assert catalogue.key_for(key + "x") is None
    with pytest.raises(InputError, match="exists"):
        catalogue.add_key("alice")
    with pytest.raises(InputError, match="bad key name"):
        catalogue.add_key("../alice")
    catalogue.revoke_key("alice")
    assert catalogue.key_for(key) is None
    catalogue.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert key.encode() not in raw and hash_key(key).encode() in raw
    with sqlite3.connect(tmp_path / "c.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _video(catalogue: Catalogue, key_id: int, video_id: str, run_id: str) -> None:
    catalogue.add_video(
        video_id=video_id, key_id=key_id, codec="intra", model="intra-small", quality=None, frame_start=0,
        frame_stop=None, source_format="mp4", source_bytes=10, run_id=run_id,
    )


def test_restart_fails_interrupted_encodes_and_adopts_queued_jobs(tmp_path) -> None:
    catalogue = Catalogue(tmp_path / "c.sqlite3")
    catalogue.add_key("alice")
    key_id = catalogue.list_keys()[0].id
    for video_id in ("a" * 32, "b" * 32, "c" * 32):
        _video(catalogue, key_id, video_id, "run1")
    assert catalogue.start_job("a" * 32, "run1", 123)
    with catalogue.finishing("c" * 32, "run1") as live:
        assert not live  # queued, not encoding: nothing to publish
    requeued = catalogue.adopt_queued("run2")
    assert [r.id for r in requeued] == ["b" * 32, "c" * 32] and all(r.run_id == "run2" for r in requeued)
    interrupted = catalogue.video("a" * 32)
    assert interrupted.status == "failed" and "interrupted" in interrupted.error
    # A worker of the dead run can neither report progress nor publish nor start the adopted jobs.
    assert not catalogue.set_progress("a" * 32, "run1", 0.5)
    assert not catalogue.start_job("b" * 32, "run1", 456)
    assert catalogue.start_job("b" * 32, "run2", 456)
    assert catalogue.set_progress("b" * 32, "run2", 0.5)
    assert catalogue.delete_video("b" * 32, key_id)
    assert not catalogue.set_progress("b" * 32, "run2", 0.6)  # deleted: the worker stops
    assert catalogue.video("b" * 32) is None
    assert not catalogue.delete_video("c" * 32, key_id + 1)  # another key's video


def test_config_refuses_bad_limits() -> None:
    from nvcodec.serve.config import ServeConfig, parse_models

    with pytest.raises(InputError, match="--workers"):
        ServeConfig(data=".", workers=0)
    with pytest.raises(InputError, match="--models"):
        ServeConfig(data=".", models={"h264": "x"})
    assert parse_models("intra=intra-tiny, hypernerv=hypernerv-tiny") == {"intra": "intra-tiny", "hypernerv": "hypernerv-tiny"}
    with pytest.raises(InputError):
        parse_models("intra")
