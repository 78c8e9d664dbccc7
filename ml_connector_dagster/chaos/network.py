"""The simulators and the webhook receiver on a private, in-process network (``http://<name>.chaos``).

Every client of the code location is built by :func:`~ml_connector_dagster.core.http.build_http_client`,
deep inside ops and sensors; :func:`attached` makes the transport it picks by default this network, so
requests reach the simulators' ASGI apps over the real wire format, and their fault markers become the
exceptions a real network raises (:class:`~ml_connector_dagster.sandbox.transport.InProcessTransport`).
Waits for retries and rate limits are shortened, as the simulators' clocks do not need them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping

import httpx
from starlette.types import ASGIApp

from ml_connector_dagster.core import http
from ml_connector_dagster.sandbox.transport import InProcessTransport

__all__ = ["InProcessNetwork", "attached", "scoped_environ"]

DOMAIN = "chaos"
# The longest a retry or rate-limit wait really sleeps: long enough to yield, short enough for 1,000 schedules.
SLEEP_CAP_S = 0.005


class InProcessNetwork(httpx.BaseTransport):
    """Hosts mapped to ASGI apps of this process; an unknown host does not resolve (``ConnectError``)."""

    def __init__(self) -> None:
        self._hosts: dict[str, InProcessTransport] = {}

    def add(self, name: str, app: ASGIApp) -> str:
        """Put ``app`` on the network as ``<name>.chaos``; its base URL."""
        self._hosts[f"{name}.{DOMAIN}"] = InProcessTransport(app)
        return f"http://{name}.{DOMAIN}"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._hosts.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(
                f"{request.url.host} does not resolve on the chaos network", request=request
            )
        return transport.handle_request(request)

    def close(self) -> None:
        for transport in self._hosts.values():
            transport.close()
        self._hosts.clear()


class _Unclosable(httpx.BaseTransport):
    """The network as one client's transport: a client closing it must not take the network down."""

    def __init__(self, network: InProcessNetwork) -> None:
        self._network = network

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._network.handle_request(request)


@contextlib.contextmanager
def attached(network: InProcessNetwork | None) -> Iterator[None]:
    """Clients built in the block reach ``network`` by default (None: the real one) and barely sleep."""
    saved_transport, saved_sleep = http.default_transport, http.default_sleep
    if network is not None:
        http.default_transport = lambda: _Unclosable(network)
    http.default_sleep = lambda seconds: time.sleep(min(seconds, SLEEP_CAP_S))
    try:
        yield
    finally:
        http.default_transport, http.default_sleep = saved_transport, saved_sleep


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block, the environment as it was afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
