"""Build the sandbox simulators named by connector.yaml and serve them on their fixed ports.

Given a ``state_dir``, the served simulators are tenants that persist: each restores from
``<state_dir>/<name>.state`` before it serves, saves every :data:`AUTOSAVE_INTERVAL_S` seconds (a
killed demo loses only the last few seconds) and once more when it stops.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..core.collector import pace_for_bulk_work
from ..progress import progress_bar
from .framework import Simulator
from .registry import SIMULATORS, available_simulators, simulator_class
from .serve import ServedSimulator

AUTOSAVE_INTERVAL_S = 15.0

logger = logging.getLogger(__name__)


def create_simulator(name: str, **settings: Any) -> Simulator:
    """Instantiate simulator ``name`` with whichever of ``settings`` its constructor accepts."""
    cls = simulator_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in settings.items() if k in accepted and v is not None})


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.3)
        return probe.connect_ex((host, port)) == 0


def sandbox_answers(base_url: str) -> bool:
    """True if a simulator already serves ``base_url`` (e.g. a `make sandbox` in another terminal)."""
    try:
        return httpx.get(f"{base_url}/_sandbox/credentials", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def state_file(state_dir: Path, name: str) -> Path:
    """Where simulator ``name`` keeps its tenant under ``state_dir``."""
    return state_dir / f"{name}.state"


def save_simulator(simulator: Simulator, state_dir: Path) -> bool:
    """Save ``simulator``'s tenant under ``state_dir``; a failure is logged, never raised."""
    path = state_file(state_dir, simulator.name)
    try:
        simulator.save_state(path)
    except Exception as exc:  # noqa: BLE001 - a failed save must not take the sandbox down
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        logger.warning("sandbox %s: could not save its state to %s (%s)", simulator.name, path, reason)
        return False
    return True


@contextlib.contextmanager
def _autosaving(simulators: Sequence[Simulator], state_dir: Path, interval_s: float) -> Iterator[None]:
    """Save ``simulators`` every ``interval_s`` from a daemon thread for the duration of the block."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            for simulator in simulators:
                save_simulator(simulator, state_dir)

    thread = threading.Thread(target=run, name="sandbox-autosave", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def serve_sandbox(
    names: Sequence[str] | None = None,
    *,
    host: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    reuse_running: bool = True,
    state_dir: Path | None = None,
    webhook_base_url: str | None = None,
    **settings: Any,
) -> Iterator[dict[str, str]]:
    """Serve the named simulators (default: every one built so far); yield name -> base URL.

    A port already answered by a simulator is reused rather than fought over; a port taken by
    something else is an error that says which. With ``state_dir``, the simulators started here
    restore their tenants from it and save them back (periodically and on stop); a reused one is
    left to whoever started it. With ``webhook_base_url``, each simulator delivers its webhooks to
    ``<webhook_base_url>/webhooks/<name>`` (the receiver's route for that system).
    """
    chosen = list(names) if names else available_simulators()
    pace_for_bulk_work()  # a simulator holds a tenant's records and parses every request's JSON
    ports = ports or {}
    started: list[ServedSimulator] = []
    urls: dict[str, str] = {}
    # Building a tenant (its demo data) takes seconds at large sizes: a bar on a terminal's stderr.
    bar = progress_bar(chosen, desc="sandbox", unit="system")
    try:
        for name in bar:
            bar.set_postfix_str(name)
            port = ports.get(name, SIMULATORS[name].default_port)
            url = f"http://{host}:{port}"
            if port and port_in_use(host, port):
                if reuse_running and sandbox_answers(url):
                    urls[name] = url
                    continue
                raise RuntimeError(f"port {port} for the {name} sandbox is taken by another program")
            webhook_url = f"{webhook_base_url.rstrip('/')}/webhooks/{name}" if webhook_base_url else None
            simulator = create_simulator(name, webhook_url=webhook_url, **settings)
            if state_dir is not None and simulator.restore_state(state_file(state_dir, name)):
                logger.info("sandbox %s: restored its tenant from %s", name, state_dir)
            server = ServedSimulator(simulator, host, port).start()
            started.append(server)
            urls[name] = server.base_url
        bar.close()
        if state_dir is None:
            yield urls
        else:
            with _autosaving([server.simulator for server in started], state_dir, AUTOSAVE_INTERVAL_S):
                yield urls
    finally:
        bar.close()
        for server in reversed(started):
            server.stop()
            if state_dir is not None:
                save_simulator(server.simulator, state_dir)
            server.simulator.close()
