"""How an Acumatica document that needs attention looks in Jira: which exception, summary, fields, ADF.

A bill, purchase order or payment is first reduced to one :class:`DocumentView` (the facts an issue
shows, whatever the entity); :func:`exception_of` names the first configured rule it matches (none:
it needs no attention). :func:`render_issue` makes the :class:`RenderedIssue`: the summary carries
the reference, vendor and amount ("Bill 001042 – NORDFRAKT – 12 500,00 NOK"), the description a
facts table (read back by :func:`~.jira_destination.table_facts` to say what changed), what resolving
the issue will do, and the audit trail (the document's Acumatica path and last modification).

The external id is the document's path under its entity, ``Bill/Bill/001042``: the key the return
path reads the document by (:func:`document_of`), and what dedupes issues in Jira.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ml_connector_dagster.config import AcumaticaExceptionRule, AcumaticaJiraFlow
from ml_connector_dagster.systems.acumatica.client import AcumaticaEntity
from ml_connector_dagster.systems.acumatica.models import AcumaticaRecord, Bill, Payment, PurchaseOrder
from ml_connector_dagster.systems.jira import adf

from .jira_destination import MISSING, RenderedIssueBase, format_money, one_line, utc_text
from .jira_destination import FieldIds as BaseIds

__all__ = [
    "AUDIT_FACTS",
    "EXCEPTION_FACT",
    "DocumentRef",
    "DocumentView",
    "FieldIds",
    "RenderedIssue",
    "change_comment",
    "describe_changes",
    "document_of",
    "exception_of",
    "render_issue",
    "view_of",
]

SUMMARY_LIMIT = 255
ARROW = "→"
EXCEPTION_FACT = "Exception"
AUDIT_FACTS = ("Acumatica document", "Last modified in Acumatica")  # shown, never reported as changes
ENTITY_OF_RULE = {"bills": AcumaticaEntity.BILL, "purchase_orders": AcumaticaEntity.PURCHASE_ORDER,
                  "payments": AcumaticaEntity.PAYMENT}  # fmt: skip
_ACTION_TEXT = {AcumaticaEntity.BILL: "releases the bill", AcumaticaEntity.PAYMENT: "releases the payment",
                AcumaticaEntity.PURCHASE_ORDER: "approves the purchase order"}  # fmt: skip


class DocumentRef(BaseModel):
    """Which Acumatica document an issue is about: its entity and key values (type, number)."""

    model_config = ConfigDict(frozen=True)

    entity: AcumaticaEntity
    keys: tuple[str, ...]

    @property
    def external_id(self) -> str:
        return "/".join((self.entity.value, *self.keys))

    @property
    def reference(self) -> str:
        return " ".join(self.keys)


def document_of(external_id: str | None) -> DocumentRef | None:
    """The document an external id names (``Bill/Bill/001042``), or None if it names none of ours."""
    parts = (external_id or "").split("/", 2)
    if len(parts) != 3 or not all(parts) or parts[0] not in {e.value for e in ENTITY_OF_RULE.values()}:
        return None
    return DocumentRef(entity=AcumaticaEntity(parts[0]), keys=(parts[1], parts[2]))


class DocumentView(BaseModel):
    """What a Jira issue shows of one Acumatica document, whatever its entity."""

    model_config = ConfigDict(frozen=True)

    ref: DocumentRef
    record_id: str
    title: str
    party_label: str
    party: str
    status: str
    hold: bool | None = None
    amount: Decimal
    currency: str
    balance: Decimal | None = None
    lines_and_tax: Decimal | None = None
    document_date: date | None = None
    due_date: date | None = None
    description: str | None = None
    last_modified: datetime

    @property
    def unbalanced(self) -> bool:
        """The control total differs from the lines plus tax (a bill Acumatica will not take off hold)."""
        return self.lines_and_tax is not None and round(self.amount, 2) != round(self.lines_and_tax, 2)


def _bill_view(bill: Bill) -> DocumentView:
    lines = [line.amount for line in bill.details if line.amount is not None]
    lines_and_tax = sum(lines, Decimal(0)) + (bill.tax_total or 0) if bill.details else None
    return DocumentView(
        ref=DocumentRef(entity=AcumaticaEntity.BILL, keys=(bill.type, bill.reference_nbr)), record_id=bill.record_id,
        title=bill.type, party_label="Vendor", party=bill.vendor, status=bill.status, hold=bill.hold,
        amount=bill.amount, currency=bill.currency_id, balance=bill.balance, lines_and_tax=lines_and_tax,
        document_date=bill.date, due_date=bill.due_date, description=bill.description, last_modified=bill.modified_at,
    )  # fmt: skip


def _order_view(order: PurchaseOrder) -> DocumentView:
    return DocumentView(
        ref=DocumentRef(entity=AcumaticaEntity.PURCHASE_ORDER, keys=(order.type, order.order_nbr)),
        record_id=order.record_id, title="Purchase order", party_label="Vendor", party=order.vendor_id,
        status=order.status, hold=order.hold, amount=order.order_total, currency=order.currency_id, document_date=order.date,
        due_date=order.promised_on, description=order.description, last_modified=order.modified_at,
    )  # fmt: skip


def _payment_view(payment: Payment) -> DocumentView:
    return DocumentView(
        ref=DocumentRef(entity=AcumaticaEntity.PAYMENT, keys=(payment.type, payment.reference_nbr)),
        record_id=payment.record_id, title=payment.type, party_label="Customer", party=payment.customer_id,
        status=payment.status, hold=payment.hold, amount=payment.payment_amount, currency=payment.currency_id,
        balance=payment.available_balance, document_date=payment.application_date, description=payment.description,
        last_modified=payment.modified_at,
    )  # fmt: skip


def view_of(record: AcumaticaRecord) -> DocumentView:
    """The facts of a bill, purchase order or payment."""
    if isinstance(record, Bill):
        return _bill_view(record)
    if isinstance(record, PurchaseOrder):
        return _order_view(record)
    if isinstance(record, Payment):
        return _payment_view(record)
    raise TypeError(f"no exception view of {type(record).__name__}")


def exception_of(view: DocumentView, rules: Sequence[AcumaticaExceptionRule]) -> AcumaticaExceptionRule | None:
    """The first rule the document matches: the exception it is in (None: it needs no attention)."""
    folded = view.status.casefold()
    for rule in rules:
        if ENTITY_OF_RULE[rule.entity] is not view.ref.entity:
            continue
        if any(status.casefold() == folded for status in rule.statuses) or (rule.unbalanced and view.unbalanced):
            return rule
    return None


# -- the rendered issue ----------------------------------------------------------------------------


class FieldIds(BaseIds):
    """Jira field ids of the configured custom fields (resolved by name once per run)."""

    vendor: str | None = None


class RenderedIssue(RenderedIssueBase):
    """One Acumatica document as a Jira issue: what to create, keep up to date and compare. Project,
    type and labels only matter when it is created."""

    unhashed: ClassVar[frozenset[str]] = frozenset({"facts", "project_key", "issue_type", "labels"})

    project_key: str
    issue_type: str
    exception: str | None
    party: str
    labels: tuple[str, ...]

    def create_fields(self, ids: FieldIds) -> dict[str, Any]:
        """The ``fields`` of a create request (project and issue type from the exception's rule)."""
        return {"project": {"key": self.project_key}, "issuetype": {"name": self.issue_type},
                "labels": list(self.labels), ids.external_id: self.external_id, **self.update_fields(ids)}  # fmt: skip

    def update_fields(self, ids: FieldIds) -> dict[str, Any]:
        """The fields an update keeps in step with Acumatica (labels are left to the team)."""
        fields: dict[str, Any] = {"summary": self.summary, "description": self.description, ids.amount: self.amount}
        if ids.currency:
            fields[ids.currency] = self.currency
        if ids.vendor:
            fields[ids.vendor] = self.party
        return fields


def _day(value: date | None) -> str:
    return value.isoformat() if value else MISSING


def _summary(view: DocumentView) -> str:
    parts = [f"{view.title} {view.ref.keys[1]}", one_line(view.party), format_money(view.amount, view.currency)]
    summary = one_line(" – ".join(part for part in parts if part))
    return summary if len(summary) <= SUMMARY_LIMIT else summary[: SUMMARY_LIMIT - 1] + "…"


def _exception_text(rule: AcumaticaExceptionRule | None) -> str:
    return rule.name.replace("_", " ") if rule else MISSING


def _on_resolution(view: DocumentView, rule: AcumaticaExceptionRule | None) -> str:
    if rule is not None and not rule.act_on_resolve:
        return "Nothing in Acumatica: the resolution is acknowledged in a comment."
    return f"ml-connector {_ACTION_TEXT[view.ref.entity]} in Acumatica, after checking its status."


def _facts(view: DocumentView, rule: AcumaticaExceptionRule | None) -> dict[str, str]:
    facts = {
        "Document": f"{view.title} {view.ref.keys[1]}",
        EXCEPTION_FACT: _exception_text(rule),
        "Status": one_line(view.status) or MISSING,
        "On hold": MISSING if view.hold is None else ("yes" if view.hold else "no"),
        view.party_label: one_line(view.party) or MISSING,
        "Amount": format_money(view.amount, view.currency),
        "Balance": format_money(view.balance, view.currency),
    }
    if view.lines_and_tax is not None:
        facts["Lines and tax"] = format_money(view.lines_and_tax, view.currency)
        if view.unbalanced:
            facts["Out of balance by"] = format_money(view.amount - view.lines_and_tax, view.currency)
    facts |= {"Date": _day(view.document_date), "Due date": _day(view.due_date),
              "Description": one_line(view.description) or MISSING,
              AUDIT_FACTS[0]: view.ref.external_id, AUDIT_FACTS[1]: utc_text(view.last_modified)}  # fmt: skip
    return facts


def render_issue(view: DocumentView, rule: AcumaticaExceptionRule | None, settings: AcumaticaJiraFlow,
                 *, project_key: str | None = None, issue_type: str | None = None) -> RenderedIssue:
    """The Jira issue of one document in exception ``rule`` (None: it left the exception; the issue
    stays where it was created, so ``project_key``/``issue_type`` of the existing issue may be given)."""
    facts = _facts(view, rule)
    entity_label = view.ref.entity.value.lower()
    labels = ["acumatica", f"acumatica-{entity_label}"] + ([f"acumatica-{rule.name.replace('_', '-')}"] if rule else [])
    headline = f"needs attention: {_exception_text(rule)}" if rule else "no longer needs attention"
    description = adf.doc(
        adf.heading(2, f"{view.title} {view.ref.keys[1]} from {one_line(view.party)} {headline}"),
        adf.table(["Field", "Value"], [[name, value] for name, value in facts.items()]),
        adf.paragraph(adf.strong("When this issue is resolved: "), _on_resolution(view, rule)),
        adf.rule(),
        adf.paragraph(
            adf.em("Synced from Acumatica by ml-connector; Acumatica is the system of record. Document "),
            adf.code(view.ref.external_id), adf.em(", last modified "), adf.code(utc_text(view.last_modified)),
            adf.em("."),
        ),
    )  # fmt: skip
    return RenderedIssue(
        external_id=view.ref.external_id,
        project_key=project_key or (rule.project_key if rule and rule.project_key else settings.project_key),
        issue_type=issue_type or (rule.issue_type if rule else "Task"),
        exception=rule.name if rule else None,
        summary=_summary(view),
        description=description,
        amount=float(view.amount) if view.amount.is_finite() else 0.0,
        currency=one_line(view.currency),
        party=one_line(view.party),
        labels=tuple(labels),
        last_modified=view.last_modified,
        facts=facts,
    )


# -- what changed ----------------------------------------------------------------------------------


def describe_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[tuple[str, str | None, str | None]]:
    """``(fact, old, new)`` of every fact whose value differs, in the order the issue shows them."""
    return [(name, old.get(name), new.get(name)) for name in dict.fromkeys([*new, *old])
            if name not in AUDIT_FACTS and old.get(name) != new.get(name)]  # fmt: skip


def change_comment(issue: RenderedIssue, changes: Sequence[tuple[str, str | None, str | None]],
                   *, closing: bool) -> tuple[dict[str, Any], str]:
    """The comment an update adds, and its marker: what changed, old to new; with ``closing``, that
    the document left its exception (said once: the marker names the version)."""
    marker = f"Acumatica {issue.external_id}, version {issue.source_version}"
    lead = (adf.paragraph(adf.strong("No longer needs attention in Acumatica"), f" as of {issue.source_version}: "
                          f"status {issue.facts.get('Status', MISSING)}.")
            if closing else adf.paragraph(adf.strong("Updated in Acumatica"), f" at {issue.source_version}"))  # fmt: skip
    items = [[adf.strong(name), f": {old or MISSING} {ARROW} {new or MISSING}"] for name, old, new in changes]
    return adf.doc(lead, adf.bullet_list(*items), adf.paragraph(adf.em(marker))), marker
