"""cXML documents for JAGGAER: build them with lxml, validate them against the DTD, read the replies.

What the connector sends (API_NOTES.md, JAGGAER):

- ``StatusUpdateRequest``: receipt and payment confirmations back to JAGGAER — an ``InvoiceStatus``
  (processing, reconciled, paying, paid ...) for an invoice, or a ``DocumentStatus`` (received ...)
  for a purchase order.
- ``OrderRequest`` and ``InvoiceDetailRequest`` (the latter against ``InvoiceDetail.dtd`` 1.2.037,
  the only DTD that defines it; everything else against ``cXML.dtd`` 1.2.063).

Every document has a unique ``payloadID`` (``<epoch ms>.<pid>.<random>@<host>``), an ISO 8601
``timestamp`` with its offset, the ``Sender`` credential with the ``SharedSecret``, and is validated
against its DTD *as serialized* before it may be sent (:class:`CxmlDocumentInvalid` otherwise).
XML 1.0 cannot carry control characters or lone surrogates: they are replaced by U+FFFD so that any
text makes a valid document. The shared secret lives only in :attr:`CxmlDocument.xml`, which no
repr, log line or error message shows.

Replies are ``<cXML><Response><Status code text/></Response></cXML>``, usually with HTTP 200
whatever the code: :func:`parse_reply` reads one (anything else is a :class:`CxmlReplyUnreadable`,
never a crash) and :func:`outcome_of` maps its code: 2xx ok, 4xx rejected (dead-letter it), 5xx
retry.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from lxml import etree
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CXML_DTD",
    "INVOICE_DETAIL_DTD",
    "CxmlDocument",
    "CxmlDocumentInvalid",
    "CxmlEnvelope",
    "CxmlError",
    "CxmlParty",
    "CxmlRejected",
    "CxmlReplyUnreadable",
    "CxmlStatus",
    "CxmlTemporaryFailure",
    "DocumentStatusUpdate",
    "InvoiceDetail",
    "InvoiceLine",
    "InvoiceStatusUpdate",
    "OrderDetail",
    "OrderLine",
    "Outcome",
    "build_invoice_detail_request",
    "build_order_request",
    "build_status_update",
    "cxml_timestamp",
    "dtd_errors",
    "load_dtd",
    "new_payload_id",
    "outcome_of",
    "parse_reply",
    "safe_parser",
    "system_url",
    "xml_text",
]

CXML_DTD = "cXML.dtd"
INVOICE_DETAIL_DTD = "InvoiceDetail.dtd"
DTD_VERSIONS = {CXML_DTD: "1.2.063", INVOICE_DETAIL_DTD: "1.2.037"}
DTD_DIR = Path(__file__).with_name("dtd")
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_ILLEGAL_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_VALIDATION_LOCK = threading.Lock()  # an lxml DTD keeps its error log on the object
_EXCERPT = 200
Outcome = Literal["ok", "rejected", "retry"]


# -- errors ------------------------------------------------------------------------------------


class CxmlError(Exception):
    """Something about a cXML exchange went wrong; messages never carry the shared secret."""


class CxmlDocumentInvalid(CxmlError, ValueError):
    """A document we built does not validate against its DTD; it must not be sent."""

    def __init__(self, request: str, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f"cXML {request} does not validate against its DTD: {'; '.join(errors[:3])}")


class CxmlReplyUnreadable(CxmlError):
    """The answer is not a cXML Response with a Status (HTML error page, garbage, nothing)."""


class CxmlStatus(NamedTuple):
    """A cXML ``Status``: its code, its text, the detail in its content, and the reply's payloadID."""

    code: int
    text: str
    message: str = ""
    payload_id: str | None = None

    def __str__(self) -> str:
        detail = f": {self.message}" if self.message else ""
        return f"{self.code} {self.text}{detail}"


class CxmlRejected(CxmlError):
    """A 4xx Status: the document was refused and resending it will not help (dead-letter it)."""

    def __init__(self, status: CxmlStatus, payload_id: str) -> None:
        self.status = status
        self.payload_id = payload_id
        super().__init__(f"cXML document {payload_id} rejected: {_excerpt(str(status))}")


class CxmlTemporaryFailure(CxmlError):
    """A 5xx Status, an HTTP 5xx/429 or no answer, still so after the retries: try again later."""

    def __init__(self, detail: str, payload_id: str, status: CxmlStatus | None = None) -> None:
        self.status = status
        self.payload_id = payload_id
        super().__init__(f"cXML document {payload_id} not delivered: {_excerpt(detail)}")


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT else flat[:_EXCERPT] + "..."


# -- DTDs ----------------------------------------------------------------------------------------


@cache
def load_dtd(name: str) -> etree.DTD:
    """The packaged DTD ``cXML.dtd`` or ``InvoiceDetail.dtd`` (read once per process)."""
    if name not in DTD_VERSIONS:
        raise ValueError(f"unknown cXML DTD {name!r}; expected one of {sorted(DTD_VERSIONS)}")
    return etree.DTD(str(DTD_DIR / name))


def system_url(name: str) -> str:
    """The DOCTYPE system identifier of a DTD, as cxml.org publishes it."""
    return f"http://xml.cxml.org/schemas/cXML/{DTD_VERSIONS[name]}/{name}"


def safe_parser() -> etree.XMLParser:
    """A parser that never fetches or expands anything: no network, no external DTD, no entities."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=False)


def dtd_errors(root: etree._Element, dtd_name: str) -> list[str]:
    """Why ``root`` does not validate against the DTD (empty: it does)."""
    dtd = load_dtd(dtd_name)
    with _VALIDATION_LOCK:
        if dtd.validate(root):
            return []
        return [f"line {entry.line}: {entry.message}" for entry in dtd.error_log]


# -- values --------------------------------------------------------------------------------------


def xml_text(value: object) -> str:
    """``value`` as text XML 1.0 can carry: control characters and lone surrogates become U+FFFD."""
    return _ILLEGAL_XML.sub("\ufffd", str(value))


@cache
def _host() -> str:
    return socket.gethostname() or "localhost"


def new_payload_id(now: float | None = None) -> str:
    """A unique payloadID: ``<epoch ms>.<pid>.<random>@<host>``."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis}.{os.getpid()}.{secrets.token_hex(8)}@{_host()}"


def cxml_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 with seconds and the offset (``2026-11-21T16:58:29+01:00``); now, in local time, by default."""
    moment = moment or datetime.now(UTC).astimezone()
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("cXML timestamps need an offset; got a naive datetime")
    return moment.isoformat(timespec="seconds")


def _amount(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), "f")


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text not in ("-0", "") else "0"


# -- what goes into documents ----------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CxmlParty(_Model):
    """A ``Credential``: the domain its identity lives in and the identity."""

    domain: str = "NetworkID"
    identity: str


class CxmlEnvelope(_Model):
    """Who a document is from, to, and sent by (the sender also authenticates with the shared secret)."""

    from_party: CxmlParty
    to_party: CxmlParty
    sender: CxmlParty
    user_agent: str = "ml-connector"
    deployment_mode: Literal["production", "test"] = "production"
    language: str = "en"


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")]


class OrderLine(_Model):
    line_number: int = Field(ge=1)
    quantity: Decimal = Field(gt=0)
    unit_price: Decimal
    description: str
    supplier_part_id: str
    unit_of_measure: str = "EA"
    classification_domain: str = "UNSPSC"
    classification_code: str = ""


class OrderDetail(_Model):
    """An ``OrderRequest``: one purchase order with its lines."""

    order_id: str
    order_date: AwareDatetime
    currency: Currency
    bill_to: str
    lines: list[OrderLine] = Field(min_length=1)
    operation: Literal["new", "update", "delete"] = "new"
    order_version: int | None = Field(None, ge=1)
    comments: str | None = None

    @property
    def total(self) -> Decimal:
        return sum((line.quantity * line.unit_price for line in self.lines), Decimal(0))


class InvoiceLine(_Model):
    line_number: int = Field(ge=1)
    quantity: Decimal = Field(gt=0)
    unit_price: Decimal
    description: str
    unit_of_measure: str = "EA"
    supplier_part_id: str | None = None


class InvoiceDetail(_Model):
    """An ``InvoiceDetailRequest`` for invoiced lines of one purchase order."""

    invoice_id: str
    invoice_date: AwareDatetime
    order_id: str
    order_date: AwareDatetime | None = None
    currency: Currency
    lines: list[InvoiceLine] = Field(min_length=1)
    tax_amount: Decimal = Decimal(0)
    tax_description: str = "VAT"
    purpose: Literal["standard", "creditMemo", "debitMemo"] = "standard"
    operation: Literal["new", "delete"] = "new"
    comments: str | None = None

    @property
    def subtotal(self) -> Decimal:
        return sum((line.quantity * line.unit_price for line in self.lines), Decimal(0))


InvoiceStatusType = Literal["processing", "canceled", "reconciled", "rejected", "paying", "paid"]


class InvoiceStatusUpdate(_Model):
    """An ``InvoiceStatus`` confirmation (received = processing, payment = paying/paid)."""

    invoice_id: str
    status: InvoiceStatusType
    invoice_date: AwareDatetime | None = None
    partial_amount: Decimal | None = None
    currency: Currency | None = None
    comments: str | None = None
    document_reference: str | None = Field(None, description="payloadID of the invoice's InvoiceDetailRequest.")

    @model_validator(mode="after")
    def _amount_has_a_currency(self) -> InvoiceStatusUpdate:
        if self.partial_amount is not None and self.currency is None:
            raise ValueError("partial_amount needs its currency")
        return self


class DocumentStatusUpdate(_Model):
    """A ``DocumentStatus`` confirmation, e.g. goods received against a purchase order."""

    document_id: str
    status: str = "received"
    document_type: str = "PurchaseOrder"
    document_date: AwareDatetime | None = None
    comments: str | None = None
    document_reference: str | None = None


@dataclass(frozen=True)
class CxmlDocument:
    """A built, DTD-valid document ready to send; ``xml`` holds the shared secret and is never shown."""

    payload_id: str
    request: str
    dtd_name: str
    xml: bytes = field(repr=False)


# -- builders --------------------------------------------------------------------------------------


def _add(parent: etree._Element, tag: str, content: object | None = None, /, **attributes: object) -> etree._Element:
    element = etree.SubElement(parent, tag)
    for name, value in attributes.items():
        if value is not None:
            element.set(XML_LANG if name == "lang" else name, xml_text(value))
    if content is not None:
        element.text = xml_text(content)
    return element


def _credential(parent: etree._Element, party: CxmlParty, shared_secret: str | None = None) -> None:
    credential = _add(parent, "Credential", domain=party.domain)
    _add(credential, "Identity", party.identity)
    if shared_secret is not None:
        _add(credential, "SharedSecret", shared_secret)


def _money(parent: etree._Element, tag: str, amount: Decimal, currency: str) -> None:
    _add(_add(parent, tag), "Money", _amount(amount), currency=currency)


def _envelope(envelope: CxmlEnvelope, shared_secret: str, payload_id: str, timestamp: str,
              dtd_name: str) -> tuple[etree._Element, etree._Element]:
    if not shared_secret:
        raise ValueError("the cXML shared secret is empty (is JAGGAER_CXML_SHARED_SECRET set?)")
    root = etree.Element("cXML")
    root.set("payloadID", xml_text(payload_id))
    root.set("timestamp", timestamp)
    root.set("version", DTD_VERSIONS[dtd_name])
    root.set(XML_LANG, xml_text(envelope.language))
    header = _add(root, "Header")
    _credential(_add(header, "From"), envelope.from_party)
    _credential(_add(header, "To"), envelope.to_party)
    sender = _add(header, "Sender")
    _credential(sender, envelope.sender, shared_secret)
    _add(sender, "UserAgent", envelope.user_agent)
    request = _add(root, "Request", deploymentMode=envelope.deployment_mode)
    return root, request


def _finish(root: etree._Element, request: str, dtd_name: str, secret: str) -> CxmlDocument:
    xml = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8",
                         doctype=f'<!DOCTYPE cXML SYSTEM "{system_url(dtd_name)}">')
    # Validate what goes on the wire, not the tree it came from.
    errors = dtd_errors(etree.fromstring(xml, safe_parser()), dtd_name)
    if errors:
        raise CxmlDocumentInvalid(request, [e.replace(secret, "***") for e in errors])
    return CxmlDocument(payload_id=root.get("payloadID") or "", request=request, dtd_name=dtd_name, xml=xml)


def _start(envelope: CxmlEnvelope, shared_secret: str, dtd_name: str, payload_id: str | None,
           now: datetime | None) -> tuple[etree._Element, etree._Element]:
    return _envelope(envelope, shared_secret, payload_id or new_payload_id(), cxml_timestamp(now), dtd_name)


def build_status_update(
    envelope: CxmlEnvelope,
    shared_secret: str,
    update: InvoiceStatusUpdate | DocumentStatusUpdate,
    *,
    payload_id: str | None = None,
    now: datetime | None = None,
) -> CxmlDocument:
    """A ``StatusUpdateRequest`` confirming an invoice's status or a document's (a PO's receipt)."""
    root, request = _start(envelope, shared_secret, CXML_DTD, payload_id, now)
    body = _add(request, "StatusUpdateRequest")
    if update.document_reference:
        _add(body, "DocumentReference", payloadID=update.document_reference)
    _add(body, "Status", code="200", text="OK")
    if isinstance(update, InvoiceStatusUpdate):
        status = _add(body, "InvoiceStatus", type=update.status)
        _add(status, "InvoiceIDInfo", invoiceID=update.invoice_id,
             invoiceDate=cxml_timestamp(update.invoice_date) if update.invoice_date else None)
        if update.partial_amount is not None:
            _money(status, "PartialAmount", update.partial_amount, update.currency or "")
    else:
        status = _add(body, "DocumentStatus", type=update.status)
        _add(status, "DocumentInfo", documentID=update.document_id, documentType=update.document_type,
             documentDate=cxml_timestamp(update.document_date) if update.document_date else None)
    if update.comments:
        _add(status, "Comments", update.comments, lang=envelope.language)
    return _finish(root, "StatusUpdateRequest", CXML_DTD, shared_secret)


def build_order_request(
    envelope: CxmlEnvelope,
    shared_secret: str,
    order: OrderDetail,
    *,
    payload_id: str | None = None,
    now: datetime | None = None,
) -> CxmlDocument:
    """An ``OrderRequest`` for one purchase order; its ``Total`` is the sum of its lines."""
    root, request = _start(envelope, shared_secret, CXML_DTD, payload_id, now)
    body = _add(request, "OrderRequest")
    header = _add(body, "OrderRequestHeader", orderID=order.order_id, orderDate=cxml_timestamp(order.order_date),
                  type=order.operation, orderVersion=order.order_version)
    _money(header, "Total", order.total, order.currency)
    bill_to = _add(_add(header, "BillTo"), "Address")
    _add(bill_to, "Name", order.bill_to, lang=envelope.language)
    if order.comments:
        _add(header, "Comments", order.comments, lang=envelope.language)
    for line in order.lines:
        item = _add(body, "ItemOut", quantity=_number(line.quantity), lineNumber=line.line_number)
        _add(_add(item, "ItemID"), "SupplierPartID", line.supplier_part_id)
        detail = _add(item, "ItemDetail")
        _money(detail, "UnitPrice", line.unit_price, order.currency)
        _add(detail, "Description", line.description, lang=envelope.language)
        _add(detail, "UnitOfMeasure", line.unit_of_measure)
        _add(detail, "Classification", line.classification_code, domain=line.classification_domain)
    return _finish(root, "OrderRequest", CXML_DTD, shared_secret)


def build_invoice_detail_request(
    envelope: CxmlEnvelope,
    shared_secret: str,
    invoice: InvoiceDetail,
    *,
    payload_id: str | None = None,
    now: datetime | None = None,
) -> CxmlDocument:
    """An ``InvoiceDetailRequest`` (InvoiceDetail.dtd) for lines of one purchase order."""
    root, request = _start(envelope, shared_secret, INVOICE_DETAIL_DTD, payload_id, now)
    body = _add(request, "InvoiceDetailRequest")
    header = _add(body, "InvoiceDetailRequestHeader", invoiceID=invoice.invoice_id, purpose=invoice.purpose,
                  operation=invoice.operation, invoiceDate=cxml_timestamp(invoice.invoice_date))
    _add(header, "InvoiceDetailHeaderIndicator")
    _add(header, "InvoiceDetailLineIndicator")
    if invoice.comments:
        _add(header, "Comments", invoice.comments, lang=envelope.language)
    order = _add(body, "InvoiceDetailOrder")
    _add(_add(order, "InvoiceDetailOrderInfo"), "OrderIDInfo", orderID=invoice.order_id,
         orderDate=cxml_timestamp(invoice.order_date) if invoice.order_date else None)
    for line in invoice.lines:
        item = _add(order, "InvoiceDetailItem", invoiceLineNumber=line.line_number, quantity=_number(line.quantity))
        _add(item, "UnitOfMeasure", line.unit_of_measure)
        _money(item, "UnitPrice", line.unit_price, invoice.currency)
        reference = _add(item, "InvoiceDetailItemReference", lineNumber=line.line_number)
        if line.supplier_part_id is not None:
            _add(_add(reference, "ItemID"), "SupplierPartID", line.supplier_part_id)
        _add(reference, "Description", line.description, lang=envelope.language)
        _money(item, "SubtotalAmount", line.quantity * line.unit_price, invoice.currency)
    summary = _add(body, "InvoiceDetailSummary")
    _money(summary, "SubtotalAmount", invoice.subtotal, invoice.currency)
    tax = _add(summary, "Tax")
    _add(tax, "Money", _amount(invoice.tax_amount), currency=invoice.currency)
    _add(tax, "Description", invoice.tax_description, lang=envelope.language)
    _money(summary, "GrossAmount", invoice.subtotal + invoice.tax_amount, invoice.currency)
    _money(summary, "NetAmount", invoice.subtotal + invoice.tax_amount, invoice.currency)
    _money(summary, "DueAmount", invoice.subtotal + invoice.tax_amount, invoice.currency)
    return _finish(root, "InvoiceDetailRequest", INVOICE_DETAIL_DTD, shared_secret)


# -- replies ---------------------------------------------------------------------------------------


def parse_reply(body: bytes) -> CxmlStatus:
    """The ``Response/Status`` of a cXML reply; :class:`CxmlReplyUnreadable` for anything else."""
    if not isinstance(body, bytes | bytearray) or not body.strip():
        raise CxmlReplyUnreadable("the reply is empty, not a cXML document")
    try:
        root = etree.fromstring(bytes(body), safe_parser())
    except (etree.LxmlError, ValueError) as exc:
        raise CxmlReplyUnreadable(f"the reply is not well-formed XML ({_excerpt(str(exc))})") from None
    if root is None or root.tag != "cXML":
        tag = root.tag if root is not None and isinstance(root.tag, str) else "none"
        raise CxmlReplyUnreadable(f"the reply's root element is {_excerpt(tag)!r}, not 'cXML'")
    status = root.find("Response/Status")
    if status is None:
        raise CxmlReplyUnreadable("the reply has no Response/Status element")
    raw_code = (status.get("code") or "").strip()
    if not raw_code.isascii() or not raw_code.isdigit() or len(raw_code) > 3:
        raise CxmlReplyUnreadable(f"the reply's Status code {_excerpt(raw_code)!r} is not a number")
    message = "".join(status.itertext()).strip()
    return CxmlStatus(int(raw_code), status.get("text") or "", _excerpt(message) if message else "",
                      root.get("payloadID"))


def outcome_of(status: CxmlStatus) -> Outcome:
    """2xx: ok; 4xx: rejected, do not resend (dead-letter); 5xx: retry. Other codes are unreadable."""
    if 200 <= status.code < 300:
        return "ok"
    if 400 <= status.code < 500:
        return "rejected"
    if 500 <= status.code < 600:
        return "retry"
    raise CxmlReplyUnreadable(f"the reply's Status code {status.code} is not a cXML status class")
