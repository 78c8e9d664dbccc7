"""Use a simulator in-process from a *sync* httpx client, over the real wire format.

httpx's ``ASGITransport`` is async-only; Dagster ops and sensors are sync. ``InProcessTransport``
runs the ASGI app on a private event loop in a daemon thread and turns the
simulator's fault markers into the exceptions a real network would raise.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from .framework import FAULT_HEADER

_FAULT_EXCEPTIONS: dict[str, type[httpx.TransportError]] = {
    "timeout": httpx.ReadTimeout,
    "reset": httpx.RemoteProtocolError,
}


class InProcessTransport(httpx.BaseTransport):
    """A sync httpx transport that delivers requests to an ASGI app in this process."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.run_forever()
        finally:
            # The simulators' asyncio.to_thread work runs in the loop's default executor, whose
            # threads would otherwise outlive the transport.
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        # A daemon thread: a forgotten transport must never keep the interpreter alive.
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._serve, args=(loop,), name="sandbox-inprocess", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        loop = self._ensure_loop()
        body = request.read()

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            async_request = httpx.Request(
                request.method, request.url, headers=request.headers, content=body, extensions=request.extensions
            )
            response = await self._asgi.handle_async_request(async_request)
            content = await response.aread()
            return response.status_code, response.headers.raw, content

        status, headers, content = asyncio.run_coroutine_threadsafe(call(), loop).result()
        fault = dict((k.decode().lower(), v.decode()) for k, v in headers).get(FAULT_HEADER)
        if fault in _FAULT_EXCEPTIONS:
            raise _FAULT_EXCEPTIONS[fault](f"sandbox fault: {fault}", request=request)
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        """Stop the private event loop and wait (briefly) for its thread and executor to finish."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
