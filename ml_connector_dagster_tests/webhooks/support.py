"""Running the receiver in-process for a test, and reading what it stored."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

with warnings.catch_warnings():
    # Starlette 1.x nudges towards the httpx2 package; the httpx-based client works the same here.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from starlette.applications import Starlette  # noqa: E402

from ml_connector_dagster.core.ledger import InboxEvent, Ledger  # noqa: E402
from ml_connector_dagster.webhooks.contract import WebhookVerifier  # noqa: E402
from ml_connector_dagster.webhooks.receiver import build_receiver  # noqa: E402


@contextmanager
def serve(ledger: Ledger, *verifiers: WebhookVerifier, max_body_bytes: int = 64 * 1024) -> Iterator[TestClient]:
    """A client of a receiver with these verifiers; closed (no thread left) when the block ends."""
    with serve_app(build_receiver(ledger, verifiers, max_body_bytes=max_body_bytes)) as client:
        yield client


@contextmanager
def serve_app(app: Starlette) -> Iterator[TestClient]:
    """A client of an already built receiver app."""
    with TestClient(app) as client:
        yield client


def inbox_rows(ledger: Ledger, system: str | None = None) -> list[InboxEvent]:
    """Every stored event, processed or not, in id order."""
    return ledger.inbox_after(0, system=system, unprocessed_only=False)


def counter(client: TestClient, system: str, outcome: str) -> int:
    """One counter from ``GET /webhooks/_stats``."""
    return client.get("/webhooks/_stats").json()["counters"].get(system, {}).get(outcome, 0)
