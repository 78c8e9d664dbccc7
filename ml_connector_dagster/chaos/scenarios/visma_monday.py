"""visma_monday under chaos: Visma users and the warehouse work; monday holds one item per document, and each
receipt is written once into its Visma document's note.

Expected, per docs/flows/visma_monday.md, on the demo boards as connector.sandbox.yaml maps them: one item
per supplier invoice (Invoice board: Total = amount, Due date, Currency, Visma ID = referenceNumber), per
purchase order (PO board: Amount = orderTotal, Promised date, Visma ID = orderNbr) and per customer invoice
(AR board: Amount, Visma ID); items entered by hand before the integration are adopted, never duplicated.
Every item the warehouse set to "Received" whose Visma document exists has its receipt line, with its
``[monday.com item <id>]`` marker, exactly once in that document's note.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ml_connector_dagster.config import ConnectorConfig
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.visma_monday_receipts import RECEIPTS_ASSET
from ml_connector_dagster.sandbox.framework import Simulator
from ml_connector_dagster.sandbox.monday import AR_BOARD, INVOICE_BOARD, PO_BOARD, MondaySimulator

from ..daemon import Daemon
from ..plan import FaultKind
from ..scenario import HTTP_FAULTS, UNLIMITED, WEBHOOK_FAULTS, Scenario, visma_system
from ..verdict import Verdict, compare, day
from ..visma_clerk import VismaClerk

__all__ = ["VismaMondayScenario"]

VISMA_FAULTS = (*HTTP_FAULTS, *WEBHOOK_FAULTS, FaultKind.ETAG_RACE)
MONDAY_FAULTS = (FaultKind.RATE_LIMIT, FaultKind.SERVER_ERROR, FaultKind.TIMEOUT_BEFORE, FaultKind.TIMEOUT_AFTER,
                 FaultKind.RESET, *WEBHOOK_FAULTS)  # fmt: skip
RECEIVED = "Received"


def board_items(monday: MondaySimulator, board: int) -> dict[str, list[dict[str, Any]]]:
    """The board's items by their "Visma ID" text, each as {column title: text} (plus ``item`` and ``status``)."""
    titles = {column.id: column.title for column in monday.tenant.boards[board].columns}
    found: dict[str, list[dict[str, Any]]] = {}
    for item in monday.items_on(board):
        values = {titles.get(value["id"], value["id"]): value.get("text") for value in item["column_values"]}
        visma_id = values.get("Visma ID")
        if visma_id:
            found.setdefault(visma_id, []).append({**values, "item": item["id"]})
    return found


def _number(text: Any) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


class VismaMondayScenario(Scenario):
    flow: ClassVar[str] = "visma_monday"
    group: ClassVar[str] = "visma_monday"
    fault_kinds: ClassVar[Mapping[str, tuple[FaultKind, ...]]] = {
        "visma": VISMA_FAULTS,
        "monday": MONDAY_FAULTS,
    }
    extra_sensors: ClassVar[tuple[str, ...]] = ("inbox_sensor", "visma_monday_receipts")
    replay_jobs: ClassVar[tuple[str, ...]] = ("visma_monday_replay",)
    replay_assets: ClassVar[tuple[str, ...]] = (
        "monday/visma_invoice_items",
        "monday/visma_purchase_order_items",
        "monday/visma_customer_invoice_items",
        RECEIPTS_ASSET,
    )
    destinations: ClassVar[tuple[str, ...]] = ("monday",)
    webhook_source: ClassVar[str] = "visma"

    def build(
        self,
        webhook_base: str,
        webhook_transport: httpx.BaseTransport | None,
        *,
        webhook_time_scale: float = 0.001,
    ) -> dict[str, Simulator]:
        seed = self.schedule.seed % 1000
        self.visma = self.visma_simulator(webhook_base, webhook_transport, webhook_time_scale)
        # The per-minute budgets are not what is under test (the injected 429s are): the harness shortens
        # every wait, and monday's minute would never pass.
        self.monday = MondaySimulator(
            seed=seed,
            time_scale=webhook_time_scale,
            webhook_transport=webhook_transport,
            complexity_per_minute=2_000_000_000,
            requests_per_minute=1_000_000,
        )
        self.clerk = VismaClerk(self.visma, payments=False)
        self.hand_made = {board: {item["id"] for item in self.monday.items_on(board)}
                          for board in (INVOICE_BOARD, PO_BOARD, AR_BOARD)}  # fmt: skip
        self.webhook_base = webhook_base
        self.simulators = {"visma": self.visma, "monday": self.monday}
        return self.simulators

    def connector_config(self, urls: Mapping[str, str], receiver_url: str) -> dict[str, Any]:
        # The harness ticks its sensors at its own pace: the receipt poll of the boards runs at every tick.
        shipped = self.shipped_flow(consistency_window_s=0.8, receipt_overlap_s=5, receipt_poll_s=0,
                                    webhook_url=f"{receiver_url}/webhooks/monday")  # fmt: skip
        for entity in ("gl_accounts", "dimensions"):
            shipped["boards"].pop(entity, None)  # reference boards: a daily schedule, no part of this storm
        monday = {"mode": "sandbox", "base_url": urls["monday"], **UNLIMITED}
        return self.config_with({"visma": visma_system(urls), "monday": monday}, shipped)

    def prepare(self, daemon: Daemon) -> None:
        """The operator runs ``visma_monday_webhooks`` once, as the sandbox config says."""
        daemon.launch_job("visma_monday_webhooks")

    def act(self, rng: random.Random, round_number: int) -> None:
        for done in self.clerk.act(rng, rng.randint(2, 5)):
            self.note(done)
        if round_number == 0:
            return
        for board in (INVOICE_BOARD, PO_BOARD):
            candidates = [entry["item"] for entries in board_items(self.monday, board).values() for entry in entries
                          if entry.get("Status") != RECEIVED]  # fmt: skip
            for item in rng.sample(candidates, k=min(len(candidates), rng.randint(0, 2))):
                self.monday.mark_received(item)
                self.note(f"warehouse received item {item}")

    def recover(self, config: ConnectorConfig, ledger: Ledger, client: httpx.Client) -> None:
        """Nothing beyond re-runs: monday's token and Visma's client credentials cannot be revoked here."""

    # -- the verdict -------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        state = self.visma.collections()
        invalid = self.clerk.invalid
        invoices = {
            r["referenceNumber"]: r for r in state["supplier_invoices"] if r["referenceNumber"] not in invalid
        }
        orders = {r["orderNbr"]: r for r in state["purchase_orders"]}
        receivables = {r["referenceNumber"]: r for r in state["customer_invoices"]}
        expected_invoices = {number: {"Total": r.get("amount"), "Due date": day(r.get("dueDate")),
                                      "Currency": r.get("currencyId")} for number, r in invoices.items()}  # fmt: skip
        expected_orders = {number: {"Amount": r.get("orderTotal"), "Promised date": day(r.get("promisedOn")),
                                    "Currency": r.get("currency")} for number, r in orders.items()}  # fmt: skip
        expected_receivables = {number: {"Amount": r.get("amount")} for number, r in receivables.items()}
        verdict = Verdict()
        receipts: dict[str, dict[str, Any]] = {}
        for what, board, expected, records in (
            ("invoice item", INVOICE_BOARD, expected_invoices, invoices),
            ("PO item", PO_BOARD, expected_orders, orders),
            ("AR item", AR_BOARD, expected_receivables, receivables),
        ):
            actual = board_items(self.monday, board)
            for entries in actual.values():
                for entry in entries:
                    for title in ("Total", "Amount"):
                        if title in entry:
                            entry[title] = _number(entry[title])
            # A hand-made item whose Visma id is no document of this company is the customer's own business.
            foreign = {vid for vid, entries in actual.items()
                       if vid not in expected and all(e["item"] in self.hand_made[board] for e in entries)}  # fmt: skip
            verdict.extend(compare(what, expected, {k: v for k, v in actual.items() if k not in foreign}))
            if board == AR_BOARD:
                continue
            for visma_id, entries in actual.items():
                for entry in entries:
                    if entry.get("Status") == RECEIVED and visma_id in records:
                        receipts[f"[monday.com item {entry['item']}]"] = {"document": visma_id}
        notes: dict[str, list[dict[str, Any]]] = {}
        for number, record in [*invoices.items(), *orders.items()]:
            text = record.get("note") or ""
            for marker in receipts:
                notes.setdefault(marker, []).extend({"document": number} for _ in range(text.count(marker)))
        verdict.extend(compare("receipt", receipts, {m: found for m, found in notes.items() if found}))
        return verdict
