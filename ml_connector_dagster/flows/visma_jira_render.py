"""How a Visma supplier invoice or purchase order looks in Jira: summary, fields and ADF description.

Both document types are first reduced to one :class:`DocumentView` (the facts an issue shows), so
the rest of the flow never asks which type it holds. :func:`render_issue` turns a view into a
:class:`RenderedIssue`: the summary ("Invoice 000123 – Nordic Steel AS – 12 500,00 NOK"), the
number, date, label or assignee fields, and an ADF description with a facts table, a line-item
table and the audit trail (Visma id and last-modified timestamp). The facts table is also what an
update compares: :func:`facts_of` reads it back from the description Jira holds, so the change
comment can say "Amount: 12 500,00 NOK → 13 000,00 NOK".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ml_connector_dagster.config import VismaJiraFlow
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.visma.models import PurchaseOrder, SupplierInvoice

from .jira_destination import MISSING, FieldIds, RenderedIssueBase, format_amount, format_money
from .jira_destination import one_line as _one_line
from .jira_destination import utc_text as _utc_text

__all__ = [
    "AUDIT_FACTS",
    "DocumentView",
    "FieldChange",
    "JiraFieldIds",
    "LineItem",
    "RenderedIssue",
    "change_comment",
    "change_marker",
    "describe_changes",
    "facts_of",
    "format_amount",
    "format_money",
    "invoice_view",
    "purchase_order_view",
    "render_issue",
    "supplier_label",
]

SUMMARY_LIMIT = 255  # Jira refuses longer summaries
LABEL_LIMIT = 255
ARROW = "→"
# Facts that change on every edit or never: shown for the audit trail, not reported as changes.
AUDIT_FACTS = ("Visma ID", "Last modified in Visma")
LINE_ITEMS = "Line items"
_ALWAYS_SHOWN = frozenset({"Amount", "Due date", "Promised on", "PO reference", "Status"})  # even when missing
_DOCUMENT_TYPES = {"Invoice": "Invoice", "CreditAdj": "Credit note", "DebitAdj": "Debit note",
                   "Prepayment": "Prepayment", "CreditNote": "Credit note"}  # fmt: skip
_LABEL_UNSAFE = re.compile(r"[\s,]+")


# -- the facts an issue shows ----------------------------------------------------------------------


class LineItem(BaseModel):
    """One line of an invoice or purchase order, in the document's currency."""

    model_config = ConfigDict(frozen=True)

    number: int
    description: str | None = None
    account: str | None = None
    quantity: Decimal | None = None
    unit_cost: Decimal | None = None
    amount: Decimal | None = None


class DocumentView(BaseModel):
    """What a Jira issue shows of one Visma document, whatever its type."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    external_id: str = Field(description="The Visma ID written to Jira: the record's API path, e.g. supplierInvoice/000123.")
    title: str = Field(description="Invoice, Credit note, Purchase order ...")
    number: str
    supplier_number: str
    supplier_name: str | None = None
    status: str
    amount: Decimal
    currency: str
    vat: Decimal | None = None
    balance: Decimal | None = None
    date: date
    due_date: date | None = None
    due_label: str = "Due date"
    po_reference: str | None = None
    supplier_reference: str | None = None
    description: str | None = None
    order_type: str | None = None
    last_modified: datetime
    lines: tuple[LineItem, ...] = ()

    @property
    def supplier_display(self) -> str:
        return _one_line(self.supplier_name) or _one_line(self.supplier_number)


def _extra_decimal(model: BaseModel, name: str) -> Decimal | None:
    value = (model.model_extra or {}).get(name)
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def invoice_view(invoice: SupplierInvoice) -> DocumentView:
    """The facts of a supplier invoice; line amounts in the invoice's currency where Visma gives them."""
    lines = tuple(
        LineItem(
            number=line.line_number,
            description=line.transaction_description,
            account=line.account.number if line.account else None,
            quantity=line.quantity,
            unit_cost=_extra_decimal(line, "unitCostInCurrency") or line.unit_cost,
            amount=_extra_decimal(line, "costInCurrency") or line.cost,
        )
        for line in invoice.invoice_lines
    )
    po_numbers = list(dict.fromkeys(line.po_number for line in invoice.invoice_lines if line.po_number))
    return DocumentView(
        record_id=invoice.record_id,
        external_id=f"supplierInvoice/{invoice.record_id}",
        title=_DOCUMENT_TYPES.get(invoice.document_type or "", _one_line(invoice.document_type) or "Invoice"),
        number=invoice.reference_number,
        supplier_number=invoice.supplier.number,
        supplier_name=invoice.supplier.name,
        status=invoice.status,
        amount=invoice.amount,
        currency=invoice.currency_id,
        vat=invoice.vat_total,
        balance=invoice.balance,
        date=invoice.date,
        due_date=invoice.due_date,
        po_reference=", ".join(po_numbers) or None,
        supplier_reference=invoice.supplier_reference,
        description=invoice.description,
        last_modified=invoice.last_modified_date_time,
        lines=lines,
    )


def purchase_order_view(order: PurchaseOrder) -> DocumentView:
    """The facts of a purchase order; its promised date is the issue's due date."""
    lines = tuple(
        LineItem(
            number=line.line_nbr,
            description=line.line_description,
            account=line.account.number if line.account else None,
            quantity=line.order_qty,
            unit_cost=line.unit_cost,
            amount=line.amount,
        )
        for line in order.lines
    )
    return DocumentView(
        record_id=order.record_id,
        external_id=f"purchaseorder/{order.record_id}",
        title="Purchase order",
        number=order.order_nbr,
        supplier_number=order.supplier.number,
        supplier_name=order.supplier.name,
        status=order.status,
        amount=order.order_total,
        currency=order.currency,
        date=order.date,
        due_date=order.promised_on,
        due_label="Promised on",
        po_reference=order.order_nbr,
        description=order.description,
        order_type=order.order_type,
        last_modified=order.last_modified_date_time,
        lines=lines,
    )


# -- formatting ----------------------------------------------------------------------------------------


def _format_number(value: Decimal | None) -> str:
    if value is None:
        return MISSING
    if not value.is_finite():
        return str(value)
    return format_amount(value).removesuffix(",00")


def _text_or_missing(value: str | None) -> str:
    return _one_line(value) or MISSING


def supplier_label(view: DocumentView) -> str:
    """The supplier as a Jira label: its name with spaces and commas as underscores (Jira labels have none)."""
    name = _one_line(view.supplier_name)
    label = _LABEL_UNSAFE.sub("_", name).strip("_") if name else ""
    return (label or f"supplier_{_LABEL_UNSAFE.sub('_', view.supplier_number)}")[:LABEL_LIMIT]


# -- the rendered issue ------------------------------------------------------------------------------


class JiraFieldIds(FieldIds):
    """Jira field ids of the configured custom fields (resolved by name once per run)."""

    po_reference: str | None = None


class RenderedIssue(RenderedIssueBase):
    """One Visma document as a Jira issue: what to create, what to keep up to date, what to compare."""

    duedate: str | None
    labels: tuple[str, ...]
    assignee: str | None
    po_reference: str | None
    visma_status: str
    jira_status: str | None

    def create_fields(self, ids: JiraFieldIds, project_key: str, issue_type: str) -> dict[str, Any]:
        """The ``fields`` of a create request."""
        fields: dict[str, Any] = {
            "project": {"key": project_key},
            "issuetype": {"name": issue_type},
            "labels": list(self.labels),
            ids.external_id: self.external_id,
            **self.update_fields(ids),
        }
        if self.assignee:
            fields["assignee"] = {"accountId": self.assignee}
        return fields

    def update_fields(self, ids: JiraFieldIds) -> dict[str, Any]:
        """The fields an update keeps in step with Visma (labels and assignee are left to the team)."""
        fields: dict[str, Any] = {
            "summary": self.summary,
            "description": self.description,
            ids.amount: self.amount,
            "duedate": self.duedate,
        }
        if ids.po_reference:
            fields[ids.po_reference] = self.po_reference
        if ids.currency:
            fields[ids.currency] = self.currency
        return fields


def _summary(view: DocumentView) -> str:
    parts = [f"{view.title} {_one_line(view.number)}", view.supplier_display, format_money(view.amount, view.currency)]
    summary = _one_line(" – ".join(part for part in parts if part))
    return summary if len(summary) <= SUMMARY_LIMIT else summary[: SUMMARY_LIMIT - 1] + "…"


def _facts(view: DocumentView) -> dict[str, str]:
    facts = {
        "Supplier": f"{view.supplier_display} ({_one_line(view.supplier_number)})",
        "Document type": view.title,
        "Status": _text_or_missing(view.status),
        "Amount": format_money(view.amount, view.currency),
        "VAT": format_money(view.vat, view.currency),
        "Balance": format_money(view.balance, view.currency),
        "Date": view.date.isoformat(),
        view.due_label: view.due_date.isoformat() if view.due_date else MISSING,
        "PO reference": _text_or_missing(view.po_reference),
        "Supplier reference": _text_or_missing(view.supplier_reference),
        "Order type": _text_or_missing(view.order_type),
        "Description": _text_or_missing(view.description),
        "Visma ID": _one_line(view.external_id),
        "Last modified in Visma": _utc_text(view.last_modified),
    }
    # One line each, as the description shows them: what facts_of reads back must equal this.
    cleaned = {name: _one_line(value) or MISSING for name, value in facts.items()}
    return {name: value for name, value in cleaned.items() if value != MISSING or name in _ALWAYS_SHOWN}



def _line_table(view: DocumentView) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the line-item table."""
    currency = _one_line(view.currency)
    rows = [
        [str(line.number), _text_or_missing(line.description), _text_or_missing(line.account),
         _format_number(line.quantity), _format_number_money(line.unit_cost), _format_number_money(line.amount)]
        for line in view.lines
    ]  # fmt: skip
    return ["#", "Description", "Account", "Quantity", f"Unit cost ({currency})", f"Amount ({currency})"], rows


def _format_number_money(value: Decimal | None) -> str:
    return MISSING if value is None else format_amount(value)


def render_issue(view: DocumentView, settings: VismaJiraFlow) -> RenderedIssue:
    """The Jira issue of one Visma document under the flow's mapping (labels or assignee, statuses)."""
    facts = _facts(view)
    assignee = None
    labels = ["visma", f"visma-{'purchase-order' if view.title == 'Purchase order' else 'supplier-invoice'}"]
    if settings.supplier_as == "assignee":
        assignee = settings.supplier_assignees.get(view.supplier_number) or settings.supplier_assignees.get(
            view.supplier_name or ""
        )
    if assignee is None:
        labels.append(supplier_label(view))
    line_header, line_rows = _line_table(view)  # the description shows it, the facts keep it as text
    line_table = adf.table(line_header, line_rows)
    description = adf.doc(
        adf.heading(2, f"{view.title} {_one_line(view.number)} from {view.supplier_display}"),
        adf.table(["Field", "Value"], [[name, value] for name, value in facts.items()]),
        adf.heading(3, LINE_ITEMS),
        line_table or adf.paragraph(adf.em("No line items.")),
        adf.rule(),
        adf.paragraph(
            adf.em("Synced from Visma.net by ml-connector; Visma is the system of record. Visma ID "),
            adf.code(view.external_id),
            adf.em(", last modified "),
            adf.code(_utc_text(view.last_modified)),
            adf.em("."),
        ),
    )
    return RenderedIssue(
        external_id=view.external_id,
        summary=_summary(view),
        description=description,
        amount=float(view.amount) if view.amount.is_finite() else 0.0,
        currency=_one_line(view.currency),
        duedate=view.due_date.isoformat() if view.due_date else None,
        labels=tuple(dict.fromkeys(labels)),
        assignee=assignee,
        po_reference=_one_line(view.po_reference) or None,
        visma_status=view.status,
        jira_status=_mapped_status(view.status, settings.status_map),
        last_modified=view.last_modified,
        facts={**facts, LINE_ITEMS: adf.table_text(line_header, line_rows)},
    )


def _mapped_status(visma_status: str, status_map: Mapping[str, str]) -> str | None:
    if visma_status in status_map:
        return status_map[visma_status]
    folded = visma_status.casefold()
    return next((jira for visma, jira in status_map.items() if visma.casefold() == folded), None)


# -- reading an issue back, and describing what changed --------------------------------------------


class FieldChange(BaseModel):
    """One fact that differs between the issue in Jira and the document in Visma."""

    model_config = ConfigDict(frozen=True)

    field: str
    old: str | None
    new: str | None


def facts_of(description: Any) -> dict[str, str]:
    """The facts table (and line items) of a description this module rendered; {} for anything else."""
    if not adf.is_document(description):
        return {}
    tables = [node for node in description.get("content") or [] if isinstance(node, dict) and node.get("type") == "table"]
    if not tables:
        return {}
    facts: dict[str, str] = {}
    for row in (tables[0].get("content") or [])[1:]:
        cells = [adf.plain_text(cell) for cell in row.get("content") or []]
        if len(cells) >= 2:
            facts[cells[0]] = cells[1]
    facts[LINE_ITEMS] = adf.plain_text(tables[1]) if len(tables) > 1 else ""
    return facts


def describe_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[FieldChange]:
    """The facts whose value differs, in the order the issue shows them (audit facts left out)."""
    changes = []
    for name in dict.fromkeys([*new, *old]):
        if name in AUDIT_FACTS or old.get(name) == new.get(name):
            continue
        if name == LINE_ITEMS:
            changes.append(FieldChange(field=name, old=None, new=None))
        else:
            changes.append(FieldChange(field=name, old=old.get(name), new=new.get(name)))
    return changes


def change_marker(issue: RenderedIssue) -> str:
    """Text that identifies the change comment of one Visma version (to find it again after a timeout)."""
    return f"Visma ID {issue.external_id}, version {issue.source_version}"


def change_comment(issue: RenderedIssue, changes: Sequence[FieldChange]) -> adf.Node:
    """The comment an update adds: what changed in Visma, old value to new."""
    items: list[list[adf.Inline]] = []
    for change in changes:
        if change.field == LINE_ITEMS:
            items.append([adf.strong(LINE_ITEMS), " changed (see the description)"])
        else:
            items.append([adf.strong(change.field), f": {change.old or MISSING} {ARROW} {change.new or MISSING}"])
    return adf.doc(
        adf.paragraph(adf.strong("Updated in Visma"), f" at {issue.source_version}"),
        adf.bullet_list(*items),
        adf.paragraph(adf.em(change_marker(issue))),
    )
