"""The bounded encode pool: ``workers`` spawned processes, at most ``queue_limit`` jobs waiting.

Uploads reserve a slot before their body is read (``reserve``), so a full queue answers 503 at once.
A worker that dies (killed, out of memory) breaks a ``ProcessPoolExecutor``: the pool is replaced,
the job it ran is failed with the reason, and jobs still queued are submitted to the new pool.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from nvcodec.serve.catalogue import Catalogue
from nvcodec.serve.worker import EncodeJob, load_models, run_encode

__all__ = ["EncodePool"]


class EncodePool:
    def __init__(self, catalogue: Catalogue, workers: int, queue_limit: int, models: tuple[str, ...] = ()) -> None:
        self.catalogue = catalogue
        self.models = models
        self.workers = workers
        self.capacity = workers + queue_limit
        self._lock = threading.Lock()
        self._reserved = 0  # uploads in progress that hold a slot
        self._active: dict[str, EncodeJob] = {}  # submitted, not finished
        self._resubmitted: set[str] = set()  # jobs already moved to a fresh pool once
        self._executor = self._new_executor()
        self._closed = False

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn: a fresh interpreter per worker (no forked torch or event-loop state); each loads
        # the models as it starts, so the first upload does not wait for torch's import.
        return ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=load_models, initargs=(self.models,)
        )

    def start(self) -> None:
        """Start the worker processes now, so they load the models before the first upload arrives."""
        with self._lock:
            executor = self._executor
        for _ in range(self.workers):
            executor.submit(int)  # a no-op: each submit made while no worker is idle spawns one

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._active) + self._reserved

    def reserve(self) -> bool:
        """Take a slot for an upload about to be queued; False when the queue is full."""
        with self._lock:
            if self._closed or len(self._active) + self._reserved >= self.capacity:
                return False
            self._reserved += 1
            return True

    def release(self) -> None:
        """Give back a reserved slot (the upload was refused)."""
        with self._lock:
            self._reserved -= 1

    def submit(self, job: EncodeJob, reserved: bool = True) -> None:
        """Queue ``job``; with ``reserved`` it uses the slot ``reserve`` took (start-up re-queues don't)."""
        with self._lock:
            if reserved:
                self._reserved -= 1
            self._active[job.video_id] = job
            executor = self._executor
        self._submit_to(executor, job)

    def _submit_to(self, executor: ProcessPoolExecutor, job: EncodeJob) -> None:
        try:
            future = executor.submit(run_encode, job)
        except (BrokenProcessPool, RuntimeError):
            self._on_broken(executor, job)
            return
        future.add_done_callback(lambda done: self._finished(executor, job, done))

    def _finished(self, executor: ProcessPoolExecutor, job: EncodeJob, future: Future) -> None:
        error = future.exception() if not future.cancelled() else None
        if isinstance(error, BrokenProcessPool):
            self._on_broken(executor, job)
            return
        if error is not None:
            self._fail(job, f"internal error: {type(error).__name__}: {error}")
        # A future cancelled at shutdown leaves its job queued: the next start re-queues it.
        with self._lock:
            self._active.pop(job.video_id, None)

    def _on_broken(self, executor: ProcessPoolExecutor, job: EncodeJob) -> None:
        """A worker died: fail the job it was running, resubmit one that never started."""
        with self._lock:
            if self._closed:
                self._active.pop(job.video_id, None)
                return
            if self._executor is executor:
                self._executor = self._new_executor()
            replacement = self._executor
        record = self.catalogue.video(job.video_id)
        if record is not None and record.status == "queued" and job.video_id not in self._resubmitted:
            self._resubmitted.add(job.video_id)  # once: a job whose worker keeps dying is failed
            self._submit_to(replacement, job)
            return
        self._fail(job, "the encode worker process died (killed or out of memory)")
        with self._lock:
            self._active.pop(job.video_id, None)

    def _fail(self, job: EncodeJob, reason: str) -> None:
        self.catalogue.fail_job(job.video_id, reason, job.run_id)
        job.upload.unlink(missing_ok=True)
        job.pending.unlink(missing_ok=True)

    def shutdown(self) -> None:
        """Stop: queued jobs stay queued (the next start runs them), running encodes are failed.

        Workers are terminated rather than waited for: an encode can take minutes.
        """
        with self._lock:
            self._closed = True
            executor = self._executor
            running = list(self._active.values())
        processes = list((getattr(executor, "_processes", None) or {}).values())  # no public way before Python 3.14
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for job in running:
            record = self.catalogue.video(job.video_id)
            if record is not None and record.status == "encoding" and record.run_id == job.run_id:
                self._fail(job, "the server was stopped during this encode; upload the video again")
