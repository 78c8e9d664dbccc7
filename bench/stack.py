"""The `ml-connector demo` stack, started for a benchmark and always stopped again.

In this process: the simulators of one flow (Visma or Acumatica, and Jira) and the webhook receiver,
served on free loopback ports, as `ml-connector demo` serves them (the simulators' webhooks point at
the receiver); connector.yaml is the shipped sandbox one cut down to that flow. As a
child process in its own session: `dagster dev` on the repository's workspace.yaml, with a fresh
DAGSTER_HOME holding a link to the repository's dagster.yaml (what `make demo` does), so the
instance settings measured are the project's. Everything lives in one temp folder, removed at the
end unless asked to keep it.

Stopping never leaves a process behind: `dagster dev` gets SIGINT (it stops its daemon, webserver
and code server), then whatever is still in its process group — run workers — gets SIGTERM and,
after a grace period, SIGKILL. A SIGTERM to the benchmark itself unwinds through the same path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ml_connector_dagster.shutdown import stop_process_group

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RECEIVER = "http://127.0.0.1:8800"  # the webhook receiver's root in the shipped sandbox connector.yaml


@dataclass(frozen=True)
class StackSettings:
    """How big the sandbox is: the initial backfill covers ``days`` (the poll sensors' lookback)."""

    seed: int = 0
    size: int = 40
    days: int = 1
    keep: bool = False
    dagster_yaml: Path = PROJECT_ROOT / "dagster.yaml"  # another one to compare instance settings
    inbox_wait_s: float | None = None  # None: connector.yaml's default
    flow: str = "visma_jira"  # the one flow configured
    systems: tuple[str, ...] = ("visma", "jira")  # the simulators it needs
    # Scheduler priority (autogroup nice, -20..19) of `dagster dev`'s session: on a machine shared with
    # other work, a negative value approximates a dedicated one. Linux; negative values need root.
    priority: int | None = None


@dataclass
class Stack:
    """What a benchmark talks to."""

    home: Path
    urls: dict[str, str]
    receiver_url: str
    dagster: subprocess.Popen[bytes]
    log_path: Path

    def dagster_log_tail(self, lines: int = 40) -> str:
        """The end of `dagster dev`'s output, for a failure report."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no dagster dev log)"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def connector_yaml(ports: dict[str, int], receiver_port: int, settings: StackSettings) -> dict[str, Any]:
    """The shipped sandbox config, cut down to one flow (``settings.flow``) and its systems, on ``ports``."""
    shipped = yaml.safe_load((PROJECT_ROOT / "ml_connector_dagster" / "connector.sandbox.yaml").read_text())
    systems = {name: dict(shipped["systems"][name]) for name in settings.systems}
    for name, system in systems.items():
        base = f"http://127.0.0.1:{ports[name]}"
        for key in ("base_url", "token_url", "auth_url"):
            if key in system:
                system[key] = system[key].replace(f"http://127.0.0.1:{_port_of(system[key])}", base)
    flow = _at_receiver(shipped["flows"][settings.flow], f"http://127.0.0.1:{receiver_port}")
    if "jira_webhooks" in flow or settings.flow == "visma_jira":
        flow["jira_webhooks"] = {"receiver_url": f"http://127.0.0.1:{receiver_port}/webhooks/jira"}
    return {
        "sandbox": {"host": "127.0.0.1", "seed": settings.seed, "size": settings.size, "days": settings.days,
                    "ports": ports},
        "poll_interval_s": shipped.get("poll_interval_s", 30),
        "systems": systems,
        "flows": {settings.flow: flow},
        "webhooks": {"host": "127.0.0.1", "port": receiver_port,
                     **({} if settings.inbox_wait_s is None else {"inbox_wait_s": settings.inbox_wait_s})},
    }  # fmt: skip


def _at_receiver(value: Any, receiver: str) -> Any:
    """``value`` with the shipped receiver's root (``webhook_url``, ``receiver_url``: :8800) replaced by ``receiver``."""
    if isinstance(value, dict):
        return {key: _at_receiver(item, receiver) for key, item in value.items()}
    if isinstance(value, list):
        return [_at_receiver(item, receiver) for item in value]
    if isinstance(value, str) and value.startswith(SHIPPED_RECEIVER):
        return receiver + value[len(SHIPPED_RECEIVER):]
    return value


def _port_of(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _install_sigterm_unwinding() -> None:
    def unwind(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, unwind)


def set_session_priority(pid: int, nice: int) -> None:
    """Give ``pid``'s session (its scheduler autogroup: every process it starts) the priority ``nice``.

    With autogroups, ``nice`` alone only orders processes within one session; sessions share the CPUs
    equally, so a benchmark's run workers would get one share among everyone's test runs.
    """
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError as error:
        print(f"could not set the session's priority to {nice} ({error.strerror}); measuring without it")


@contextlib.contextmanager
def running_stack(settings: StackSettings) -> Iterator[Stack]:
    """Serve the simulators and the receiver, start `dagster dev`; stop all of it when the block ends."""
    _install_sigterm_unwinding()
    home = Path(tempfile.mkdtemp(prefix="ml-connector-latency-"))
    dagster_home = home / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").symlink_to(settings.dagster_yaml.resolve())
    ports = {name: free_port() for name in settings.systems}
    receiver_port = free_port()
    config_path = home / "connector.yaml"
    config_path.write_text(yaml.safe_dump(connector_yaml(ports, receiver_port, settings), sort_keys=False))
    os.environ.update({
        "DAGSTER_HOME": str(dagster_home), "ML_CONNECTOR_HOME": str(home),
        "ML_CONNECTOR_CONFIG": str(config_path), "ML_CONNECTOR_DB_URL": f"sqlite:///{home / 'ledger.db'}",
    })  # fmt: skip
    os.environ.pop("ML_CONNECTOR_SECRET_KEY", None)

    # Imported only now: the project reads its config and home from the environment set above.
    from dagster import DagsterInstance

    from ml_connector_dagster.config import load_config
    from ml_connector_dagster.core.ledger import Ledger
    from ml_connector_dagster.definitions import use_sandbox_credentials
    from ml_connector_dagster.sandbox.launch import serve_sandbox
    from ml_connector_dagster.sandbox.serve import ServedApp
    from ml_connector_dagster.webhooks.configured import configured_receiver

    # Create the instance's SQLite storage once, here: `dagster dev`'s processes (and this one, which
    # reads the runs) would otherwise race to stamp its schema on a fresh DAGSTER_HOME.
    DagsterInstance.get().dispose()
    config = load_config(config_path)
    use_sandbox_credentials(config)  # the receiver and `dagster dev` see the simulators' demo secrets
    ledger = Ledger.open()
    receiver: ServedApp | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path = home / "dagster-dev.log"
    try:
        if settings.priority is not None:
            # The simulators and the receiver are threads of this process: the vendors' servers and the
            # receiver's host would not share a CPU with everyone's test runs either.
            set_session_priority(os.getpid(), settings.priority)
        receiver = ServedApp(configured_receiver(config, ledger), "webhook receiver", port=receiver_port).start()
        with serve_sandbox(list(settings.systems), ports=ports, reuse_running=False, webhook_base_url=receiver.base_url,
                           seed=settings.seed, size=settings.size, days=settings.days) as urls:  # fmt: skip
            command = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"),
                       "-h", "127.0.0.1", "-p", str(free_port())]  # fmt: skip
            with log_path.open("wb") as log:
                process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=dict(os.environ), stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)  # fmt: skip
            if settings.priority is not None:
                set_session_priority(process.pid, settings.priority)
            try:
                yield Stack(home, dict(urls), receiver.base_url, process, log_path)
            finally:
                stop_process_group(process)
    finally:
        if receiver is not None:
            receiver.stop()
        ledger.dispose()
        if not settings.keep:
            shutil.rmtree(home, ignore_errors=True)
