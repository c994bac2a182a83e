"""The running service: catalogue, encode pool, frame store and decode threads for one ``--data DIR``.

Start-up recovers from whatever a killed server left: jobs left ``encoding`` are failed with the
reason, queued jobs are queued again, and stray temporary, pending or unpublished files are removed.
An exclusive lock on ``DIR/serve.lock`` keeps a second server off the same folder (the kernel
releases it when the process dies, even by SIGKILL).
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nvcodec.errors import InputError
from nvcodec.serve.cache import ChunkCache
from nvcodec.serve.catalogue import Catalogue, VideoRecord
from nvcodec.serve.config import CODECS, ServeConfig
from nvcodec.serve.frames import FrameStore
from nvcodec.serve.jobs import EncodePool
from nvcodec.serve.worker import EncodeJob, load_models

__all__ = ["Service"]

_VIDEO_ID = re.compile(r"^[0-9a-f]{32}$")


def new_video_id() -> str:
    return uuid.uuid4().hex


def is_video_id(text: str) -> bool:
    return bool(_VIDEO_ID.match(text))


class Service:
    def __init__(self, config: ServeConfig) -> None:
        from nvcodec import registry

        self.config = config
        self.layout = config.layout
        for codec in CODECS:
            spec = registry.get_spec(config.model_for(codec))
            if spec.codec != codec:
                raise InputError(f"--models: {spec.name!r} is a {spec.codec} model, not {codec}")
        self.layout.create()
        self._lock_file = open(self.layout.root / "serve.lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise InputError(f"another nvcodec serve is using --data {self.layout.root}") from None
        self.run_id = uuid.uuid4().hex
        self.catalogue = Catalogue(self.layout.catalogue)
        self.frames = FrameStore(ChunkCache(config.cache_bytes), self.layout.tmp)
        self.decode_pool = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="nvcodec-decode")
        models = tuple(config.model_for(codec) for codec in CODECS)
        self.pool = EncodePool(self.catalogue, config.workers, config.queue_limit, models)
        self._recover()
        self.pool.start()
        # Load the models now, so the first frame request need not wait for torch's import; a daemon
        # thread, so that stopping the server does not wait for an import to finish.
        threading.Thread(target=load_models, args=(models,), name="nvcodec-warm-up", daemon=True).start()

    def job_for(self, record: VideoRecord, upload: Path) -> EncodeJob:
        return EncodeJob(
            catalogue=self.layout.catalogue,
            video_id=record.id,
            run_id=self.run_id,
            server_pid=os.getpid(),
            upload=upload,
            pending=self.layout.tmp / f"{record.id}.nvc",
            stream=self.layout.stream(record.id),
            codec=record.codec,
            model=record.model,
            quality=record.quality,
            frame_start=record.frame_start,
            frame_stop=record.frame_stop,
            max_frames=self.config.max_frames,
        )

    def _recover(self) -> None:
        for path in self.layout.tmp.iterdir():  # partial uploads, pending streams, range files
            path.unlink()
        requeued = self.catalogue.adopt_queued(self.run_id)
        ready = {r.id for r in self.catalogue.jobs_in_state("ready")}
        for path in self.layout.streams.iterdir():
            # Only published streams of ready videos stay; anything else was never served.
            if not (path.suffix == ".nvc" and path.stem in ready):
                path.unlink()
        requeued_ids = {r.id for r in requeued}
        queued_uploads = {}
        for path in self.layout.uploads.iterdir():
            if path.stem in requeued_ids:
                queued_uploads[path.stem] = path
            else:
                path.unlink()
        for record in requeued:
            upload = queued_uploads.get(record.id)
            if upload is None:
                self.catalogue.fail_job(record.id, "the uploaded file was lost before the encode started", self.run_id)
                continue
            self.pool.submit(self.job_for(record, upload), reserved=False)

    def delete_files(self, video_id: str) -> None:
        self.frames.forget(video_id)
        self.layout.stream(video_id).unlink(missing_ok=True)
        for path in self.layout.uploads.glob(f"{video_id}.*"):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self.pool.shutdown()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.catalogue.close()
        self._lock_file.close()
