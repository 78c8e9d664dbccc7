"""The launcher's side of the fork server (:mod:`.worker`): start it, hand it runs, replace it when stale.

One server process serves every run: it is started on the first launch, and each run costs a fork.
A server is useful only while it runs the code a fresh process would import: one that started
before a source file (or the connector's config) changed is replaced before its next run, as is one
idle for longer than ``max_idle_s`` (an environment may have changed under it, and it holds ~200 MB).
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .worker import READY

__all__ = ["WORKER_MODULE", "ForkServer", "newest_change"]

logger = logging.getLogger(__name__)

WORKER_MODULE = "ml_connector_dagster.launcher.worker"
REPLY_TIMEOUT_S = 10.0  # a fork answers in milliseconds; this long means the server is wedged
RETRY_AFTER_FAILURE_S = 60.0  # a server that failed to preload is not started again for every run


def newest_change(paths: Sequence[Path]) -> float:
    """The latest modification time of any file under ``paths`` (files or directories)."""
    newest = 0.0
    for path in paths:
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for child in path.rglob("*"):
                if child.suffix in {".py", ".yaml", ".yml", ".csv", ".graphql"} and child.is_file():
                    newest = max(newest, child.stat().st_mtime)
    return newest


class _ServerProcess:
    """One running server: its process, the pipe its answers come back on, and when it started."""

    def __init__(self, executable: str, modules: Sequence[str]) -> None:
        self.started_at = time.time()
        self.last_used = self.started_at
        read_fd, write_fd = os.pipe()
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [executable, "-m", WORKER_MODULE, "--reply-fd", str(write_fd), *modules],
                stdin=subprocess.PIPE, pass_fds=(write_fd,), env=os.environ.copy(),
            )  # fmt: skip
        finally:
            os.close(write_fd)
        self._replies = read_fd
        self._buffer = b""
        self.ready = False
        logger.debug("started run fork server pid %s", self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def _reply(self, timeout_s: float) -> str | None:
        """The server's next line, or None when it has not answered in time (or has exited)."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                return None
            chunk = os.read(self._replies, 4096)
            if not chunk:
                return None  # the server exited
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the server has preloaded (True) or failed, exited or run out of time (False)."""
        if not self.ready:
            self.ready = self._reply(timeout_s) == READY
        return self.ready

    def fork(self, serialized_args: str) -> int | None:
        """Have the server fork a run worker for these arguments; its pid, or None when it did not."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(serialized_args.encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        answer = self._reply(REPLY_TIMEOUT_S)
        self.last_used = time.time()
        return int(answer) if answer and answer.isdigit() else None

    def stop(self) -> None:
        """Close its input: the server exits, the runs it forked go on (killed if it lingers)."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._replies)


class ForkServer:
    """Keeps one fork server of ``modules`` running current code; thread-safe, as launches run in threads."""

    def __init__(self, modules: Sequence[str], watch: Sequence[Path], *, max_idle_s: float, ready_timeout_s: float,
                 executable: str = sys.executable) -> None:  # fmt: skip
        self._modules = list(modules)
        self._watch = list(watch)
        self._max_idle_s = max_idle_s
        self._ready_timeout_s = ready_timeout_s
        self._executable = executable
        self._server: _ServerProcess | None = None
        self._failed_at: float | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def executable(self) -> str:
        """The interpreter the server runs: a run of another one cannot be forked from it."""
        return self._executable

    @property
    def server_pid(self) -> int | None:
        """The current server's pid (the parent of the runs it forks), if one runs."""
        return self._server.pid if self._server is not None else None

    def start(self) -> None:
        """Start the server now (it preloads in the background) unless one runs."""
        with self._lock:
            if not self._closed and self._server is None:
                self._server = _ServerProcess(self._executable, self._modules)

    def start_run(self, serialized_args: str) -> int | None:
        """Fork a run worker for ``serialized_args`` (``ExecuteRunArgs``); its pid, or None: launch it another way.

        A stale server is replaced first, and a starting one waited for (at most ``ready_timeout_s``):
        a few seconds of preloading cost less than a fresh process's full start.
        """
        changed = newest_change(self._watch)
        with self._lock:
            if self._closed:
                return None
            server = self._server
            if server is not None and (not server.alive() or server.started_at <= changed
                                       or time.time() - server.last_used > self._max_idle_s):  # fmt: skip
                _stop_in_background(server)
                server = None
            if server is None:
                if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE_S:
                    return None
                server = self._server = _ServerProcess(self._executable, self._modules)
            if not server.wait_ready(self._ready_timeout_s):
                # Failed, exited or wedged in its imports: not waited for again by every run.
                logger.warning("run fork server pid %s is not ready; launching the usual way", server.pid)
                server.process.kill()
                _stop_in_background(server)
                self._server, self._failed_at = None, time.monotonic()
                return None
            pid = server.fork(serialized_args)
            if pid is None:
                # Killed, not asked to stop: a late fork would start the run twice (Dagster would
                # ignore the second worker, but it would still spend a process on it).
                logger.warning("run fork server pid %s did not fork; launching the usual way", server.pid)
                server.process.kill()
                _stop_in_background(server)
                self._server = None
            return pid

    def close(self) -> None:
        """Stop the server; the runs it forked finish."""
        with self._lock:
            self._closed = True
            server, self._server = self._server, None
        if server is not None:
            server.stop()


def _stop_in_background(server: _ServerProcess) -> None:
    threading.Thread(target=server.stop, daemon=True).start()
