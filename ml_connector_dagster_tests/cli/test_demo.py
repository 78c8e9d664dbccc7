"""`ml-connector demo` stopped by a supervisor: SIGTERM ends every process it started, frees every port it
served, and exits 143.

The demo runs as a real child process on free ports from a connector.yaml like the UI test's (Visma and
Jira simulators, the visma_jira flow), leading its own process group as under `timeout`, which signals
that whole group. Its process tree is read from /proc once the Dagster UI answers; a process started
later (a run worker) is caught by its session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from ml_connector_dagster_tests.ui.demo_stack import (
    PROJECT_ROOT,
    SYSTEMS,
    demo_connector_yaml,
    free_port,
    wait_until_ui_answers,
)

pytestmark = pytest.mark.timeout(180)

STARTUP_TIMEOUT_S = 120  # a loaded 2-CPU machine: `dagster dev` imports the code location twice
# The demo's own bound: `dagster dev` is given 30 s, then its group SIGTERM and SIGKILL 5 s each.
STOP_TIMEOUT_S = 45


@dataclass(frozen=True)
class Process:
    """One process as /proc shows it; ``started`` tells it from a later process given the same pid."""

    pid: int
    parent: int
    session: int
    started: int
    command: str


def _read_process(pid: int) -> Process | None:
    """``pid`` as /proc shows it, or None when it is gone (a zombie counts as gone: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    if fields[0] == "Z":
        return None
    return Process(
        pid, parent=int(fields[1]), session=int(fields[3]), started=int(fields[19]), command=command
    )


def _processes() -> list[Process]:
    found = (_read_process(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [process for process in found if process is not None]


def _tree(root: int) -> list[Process]:
    """``root`` and all its descendants, running now."""
    processes = _processes()
    children: dict[int, list[Process]] = {}
    for process in processes:
        children.setdefault(process.parent, []).append(process)
    tree = [process for process in processes if process.pid == root]
    for process in tree:  # grows while walked: breadth-first
        tree.extend(children.get(process.pid, []))
    return tree


def _survivors(tree: list[Process]) -> list[Process]:
    """The processes of ``tree`` still running, and any later process in one of its sessions."""
    sessions = {process.session for process in tree}
    known = {(process.pid, process.started) for process in tree}
    return [
        process
        for process in _processes()
        if (process.pid, process.started) in known
        or (process.session in sessions and process.pid != os.getpid())
    ]


def _port_free(port: int) -> bool:
    """True when a server could listen on ``port`` again (TIME_WAIT left by closed connections is no bar)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
    return True


def _kill_all(processes: list[Process]) -> None:
    for process in processes:
        with contextlib.suppress(OSError):
            os.kill(process.pid, signal.SIGKILL)


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    ui_url: str
    ports: list[int]
    log_path: Path
    tree: list[Process] = field(default_factory=list)

    def snapshot(self) -> list[Process]:
        """The demo's process tree now; kept, so that the fixture can kill what survives of it."""
        self.tree = _tree(self.process.pid)
        return self.tree

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """`ml-connector demo` started on free ports with a fresh home; whatever is left of it killed after."""
    (tmp_path / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    ports = {name: free_port() for name in SYSTEMS}
    receiver_port, ui_port = free_port(), free_port()
    config_path = tmp_path / "connector.yaml"
    config_path.write_text(yaml.safe_dump(demo_connector_yaml(ports, receiver_port), sort_keys=False))
    for name, value in {
        "DAGSTER_HOME": str(tmp_path), "ML_CONNECTOR_HOME": str(tmp_path), "ML_CONNECTOR_CONFIG": str(config_path),
        "ML_CONNECTOR_DB_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    from dagster import DagsterInstance

    # Stamp the instance's SQLite schema once, here: `dagster dev`'s processes would otherwise race to.
    DagsterInstance.get().dispose()
    log_path = tmp_path / "demo.log"
    command = [sys.executable, "-m", "ml_connector_dagster.cli", "demo", "--port", str(ui_port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=dict(os.environ), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    started = Demo(
        process, f"http://127.0.0.1:{ui_port}", [*ports.values(), receiver_port, ui_port], log_path
    )
    try:
        yield started
    finally:
        _kill_all(_survivors(started.tree or started.snapshot()))
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def test_sigterm_stops_every_process_of_the_demo_and_frees_its_ports(demo: Demo) -> None:
    try:
        wait_until_ui_answers(demo.ui_url, demo.process, STARTUP_TIMEOUT_S)
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"{exc}\n{demo.log_tail()}")
    tree = demo.snapshot()
    commands = " | ".join(process.command for process in tree)
    assert "dagster_webserver" in commands and "dagster._daemon" in commands, commands

    os.killpg(demo.process.pid, signal.SIGTERM)  # as `timeout` does: the signalled command's whole group

    try:
        returncode = demo.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the demo was still running {STOP_TIMEOUT_S} s after SIGTERM\n{demo.log_tail()}")
    assert returncode == 128 + signal.SIGTERM, demo.log_tail()
    deadline = time.monotonic() + 5  # an orphan reparented to init is reaped a moment later
    while (left := _survivors(tree)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"still running after the demo exited: {[p.command for p in left]}"
    assert [port for port in demo.ports if not _port_free(port)] == []
