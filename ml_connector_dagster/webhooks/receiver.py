"""The webhook receiver: one POST route per system, verify -> inbox -> 2xx, nothing more.

``POST /webhooks/<system>`` reads at most ``max_body_bytes`` (413 past it, judged from
``Content-Length`` first and enforced again while streaming, so an unbounded body is never read
whole), hands the raw bytes to the system's verifier, appends each verified event to the ledger's
inbox with redacted headers, and answers at once — processing is the inbox sensor's job. A
duplicate delivery (same event id) is acknowledged and stored once. A refused delivery leaves no
row, only a counter; ``GET /webhooks/_stats`` shows the counters of this process.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ml_connector_dagster.core.http import MASK, redact_headers
from ml_connector_dagster.core.ledger import Ledger

from .contract import Reply, WebhookEvent, WebhookRejected, WebhookRequest, WebhookVerifier

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ReceiverStats", "build_receiver"]

logger = logging.getLogger("ml_connector.webhooks")

DEFAULT_MAX_BODY_BYTES = 1_048_576


class _TooLarge(Exception):
    pass


class ReceiverStats:
    """Per-system outcome counters of one receiver process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}

    def count(self, system: str, outcome: str, amount: int = 1) -> None:
        """Add ``amount`` to ``outcome`` of ``system`` (e.g. ``stored``, ``rejected.bad_signature``)."""
        with self._lock:
            self._counts.setdefault(system, Counter())[outcome] += amount

    def snapshot(self) -> dict[str, dict[str, int]]:
        """A copy of every counter, by system then outcome."""
        with self._lock:
            return {system: dict(sorted(counts.items())) for system, counts in sorted(self._counts.items())}

    def get(self, system: str, outcome: str) -> int:
        """One counter (0 when never counted)."""
        with self._lock:
            return self._counts.get(system, Counter())[outcome]


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise WebhookRejected("malformed_content_length")
        if int(declared) > limit:
            raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _stored_headers(request: Request, verifier: WebhookVerifier) -> dict[str, str]:
    headers = redact_headers(request.headers.items())
    sensitive = {name.lower() for name in verifier.sensitive_headers}
    return {name: MASK if name.lower() in sensitive else value for name, value in headers.items()}


def _reply(reply: Reply) -> Response:
    if reply.body is None:
        return Response(status_code=reply.status_code, headers=reply.headers)
    return JSONResponse(reply.body, status_code=reply.status_code, headers=reply.headers)


def _store(
    ledger: Ledger, system: str, events: Sequence[WebhookEvent], headers: dict[str, str], received_at: datetime
) -> tuple[int, int]:
    stored = 0
    for event in events:
        if ledger.append_inbox(
            system,
            event.event_id,
            event.payload,
            headers=headers,
            partition_key=event.partition_key,
            record_ref=None if event.record_ref is None else event.record_ref.model_dump(),
            received_at=received_at,
        ):
            stored += 1
    return stored, len(events) - stored


def _endpoint(
    ledger: Ledger, verifier: WebhookVerifier, stats: ReceiverStats, max_body_bytes: int
) -> Callable[[Request], Awaitable[Response]]:
    system = verifier.system

    async def receive(request: Request) -> Response:
        try:
            body = await _read_limited(request, max_body_bytes)
        except _TooLarge:
            stats.count(system, "rejected.too_large")
            return JSONResponse({"error": "too_large"}, status_code=413)
        except WebhookRejected as rejected:
            stats.count(system, f"rejected.{rejected.reason}")
            return JSONResponse({"error": rejected.reason}, status_code=rejected.status_code)
        received_at = datetime.now(UTC)
        incoming = WebhookRequest(
            body=body, headers=dict(request.headers.items()), query=dict(request.query_params), received_at=received_at
        )
        try:
            outcome = await run_in_threadpool(verifier.verify, incoming)
        except WebhookRejected as rejected:
            stats.count(system, f"rejected.{rejected.reason}")
            logger.warning("webhook %s refused (%s): %d", system, rejected.reason, rejected.status_code)
            return JSONResponse({"error": rejected.reason}, status_code=rejected.status_code)
        except ValidationError:
            # Authentic but unusable (e.g. an event id longer than the inbox keeps): the vendor's
            # retries would not mend it.
            stats.count(system, "rejected.malformed_event")
            return JSONResponse({"error": "malformed_event"}, status_code=400)
        except Exception:
            stats.count(system, "error")
            logger.exception("webhook %s: the verifier failed", system)
            return JSONResponse({"error": "internal"}, status_code=500)
        if isinstance(outcome, Reply):
            stats.count(system, outcome.reason)
            return _reply(outcome)
        try:
            stored, duplicates = await run_in_threadpool(
                _store, ledger, system, outcome, _stored_headers(request, verifier), received_at
            )
        except Exception:
            # Not acknowledged, so the vendor retries: nothing is lost while the ledger is away.
            stats.count(system, "error.inbox")
            logger.exception("webhook %s: the inbox could not store a verified delivery", system)
            return JSONResponse({"error": "inbox_unavailable"}, status_code=503)
        stats.count(system, "accepted")
        stats.count(system, "stored", stored)
        stats.count(system, "duplicate", duplicates)
        return JSONResponse({"stored": stored, "duplicates": duplicates}, status_code=200)

    return receive


def build_receiver(
    ledger: Ledger,
    verifiers: Iterable[WebhookVerifier] | Mapping[str, WebhookVerifier],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    stats: ReceiverStats | None = None,
) -> Starlette:
    """The ASGI app: ``POST /webhooks/<system>`` per verifier and ``GET /webhooks/_stats``.

    ``app.state.stats`` holds the :class:`ReceiverStats` (the one passed in, or a new one).
    """
    chosen = list(verifiers.values() if isinstance(verifiers, Mapping) else verifiers)
    systems = [verifier.system for verifier in chosen]
    if len(set(systems)) != len(systems):
        raise ValueError(f"one verifier per system, got {systems}")
    if any(not system.isidentifier() or system.startswith("_") for system in systems):
        raise ValueError(f"system names must be identifiers not starting with '_', got {systems}")
    counters = stats or ReceiverStats()

    async def show_stats(_request: Request) -> Response:
        return JSONResponse({"systems": sorted(systems), "counters": counters.snapshot()})

    routes = [Route("/webhooks/_stats", show_stats, methods=["GET"])]
    routes += [
        Route(f"/webhooks/{verifier.system}", _endpoint(ledger, verifier, counters, max_body_bytes), methods=["POST"])
        for verifier in chosen
    ]
    app = Starlette(routes=routes)
    app.state.stats = counters
    return app
