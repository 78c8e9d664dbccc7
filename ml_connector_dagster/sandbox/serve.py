"""Serve simulators on 127.0.0.1 sockets (the demo, end-to-end tests, benchmarks)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Self

import uvicorn
from starlette.types import ASGIApp

from .framework import Simulator


class ServedApp:
    """An ASGI app running under uvicorn in a background thread."""

    def __init__(self, app: ASGIApp, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.host = host
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"served-{name}", daemon=True)
        self.port = port

    def start(self, timeout_s: float = 10) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class ServedSimulator(ServedApp):
    """A simulator on a socket: its timeout faults then hang for real."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        simulator.served = True
        self.simulator = simulator
        super().__init__(simulator.app, f"sandbox {simulator.name}", host, port)


@contextlib.contextmanager
def served(simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[ServedSimulator]:
    """Serve ``simulator`` for the duration of the block (port 0 picks a free port)."""
    server = ServedSimulator(simulator, host, port).start()
    try:
        yield server
    finally:
        server.stop()
