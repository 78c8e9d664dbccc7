"""jaggaer_visma under chaos: procurement works in JAGGAER, AP in Visma; every accepted document is in Visma once
(or quarantined with its reason), and JAGGAER hears of each receipt and payment once.

Expected, per docs/flows/jaggaer_visma.md with connector.sandbox.yaml's settings:

- a JAGGAER PO / invoice in an accepted status is either one Visma PO / supplier invoice carrying its marker
  (``JAGGAER PO <id>:`` / ``JAGGAER invoice <id>:`` in the description), or an open dead letter of the flow
  naming it (an unmatched vendor, an unmapped GL account ...): nothing is dropped silently, nothing is
  there twice; a document Visma still lets change shows the JAGGAER reference, currency, dates and lines;
- a synced invoice that AP released (Open) has told JAGGAER "processing", one paid in full (Closed,
  balance 0) "paid": one cXML StatusUpdateRequest each, never two.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, ConnectorConfig, load_config
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.jaggaer_visma_cxml import ASSET as CONFIRMATIONS_ASSET
from ml_connector_dagster.sandbox.framework import Simulator
from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator

from ..daemon import Daemon
from ..plan import FaultKind
from ..scenario import HTTP_FAULTS, SOURCE_STEPS, UNLIMITED, WEBHOOK_FAULTS, Scenario, visma_system
from ..verdict import Verdict, compare, day

__all__ = ["JaggaerVismaScenario"]

VISMA_FAULTS = (*HTTP_FAULTS, *WEBHOOK_FAULTS, FaultKind.ETAG_RACE)
JAGGAER_FAULTS = HTTP_FAULTS
PO_ASSET, INVOICE_ASSET = "visma/jaggaer_purchase_orders", "visma/jaggaer_supplier_invoices"
_PO_MARKER = re.compile(r"JAGGAER PO (\d+):")
_INVOICE_MARKER = re.compile(r"JAGGAER invoice (\d+):")
_CXML_STATUS = re.compile(r"is now (\w+)")
PO_EDITABLE = {"Hold", "Balanced", "Open", "PendingPrint", "Printed", "PendingEmail"}
INVOICE_EDITABLE = {"Hold", "Balanced", "Prebooked", "Scheduled"}


class JaggaerVismaScenario(Scenario):
    flow: ClassVar[str] = "jaggaer_visma"
    group: ClassVar[str] = "jaggaer_visma"
    fault_kinds: ClassVar[Mapping[str, tuple[FaultKind, ...]]] = {
        "visma": VISMA_FAULTS,
        "jaggaer": JAGGAER_FAULTS,
    }
    extra_sensors: ClassVar[tuple[str, ...]] = ("inbox_sensor",)
    replay_jobs: ClassVar[tuple[str, ...]] = ("jaggaer_visma_replay",)
    replay_assets: ClassVar[tuple[str, ...]] = (PO_ASSET, INVOICE_ASSET, CONFIRMATIONS_ASSET)
    destinations: ClassVar[tuple[str, ...]] = ("visma",)
    webhook_source: ClassVar[str] = "visma"

    def build(
        self,
        webhook_base: str,
        webhook_transport: httpx.BaseTransport | None,
        *,
        webhook_time_scale: float = 0.001,
    ) -> dict[str, Simulator]:
        seed = self.schedule.seed % 1000
        self.jaggaer = JaggaerSimulator(seed=seed, size=6, days=0.25, rate_limit_per_minute=100_000)
        self.visma = self.visma_simulator(webhook_base, webhook_transport, webhook_time_scale)
        self.simulators = {"jaggaer": self.jaggaer, "visma": self.visma}
        return self.simulators

    def connector_config(self, urls: Mapping[str, str], receiver_url: str) -> dict[str, Any]:
        token_url = str(load_config(SANDBOX_CONFIG_PATH).systems.jaggaer.token_url)
        token_path = token_url.split("8802", 1)[1]
        jaggaer = {"mode": "sandbox", "base_url": urls["jaggaer"], "token_url": f"{urls['jaggaer']}{token_path}",
                   "cxml_url": f"{urls['jaggaer']}/cxml", "page_size": 50, **UNLIMITED, **SOURCE_STEPS}  # fmt: skip
        return self.config_with({"visma": visma_system(urls), "jaggaer": jaggaer}, self.shipped_flow())

    def prepare(self, daemon: Daemon) -> None:
        """Reference data first, as ``ml-connector sync`` does: vendors, suppliers, accounts, dimensions."""
        daemon.materialize_reference()

    # -- the users ---------------------------------------------------------------------------------
    def act(self, rng: random.Random, round_number: int) -> None:
        for _ in range(rng.randint(1, 3)):
            self._procure(rng)
        if round_number > 0:
            self._accounts_payable(rng)

    def _procure(self, rng: random.Random) -> None:
        sim = self.jaggaer
        state = sim.collections()
        choice = rng.choice(
            ["po_status", "po_line", "invoice_status", "invoice_line", "new_po", "new_invoice"]
        )
        if choice == "po_status" and state["purchase_orders"]:
            po = rng.choice(state["purchase_orders"])
            status = rng.choice(["APPROVED", "DISTRIBUTED", "PARTIALLY_RECEIVED", "RECEIVED"])
            sim.update("purchase_orders", po["purchaseOrderId"], status=status)
            self.note(f"jaggaer: PO {po['purchaseOrderId']} -> {status}")
        elif choice == "invoice_status" and state["invoices"]:
            invoice = rng.choice(state["invoices"])
            status = rng.choice(["APPROVED", "PAYABLE"])
            sim.update("invoices", invoice["invoiceId"], status=status)
            self.note(f"jaggaer: invoice {invoice['invoiceId']} -> {status}")
        elif choice in ("po_line", "invoice_line"):
            collection, key = (
                ("purchase_orders", "purchaseOrderId") if choice == "po_line" else ("invoices", "invoiceId")
            )
            if not state[collection]:
                return
            record = rng.choice(state[collection])
            lines = copy.deepcopy(record.get("lines") or [])
            if not lines:
                return
            line = rng.choice(lines)
            line["quantity"] = float(rng.randint(1, 120))
            line["lineTotal"] = round(line["quantity"] * float(line.get("unitPrice") or 0), 2)
            sim.update(collection, record[key], lines=lines)
            self.note(
                f"jaggaer: {collection} {record[key]} line {line.get('lineNumber')} quantity {line['quantity']}"
            )
        elif choice in ("new_po", "new_invoice"):
            collection = "purchase_orders" if choice == "new_po" else "invoices"
            malformed = {record_id for _, record_id, _ in sim.invalid_records()}
            key = "purchaseOrderId" if collection == "purchase_orders" else "invoiceId"
            templates = [r for r in state[collection] if str(r.get(key)) not in malformed]
            if not templates:
                return
            template = copy.deepcopy(rng.choice(templates))
            for name in ("purchaseOrderId", "invoiceId", "createdDate", "lastModifiedDate"):
                template.pop(name, None)
            if collection == "purchase_orders":
                template.update(poNumber=f"PO-CHAOS-{rng.randint(100000, 999999)}", status="APPROVED")
            else:
                template.update(
                    invoiceNumber=str(rng.randint(10_000_000, 99_999_999)),
                    status="APPROVED",
                    paymentStatus="UNPAID",
                    erpStatus=None,
                )
            with sim.lock:
                record = sim.add_record(collection, template)
            self.note(f"jaggaer: new {collection} {record.get('purchaseOrderId') or record.get('invoiceId')}")

    def _accounts_payable(self, rng: random.Random) -> None:
        """AP releases synced invoices (Open) and pays released ones in full (Closed, balance 0)."""
        synced = [
            r
            for r in self.visma.collections()["supplier_invoices"]
            if _INVOICE_MARKER.search(r.get("description") or "")
        ]
        for record in rng.sample(synced, k=min(len(synced), rng.randint(0, 2))):
            number = record["referenceNumber"]
            if record.get("status") in ("Balanced", "Hold"):
                self.visma.update_supplier_invoice(number, status="Open")
                self.note(f"visma: released invoice {number}")
            elif record.get("status") == "Open" and float(record.get("balance", 0) or 0) > 0:
                self.visma.pay_supplier_invoices({number: None})
                self.note(f"visma: paid invoice {number}")

    def recover(self, config: ConnectorConfig, ledger: Ledger, client: httpx.Client) -> None:
        """Nothing beyond re-runs: client credentials cannot be revoked here."""

    # -- the verdict -------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        from ml_connector_dagster.core.ledger import Ledger as _Ledger

        flow = load_config(SANDBOX_CONFIG_PATH).flows.jaggaer_visma
        assert flow is not None
        jaggaer = self.jaggaer.collections()
        visma = self.visma.collections()
        invalid = {record_id for _, record_id, _ in self.jaggaer.invalid_records()}
        with _Ledger.open() as ledger:
            # Quarantined by the flow (vendor, GL ...) or already by its source asset (a malformed record).
            quarantined = {letter.source_id for asset in (PO_ASSET, INVOICE_ASSET, "jaggaer/purchase_orders",
                                                          "jaggaer/invoices")
                           for letter in ledger.open_dead_letters(asset)}  # fmt: skip
        verdict = Verdict()
        for what, documents, key, statuses, visma_records, marker, check in (
            (
                "Visma PO",
                jaggaer["purchase_orders"],
                "purchaseOrderId",
                flow.purchase_order_statuses,
                visma["purchase_orders"],
                _PO_MARKER,
                self._po_fields,
            ),
            (
                "Visma supplier invoice",
                jaggaer["invoices"],
                "invoiceId",
                flow.invoice_statuses,
                visma["supplier_invoices"],
                _INVOICE_MARKER,
                self._invoice_fields,
            ),
        ):
            found: dict[str, list[dict[str, Any]]] = {}
            for record in visma_records:
                for jaggaer_id in marker.findall(record.get("description") or ""):
                    found.setdefault(jaggaer_id, []).append(record)
            for document in documents:
                jaggaer_id = str(document[key])
                copies = found.get(jaggaer_id, [])
                verdict.checked += 1
                if len(copies) > 1:
                    verdict.duplicates += [f"{what} of JAGGAER {jaggaer_id}: {len(copies)} copies"] * (
                        len(copies) - 1
                    )
                accepted = document.get("status") in statuses and jaggaer_id not in invalid
                if not copies:
                    if accepted and jaggaer_id not in quarantined:
                        verdict.lost.append(
                            f"{what} of JAGGAER {jaggaer_id}: neither in Visma nor quarantined"
                        )
                    continue
                for problem in check(document, copies[0]):
                    verdict.mismatched.append(f"{what} of JAGGAER {jaggaer_id}: {problem}")
        verdict.extend(self._confirmations(jaggaer, visma))
        return verdict

    @staticmethod
    def _po_fields(document: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
        if record.get("status") not in PO_EDITABLE:
            return []
        return _differences(
            {"supplierRef": document.get("poNumber"), "currency": document.get("currency"),
             "date": day(document.get("orderDate")), "lines": _lines(document, "lines", "lineNumber", "quantity")},
            {"supplierRef": record.get("supplierRef"), "currency": record.get("currency"),
             "date": day(record.get("date")), "lines": _lines(record, "lines", "lineNbr", "orderQty")},
        )  # fmt: skip

    @staticmethod
    def _invoice_fields(document: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
        if record.get("status") not in INVOICE_EDITABLE:
            return []
        return _differences(
            {"supplierReference": document.get("invoiceNumber"), "currencyId": document.get("currency"),
             "dueDate": day(document.get("dueDate")), "lines": _lines(document, "lines", "lineNumber", "quantity")},
            {"supplierReference": record.get("supplierReference"), "currencyId": record.get("currencyId"),
             "dueDate": day(record.get("dueDate")), "lines": _lines(record, "invoiceLines", "lineNumber", "quantity")},
        )  # fmt: skip

    def _confirmations(self, jaggaer: Mapping[str, Any], visma: Mapping[str, Any]) -> Verdict:
        """Each synced invoice's receipt ("processing") once AP released it, its payment ("paid") once paid."""
        sent: dict[str, list[dict[str, Any]]] = {}
        for document in jaggaer["cxml_documents"]:
            if document.get("request") != "StatusUpdateRequest":
                continue
            status = _CXML_STATUS.search(document["status"].get("message") or "")
            if status and document.get("reference"):
                sent.setdefault(f"{document['reference']}/{status.group(1)}", []).append({})
        expected: dict[str, dict[str, Any]] = {}
        for record in visma["supplier_invoices"]:
            ids = _INVOICE_MARKER.findall(record.get("description") or "")
            if not ids:
                continue
            if record.get("status") in ("Open", "Closed"):
                expected[f"{ids[0]}/processing"] = {}
            if record.get("status") == "Closed" and not float(record.get("balance", 0) or 0):
                expected[f"{ids[0]}/paid"] = {}
        return compare("cXML status update", expected, sent, unexpected_is_mismatch=False)


def _lines(document: Mapping[str, Any], field: str, number: str, quantity: str) -> list[tuple[Any, float]]:
    """A document's lines as (line number, quantity), in order."""
    return sorted((line.get(number), float(line.get(quantity) or 0)) for line in document.get(field) or [])


def _differences(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    return [
        f"{name} {actual[name]!r} != {value!r}" for name, value in expected.items() if actual[name] != value
    ]
