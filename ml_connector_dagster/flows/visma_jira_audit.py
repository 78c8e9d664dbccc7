"""GL postings and payments against a supplier invoice, as read-only audit comments on its issue.

A GL batch of the AP module names the invoice it posts in its lines' ``referenceNumber``; a
supplier payment (``/v1/supplierPayment``, landed by ``visma/supplier_payments``) names the
invoices it settles in its ``paymentLines[].invoiceRefNbr``. Each (record, invoice) pair becomes
one :class:`AuditEntry`, commented once on the invoice's issue. Customer payments (``/v1/payment``)
settle customer invoices, whose numbers may coincide with supplier invoice numbers: they are not
read here at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.visma.client import VismaEntity
from ml_connector_dagster.systems.visma.models import JournalTransaction, SupplierPayment

from .visma_jira_render import format_money

__all__ = ["AUDIT_ENTITIES", "AuditEntry", "audit_entries", "audit_id_prefix"]

AP_MODULE = "ModuleAP"
AUDIT_ENTITIES = (VismaEntity.JOURNAL_TRANSACTION, VismaEntity.SUPPLIER_PAYMENT)
_PREFIX = "audit:"


def audit_id_prefix() -> str:
    """What every audit id starts with (dead letters of audit comments are told apart by it)."""
    return _PREFIX


class AuditEntry(BaseModel):
    """One read-only comment to add to an invoice's issue, once."""

    model_config = ConfigDict(frozen=True)

    audit_id: str = Field(description="audit:<entity>/<record id>/<invoice id>: the ledger's source id of the comment.")
    invoice_id: str
    entity: str
    record_id: str
    title: str
    body: dict[str, Any]
    payload: dict[str, Any] = Field(description="The Visma record, for a dead letter.")

    @property
    def marker(self) -> str:
        """Text in the comment that finds it again (after a lost answer), as the comment shows it: ADF
        drops control characters, so a raw id holding one would never be found again."""
        return adf.plain_text(adf.text(f"Audit ID {self.audit_id}"))


def _audit_id(entity: str, record_id: str, invoice_id: str) -> str:
    return f"{_PREFIX}{entity}/{record_id}/{invoice_id}"


def _comment(title: str, facts: list[list[str]], rows_header: list[str], rows: list[list[str]], marker: str) -> adf.Node:
    return adf.doc(
        adf.paragraph(adf.strong(f"Audit: {title}")),
        adf.table(["Field", "Value"], facts),
        adf.table(rows_header, rows) if rows else None,
        adf.paragraph(adf.em(f"Read-only copy of a Visma record; change it in Visma. {marker}")),
    )


def _gl_entries(payload: Mapping[str, Any]) -> list[AuditEntry]:
    batch = JournalTransaction.model_validate(payload)
    if batch.module != AP_MODULE:
        return []
    entries = []
    invoices = dict.fromkeys(line.reference_number for line in batch.journal_transaction_lines if line.reference_number)
    for invoice_id in invoices:
        lines = [line for line in batch.journal_transaction_lines if line.reference_number == invoice_id]
        audit_id = _audit_id(VismaEntity.JOURNAL_TRANSACTION.value, batch.record_id, invoice_id)
        title = f"GL posting, batch {batch.batch_number} ({batch.module})"
        facts = [
            ["Batch", f"{batch.module} {batch.batch_number}"],
            ["Status", batch.status],
            ["Transaction date", batch.transaction_date.isoformat()],
            ["Description", batch.description or "—"],
            ["Debit total", format_money(batch.debit_total, batch.currency_id)],
            ["Credit total", format_money(batch.credit_total, batch.currency_id)],
        ]
        rows = [[str(line.line_number), line.account_number, line.description or "—",
                 format_money(line.debit_amount, batch.currency_id), format_money(line.credit_amount, batch.currency_id)]
                for line in lines]  # fmt: skip
        marker = f"Audit ID {audit_id}"
        body = _comment(title, facts, ["#", "Account", "Description", "Debit", "Credit"], rows, marker)
        entries.append(AuditEntry(audit_id=audit_id, invoice_id=invoice_id, entity=VismaEntity.JOURNAL_TRANSACTION.value,
                                  record_id=batch.record_id, title=title, body=body, payload=dict(payload)))
    return entries


def _payment_entries(payload: Mapping[str, Any]) -> list[AuditEntry]:
    payment = SupplierPayment.model_validate(payload)
    money = payment.currency_id
    entries = []
    for invoice_id in dict.fromkeys(line.invoice_ref_nbr for line in payment.payment_lines):
        settled = [line for line in payment.payment_lines if line.invoice_ref_nbr == invoice_id]
        audit_id = _audit_id(VismaEntity.SUPPLIER_PAYMENT.value, payment.record_id, invoice_id)
        title = f"Payment {payment.ref_nbr}"
        remaining = settled[-1].balance  # after the last of this payment's applications to the invoice
        facts = [
            ["Payment", f"{payment.type} {payment.ref_nbr}"],
            ["Status", payment.status],
            ["Paid to", f"{payment.supplier.name or payment.supplier.number} ({payment.supplier.number})"],
            ["Application date", payment.application_date.isoformat()],
            ["Payment amount", format_money(payment.payment_amount, money)],
            ["Paid on this invoice", format_money(sum((line.amount_paid for line in settled), Decimal(0)), money)],
            ["Invoice balance after payment", format_money(remaining, money)],
            ["Payment reference", payment.payment_ref or "—"],
        ]
        rows = [[line.doc_type or "—", line.invoice_ref_nbr, format_money(line.amount_paid, money),
                 format_money(line.balance, money)] for line in settled]  # fmt: skip
        marker = f"Audit ID {audit_id}"
        body = _comment(title, facts, ["Document type", "Reference", "Amount paid", "Balance after"], rows, marker)
        entries.append(AuditEntry(audit_id=audit_id, invoice_id=invoice_id, entity=VismaEntity.SUPPLIER_PAYMENT.value,
                                  record_id=payment.record_id, title=title, body=body, payload=dict(payload)))
    return entries


def audit_entries(entity: str, payload: Mapping[str, Any]) -> list[AuditEntry]:
    """The audit comments one landed GL batch or supplier payment asks for (none for a record that
    names no supplier invoice, or that cannot be read: its source asset already validated it)."""
    try:
        if entity == VismaEntity.JOURNAL_TRANSACTION.value:
            return _gl_entries(payload)
        if entity == VismaEntity.SUPPLIER_PAYMENT.value:
            return _payment_entries(payload)
    except ValidationError:
        return []
    return []
