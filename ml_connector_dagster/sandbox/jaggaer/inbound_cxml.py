"""The simulator's cXML endpoint: one POST that takes OrderRequest, InvoiceDetailRequest and
StatusUpdateRequest documents and answers ``<cXML><Response><Status code text/></Response></cXML>``.

In the order a real cXML server checks them (HTTP 200 whatever the Status, as the real thing does):

1. 406 Not Acceptable: not text/xml, not well-formed, root not ``cXML``, no DOCTYPE naming
   ``cXML.dtd`` or ``InvoiceDetail.dtd``, an internal DTD subset, or a document that does not
   validate against the DTD its DOCTYPE names. Nothing is fetched: no network, no entity expansion.
2. 401 Unauthorized: the Sender credential (domain + identity) or its ``SharedSecret`` is wrong.
3. 400 Bad Request: the To credential is not this buyer; an OrderRequest ``new`` for an order
   that exists; an invoice number that is ambiguous.
4. A payloadID already answered gets the very same Status again and changes nothing.
5. 417 Expectation Failed: a status update or invoice for an order, invoice or document unknown here.
6. 450 Not Implemented: any other request type, PaymentStatus/SourcingStatus/IntegrationStatus.
7. 200 OK for status updates and orders, 201 Accepted for invoices (queued for JAGGAER's workflow).

Applied documents change the J1P records (and their ``lastModifiedDate``, so a poll finds them): an
``InvoiceStatus`` sets the invoice's ``erpStatus`` (``paid``/``paying`` also its ``paymentStatus``),
a ``DocumentStatus`` sets a PO's ``receiptStatus``, an OrderRequest creates/updates/cancels a PO, an
InvoiceDetailRequest creates (or, ``operation="delete"``, cancels) an invoice.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

from ml_connector_dagster.systems.jaggaer.cxml import (
    CXML_DTD,
    INVOICE_DETAIL_DTD,
    XML_LANG,
    cxml_timestamp,
    dtd_errors,
    new_payload_id,
    safe_parser,
    system_url,
)

from ..framework import MASK, RecordedRequest
from .data import INVOICES, PURCHASE_ORDERS, j1p_datetime

STATUS_TEXTS = {
    200: "OK", 201: "Accepted", 400: "Bad Request", 401: "Unauthorized", 406: "Not Acceptable",
    417: "Expectation Failed", 450: "Not Implemented", 500: "Internal Server Error", 560: "Temporary server error",
}
_SHARED_SECRET_ELEMENT = re.compile(r"(<SharedSecret\b[^>]*>)(.*?)(</SharedSecret>)", re.S)
_XML_CONTENT_TYPES = ("text/xml", "application/xml")


@dataclass(frozen=True)
class Answer:
    """The Status of one cXML reply, and the J1P record a document touched (for the state view)."""

    code: int
    message: str = ""
    reference: str | None = None


def cxml_reply(code: int, message: str = "", *, http_status: int = 200) -> Response:
    """A cXML Response document carrying one Status (valid against cXML.dtd)."""
    root = etree.Element("cXML")
    root.set("payloadID", new_payload_id())
    root.set("timestamp", cxml_timestamp())
    root.set(XML_LANG, "en-US")
    status = etree.SubElement(etree.SubElement(root, "Response"), "Status")
    status.set("code", str(code))
    status.set("text", STATUS_TEXTS.get(code, "Error"))
    if message:
        status.text = message
    body = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8",
                          doctype=f'<!DOCTYPE cXML SYSTEM "{system_url(CXML_DTD)}">')
    return Response(body, status_code=http_status, media_type="text/xml; charset=UTF-8")


def mask_shared_secrets(text: str, secrets: list[str]) -> str:
    """``text`` with every SharedSecret element's content, and every known secret, masked."""
    text = _SHARED_SECRET_ELEMENT.sub(lambda m: f"{m[1]}{MASK}{m[3]}", text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class MaskingRequestLog(list[RecordedRequest]):
    """The request recorder, masking shared secrets inside XML bodies (the framework masks JSON/form)."""

    def __init__(self, secrets: Callable[[], list[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def append(self, record: RecordedRequest) -> None:
        if isinstance(record.body, str):
            record = record.model_copy(update={"body": mask_shared_secrets(record.body, self._secrets())})
        super().append(record)


def _text(element: etree._Element | None) -> str:
    return "" if element is None else "".join(element.itertext()).strip()


def _matches(credential: etree._Element | None, domain: str, identity: str) -> bool:
    return (credential is not None and (credential.get("domain") or "").lower() == domain.lower()
            and _text(credential.find("Identity")) == identity)


class CxmlInbound:
    """The cXML endpoint; mixed into the simulator, whose records and settings it works on."""

    cxml_shared_secret: str
    cxml_sender: tuple[str, str]  # (domain, identity) of the party allowed to send
    cxml_buyer: tuple[str, str]  # (domain, identity) of this JAGGAER customer
    cxml_documents: dict[str, dict[str, Any]]
    records: dict[str, dict[str, dict[str, Any]]]
    lock: Any
    _cxml_failures: list[int]

    # The simulator provides now(), touch(), add_record() and find() (see JaggaerSimulator).

    def fail_next_cxml(self, count: int = 1, code: int = 560) -> None:
        """The next ``count`` cXML posts answer ``code`` (HTTP 200) without being applied."""
        with self.lock:
            self._cxml_failures.extend([code] * count)

    async def cxml_endpoint(self, request: Request) -> Response:
        raw = await request.body()
        with self.lock:
            if self._cxml_failures:
                return cxml_reply(self._cxml_failures.pop(0), "Please retry later.")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in _XML_CONTENT_TYPES:
            return cxml_reply(406, f"Content-Type must be text/xml, not '{content_type or 'none'}'.")
        checked = self._checked_document(raw)
        if isinstance(checked, Answer):
            return cxml_reply(checked.code, checked.message)
        root = checked
        payload_id = root.get("payloadID") or ""
        with self.lock:
            earlier = self.cxml_documents.get(payload_id)
            if earlier is not None:
                earlier["deliveries"] += 1
                return cxml_reply(earlier["status"]["code"], earlier["status"].get("message", ""))
            request_element = root.find("Request")
            body = request_element[0] if request_element is not None and len(request_element) else None
            kind = body.tag if body is not None and isinstance(body.tag, str) else "none"
            answer = self._apply(kind, body, payload_id)
            if answer.code < 300:
                self.cxml_documents[payload_id] = {
                    "payloadID": payload_id, "request": kind, "receivedAt": j1p_datetime(int(self.now().timestamp() * 1000)),
                    "deploymentMode": request_element.get("deploymentMode", "production") if request_element is not None else None,
                    "status": {"code": answer.code, "text": STATUS_TEXTS[answer.code], "message": answer.message},
                    "reference": answer.reference, "deliveries": 1,
                }
        return cxml_reply(answer.code, answer.message)

    # -- the checks before anything is applied ----------------------------------------------------
    def _checked_document(self, raw: bytes) -> etree._Element | Answer:
        try:
            root = etree.fromstring(raw, safe_parser())
        except (etree.LxmlError, ValueError) as exc:
            return Answer(406, f"The document is not well-formed XML: {str(exc)[:200]}")
        tree = root.getroottree()
        if root.tag != "cXML":
            return Answer(406, "The root element must be cXML.")
        subset = tree.docinfo.internalDTD
        if subset is not None and (any(True for _ in subset.iterentities()) or subset.elements()):
            return Answer(406, "Internal DTD subsets are not accepted.")
        system = tree.docinfo.system_url or ""
        dtd_name = next((name for name in (CXML_DTD, INVOICE_DETAIL_DTD) if system.endswith("/" + name)), None)
        if dtd_name is None:
            return Answer(406, "The DOCTYPE must name cXML.dtd or InvoiceDetail.dtd "
                               "(http://xml.cxml.org/schemas/cXML/<version>/<dtd>).")
        errors = dtd_errors(root, dtd_name)
        if errors:
            return Answer(406, f"The document does not validate against {dtd_name}: {errors[0]}")
        sender = root.find("Header/Sender/Credential")
        secret = _text(sender.find("SharedSecret")) if sender is not None else ""
        if not _matches(sender, *self.cxml_sender) or not hmac.compare_digest(
                secret.encode(), self.cxml_shared_secret.encode()):
            return Answer(401, "The Sender credential or its SharedSecret is not recognised.")
        if not any(_matches(c, *self.cxml_buyer) for c in root.findall("Header/To/Credential")):
            return Answer(400, "The To credential does not name this buyer.")
        return root

    # -- applying documents -----------------------------------------------------------------------
    def _apply(self, kind: str, body: etree._Element | None, payload_id: str) -> Answer:
        if body is None:
            return Answer(450, "The request type 'none' is not implemented.")
        if kind == "StatusUpdateRequest":
            return self._apply_status_update(body)
        if kind == "OrderRequest":
            return self._apply_order(body)
        if kind == "InvoiceDetailRequest":
            return self._apply_invoice(body)
        return Answer(450, f"The request type '{kind}' is not implemented.")

    def _apply_status_update(self, body: etree._Element) -> Answer:
        reference = body.find("DocumentReference")
        invoice_status, document_status = body.find("InvoiceStatus"), body.find("DocumentStatus")
        if invoice_status is not None:
            return self._invoice_status(invoice_status, reference)
        if document_status is not None:
            return self._document_status(document_status, reference)
        if any(body.find(tag) is not None for tag in ("PaymentStatus", "SourcingStatus", "IntegrationStatus")):
            return Answer(450, "Only InvoiceStatus and DocumentStatus updates are implemented.")
        if reference is None or reference.get("payloadID") not in self.cxml_documents:
            return Answer(417, "The referenced document is unknown.")
        return Answer(200, "Status recorded.")

    def _referenced(self, reference: etree._Element | None, request: str) -> dict[str, Any] | None:
        if reference is None:
            return None
        document = self.cxml_documents.get(reference.get("payloadID") or "")
        return document if document is not None and document["request"] == request else None

    def _invoice_status(self, status: etree._Element, reference: etree._Element | None) -> Answer:
        kind = status.get("type") or ""
        referenced = self._referenced(reference, "InvoiceDetailRequest")
        if referenced is not None:
            matches = [self.records[INVOICES][referenced["reference"]]]
        else:
            info = status.find("InvoiceIDInfo")
            if info is None:
                return Answer(417, "Neither a known DocumentReference nor an InvoiceIDInfo names the invoice.")
            matches = self.find(INVOICES, "invoiceNumber", info.get("invoiceID"))
            if not matches:
                return Answer(417, f"Invoice '{info.get('invoiceID')}' is unknown.")
            if len(matches) > 1:
                return Answer(400, f"Invoice number '{info.get('invoiceID')}' is ambiguous; "
                                   "reference the InvoiceDetailRequest by its payloadID.")
        invoice = matches[0]
        changes: dict[str, Any] = {"erpStatus": kind.upper()}
        if kind in ("paid", "paying"):
            changes["paymentStatus"] = "PAID" if kind == "paid" else "PAYMENT_IN_PROGRESS"
            partial = status.find("PartialAmount/Money")
            if partial is not None:
                changes["paidAmount"] = float(_text(partial) or 0)
        if kind in ("rejected", "canceled"):
            changes["status"] = "REJECTED" if kind == "rejected" else "CANCELED"
        record_id = str(invoice["invoiceId"])
        self.touch(INVOICES, record_id, changes)
        return Answer(200, f"Invoice {invoice['invoiceNumber']} is now {kind}.", record_id)

    def _document_status(self, status: etree._Element, reference: etree._Element | None) -> Answer:
        referenced = self._referenced(reference, "OrderRequest")
        info = status.find("DocumentInfo")
        if referenced is None and info is None:
            return Answer(417, "Neither a known DocumentReference nor a DocumentInfo names the document.")
        if referenced is None and (info.get("documentType") or "") not in ("PurchaseOrder", "OrderRequest"):
            return Answer(450, f"Status updates for '{info.get('documentType')}' documents are not implemented.")
        po_number = self.records[PURCHASE_ORDERS][referenced["reference"]]["poNumber"] if referenced else info.get(
            "documentID")
        orders = self.find(PURCHASE_ORDERS, "poNumber", po_number)
        if not orders:
            return Answer(417, f"Purchase order '{po_number}' is unknown.")
        record_id = str(orders[0]["purchaseOrderId"])
        self.touch(PURCHASE_ORDERS, record_id, {"receiptStatus": (status.get("type") or "").upper()})
        return Answer(200, f"Purchase order {po_number} is now {status.get('type')}.", record_id)

    def _apply_order(self, body: etree._Element) -> Answer:
        header = body.find("OrderRequestHeader")
        assert header is not None  # the DTD requires it
        order_id, operation = header.get("orderID") or "", header.get("type", "new")
        existing = self.find(PURCHASE_ORDERS, "poNumber", order_id)
        total = header.find("Total/Money")
        if operation == "new":
            if existing:
                return Answer(400, f"Order '{order_id}' exists; send type=\"update\" to change it.")
            lines = [{
                "lineNumber": int(item.get("lineNumber") or index),
                "description": _text(item.find("ItemDetail/Description")),
                "catalogNumber": _text(item.find("ItemID/SupplierPartID")),
                "quantity": float(item.get("quantity") or 0),
                "unitOfMeasure": _text(item.find("ItemDetail/UnitOfMeasure")),
                "unitPrice": float(_text(item.find("ItemDetail/UnitPrice/Money")) or 0),
                "lineTotal": round(float(item.get("quantity") or 0)
                                   * float(_text(item.find("ItemDetail/UnitPrice/Money")) or 0), 2),
                "accountCode": None, "costCenter": None,
            } for index, item in enumerate(body.findall("ItemOut"), start=1)]
            record = self.add_record(PURCHASE_ORDERS, {
                "poNumber": order_id, "status": "APPROVED", "supplier": None,
                "orderDate": (header.get("orderDate") or "")[:10],
                "currency": total.get("currency") if total is not None else None,
                "totalAmount": float(_text(total) or 0), "buyer": None, "receiptStatus": None, "lines": lines,
                "source": "cXML",
            })
            return Answer(200, f"Order {order_id} created.", str(record["purchaseOrderId"]))
        if not existing:
            return Answer(417, f"Order '{order_id}' is unknown.")
        record_id = str(existing[0]["purchaseOrderId"])
        changes: dict[str, Any] = {"status": "CANCELLED"} if operation == "delete" else {
            "totalAmount": float(_text(total) or 0)}
        self.touch(PURCHASE_ORDERS, record_id, changes)
        return Answer(200, f"Order {order_id} {'cancelled' if operation == 'delete' else 'updated'}.", record_id)

    def _apply_invoice(self, body: etree._Element) -> Answer:
        header = body.find("InvoiceDetailRequestHeader")
        assert header is not None  # the DTD requires it
        invoice_number = header.get("invoiceID") or ""
        order_ids = {info.get("orderID") for info in body.iter("OrderIDInfo", "OrderReference") if info.get("orderID")}
        orders = [order for order_id in sorted(order_ids) for order in self.find(PURCHASE_ORDERS, "poNumber", order_id)]
        if len(orders) != len(order_ids):
            return Answer(417, f"The order(s) {', '.join(sorted(order_ids))} are not all known.")
        if header.get("operation") == "delete":
            existing = self.find(INVOICES, "invoiceNumber", invoice_number)
            if not existing:
                return Answer(417, f"Invoice '{invoice_number}' is unknown.")
            record_id = str(existing[0]["invoiceId"])
            self.touch(INVOICES, record_id, {"status": "CANCELED"})
            return Answer(201, f"Cancellation of invoice {invoice_number} accepted.", record_id)
        summary = body.find("InvoiceDetailSummary")
        money = (lambda path: float(_text(summary.find(path)) or 0)) if summary is not None else (lambda path: 0.0)
        currency = summary.find("NetAmount/Money").get("currency") if summary is not None else None
        lines = [{
            "lineNumber": int(item.get("invoiceLineNumber") or 0),
            "poLineNumber": int(item.find("InvoiceDetailItemReference").get("lineNumber") or 0),
            "description": _text(item.find("InvoiceDetailItemReference/Description")),
            "quantity": float(item.get("quantity") or 0), "unitOfMeasure": _text(item.find("UnitOfMeasure")),
            "unitPrice": float(_text(item.find("UnitPrice/Money")) or 0),
            "lineTotal": float(_text(item.find("SubtotalAmount/Money")) or 0), "accountCode": None, "taxRate": None,
        } for item in body.iter("InvoiceDetailItem")]
        date = (header.get("invoiceDate") or "")[:10]
        record = self.add_record(INVOICES, {
            "invoiceNumber": invoice_number, "status": "IN_WORKFLOW",
            "supplier": orders[0]["supplier"] if orders else None,
            "purchaseOrderNumber": orders[0]["poNumber"] if orders else None,
            "invoiceDate": date, "dueDate": None, "currency": currency,
            "subtotalAmount": money("SubtotalAmount/Money"), "taxAmount": money("Tax/Money"),
            "totalAmount": money("NetAmount/Money"), "paymentStatus": "UNPAID", "erpStatus": None, "lines": lines,
            "source": "cXML",
        })
        return Answer(201, f"Invoice {invoice_number} accepted for processing.", str(record["invoiceId"]))
