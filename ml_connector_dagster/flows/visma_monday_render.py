"""Visma records as monday items: the field values of each row, then the board's column values.

A supplier invoice, a PO, a customer invoice or a GL account is one row (one item); a dimension is
one row per segment value. :data:`KINDS` says, per entity, which Visma model it is read as and how
its records become rows; :func:`render_item` turns a row into what a board with a resolved
:class:`~.visma_monday_mapping.ColumnMapping` takes (values converted to each column's type, then
encoded by :mod:`~ml_connector_dagster.systems.monday.columns`) and the content hash the ledger
compares.

Customer invoices carry their AR aging bucket (``current``, ``1-30``, ``31-60``, ``61-90``, ``90+``
days past due, as of the run's day), computed with pandas over each chunk of invoices, and a
collection status (Paid, Overdue, Partially paid, Open). A settled invoice has no bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

import pandas as pd
from pydantic import BaseModel, ConfigDict

from ml_connector_dagster.core.landing import content_hash
from ml_connector_dagster.systems.monday.columns import ColumnValueError, encode_column_values, numbers_value
from ml_connector_dagster.systems.visma.client import VismaEntity
from ml_connector_dagster.systems.visma.models import (
    Account,
    CustomerInvoice,
    Dimension,
    PurchaseOrder,
    SupplierInvoice,
    VismaRecord,
)

from .visma_monday_mapping import VISMA_ID, ColumnMapping

__all__ = [
    "AGING_BUCKETS",
    "KINDS",
    "ItemKind",
    "RenderedItem",
    "Row",
    "aging_buckets",
    "aging_summary",
    "open_receivables",
    "render_item",
]

AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
_AGING_EDGES = (float("-inf"), 0, 30, 60, 90, float("inf"))  # days past due, right-closed: 0 is current, 1..30 is 1-30
MAX_NAME = 255


class Row(NamedTuple):
    """One future item: its ledger id, the landed record it comes from, its name and field values."""

    row_id: str
    record_id: str
    name: str
    fields: dict[str, Any]
    version: str = "-"  # the record's last modification, for the ledger


class RenderedItem(BaseModel):
    """A row as the board takes it: the item name and encoded column values (column id -> wire value)."""

    model_config = ConfigDict(frozen=True)

    row_id: str
    record_id: str
    visma_id: str
    name: str
    values: dict[str, Any]
    content_hash: str
    version: str = "-"


# -- rows of each kind ------------------------------------------------------------------------------


def _party(number: str, name: str | None) -> str:
    return name or number


def _version(record: VismaRecord) -> str:
    return record.modified_at.isoformat() if record.modified_at else "-"


def _invoice_rows(records: Sequence[SupplierInvoice], as_of: date) -> list[Row]:
    rows = []
    for invoice in records:
        orders = dict.fromkeys(line.po_number for line in invoice.invoice_lines if line.po_number)
        number = invoice.supplier_reference or invoice.reference_number
        supplier = _party(invoice.supplier.number, invoice.supplier.name)
        rows.append(Row(invoice.record_id, invoice.record_id, f"Invoice {number} — {supplier}", {
            "InvoiceNumber": number, "Supplier": supplier, "Amount": invoice.amount,
            "Currency": invoice.currency_id, "DueDate": invoice.due_date, VISMA_ID: invoice.reference_number,
            "PONumber": ", ".join(orders) or None,
        }, _version(invoice)))  # fmt: skip
    return rows


def _order_rows(records: Sequence[PurchaseOrder], as_of: date) -> list[Row]:
    rows = []
    for order in records:
        supplier = _party(order.supplier.number, order.supplier.name)
        rows.append(Row(order.record_id, order.record_id, f"{order.order_nbr} — {supplier}", {
            "Supplier": supplier, "Amount": order.order_total, "Currency": order.currency, "OrderDate": order.date,
            "PromisedDate": order.promised_on, VISMA_ID: order.order_nbr,
        }, _version(order)))  # fmt: skip
    return rows


def aging_buckets(due_dates: Sequence[date | None], balances: Sequence[Decimal | None], as_of: date) -> list[str | None]:
    """The aging bucket of each receivable as of ``as_of`` (None when nothing is left to collect).

    Days past due ``<= 0`` are ``current``; an open invoice without a due date is ``current`` too.
    """
    frame = pd.DataFrame({"due": pd.to_datetime(list(due_dates)),
                          "balance": pd.to_numeric([None if b is None else float(b) for b in balances])})
    days_past_due = (pd.Timestamp(as_of) - frame["due"]).dt.days.fillna(0)
    buckets = pd.cut(days_past_due, bins=list(_AGING_EDGES), labels=list(AGING_BUCKETS), right=True)
    open_ = frame["balance"].fillna(0) > 0
    return [str(bucket) if is_open else None for bucket, is_open in zip(buckets, open_, strict=True)]


def _collection_status(invoice: CustomerInvoice, bucket: str | None) -> str:
    balance = invoice.balance if invoice.balance is not None else invoice.amount
    if balance <= 0:
        return "Paid"
    if bucket not in (None, "current"):
        return "Overdue"
    return "Partially paid" if balance < invoice.amount else "Open"


def _receivable_rows(records: Sequence[CustomerInvoice], as_of: date) -> list[Row]:
    balances = [r.balance if r.balance is not None else r.amount for r in records]
    buckets = aging_buckets([r.document_due_date for r in records], balances, as_of)
    rows = []
    for invoice, bucket, balance in zip(records, buckets, balances, strict=True):
        customer = _party(invoice.customer.number, invoice.customer.name)
        rows.append(Row(invoice.record_id, invoice.record_id, f"Invoice {invoice.reference_number} — {customer}", {
            "InvoiceNumber": invoice.reference_number, "Customer": customer, "Amount": invoice.amount,
            "Currency": invoice.currency_id, "DueDate": invoice.document_due_date,
            "Status": _collection_status(invoice, bucket), "AgingBucket": bucket, VISMA_ID: invoice.reference_number,
            "Balance": balance,
        }, _version(invoice)))  # fmt: skip
    return rows


def _account_rows(records: Sequence[Account], as_of: date) -> list[Row]:
    return [
        Row(account.record_id, account.record_id, f"{account.account_cd} {account.description}", {
            "Account": account.account_cd, "Description": account.description, "Type": account.type,
            "Active": None if account.active is None else ("Active" if account.active else "Inactive"),
            VISMA_ID: account.account_cd,
        }, _version(account))  # fmt: skip
        for account in records
    ]


def _dimension_rows(records: Sequence[Dimension], as_of: date) -> list[Row]:
    rows = []
    for dimension in records:
        for segment in dimension.segments:
            label = segment.description or dimension.description or dimension.id
            for value in segment.segment_values:
                row_id = f"{dimension.id}/{segment.segment_id}/{value.value_id}"
                rows.append(Row(row_id, dimension.record_id, f"{value.value_id} {value.description or ''}".strip(), {
                    "Dimension": label, "Code": value.value_id, "Description": value.description, VISMA_ID: row_id,
                }))  # fmt: skip
    return rows


@dataclass(frozen=True)
class ItemKind:
    """One Visma entity that becomes monday items: what differs between entities."""

    entity: str  # the key of connector.yaml's boards and of the Visma source asset
    asset: str
    visma_entity: VismaEntity
    model: type[VismaRecord]
    rows: Callable[[Sequence[Any], date], list[Row]]
    partitioned: bool = True
    receivable: bool = False  # customer invoices: AR aging in the metadata

    @property
    def flow(self) -> str:
        """The ledger's flow name of this kind's links (one per item)."""
        return f"visma_monday.{self.entity}"


KINDS: tuple[ItemKind, ...] = (
    ItemKind("supplier_invoices", "monday/visma_invoice_items", VismaEntity.SUPPLIER_INVOICE, SupplierInvoice,
             _invoice_rows),
    ItemKind("purchase_orders", "monday/visma_purchase_order_items", VismaEntity.PURCHASE_ORDER, PurchaseOrder,
             _order_rows),
    ItemKind("customer_invoices", "monday/visma_customer_invoice_items", VismaEntity.CUSTOMER_INVOICE,
             CustomerInvoice, _receivable_rows, receivable=True),
    ItemKind("gl_accounts", "monday/visma_gl_accounts", VismaEntity.ACCOUNT, Account, _account_rows,
             partitioned=False),
    ItemKind("dimensions", "monday/visma_dimensions", VismaEntity.DIMENSION, Dimension, _dimension_rows,
             partitioned=False),
)  # fmt: skip


# -- rows as column values --------------------------------------------------------------------------


def _as_column_value(value: Any, column_type: str) -> Any:
    """``value`` in the form ``column_type`` is encoded from (a text column shows anything as text)."""
    if value is None or value == "":
        return None
    if column_type == "text":
        if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
            return numbers_value(value)
        return value.isoformat() if isinstance(value, date) else str(value)
    if column_type == "dropdown":
        return [str(value)]
    if column_type == "status":
        return str(value)
    return value


def render_item(row: Row, mapping: ColumnMapping) -> RenderedItem:
    """The item ``row`` becomes on the mapped board; ColumnValueError names a value a column refuses."""
    values = {column: _as_column_value(row.fields.get(name), mapping.column_types[column])
              for name, column in mapping.columns.items()}  # fmt: skip
    encoded = encode_column_values(mapping.column_types, values)
    visma_id = str(row.fields.get(VISMA_ID) or "")
    if not visma_id:
        raise ColumnValueError(f"{row.row_id}: no Visma id to dedupe on")
    name = " ".join(row.name.split())[:MAX_NAME] or visma_id
    digest = content_hash({"name": name, "values": encoded, "board": mapping.board_id})
    return RenderedItem(row_id=row.row_id, record_id=row.record_id, visma_id=visma_id, name=name, values=encoded,
                        content_hash=digest, version=row.version)


def aging_summary(open_items: Iterable[tuple[str, str, float]]) -> pd.DataFrame:
    """``(bucket, currency, balance)`` of open receivables -> per bucket, in order: how many, and the
    balance per currency."""
    frame = pd.DataFrame(list(open_items), columns=["bucket", "currency", "balance"])
    frame["bucket"] = pd.Categorical(frame["bucket"], categories=list(AGING_BUCKETS), ordered=True)
    counts = frame.groupby("bucket", observed=False).size().rename("invoices")
    if frame.empty:
        return counts.reset_index()
    balances = frame.pivot_table(index="bucket", columns="currency", values="balance", aggfunc="sum",
                                 fill_value=0.0, observed=False)
    return pd.concat([counts, balances.round(2)], axis=1).fillna(0).reset_index()


def open_receivables(rows: Iterable[Row]) -> Iterator[tuple[str, str, float]]:
    """``(bucket, currency, balance)`` of the rows still to collect, for :func:`aging_summary`."""
    for row in rows:
        if row.fields.get("AgingBucket"):
            yield row.fields["AgingBucket"], str(row.fields.get("Currency")), float(row.fields.get("Balance") or 0)
