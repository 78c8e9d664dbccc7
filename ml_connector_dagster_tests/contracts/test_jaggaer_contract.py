"""Every request the JAGGAER clients send, checked against what is published about JAGGAER.

The only machine-readable contract is cXML's: every cXML document sent is validated against the
DTD its DOCTYPE names (``specs/cXML.dtd`` 1.2.063, ``specs/1.2.037-InvoiceDetail.dtd``), read from
``specs/`` rather than the package's copies, so a drift between the two shows here too. J1P REST
has no public contract; its requests are checked against the public hints (Keycloak client
credentials at the realm's token endpoint) and the parameters this connector documents.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from ml_connector_dagster.sandbox.jaggaer import DEFAULT_PATHS, DEFAULT_TOKEN_PATH, JaggaerSimulator
from ml_connector_dagster.systems.jaggaer.client import JaggaerEntity
from ml_connector_dagster.systems.jaggaer.cxml import (
    DocumentStatusUpdate,
    InvoiceDetail,
    InvoiceLine,
    InvoiceStatusUpdate,
    OrderDetail,
    OrderLine,
    build_invoice_detail_request,
    build_order_request,
    safe_parser,
)
from ml_connector_dagster_tests.jaggaer_sandbox import in_process_client, in_process_cxml

SPECS = Path(__file__).resolve().parents[2] / "specs"
DTD_FILES = {
    "http://xml.cxml.org/schemas/cXML/1.2.063/cXML.dtd": SPECS / "cXML.dtd",
    "http://xml.cxml.org/schemas/cXML/1.2.037/InvoiceDetail.dtd": SPECS / "1.2.037-InvoiceDetail.dtd",
}
LIST_PARAMETERS = {"page", "size", "sort", "lastModifiedFrom", "lastModifiedTo"}
WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)$")
PAYLOAD_ID = re.compile(r"^\d+\.\d+\.[0-9a-f]+@\S+$")
START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@cache
def spec_dtd(system_url: str) -> etree.DTD:
    return etree.DTD(str(DTD_FILES[system_url]))


def workload(sim: JaggaerSimulator) -> None:
    """A day of syncing with JAGGAER: reads of every entity, then confirmations of every kind."""
    with in_process_client(sim, page_size=30) as client:
        for entity in (JaggaerEntity.PURCHASE_ORDERS, JaggaerEntity.INVOICES):
            for _ in client.iter_changed(entity, START - timedelta(days=3), START):
                pass
        for entity in (JaggaerEntity.VENDORS, JaggaerEntity.GL_ACCOUNTS):
            for _ in client.iter_all(entity):
                pass
        client.get(JaggaerEntity.INVOICES, 710001)
    invoices = sim.collections()["invoices"]
    numbers = [i["invoiceNumber"] for i in invoices]
    invoice = next(i for i in invoices if numbers.count(i["invoiceNumber"]) == 1)
    order = next(o for o in sim.collections()["purchase_orders"] if o["supplier"])
    with in_process_cxml(sim) as cxml:
        for status in ("processing", "paid"):
            cxml.confirm_invoice_status(InvoiceStatusUpdate(
                invoice_id=invoice["invoiceNumber"], status=status, invoice_date=START,
                partial_amount=Decimal("100.00") if status == "paid" else None, currency="NOK",
                comments="Bokført i Visma <OK> & betalt"))
        cxml.confirm_document_status(DocumentStatusUpdate(document_id=order["poNumber"], status="received"))
        cxml.send(build_order_request(cxml.envelope, sim.cxml_shared_secret, OrderDetail(
            order_id="ERP-2026-1", order_date=START, currency="NOK", bill_to="Fjordlys Industri AS",
            lines=[OrderLine(line_number=1, quantity=Decimal(4), unit_price=Decimal("250"), description="Hjelm",
                             supplier_part_id="VERN-1")])))
        cxml.send(build_invoice_detail_request(cxml.envelope, sim.cxml_shared_secret, InvoiceDetail(
            invoice_id="F-2026-900", invoice_date=START, order_id=order["poNumber"], currency=order["currency"],
            tax_amount=Decimal("25"), lines=[InvoiceLine(line_number=1, quantity=Decimal(1), unit_price=Decimal(100),
                                                         description="Frakt")])))


@pytest.fixture(scope="module")
def recorded() -> list[dict[str, Any]]:
    sim = JaggaerSimulator(size=150, start=START)
    workload(sim)
    return [r.model_dump(mode="json") for r in sim.requests]


def cxml_posts(recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recorded if r["path"] == "/cxml"]


def test_the_workload_sent_every_kind_of_request(recorded: list[dict[str, Any]]) -> None:
    paths = {r["path"] for r in recorded}
    assert {DEFAULT_TOKEN_PATH, "/cxml", *DEFAULT_PATHS.values()} <= paths
    assert len(cxml_posts(recorded)) == 5


def test_every_cxml_document_validates_against_the_published_dtd_it_names(recorded: list[dict[str, Any]]) -> None:
    for request in cxml_posts(recorded):
        root = etree.fromstring(request["body"].encode(), safe_parser())
        system_url = root.getroottree().docinfo.system_url
        assert system_url in DTD_FILES, system_url
        dtd = spec_dtd(system_url)
        assert dtd.validate(root), [str(error) for error in dtd.error_log]
        assert root.get("version") == system_url.split("/")[-2]


def test_every_cxml_document_has_a_unique_payload_id_and_a_timestamp_with_offset(recorded: list[dict[str, Any]]) -> None:
    roots = [etree.fromstring(r["body"].encode(), safe_parser()) for r in cxml_posts(recorded)]
    payload_ids = [root.get("payloadID") for root in roots]
    assert len(set(payload_ids)) == len(payload_ids) and all(PAYLOAD_ID.match(p or "") for p in payload_ids)
    assert all(WITH_OFFSET.match(root.get("timestamp") or "") for root in roots)


def test_cxml_is_posted_as_xml_with_the_secret_masked_in_the_recording(recorded: list[dict[str, Any]]) -> None:
    for request in cxml_posts(recorded):
        assert request["method"] == "POST" and request["headers"]["content-type"].startswith("text/xml")
        assert "<SharedSecret>***</SharedSecret>" in request["body"]


def test_token_requests_are_keycloak_client_credentials(recorded: list[dict[str, Any]]) -> None:
    tokens = [r for r in recorded if r["path"] == DEFAULT_TOKEN_PATH]
    assert tokens
    for request in tokens:
        assert request["method"] == "POST"
        assert request["headers"]["content-type"] == "application/x-www-form-urlencoded"
        assert request["body"]["grant_type"] == "client_credentials" and request["body"]["client_secret"] == "***"


def test_every_api_request_is_a_bearer_get_of_a_configured_path(recorded: list[dict[str, Any]]) -> None:
    configured = tuple(DEFAULT_PATHS.values())
    api = [r for r in recorded if r["path"] not in (DEFAULT_TOKEN_PATH, "/cxml")]
    assert api
    for request in api:
        assert request["method"] == "GET" and request["headers"]["authorization"] == "Bearer ***"
        assert request["path"] in configured or request["path"].rsplit("/", 1)[0] in configured


def test_list_requests_use_only_the_documented_parameters(recorded: list[dict[str, Any]]) -> None:
    lists = [r for r in recorded if r["path"] in DEFAULT_PATHS.values()]
    for request in lists:
        query = request["query"]
        assert set(query) <= LIST_PARAMETERS
        assert query["sort"] == "lastModifiedDate,asc" and int(query["page"]) >= 0 and int(query["size"]) >= 1
        assert all(WITH_OFFSET.match(query[name]) for name in ("lastModifiedFrom", "lastModifiedTo") if name in query)
