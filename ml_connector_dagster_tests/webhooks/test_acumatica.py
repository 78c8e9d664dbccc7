"""Acumatica push notifications: a static header compared in constant time, one event per changed row."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.acumatica.webhook import AcumaticaWebhookVerifier, entity_of_query

from .support import counter, inbox_rows, serve
from .vendor_signing import as_body

TOKEN = "acu-push-token-6b1f0e"
HEADER = "X-Push-Token"
ROUTE = "/webhooks/acumatica"
BILL = {"ReferenceNbr": {"value": "000045"}, "Status": {"value": "On Hold"},
        "LastModifiedDateTime": {"value": "2026-04-01T08:00:00+00:00"}}  # fmt: skip
NOTIFICATION: dict[str, Any] = {
    "Inserted": [BILL],
    "Deleted": [],
    "Query": "BillsOnHold",
    "CompanyId": "Company",
    "Id": "5f8e1d2c-0000-4a6b-9c3d-1e2f3a4b5c6d",
    "TimeStamp": 637000000000,
}


def verifier() -> AcumaticaWebhookVerifier:
    return AcumaticaWebhookVerifier(TOKEN, header_name=HEADER, query_entities={"BillsOnHold": "bills"})


def test_a_notification_with_the_configured_header_is_stored_row_by_row(ledger: Ledger) -> None:
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=as_body(NOTIFICATION), headers={HEADER: TOKEN})
    assert response.status_code == 200
    [row] = inbox_rows(ledger)
    assert row.record_ref == {"entity": "bills", "id": "000045"}
    assert row.partition_key == "2026-04-01"
    assert row.payload["Inserted"] == [BILL]


def test_the_header_value_is_masked_in_the_stored_headers(ledger: Ledger) -> None:
    with serve(ledger, verifier()) as client:
        client.post(ROUTE, content=as_body(NOTIFICATION), headers={HEADER: TOKEN})
    [row] = inbox_rows(ledger)
    assert TOKEN not in str(row.headers)


def test_a_wrong_header_value_is_refused(ledger: Ledger) -> None:
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=as_body(NOTIFICATION), headers={HEADER: TOKEN[:-1] + "x"})
        assert counter(client, "acumatica", "rejected.bad_token") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_missing_header_is_refused(ledger: Ledger) -> None:
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=as_body(NOTIFICATION))
        assert counter(client, "acumatica", "rejected.missing_signature") == 1
    assert response.status_code == 401
    assert inbox_rows(ledger) == []


def test_a_resent_notification_is_acknowledged_and_stored_once(ledger: Ledger) -> None:
    with serve(ledger, verifier()) as client:
        responses = [client.post(ROUTE, content=as_body(NOTIFICATION), headers={HEADER: TOKEN}) for _ in range(2)]
    assert [response.status_code for response in responses] == [200, 200]
    assert len(inbox_rows(ledger)) == 1


def test_an_oversized_notification_is_refused_with_413(ledger: Ledger) -> None:
    big = {**NOTIFICATION, "Inserted": [{**BILL, "Description": {"value": "x" * 5000}}]}
    with serve(ledger, verifier(), max_body_bytes=4096) as client:
        response = client.post(ROUTE, content=as_body(big), headers={HEADER: TOKEN})
    assert response.status_code == 413
    assert inbox_rows(ledger) == []


def test_an_update_stores_the_new_row_only(ledger: Ledger) -> None:
    old = {**BILL, "Status": {"value": "Balanced"}}
    update = {**NOTIFICATION, "Deleted": [old]}
    with serve(ledger, verifier()) as client:
        client.post(ROUTE, content=as_body(update), headers={HEADER: TOKEN})
    assert [row.payload.get("Inserted") for row in inbox_rows(ledger)] == [[BILL]]


def test_a_deletion_is_stored_as_its_own_event(ledger: Ledger) -> None:
    deletion = {**NOTIFICATION, "Inserted": [], "Deleted": [BILL]}
    with serve(ledger, verifier()) as client:
        client.post(ROUTE, content=as_body(deletion), headers={HEADER: TOKEN})
    [row] = inbox_rows(ledger)
    assert row.payload["Deleted"] == [BILL]
    assert row.record_ref == {"entity": "bills", "id": "000045"}


def test_a_notification_whose_rows_are_not_lists_is_a_bad_request(ledger: Ledger) -> None:
    with serve(ledger, verifier()) as client:
        response = client.post(ROUTE, content=as_body({**NOTIFICATION, "Inserted": "nope"}), headers={HEADER: TOKEN})
    assert response.status_code == 400
    assert inbox_rows(ledger) == []


def test_an_unconfigured_query_is_filed_under_its_snake_case_name() -> None:
    assert entity_of_query("PurchaseOrdersPendingApproval", {}) == "purchase_orders_pending_approval"


@given(st.text(max_size=40))
def test_every_query_name_gets_a_non_empty_entity(query: str) -> None:
    assert entity_of_query(query, {})
