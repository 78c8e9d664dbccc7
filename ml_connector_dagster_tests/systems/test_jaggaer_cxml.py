"""cXML for JAGGAER: documents that always validate, replies read without ever crashing, and the
cXML client over the wire (accepted, 401 shared secret, 406 DTD failure, retries, exactly once)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from pydantic import ValidationError

from ml_connector_dagster.core import http as core_http
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jaggaer import DEMO_CXML_SHARED_SECRET, JaggaerSimulator
from ml_connector_dagster.systems.jaggaer.cxml import (
    CXML_DTD,
    INVOICE_DETAIL_DTD,
    CxmlDocument,
    CxmlDocumentInvalid,
    CxmlRejected,
    CxmlReplyUnreadable,
    CxmlStatus,
    CxmlTemporaryFailure,
    DocumentStatusUpdate,
    InvoiceDetail,
    InvoiceLine,
    InvoiceStatusUpdate,
    OrderDetail,
    OrderLine,
    build_invoice_detail_request,
    build_order_request,
    build_status_update,
    cxml_timestamp,
    dtd_errors,
    new_payload_id,
    outcome_of,
    parse_reply,
    safe_parser,
    xml_text,
)
from ml_connector_dagster_tests.jaggaer_sandbox import ENVELOPE, in_process_cxml

SECRET = "Fjordlys-shared-secret-4711"
NOW = datetime(2026, 11, 21, 16, 58, 29, tzinfo=timezone(timedelta(hours=1)))
PAYLOAD_ID = re.compile(r"^\d{13}\.\d+\.[0-9a-f]{16}@\S+$")
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
# Hypothesis: all of unicode, XML-special characters and the control characters XML 1.0 cannot carry.
ANY_TEXT = st.text(alphabet=st.characters(codec=None), max_size=40) | st.sampled_from(
    ["<&>\"'", "]]>", "&amp;", "\x00\x01\x1f", "\ud800", "Ærø ØST AS", "\ufffe\uffff", "\r\n\t", "𝔉𝔧𝔬𝔯𝔡"])
XML_LEGAL = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\ufffe\uffff",
                                           exclude_categories=("Cs", "Cc")), max_size=40)


def root_of(document: CxmlDocument) -> etree._Element:
    return etree.fromstring(document.xml, safe_parser())


def invoice(**fields: object) -> InvoiceDetail:
    values: dict[str, object] = {
        "invoice_id": "F-2026-1001", "invoice_date": NOW, "order_id": "PO-2026-000001", "currency": "NOK",
        "tax_amount": Decimal("62.50"),
        "lines": [InvoiceLine(line_number=1, quantity=Decimal("2.5"), unit_price=Decimal("100"), description="Frakt")],
        **fields,
    }
    return InvoiceDetail.model_validate(values)


def order(**fields: object) -> OrderDetail:
    values: dict[str, object] = {
        "order_id": "ERP-1", "order_date": NOW, "currency": "SEK", "bill_to": "Fjordlys Industri AS",
        "lines": [OrderLine(line_number=1, quantity=Decimal(3), unit_price=Decimal("19.90"), description="Toner",
                            supplier_part_id="ART-1"),
                  OrderLine(line_number=2, quantity=Decimal(1), unit_price=Decimal("0.15"), description="Porto",
                            supplier_part_id="P")],
        **fields,
    }
    return OrderDetail.model_validate(values)


# -- builders ----------------------------------------------------------------------------------------


def test_an_invoice_status_update_validates_and_says_what_happened() -> None:
    document = build_status_update(ENVELOPE, SECRET, InvoiceStatusUpdate(
        invoice_id="F-1", status="paid", partial_amount=Decimal("99.5"), currency="EUR", invoice_date=NOW))
    root = root_of(document)
    assert (document.request, document.dtd_name, dtd_errors(root, CXML_DTD)) == ("StatusUpdateRequest", CXML_DTD, [])
    status = root.find("Request/StatusUpdateRequest/InvoiceStatus")
    assert status is not None and status.get("type") == "paid"
    assert status.find("InvoiceIDInfo").get("invoiceID") == "F-1"  # type: ignore[union-attr]
    assert status.findtext("PartialAmount/Money") == "99.50"


def test_a_receipt_confirmation_is_a_document_status_of_the_purchase_order() -> None:
    root = root_of(build_status_update(ENVELOPE, SECRET, DocumentStatusUpdate(document_id="PO-2026-000007",
                                                                              document_reference="1.2.3@host")))
    info = root.find("Request/StatusUpdateRequest/DocumentStatus/DocumentInfo")
    assert info is not None and (info.get("documentID"), info.get("documentType")) == ("PO-2026-000007", "PurchaseOrder")
    assert root.find("Request/StatusUpdateRequest/DocumentReference").get("payloadID") == "1.2.3@host"  # type: ignore[union-attr]


def test_an_order_request_totals_its_lines() -> None:
    root = root_of(build_order_request(ENVELOPE, SECRET, order()))
    assert dtd_errors(root, CXML_DTD) == []
    assert root.findtext("Request/OrderRequest/OrderRequestHeader/Total/Money") == "59.85"


def test_an_invoice_detail_request_validates_against_the_invoice_detail_dtd() -> None:
    document = build_invoice_detail_request(ENVELOPE, SECRET, invoice())
    root = root_of(document)
    assert document.dtd_name == INVOICE_DETAIL_DTD and root.get("version") == "1.2.037"
    assert root.getroottree().docinfo.system_url == "http://xml.cxml.org/schemas/cXML/1.2.037/InvoiceDetail.dtd"
    assert dtd_errors(root, INVOICE_DETAIL_DTD) == []
    assert root.findtext("Request/InvoiceDetailRequest/InvoiceDetailSummary/NetAmount/Money") == "312.50"


def test_the_envelope_carries_from_to_and_the_senders_shared_secret() -> None:
    root = root_of(build_status_update(ENVELOPE, SECRET, InvoiceStatusUpdate(invoice_id="F-1", status="processing")))
    assert root.findtext("Header/To/Credential/Identity") == ENVELOPE.to_party.identity
    assert root.findtext("Header/Sender/Credential/SharedSecret") == SECRET
    assert root.findtext("Header/Sender/UserAgent") == "ml-connector"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ANY_TEXT)
def test_any_text_makes_documents_that_validate(text: str) -> None:
    documents = [
        build_status_update(ENVELOPE, SECRET, InvoiceStatusUpdate(invoice_id=text, status="rejected", comments=text)),
        build_status_update(ENVELOPE, SECRET, DocumentStatusUpdate(document_id=text, status=text or "x", comments=text)),
        build_order_request(ENVELOPE, SECRET, order(order_id=text, bill_to=text, comments=text)),
        build_invoice_detail_request(ENVELOPE, SECRET, invoice(invoice_id=text, order_id=text, comments=text)),
    ]
    for document in documents:
        assert dtd_errors(root_of(document), document.dtd_name) == []


@settings(max_examples=60, deadline=None)
@given(text=XML_LEGAL)
def test_text_xml_can_carry_comes_back_unchanged(text: str) -> None:
    root = root_of(build_status_update(ENVELOPE, SECRET, InvoiceStatusUpdate(invoice_id=text, status="paid",
                                                                           comments=text)))
    status = root.find("Request/StatusUpdateRequest/InvoiceStatus")
    assert status is not None and status.find("InvoiceIDInfo").get("invoiceID") == text  # type: ignore[union-attr]
    assert (status.findtext("Comments") or "") == text


def test_characters_xml_cannot_carry_become_replacement_characters() -> None:
    assert xml_text("a\x00b\ud800c\x1f") == "a\ufffdb\ufffdc\ufffd"


def test_payload_ids_are_unique_and_shaped_timestamp_pid_random_at_host() -> None:
    payload_ids = {new_payload_id() for _ in range(500)}
    assert len(payload_ids) == 500 and all(PAYLOAD_ID.match(p) for p in payload_ids)


def test_timestamps_carry_their_offset_and_naive_ones_are_refused() -> None:
    assert cxml_timestamp(NOW) == "2026-11-21T16:58:29+01:00"
    assert ISO_WITH_OFFSET.match(cxml_timestamp())
    with pytest.raises(ValueError, match="offset"):
        cxml_timestamp(datetime(2026, 11, 21, 12, 0))


def test_a_partial_amount_needs_its_currency() -> None:
    with pytest.raises(ValidationError, match="partial_amount needs its currency"):
        InvoiceStatusUpdate(invoice_id="F-1", status="paid", partial_amount=Decimal("10"))


def test_an_empty_shared_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="JAGGAER_CXML_SHARED_SECRET"):
        build_status_update(ENVELOPE, "", InvoiceStatusUpdate(invoice_id="F-1", status="paid"))


def test_a_document_shows_no_shared_secret_in_its_repr() -> None:
    document = build_status_update(ENVELOPE, SECRET, InvoiceStatusUpdate(invoice_id="F-1", status="paid"))
    assert SECRET not in repr(document) and document.payload_id in repr(document)


def test_dtd_errors_name_what_is_wrong_and_the_invalid_error_hides_the_secret() -> None:
    root = root_of(build_status_update(ENVELOPE, SECRET, InvoiceStatusUpdate(invoice_id="F-1", status="paid")))
    status = root.find("Request/StatusUpdateRequest/Status")
    assert status is not None
    status.getparent().remove(status)  # type: ignore[union-attr]
    errors = dtd_errors(root, CXML_DTD)
    assert errors and "StatusUpdateRequest" in errors[0]
    assert SECRET not in str(CxmlDocumentInvalid("StatusUpdateRequest", [e.replace(SECRET, "***") for e in errors]))


# -- replies -----------------------------------------------------------------------------------------


def reply(code: str = "201", text: str = "Accepted", message: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><cXML payloadID="9.1.a@j1p" timestamp="2026-11-21T12:00:00+01:00">'
            f'<Response><Status code="{code}" text="{text}">{message}</Status></Response></cXML>').encode()


def test_a_reply_gives_its_status_code_text_message_and_payload_id() -> None:
    assert parse_reply(reply(message=" queued ")) == CxmlStatus(201, "Accepted", "queued", "9.1.a@j1p")


@pytest.mark.parametrize(("body", "why"), [
    (b"", "empty"), (b"<html><body>502 Bad Gateway</body></html>", "'html'"),
    (b"<cXML><Response/></cXML>", "no Response/Status"), (reply(code="OK"), "not a number"),
    (b"\xff\xfe garbage", "not well-formed"), (b'{"status": 200}', "not well-formed"),
])  # fmt: skip
def test_an_unreadable_reply_is_a_clear_error(body: bytes, why: str) -> None:
    with pytest.raises(CxmlReplyUnreadable, match=why):
        parse_reply(body)


def test_a_reply_with_an_entity_bomb_is_refused_without_expanding_it() -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE cXML [<!ENTITY a "aaaaaaaaaa">'
            + b"".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(8))
            + b']><cXML><Response><Status code="200" text="&i;"/></Response></cXML>')
    try:
        status = parse_reply(bomb)
    except CxmlReplyUnreadable:
        return
    assert len(status.text) < 1000


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_garbage_never_crashes_the_reply_parser(body: bytes) -> None:
    try:
        parse_reply(body)
    except CxmlReplyUnreadable as error:
        assert str(error)


@settings(max_examples=100, deadline=None)
@given(code=st.text(max_size=6), text=st.text(max_size=20))
def test_any_status_attribute_values_give_a_status_or_a_clear_error(code: str, text: str) -> None:
    body = reply(code=xml_text(code).replace("&", "").replace('"', "").replace("<", ""),
                 text=xml_text(text).replace("&", "").replace('"', "").replace("<", ""))
    try:
        status = parse_reply(body)
    except CxmlReplyUnreadable:
        return
    assert 0 <= status.code <= 999


@pytest.mark.parametrize(("code", "outcome"), [
    (200, "ok"), (201, "ok"), (204, "ok"), (400, "rejected"), (401, "rejected"), (406, "rejected"),
    (417, "rejected"), (450, "rejected"), (500, "retry"), (560, "retry"),
])  # fmt: skip
def test_status_codes_map_to_ok_rejected_or_retry(code: int, outcome: str) -> None:
    assert outcome_of(CxmlStatus(code, "x")) == outcome


@pytest.mark.parametrize("code", [0, 100, 302, 999])
def test_a_status_code_outside_the_cxml_classes_is_unreadable(code: int) -> None:
    with pytest.raises(CxmlReplyUnreadable, match=str(code)):
        outcome_of(CxmlStatus(code, "x"))


# -- the cXML client over the wire -------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[JaggaerSimulator]:
    yield JaggaerSimulator(size=40, start=datetime(2026, 11, 21, 12, tzinfo=UTC))


@pytest.fixture(autouse=True)
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(core_http, "default_sleep", waits.append)
    return waits


def an_invoice(sim: JaggaerSimulator) -> dict[str, object]:
    invoices = sim.collections()["invoices"]
    numbers = [i["invoiceNumber"] for i in invoices]
    return next(i for i in invoices if numbers.count(i["invoiceNumber"]) == 1)


def test_a_payment_confirmation_is_accepted(sim: JaggaerSimulator) -> None:
    target = an_invoice(sim)
    with in_process_cxml(sim) as client:
        status = client.confirm_invoice_status(InvoiceStatusUpdate(invoice_id=str(target["invoiceNumber"]), status="paid"))
    assert (status.code, status.text) == (200, "OK")
    assert sim.record("invoices", str(target["invoiceId"]))["paymentStatus"] == "PAID"  # type: ignore[index]


def test_a_wrong_shared_secret_is_rejected_as_401_and_never_shown(sim: JaggaerSimulator,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with in_process_cxml(sim, shared_secret="wrong-cxml-secret-99") as client, pytest.raises(CxmlRejected) as raised:
        client.confirm_invoice_status(InvoiceStatusUpdate(invoice_id="F-1", status="paid"))
    assert raised.value.status.code == 401
    shown = str(raised.value) + repr(raised.value.status) + caplog.text + repr(client)
    assert "wrong-cxml-secret-99" not in shown and DEMO_CXML_SHARED_SECRET not in shown


def test_a_document_failing_the_dtd_is_rejected_as_406(sim: JaggaerSimulator) -> None:
    good = build_status_update(ENVELOPE, DEMO_CXML_SHARED_SECRET, InvoiceStatusUpdate(invoice_id="F-1", status="paid"))
    broken = CxmlDocument(good.payload_id, good.request, good.dtd_name,
                          good.xml.replace(b'<Status code="200" text="OK"/>', b""))
    with in_process_cxml(sim) as client, pytest.raises(CxmlRejected) as raised:
        client.send(broken)
    assert raised.value.status.code == 406


def test_an_unknown_invoice_is_rejected_for_dead_lettering(sim: JaggaerSimulator) -> None:
    with in_process_cxml(sim) as client, pytest.raises(CxmlRejected) as raised:
        client.confirm_invoice_status(InvoiceStatusUpdate(invoice_id="not-in-jaggaer", status="paid"))
    assert raised.value.status.code == 417 and raised.value.payload_id in str(raised.value)


def test_a_5xx_status_is_retried_with_the_same_document_until_accepted(sim: JaggaerSimulator, slept: list[float]) -> None:
    target = an_invoice(sim)
    sim.fail_next_cxml(2, code=560)
    with in_process_cxml(sim) as client:
        status = client.confirm_invoice_status(InvoiceStatusUpdate(invoice_id=str(target["invoiceNumber"]),
                                                                   status="processing"))
    assert status.code == 200 and len(slept) == 2
    bodies = [r.body for r in sim.requests if r.path == sim.cxml_path]
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the very same bytes, payloadID included


def test_http_5xx_is_retried_then_reported_as_a_temporary_failure(sim: JaggaerSimulator) -> None:
    sim.set_faults(FaultPlan(error_rate=1, error_status=503, paths=[sim.cxml_path]))
    with in_process_cxml(sim) as client, pytest.raises(CxmlTemporaryFailure, match="4 attempt"):
        client.confirm_invoice_status(InvoiceStatusUpdate(invoice_id="F-1", status="paid"))


def test_a_resend_after_a_lost_answer_is_applied_once(sim: JaggaerSimulator) -> None:
    sim.set_faults(FaultPlan(seed=3, timeout_after_rate=1, paths=[sim.cxml_path]))
    document = build_order_request(ENVELOPE, DEMO_CXML_SHARED_SECRET, order(order_id="ERP-77"))
    with in_process_cxml(sim) as client:
        with pytest.raises(CxmlTemporaryFailure):
            client.send(document)  # applied every time, answered never
        sim.clear_faults()
        assert client.send(document).code == 200
    assert len(sim.find("purchase_orders", "poNumber", "ERP-77")) == 1


def test_an_unreadable_answer_is_a_clear_error() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>maintenance</html>"))
    with in_process_cxml(JaggaerSimulator(size=5), transport=transport) as client, \
            pytest.raises(CxmlReplyUnreadable, match="html"):
        client.confirm_invoice_status(InvoiceStatusUpdate(invoice_id="F-1", status="paid"))


def test_a_gateway_refusal_without_cxml_is_rejected_with_its_http_status() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(403, text="Forbidden"))
    with in_process_cxml(JaggaerSimulator(size=5), transport=transport) as client, pytest.raises(CxmlRejected) as raised:
        client.confirm_invoice_status(InvoiceStatusUpdate(invoice_id="F-1", status="paid"))
    assert raised.value.status.code == 403
