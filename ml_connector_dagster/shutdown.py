"""Ending a foreground command cleanly: on SIGINT, SIGTERM or SIGHUP alike, and with the process group it
started.

A supervisor (`timeout`, systemd, `make` passing on its own SIGTERM) and a closed terminal (SIGHUP) must
stop `ml-connector demo` as Ctrl-C does, or `dagster dev` and its daemon, webserver and code server are
left running with nobody to stop them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Self

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """While entered: the first SIGINT, SIGTERM or SIGHUP raises KeyboardInterrupt, later ones are ignored.

    Ignored because one stop often comes as two signals (`timeout` signals its whole process group, and
    `make` passes its own SIGTERM on): a second KeyboardInterrupt would cut the clean-up short and orphan
    what the first one was stopping. The handlers in place before are restored on exit.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._deferring = False
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> Self:
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    @property
    def exit_code(self) -> int:
        """The shell's status for a command ended by the signal received (128 + its number; 0 for none).

        Ctrl-C is how a person ends the demo: it stays 0.
        """
        if self.received is None or self.received == signal.SIGINT:
            return 0
        return 128 + int(self.received)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a signal back until the block is done (starting a child and taking its handle, say), then
        raise KeyboardInterrupt if one came."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.received is not None:
            raise KeyboardInterrupt

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            return
        self.received = signal.Signals(signum)
        if not self._deferring:
            raise KeyboardInterrupt


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(
    process: subprocess.Popen[bytes], *, grace_s: float = 30.0, term_s: float = 5.0
) -> None:
    """Stop ``process`` (started with ``start_new_session=True``) and every process left in its group.

    SIGINT to the leader first (`dagster dev` then stops its daemon, webserver and code server), waiting
    up to ``grace_s``; then SIGTERM to whatever is left of the group (a run worker mid-run), then SIGKILL,
    each given ``term_s``. The leader is always reaped.
    """
    pgid = process.pid  # the leader of its own session: its pid is the group id
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(pgid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + term_s
        while _group_alive(pgid) and time.monotonic() < deadline:
            if process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.2)
            else:
                time.sleep(0.2)
    if process.poll() is None:
        process.kill()
    process.wait(timeout=5)
