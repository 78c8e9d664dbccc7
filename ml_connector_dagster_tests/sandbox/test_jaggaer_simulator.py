"""The JAGGAER simulator: J1P REST behind Keycloak and the cXML endpoint, their traps reproduced."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from ml_connector_dagster.sandbox.demo_data import SUPPLIERS, VismaDemoData
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jaggaer import (
    DEFAULT_CXML_PATH,
    DEFAULT_PATHS,
    DEFAULT_TOKEN_PATH,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_CXML_SHARED_SECRET,
    GL_ACCOUNT_MAP,
    GL_ACCOUNT_TABLE,
    MAX_PAGE_SIZE,
    TOKEN_TTL_S,
    JaggaerSimulator,
    sandbox_credentials,
)
from ml_connector_dagster.sandbox.jaggaer.data import JaggaerDemoData
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.jaggaer.cxml import (
    CXML_DTD,
    DocumentStatusUpdate,
    InvoiceDetail,
    InvoiceLine,
    InvoiceStatusUpdate,
    OrderDetail,
    OrderLine,
    build_invoice_detail_request,
    build_order_request,
    build_status_update,
    dtd_errors,
    parse_reply,
    safe_parser,
)
from ml_connector_dagster_tests.jaggaer_sandbox import ENVELOPE

BASE_URL = "http://jaggaer.sandbox"
START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
INVOICES_PATH = DEFAULT_PATHS["invoices"]
OFFSET_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0[12]:00$")


@contextmanager
def connect(sim: JaggaerSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=InProcessTransport(sim.app), base_url=BASE_URL) as client:
        yield client


def token(http: httpx.Client, path: str = DEFAULT_TOKEN_PATH) -> str:
    response = http.post(path, data={"grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID,
                                     "client_secret": DEMO_CLIENT_SECRET})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def sim() -> JaggaerSimulator:
    return JaggaerSimulator(size=200, start=START)


@pytest.fixture(scope="module")
def api(sim: JaggaerSimulator) -> Iterator[httpx.Client]:
    with connect(sim) as http:
        http.headers["Authorization"] = f"Bearer {token(http)}"
        yield http


@pytest.fixture
def fresh() -> JaggaerSimulator:
    """A small simulator of its own, for tests that change it."""
    return JaggaerSimulator(size=60, start=START)


def page(api: httpx.Client, path: str = INVOICES_PATH, **params: Any) -> dict[str, Any]:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def every_record(api: httpx.Client, path: str = INVOICES_PATH, **params: Any) -> list[dict[str, Any]]:
    records, number = [], 0
    while True:
        body = page(api, path, page=number, size=MAX_PAGE_SIZE, **params)
        records += body["content"]
        if body["last"]:
            return records
        number += 1


def post_cxml(sim: JaggaerSimulator, body: bytes, content_type: str = "text/xml; charset=UTF-8") -> httpx.Response:
    with connect(sim) as http:
        return http.post(DEFAULT_CXML_PATH, content=body, headers={"Content-Type": content_type})


def status_of(response: httpx.Response) -> tuple[int, int]:
    """(HTTP status, cXML Status code) of a cXML answer."""
    return response.status_code, parse_reply(response.content).code


def paid(invoice_number: str, secret: str = DEMO_CXML_SHARED_SECRET, **fields: Any) -> bytes:
    return build_status_update(ENVELOPE, secret, InvoiceStatusUpdate(invoice_id=invoice_number, status="paid",
                                                                    **fields)).xml


def unique_invoice(sim: JaggaerSimulator) -> dict[str, Any]:
    invoices = sim.collections()["invoices"]
    numbers = [invoice["invoiceNumber"] for invoice in invoices]
    return next(invoice for invoice in invoices if numbers.count(invoice["invoiceNumber"]) == 1)


def moment(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["lastModifiedDate"])


# -- OAuth (Keycloak) -------------------------------------------------------------------------------


def test_token_is_issued_for_client_credentials_with_keycloak_fields(sim: JaggaerSimulator) -> None:
    with connect(sim) as http:
        body = http.post(DEFAULT_TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID,
                                                   "client_secret": DEMO_CLIENT_SECRET}).json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == TOKEN_TTL_S == 300
    assert body["refresh_expires_in"] == 0 and "refresh_token" not in body


def test_token_accepts_http_basic_client_authentication(sim: JaggaerSimulator) -> None:
    basic = base64.b64encode(f"{DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET}".encode()).decode()
    with connect(sim) as http:
        response = http.post(DEFAULT_TOKEN_PATH, data={"grant_type": "client_credentials"},
                             headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 200


def test_token_refuses_a_wrong_secret_as_invalid_client(sim: JaggaerSimulator) -> None:
    with connect(sim) as http:
        response = http.post(DEFAULT_TOKEN_PATH, data={"grant_type": "client_credentials",
                                                       "client_id": DEMO_CLIENT_ID, "client_secret": "nope"})
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_token_without_grant_type_is_an_invalid_request(sim: JaggaerSimulator) -> None:
    with connect(sim) as http:
        response = http.post(DEFAULT_TOKEN_PATH, data={"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_token_refuses_other_grants(sim: JaggaerSimulator) -> None:
    with connect(sim) as http:
        response = http.post(DEFAULT_TOKEN_PATH, data={"grant_type": "password", "client_id": DEMO_CLIENT_ID,
                                                       "client_secret": DEMO_CLIENT_SECRET})
    assert (response.status_code, response.json()["error"]) == (400, "unsupported_grant_type")


def test_api_refuses_a_call_without_token_with_an_empty_401(sim: JaggaerSimulator) -> None:
    with connect(sim) as http:
        response = http.get(INVOICES_PATH)
    assert (response.status_code, response.headers["WWW-Authenticate"], response.content) == (401, "Bearer", b"")


def test_api_refuses_an_expired_token(fresh: JaggaerSimulator) -> None:
    with connect(fresh) as http:
        http.headers["Authorization"] = f"Bearer {token(http)}"
        assert http.get(INVOICES_PATH).status_code == 200
        fresh.clock.advance(TOKEN_TTL_S + 1)
        response = http.get(INVOICES_PATH)
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# -- configurable paths -------------------------------------------------------------------------------


def test_routes_follow_the_configured_paths() -> None:
    custom = JaggaerSimulator(size=20, start=START, paths={"invoices": "/api/fjordlys/v2/ap-invoices"})
    with connect(custom) as http:
        http.headers["Authorization"] = f"Bearer {token(http)}"
        moved = http.get("/api/fjordlys/v2/ap-invoices")
        default = http.get(INVOICES_PATH)
        kept = http.get(DEFAULT_PATHS["vendors"])
    assert moved.status_code == 200 and moved.json()["totalElements"] == 20
    assert (default.status_code, default.json()["status"]) == (404, 404)
    assert kept.status_code == 200


def test_token_and_cxml_paths_are_configurable() -> None:
    custom = JaggaerSimulator(size=20, start=START, token_path="/realms/acme/protocol/openid-connect/token",
                              cxml_path="/apps/cxml/inbound")
    with connect(custom) as http:
        assert http.post(DEFAULT_TOKEN_PATH, data={"grant_type": "client_credentials"}).status_code == 401
        token(http, "/realms/acme/protocol/openid-connect/token")
        answer = http.post("/apps/cxml/inbound", content=paid("nobody"), headers={"Content-Type": "text/xml"})
    assert parse_reply(answer.content).code == 417


def test_a_path_outside_the_configuration_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="contracts"):
        JaggaerSimulator(size=20, paths={"contracts": "/x"})


def test_paths_are_case_sensitive(api: httpx.Client) -> None:
    assert api.get(INVOICES_PATH.upper()).status_code == 404


def test_other_methods_are_not_allowed(api: httpx.Client) -> None:
    assert api.post(INVOICES_PATH, json={}).status_code == 405


# -- pages, order and the modification filter ---------------------------------------------------------


def test_pages_are_zero_based_and_say_which_is_last(api: httpx.Client) -> None:
    first, last = page(api, page=0, size=60), page(api, page=3, size=60)
    assert (first["number"], first["first"], first["last"], first["totalPages"]) == (0, True, False, 4)
    assert (last["numberOfElements"], last["last"]) == (20, True)
    assert page(api, page=4, size=60)["empty"]


def test_page_size_above_the_maximum_is_clamped_silently(api: httpx.Client) -> None:
    body = page(api, size=500)
    assert (body["size"], body["numberOfElements"], body["last"]) == (MAX_PAGE_SIZE, MAX_PAGE_SIZE, False)


@pytest.mark.parametrize(("params", "message"), [
    ({"page": -1}, "Page index"), ({"size": 0}, "Page size"), ({"page": "x"}, "For input string"),
    ({"sort": "amount,asc"}, "No property 'amount'"), ({"sort": "lastModifiedDate,up"}, "sort direction"),
])  # fmt: skip
def test_bad_paging_or_sorting_is_refused_in_spring_shape(api: httpx.Client, params: dict[str, Any], message: str) -> None:
    response = api.get(INVOICES_PATH, params=params)
    assert response.status_code == 400 and message in response.json()["message"]
    assert response.json()["path"] == INVOICES_PATH


def test_without_a_sort_records_come_by_id(api: httpx.Client) -> None:
    ids = [record["invoiceId"] for record in every_record(api)]
    assert ids == sorted(ids)


def test_sorted_by_modification_every_record_comes_once_in_order(api: httpx.Client) -> None:
    records = every_record(api, sort="lastModifiedDate,asc")
    keys = [(moment(r), r["invoiceId"]) for r in records]
    assert keys == sorted(keys) and len({r["invoiceId"] for r in records}) == 200


def test_the_filter_is_inclusive_from_and_exclusive_to(api: httpx.Client) -> None:
    records = every_record(api, sort="lastModifiedDate,asc")
    low, high = moment(records[40]), moment(records[120])
    window = every_record(api, sort="lastModifiedDate,asc", lastModifiedFrom=low.isoformat(),
                          lastModifiedTo=high.isoformat())
    assert window == [r for r in records if low <= moment(r) < high]
    assert window[0]["invoiceId"] == records[40]["invoiceId"]


@settings(max_examples=40, deadline=None)
@given(first=st.integers(0, 199), span=st.integers(0, 199), nudge_us=st.integers(-1500, 1500),
       sort=st.sampled_from([None, "lastModifiedDate,asc", "lastModifiedDate,desc"]), bounded=st.booleans())
def test_any_window_answers_what_a_scan_of_every_record_would(api: httpx.Client, first: int, span: int,
                                                              nudge_us: int, sort: str | None, bounded: bool) -> None:
    # Bounds are microseconds and stamps milliseconds: a window between two stamps of one record cluster
    # must still keep exactly the records a scan would.
    records = every_record(api, sort="lastModifiedDate,asc")
    low = moment(records[first]) + timedelta(microseconds=nudge_us)
    high = moment(records[min(199, first + span)]) + timedelta(microseconds=nudge_us)
    bounds = {"lastModifiedFrom": low.isoformat(), "lastModifiedTo": high.isoformat()} if bounded else {}
    window = every_record(api, **bounds, **({"sort": sort} if sort else {}))
    kept = [r for r in records if low <= moment(r) < high or not bounded]
    if sort is None:
        kept.sort(key=lambda r: r["invoiceId"])
    assert window == (kept[::-1] if sort and sort.endswith("desc") else kept)


def test_a_filter_value_without_offset_is_refused(api: httpx.Client) -> None:
    response = api.get(INVOICES_PATH, params={"lastModifiedFrom": "2026-11-01T00:00:00"})
    assert response.status_code == 400 and "offset" in response.json()["message"]


def test_records_answer_timestamps_in_oslo_time_with_offset(api: httpx.Client) -> None:
    assert all(OFFSET_TIMESTAMP.match(r["lastModifiedDate"]) for r in page(api, size=100)["content"])


def test_clusters_of_records_share_one_millisecond(sim: JaggaerSimulator) -> None:
    stamps = [r["lastModifiedDate"] for r in sim.collections()["invoices"]]
    assert max(stamps.count(stamp) for stamp in stamps) >= 3


def test_single_get_answers_the_record_or_a_spring_404(api: httpx.Client) -> None:
    assert api.get(f"{INVOICES_PATH}/710001").json()["invoiceId"] == 710001
    missing = api.get(f"{INVOICES_PATH}/999")
    assert (missing.status_code, missing.json()["error"]) == (404, "Not Found")


# -- rate limits and faults ----------------------------------------------------------------------------


def test_over_the_budget_answers_429_with_retry_after() -> None:
    small = JaggaerSimulator(size=10, start=START, rate_limit_per_minute=3)
    with connect(small) as http:
        http.headers["Authorization"] = f"Bearer {token(http)}"
        answers = [http.get(INVOICES_PATH) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    assert answers[-1].json()["error"] == "Too Many Requests"


def test_a_fault_plan_burst_answers_429_with_retry_after(fresh: JaggaerSimulator) -> None:
    with connect(fresh) as http:
        http.headers["Authorization"] = f"Bearer {token(http)}"
        fresh.set_faults(FaultPlan(rate_limit_burst=1, retry_after_s=7))
        first, second = http.get(INVOICES_PATH), http.get(INVOICES_PATH)
    assert (first.status_code, first.headers["Retry-After"], second.status_code) == (429, "7", 200)


def test_a_server_fault_on_the_api_answers_spring_json(fresh: JaggaerSimulator) -> None:
    with connect(fresh) as http:
        http.headers["Authorization"] = f"Bearer {token(http)}"
        fresh.set_faults(FaultPlan(error_rate=1, error_status=503, paths=["^/j1p/"]))
        response = http.get(INVOICES_PATH)
    assert (response.status_code, response.json()["status"]) == (503, 503)


# -- cXML -------------------------------------------------------------------------------------------------


def test_cxml_status_update_is_200_ok_and_marks_the_invoice_paid(fresh: JaggaerSimulator) -> None:
    invoice = unique_invoice(fresh)
    before = moment(invoice)
    answer = post_cxml(fresh, paid(invoice["invoiceNumber"], partial_amount=Decimal("10.00"), currency="NOK"))
    assert status_of(answer) == (200, 200)
    after = fresh.record("invoices", invoice["invoiceId"])
    assert after is not None
    assert (after["paymentStatus"], after["erpStatus"], after["paidAmount"]) == ("PAID", "PAID", 10.0)
    assert moment(after) > before  # a poll finds the change


def test_cxml_receipt_confirmation_sets_the_purchase_order_receipt_status(fresh: JaggaerSimulator) -> None:
    order = fresh.collections()["purchase_orders"][0]
    document = build_status_update(ENVELOPE, DEMO_CXML_SHARED_SECRET,
                                   DocumentStatusUpdate(document_id=order["poNumber"], status="received"))
    assert status_of(post_cxml(fresh, document.xml)) == (200, 200)
    assert fresh.record("purchase_orders", order["purchaseOrderId"])["receiptStatus"] == "RECEIVED"  # type: ignore[index]


def test_cxml_invoice_is_201_accepted_and_appears_in_the_api(fresh: JaggaerSimulator) -> None:
    order = next(o for o in fresh.collections()["purchase_orders"] if o["supplier"])
    invoice = InvoiceDetail(invoice_id="F-2026-77001", invoice_date=START, order_id=order["poNumber"],
                            currency=order["currency"], tax_amount=Decimal("25"),
                            lines=[InvoiceLine(line_number=1, quantity=Decimal(1), unit_price=Decimal(100),
                                               description="Frakt")])
    answer = post_cxml(fresh, build_invoice_detail_request(ENVELOPE, DEMO_CXML_SHARED_SECRET, invoice).xml)
    assert status_of(answer) == (200, 201)
    (created,) = fresh.find("invoices", "invoiceNumber", "F-2026-77001")
    assert (created["purchaseOrderNumber"], created["totalAmount"], created["status"]) == (
        order["poNumber"], 125.0, "IN_WORKFLOW")


def test_cxml_order_request_creates_a_purchase_order(fresh: JaggaerSimulator) -> None:
    order = OrderDetail(order_id="ERP-4711", order_date=START, currency="NOK", bill_to="Fjordlys Industri AS",
                        lines=[OrderLine(line_number=1, quantity=Decimal(3), unit_price=Decimal("19.90"),
                                         description="Toner", supplier_part_id="ART-1")])
    body = build_order_request(ENVELOPE, DEMO_CXML_SHARED_SECRET, order).xml
    assert status_of(post_cxml(fresh, body)) == (200, 200)
    (created,) = fresh.find("purchase_orders", "poNumber", "ERP-4711")
    assert created["totalAmount"] == 59.7
    again = build_order_request(ENVELOPE, DEMO_CXML_SHARED_SECRET, order).xml
    assert status_of(post_cxml(fresh, again)) == (200, 400)  # a second "new" for the same order


def test_cxml_wrong_shared_secret_is_401(fresh: JaggaerSimulator) -> None:
    invoice = unique_invoice(fresh)
    answer = post_cxml(fresh, paid(invoice["invoiceNumber"], secret="guessed"))
    assert status_of(answer) == (200, 401)
    assert fresh.record("invoices", invoice["invoiceId"]) == invoice


def test_cxml_document_failing_the_dtd_is_406(fresh: JaggaerSimulator) -> None:
    body = paid("F-1").replace(b'<Status code="200" text="OK"/>', b"")  # Status is required by the DTD
    answer = post_cxml(fresh, body)
    assert status_of(answer) == (200, 406)
    assert "cXML.dtd" in parse_reply(answer.content).message


@pytest.mark.parametrize(("body", "why"), [
    (b"<cXML><unclosed></cXML>", "well-formed"),
    (b'<?xml version="1.0"?><cXML payloadID="1" timestamp="2026-11-21T12:00:00+00:00"/>', "DOCTYPE"),
    (b'<?xml version="1.0"?><!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.063/cXML.dtd" '
     b'[<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><cXML>&b;</cXML>', "Internal DTD"),
    (b'<?xml version="1.0"?><!DOCTYPE html><html/>', "root element"),
])  # fmt: skip
def test_cxml_that_cannot_be_read_safely_is_406(fresh: JaggaerSimulator, body: bytes, why: str) -> None:
    answer = post_cxml(fresh, body)
    assert status_of(answer) == (200, 406) and why in parse_reply(answer.content).message


def test_cxml_must_be_sent_as_xml(fresh: JaggaerSimulator) -> None:
    assert status_of(post_cxml(fresh, paid("F-1"), content_type="application/json")) == (200, 406)


def test_cxml_for_an_unknown_invoice_is_417(fresh: JaggaerSimulator) -> None:
    assert status_of(post_cxml(fresh, paid("no-such-invoice"))) == (200, 417)


def test_cxml_request_types_not_implemented_are_450(fresh: JaggaerSimulator) -> None:
    body = paid("F-1")
    start, end = body.index(b"<StatusUpdateRequest>"), body.index(b"</StatusUpdateRequest>") + 22
    answer = post_cxml(fresh, body[:start] + b"<ProfileRequest/>" + body[end:])
    assert status_of(answer) == (200, 450)


def test_cxml_payload_seen_before_gets_the_same_answer_and_is_applied_once(fresh: JaggaerSimulator) -> None:
    body = build_order_request(ENVELOPE, DEMO_CXML_SHARED_SECRET, OrderDetail(
        order_id="ERP-9", order_date=START, currency="NOK", bill_to="Fjordlys",
        lines=[OrderLine(line_number=1, quantity=Decimal(1), unit_price=Decimal(5), description="x",
                         supplier_part_id="A")])).xml
    first, second = post_cxml(fresh, body), post_cxml(fresh, body)
    assert status_of(first) == status_of(second) == (200, 200)
    assert len(fresh.find("purchase_orders", "poNumber", "ERP-9")) == 1
    (document,) = fresh.collections()["cxml_documents"]
    assert document["deliveries"] == 2


def test_cxml_fault_answers_http_5xx_with_a_cxml_status(fresh: JaggaerSimulator) -> None:
    fresh.set_faults(FaultPlan(error_rate=1, error_status=502, paths=[DEFAULT_CXML_PATH]))
    assert status_of(post_cxml(fresh, paid("F-1"))) == (502, 500)


def test_cxml_transient_failures_answer_560_inside_http_200(fresh: JaggaerSimulator) -> None:
    invoice = unique_invoice(fresh)
    fresh.fail_next_cxml(1)
    assert status_of(post_cxml(fresh, paid(invoice["invoiceNumber"]))) == (200, 560)
    assert fresh.record("invoices", invoice["invoiceId"])["paymentStatus"] == invoice["paymentStatus"]  # type: ignore[index]


def test_cxml_replies_validate_against_the_dtd(fresh: JaggaerSimulator) -> None:
    answer = post_cxml(fresh, paid("no-such-invoice"))
    root = etree.fromstring(answer.content, safe_parser())
    assert root.getroottree().docinfo.system_url.endswith("/1.2.063/cXML.dtd")
    assert dtd_errors(root, CXML_DTD) == []


# -- demo data ------------------------------------------------------------------------------------------------


def test_vendors_are_the_visma_suppliers_named_and_tax_numbered_in_varied_ways(sim: JaggaerSimulator) -> None:
    visma = VismaDemoData(seed=0, size=200, days=14, anchor=START)
    parties = {visma.party(SUPPLIERS, seq).organisation.replace("-", ""): visma.party(SUPPLIERS, seq)
               for seq in range(visma.counts[SUPPLIERS])}
    vendors = sim.collections()["vendors"]
    matched = [v for v in vendors if v["taxId"] and any(org in re.sub(r"\D", "", v["taxId"]) for org in parties)]
    assert len(matched) >= len(parties) // 2
    formats = {re.sub(r"\d", "9", v["taxId"]) for v in matched}
    assert len(formats) >= 4  # e.g. "NO 999 999 999 MVA", "999999999", "SE99999999999901"
    renamed = [v for v in matched if v["name"] not in {p.name for p in parties.values()}]
    assert renamed  # "A/S" for "AS", "Aktiebolag", "Oy ... Ab", upper case, suffix dropped


def test_one_vendor_shares_a_visma_suppliers_name_but_not_its_organisation(sim: JaggaerSimulator) -> None:
    first = VismaDemoData(seed=0, size=200, days=14, anchor=START).party(SUPPLIERS, 0)
    namesakes = [v for v in sim.collections()["vendors"] if v["name"] == first.name]
    assert any(first.organisation.replace("-", "") not in re.sub(r"\D", "", v["taxId"] or "") for v in namesakes)


def test_the_vendors_without_a_visma_supplier_are_named_and_no_supplier_shares_their_organisation() -> None:
    data = JaggaerDemoData(seed=0, size=200, days=14, anchor=START)
    visma = VismaDemoData(seed=0, size=200, days=14, anchor=START)
    organisations = {visma.party(SUPPLIERS, seq).organisation for seq in range(visma.counts[SUPPLIERS])}
    unmatched = data.vendors_without_supplier
    assert unmatched and unmatched <= {int(v) for v in data.records["vendors"]}
    assert all(data.vendor_parties[vendor].organisation not in organisations for vendor in unmatched)
    assert all(party.organisation in organisations for vendor, party in data.vendor_parties.items()
               if vendor not in unmatched)


def test_a_vendor_carries_a_stale_erp_number(sim: JaggaerSimulator) -> None:
    assert any(v["erpNumber"] == "19999" for v in sim.collections()["vendors"])  # Visma has no supplier 19999


def test_invoices_reference_purchase_orders_of_their_vendor(sim: JaggaerSimulator) -> None:
    orders = {o["poNumber"]: o for o in sim.collections()["purchase_orders"]}
    with_po = [i for i in sim.collections()["invoices"] if i["purchaseOrderNumber"]]
    assert len(with_po) > 100
    assert all(orders[i["purchaseOrderNumber"]]["supplier"]["supplierId"] == i["supplier"]["supplierId"]
               for i in with_po)


def test_gl_account_codes_map_to_visma_accounts_except_two(sim: JaggaerSimulator) -> None:
    codes = {a["code"] for a in sim.collections()["gl_accounts"]}
    assert codes == {a.code for a in GL_ACCOUNT_TABLE}
    assert len(codes - set(GL_ACCOUNT_MAP)) == 2
    used = {line["accountCode"] for i in sim.collections()["invoices"] for line in i["lines"]}
    assert used <= codes


def test_a_few_records_are_malformed_on_purpose(sim: JaggaerSimulator) -> None:
    invalid = sim.invalid_records()
    assert {collection for collection, _, _ in invalid} == {"invoices", "purchase_orders"}
    assert 1 <= len(invalid) <= 20


def test_same_seed_and_start_give_the_same_data() -> None:
    assert JaggaerSimulator(size=30, start=START).collections() == JaggaerSimulator(size=30, start=START).collections()


# -- secrets, credentials, persistence, sockets --------------------------------------------------------------


def test_secrets_never_appear_in_recorded_requests(fresh: JaggaerSimulator) -> None:
    with connect(fresh) as http:
        http.headers["Authorization"] = f"Bearer {token(http)}"
        http.get(INVOICES_PATH)
    post_cxml(fresh, paid("F-1"))
    with connect(fresh) as http:
        recorded = http.get("/_sandbox/requests").text
    assert "<SharedSecret>***</SharedSecret>" in recorded
    assert not any(secret in recorded for secret in fresh.secret_values())


def test_sandbox_credentials_are_what_the_simulator_answers(fresh: JaggaerSimulator) -> None:
    with connect(fresh) as http:
        assert http.get("/_sandbox/credentials").json() == sandbox_credentials(0)


def test_a_restored_tenant_keeps_its_records_and_cxml_history(fresh: JaggaerSimulator, tmp_path: Path) -> None:
    invoice = unique_invoice(fresh)
    post_cxml(fresh, paid(invoice["invoiceNumber"]))
    fresh.save_state(tmp_path / "jaggaer.state")
    later = JaggaerSimulator(size=60, start=START + timedelta(days=2))
    assert later.restore_state(tmp_path / "jaggaer.state")
    assert later.collections() == fresh.collections()
    with connect(later) as http:
        http.headers["Authorization"] = f"Bearer {token(http)}"
        assert http.get(f"{INVOICES_PATH}/{invoice['invoiceId']}").json()["paymentStatus"] == "PAID"


def test_served_simulator_answers_over_a_socket() -> None:
    with served(JaggaerSimulator(size=10, start=START)) as server:
        response = httpx.post(server.base_url + DEFAULT_TOKEN_PATH, timeout=10, data={
            "grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET})
    assert response.status_code == 200
