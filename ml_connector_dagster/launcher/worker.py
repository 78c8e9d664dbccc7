"""A fork server for run workers: one process imports the code location once, and forks each run.

``python -m ml_connector_dagster.launcher.worker --reply-fd N MODULE...`` imports Dagster's run
entry point and the code location's modules, loads their definitions, writes ``ready`` to file
descriptor ``N``, then reads lines on stdin: each is the serialized ``ExecuteRunArgs`` that ``dagster
api execute_run`` would take as its argument. For each line it forks; the child runs that one run
exactly as ``dagster api execute_run`` does and exits, and the server writes the child's pid to
``N``. End of input (the launcher replaced or closed it, or died) ends the server; runs already
forked go on.

The point is CPU as much as latency: a fresh process spends ~3 s of CPU importing Dagster, pandas,
SQLAlchemy and the connector before it can execute a step. Started once per process it was most of
a webhook's journey, and on a small machine a burst of runs spent its cores importing. A fork costs
milliseconds, and the child shares the server's imported pages.

Forking is safe here because the server holds nothing a child could share by accident: it starts
no thread and opens no connection while preloading (the definitions are built, resources are not),
which :func:`preload` checks.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from types import FrameType

from dagster import Definitions

__all__ = ["READY", "main", "preload"]

READY = "ready"


def preload(modules: Sequence[str]) -> None:
    """Import ``modules`` and resolve any ``Definitions`` they hold, so a run finds them built."""
    for name in modules:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, Definitions):
                value.get_repository_def()
    if threading.active_count() > 1:
        # A thread's locks would be copied held into every child: refuse to serve rather than deadlock.
        names = ", ".join(thread.name for thread in threading.enumerate())
        raise RuntimeError(f"preloading started threads ({names}); runs cannot be forked from this process")


def _reap(_signum: int, _frame: FrameType | None) -> None:
    """Collect every exited run worker, so none lingers as a zombie (and its pid reads as gone)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _run_child(line: str, reply_fd: int) -> None:
    """In the forked child: become a plain run worker, execute the run, and exit."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the run's own subprocesses are its to wait for
    os.close(reply_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the server's request pipe is not the run's to read
    os.close(devnull)
    code = 0
    try:
        from dagster._cli.api import execute_run_command

        # The same body as `dagster api execute_run <args>`, so a run behaves identically either way.
        execute_run_command.callback(input_json=line, compressed_input_json=None)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:  # noqa: BLE001 - a child must never return into the server's loop
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(reply_fd: int) -> None:
    """Fork a run worker per request line until end of input; each child's pid goes to ``reply_fd``."""
    signal.signal(signal.SIGCHLD, _reap)
    os.write(reply_fd, f"{READY}\n".encode())
    while True:
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            return
        if not line:
            return
        if not line.strip():
            continue
        pid = os.fork()
        if pid == 0:
            _run_child(line.strip(), reply_fd)
        os.write(reply_fd, f"{pid}\n".encode())


def main(argv: list[str]) -> int:
    """``--reply-fd N MODULE...``: preload the modules, then serve runs."""
    if len(argv) < 2 or argv[0] != "--reply-fd":
        print("usage: python -m ml_connector_dagster.launcher.worker --reply-fd N MODULE...", file=sys.stderr)
        return 2
    reply_fd = int(argv[1])
    from dagster._cli.api import execute_run_command  # noqa: F401 - imported once, here, for every child

    try:
        preload(argv[2:])
    except KeyboardInterrupt:
        return 0
    serve(reply_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
