"""The service's catalogue: API keys (as sha256 hashes), videos and their encode jobs, in SQLite (WAL).

Stdlib only (no torch, no FastAPI): ``nvcodec keys`` and the encode workers use it as well as the
server. Every process and thread opens its own connection; WAL lets readers run beside the one
writer, and ``BEGIN IMMEDIATE`` makes each state change one transaction, so a process killed at any
point leaves a consistent catalogue.

Job states: ``queued`` -> ``encoding`` -> ``ready`` | ``failed``. A job records the server run that
queued it: a worker left over from a killed server cannot finish a job that a restart has failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nvcodec.errors import InputError

__all__ = [
    "CATALOGUE_NAME",
    "Catalogue",
    "KeyRecord",
    "VideoRecord",
    "JOB_STATES",
    "hash_key",
    "new_key",
]

CATALOGUE_NAME = "catalogue.sqlite3"
JOB_STATES = ("queued", "encoding", "ready", "failed")
KEY_PREFIX = "nvk_"
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    key_hash    TEXT NOT NULL UNIQUE,      -- sha256 hex of the key; the key itself is never stored
    created_at  REAL NOT NULL,
    revoked_at  REAL                       -- NULL while the key is valid
);
CREATE TABLE IF NOT EXISTS videos (
    id            TEXT PRIMARY KEY,        -- random, unguessable
    key_id        INTEGER NOT NULL REFERENCES keys(id),
    codec         TEXT NOT NULL,
    model         TEXT NOT NULL,
    quality       INTEGER,                 -- NULL: the model's middle level
    frame_start   INTEGER NOT NULL,
    frame_stop    INTEGER,                 -- NULL: to the end of the source
    source_format TEXT NOT NULL,           -- what the input policy detected
    source_bytes  INTEGER NOT NULL,
    created_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS videos_by_key ON videos(key_id, created_at);
CREATE TABLE IF NOT EXISTS jobs (
    video_id     TEXT PRIMARY KEY REFERENCES videos(id) ON DELETE CASCADE,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'encoding', 'ready', 'failed')),
    progress     REAL NOT NULL DEFAULT 0,  -- 0..1
    error        TEXT,                     -- one line, when failed
    run_id       TEXT NOT NULL,            -- the server run that queued the job
    worker_pid   INTEGER,
    started_at   REAL,
    finished_at  REAL,
    stream_bytes INTEGER,
    psnr_rgb     REAL                      -- the encoder's reconstruction against the source
);
"""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class VideoRecord:
    """A video and its encode job, as one row of ``videos JOIN jobs``."""

    id: str
    key_id: int
    codec: str
    model: str
    quality: int | None
    frame_start: int
    frame_stop: int | None
    source_format: str
    source_bytes: int
    created_at: float
    status: str
    progress: float
    error: str | None
    run_id: str
    stream_bytes: int | None
    psnr_rgb: float | None


_VIDEO_COLUMNS = (
    "v.id, v.key_id, v.codec, v.model, v.quality, v.frame_start, v.frame_stop, v.source_format, "
    "v.source_bytes, v.created_at, j.status, j.progress, j.error, j.run_id, j.stream_bytes, j.psnr_rgb"
)


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Catalogue:
    """The SQLite catalogue at ``DIR/catalogue.sqlite3``; safe to share between threads of one process."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise InputError(f"no catalogue at {self.path} (start `nvcodec serve --data DIR` or add a key first)")
        if create and not self.path.parent.is_dir():
            raise InputError(f"data folder {self.path.parent} does not exist")
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)

    @classmethod
    def in_dir(cls, data_dir: str | Path, create: bool = True) -> Catalogue:
        return cls(Path(data_dir) / CATALOGUE_NAME, create=create)

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
            db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: taken before reading what it decides on, so decisions can't race."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- keys --------------------------------------------------------------------------------

    def add_key(self, name: str) -> str:
        """Create a key named ``name``; returns the key (shown once: only its hash is stored)."""
        if not _KEY_NAME.match(name):
            raise InputError(f"bad key name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        key = new_key()
        with self._write() as db:
            if db.execute("SELECT 1 FROM keys WHERE name = ?", (name,)).fetchone():
                raise InputError(f"a key named {name!r} exists already (names are never reused, even after revoke)")
            db.execute("INSERT INTO keys (name, key_hash, created_at) VALUES (?, ?, ?)", (name, hash_key(key), time.time()))
        return key

    def list_keys(self) -> list[KeyRecord]:
        rows = self._connection().execute("SELECT id, name, created_at, revoked_at FROM keys ORDER BY id").fetchall()
        return [KeyRecord(*row) for row in rows]

    def revoke_key(self, name: str) -> None:
        with self._write() as db:
            row = db.execute("SELECT revoked_at FROM keys WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise InputError(f"no key named {name!r}")
            if row[0] is not None:
                raise InputError(f"key {name!r} is already revoked")
            db.execute("UPDATE keys SET revoked_at = ? WHERE name = ?", (time.time(), name))

    def key_for(self, key: str) -> KeyRecord | None:
        """The valid (not revoked) key record whose hash matches ``key``, else None."""
        row = self._connection().execute(
            "SELECT id, name, created_at, revoked_at FROM keys WHERE key_hash = ? AND revoked_at IS NULL", (hash_key(key),)
        ).fetchone()
        return KeyRecord(*row) if row else None

    # -- videos and jobs ---------------------------------------------------------------------

    def add_video(
        self, *, video_id: str, key_id: int, codec: str, model: str, quality: int | None, frame_start: int,
        frame_stop: int | None, source_format: str, source_bytes: int, run_id: str,
    ) -> None:
        """Register an uploaded video with its job in state ``queued``."""
        with self._write() as db:
            db.execute(
                "INSERT INTO videos (id, key_id, codec, model, quality, frame_start, frame_stop, source_format, "
                "source_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (video_id, key_id, codec, model, quality, frame_start, frame_stop, source_format, source_bytes, time.time()),
            )
            db.execute("INSERT INTO jobs (video_id, status, run_id) VALUES (?, 'queued', ?)", (video_id, run_id))

    def video(self, video_id: str, key_id: int | None = None) -> VideoRecord | None:
        """The video, or None if it does not exist or (with ``key_id``) belongs to another key."""
        query = f"SELECT {_VIDEO_COLUMNS} FROM videos v JOIN jobs j ON j.video_id = v.id WHERE v.id = ?"
        args: tuple = (video_id,)
        if key_id is not None:
            query += " AND v.key_id = ?"
            args += (key_id,)
        row = self._connection().execute(query, args).fetchone()
        return VideoRecord(*row) if row else None

    def videos(self, key_id: int) -> list[VideoRecord]:
        rows = self._connection().execute(
            f"SELECT {_VIDEO_COLUMNS} FROM videos v JOIN jobs j ON j.video_id = v.id WHERE v.key_id = ? "
            "ORDER BY v.created_at, v.id",
            (key_id,),
        ).fetchall()
        return [VideoRecord(*row) for row in rows]

    def all_video_ids(self) -> set[str]:
        return {row[0] for row in self._connection().execute("SELECT id FROM videos").fetchall()}

    def delete_video(self, video_id: str, key_id: int) -> bool:
        """Remove the video and its job (a running encode notices and stops); False if not this key's."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM videos WHERE id = ? AND key_id = ?", (video_id, key_id))
            return cursor.rowcount == 1

    def jobs_in_state(self, status: str) -> list[VideoRecord]:
        rows = self._connection().execute(
            f"SELECT {_VIDEO_COLUMNS} FROM videos v JOIN jobs j ON j.video_id = v.id WHERE j.status = ? "
            "ORDER BY v.created_at, v.id",
            (status,),
        ).fetchall()
        return [VideoRecord(*row) for row in rows]

    def start_job(self, video_id: str, run_id: str, worker_pid: int) -> bool:
        """``queued`` -> ``encoding`` if the job is still this run's and queued (not deleted, not failed)."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'encoding', progress = 0, worker_pid = ?, started_at = ? "
                "WHERE video_id = ? AND run_id = ? AND status = 'queued'",
                (worker_pid, time.time(), video_id, run_id),
            )
            return cursor.rowcount == 1

    def set_progress(self, video_id: str, run_id: str, progress: float) -> bool:
        """Record progress of a running encode; False if the job is gone or no longer this run's."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET progress = ? WHERE video_id = ? AND run_id = ? AND status = 'encoding'",
                (min(max(progress, 0.0), 1.0), video_id, run_id),
            )
            return cursor.rowcount == 1

    @contextlib.contextmanager
    def finishing(self, video_id: str, run_id: str) -> Iterator[bool]:
        """Hold the write lock while the caller publishes the stream; yields whether the job is still live.

        Publishing (the rename into place) happens inside the transaction, so a concurrent delete or
        a restart's recovery either sees the stream in place or the job already gone.
        """
        with self._write() as db:
            row = db.execute(
                "SELECT 1 FROM jobs WHERE video_id = ? AND run_id = ? AND status = 'encoding'", (video_id, run_id)
            ).fetchone()
            yield row is not None

    def mark_ready_locked(self, video_id: str, stream_bytes: int, psnr_rgb: float | None) -> None:
        """Inside ``finishing``: the stream is in place."""
        self._connection().execute(
            "UPDATE jobs SET status = 'ready', progress = 1, finished_at = ?, stream_bytes = ?, psnr_rgb = ?, error = NULL "
            "WHERE video_id = ?",
            (time.time(), stream_bytes, psnr_rgb, video_id),
        )

    def fail_job(self, video_id: str, error: str, run_id: str | None = None) -> bool:
        """Mark a queued or encoding job failed with a one-line reason (only ``run_id``'s, when given)."""
        query = "UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE video_id = ? AND status IN ('queued', 'encoding')"
        args: tuple = (_one_line(error), time.time(), video_id)
        if run_id is not None:
            query += " AND run_id = ?"
            args += (run_id,)
        with self._write() as db:
            return db.execute(query, args).rowcount == 1

    def adopt_queued(self, run_id: str) -> list[VideoRecord]:
        """At start-up: fail the jobs a dead server left ``encoding``; hand its ``queued`` jobs to ``run_id``.

        Returns the re-queued jobs (now this run's), oldest first.
        """
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET status = 'failed', finished_at = ?, error = ? WHERE status = 'encoding' AND run_id != ?",
                (time.time(), "interrupted: the server stopped during this encode; upload the video again", run_id),
            )
            db.execute("UPDATE jobs SET run_id = ? WHERE status = 'queued'", (run_id,))
        return self.jobs_in_state("queued")
