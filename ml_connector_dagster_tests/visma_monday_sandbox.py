"""What the Visma -> monday tests share: the demo boards' configuration, landed Visma records, and an
in-process desk (both simulators, a ledger, clients) to plan, push and receive on."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from graphql import parse, validate

from ml_connector_dagster.config import MondayBoardMapping, VismaMondayFlow
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.visma_monday import kind_of, plan_kind
from ml_connector_dagster.flows.visma_monday_plan import ItemPlan
from ml_connector_dagster.flows.visma_monday_push import PushOutcome, push_plan
from ml_connector_dagster.flows.visma_monday_receipts import ReceiptOutcome, apply_receipts, receipt_boards
from ml_connector_dagster.sandbox.demo_data import CUSTOMER_INVOICES, PURCHASE_ORDERS, SUPPLIER_INVOICES
from ml_connector_dagster.sandbox.monday import (
    AR_BOARD,
    DIMENSIONS_BOARD,
    GL_BOARD,
    INVOICE_BOARD,
    PO_BOARD,
    MondaySimulator,
)
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.monday.client import MondayClient
from ml_connector_dagster.systems.visma.client import VismaClient
from ml_connector_dagster_tests.contracts.test_monday_contract import monday_spec
from ml_connector_dagster_tests.monday_sandbox import graphql_body, monday_client
from ml_connector_dagster_tests.visma_sandbox import in_process_client

PARTITION = "2026-11-20"
AS_OF = date(2026, 11, 22)
LOG = logging.getLogger("test.visma_monday")
COLLECTIONS = {"supplier_invoices": SUPPLIER_INVOICES, "purchase_orders": PURCHASE_ORDERS,
               "customer_invoices": CUSTOMER_INVOICES}  # fmt: skip
ENTITY_OF = {"supplier_invoices": "supplierInvoice", "purchase_orders": "purchaseorder",
             "customer_invoices": "customerinvoice"}  # fmt: skip


def demo_boards(**overrides: MondayBoardMapping) -> dict[str, MondayBoardMapping]:
    """The demo account's boards as connector.sandbox.yaml maps them."""
    return {
        "supplier_invoices": MondayBoardMapping(board_id=str(INVOICE_BOARD), received_column="Status"),
        "purchase_orders": MondayBoardMapping(board_id=str(PO_BOARD), mode="position", received_column="Status"),
        "customer_invoices": MondayBoardMapping(board_id=str(AR_BOARD)),
        "gl_accounts": MondayBoardMapping(board_id=str(GL_BOARD)),
        "dimensions": MondayBoardMapping(board_id=str(DIMENSIONS_BOARD), mode="table", table={
            "Dimension": "Dimension", "Code": "Code", "Description": "Description", "VismaId": "Visma ID"}),
        **overrides,
    }  # fmt: skip


def flow_settings(**overrides: Any) -> VismaMondayFlow:
    """The flow as the tests configure it: the demo boards, quick retries, no consistency wait."""
    return VismaMondayFlow(**{"boards": demo_boards(), "op_retries": 0, "op_retry_delay_s": 0.1,
                              "consistency_window_s": 0, **overrides})  # fmt: skip


def invalid_documents(sim: MondaySimulator) -> dict[str, list[str]]:
    """Every ``/v2`` document ``sim`` received that monday's SDL refuses, with the reasons."""
    problems = {}
    for record in sim.requests:
        if record.path != "/v2" or not record.body:
            continue
        query, _ = graphql_body(record.model_dump())
        errors = validate(monday_spec(), parse(query))
        if errors:
            problems[query[:80]] = [e.message for e in errors]
    return problems


@dataclass
class Desk:
    """Both simulators in this process, a ledger, and the flow's steps on them."""

    visma: VismaSimulator
    monday: MondaySimulator
    ledger: Ledger
    settings: VismaMondayFlow

    def land(self, entity: str, payloads: list[dict[str, Any]] | None = None) -> list[LandedRecord]:
        """Land the entity's demo records (or ``payloads``) in :data:`PARTITION`, as the source asset would."""
        if payloads is None:
            table = self.visma.tables[COLLECTIONS[entity]]
            payloads = [table.render(seq) for seq in range(table.count)]
        id_field = "orderNbr" if entity == "purchase_orders" else "referenceNumber"
        records = [LandedRecord(record_id=str(p[id_field]), partition_key=PARTITION, payload=p) for p in payloads]
        LandingStore(self.ledger).land("visma", ENTITY_OF[entity], records)
        return records

    @contextmanager
    def board_client(self, **overrides: Any) -> Iterator[MondayClient]:
        with monday_client(self.monday, **overrides) as client:
            yield client

    def plan(self, entity: str, client: MondayClient) -> ItemPlan:
        return plan_kind(kind_of(entity), [PARTITION], client=client, ledger=self.ledger, settings=self.settings,
                         as_of=AS_OF)

    def sync(self, entity: str, **client_overrides: Any) -> tuple[ItemPlan, PushOutcome]:
        """Plan and push the entity's landed partition."""
        with self.board_client(**client_overrides) as client:
            plan = self.plan(entity, client)
            return plan, push_plan(plan, kind_of(entity), client=client, ledger=self.ledger, settings=self.settings,
                                   run_id="test-run", log=LOG)

    def receive(self, refs: list[str], visma: VismaClient | None = None) -> ReceiptOutcome:
        with self.board_client() as client:
            own = visma is None
            visma = visma or in_process_client(self.visma)
            try:
                return apply_receipts(refs, monday=client, visma=visma, ledger=self.ledger, settings=self.settings,
                                      boards=receipt_boards(client, self.settings), run_id="test-run", log=LOG)
            finally:
                if own:
                    visma.close()

    def items(self, board: int) -> list[dict[str, Any]]:
        return self.monday.items_on(board)

    def by_visma_id(self, board: int, column_title: str = "Visma ID") -> dict[str, list[dict[str, Any]]]:
        """The board's items by the text of their Visma-id column (a duplicate shows as two)."""
        column = next(c.id for c in self.monday.tenant.boards[board].columns if c.title == column_title)
        found: dict[str, list[dict[str, Any]]] = {}
        for item in self.items(board):
            text = next((v["text"] for v in item["column_values"] if v["id"] == column), None)
            if text:
                found.setdefault(text, []).append(item)
        return found


@contextmanager
def desk(tmp_path: Path, **settings: Any) -> Iterator[Desk]:
    """A fresh :class:`Desk` (closed afterwards)."""
    visma = VismaSimulator(size=30, days=0.9)
    monday = MondaySimulator(**settings.pop("monday", {}))
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        yield Desk(visma, monday, ledger, flow_settings(**settings))
    finally:
        ledger.dispose()
        visma.close()
        monday.close()
