"""A Visma.net user doing a day's work at random: new invoices and POs, edits, status changes, payments."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from ml_connector_dagster.sandbox.visma import VismaSimulator

__all__ = ["INVOICE_STATUSES", "PO_STATUSES", "VismaClerk"]

INVOICE_STATUSES = ("Open", "Balanced", "Hold", "Closed", "Prebooked", "Scheduled", "Voided")
PO_STATUSES = ("Open", "Balanced", "Hold", "Closed", "PendingPrint", "Printed", "Cancelled")
_WORDS = ("Pallet wrap", "Forklift service", "Hydraulic oil", "Safety gloves", "Welding wire", "Conveyor belt",
          "Compressor filter", "Office chairs", "Freight Oslo-Bergen", "Consulting hours")  # fmt: skip


@dataclass(frozen=True)
class _Document:
    """What a clerk needs to know of one kind of Visma document to create, edit and move it."""

    label: str
    collection: str
    key: str
    amount_field: str
    due_field: str
    statuses: tuple[str, ...]
    create: str  # the simulator's user-facing helpers
    update: str


INVOICE = _Document("invoice", "supplier_invoices", "referenceNumber", "amount", "dueDate", INVOICE_STATUSES,
                    "create_supplier_invoice", "update_supplier_invoice")  # fmt: skip
PURCHASE_ORDER = _Document("PO", "purchase_orders", "orderNbr", "orderTotal", "promisedOn", PO_STATUSES,
                           "create_purchase_order", "update_purchase_order")  # fmt: skip


class VismaClerk:
    """Acts on a :class:`VismaSimulator` through its user-facing helpers (each sends its webhook)."""

    def __init__(self, visma: VismaSimulator, *, payments: bool = True) -> None:
        self.visma = visma
        self.payments = payments
        self.invalid = {number for _, number, _ in visma.invalid_records()}

    def _numbers(self, document: _Document) -> list[str]:
        key = document.key
        return [r[key] for r in self.visma.collections()[document.collection] if r[key] not in self.invalid]

    def act(self, rng: random.Random, actions: int) -> list[str]:
        """Do ``actions`` things a Visma user does; what was done, for the schedule's log."""
        done = []
        choices: list[tuple[Callable[[random.Random], str | None], int]] = [
            (partial(self.create, INVOICE), 3), (partial(self.create, PURCHASE_ORDER), 2),
            (partial(self.edit, INVOICE), 3), (partial(self.edit, PURCHASE_ORDER), 2),
            (partial(self.change_status, INVOICE), 2), (partial(self.change_status, PURCHASE_ORDER), 1),
        ]  # fmt: skip
        if self.payments:
            choices.append((self.pay_invoice, 2))
        for _ in range(actions):
            action = rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]
            outcome = action(rng)
            if outcome:
                done.append(outcome)
        return done

    def _supplier(self, rng: random.Random) -> str:
        suppliers = [
            s["number"] for s in self.visma.collections()["suppliers"] if s.get("status") == "Active"
        ]
        return rng.choice(suppliers)

    def _due(self, rng: random.Random) -> str:
        day = self.visma.now().date() + timedelta(days=rng.randint(5, 60))
        return datetime(day.year, day.month, day.day).isoformat()

    def create(self, document: _Document, rng: random.Random) -> str:
        """A new open document of a supplier in good standing."""
        supplier, description, amount = self._supplier(rng), rng.choice(_WORDS), _money(rng)
        record = getattr(self.visma, document.create)(
            supplier_number=supplier, description=description, status="Open",
            **{document.amount_field: amount, document.due_field: self._due(rng)},
        )  # fmt: skip
        return f"created {document.label} {record[document.key]}"

    def edit(self, document: _Document, rng: random.Random) -> str | None:
        """A new description, amount or due date (at least one) on a document."""
        numbers = self._numbers(document)
        if not numbers:
            return None
        number = rng.choice(numbers)
        changes = _edit(
            rng, amount_field=document.amount_field, due_field=document.due_field, due=self._due(rng)
        )
        getattr(self.visma, document.update)(number, **changes)
        return f"edited {document.label} {number} {sorted(changes)}"

    def change_status(self, document: _Document, rng: random.Random) -> str | None:
        """A document moved to any status of its kind."""
        numbers = self._numbers(document)
        if not numbers:
            return None
        number, status = rng.choice(numbers), rng.choice(document.statuses)
        getattr(self.visma, document.update)(number, status=status)
        return f"{document.label} {number} -> {status}"

    def pay_invoice(self, rng: random.Random) -> str | None:
        open_invoices = [r for r in self.visma.collections()["supplier_invoices"]
                         if r.get("status") == "Open" and r["referenceNumber"] not in self.invalid
                         and float(r.get("balance", r.get("amount", 0)) or 0) > 0]  # fmt: skip
        if not open_invoices:
            return None
        invoice = rng.choice(open_invoices)
        balance = float(invoice.get("balance", invoice["amount"]))
        amount = None if rng.random() < 0.5 else round(balance * rng.uniform(0.2, 0.8), 2)
        if amount is not None and amount <= 0:
            amount = None
        payment = self.visma.pay_supplier_invoices({invoice["referenceNumber"]: amount})
        return f"paid invoice {invoice['referenceNumber']} by {payment.get('refNbr', '?')}"


def _money(rng: random.Random) -> float:
    return round(rng.uniform(500, 250_000), 2)


def _edit(rng: random.Random, *, amount_field: str, due_field: str, due: str) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    while not changes:
        if rng.random() < 0.5:
            changes["description"] = rng.choice(_WORDS) + f" #{rng.randint(1, 999)}"
        if rng.random() < 0.4:
            changes[amount_field] = _money(rng)
        if rng.random() < 0.3:
            changes[due_field] = due
    return changes
