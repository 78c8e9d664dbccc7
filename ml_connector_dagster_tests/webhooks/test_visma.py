"""Visma Webhook Dispatcher deliveries: base64 HMAC of the raw body, notification id, timestamp window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.visma.webhook import VismaWebhookVerifier, record_of, sign
from ml_connector_dagster.webhooks.contract import Malformed, RecordRef, WebhookRequest
from ml_connector_dagster.webhooks.receiver import build_receiver

from .support import counter, inbox_rows, serve
from .vendor_signing import as_body, visma_headers

SECRET = "vwd-secret-5e2c9a"
ROUTE = "/webhooks/visma"
INVOICE_EVENT = {
    "entity": "SupplierInvoice",
    "event": "StatusChanged",
    "data": {"referenceNumber": "000123", "status": "Open", "lastModifiedDateTime": "2026-03-04T22:11:12Z"},
}


def delivery(
    payload: dict[str, Any] | None = None, *, notification_id: str = "n-1", at: datetime | None = None,
    secret: str = SECRET,
) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    body = as_body(INVOICE_EVENT if payload is None else payload)
    return body, visma_headers(secret, body, notification_id=notification_id, at=at or datetime.now(UTC))


def verifier() -> VismaWebhookVerifier:
    return VismaWebhookVerifier([SECRET], tolerance=timedelta(minutes=5))


def test_a_signed_delivery_is_stored_and_acknowledged(ledger: Ledger) -> None:
    body, headers = delivery()
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 200
    [row] = inbox_rows(ledger)
    assert (row.system, row.event_id, row.payload) == ("visma", "n-1", INVOICE_EVENT)


def test_the_stored_event_names_its_record_and_the_day_it_changed(ledger: Ledger) -> None:
    body, headers = delivery()
    with serve(ledger, verifier()) as client:
        client.post(ROUTE, content=body, headers=headers)
    [row] = inbox_rows(ledger)
    assert row.record_ref == {"entity": "supplier_invoices", "id": "000123"}
    assert row.partition_key == "2026-03-04"


def test_the_signature_is_not_kept_in_the_stored_headers(ledger: Ledger) -> None:
    body, headers = delivery()
    with serve(ledger, verifier()) as client:
        client.post(ROUTE, content=body, headers=headers)
    [row] = inbox_rows(ledger)
    assert headers["x-vwd-signature-v1"] not in str(row.headers)
    assert row.headers["x-vwd-notification-id"] == "n-1"


def test_a_delivery_signed_with_another_secret_is_refused_and_leaves_no_row(ledger: Ledger) -> None:
    body, headers = delivery(secret="someone-elses-secret")
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
        assert counter(client, "visma", "rejected.bad_signature") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_body_changed_after_signing_is_refused(ledger: Ledger) -> None:
    body, headers = delivery()
    tampered = body.replace(b"000123", b"000999")
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=tampered, headers=headers)
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_redelivery_is_acknowledged_and_stored_once(ledger: Ledger) -> None:
    body, headers = delivery()
    with serve(ledger, verifier()) as client:
        first = client.post(ROUTE, content=body, headers=headers)
        again = client.post(ROUTE, content=body, headers=headers)
        assert counter(client, "visma", "duplicate") == 1
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"stored": 0, "duplicates": 1}
    assert len(inbox_rows(ledger)) == 1


def test_a_notification_older_than_the_tolerance_is_refused(ledger: Ledger) -> None:
    body, headers = delivery(at=datetime.now(UTC) - timedelta(minutes=6))
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
        assert counter(client, "visma", "rejected.stale_timestamp") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_notification_dated_in_the_future_beyond_the_tolerance_is_refused(ledger: Ledger) -> None:
    body, headers = delivery(at=datetime.now(UTC) + timedelta(minutes=6))
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 401


def test_a_delivery_without_signature_is_refused(ledger: Ledger) -> None:
    body, headers = delivery()
    del headers["x-vwd-signature-v1"]
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
        assert counter(client, "visma", "rejected.missing_signature") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_delivery_without_timestamp_is_refused(ledger: Ledger) -> None:
    body, headers = delivery()
    del headers["x-vwd-notification-timestamp"]
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 401


def test_an_oversized_delivery_is_refused_with_413(ledger: Ledger) -> None:
    payload = {**INVOICE_EVENT, "padding": "x" * 5000}
    body, headers = delivery(payload)
    with serve(ledger, verifier(), max_body_bytes=4096) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 413
    assert inbox_rows(ledger) == []


def test_a_signed_body_that_is_not_a_json_object_is_a_bad_request(ledger: Ledger) -> None:
    body = b"[1, 2, 3]"
    headers = visma_headers(SECRET, body, notification_id="n-2", at=datetime.now(UTC))
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 400
    assert inbox_rows(ledger) == []


def test_an_old_secret_still_verifies_during_a_rotation(ledger: Ledger) -> None:
    body, headers = delivery(secret="old-secret")
    rotating = VismaWebhookVerifier(["new-secret", "old-secret"])
    with serve(ledger, rotating) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 200


def test_without_a_configured_secret_every_delivery_is_refused(ledger: Ledger) -> None:
    body, headers = delivery()
    with serve(ledger, VismaWebhookVerifier([])) as client:
        response = client.post(ROUTE, content=body, headers=headers)
        assert counter(client, "visma", "rejected.not_configured") == 1
    assert response.status_code == 401


def test_the_notification_id_is_preferred_to_the_event_id_header_which_may_name_the_type() -> None:
    body, headers = delivery(notification_id="n-77")
    [event] = verifier().verify(WebhookRequest(body=body, headers=headers))
    assert event.event_id == "n-77"


def test_a_purchase_order_notification_names_the_order() -> None:
    ref, modified = record_of({"eventType": "PurchaseOrder.StatusChanged", "orderNbr": "PO-0042"})
    assert ref == RecordRef(entity="purchase_orders", id="PO-0042")
    assert modified is None


def test_a_supplier_payment_notification_is_a_supplier_payment_not_a_supplier_or_a_customer_payment() -> None:
    ref, _ = record_of({"event": "SupplierPayment.Created", "entityId": "000123"})
    assert ref == RecordRef(entity="supplier_payments", id="000123")


def test_without_a_modification_time_the_partition_is_the_notification_day() -> None:
    at = datetime(2026, 5, 6, 23, 30, tzinfo=UTC)
    body, headers = delivery({"entity": "SupplierInvoice", "id": "7"}, at=at)
    verifying = VismaWebhookVerifier([SECRET], clock=lambda: at)
    [event] = verifying.verify(WebhookRequest(body=body, headers=headers))
    assert event.partition_key == "2026-05-06"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(payload=st.dictionaries(st.sampled_from(["entity", "type", "data", "id", "referenceNumber",
                                                "lastModifiedDateTime", "primaryKeys", "payload"]) | st.text(max_size=8),
                               json_values, max_size=6))  # fmt: skip
def test_any_signed_json_object_is_stored_or_refused_as_malformed_never_crashes(payload: dict[str, Any]) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    body, headers = delivery(payload, at=at)
    verifying = VismaWebhookVerifier([SECRET], clock=lambda: at)
    try:
        [event] = verifying.verify(WebhookRequest(body=body, headers=headers))
    except Malformed:
        return
    assert event.payload == payload
    assert event.record_ref is None or (event.record_ref.entity and event.record_ref.id)


@pytest.mark.parametrize("stamp", ["1767225600000", "1767225600", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00"])
def test_the_timestamp_may_be_epoch_milliseconds_seconds_or_iso_8601(stamp: str) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    body, headers = delivery(at=at)
    headers["x-vwd-notification-timestamp"] = stamp
    verifying = VismaWebhookVerifier([SECRET], clock=lambda: at)
    assert len(verifying.verify(WebhookRequest(body=body, headers=headers))) == 1


def test_the_signing_helper_for_simulators_matches_the_dispatchers_scheme() -> None:
    body, headers = delivery()
    assert sign(body, SECRET) == headers["x-vwd-signature-v1"]


def test_a_late_retry_is_judged_by_when_it_was_sent_not_when_the_event_happened(ledger: Ledger) -> None:
    body, headers = delivery(at=datetime.now(UTC) - timedelta(hours=2))
    headers["x-vwd-webhook-timestamp"] = str(int(datetime.now(UTC).timestamp() * 1000))
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 200


def test_an_attempt_sent_long_ago_is_refused_whatever_the_event_time(ledger: Ledger) -> None:
    body, headers = delivery()
    headers["x-vwd-webhook-timestamp"] = str(int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1000))
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_the_simulators_deliveries_are_verified_and_placed(ledger: Ledger) -> None:
    from ml_connector_dagster.sandbox.transport import InProcessTransport
    from ml_connector_dagster.sandbox.visma import DEMO_WEBHOOK_SECRET, VismaSimulator

    app = build_receiver(ledger, [VismaWebhookVerifier([DEMO_WEBHOOK_SECRET])])
    transport = InProcessTransport(app)
    simulator = VismaSimulator(size=5, webhook_url="http://receiver/webhooks/visma", webhook_transport=transport)
    try:
        created = simulator.create_supplier_invoice()
        assert simulator.flush_webhooks(10)
    finally:
        simulator.close()
        transport.close()
    [row] = inbox_rows(ledger)
    assert row.record_ref == {"entity": "supplier_invoices", "id": created["referenceNumber"]}
    # The partition is the UTC day; Visma answers Oslo time with its offset (a day ahead from 23:00 UTC).
    assert row.partition_key == datetime.fromisoformat(created["lastModifiedDateTime"]).astimezone(UTC).date().isoformat()
