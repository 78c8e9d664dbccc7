"""The Visma client, specified against the simulator over the wire (in-process)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from ml_connector_dagster.core import http
from ml_connector_dagster.core.http import AuthenticationFailed, PreconditionFailed
from ml_connector_dagster.sandbox import visma as sandbox
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.visma.client import VismaClient, VismaEntity, format_visma_timestamp
from ml_connector_dagster.systems.visma.models import as_update_dto
from ml_connector_dagster_tests.visma_sandbox import IN_PROCESS_URL, in_process_client

LONG_AGO = datetime.now(UTC) - timedelta(days=60)
LIST_PATHS = {"/v1/supplierInvoice", "/v1/purchaseorder", "/v1/customerinvoice", "/v1/payment",
              "/v2/journaltransaction", "/v1/supplier"}  # fmt: skip


@pytest.fixture
def sim() -> VismaSimulator:
    return VismaSimulator(size=240)


@pytest.fixture
def client(sim: VismaSimulator) -> Iterator[VismaClient]:
    with in_process_client(sim, page_size=50) as opened:
        yield opened


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Waits the HTTP layer asked for, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(http, "default_sleep", recorded.append)
    return recorded


def recorded_requests(client: VismaClient) -> list[dict[str, Any]]:
    """What the simulator received, from its /_sandbox/requests endpoint."""
    return client.http.get(f"{IN_PROCESS_URL}/_sandbox/requests").json()


def list_calls(client: VismaClient) -> list[dict[str, Any]]:
    return [r for r in recorded_requests(client) if r["method"] == "GET" and r["path"] in LIST_PATHS]


def all_records(client: VismaClient, entity: VismaEntity, since: datetime = LONG_AGO) -> list[dict[str, Any]]:
    return [record for page in client.iter_changed(entity, since) for record in page]


# -- paging ---------------------------------------------------------------------------------


def test_every_list_call_sends_page_number_and_page_size(client: VismaClient) -> None:
    all_records(client, VismaEntity.SUPPLIER_INVOICE)
    list(client.iter_pages(VismaEntity.SUPPLIER))
    calls = list_calls(client)
    assert calls and all({"pageNumber", "pageSize"} <= set(call["query"]) for call in calls)
    assert [call["query"]["pageNumber"] for call in calls if call["path"] == "/v1/supplierInvoice"] == [
        "1", "2", "3", "4", "5"]


def test_all_pages_are_read_well_beyond_a_hundred_records(client: VismaClient, sim: VismaSimulator) -> None:
    records = all_records(client, VismaEntity.SUPPLIER_INVOICE)
    assert len(records) == 240
    assert len({r["referenceNumber"] for r in records}) == 240


def test_a_page_capped_by_max_page_size_is_not_mistaken_for_the_last(
    sim: VismaSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "MAX_PAGE_SIZE", 100)  # the server answers 100 where 500 were asked
    with in_process_client(sim, page_size=500) as client:
        assert len(all_records(client, VismaEntity.SUPPLIER_INVOICE)) == 240


def test_an_endpoint_without_paging_is_read_once(client: VismaClient, sim: VismaSimulator) -> None:
    accounts = [record for page in client.iter_pages(VismaEntity.ACCOUNT) for record in page]
    assert len(accounts) == len(sim.tables[sandbox.ACCOUNTS].keys) > client.page_size
    assert [r["path"] for r in recorded_requests(client) if r["method"] == "GET"].count("/v1/account") == 1


def test_journal_batches_split_across_pages_come_back_whole(client: VismaClient, sim: VismaSimulator) -> None:
    batches = all_records(client, VismaEntity.JOURNAL_TRANSACTION)
    assert len(batches) == len(sim.tables[sandbox.JOURNAL_TRANSACTIONS].keys)
    for batch in batches:
        whole = sim.record(sandbox.JOURNAL_TRANSACTIONS, batch["batchNumber"])
        assert whole is not None
        assert batch["journalTransactionLines"] == whole["journalTransactionLines"]


# -- the lastModifiedDateTime trap ----------------------------------------------------------


def test_changed_since_always_sends_the_condition_and_an_explicit_utc_offset(client: VismaClient) -> None:
    since = datetime(2026, 11, 20, 10, 31, 28, 402000, tzinfo=timezone(timedelta(hours=1)))
    all_records(client, VismaEntity.PURCHASE_ORDER, since)
    all_records(client, VismaEntity.JOURNAL_TRANSACTION, since)
    calls = list_calls(client)
    assert calls
    for call in calls:
        assert call["query"]["lastModifiedDateTime"] == "2026-11-20T09:31:28.402+00:00"
        assert call["query"]["lastModifiedDateTimeCondition"] == ">="


def test_a_naive_since_is_refused_rather_than_read_in_the_servers_zone() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_visma_timestamp(datetime(2026, 1, 5, 10, 0))


def test_changed_since_returns_exactly_the_records_modified_from_then(client: VismaClient) -> None:
    everything = all_records(client, VismaEntity.SUPPLIER_INVOICE)
    moments = sorted(datetime.fromisoformat(r["lastModifiedDateTime"]) for r in everything)
    since = moments[len(moments) // 2]
    changed = all_records(client, VismaEntity.SUPPLIER_INVOICE, since)
    assert len(changed) == sum(1 for moment in moments if moment >= since)


def test_until_leaves_out_later_changes(client: VismaClient) -> None:
    everything = all_records(client, VismaEntity.PAYMENT)
    moments = sorted(datetime.fromisoformat(r["lastModifiedDateTime"]) for r in everything)
    until = moments[10]
    pages = client.iter_changed(VismaEntity.PAYMENT, LONG_AGO, until)
    assert sorted(datetime.fromisoformat(r["lastModifiedDateTime"]) for p in pages for r in p) == moments[:10]


def test_supplier_payments_are_read_whole_across_pages_and_a_new_one_past_the_cursor(
    sim: VismaSimulator, client: VismaClient
) -> None:
    everything = all_records(client, VismaEntity.SUPPLIER_PAYMENT)
    latest = max(datetime.fromisoformat(r["lastModifiedDateTime"]) for r in everything)
    invoice = next(i for i in sim.collections()["supplier_invoices"] if i["status"] == "Open")
    paid = sim.pay_supplier_invoices({invoice["referenceNumber"]: None})

    since_latest = all_records(client, VismaEntity.SUPPLIER_PAYMENT, latest + timedelta(milliseconds=1))

    assert len(everything) == len({r["refNbr"] for r in everything}) == len(sim.collections()["supplier_payments"]) - 1
    assert [r["refNbr"] for r in since_latest] == [paid["refNbr"]]


# -- single records, versions, creates -------------------------------------------------------


def test_get_returns_the_record_and_its_etag(client: VismaClient) -> None:
    record, etag = client.get(VismaEntity.SUPPLIER_INVOICE, "000001")
    assert record["referenceNumber"] == "000001"
    assert etag == f'"{record["timeStamp"]}"'


def test_update_with_the_current_etag_applies_and_returns_the_new_one(client: VismaClient, sim: VismaSimulator) -> None:
    _, etag = client.get(VismaEntity.SUPPLIER_INVOICE, "000002")
    new_etag = client.update(VismaEntity.SUPPLIER_INVOICE, "000002", as_update_dto({"description": "Checked"}), etag)
    assert new_etag and new_etag != etag
    assert sim.supplier_invoice("000002")["description"] == "Checked"
    put = [r for r in recorded_requests(client) if r["method"] == "PUT"]
    assert put[0]["headers"]["if-match"] == etag


def test_update_with_a_stale_etag_raises_precondition_failed(client: VismaClient, sim: VismaSimulator) -> None:
    _, etag = client.get(VismaEntity.SUPPLIER_INVOICE, "000003")
    sim.update_supplier_invoice("000003", description="Changed in Visma meanwhile")
    with pytest.raises(PreconditionFailed) as raised:
        client.update(VismaEntity.SUPPLIER_INVOICE, "000003", as_update_dto({"description": "Mine"}), etag)
    assert raised.value.status_code == 412
    assert sim.supplier_invoice("000003")["description"] == "Changed in Visma meanwhile"


def test_create_returns_the_id_from_location(client: VismaClient, sim: VismaSimulator) -> None:
    body = as_update_dto({"supplierNumber": "10001", "description": "Office chairs", "documentType": "Invoice"})
    created = client.create(VismaEntity.SUPPLIER_INVOICE, body)
    assert sim.supplier_invoice(created)["description"] == "Office chairs"


# -- rate limits and auth ---------------------------------------------------------------------


def test_a_429_is_retried_after_the_retry_after_it_asked_for(
    client: VismaClient, sim: VismaSimulator, sleeps: list[float]
) -> None:
    sim.set_faults(FaultPlan(rate_limit_burst=2, retry_after_s=3, paths=["^/v1/"]))
    record, _ = client.get(VismaEntity.PURCHASE_ORDER, "PO000001")
    assert record["orderNbr"] == "PO000001"
    assert sum(1 for seconds in sleeps if seconds >= 3) == 2


def test_an_expired_token_is_replaced_once_and_the_read_goes_on(client: VismaClient, sim: VismaSimulator) -> None:
    client.get(VismaEntity.SUPPLIER, "10001")
    sim.set_faults(FaultPlan(expire_tokens=True))
    record, _ = client.get(VismaEntity.SUPPLIER, "10002")
    assert record["number"] == "10002"
    assert [r["path"] for r in recorded_requests(client)].count("/connect/token") == 2


def test_a_401_after_a_token_refresh_raises_instead_of_reading_nothing(
    client: VismaClient, sim: VismaSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim, "valid_token", lambda *_args, **_kwargs: None)  # Visma rejects every token
    with pytest.raises(AuthenticationFailed) as raised:
        all_records(client, VismaEntity.SUPPLIER_INVOICE)
    assert raised.value.status_code == 401
    assert [r["path"] for r in recorded_requests(client)].count("/connect/token") == 2


def test_refused_credentials_raise_without_revealing_the_secret(sim: VismaSimulator) -> None:
    with in_process_client(sim, client_secret="wrong-secret-value") as client, \
            pytest.raises(AuthenticationFailed) as raised:  # fmt: skip
        client.get(VismaEntity.SUPPLIER, "10001")
    assert "wrong-secret-value" not in str(raised.value)
    assert "wrong-secret-value" not in repr(client)


# -- API flavours --------------------------------------------------------------------------------


def test_the_legacy_flavour_sends_the_company_and_gets_records(sim: VismaSimulator) -> None:
    with in_process_client(sim, flavour="legacy", base_path=sandbox.LEGACY_PREFIX) as client:
        records = all_records(client, VismaEntity.PURCHASE_ORDER)
        calls = [r for r in recorded_requests(client) if r["path"].endswith("/v1/purchaseorder")]
    assert len(records) == 120
    assert all(call["headers"]["ipp-company-id"] == sandbox.DEMO_COMPANY_ID for call in calls)
    assert all(call["headers"]["ipp-application-type"] for call in calls)


def test_the_legacy_flavour_without_a_company_is_refused_before_any_call() -> None:
    with pytest.raises(ValueError, match="company_id"):
        VismaClient.build(base_url=IN_PROCESS_URL, token_url=IN_PROCESS_URL, client_id="id", client_secret="s",
                          tenant_id="t", api_flavour="legacy", company_id=None)


def test_the_connect_flavour_sends_no_company_header(client: VismaClient) -> None:
    client.get(VismaEntity.SUPPLIER, "10001")
    assert all("ipp-company-id" not in r["headers"] for r in recorded_requests(client))


def test_an_unexpected_body_is_an_error_not_an_empty_read(sim: VismaSimulator) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(200, json={"value": []})

    with in_process_client(sim, transport=httpx.MockTransport(handler)) as client, pytest.raises(http.ApiError):
        all_records(client, VismaEntity.SUPPLIER_INVOICE)
