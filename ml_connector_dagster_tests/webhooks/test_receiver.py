"""The generic receiver: routing, the size limit while reading, verify -> inbox, counters, redaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.webhooks.contract import (
    RecordRef,
    Unauthorized,
    WebhookEvent,
    WebhookRequest,
    parse_json_object,
)
from ml_connector_dagster.webhooks.receiver import build_receiver

from .support import counter, inbox_rows, serve

TOKEN = "demo-token-91c3"


class TokenVerifier:
    """A stand-in vendor: a shared token header, the event id and record in the body."""

    system = "demo"
    sensitive_headers = frozenset({"x-demo-token"})

    def verify(self, request: WebhookRequest) -> Sequence[WebhookEvent]:
        if request.header("x-demo-token") != TOKEN:
            raise Unauthorized("bad_token")
        payload = parse_json_object(request.body)
        ref = RecordRef(entity="things", id=str(payload["id"]))
        return [WebhookEvent(event_id=str(payload["id"]), payload=payload, record_ref=ref, partition_key="2026-01-02")]


class BrokenVerifier(TokenVerifier):
    system = "broken"

    def verify(self, request: WebhookRequest) -> Sequence[WebhookEvent]:
        raise RuntimeError("a bug")


class FailingInbox:
    def append_inbox(self, *args: Any, **kwargs: Any) -> bool:
        raise OSError("database is away")


def post_raw(app: Any, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """POST ``chunks`` through the ASGI interface; returns (status, chunks the app pulled)."""
    pulled = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= len(chunks):
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/webhooks/demo", "raw_path": b"/webhooks/demo", "query_string": b"", "root_path": "",
        "headers": [(b"x-demo-token", TOKEN.encode()), *headers], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8800),
    }  # fmt: skip
    anyio.run(app, scope, receive, send)
    return status, pulled


def test_a_verified_event_is_stored_with_its_record_and_partition(ledger: Ledger) -> None:
    with serve(ledger, TokenVerifier()) as client:
        response = client.post("/webhooks/demo", json={"id": 7}, headers={"x-demo-token": TOKEN})
    assert (response.status_code, response.json()) == (200, {"stored": 1, "duplicates": 0})
    [row] = inbox_rows(ledger)
    assert (row.record_ref, row.partition_key) == ({"entity": "things", "id": "7"}, "2026-01-02")


def test_a_system_without_a_verifier_has_no_route(ledger: Ledger) -> None:
    with serve(ledger, TokenVerifier()) as client:
        response = client.post("/webhooks/visma", json={"id": 7})
    assert response.status_code == 404
    assert inbox_rows(ledger) == []


def test_the_stats_show_every_outcome_per_system(ledger: Ledger) -> None:
    with serve(ledger, TokenVerifier()) as client:
        client.post("/webhooks/demo", json={"id": 1}, headers={"x-demo-token": TOKEN})
        client.post("/webhooks/demo", json={"id": 1}, headers={"x-demo-token": TOKEN})
        client.post("/webhooks/demo", json={"id": 2}, headers={"x-demo-token": "guess"})
        stats = client.get("/webhooks/_stats").json()
    assert stats == {
        "systems": ["demo"],
        "counters": {"demo": {"accepted": 2, "duplicate": 1, "rejected.bad_token": 1, "stored": 1}},
    }


def test_secrets_in_headers_are_masked_before_they_are_stored(ledger: Ledger) -> None:
    headers = {"x-demo-token": TOKEN, "authorization": "Bearer abcdef123456", "x-request-id": "r-1"}
    with serve(ledger, TokenVerifier()) as client:
        client.post("/webhooks/demo", json={"id": 1}, headers=headers)
    [row] = inbox_rows(ledger)
    assert TOKEN not in json.dumps(row.headers)
    assert "abcdef123456" not in json.dumps(row.headers)
    assert row.headers["x-request-id"] == "r-1"


def test_a_declared_oversized_body_is_refused_before_any_of_it_is_read(ledger: Ledger) -> None:
    app = build_receiver(ledger, [TokenVerifier()], max_body_bytes=1024)
    status, pulled = post_raw(app, [b"x" * 512] * 8, [(b"content-length", b"4096")])
    assert (status, pulled) == (413, 0)
    assert app.state.stats.get("demo", "rejected.too_large") == 1
    assert inbox_rows(ledger) == []


def test_an_undeclared_oversized_body_is_cut_off_while_it_is_read(ledger: Ledger) -> None:
    app = build_receiver(ledger, [TokenVerifier()], max_body_bytes=1024)
    status, pulled = post_raw(app, [b"x" * 512] * 100, [])
    assert status == 413
    assert pulled == 3  # the chunk that crossed the limit, and not one more
    assert inbox_rows(ledger) == []


def test_a_body_at_the_limit_is_accepted(ledger: Ledger) -> None:
    body = json.dumps({"id": 5, "pad": ""}).encode()
    body = body.replace(b'""', b'"' + b"x" * (1024 - len(body)) + b'"')
    app = build_receiver(ledger, [TokenVerifier()], max_body_bytes=1024)
    status, _ = post_raw(app, [body[:600], body[600:]], [])
    assert (len(body), status) == (1024, 200)


def test_a_failing_verifier_answers_500_and_stores_nothing(ledger: Ledger) -> None:
    with serve(ledger, BrokenVerifier()) as client:
        response = client.post("/webhooks/broken", json={"id": 1}, headers={"x-demo-token": TOKEN})
        assert counter(client, "broken", "error") == 1
    assert response.status_code == 500
    assert "a bug" not in response.text
    assert inbox_rows(ledger) == []


def test_a_verified_event_the_inbox_cannot_take_is_not_acknowledged() -> None:
    app = build_receiver(FailingInbox(), [TokenVerifier()])  # type: ignore[arg-type]
    status, _ = post_raw(app, [b'{"id": 3}'], [])
    assert status == 503  # so the vendor retries it later
    assert app.state.stats.get("demo", "error.inbox") == 1


def test_one_verifier_per_system(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="one verifier per system"):
        build_receiver(ledger, [TokenVerifier(), TokenVerifier()])


def test_only_post_is_routed_to_a_system(ledger: Ledger) -> None:
    with serve(ledger, TokenVerifier()) as client:
        assert client.get("/webhooks/demo").status_code == 405
