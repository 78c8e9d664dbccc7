"""What the monday tests share: raw GraphQL calls, clients wired to the simulator, a verifying receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from ml_connector_dagster.core.http import RateLimiter
from ml_connector_dagster.sandbox.monday import MondaySimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.monday.client import ComplexityBudget, MondayClient
from ml_connector_dagster.systems.monday.webhook import MondayWebhookVerifier
from ml_connector_dagster.webhooks.contract import Reply, WebhookRejected, WebhookRequest

IN_PROCESS_URL = "http://monday.test"


def unlimited() -> RateLimiter:
    """A request-rate budget the tests never wait on (a pause learned from Retry-After included)."""
    return RateLimiter(10_000, 10_000, sleep=lambda seconds: None)


@contextmanager
def raw_api(sim: MondaySimulator, *, token: str | None = None, version: str | None = None) -> Iterator[httpx.Client]:
    """A bare httpx client on ``sim``'s ``/v2`` with the demo token (or ``token``) sent raw."""
    headers = {"Authorization": sim.api_token if token is None else token}
    if version is not None:
        headers["API-Version"] = version
    transport = InProcessTransport(sim.app)
    try:
        with httpx.Client(transport=transport, base_url=IN_PROCESS_URL, headers=headers) as client:
            yield client
    finally:
        transport.close()


def post(client: httpx.Client, query: str, variables: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    """POST one GraphQL document to ``/v2``."""
    return client.post("/v2", json={"query": query, "variables": variables or {}}, headers=headers)


@contextmanager
def monday_client(sim: MondaySimulator, **overrides: Any) -> Iterator[MondayClient]:
    """A :class:`MondayClient` talking to ``sim`` in this process (no real waits unless ``sleep`` says)."""
    transport = InProcessTransport(sim.app)
    settings: dict[str, Any] = {
        "transport": transport, "rate_limiter": unlimited(), "budget": ComplexityBudget(sim.budget.per_minute),
        "sleep": sim_sleeper(sim), **overrides,
    }  # fmt: skip
    client = MondayClient.connect(IN_PROCESS_URL, sim.api_token, **settings)
    try:
        yield client
    finally:
        client.close()
        transport.close()


def sim_sleeper(sim: MondaySimulator, slept: list[float] | None = None) -> Callable[[float], None]:
    """A ``sleep`` that moves the simulator's clock instead of waiting (and notes how long)."""

    def sleep(seconds: float) -> None:
        if slept is not None:
            slept.append(seconds)
        sim.clock.advance(seconds)

    return sleep


class VerifyingReceiver:
    """The connector's side of monday webhooks: MondayWebhookVerifier behind an httpx transport.

    Answers what the receiver would: the echo for a challenge, 200 for a verified event, 401/400 for
    a rejected one. ``fail_next`` makes the next N deliveries answer 503.
    """

    def __init__(self, signing_secret: str, clock: Callable[[], Any], *, echo: bool = True) -> None:
        self.verifier = MondayWebhookVerifier(signing_secret, clock=clock)
        self.echo = echo
        self.events: list[dict[str, Any]] = []
        self.challenges: list[str] = []
        self.rejected: list[str] = []
        self.fail_next = 0
        self._lock = threading.Lock()
        self.transport = httpx.MockTransport(self)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            if self.fail_next:
                self.fail_next -= 1
                return httpx.Response(503)
        try:
            outcome = self.verifier.verify(WebhookRequest(body=request.read(), headers=dict(request.headers)))
        except WebhookRejected as exc:
            with self._lock:
                self.rejected.append(exc.reason)
            return httpx.Response(exc.status_code)
        if isinstance(outcome, Reply):
            with self._lock:
                self.challenges.append(outcome.body["challenge"] if outcome.body else "")
            return httpx.Response(outcome.status_code, json=outcome.body if self.echo else {"challenge": "wrong"})
        with self._lock:
            self.events.extend(event.payload["event"] for event in outcome)
        return httpx.Response(200, json={})


def graphql_body(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The document and variables of a recorded ``/v2`` request."""
    body = record["body"] if isinstance(record["body"], dict) else json.loads(record["body"])
    return body["query"], body.get("variables") or {}
