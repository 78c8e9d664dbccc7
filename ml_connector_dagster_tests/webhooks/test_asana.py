"""Asana: handshakes only while the connector registers, then X-Hook-Signature with the vaulted secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.systems.asana.webhook import (
    AsanaWebhookVerifier,
    cancel_handshake,
    expect_handshake,
    secret_name,
    target_url,
)

from .support import counter, inbox_rows, serve
from .vendor_signing import as_body, hex_hmac

HOOK_SECRET = "asana-hook-secret-3f9b7c1e"
TASK_CHANGED = {
    "user": {"gid": "1201", "resource_type": "user"},
    "created_at": "2026-03-10T12:00:00.000Z",
    "action": "changed",
    "resource": {"gid": "1209001", "resource_type": "task"},
    "parent": None,
    "change": {"field": "completed", "action": "changed"},
}
STORY_ADDED = {
    "created_at": "2026-03-11T01:00:00.000Z",
    "action": "added",
    "resource": {"gid": "1209777", "resource_type": "story"},
    "parent": {"gid": "1209001", "resource_type": "task"},
}


def route(hook: str) -> str:
    return target_url("http://testserver", hook).removeprefix("http://testserver")


def handshake(client: Any, hook: str, secret: str = HOOK_SECRET) -> Any:
    return client.post(route(hook), headers={"X-Hook-Secret": secret})


def registered(ledger: Ledger, vault: Vault) -> str:
    """A hook whose handshake went through, as after a successful ``POST /webhooks``."""
    hook = expect_handshake(ledger)
    vault.put(secret_name(hook), HOOK_SECRET)
    cancel_handshake(ledger, hook)
    return hook


def events_delivery(*changes: dict[str, Any], secret: str = HOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    body = as_body({"events": list(changes)})
    return body, {"X-Hook-Signature": hex_hmac(secret, body)}


def test_an_expected_handshake_is_echoed_and_its_secret_vaulted(ledger: Ledger, vault: Vault) -> None:
    hook = expect_handshake(ledger)
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        response = handshake(client, hook)
    assert response.status_code == 200
    assert response.headers["X-Hook-Secret"] == HOOK_SECRET
    assert vault.get(secret_name(hook)) == HOOK_SECRET
    assert inbox_rows(ledger) == []


def test_the_handshake_secret_is_stored_encrypted(ledger: Ledger, vault: Vault) -> None:
    hook = expect_handshake(ledger)
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        handshake(client, hook)
    with ledger.engine.connect() as connection:
        raw = connection.exec_driver_sql("SELECT ciphertext FROM vault_entries").scalars().all()
    assert raw and all(HOOK_SECRET not in value for value in raw)


def test_an_unsolicited_handshake_plants_no_secret(ledger: Ledger, vault: Vault) -> None:
    hook = "Zq3" + "x" * 21
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        response = handshake(client, hook)
        assert counter(client, "asana", "rejected.unsolicited_handshake") == 1
    assert response.status_code == 401
    assert "X-Hook-Secret" not in response.headers
    assert vault.names() == []


def test_an_unsolicited_handshake_cannot_replace_a_registered_secret(ledger: Ledger, vault: Vault) -> None:
    hook = registered(ledger, vault)
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        response = handshake(client, hook, secret="attacker-chosen")
    assert response.status_code == 401
    assert vault.get(secret_name(hook)) == HOOK_SECRET


def test_a_handshake_after_its_window_closed_is_refused(ledger: Ledger, vault: Vault) -> None:
    hook = expect_handshake(ledger, ttl=timedelta(seconds=5), now=datetime.now(UTC) - timedelta(minutes=1))
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        response = handshake(client, hook)
    assert response.status_code == 401
    assert vault.names() == []


def test_an_expectation_is_honoured_once(ledger: Ledger, vault: Vault) -> None:
    hook = expect_handshake(ledger)
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        first = handshake(client, hook)
        second = handshake(client, hook, secret="second-secret")
    assert (first.status_code, second.status_code) == (200, 401)
    assert vault.get(secret_name(hook)) == HOOK_SECRET


def test_a_signed_delivery_is_stored_one_event_per_change(ledger: Ledger, vault: Vault) -> None:
    hook = registered(ledger, vault)
    body, headers = events_delivery(TASK_CHANGED, STORY_ADDED)
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        response = client.post(route(hook), content=body, headers=headers)
    assert response.status_code == 200
    rows = inbox_rows(ledger)
    assert [row.record_ref for row in rows] == [{"entity": "tasks", "id": "1209001"}] * 2
    assert [row.partition_key for row in rows] == ["2026-03-10", "2026-03-11"]


def test_a_delivery_signed_with_another_secret_is_refused(ledger: Ledger, vault: Vault) -> None:
    hook = registered(ledger, vault)
    body, headers = events_delivery(TASK_CHANGED, secret="wrong")
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        response = client.post(route(hook), content=body, headers=headers)
        assert counter(client, "asana", "rejected.bad_signature") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_body_changed_after_signing_is_refused(ledger: Ledger, vault: Vault) -> None:
    hook = registered(ledger, vault)
    body, headers = events_delivery(TASK_CHANGED)
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        response = client.post(route(hook), content=body.replace(b"1209001", b"1209002"), headers=headers)
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_repeated_change_is_acknowledged_and_stored_once(ledger: Ledger, vault: Vault) -> None:
    hook = registered(ledger, vault)
    body, headers = events_delivery(TASK_CHANGED)
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        statuses = [client.post(route(hook), content=body, headers=headers).status_code for _ in range(2)]
    assert statuses == [200, 200]
    assert len(inbox_rows(ledger)) == 1


def test_a_delivery_without_signature_is_refused(ledger: Ledger, vault: Vault) -> None:
    hook = registered(ledger, vault)
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        response = client.post(route(hook), content=as_body({"events": [TASK_CHANGED]}))
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_delivery_for_an_unknown_hook_is_refused(ledger: Ledger, vault: Vault) -> None:
    body, headers = events_delivery(TASK_CHANGED)
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        response = client.post("/webhooks/asana", content=body, headers=headers)
        assert counter(client, "asana", "rejected.unknown_hook") == 1
    assert response.status_code == 401


def test_an_oversized_delivery_is_refused_with_413(ledger: Ledger, vault: Vault) -> None:
    hook = registered(ledger, vault)
    body, headers = events_delivery(*[TASK_CHANGED] * 40)
    with serve(ledger, AsanaWebhookVerifier(ledger, vault), max_body_bytes=4096) as client:
        response = client.post(route(hook), content=body, headers=headers)
    assert response.status_code == 413
    assert inbox_rows(ledger) == []


def test_a_heartbeat_is_acknowledged_and_stores_nothing(ledger: Ledger, vault: Vault) -> None:
    hook = registered(ledger, vault)
    body, headers = events_delivery()
    with serve(ledger, AsanaWebhookVerifier(ledger, vault)) as client:
        response = client.post(route(hook), content=body, headers=headers)
    assert response.status_code == 200
    assert inbox_rows(ledger) == []
