"""Serve simulators on 127.0.0.1 sockets (the demo, end-to-end tests, benchmarks)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from .framework import Simulator


class ServedSimulator:
    """A simulator running under uvicorn in a background thread."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = host
        simulator.served = True
        config = uvicorn.Config(
            simulator.app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"sandbox-{simulator.name}", daemon=True)
        self.port = port

    def start(self, timeout_s: float = 10) -> ServedSimulator:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox {self.simulator.name} did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@contextlib.contextmanager
def served(simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[ServedSimulator]:
    """Serve ``simulator`` for the duration of the block (port 0 picks a free port)."""
    server = ServedSimulator(simulator, host, port).start()
    try:
        yield server
    finally:
        server.stop()
