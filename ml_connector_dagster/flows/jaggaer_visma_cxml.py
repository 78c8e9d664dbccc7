"""Invoice status back to JAGGAER over cXML: received (``processing``) once it is in Visma AP, ``paid``
once Visma has closed it with nothing left to pay. Exactly once per (invoice, status).

The Visma invoices come as landed by ``visma/supplier_invoices`` (polling is the guarantee); the
ones this flow created are found through the ledger's links. Each confirmation is a ledger link
of its own (``<JAGGAER invoice id>/<status>``), written when JAGGAER answered 2xx. Its payloadID is
derived from that key, so a resend after a lost answer or a crash carries the same payloadID and
JAGGAER answers it as the document it already has, changing nothing. A 5xx is retried by the cXML
client; a 4xx (and a document that fails its DTD) is final: a dead letter, replayable once fixed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, Field

from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.systems.jaggaer.client import SYSTEM as JAGGAER
from ml_connector_dagster.systems.jaggaer.client import CxmlClient, JaggaerEntity
from ml_connector_dagster.systems.jaggaer.cxml import (
    CxmlDocumentInvalid,
    CxmlEnvelope,
    CxmlError,
    CxmlStatus,
    InvoiceStatusUpdate,
    build_status_update,
)

from .jaggaer_visma_plan import INVOICES

__all__ = ["ASSET", "FLOW", "ConfirmOutcome", "Confirmer", "confirm_invoices", "due_statuses", "payload_id_for"]

ASSET = "jaggaer/visma_invoice_confirmations"
FLOW = "jaggaer_visma.confirmations"
PAYLOAD_HOST = "ml-connector.jaggaer-visma"


def due_statuses(visma_invoice: Mapping[str, Any]) -> list[str]:
    """The cXML invoice statuses a Visma invoice calls for, in the order they happened."""
    statuses = ["processing"]
    try:
        balance = Decimal(str(visma_invoice.get("balance", 0) or 0))
    except InvalidOperation:
        balance = Decimal(1)
    if visma_invoice.get("status") == "Closed" and balance == 0:
        statuses.append("paid")
    return statuses


def payload_id_for(key: str, visma_number: str) -> str:
    """The payloadID of one confirmation: the same for every attempt, unique per confirmation."""
    digest = hashlib.sha256(f"jaggaer_visma/{key}/{visma_number}".encode()).hexdigest()[:16]
    return f"{key.replace('/', '.')}.{digest}@{PAYLOAD_HOST}"


@dataclass(frozen=True)
class Confirmer:
    """Builds a confirmation under a fixed payloadID and sends it through the cXML client."""

    client: CxmlClient
    envelope: CxmlEnvelope
    shared_secret: str = field(repr=False)

    def confirm(self, update: InvoiceStatusUpdate, payload_id: str) -> CxmlStatus:
        document = build_status_update(self.envelope, self.shared_secret, update, payload_id=payload_id)
        return self.client.send(document)


class ConfirmOutcome(BaseModel):
    """What one confirmation pass did."""

    sent: int = 0
    already: int = 0
    failed: int = 0
    not_ours: int = Field(0, description="Visma invoices this flow did not create.")
    succeeded: list[str] = Field(default_factory=list)


def _invoice_date(jaggaer_copy: Mapping[str, Any] | None) -> datetime | None:
    raw = (jaggaer_copy or {}).get("invoiceDate")
    try:
        return datetime.combine(date.fromisoformat(str(raw)[:10]), time(), UTC) if raw else None
    except ValueError:
        return None


def confirm_invoices(visma_invoices: Iterable[Mapping[str, Any]], *, ledger: Ledger, confirmer: Confirmer,
                     run_id: str | None, partition_key: str | None, log: logging.Logger | Any) -> ConfirmOutcome:
    """Send every confirmation due for these Visma invoices (``SupplierInvoiceDto``) that is not sent yet."""
    outcome = ConfirmOutcome()
    by_number = {str(raw.get("referenceNumber")): raw for raw in visma_invoices if raw.get("referenceNumber")}
    links = ledger.links_by_dest(INVOICES.flow, by_number)
    outcome.not_ours = len(by_number) - len(links)
    jaggaer_ids = [link.source_id for link in links.values()]
    copies = LandingStore(ledger).get_many(JAGGAER, JaggaerEntity.INVOICES.value, jaggaer_ids)
    keys = {number: [f"{link.source_id}/{status}" for status in due_statuses(by_number[number])]
            for number, link in links.items()}
    done = ledger.links_for(FLOW, [key for wanted in keys.values() for key in wanted])
    try:
        for number, link in links.items():
            copy = copies.get(link.source_id)
            for key in keys[number]:
                if key in done and done[key].state == "linked":
                    outcome.already += 1
                    outcome.succeeded.append(key)
                    continue
                status = key.rsplit("/", 1)[1]
                update = InvoiceStatusUpdate(
                    invoice_id=link.dest_key or (copy.payload.get("invoiceNumber") if copy else link.source_id),
                    status=status, invoice_date=_invoice_date(copy.payload if copy else None),  # type: ignore[arg-type]
                    comments=f"Visma.net AP document {number}")
                payload_id = payload_id_for(key, number)
                try:
                    answer = confirmer.confirm(update, payload_id)
                except (CxmlError, ValueError) as exc:
                    reason = ("the cXML document does not validate: " if isinstance(exc, CxmlDocumentInvalid)
                              else f"JAGGAER did not take the {status} confirmation: ")
                    ledger.add_dead_letter(ASSET, key, dict(by_number[number]), reason + str(exc),
                                           partition_key=partition_key, run_id=run_id)
                    outcome.failed += 1
                    log.warning(f"{ASSET}: {key} failed: {exc}")
                    break  # a later status waits for this one
                ledger.record_links([Link(flow=FLOW, source_id=key, source_version=number, dest_system=JAGGAER,
                                          dest_id=payload_id, dest_key=update.invoice_id,
                                          content_hash=f"{status}:{answer.code}", run_id=run_id)])
                outcome.sent += 1
                outcome.succeeded.append(key)
    finally:
        ledger.resolve_dead_letters_for(ASSET, outcome.succeeded)
    return outcome
