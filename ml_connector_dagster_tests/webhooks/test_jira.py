"""Jira deliveries: OAuth-app JWTs (HS256, client secret) and admin X-Hub-Signature HMACs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.jira.webhook import JiraWebhookVerifier

from .support import counter, inbox_rows, serve
from .vendor_signing import as_body, hex_hmac, hs256_jwt

CLIENT_SECRET = "jira-app-secret-81f2-0c9d3e7a5b1f6d2e8a4c"
HUB_SECRET = "jira-admin-secret-4c7d"
ROUTE = "/webhooks/jira"
ISSUE_UPDATED = {
    "timestamp": 1767225600000,
    "webhookEvent": "jira:issue_updated",
    "issue": {"id": "10042", "key": "FIN-42", "fields": {"updated": "2026-02-03T23:59:00.000+0000"}},
}


def verifier() -> JiraWebhookVerifier:
    return JiraWebhookVerifier(
        client_secret=CLIENT_SECRET, webhook_secret=HUB_SECRET, max_age=timedelta(minutes=5)
    )


def jwt_delivery(
    payload: dict[str, Any] | None = None, *, secret: str = CLIENT_SECRET, issued_at: datetime | None = None,
    identifier: str = "wh-1",
) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    token = hs256_jwt(secret, issued_at=issued_at or datetime.now(UTC), iss="app-client-id")
    body = as_body(ISSUE_UPDATED if payload is None else payload)
    return body, {"authorization": f"Bearer {token}", "x-atlassian-webhook-identifier": identifier}


def hub_delivery(*, secret: str = HUB_SECRET, identifier: str = "wh-2") -> tuple[bytes, dict[str, str]]:
    body = as_body(ISSUE_UPDATED)
    return body, {"x-hub-signature": f"sha256={hex_hmac(secret, body)}", "x-atlassian-webhook-identifier": identifier}


def test_an_app_delivery_with_a_valid_jwt_is_stored(ledger: Ledger) -> None:
    body, headers = jwt_delivery()
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 200
    [row] = inbox_rows(ledger)
    assert (row.event_id, row.record_ref) == ("wh-1", {"entity": "issues", "id": "10042", "key": "FIN-42"})
    assert row.partition_key == "2026-02-03"


def test_the_jwt_is_not_kept_in_the_stored_headers(ledger: Ledger) -> None:
    body, headers = jwt_delivery()
    with serve(ledger, verifier()) as client:
        client.post(ROUTE, content=body, headers=headers)
    [row] = inbox_rows(ledger)
    assert headers["authorization"].split()[1] not in str(row.headers)


def test_an_admin_delivery_with_a_valid_hub_signature_is_stored(ledger: Ledger) -> None:
    body, headers = hub_delivery()
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 200
    assert [row.event_id for row in inbox_rows(ledger)] == ["wh-2"]


def test_a_jwt_signed_with_another_secret_is_refused(ledger: Ledger) -> None:
    body, headers = jwt_delivery(secret="not-the-app-secret-but-just-as-long-9f3a")
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
        assert counter(client, "jira", "rejected.bad_signature") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_hub_signature_made_with_another_secret_is_refused(ledger: Ledger) -> None:
    body, headers = hub_delivery(secret="guess")
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_body_changed_after_its_hub_signature_is_refused(ledger: Ledger) -> None:
    body, headers = hub_delivery()
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body.replace(b"FIN-42", b"FIN-43"), headers=headers)
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_retried_delivery_keeps_its_identifier_and_is_stored_once(ledger: Ledger) -> None:
    body, headers = jwt_delivery()
    with serve(ledger, verifier()) as client:
        responses = [client.post(ROUTE, content=body, headers=headers) for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert len(inbox_rows(ledger)) == 1


def test_an_expired_jwt_is_refused(ledger: Ledger) -> None:
    body, headers = jwt_delivery(issued_at=datetime.now(UTC) - timedelta(minutes=10))
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
        assert counter(client, "jira", "rejected.stale_token") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_jwt_issued_long_ago_is_refused_even_with_a_distant_expiry(ledger: Ledger) -> None:
    token = hs256_jwt(CLIENT_SECRET, issued_at=datetime.now(UTC) - timedelta(hours=1), ttl=timedelta(days=1))
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=as_body(ISSUE_UPDATED), headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_a_jwt_issued_in_the_future_is_refused(ledger: Ledger) -> None:
    body, headers = jwt_delivery(issued_at=datetime.now(UTC) + timedelta(minutes=10))
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 401


def test_a_jwt_without_an_expiry_is_refused(ledger: Ledger) -> None:
    token = jwt.encode({"iat": int(datetime.now(UTC).timestamp())}, CLIENT_SECRET, algorithm="HS256")
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=as_body(ISSUE_UPDATED), headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_an_unsigned_jwt_is_refused(ledger: Ledger) -> None:
    now = int(datetime.now(UTC).timestamp())
    token = jwt.encode({"iat": now, "exp": now + 60}, key=None, algorithm="none")
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=as_body(ISSUE_UPDATED), headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_delivery_without_jwt_or_signature_is_refused(ledger: Ledger) -> None:
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=as_body(ISSUE_UPDATED))
        assert counter(client, "jira", "rejected.missing_signature") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_an_oversized_delivery_is_refused_with_413(ledger: Ledger) -> None:
    body, headers = jwt_delivery({**ISSUE_UPDATED, "changelog": {"items": ["x" * 5000]}})
    with serve(ledger, verifier(), max_body_bytes=4096) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 413
    assert inbox_rows(ledger) == []


def test_a_delivery_without_identifier_is_deduped_by_its_body(ledger: Ledger) -> None:
    body, headers = hub_delivery()
    del headers["x-atlassian-webhook-identifier"]
    with serve(ledger, verifier()) as client:
        client.post(ROUTE, content=body, headers=headers)
        client.post(ROUTE, content=body, headers=headers)
    assert len(inbox_rows(ledger)) == 1


def test_the_simulators_admin_deliveries_are_verified_and_placed(ledger: Ledger) -> None:
    from ml_connector_dagster.sandbox.jira import DEMO_WEBHOOK_SECRET, JiraSimulator
    from ml_connector_dagster.sandbox.transport import InProcessTransport
    from ml_connector_dagster.webhooks.receiver import build_receiver

    app = build_receiver(ledger, [JiraWebhookVerifier(webhook_secret=DEMO_WEBHOOK_SECRET)])
    transport = InProcessTransport(app)
    simulator = JiraSimulator(webhook_url="http://receiver/webhooks/jira", webhook_transport=transport)
    try:
        key = next(iter(simulator.keys))
        simulator.add_comment(key, "Checked against the PO.")
        assert simulator.flush_webhooks(10)
    finally:
        simulator.close()
        transport.close()
    rows = inbox_rows(ledger)
    assert rows and rows[-1].record_ref is not None
    assert rows[-1].record_ref["key"] == key
