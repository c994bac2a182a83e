"""An LRU cache of decoded chunks bounded in bytes, where concurrent misses on one key compute it once.

The first thread to miss a key computes it outside the cache lock; threads that ask for the same key
meanwhile wait for that result instead of decoding again. Different keys compute in parallel.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

__all__ = ["ChunkCache", "CacheStats"]


@dataclass(frozen=True)
class CacheStats:
    bytes: int
    limit_bytes: int
    entries: int
    hits: int
    misses: int  # computations started (= chunk decodes)
    evictions: int


class ChunkCache:
    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._pending: dict[Hashable, Future] = {}
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0

    def get(self, key: Hashable, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array for ``key``, else ``compute()`` once (other callers wait for it)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self._hits += 1
                return self._entries[key]
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = Future()
                self._misses += 1
                owner = True
            else:
                self._hits += 1
                owner = False
        if not owner:
            return pending.result()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            pending.set_exception(exc)
            raise
        value.setflags(write=False)  # shared between requests: nobody may modify it
        with self._lock:
            del self._pending[key]
            self._insert(key, value)
        pending.set_result(value)
        return value

    def _insert(self, key: Hashable, value: np.ndarray) -> None:
        if value.nbytes > self.limit_bytes:
            return  # larger than the whole cache: served, not kept
        while self._entries and self._bytes + value.nbytes > self.limit_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes
            self._evictions += 1
        self._entries[key] = value
        self._bytes += value.nbytes

    def drop(self, predicate: Callable[[Hashable], bool]) -> None:
        """Forget every entry whose key matches (a deleted video)."""
        with self._lock:
            for key in [k for k in self._entries if predicate(k)]:
                self._bytes -= self._entries.pop(key).nbytes

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._bytes, self.limit_bytes, len(self._entries), self._hits, self._misses, self._evictions)
