"""``nvcodec serve`` as a child process on a free loopback port (used by the tests and ``bench serve``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = ["free_port", "ServerProcess"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m nvcodec.cli serve --data DIR --port P ARGS``, its output appended to ``log``."""

    def __init__(self, data: str | os.PathLike, args: Sequence[str] = (), log: str | os.PathLike | None = None) -> None:
        self.data = Path(data)
        self.args = tuple(args)
        self.log = Path(log) if log is not None else self.data.parent / f"{self.data.name}-serve.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._orphans: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def start(self, timeout_s: float = 180.0) -> None:
        """Start and wait until ``/v1/health`` answers 200."""
        self.port = free_port()
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nvcodec.cli", "serve", "--data", str(self.data), "--port", str(self.port), *self.args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nvcodec serve exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/v1/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"nvcodec serve did not answer within {timeout_s:.0f} s: {self.log_tail()}")

    def _children(self) -> set[int]:
        """Pids of the server's child processes (its encode workers), from /proc."""
        children = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.pid:
                children.add(int(entry.name))
        return children

    def kill(self) -> None:
        """SIGKILL the server (a crash); its orphaned workers are ended by ``stop``."""
        self._orphans |= self._children()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), SIGKILL after 30 s; then end any worker a kill left behind."""
        if self.proc is not None and self.proc.poll() is None:
            self._orphans |= self._children()
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        for pid in self._orphans:
            try:  # still a multiprocessing worker (not a reused pid)?
                if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        self._orphans.clear()
