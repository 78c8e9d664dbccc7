"""The `ml-connector demo` stack on free ports, for the browser test; always stopped again.

In the test process: the Visma and Jira simulators (``serve_sandbox``) and the webhook receiver,
served on free loopback ports, the simulators delivering their webhooks to the receiver, as
`ml-connector demo` serves them. As a child process in its own session: `dagster dev` on the
repository's workspace.yaml with a fresh DAGSTER_HOME that links the repository's dagster.yaml,
and ML_CONNECTOR_CONFIG pointing at a connector.yaml whose base URLs are the served simulators.

Stopping leaves nothing behind: `dagster dev` gets SIGINT (it stops its daemon, webserver and code
server), then whatever is left of its process group (run workers) SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ml_connector_dagster.shutdown import stop_process_group

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("visma", "jira")
SANDBOX = {"seed": 0, "size": 24, "days": 1}  # connector.yaml: the poll sensors look back one day
# The simulators' records all changed within the last hour and a bit: one partition (today) per poll
# sensor, so the first ticks ask for 5 runs rather than 10, each paying a run worker's start-up.
SIMULATED_DAYS = 0.05


@dataclass(frozen=True)
class DemoStack:
    """What the browser test talks to."""

    home: Path
    sandbox_urls: dict[str, str]
    receiver_url: str
    ui_url: str
    log_path: Path

    def dagster_log_tail(self, lines: int = 60) -> str:
        """The end of `dagster dev`'s output, for a failure message."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no dagster dev log)"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def demo_connector_yaml(ports: dict[str, int], receiver_port: int) -> dict[str, Any]:
    """The shipped sandbox config cut down to Visma, Jira and the visma_jira flow, on ``ports``."""
    shipped = yaml.safe_load((PROJECT_ROOT / "ml_connector_dagster" / "connector.sandbox.yaml").read_text())
    systems = {}
    for name in SYSTEMS:
        system = dict(shipped["systems"][name])
        for key in ("base_url", "token_url", "auth_url"):
            if key in system:
                path = system[key].split("://", 1)[1].partition("/")[2]
                system[key] = f"http://127.0.0.1:{ports[name]}" + (f"/{path}" if path else "")
        systems[name] = system
    flow = dict(shipped["flows"]["visma_jira"])
    flow["jira_webhooks"] = {"receiver_url": f"http://127.0.0.1:{receiver_port}/webhooks/jira"}
    return {
        "sandbox": {"host": "127.0.0.1", **SANDBOX, "ports": ports},
        "poll_interval_s": shipped.get("poll_interval_s", 30),
        "systems": systems,
        "flows": {"visma_jira": flow},
        "webhooks": {"host": "127.0.0.1", "port": receiver_port},
    }


def wait_until_ui_answers(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Block until the webserver answers ``/server_info`` (fail early if `dagster dev` died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the Dagster UI did not answer at {url} within {timeout_s:.0f} s")


@contextlib.contextmanager
def running_demo(home: Path, monkeypatch: pytest.MonkeyPatch, *, startup_timeout_s: float = 60) -> Iterator[DemoStack]:
    """Serve the simulators and the receiver, start `dagster dev`, wait for its UI; stop it all after."""
    dagster_home = home / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    ports = {name: free_port() for name in SYSTEMS}
    receiver_port, ui_port = free_port(), free_port()
    config_path = home / "connector.yaml"
    config_path.write_text(yaml.safe_dump(demo_connector_yaml(ports, receiver_port), sort_keys=False))
    for name, value in {
        "DAGSTER_HOME": str(dagster_home), "ML_CONNECTOR_HOME": str(home),
        "ML_CONNECTOR_CONFIG": str(config_path), "ML_CONNECTOR_DB_URL": f"sqlite:///{home / 'ledger.db'}",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)

    # Imported here: these read the config and home from the environment set above.
    from dagster import DagsterInstance

    from ml_connector_dagster.config import load_config
    from ml_connector_dagster.core.ledger import Ledger
    from ml_connector_dagster.definitions import use_sandbox_credentials
    from ml_connector_dagster.sandbox.launch import serve_sandbox
    from ml_connector_dagster.sandbox.serve import ServedApp
    from ml_connector_dagster.webhooks.configured import configured_receiver

    # Stamp the instance's SQLite schema once, here: `dagster dev`'s processes would otherwise race to.
    DagsterInstance.get().dispose()
    config = load_config(config_path)
    demo_env: dict[str, str] = {}
    use_sandbox_credentials(config, demo_env)  # the receiver and `dagster dev` see the demo secrets
    for name, value in demo_env.items():
        monkeypatch.setenv(name, value)
    ledger = Ledger.open()
    log_path = home / "dagster-dev.log"
    receiver = ServedApp(configured_receiver(config, ledger), "webhook receiver", port=receiver_port).start()
    try:
        with serve_sandbox(list(SYSTEMS), ports=ports, reuse_running=False, webhook_base_url=receiver.base_url,
                           **{**SANDBOX, "days": SIMULATED_DAYS}) as urls:  # fmt: skip
            command = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"),
                       "-h", "127.0.0.1", "-p", str(ui_port)]  # fmt: skip
            with log_path.open("wb") as log:
                process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=dict(os.environ), stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)  # fmt: skip
            stack = DemoStack(home, dict(urls), receiver.base_url, f"http://127.0.0.1:{ui_port}", log_path)
            try:
                wait_until_ui_answers(stack.ui_url, process, startup_timeout_s)
                yield stack
            finally:
                stop_process_group(process, grace_s=5.0)
    finally:
        receiver.stop()
        ledger.dispose()
