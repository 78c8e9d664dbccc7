"""Run worker processes started ahead of need, handed out one per run.

A worker is useful only while it runs the code a fresh process would import: one that started
before a source file (or the connector's config) changed is discarded, as is one idle for longer
than ``max_idle_s`` (an environment may have changed under it, and it holds ~200 MB).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

WORKER_MODULE = "ml_connector_dagster.launcher.worker"


@dataclass
class WarmWorker:
    """One preloading worker process, and when it started."""

    process: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def hand_over(self, serialized_args: str) -> None:
        """Give the worker its run; it executes it and exits."""
        assert self.process.stdin is not None
        self.process.stdin.write(serialized_args.encode() + b"\n")
        self.process.stdin.close()

    def discard(self) -> None:
        """Close its input: an idle worker exits on end of input (killed if it lingers)."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()


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


class WarmWorkerPool:
    """Keeps ``size`` workers preloading ``modules``; thread-safe, since launches run in threads."""

    def __init__(
        self, modules: Sequence[str], watch: Sequence[Path], size: int, max_idle_s: float, refill_delay_s: float,
        executable: str = sys.executable,
    ) -> None:  # fmt: skip
        self._modules = list(modules)
        self._watch = list(watch)
        self._size = size
        self._max_idle_s = max_idle_s
        self._refill_delay_s = refill_delay_s
        self._executable = executable
        self._idle: list[WarmWorker] = []
        self._running: dict[int, WarmWorker] = {}
        self._lock = threading.Lock()
        self._refill_timer: threading.Timer | None = None
        self._closed = False

    @property
    def executable(self) -> str:
        return self._executable

    def take(self) -> WarmWorker | None:
        """A ready worker that runs current code, or None (the caller launches the usual way)."""
        changed = newest_change(self._watch)
        now = time.time()
        with self._lock:
            taken = None
            while self._idle:
                worker = self._idle.pop(0)
                if (
                    worker.alive()
                    and worker.started_at > changed
                    and now - worker.started_at < self._max_idle_s
                ):
                    taken = worker
                    break
                threading.Thread(target=worker.discard, daemon=True).start()
            if taken is not None:
                self._running[taken.pid] = taken
            self._schedule_refill(0.0 if taken is None else self._refill_delay_s)
        return taken

    def fill(self) -> None:
        """Start workers until ``size`` are idle (called at start and after each hand-over)."""
        with self._lock:
            self._refill_timer = None
            if self._closed:
                return
            self._idle = [w for w in self._idle if w.alive()]
            while len(self._idle) < self._size:
                self._idle.append(self._spawn())
            # Reap finished run workers so they do not linger as zombies.
            for pid, worker in list(self._running.items()):
                if not worker.alive():
                    del self._running[pid]

    def close(self) -> None:
        """Stop the idle workers; running ones finish their runs."""
        with self._lock:
            self._closed = True
            if self._refill_timer is not None:
                self._refill_timer.cancel()
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.discard()

    def _schedule_refill(self, delay_s: float) -> None:
        # A refill's imports compete for the CPU with the run just handed over, so it waits a little.
        if self._refill_timer is None and not self._closed:
            self._refill_timer = threading.Timer(delay_s, self.fill)
            self._refill_timer.daemon = True
            self._refill_timer.start()

    def _spawn(self) -> WarmWorker:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [self._executable, "-m", WORKER_MODULE, *self._modules],
            stdin=subprocess.PIPE, env=os.environ.copy(),
        )  # fmt: skip
        logger.debug("started warm run worker pid %s", process.pid)
        return WarmWorker(process)
