"""JAGGAER purchase orders and invoices as Visma ``PurchaseOrderUpdateDto`` / ``SupplierInvoiceUpdateDto`` bodies.

Every value travels in Visma's ``{"field": {"value": x}}`` shape; dates as midnight UTC date-times;
amounts as JSON numbers. The JAGGAER id rides on the Visma record for audit and for finding it
again: the description starts with its *marker* (``JAGGAER invoice 710001``), and the JAGGAER
document number goes where Visma keeps the supplier's reference (``supplierReference`` of an
invoice, ``supplierRef`` of a PO). Updates send the header again and, for the lines, the
Insert/Update/Delete operations that turn the record's current lines into the wanted ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

from ml_connector_dagster.core.landing import content_hash
from ml_connector_dagster.systems.jaggaer.models import Invoice, PurchaseOrder

__all__ = ["Allocation", "VismaDocument", "find_marker", "marker", "render_invoice", "render_purchase_order"]


class Allocation(NamedTuple):
    """Where one line is posted in Visma."""

    account: str
    department: str
    cost_centre: str


class VismaDocument(BaseModel):
    """One JAGGAER document rendered for Visma: its header, its lines, and its marker."""

    model_config = ConfigDict(frozen=True)

    marker: str
    header: dict[str, Any]
    create_only: dict[str, Any]
    lines: list[dict[str, Any]]
    lines_field: str

    @property
    def content_hash(self) -> str:
        """Changes when what Visma would hold changes (not when JAGGAER-only fields do)."""
        return content_hash({"header": self.header, "create_only": self.create_only, "lines": self.lines})

    def create_body(self) -> dict[str, Any]:
        """The POST body: the header and every line as an Insert."""
        return {**self.create_only, **self.header,
                self.lines_field: [{"operation": "Insert", **line} for line in self.lines]}

    def update_body(self, current_line_numbers: Iterable[int]) -> dict[str, Any]:
        """The PUT body against a record whose lines are numbered ``current_line_numbers``."""
        current = set(current_line_numbers)
        wanted = {line["lineNumber"]["value"] for line in self.lines}
        operations = [{"operation": "Update" if line["lineNumber"]["value"] in current else "Insert", **line}
                      for line in self.lines]
        operations += [{"operation": "Delete", "lineNumber": {"value": number}} for number in sorted(current - wanted)]
        return {**self.header, self.lines_field: operations}


def marker(label: str, record_id: str) -> str:
    """``JAGGAER invoice 710001``: how a Visma record names the JAGGAER document it came from."""
    return f"JAGGAER {label} {record_id}"


def find_marker(text: str | None, label: str) -> str | None:
    """The JAGGAER id in a Visma description carrying ``label``'s marker, or None."""
    found = re.search(rf"\bJAGGAER {re.escape(label)} (\d+)(?!\d)", text or "")
    return found.group(1) if found else None


def _value(value: Any) -> dict[str, Any]:
    return {"value": value}


def _when(day: date) -> str:
    return datetime.combine(day, time(), UTC).isoformat()


def _number(value: Decimal | float | int) -> float:
    return float(value)


def _subaccount(allocation: Allocation, segments: Mapping[str, int]) -> list[dict[str, Any]]:
    values = {"department": allocation.department, "cost_centre": allocation.cost_centre}
    return [{"segmentId": segment, "segmentValue": values[name]}
            for name, segment in sorted(segments.items(), key=lambda item: item[1]) if values.get(name)]


def _description(label: str, record_id: str, number: str) -> str:
    return f"{marker(label, record_id)}: {number}"[:255]


class _LineFields(NamedTuple):
    """What a kind's line DTO calls the fields every line has."""

    description: str
    quantity: str
    unit_cost: str
    account: str
    subaccount: str


_ORDER_LINE = _LineFields("lineDescription", "orderQty", "unitCost", "account", "sub")
_INVOICE_LINE = _LineFields("transactionDescription", "quantity", "unitCostInCurrency", "accountNumber", "subaccount")


def _line(line: Any, allocation: Allocation, segments: Mapping[str, int], names: _LineFields) -> dict[str, Any]:
    body: dict[str, Any] = {
        "lineNumber": _value(line.line_number),
        names.description: _value(line.description or ""),
        names.quantity: _value(_number(line.quantity)),
        names.unit_cost: _value(_number(line.unit_price)),
        names.account: _value(allocation.account),
    }
    if sub := _subaccount(allocation, segments):
        body[names.subaccount] = sub
    return body


def render_purchase_order(order: PurchaseOrder, supplier: str, allocations: Mapping[int, Allocation],
                          segments: Mapping[str, int]) -> VismaDocument:
    """A JAGGAER PO for Visma supplier ``supplier``, each line posted as ``allocations`` say."""
    header: dict[str, Any] = {
        "supplier": _value(supplier),
        "currency": _value(order.currency),
        "description": _value(_description("PO", order.record_id, order.po_number)),
        "supplierRef": _value(order.po_number),
    }
    if order.order_date is not None:
        header["date"] = _value(_when(order.order_date))
    lines = []
    for line in order.lines:
        body = _line(line, allocations[line.line_number], segments, _ORDER_LINE)
        if line.unit_of_measure:
            body["uom"] = _value(line.unit_of_measure)
        lines.append(body)
    return VismaDocument(marker=marker("PO", order.record_id), header=header,
                         create_only={"orderType": _value("RegularOrder")}, lines=lines, lines_field="lines")


def vat_code_of(rate: Decimal | None, vat_codes: Mapping[str, str]) -> str | None:
    """The Visma VAT code of a tax rate (``25`` -> ``1``); KeyError names the rate when there is none."""
    if rate is None:
        return None
    key = format(rate.normalize(), "f") if rate != 0 else "0"
    if key not in vat_codes:
        raise KeyError(f"tax rate {key}% has no Visma VAT code (vat_codes)")
    return vat_codes[key]


def render_invoice(invoice: Invoice, supplier: str, allocations: Mapping[int, Allocation],
                   segments: Mapping[str, int], vat_codes: Mapping[str, str]) -> VismaDocument:
    """A JAGGAER invoice for Visma supplier ``supplier``; raises KeyError for a tax rate without a VAT code."""
    header: dict[str, Any] = {
        "supplierNumber": _value(supplier),
        "currencyId": _value(invoice.currency),
        "date": _value(_when(invoice.invoice_date)),
        "supplierReference": _value(invoice.invoice_number),
        "description": _value(_description("invoice", invoice.record_id, invoice.invoice_number)),
    }
    if invoice.due_date is not None:
        header["dueDate"] = _value(_when(invoice.due_date))
    if invoice.purchase_order_number:  # for AP's three-way match against the PO
        header["note"] = _value(f"JAGGAER PO {invoice.purchase_order_number}")
    lines = []
    for line in invoice.lines:
        body = _line(line, allocations[line.line_number], segments, _INVOICE_LINE)
        if (code := vat_code_of(line.tax_rate, vat_codes)) is not None:
            body["vatCodeId"] = _value(code)
        lines.append(body)
    return VismaDocument(marker=marker("invoice", invoice.record_id), header=header,
                         # Approved in JAGGAER: ready for AP. An update never touches hold (AP's own call).
                         create_only={"documentType": _value("Invoice"), "hold": _value(False)}, lines=lines,
                         lines_field="invoiceLines")
