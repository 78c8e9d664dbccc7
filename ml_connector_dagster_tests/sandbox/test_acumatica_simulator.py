"""The Acumatica simulator speaks the contract-based REST API as Acumatica does, traps included."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.sandbox import acumatica as sandbox
from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator, Licence, ODataError, parse_filter
from ml_connector_dagster.sandbox.demo_data import COMPANY_TIMEZONE
from ml_connector_dagster.systems.acumatica.client import odata_datetimeoffset
from ml_connector_dagster.systems.acumatica.webhook import DEFAULT_HEADER_NAME, AcumaticaWebhookVerifier
from ml_connector_dagster.webhooks.contract import WebhookRequest
from ml_connector_dagster_tests.acumatica_sandbox import API, password_grant, raw_http, signed_in, value

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def sim() -> Iterator[AcumaticaSimulator]:
    simulator = AcumaticaSimulator(size=40, start=START)
    yield simulator
    simulator.close()


@pytest.fixture
def wire(sim: AcumaticaSimulator) -> Iterator[httpx.Client]:
    """A bare client: what the wire answers, with no auth and no retries."""
    client = raw_http(sim)
    yield client
    client.close()


@pytest.fixture
def http(sim: AcumaticaSimulator) -> Iterator[httpx.Client]:
    """A bare client with a fresh session's Bearer token."""
    client = signed_in(sim)
    yield client
    client.close()


def release(http: httpx.Client, entity: str, action: str, keys: dict[str, str]) -> httpx.Response:
    body = {"entity": {name: {"value": v} for name, v in keys.items()}, "parameters": {}}
    return http.post(f"{API}/{entity}/{action}", json=body)


# -- identity and licence --------------------------------------------------------------------------


def test_the_password_grant_with_offline_access_answers_an_access_and_a_refresh_token(wire: httpx.Client) -> None:
    body = password_grant(wire).json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["access_token"] and body["refresh_token"]


def test_without_offline_access_there_is_no_refresh_token(wire: httpx.Client) -> None:
    assert "refresh_token" not in password_grant(wire, scope="api").json()


def test_client_credentials_is_not_a_grant_acumatica_offers(wire: httpx.Client) -> None:
    response = wire.post("/identity/connect/token", data={
        "grant_type": "client_credentials", "client_id": sandbox.DEMO_CLIENT_ID,
        "client_secret": sandbox.DEMO_CLIENT_SECRET})
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_a_wrong_password_is_an_invalid_grant(wire: httpx.Client) -> None:
    response = password_grant(wire, password="not-it")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_discovery_names_the_token_endpoint(wire: httpx.Client) -> None:
    document = wire.get("/identity/.well-known/openid-configuration").json()
    assert document["token_endpoint"].endswith("/identity/connect/token")
    assert {"password", "refresh_token"} <= set(document["grant_types_supported"])


def test_a_trial_licence_refuses_a_third_api_user(wire: httpx.Client) -> None:
    http = wire
    assert [password_grant(http).status_code for _ in range(2)] == [200, 200]
    third = password_grant(http)
    assert third.status_code == 400
    assert third.json() == {"error": "invalid_grant", "error_description": sandbox.API_LOGIN_LIMIT}


def test_a_refresh_reuses_the_session_of_its_refresh_token(sim: AcumaticaSimulator, wire: httpx.Client) -> None:
    http = wire
    first = password_grant(http).json()
    for _ in range(3):
        refreshed = http.post("/identity/connect/token", data={
            "grant_type": "refresh_token", "client_id": sandbox.DEMO_CLIENT_ID,
            "client_secret": sandbox.DEMO_CLIENT_SECRET, "refresh_token": first["refresh_token"]}).json()
        first = refreshed
    assert len(sim.active_sessions()) == 1


def test_a_spent_refresh_token_is_refused(wire: httpx.Client) -> None:
    http = wire
    spent = password_grant(http).json()["refresh_token"]
    form = {"grant_type": "refresh_token", "client_id": sandbox.DEMO_CLIENT_ID,
            "client_secret": sandbox.DEMO_CLIENT_SECRET, "refresh_token": spent}
    assert http.post("/identity/connect/token", data=form).status_code == 200
    again = http.post("/identity/connect/token", data=form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_signing_out_frees_the_licence_slot_and_kills_the_token(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    assert http.post("/entity/auth/logout").status_code == 204
    assert sim.active_sessions() == []
    assert http.get(f"{API}/Vendor").status_code == 401


def test_an_idle_session_ends_and_frees_its_slot(sim: AcumaticaSimulator, wire: httpx.Client) -> None:
    password_grant(wire)
    sim.clock.advance(601)
    assert sim.active_sessions() == []


def test_requests_beyond_the_licences_concurrent_limit_answer_429() -> None:
    busy = AcumaticaSimulator(size=8, licence=Licence("Small", api_users=5, concurrent_requests=2),
                              processing_delay_s=0.3)
    http = signed_in(busy)
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(http.get(f"{API}/Vendor").status_code))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    http.close()
    busy.close()
    assert sorted(statuses) == [200, 200, 429]


def test_an_api_call_without_a_token_answers_401(wire: httpx.Client) -> None:
    response = wire.get(f"{API}/Bill")
    assert response.status_code == 401 and "message" in response.json()


def test_the_recorded_requests_mask_the_password_and_client_secret(wire: httpx.Client) -> None:
    password_grant(wire)
    recorded = wire.get("/_sandbox/requests").text
    assert sandbox.DEMO_PASSWORD not in recorded and sandbox.DEMO_CLIENT_SECRET not in recorded


# -- the pinned endpoint ---------------------------------------------------------------------------


def test_another_endpoint_version_answers_404(http: httpx.Client) -> None:
    assert http.get("/entity/Default/23.200.001/Bill").status_code == 404


def test_the_instance_lists_the_one_endpoint_version_it_offers(http: httpx.Client) -> None:
    assert http.get("/entity").json()["endpoints"][0] | {"href": None} == {
        "name": "Default", "version": "24.200.001", "href": None}


# -- records ---------------------------------------------------------------------------------------


def test_every_field_is_a_value_object_and_id_and_row_number_are_bare(http: httpx.Client) -> None:
    bill = http.get(f"{API}/Bill", params={"$top": 1}).json()[0]
    assert isinstance(bill["id"], str) and bill["rowNumber"] == 1
    fields = {k: v for k, v in bill.items() if k not in ("id", "rowNumber", "custom", "_links")}
    assert all(isinstance(v, dict) and set(v) <= {"value"} for v in fields.values())


def test_a_null_field_is_an_empty_object(http: httpx.Client) -> None:
    bill = http.get(f"{API}/Bill", params={"$top": 1, "$expand": "Details"}).json()[0]
    assert bill["Details"][0]["POOrderNbr"] == {}


def test_detail_rows_come_only_with_expand(http: httpx.Client) -> None:
    plain = http.get(f"{API}/Bill", params={"$top": 1}).json()[0]
    expanded = http.get(f"{API}/Bill", params={"$top": 1, "$expand": "Details"}).json()[0]
    assert "Details" not in plain
    assert expanded["Details"] and all(isinstance(row["id"], str) for row in expanded["Details"])


def test_date_times_carry_the_company_offset(http: httpx.Client) -> None:
    moment = value(http.get(f"{API}/Bill", params={"$top": 1}).json()[0], "LastModifiedDateTime")
    parsed = datetime.fromisoformat(moment)
    assert parsed.utcoffset() == parsed.astimezone(COMPANY_TIMEZONE).utcoffset()


def test_select_trims_the_fields(http: httpx.Client) -> None:
    bill = http.get(f"{API}/Bill", params={"$top": 1, "$select": "ReferenceNbr,Status"}).json()[0]
    assert set(bill) - {"id", "rowNumber", "note", "custom", "_links"} == {"ReferenceNbr", "Status"}


def test_lists_page_with_top_and_skip_in_key_order(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    pages = [http.get(f"{API}/Bill", params={"$top": 15, "$skip": skip}).json() for skip in (0, 15, 30)]
    numbers = [value(r, "ReferenceNbr") for page in pages for r in page]
    assert [len(page) for page in pages] == [15, 15, 10]
    assert numbers == sorted(numbers) == sim.references("Bill")


def test_a_filter_on_last_modified_with_a_datetimeoffset_selects_the_later_records(
    sim: AcumaticaSimulator, http: httpx.Client
) -> None:
    since = START - timedelta(days=3)
    found = http.get(f"{API}/Bill", params={"$filter": f"LastModifiedDateTime gt {odata_datetimeoffset(since)}"}).json()
    every = http.get(f"{API}/Bill").json()
    expected = {r["id"] for r in every if datetime.fromisoformat(value(r, "LastModifiedDateTime")) > since}
    assert {r["id"] for r in found} == expected and 0 < len(expected) < len(every)


@settings(max_examples=30, deadline=None)
@given(edited=st.lists(st.integers(0, 39), max_size=8), back_s=st.integers(0, 5 * 86400),
       rest=st.sampled_from(["", " and Hold eq false", " or Hold eq true"]))
def test_a_modification_filter_answers_what_a_scan_of_every_bill_would(edited: list[int], back_s: int,
                                                                       rest: str) -> None:
    # The simulator reads such a filter from an index of modification times; a scan is the specification.
    sim = AcumaticaSimulator(size=40, start=START)
    http = signed_in(sim)
    try:
        references = sim.references("Bill")
        for n in edited:
            sim.clock.advance(60)
            sim.update_bill(references[n], Description=f"edit {n} at {sim.now():%H:%M}")
        since = (sim.now() - timedelta(seconds=back_s)).replace(microsecond=0)
        odata = f"LastModifiedDateTime ge {odata_datetimeoffset(since)}{rest}"
        found = [r["id"] for r in http.get(f"{API}/Bill", params={"$filter": odata}).json()]

        def kept(record: dict[str, Any]) -> bool:
            stamp = value(record, "LastModifiedDateTime")
            recent = stamp is not None and datetime.fromisoformat(stamp) >= since
            held = value(record, "Hold") is True
            if "and" in rest:
                return recent and not held
            return recent or held if "or" in rest else recent

        assert found == [r["id"] for r in http.get(f"{API}/Bill").json() if kept(r)]
    finally:
        http.close()
        sim.close()


@pytest.mark.parametrize(("odata", "bound"), [
    ("LastModifiedDateTime ge datetimeoffset'2026-11-20T10:00:00+00:00'", datetime(2026, 11, 20, 10, tzinfo=UTC)),
    ("Hold eq false and LastModifiedDateTime gt datetime'2026-11-20T12:00:00'", datetime(2026, 11, 20, 11, tzinfo=UTC)),
    ("LastModifiedDateTime gt datetimeoffset'2026-11-20T10:00:00Z' and LastModifiedDateTime ge "
     "datetimeoffset'2026-11-20T11:00:00Z'", datetime(2026, 11, 20, 11, tzinfo=UTC)),
    ("LastModifiedDateTime le datetimeoffset'2026-11-20T10:00:00Z'", None),
    ("LastModifiedDateTime ge datetimeoffset'2026-11-20T10:00:00Z' or Hold eq true", None),
    ("not (LastModifiedDateTime ge datetimeoffset'2026-11-20T10:00:00Z')", None),
    ("Description eq 'LastModifiedDateTime ge datetimeoffset''2026-11-20T10:00:00Z'''", None),
])
def test_the_lower_bound_of_a_filter_is_its_latest_gt_or_ge_on_the_field(odata: str, bound: datetime | None) -> None:
    fields = {"LastModifiedDateTime": "datetime", "Hold": "bool", "Description": "string"}
    assert sandbox.lower_bound(odata, "LastModifiedDateTime", fields, COMPANY_TIMEZONE) == bound


def test_a_datetime_literal_without_offset_is_read_in_the_company_zone() -> None:
    record = {"LastModifiedDateTime": datetime(2026, 11, 20, 11, 30, tzinfo=UTC)}  # 12:30 in Oslo
    fields = {"LastModifiedDateTime": "datetime"}
    naive = parse_filter("LastModifiedDateTime gt datetime'2026-11-20T12:00:00'", fields, COMPANY_TIMEZONE)
    explicit = parse_filter("LastModifiedDateTime gt datetimeoffset'2026-11-20T12:00:00+00:00'", fields, COMPANY_TIMEZONE)
    assert naive(record) and not explicit(record)


def test_a_date_field_in_a_filter_is_compared_as_the_companys_midnight() -> None:
    def midnight(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=COMPANY_TIMEZONE)

    fields = {"Date": "date", "LastModifiedDateTime": "datetime"}
    record = {"Date": date(2026, 11, 20), "LastModifiedDateTime": datetime(2026, 11, 21, tzinfo=UTC)}
    on_the_day = parse_filter("Date eq datetimeoffset'2026-11-20T00:00:00+01:00'", fields, COMPANY_TIMEZONE,
                              date_as_moment=midnight)
    after_it = parse_filter("Date gt datetimeoffset'2026-11-20T00:00:00+01:00' and LastModifiedDateTime gt "
                            "datetimeoffset'2026-11-01T00:00:00Z'", fields, COMPANY_TIMEZONE, date_as_moment=midnight)
    assert on_the_day(record) and not after_it(record)


def test_comparing_a_date_field_with_a_plain_string_is_a_400(http: httpx.Client) -> None:
    response = http.get(f"{API}/Bill", params={"$filter": "LastModifiedDateTime gt '2026-11-20'"})
    assert response.status_code == 400 and "incompatible" in response.json()["message"]


@settings(max_examples=60, deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.timezones()))
def test_a_datetimeoffset_literal_names_the_instant_it_was_built_from(moment: datetime) -> None:
    exact = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    predicate = parse_filter(f"LastModifiedDateTime eq {odata_datetimeoffset(exact)}",
                             {"LastModifiedDateTime": "datetime"}, COMPANY_TIMEZONE)
    assert predicate({"LastModifiedDateTime": exact.astimezone(UTC)})


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30))
def test_a_quoted_string_literal_matches_its_own_text(text: str) -> None:
    literal = "'" + text.replace("'", "''") + "'"
    assert parse_filter(f"Description eq {literal}", {"Description": "string"}, COMPANY_TIMEZONE)({"Description": text})


@pytest.mark.parametrize("odata", ["Amount gt", "(Status eq 'Open'", "Nope eq 1", "Status eq 'Open' xor Hold eq true"])
def test_a_filter_it_cannot_read_is_an_error_naming_the_problem(odata: str) -> None:
    with pytest.raises(ODataError):
        parse_filter(odata, {"Amount": "decimal", "Status": "string", "Hold": "bool"}, COMPANY_TIMEZONE)


# -- PUT -------------------------------------------------------------------------------------------


def new_bill(sim: AcumaticaSimulator, **fields: Any) -> dict[str, Any]:
    vendor = sim.references("Vendor")[0]
    body = {"Vendor": {"value": vendor}, "Description": {"value": "Frakt november"},
            "Details": [{"TransactionDescription": {"value": "Frakt"}, "Qty": {"value": 2},
                         "UnitCost": {"value": 500}, "Account": {"value": "6100"}}]}
    return {**body, **fields}


def test_a_put_without_a_match_inserts_a_bill_on_hold(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    response = http.put(f"{API}/Bill", json=new_bill(sim), params={"$expand": "Details"})
    assert response.status_code == 200
    assert value(response.json(), "Status") == "On Hold" and len(response.json()["Details"]) == 1


def test_if_none_match_star_refuses_to_overwrite_an_existing_record(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    existing = sim.references("Bill")[0]
    body = {"Type": {"value": "Bill"}, "ReferenceNbr": {"value": existing}, "Description": {"value": "x"}}
    response = http.put(f"{API}/Bill", json=body, headers={"If-None-Match": "*"})
    assert response.status_code == 412 and value(sim.bill(existing), "Description") != "x"


def test_if_match_star_refuses_to_create_a_missing_record(http: httpx.Client) -> None:
    body = {"Type": {"value": "Bill"}, "ReferenceNbr": {"value": "999999"}, "Description": {"value": "x"}}
    assert http.put(f"{API}/Bill", json=body, headers={"If-Match": "*"}).status_code == 412


def test_a_bare_value_where_a_value_object_belongs_is_a_400_naming_the_field(
    sim: AcumaticaSimulator, http: httpx.Client
) -> None:
    response = http.put(f"{API}/Bill", json=new_bill(sim, Description="plain text"))
    assert response.status_code == 400 and "Description" in response.json()["message"]


def test_taking_an_unbalanced_bill_off_hold_is_refused_on_its_amount(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    reference = value(sim.create_bill(sim.references("Vendor")[0], [{"UnitCost": 100.0, "Account": "6100"}],
                                      amount=99.0), "ReferenceNbr")
    body = {"Type": {"value": "Bill"}, "ReferenceNbr": {"value": reference}, "Hold": {"value": False}}
    response = http.put(f"{API}/Bill", json=body)
    assert response.status_code == 422
    assert response.json()["Amount"]["error"] == "Document is out of balance."
    assert value(sim.bill(reference), "Status") == "On Hold"


def test_a_balanced_bill_taken_off_hold_becomes_balanced(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    reference = value(sim.create_bill(sim.references("Vendor")[0], [{"UnitCost": 100.0, "Account": "6100"}]),
                      "ReferenceNbr")
    body = {"Type": {"value": "Bill"}, "ReferenceNbr": {"value": reference}, "Hold": {"value": False}}
    assert value(http.put(f"{API}/Bill", json=body).json(), "Status") == "Balanced"


def test_an_unknown_vendor_is_a_422_on_the_vendor_field(http: httpx.Client, sim: AcumaticaSimulator) -> None:
    response = http.put(f"{API}/Bill", json=new_bill(sim, Vendor={"value": "NOSUCHVEND"}))
    assert response.status_code == 422 and "cannot be found" in response.json()["Vendor"]["error"]


# -- actions ---------------------------------------------------------------------------------------


def test_release_bill_answers_202_with_a_status_location(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    reference = sim.references("Bill", "Balanced")[0]
    response = release(http, "Bill", "ReleaseBill", {"Type": "Bill", "ReferenceNbr": reference})
    assert response.status_code == 202
    assert response.headers["Location"].startswith(f"{API}/Bill/ReleaseBill/status/")


def test_the_status_answers_202_while_running_then_204(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    reference = sim.references("Bill", "Balanced")[0]
    location = release(http, "Bill", "ReleaseBill", {"Type": "Bill", "ReferenceNbr": reference}).headers["Location"]
    assert http.get(location).status_code == 202
    sim.clock.advance(2)
    assert http.get(location).status_code == 204
    assert value(sim.bill(reference), "Status") == "Open"


def test_the_release_goes_on_though_nobody_polls(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    reference = sim.references("Bill", "Balanced")[0]
    release(http, "Bill", "ReleaseBill", {"Type": "Bill", "ReferenceNbr": reference})
    sim.clock.advance(2)
    assert value(sim.bill(reference), "Status") == "Open"


def test_releasing_a_released_bill_fails_with_acumaticas_error(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    reference = sim.references("Bill", "Open")[0]
    location = release(http, "Bill", "ReleaseBill", {"Type": "Bill", "ReferenceNbr": reference}).headers["Location"]
    sim.clock.advance(2)
    failed = http.get(location)
    assert failed.status_code == 500
    assert failed.json()["exceptionMessage"] == "Document Status is invalid for processing."


def test_a_bill_on_hold_cannot_be_released(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    reference = sim.references("Bill", "On Hold")[0]
    location = release(http, "Bill", "ReleaseBill", {"Type": "Bill", "ReferenceNbr": reference}).headers["Location"]
    sim.clock.advance(2)
    assert "On Hold" in http.get(location).json()["exceptionMessage"]


def test_release_payment_opens_or_closes_the_payment(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    reference = sim.references("Payment", "Balanced")[0]
    location = release(http, "Payment", "ReleasePayment", {"Type": "Payment", "ReferenceNbr": reference})
    sim.clock.advance(2)
    assert http.get(location.headers["Location"]).status_code == 204
    assert value(sim.payment(reference), "Status") in {"Open", "Closed"}


def test_the_generic_approve_action_opens_a_po_pending_approval(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    order = sim.references("PurchaseOrder", "Pending Approval")[0]
    response = release(http, "PurchaseOrder", "Approve", {"Type": "Normal", "OrderNbr": order})
    assert response.status_code == 204 and "/PurchaseOrder/" in response.headers["Location"]
    assert value(sim.purchase_order(order), "Status") == "Open"


def test_approving_a_po_that_is_not_pending_approval_is_refused(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    order = sim.references("PurchaseOrder", "Open")[0]
    response = release(http, "PurchaseOrder", "Approve", {"Type": "Normal", "OrderNbr": order})
    assert response.status_code == 400 and "not available" in response.json()["exceptionMessage"]


def test_an_action_the_screen_does_not_have_is_refused(sim: AcumaticaSimulator, http: httpx.Client) -> None:
    reference = sim.references("Bill")[0]
    assert release(http, "Bill", "Approve", {"Type": "Bill", "ReferenceNbr": reference}).status_code == 400


# -- push notifications ----------------------------------------------------------------------------


class Receiver:
    """A push destination that fails the first ``failures`` deliveries, then verifies and keeps them."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[httpx.Request] = []
        self.verifier = AcumaticaWebhookVerifier(sandbox.DEMO_PUSH_TOKEN)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        if len(self.received) <= self.failures:
            return httpx.Response(503)
        self.verifier.verify(WebhookRequest(body=request.content, headers=dict(request.headers)))
        return httpx.Response(200)


def pushing(receiver: Receiver) -> AcumaticaSimulator:
    return AcumaticaSimulator(size=20, start=START, webhook_url="https://connector.test/webhooks/acumatica",
                              webhook_transport=httpx.MockTransport(receiver), time_scale=0.001)


def test_an_update_is_pushed_as_the_old_row_deleted_and_the_new_row_inserted() -> None:
    receiver = Receiver()
    sim = pushing(receiver)
    try:
        reference = sim.references("Bill", "Balanced")[0]
        sim.put_bill_on_hold(reference, "Mangler varemottak")
        assert sim.flush_webhooks()
    finally:
        sim.close()
    import json

    body = json.loads(receiver.received[-1].content)
    assert body["Query"] == "Bills" and body["CompanyId"] == sandbox.COMPANY_ID
    assert [row["Status"] for row in body["Deleted"]] == ["Balanced"]
    assert [row["Status"] for row in body["Inserted"]] == ["On Hold"]
    assert receiver.received[-1].headers[DEFAULT_HEADER_NAME] == sandbox.DEMO_PUSH_TOKEN


def test_a_failed_push_is_resent_up_to_five_times() -> None:
    receiver = Receiver(failures=99)
    sim = pushing(receiver)
    try:
        sim.reject_po(sim.references("PurchaseOrder", "Pending Approval")[0])
        assert sim.flush_webhooks()
    finally:
        sim.close()
    assert len(receiver.received) == 6


def test_a_push_verifies_with_the_receivers_verifier_into_one_event_per_row() -> None:
    receiver = Receiver()
    sim = pushing(receiver)
    try:
        sim.payment_exception(sim.references("Payment", "Balanced")[0])
        assert sim.flush_webhooks()
    finally:
        sim.close()
    events = receiver.verifier.verify(WebhookRequest(body=receiver.received[-1].content,
                                                     headers=dict(receiver.received[-1].headers)))
    assert [event.record_ref.entity for event in events if event.record_ref] == ["payments"]


# -- helpers and demo data -------------------------------------------------------------------------


def test_the_demo_vendors_are_nordic_companies_with_vat_numbers(sim: AcumaticaSimulator) -> None:
    vendors = sim.collections()["vendors"]
    assert all(value(v, "TaxRegistrationID")[:2] in {"NO", "SE", "DK", "FI"} for v in vendors)
    assert {value(v, "CurrencyID") for v in vendors} <= {"NOK", "SEK", "DKK", "EUR"}


def test_the_demo_has_documents_in_every_exception_state(sim: AcumaticaSimulator) -> None:
    states = {(entity, status) for entity, _, status in sim.exception_documents()}
    assert {("Bill", "On Hold"), ("Bill", "Pending Approval"), ("PurchaseOrder", "Pending Approval")} <= states
    unbalanced = [b for b in sim.collections()["bills"] if value(b, "Status") == "On Hold" and
                  round(sum(value(line, "Amount") for line in b["Details"]) + value(b, "TaxTotal"), 2)
                  != value(b, "Amount")]
    assert unbalanced


def test_a_helper_change_moves_last_modified_forward(sim: AcumaticaSimulator) -> None:
    reference = sim.references("Bill", "Balanced")[0]
    before = datetime.fromisoformat(value(sim.bill(reference), "LastModifiedDateTime"))
    sim.clock.advance(5)
    after = sim.mark_unbalanced(reference)
    assert value(after, "Status") == "On Hold" and datetime.fromisoformat(value(after, "LastModifiedDateTime")) > before


def test_reject_po_rejects_a_po_pending_approval(sim: AcumaticaSimulator) -> None:
    order = sim.references("PurchaseOrder", "Pending Approval")[0]
    assert value(sim.reject_po(order), "Status") == "Rejected"


def test_a_saved_tenant_restores_its_documents_and_sessions(
    sim: AcumaticaSimulator, wire: httpx.Client, tmp_path: Path
) -> None:
    password_grant(wire)
    created = sim.create_bill(sim.references("Vendor")[0], [{"UnitCost": 10.0, "Account": "6100"}])
    sim.save_state(tmp_path / "acumatica.state")
    restored = AcumaticaSimulator(size=40, start=START)
    try:
        assert restored.restore_state(tmp_path / "acumatica.state")
        assert restored.bill(value(created, "ReferenceNbr"))["id"] == created["id"]
        assert len(restored.active_sessions()) == 1
    finally:
        restored.close()


def test_sandbox_credentials_match_what_the_simulator_answers(wire: httpx.Client) -> None:
    shown = wire.get("/_sandbox/credentials").json()
    assert sandbox.sandbox_credentials().items() <= shown.items()
