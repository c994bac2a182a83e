"""Encode jobs: run in worker processes (spawned), report progress into the catalogue, publish atomically.

A job's stream is encoded by ``nvcodec.encode_file`` into a pending name in ``DIR/tmp`` (itself written
through ``io.atomic_output``), then renamed to ``DIR/streams/ID.nvc`` inside the catalogue transaction
that marks the job ``ready``. So ``streams/`` never holds a partial stream, and a job that was
deleted, or failed by a restart while an orphaned worker still ran it, is never published.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from nvcodec.errors import InputError, NvcodecError
from nvcodec.serve.catalogue import Catalogue

__all__ = ["EncodeJob", "run_encode", "JobCancelled", "load_models"]

_PROGRESS_EVERY_S = 0.25


@dataclass(frozen=True)
class EncodeJob:
    """Everything a worker needs, picklable: paths, the codec choice and the run that queued it."""

    catalogue: Path
    video_id: str
    run_id: str
    server_pid: int  # a worker orphaned by a killed server must not start jobs left in its queue
    upload: Path
    pending: Path  # DIR/tmp/ID.nvc: the finished stream before it is published
    stream: Path  # DIR/streams/ID.nvc
    codec: str
    model: str
    quality: int | None
    frame_start: int
    frame_stop: int | None
    max_frames: int


class JobCancelled(Exception):
    """The job was deleted, or taken over by a restart, while it ran; or the server died."""


class _Reporter:
    """Progress callbacks for ``encode_file``: frames done / frames loaded, written at most every 0.25 s."""

    def __init__(self, catalogue: Catalogue, job: EncodeJob) -> None:
        self.catalogue, self.job = catalogue, job
        self.total = 0
        self.done = 0
        self.last_write = 0.0

    def loaded(self, frames: int) -> None:
        if frames > self.job.max_frames:
            raise InputError(f"the input has more than --max-frames {self.job.max_frames} frames; upload with frames=A:B")
        self.total = frames
        self._write(force=True)

    def advance(self, frames: int) -> None:
        self.done += frames
        self._write(force=False)

    def _write(self, force: bool) -> None:
        if os.getppid() != self.job.server_pid:
            raise JobCancelled("the server stopped")
        now = time.monotonic()
        if not force and now - self.last_write < _PROGRESS_EVERY_S:
            return
        self.last_write = now
        progress = self.done / self.total if self.total else 0.0
        if not self.catalogue.set_progress(self.job.video_id, self.job.run_id, 0.99 * progress):
            raise JobCancelled("the job was deleted")


def load_models(models: tuple[str, ...]) -> None:
    """Import torch and load ``models`` ahead of the first job (a spawned process starts bare)."""
    import warnings

    from nvcodec import registry

    # compressai's import-time torch.jit warnings would land in the server's log once per worker.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch")
    for name in models:
        try:
            registry.load_codec(name, "cpu", allow_untrained=not registry.get_spec(name).weights_file)
        except Exception:  # noqa: BLE001 - a failed warm-up must not break the pool: the jobs report the reason
            continue


def run_encode(job: EncodeJob) -> str:
    """Run one job to ``ready`` or ``failed``; returns the final state (or ``cancelled``)."""
    if os.getppid() != job.server_pid:
        return "cancelled"  # the server died: its restart fails or re-queues this job
    catalogue = Catalogue(job.catalogue, create=False)
    try:
        if not catalogue.start_job(job.video_id, job.run_id, os.getpid()):
            return "cancelled"  # deleted meanwhile, or re-queued by a newer run: not ours to touch
        return _encode_and_publish(catalogue, job)
    finally:
        catalogue.close()


def _encode_and_publish(catalogue: Catalogue, job: EncodeJob) -> str:
    """The job is ``encoding`` and ours: encode, then publish or fail; the upload is removed either way."""
    from nvcodec import api

    reporter = _Reporter(catalogue, job)
    stop = job.frame_start + job.max_frames + 1  # one more than allowed: `loaded` refuses it
    if job.frame_stop is not None:
        stop = min(stop, job.frame_stop)
    try:
        job.pending.unlink(missing_ok=True)
        try:
            report = api.encode_file(
                job.upload, job.pending, codec=job.codec, quality=job.quality, model=job.model,
                frames=slice(job.frame_start, stop), progress=reporter.advance, on_loaded=reporter.loaded,
            )
        except JobCancelled:
            return "cancelled"
        except NvcodecError as exc:
            catalogue.fail_job(job.video_id, str(exc), job.run_id)
            return "failed"
        except Exception as exc:  # noqa: BLE001 - reported to the uploader as one line, never a traceback
            catalogue.fail_job(job.video_id, f"internal error: {type(exc).__name__}: {exc}", job.run_id)
            return "failed"
        with catalogue.finishing(job.video_id, job.run_id) as live:
            if not live:
                return "cancelled"
            os.replace(job.pending, job.stream)
            psnr = report.psnr_rgb if report.psnr_rgb == report.psnr_rgb else None  # NaN when unknown
            catalogue.mark_ready_locked(job.video_id, report.bytes, psnr)
        return "ready"
    finally:
        job.pending.unlink(missing_ok=True)
        job.upload.unlink(missing_ok=True)
