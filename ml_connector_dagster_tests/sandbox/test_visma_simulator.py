"""The Visma.net ERP simulator: the real API's contract and traps, reproduced and never softened."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from ml_connector_dagster.sandbox.demo_data import CURRENCY_RATES_NOK, visma_datetime
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.sandbox.visma import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_COMPANY_ID,
    DEMO_SCOPE,
    DEMO_TENANT_ID,
    DEMO_WEBHOOK_SECRET,
    SUPPLIER_UPDATE_MEMBERS,
    VismaSimulator,
    parse_modified_value,
)

BASE_URL = "http://visma.sandbox"
START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
OSLO = ZoneInfo("Europe/Oslo")
SPEC = Path(__file__).resolve().parents[2] / "specs" / "visma-net-v1.swagger.json"
LEGACY = "/API/controller/api"


def token_form(**overrides: str | None) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "scope": DEMO_SCOPE,
        "tenant_id": DEMO_TENANT_ID,
        **overrides,
    }
    return {k: v for k, v in form.items() if v is not None}


@contextmanager
def connect(sim: VismaSimulator) -> Iterator[httpx.Client]:
    """An in-process client already holding a bearer token."""
    with httpx.Client(transport=InProcessTransport(sim.app), base_url=BASE_URL) as http:
        token = http.post("/connect/token", data=token_form()).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


@pytest.fixture
def sim() -> Iterator[VismaSimulator]:
    simulator = VismaSimulator(seed=7, size=200, start=START)
    yield simulator
    simulator.close()


@pytest.fixture
def api(sim: VismaSimulator) -> Iterator[httpx.Client]:
    with connect(sim) as http:
        yield http


def read_all(api: httpx.Client, path: str, page_size: int = 50, **params: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for page_number in range(1, 10_000):
        page = api.get(path, params={**params, "pageNumber": page_number, "pageSize": page_size}).json()
        records.extend(page)
        if len(page) < page_size:
            return records
    raise AssertionError("paging never ended")


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def numbers(records: list[dict[str, Any]]) -> list[str]:
    return [r["referenceNumber"] for r in records]


# -- token -----------------------------------------------------------------------------------


def test_token_is_issued_for_client_credentials_with_tenant(sim: VismaSimulator) -> None:
    with httpx.Client(transport=InProcessTransport(sim.app), base_url=BASE_URL) as http:
        body = http.post("/connect/token", data=token_form()).json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == DEMO_SCOPE
    assert "refresh_token" not in body


def test_token_refuses_a_wrong_secret_as_invalid_client(sim: VismaSimulator) -> None:
    with httpx.Client(transport=InProcessTransport(sim.app), base_url=BASE_URL) as http:
        response = http.post("/connect/token", data=token_form(client_secret="guess"))
    assert (response.status_code, response.json()) == (400, {"error": "invalid_client"})


@pytest.mark.parametrize("tenant", [None, "00000000-0000-0000-0000-000000000000"])
def test_token_needs_the_known_tenant(sim: VismaSimulator, tenant: str | None) -> None:
    with httpx.Client(transport=InProcessTransport(sim.app), base_url=BASE_URL) as http:
        response = http.post("/connect/token", data=token_form(tenant_id=tenant))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_api_refuses_a_call_without_token(sim: VismaSimulator) -> None:
    with httpx.Client(transport=InProcessTransport(sim.app), base_url=BASE_URL) as http:
        response = http.get("/v1/supplierInvoice", params={"pageNumber": 1, "pageSize": 10})
    assert response.status_code == 401


def test_api_refuses_an_expired_token(sim: VismaSimulator, api: httpx.Client) -> None:
    sim.clock.advance(3601)
    assert api.get("/v1/supplierInvoice", params={"pageNumber": 1, "pageSize": 10}).status_code == 401


def test_write_needs_the_update_scope(sim: VismaSimulator) -> None:
    with httpx.Client(transport=InProcessTransport(sim.app), base_url=BASE_URL) as http:
        token = http.post("/connect/token", data=token_form(scope="vismanet_erp_service_api:read")).json()
        response = http.put("/v1/supplierInvoice/000001", json={"description": {"value": "x"}},
                            headers={"Authorization": f"Bearer {token['access_token']}"})
    assert response.status_code == 403


# -- paging ----------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["pageNumber", "pageSize"])
def test_list_without_paging_parameters_is_refused_naming_them(api: httpx.Client, missing: str) -> None:
    params = {"pageNumber": 1, "pageSize": 10}
    del params[missing]
    response = api.get("/v1/supplierInvoice", params=params)
    assert response.status_code == 400
    assert missing in response.json()["ExceptionMessage"]


def test_every_listed_record_carries_the_paging_metadata(api: httpx.Client) -> None:
    page = api.get("/v1/purchaseorder", params={"pageNumber": 1, "pageSize": 10}).json()
    assert {json.dumps(r["metadata"]) for r in page} == {json.dumps({"totalCount": 100, "maxPageSize": 1000})}


def test_page_size_above_the_maximum_is_clamped() -> None:
    big = VismaSimulator(seed=1, size=1200, start=START)
    with connect(big) as http:
        page = http.get("/v1/supplierInvoice", params={"pageNumber": 1, "pageSize": 5000}).json()
    assert len(page) == 1000
    assert page[0]["metadata"] == {"totalCount": 1200, "maxPageSize": 1000}


def test_pages_list_every_record_once_by_modification_time_then_id(api: httpx.Client) -> None:
    records = read_all(api, "/v1/supplierInvoice", page_size=7)
    order = [(instant(r["lastModifiedDateTime"]), r["referenceNumber"]) for r in records]
    assert order == sorted(order)
    assert len(set(numbers(records))) == 200


def test_accounts_are_listed_whole_without_paging(api: httpx.Client) -> None:
    accounts = api.get("/v1/account").json()
    assert len(accounts) == accounts[0]["metadata"]["totalCount"] >= 60
    assert {"accountCD", "description", "type", "lastModifiedDateTime"} <= accounts[0].keys()


def test_query_parameter_names_are_case_insensitive(api: httpx.Client) -> None:
    params = {"PageNumber": 1, "PageSize": 500, "LastModifiedDateTime": "2026-11-21T00:00:00+00:00",
              "LastModifiedDateTimeCondition": ">"}
    changed_today = api.get("/v1/supplierInvoice", params=params).json()
    assert 0 < len(changed_today) < 200


# -- the lastModifiedDateTime filter ---------------------------------------------------------


def test_modified_filter_without_condition_is_ignored(api: httpx.Client) -> None:
    params = {"pageNumber": 1, "pageSize": 500, "lastModifiedDateTime": "2026-11-21T11:00:00+00:00"}
    assert len(api.get("/v1/supplierInvoice", params=params).json()) == 200


@pytest.mark.parametrize(
    ("condition", "keep"),
    [(">", lambda m, t: m > t), (">=", lambda m, t: m >= t), ("<", lambda m, t: m < t), ("<=", lambda m, t: m <= t)],
)
def test_each_condition_operator_filters_on_the_instant(
    sim: VismaSimulator, api: httpx.Client, condition: str, keep: Callable[[datetime, datetime], bool]
) -> None:
    everything = sim.collections()["supplier_invoices"]
    pivot = instant(everything[100]["lastModifiedDateTime"])
    params = {"lastModifiedDateTime": pivot.isoformat(timespec="milliseconds"), "lastModifiedDateTimeCondition": condition}
    expected = [r["referenceNumber"] for r in everything if keep(instant(r["lastModifiedDateTime"]), pivot)]
    assert numbers(read_all(api, "/v1/supplierInvoice", **params)) == expected


def test_a_value_without_offset_is_read_in_oslo_time(sim: VismaSimulator, api: httpx.Client) -> None:
    pivot = instant(sim.collections()["supplier_invoices"][120]["lastModifiedDateTime"])

    def since(value: str) -> list[str]:
        return numbers(read_all(api, "/v1/supplierInvoice", lastModifiedDateTime=value,
                                lastModifiedDateTimeCondition=">="))

    naive_utc_wall_clock = pivot.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    naive_oslo_wall_clock = pivot.astimezone(OSLO).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    assert since(naive_oslo_wall_clock) == since(pivot.isoformat())
    assert since(naive_utc_wall_clock) == since((pivot - timedelta(hours=1)).isoformat())


def test_records_answer_timestamps_in_oslo_time_with_offset(api: httpx.Client) -> None:
    record = api.get("/v1/supplierInvoice", params={"pageNumber": 1, "pageSize": 1}).json()[0]
    assert record["lastModifiedDateTime"].endswith("+01:00")  # November: CET


def test_clusters_share_one_timestamp_so_a_strict_cursor_skips_the_rest(sim: VismaSimulator, api: httpx.Client) -> None:
    everything = sim.collections()["supplier_invoices"]
    stamps = [r["lastModifiedDateTime"] for r in everything]
    shared = next(stamp for stamp in stamps if stamps.count(stamp) >= 3)
    cluster = {r["referenceNumber"] for r in everything if r["lastModifiedDateTime"] == shared}

    def matching(condition: str) -> set[str]:
        found = read_all(api, "/v1/supplierInvoice", lastModifiedDateTime=shared,
                         lastModifiedDateTimeCondition=condition)
        return set(numbers(found)) & cluster

    assert matching(">") == set()
    assert matching(">=") == cluster


def test_some_records_were_modified_today(sim: VismaSimulator) -> None:
    today = [r for r in sim.collections()["supplier_invoices"] if instant(r["lastModifiedDateTime"]).date() == START.date()]
    assert today
    assert all(instant(r["lastModifiedDateTime"]) <= START for r in today)


@given(st.datetimes(min_value=datetime(2021, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)))
def test_visma_timestamps_parse_back_to_the_same_instant(moment: datetime) -> None:
    ms = int(moment.timestamp() * 1000)
    assert parse_modified_value(visma_datetime(ms)) == ms * 1000


def test_an_unreadable_filter_value_is_refused(api: httpx.Client) -> None:
    params = {"pageNumber": 1, "pageSize": 5, "lastModifiedDateTime": "yesterday", "lastModifiedDateTimeCondition": ">"}
    response = api.get("/v1/supplierInvoice", params=params)
    assert response.status_code == 400
    assert "lastModifiedDateTime" in response.json()["message"]


# -- single records, versions and writes -----------------------------------------------------


def test_single_get_answers_the_timestamp_as_etag(api: httpx.Client) -> None:
    response = api.get("/v1/supplierInvoice/000042")
    assert response.headers["ETag"] == f'"{response.json()["timeStamp"]}"'


def test_put_with_current_etag_applies_and_answers_a_new_one(api: httpx.Client) -> None:
    etag = api.get("/v1/purchaseorder/PO000010").headers["ETag"]
    response = api.put("/v1/purchaseorder/PO000010", json={"description": {"value": "Mottatt i sin helhet"}},
                       headers={"If-Match": etag})
    after = api.get("/v1/purchaseorder/PO000010")
    assert response.status_code == 204
    assert response.headers["ETag"] == after.headers["ETag"] != etag
    assert after.json()["description"] == "Mottatt i sin helhet"


def test_put_with_a_stale_etag_is_412(api: httpx.Client) -> None:
    stale = api.get("/v1/supplierInvoice/000010").headers["ETag"]
    api.put("/v1/supplierInvoice/000010", json={"note": {"value": "first"}}, headers={"If-Match": stale})
    response = api.put("/v1/supplierInvoice/000010", json={"note": {"value": "second"}}, headers={"If-Match": stale})
    assert response.status_code == 412
    assert api.get("/v1/supplierInvoice/000010").json()["note"] == "first"


def test_put_without_if_match_is_applied_and_noted(sim: VismaSimulator, api: httpx.Client) -> None:
    response = api.put("/v1/supplierInvoice/000011", json={"note": {"value": "blind write"}})
    assert response.status_code == 204
    assert sim.unconditional_puts == ["/v1/supplierInvoice/000011"]


def test_put_moves_the_record_past_every_cursor(sim: VismaSimulator, api: httpx.Client) -> None:
    sim.clock.advance(5)
    api.put("/v1/supplierInvoice/000012", json={"hold": {"value": True}})
    newest = read_all(api, "/v1/supplierInvoice", page_size=500)[-1]
    assert (newest["referenceNumber"], newest["status"]) == ("000012", "Hold")
    assert instant(newest["lastModifiedDateTime"]) > START


def test_post_creates_a_record_and_answers_its_location(api: httpx.Client) -> None:
    body = {"supplierNumber": {"value": "10003"}, "description": {"value": "Frakt oktober"},
            "invoiceLines": [{"operation": "Insert", "transactionDescription": {"value": "Frakt"},
                              "quantity": {"value": 2}, "unitCostInCurrency": {"value": 500.0},
                              "accountNumber": {"value": "6100"}, "vatCodeId": {"value": "1"}}]}
    response = api.post("/v1/supplierInvoice", json=body)
    created = api.get(response.headers["Location"])
    assert response.status_code == 201
    assert response.headers["Location"].endswith("/v1/supplierInvoice/000201")
    assert created.headers["ETag"] == response.headers["ETag"]
    assert (created.json()["supplier"]["number"], created.json()["amount"]) == ("10003", 1250.0)


def test_post_without_supplier_is_refused_naming_the_field(api: httpx.Client) -> None:
    response = api.post("/v1/purchaseorder", json={"description": {"value": "no supplier"}})
    assert response.status_code == 400
    assert "supplier" in response.json()["ExceptionMessage"]


def test_an_unknown_record_is_404_in_visma_error_shape(api: httpx.Client) -> None:
    response = api.get("/v1/supplierInvoice/999999")
    assert response.status_code == 404
    assert response.json()["message"].startswith("VismaId: ")
    assert response.json()["ExceptionType"] == "IPPException"


# -- supplier updates (SupplierUpdateDto) ----------------------------------------------------


def test_supplier_put_with_current_etag_applies_and_answers_a_new_one(api: httpx.Client) -> None:
    etag = api.get("/v1/supplier/10001").headers["ETag"]
    body = {"name": {"value": "Fjordlys Energi Bergen AS"}, "creditTermsId": {"value": "45D"},
            "parentRecordNumber": {"value": "10002"},
            "mainAddress": {"value": {"addressLine1": {"value": "Kaigata 1"}, "city": {"value": "Bergen"},
                                      "countryId": {"value": "NO"}}}}
    response = api.put("/v1/supplier/10001", json=body, headers={"If-Match": etag})
    after = api.get("/v1/supplier/10001")
    supplier = after.json()
    assert response.status_code == 204
    assert response.headers["ETag"] == after.headers["ETag"] != etag
    assert (supplier["name"], supplier["creditTerms"]["id"]) == ("Fjordlys Energi Bergen AS", "45D")
    assert supplier["parentRecord"] == {"number": "10002", "name": api.get("/v1/supplier/10002").json()["name"]}
    assert (supplier["mainAddress"]["addressLine1"], supplier["mainAddress"]["city"]) == ("Kaigata 1", "Bergen")
    assert supplier["mainAddress"]["country"] == {"id": "NO", "name": "Norge"}


def test_supplier_put_merges_an_address_member_by_member(api: httpx.Client) -> None:
    before = api.get("/v1/supplier/10003").json()["mainAddress"]
    api.put("/v1/supplier/10003", json={"mainAddress": {"value": {"city": {"value": "Bergen"}}}})
    after = api.get("/v1/supplier/10003").json()["mainAddress"]
    assert after == {**before, "city": "Bergen"}


def test_supplier_put_with_a_stale_etag_is_412(api: httpx.Client) -> None:
    stale = api.get("/v1/supplier/10004").headers["ETag"]
    api.put("/v1/supplier/10004", json={"note": {"value": "first"}}, headers={"If-Match": stale})
    response = api.put("/v1/supplier/10004", json={"note": {"value": "second"}}, headers={"If-Match": stale})
    assert response.status_code == 412
    assert api.get("/v1/supplier/10004").json()["note"] == "first"


def test_supplier_put_with_a_bare_value_is_refused_naming_the_field(api: httpx.Client) -> None:
    response = api.put("/v1/supplier/10005", json={"name": "Bare AS"})
    assert response.status_code == 400
    assert "'name'" in response.json()["ExceptionMessage"]
    assert api.get("/v1/supplier/10005").json()["name"] != "Bare AS"


def test_supplier_put_with_a_member_the_dto_lacks_is_refused_naming_it(api: httpx.Client) -> None:
    response = api.put("/v1/supplier/10005", json={"colour": {"value": "red"}})
    assert response.status_code == 400
    assert "'colour'" in response.json()["ExceptionMessage"]


@pytest.mark.parametrize("body", [
    {"creditTermsId": {"value": "99D"}},
    {"parentRecordNumber": {"value": "99999"}},
    {"paymentMethodId": {"value": "CHEQUE"}},
    {"status": {"value": "Dormant"}},
    {"mainAddress": {"value": {"countryId": {"value": "Norge"}}}},
])
def test_supplier_put_refuses_a_value_visma_does_not_have(api: httpx.Client, body: dict[str, Any]) -> None:
    etag = api.get("/v1/supplier/10006").headers["ETag"]
    response = api.put("/v1/supplier/10006", json=body)
    assert response.status_code == 400
    assert api.get("/v1/supplier/10006").headers["ETag"] == etag


def test_supplier_put_for_an_unknown_supplier_is_404(api: httpx.Client) -> None:
    response = api.put("/v1/supplier/99999", json={"name": {"value": "Nobody AS"}})
    assert response.status_code == 404
    assert response.json()["message"].startswith("VismaId: ")


def test_supplier_put_of_null_clears_an_optional_field(api: httpx.Client) -> None:
    api.put("/v1/supplier/10007", json={"note": {"value": "VIP"}})
    api.put("/v1/supplier/10007", json={"note": {"value": None}})
    assert "note" not in api.get("/v1/supplier/10007").json()


def test_supplier_update_members_are_exactly_the_spec_dto() -> None:
    spec = json.loads(SPEC.read_text())
    assert set(spec["components"]["schemas"]["SupplierUpdateDto"]["properties"]) == SUPPLIER_UPDATE_MEMBERS


def test_suppliers_take_no_post(api: httpx.Client) -> None:
    assert api.post("/v1/supplier", json={"name": {"value": "Ny AS"}}).status_code == 405


def test_a_supplier_edit_survives_save_and_restore(sim: VismaSimulator, api: httpx.Client, tmp_path: Path) -> None:
    api.put("/v1/supplier/10008", json={"name": {"value": "Lagret AS"}, "creditTermsId": {"value": "60D"}})
    sim.save_state(tmp_path / "visma.state")
    restored = VismaSimulator(seed=7, size=200, start=START + timedelta(days=1))
    try:
        assert restored.restore_state(tmp_path / "visma.state")
        assert restored.record("suppliers", "10008") == sim.record("suppliers", "10008")
        with connect(restored) as http:
            assert http.get("/v1/supplier/10008").json()["name"] == "Lagret AS"
    finally:
        restored.close()


# -- rate limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/supplierInvoice?pageNumber=1&pageSize=1", "/v1/supplierInvoice", "/v1/nothing"])
def test_every_api_answer_carries_rate_limit_headers(api: httpx.Client, path: str) -> None:
    headers = api.get(path).headers
    assert headers["X-RateLimit-Limit"] == "15000"
    assert int(headers["X-RateLimit-Remaining"]) <= 15000
    assert 0 < int(headers["X-RateLimit-Reset"]) <= 3600
    assert headers["X-RateLimit-Policy"] == "15000;w=3600"


def test_over_the_budget_answers_429_with_retry_after() -> None:
    limited = VismaSimulator(seed=1, size=20, start=START, rate_limit_per_hour=3)
    with connect(limited) as http:
        answers = [http.get("/v1/account") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(answers[3].headers["Retry-After"]) <= 3600


def test_a_shortened_budget_window_refills_when_it_has_passed() -> None:
    limited = VismaSimulator(seed=1, size=20, start=START, rate_limit_per_hour=2, rate_window_s=60)
    with connect(limited) as http:
        spent = [http.get("/v1/account").status_code for _ in range(3)]
        refused = http.get("/v1/account")
        limited.clock.advance(60)
        refilled = http.get("/v1/account")
    assert spent == [200, 200, 429] and 0 < int(refused.headers["Retry-After"]) <= 60
    assert refilled.status_code == 200 and refilled.headers["X-RateLimit-Policy"] == "2;w=60"


def test_a_fault_plan_burst_answers_429_in_the_gateway_shape(sim: VismaSimulator, api: httpx.Client) -> None:
    sim.set_faults(FaultPlan(rate_limit_burst=1, retry_after_s=7))
    response = api.get("/v1/account")
    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")
    assert response.json()["statusCode"] == 429


# -- the legacy flavour ----------------------------------------------------------------------


def test_legacy_list_without_company_header_is_an_empty_success(api: httpx.Client) -> None:
    response = api.get(f"{LEGACY}/v1/supplierInvoice", params={"pageNumber": 1, "pageSize": 10})
    assert (response.status_code, response.json()) == (200, [])


def test_legacy_list_with_company_header_returns_the_records(api: httpx.Client) -> None:
    params = {"pageNumber": 1, "pageSize": 10}
    legacy = api.get(f"{LEGACY}/v1/supplierInvoice", params=params, headers={"ipp-company-id": DEMO_COMPANY_ID})
    assert numbers(legacy.json()) == numbers(api.get("/v1/supplierInvoice", params=params).json())
    assert legacy.headers["X-RateLimit-Limit"] == "500"


# -- journal transactions, dimensions, background --------------------------------------------


def test_journal_pages_count_lines_and_may_split_a_batch(api: httpx.Client) -> None:
    pages = [api.get("/v2/journaltransaction", params={"pageNumber": n, "pageSize": 7, "periodId": "202611"}).json()
             for n in range(1, 40)]
    pages = [page for page in pages if page]
    lines = [line for page in pages for batch in page for line in batch["journalTransactionLines"]]
    split = {page[-1]["batchNumber"] for page in pages[:-1]} & {page[0]["batchNumber"] for page in pages[1:]}
    assert all(sum(len(b["journalTransactionLines"]) for b in page) == 7 for page in pages[:-1])
    assert len(lines) == pages[0][0]["metadata"]["totalCount"]
    assert split


def test_journal_list_needs_a_period_or_a_modified_value(api: httpx.Client) -> None:
    response = api.get("/v2/journaltransaction", params={"pageNumber": 1, "pageSize": 10})
    assert response.status_code == 400


def test_dimensions_list_their_ids_and_answer_segments_with_values(api: httpx.Client) -> None:
    ids = api.get("/v1/dimension").json()
    subaccount = api.get(f"/v1/dimension/{ids[0]}").json()
    assert ids == ["SUBACCOUNT", "PROJECT"]
    assert [s["description"] for s in subaccount["segments"]] == ["Avdeling", "Kostnadssted"]
    assert subaccount["segments"][0]["segmentValues"][0]["valueId"] == "100"


def test_background_request_answers_202_and_its_outcome_on_poll(api: httpx.Client) -> None:
    accepted = api.get("/v1/supplierInvoice/000007", headers={"erp-api-background": "none"})
    state = api.get(accepted.json()["stateLocation"]).json()
    content = api.get(state["contentLocation"]).json()
    assert accepted.status_code == 202
    assert (state["status"], state["statusCode"]) == ("Finished", 200)
    assert content["referenceNumber"] == "000007"


# -- supplier payments -----------------------------------------------------------------------


def refs(records: list[dict[str, Any]]) -> list[str]:
    return [r["refNbr"] for r in records]


def open_invoice(sim: VismaSimulator) -> dict[str, Any]:
    """An Open supplier invoice nobody has paid anything of yet."""
    return next(i for i in sim.collections()["supplier_invoices"]
                if i["status"] == "Open" and i.get("balance") == i.get("amount"))  # fmt: skip


def test_supplier_payments_need_paging_parameters_and_page_by_modification_time_then_id(
    sim: VismaSimulator, api: httpx.Client
) -> None:
    refused = api.get("/v1/supplierPayment", params={"pageNumber": 1})
    records = read_all(api, "/v1/supplierPayment", page_size=7)

    assert refused.status_code == 400 and "pageSize" in refused.json()["message"]
    order = [(instant(r["lastModifiedDateTime"]), r["refNbr"]) for r in records]
    assert order == sorted(order)
    assert sorted(refs(records)) == sorted(refs(sim.collections()["supplier_payments"]))
    assert len(set(refs(records))) == len(records) == records[0]["metadata"]["totalCount"]


def test_the_supplier_payment_filter_needs_its_condition(sim: VismaSimulator, api: httpx.Client) -> None:
    everything = sim.collections()["supplier_payments"]
    pivot = everything[len(everything) // 2]["lastModifiedDateTime"]

    since = read_all(api, "/v1/supplierPayment", lastModifiedDateTime=pivot, lastModifiedDateTimeCondition=">=")
    ignored = read_all(api, "/v1/supplierPayment", lastModifiedDateTime=pivot)

    assert refs(since) == [r["refNbr"] for r in everything if instant(r["lastModifiedDateTime"]) >= instant(pivot)]
    assert 0 < len(since) < len(everything) == len(ignored)


def test_generated_payments_settle_invoices_in_full_or_in_part_and_the_invoices_agree(sim: VismaSimulator) -> None:
    state = sim.collections()
    invoices = {i["referenceNumber"]: i for i in state["supplier_invoices"]}
    kinds = set()
    for payment in (p for p in state["supplier_payments"] if p["type"] == "Payment"):
        (line,) = payment["paymentLines"]
        invoice = invoices[line["invoiceRefNbr"]]
        assert payment["supplier"]["number"] == invoice["supplier"]["number"]
        assert payment["currency"]["id"] == line["currency"] == invoice["currencyId"]
        assert payment["paymentAmount"] == line["amountPaid"] and payment["status"] == "Closed"
        assert line["balance"] == invoice["balance"] == round(invoice["amount"] - line["amountPaid"], 2)
        assert payment["lastModifiedDateTime"] == invoice["lastModifiedDateTime"]  # released together
        kinds.add("whole" if invoice["status"] == "Closed" else "partial")
        assert invoice["status"] == ("Closed" if line["balance"] == 0 else "Open")
    assert kinds == {"whole", "partial"}


def test_a_supplier_payment_is_read_by_number_or_by_type_and_number_with_its_etag(api: httpx.Client) -> None:
    listed = api.get("/v1/supplierPayment", params={"pageNumber": 1, "pageSize": 1}).json()[0]
    number, kind = listed["refNbr"], listed["type"]

    single = api.get(f"/v1/supplierPayment/{number}")
    typed = api.get(f"/v1/supplierPayment/{kind}/{number}")
    other_type = api.get(f"/v1/supplierPayment/{'Refund' if kind != 'Refund' else 'Payment'}/{number}")

    assert single.status_code == typed.status_code == 200
    assert single.json() == typed.json() == {k: v for k, v in listed.items() if k != "metadata"}
    assert single.headers["ETag"] == f'"{listed["timeStamp"]}"'
    assert other_type.status_code == 404


def test_supplier_payments_take_no_put_by_type_and_number(api: httpx.Client) -> None:
    assert api.put("/v1/supplierPayment/Payment/000001", json={}).status_code == 405


def test_paying_part_of_an_invoice_adds_a_payment_past_every_cursor_and_lowers_the_balance(
    sim: VismaSimulator, api: httpx.Client
) -> None:
    invoice = open_invoice(sim)
    latest = max(p["lastModifiedDateTime"] for p in sim.collections()["supplier_payments"])

    payment = sim.pay_supplier_invoices({invoice["referenceNumber"]: 100.0}, payment_ref="KID 42")

    (line,) = payment["paymentLines"]
    expected_balance = round(invoice["balance"] - 100.0, 2)
    assert (payment["type"], payment["status"], payment["paymentAmount"]) == ("Payment", "Closed", 100.0)
    assert (line["invoiceRefNbr"], line["amountPaid"], line["balance"]) == (invoice["referenceNumber"], 100.0,
                                                                            expected_balance)
    assert refs(read_all(api, "/v1/supplierPayment", lastModifiedDateTime=latest,
                         lastModifiedDateTimeCondition=">")) == [payment["refNbr"]]
    after = api.get(f"/v1/supplierInvoice/{invoice['referenceNumber']}").json()
    assert (after["status"], after["balance"]) == ("Open", expected_balance)
    assert after["lastModifiedDateTime"] > invoice["lastModifiedDateTime"]


def test_paying_the_whole_balance_closes_the_invoice(sim: VismaSimulator, api: httpx.Client) -> None:
    invoice = open_invoice(sim)

    payment = sim.pay_supplier_invoices({invoice["referenceNumber"]: None})

    assert payment["paymentAmount"] == invoice["balance"] and payment["paymentLines"][0]["balance"] == 0
    after = api.get(f"/v1/supplierInvoice/{invoice['referenceNumber']}").json()
    assert (after["status"], after["balance"]) == ("Closed", 0)


@pytest.mark.parametrize("problem", ["closed", "too_much", "two_suppliers"])
def test_a_payment_visma_would_refuse_is_refused(sim: VismaSimulator, problem: str) -> None:
    invoices = sim.collections()["supplier_invoices"]
    first = open_invoice(sim)
    amounts: dict[str, float | None] = {
        "closed": {next(i["referenceNumber"] for i in invoices if i["status"] == "Closed"): None},
        "too_much": {first["referenceNumber"]: first["balance"] + 1},
        "two_suppliers": {first["referenceNumber"]: None, next(
            i["referenceNumber"] for i in invoices
            if i["status"] == "Open" and i["supplier"]["number"] != first["supplier"]["number"]): None},
    }[problem]  # fmt: skip
    before = len(sim.collections()["supplier_payments"])

    with pytest.raises(ValueError, match="Open invoice|balance|one supplier"):
        sim.pay_supplier_invoices(amounts)
    assert len(sim.collections()["supplier_payments"]) == before


# -- webhooks --------------------------------------------------------------------------------


class Receiver:
    """A webhook target answering a scripted list of statuses (then 200), keeping what it got."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@contextmanager
def hooked(receiver: Receiver) -> Iterator[VismaSimulator]:
    """A simulator whose webhooks reach ``receiver``, retries shrunk a thousandfold."""
    sim = VismaSimulator(seed=7, size=50, start=START, webhook_url="http://receiver.test/visma",
                         webhook_transport=receiver.transport, time_scale=0.001)
    try:
        yield sim
    finally:
        sim.close()


def test_webhook_is_signed_with_base64_hmac_of_the_raw_body(receiver: Receiver) -> None:
    with hooked(receiver) as sim:
        sim.update_supplier_invoice("000003", description="Ny tekst")
        assert sim.flush_webhooks()
    request = receiver.requests[0]
    expected = base64.b64encode(hmac.new(DEMO_WEBHOOK_SECRET.encode(), request.content, hashlib.sha256).digest())
    payload = json.loads(request.content)
    assert request.headers["x-vwd-signature-v1"] == expected.decode()
    assert request.headers["x-vwd-tenant-id"] == DEMO_TENANT_ID
    assert request.headers["x-vwd-notification-id"] == payload["notificationId"]
    assert (payload["event"], payload["entityId"]) == ("SupplierInvoice.Updated", "000003")


def test_webhook_is_retried_until_the_receiver_accepts_it() -> None:
    receiver = Receiver([500, 503])
    with hooked(receiver) as sim:
        current = sim.purchase_order("PO000004")["status"]  # type: ignore[index]
        sim.update_purchase_order("PO000004", status="Cancelled" if current != "Cancelled" else "Closed")
        assert sim.flush_webhooks()
    assert [d["outcome"] for d in sim.deliveries] == ["retrying", "retrying", "delivered"]
    assert len({r.headers["x-vwd-notification-id"] for r in receiver.requests}) == 1
    assert json.loads(receiver.requests[-1].content)["event"] == "PurchaseOrder.StatusChanged"


def test_webhooks_are_dropped_as_the_fault_plan_says(receiver: Receiver) -> None:
    with hooked(receiver) as sim:
        sim.set_faults(FaultPlan(webhook_drop_rate=1))
        sim.create_supplier_invoice(supplier_number="10001", description="Tapt varsel")
        assert sim.flush_webhooks()
    assert receiver.requests == []
    assert [d["outcome"] for d in sim.deliveries] == ["dropped"]


def test_webhooks_are_duplicated_as_the_fault_plan_says(receiver: Receiver) -> None:
    with hooked(receiver) as sim:
        sim.set_faults(FaultPlan(webhook_duplicate_rate=1))
        sim.create_purchase_order(supplier_number="10002")
        assert sim.flush_webhooks()
    assert len(receiver.requests) == 2
    assert receiver.requests[0].content == receiver.requests[1].content


def test_paying_an_invoice_notifies_the_invoice_and_nothing_for_the_payment(receiver: Receiver) -> None:
    with hooked(receiver) as sim:
        invoice = open_invoice(sim)
        sim.pay_supplier_invoices({invoice["referenceNumber"]: None})
        assert sim.flush_webhooks()
    (event,) = [json.loads(request.content) for request in receiver.requests]
    assert (event["event"], event["entityId"]) == ("SupplierInvoice.StatusChanged", invoice["referenceNumber"])


def test_api_writes_notify_too(receiver: Receiver) -> None:
    with hooked(receiver) as sim:
        with connect(sim) as http:
            http.post("/v1/purchaseorder", json={"supplier": {"value": "10002"}})
        assert sim.flush_webhooks()
    assert json.loads(receiver.requests[0].content)["event"] == "PurchaseOrder.Created"


# -- data ------------------------------------------------------------------------------------


def test_same_seed_and_start_give_the_same_data() -> None:
    first, second = (VismaSimulator(seed=11, size=60, start=START) for _ in range(2))
    assert first.collections() == second.collections()


def test_another_seed_gives_other_data() -> None:
    first, second = (VismaSimulator(seed=seed, size=60, start=START) for seed in (11, 12))
    assert first.collections()["supplier_invoices"] != second.collections()["supplier_invoices"]


def test_a_few_supplier_invoices_are_malformed_on_purpose() -> None:
    sim = VismaSimulator(seed=5, size=1500, start=START)
    invalid = sim.invalid_records()
    records = [sim.supplier_invoice(number) for _, number, _ in invalid]
    assert 0 < len(invalid) < 1500 * 0.02
    assert all(
        not isinstance(r.get("amount"), float) or r["currencyId"] not in CURRENCY_RATES_NOK for r in records if r
    )


@pytest.fixture(scope="module")
def spec_registry() -> Registry:
    return Registry().with_resource("spec", Resource.from_contents(json.loads(SPEC.read_text()), DRAFT4))


SCHEMAS = {
    "supplier_invoices": "SupplierInvoiceDto", "purchase_orders": "PurchaseOrderDto", "suppliers": "SupplierDto",
    "accounts": "AccountDto", "customer_invoices": "CustomerInvoiceDto", "payments": "PaymentDto",
    "journal_transactions": "JournalTransactionDto", "dimensions": "DtoDimension",
    "supplier_payments": "SupplierPaymentDto",
}


def unknown_fields(value: Any, schema: dict[str, Any], schemas: dict[str, Any], path: str = "") -> list[str]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return [f"{path}.{k}" for k in value if k not in properties] + [
            p for k, v in value.items() if k in properties for p in unknown_fields(v, properties[k], schemas, f"{path}.{k}")
        ]
    if isinstance(value, list) and "items" in schema:
        return [p for v in value for p in unknown_fields(v, schema["items"], schemas, f"{path}[]")]
    return []


def test_records_are_exactly_the_spec_schemas(sim: VismaSimulator, spec_registry: Registry) -> None:
    schemas = spec_registry.contents("spec")["components"]["schemas"]
    malformed = {number for _, number, _ in sim.invalid_records()}
    problems = []
    for collection, records in sim.collections().items():
        validator = OAS30Validator({"$ref": f"spec#/components/schemas/{SCHEMAS[collection]}"}, registry=spec_registry)
        for record in records:
            if record.get("referenceNumber") in malformed and collection == "supplier_invoices":
                continue
            problems += [f"{collection}: {e.message}" for e in validator.iter_errors(record)]
            problems += [f"{collection}: unknown {p}" for p in unknown_fields(record, schemas[SCHEMAS[collection]], schemas)]
    assert problems == []


def test_secret_values_cover_credentials_and_issued_tokens(sim: VismaSimulator, api: httpx.Client) -> None:
    token = api.headers["Authorization"].split(" ", 1)[1]
    assert {DEMO_CLIENT_SECRET, DEMO_WEBHOOK_SECRET, token} <= set(sim.secret_values())


def test_served_simulator_answers_over_a_socket(sim: VismaSimulator) -> None:
    with served(sim) as server, httpx.Client(base_url=server.base_url) as http:
        token = http.post("/connect/token", data=token_form()).json()["access_token"]
        page = http.get("/v1/supplier", params={"pageNumber": 1, "pageSize": 5},
                        headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200
    assert len(page.json()) == 5
