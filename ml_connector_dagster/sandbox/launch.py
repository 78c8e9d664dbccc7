"""Build the sandbox simulators named by connector.yaml and serve them on their fixed ports."""

from __future__ import annotations

import contextlib
import inspect
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from .framework import Simulator
from .registry import SIMULATORS, available_simulators, simulator_class
from .serve import ServedSimulator


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


@contextlib.contextmanager
def serve_sandbox(
    names: Sequence[str] | None = None,
    *,
    host: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    reuse_running: bool = True,
    **settings: Any,
) -> Iterator[dict[str, str]]:
    """Serve the named simulators (default: every one built so far); yield name -> base URL.

    A port already answered by a simulator is reused rather than fought over; a port taken by
    something else is an error that says which.
    """
    chosen = list(names) if names else available_simulators()
    ports = ports or {}
    started: list[ServedSimulator] = []
    urls: dict[str, str] = {}
    try:
        for name in chosen:
            port = ports.get(name, SIMULATORS[name].default_port)
            url = f"http://{host}:{port}"
            if port and port_in_use(host, port):
                if reuse_running and sandbox_answers(url):
                    urls[name] = url
                    continue
                raise RuntimeError(f"port {port} for the {name} sandbox is taken by another program")
            server = ServedSimulator(create_simulator(name, **settings), host, port).start()
            started.append(server)
            urls[name] = server.base_url
        yield urls
    finally:
        for server in reversed(started):
            server.stop()
            server.simulator.close()
