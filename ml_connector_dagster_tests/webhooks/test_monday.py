"""Monday.com: the registration challenge echo, and app JWTs (signing secret) on every event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.monday.webhook import MondayWebhookVerifier

from .support import counter, inbox_rows, serve
from .vendor_signing import as_body, hs256_jwt

SIGNING_SECRET = "monday-signing-secret-2d8e4a6c0b1f3e5d"
ROUTE = "/webhooks/monday"
STATUS_CHANGED = {
    "event": {
        "app": "monday",
        "type": "update_column_value",
        "triggerTime": "2026-06-01T09:30:00.000Z",
        "subscriptionId": 73759690,
        "boardId": 3001,
        "pulseId": 4002,
        "columnId": "status",
        "value": {"label": {"text": "Received"}},
        "triggerUuid": "2c0b5d7e-monday-1",
    }
}


def verifier() -> MondayWebhookVerifier:
    return MondayWebhookVerifier(SIGNING_SECRET, max_age=timedelta(minutes=5))


def signed(payload: dict[str, Any] | None = None, *, secret: str = SIGNING_SECRET,
           issued_at: datetime | None = None) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    token = hs256_jwt(secret, issued_at=issued_at or datetime.now(UTC), ttl=timedelta(minutes=1), accountId=1)
    return as_body(STATUS_CHANGED if payload is None else payload), {"authorization": token}


def test_a_challenge_is_echoed_as_the_same_json(ledger: Ledger) -> None:
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, json={"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        assert counter(client, "monday", "challenge") == 1
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert inbox_rows(ledger) == []


def test_a_signed_challenge_is_echoed_too(ledger: Ledger) -> None:
    body, headers = signed({"challenge": "abc"})
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.json() == {"challenge": "abc"}


def test_only_a_bare_challenge_is_echoed_without_a_jwt(ledger: Ledger) -> None:
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, json={"challenge": "abc", "event": STATUS_CHANGED["event"]})
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_an_event_with_a_valid_jwt_is_stored(ledger: Ledger) -> None:
    body, headers = signed()
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 200
    [row] = inbox_rows(ledger)
    assert row.event_id == "2c0b5d7e-monday-1"
    assert row.record_ref == {"entity": "items", "id": "4002", "board_id": "3001"}
    assert row.partition_key == "2026-06-01"
    assert headers["authorization"] not in str(row.headers)


def test_a_bearer_prefixed_jwt_is_accepted(ledger: Ledger) -> None:
    body, headers = signed()
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers={"authorization": f"Bearer {headers['authorization']}"})
    assert response.status_code == 200


def test_a_jwt_signed_with_another_secret_is_refused(ledger: Ledger) -> None:
    body, headers = signed(secret="another-apps-signing-secret-0000000000")
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
        assert counter(client, "monday", "rejected.bad_signature") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_an_event_without_a_jwt_is_refused(ledger: Ledger) -> None:
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=as_body(STATUS_CHANGED))
        assert counter(client, "monday", "rejected.missing_signature") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_an_expired_jwt_is_refused(ledger: Ledger) -> None:
    body, headers = signed(issued_at=datetime.now(UTC) - timedelta(minutes=3))
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_retried_event_is_acknowledged_and_stored_once(ledger: Ledger) -> None:
    body, headers = signed()
    with serve(ledger, verifier()) as client:
        statuses = [client.post(ROUTE, content=body, headers=headers).status_code for _ in range(2)]
    assert statuses == [200, 200]
    assert len(inbox_rows(ledger)) == 1


def test_an_oversized_event_is_refused_with_413(ledger: Ledger) -> None:
    body, headers = signed({"event": {**STATUS_CHANGED["event"], "textBody": "x" * 5000}})
    with serve(ledger, verifier(), max_body_bytes=4096) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 413
    assert inbox_rows(ledger) == []


def test_a_signed_body_without_an_event_is_a_bad_request(ledger: Ledger) -> None:
    body, headers = signed({"something": "else"})
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 400
