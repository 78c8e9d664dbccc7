"""Pushing Visma records to monday boards exactly once, over the wire (both simulators in this process).

Budget exhaustion, refused aliases and lost answers are the simulator's own behaviour: a low
complexity budget, a dropdown without the label, a write applied whose answer never comes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from ml_connector_dagster.flows.visma_monday import kind_of
from ml_connector_dagster.flows.visma_monday_plan import Action
from ml_connector_dagster.flows.visma_monday_push import push_plan
from ml_connector_dagster.sandbox.monday import AR_BOARD, INVOICE_BOARD, PO_BOARD
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.monday.client import ComplexityBudget
from ml_connector_dagster_tests.monday_sandbox import sim_sleeper
from ml_connector_dagster_tests.visma_monday_sandbox import LOG, desk, invalid_documents

FIRST_HAND_ENTERED = 1_880_100_001  # an invoice the AP team typed in before the integration


def test_a_days_invoices_become_one_item_each_and_a_second_run_writes_nothing(tmp_path: Path) -> None:
    with desk(tmp_path) as d:
        landed = d.land("supplier_invoices")
        _, first = d.sync("supplier_invoices")
        plan, second = d.sync("supplier_invoices")
        ids = {record.record_id for record in landed}
        items = {visma_id: found for visma_id, found in d.by_visma_id(INVOICE_BOARD).items() if visma_id in ids}
    valid = len(landed) - 1  # 000010's currency is not ISO 4217: a dead letter, not an item
    assert (first.created, first.failed) == (valid, 1)
    assert plan.skipped == valid and plan.of(Action.CREATE, Action.UPDATE, Action.LINK) == []
    assert (second.created, second.updated) == (0, 0)
    assert len(items) == valid and all(len(found) == 1 for found in items.values())


def test_an_exhausted_complexity_budget_mid_batch_is_waited_out_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    slept: list[float] = []
    with desk(tmp_path, monday={"complexity_per_minute": 1_000_000}) as d:
        d.land("purchase_orders")
        d.monday.budget.spend(900_000)  # another job on the same token spent most of this minute
        _, outcome = d.sync("purchase_orders", budget=ComplexityBudget(1_000_000), max_batch=4,
                            sleep=sim_sleeper(d.monday, slept))
        items = d.by_visma_id(PO_BOARD)
    assert outcome.created == 15 and outcome.failed == 0
    assert sorted(items) == [f"PO{n:06d}" for n in range(1, 16)] and all(len(v) == 1 for v in items.values())
    assert slept and max(slept) >= 30  # waited for the budget's reset, then went on


def test_a_refused_alias_becomes_a_dead_letter_and_its_neighbours_are_created(tmp_path: Path) -> None:
    with desk(tmp_path, create_labels_if_missing=False) as d:
        payloads = [d.visma.tables["supplier_invoices"].render(seq) for seq in range(5)]
        payloads[2] = {**payloads[2], "currencyId": "CHF"}  # valid ISO 4217, but no label of the Currency column
        d.land("supplier_invoices", payloads)
        _, outcome = d.sync("supplier_invoices")
        letters = d.ledger.open_dead_letters("monday/visma_invoice_items")
        refused = payloads[2]["referenceNumber"]
        links = d.ledger.links_for("visma_monday.supplier_invoices", [refused])
        items = d.by_visma_id(INVOICE_BOARD)
    assert (outcome.created, outcome.failed) == (4, 1)
    assert [letter.source_id for letter in letters] == [refused]
    assert "ColumnValueException" in letters[0].error and letters[0].record["currencyId"] == "CHF"
    assert refused not in items and links == {}  # nothing created, no create intent left behind


class LosesTheFirstCreateAnswer(httpx.BaseTransport):
    """Delivers every request; the answer to the first create is lost on the way back."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.lost = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not self.lost and b"CreateItems" in request.read():
            self.lost = True
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


def test_a_create_whose_answer_was_lost_is_looked_up_and_linked_never_sent_again(tmp_path: Path) -> None:
    with desk(tmp_path) as d:
        d.land("purchase_orders")
        transport = LosesTheFirstCreateAnswer(InProcessTransport(d.monday.app))
        _, outcome = d.sync("purchase_orders", transport=transport, max_batch=5)
        plan, _ = d.sync("purchase_orders")
        items = d.by_visma_id(PO_BOARD)
        creates = [r for r in d.monday.requests if r.body and "CreateItems" in r.body["query"]]
    assert transport.lost
    assert outcome.created == 15 and outcome.deferred == []
    assert plan.skipped == 15
    assert len(items) == 15 and all(len(v) == 1 for v in items.values())
    assert len(creates) == 3  # 15 orders, 5 a request, none sent twice


class NeverDeliversTheFirstCreate(httpx.BaseTransport):
    """The first create times out before it reaches monday (nothing applied, no answer)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.dropped = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.dropped and b"CreateItems" in request.read():
            self.dropped = True
            raise httpx.ReadTimeout("no answer", request=request)
        return self.inner.handle_request(request)


def test_a_create_in_doubt_that_never_arrived_stays_pending_and_is_created_once_later(tmp_path: Path) -> None:
    with desk(tmp_path) as d:
        d.land("purchase_orders")
        transport = NeverDeliversTheFirstCreate(InProcessTransport(d.monday.app))
        _, first = d.sync("purchase_orders", transport=transport, max_batch=5)
        pending = [link.source_id for link in d.ledger.pending_links("visma_monday.purchase_orders")]
        plan, second = d.sync("purchase_orders")
        items = d.by_visma_id(PO_BOARD)
    assert first.created == 10 and sorted(first.deferred) == sorted(pending) and len(pending) == 5
    assert sorted(p.row_id for p in plan.of(Action.CREATE)) == sorted(pending)  # looked up, not found: created
    assert second.created == 5 and len(items) == 15 and all(len(v) == 1 for v in items.values())


def test_a_retried_push_looks_an_earlier_unanswered_create_up_before_creating(tmp_path: Path) -> None:
    with desk(tmp_path) as d:
        d.land("purchase_orders")
        with d.board_client() as client:
            plan = d.plan("purchase_orders", client)  # every order: CREATE
            # An earlier attempt of this step marked PO000001 and created it, and its answer was lost.
            d.ledger.mark_pending("visma_monday.purchase_orders", "PO000001", "-", "monday", "-", "earlier-attempt")
            d.monday.set_column_value(d.monday.add_items(PO_BOARD, 1, name_prefix="PO000001")[0], "Visma ID", "PO000001")
            outcome = push_plan(plan, kind_of("purchase_orders"), client=client, ledger=d.ledger, settings=d.settings,
                                run_id="retry", log=LOG)  # fmt: skip
        items = d.by_visma_id(PO_BOARD)
    assert outcome.created == 15 and len(items) == 15
    assert len(items["PO000001"]) == 1  # adopted, not created a second time


def test_an_item_entered_by_hand_with_the_visma_id_is_adopted_not_duplicated(tmp_path: Path) -> None:
    with desk(tmp_path) as d:
        landed = d.land("supplier_invoices")
        visma_id = landed[4].record_id
        d.monday.set_column_value(FIRST_HAND_ENTERED, "Visma ID", visma_id)
        received_before = d.monday.item(FIRST_HAND_ENTERED)
        plan, outcome = d.sync("supplier_invoices")
        adopted = d.monday.item(FIRST_HAND_ENTERED)
        items = d.by_visma_id(INVOICE_BOARD)
    assert [p.item_id for p in plan.of(Action.LINK)] == [str(FIRST_HAND_ENTERED)]
    assert outcome.linked == 1 and len(items[visma_id]) == 1
    assert adopted["name"] == f"Invoice {landed[4].payload['supplierReference']} — {landed[4].payload['supplier']['name']}"
    assert status_of(adopted) == status_of(received_before)  # the warehouse's column is theirs


def status_of(item: dict[str, Any]) -> str | None:
    return next(v["text"] for v in item["column_values"] if v["id"] == "status")


def test_a_changed_record_updates_its_item_and_leaves_the_received_column_alone(tmp_path: Path) -> None:
    with desk(tmp_path) as d:
        landed = d.land("supplier_invoices")
        d.sync("supplier_invoices")
        target = landed[0]
        [item] = d.by_visma_id(INVOICE_BOARD)[target.record_id]
        d.monday.mark_received(item["id"])
        d.land("supplier_invoices", [{**target.payload, "amount": 4321.5, "lastModifiedDateTime": "2026-11-21T09:00:00+00:00"}])
        plan, outcome = d.sync("supplier_invoices")
        updated = d.monday.item(item["id"])
    assert [p.row_id for p in plan.of(Action.UPDATE)] == [target.record_id]
    assert outcome.updated == 1
    assert next(v["text"] for v in updated["column_values"] if v["id"] == "numbers") == "4321.5"
    assert status_of(updated) == "Received"


def test_customer_invoices_carry_their_aging_bucket_and_collection_status(tmp_path: Path) -> None:
    with desk(tmp_path) as d:
        landed = d.land("customer_invoices")
        plan, outcome = d.sync("customer_invoices")
        items = d.by_visma_id(AR_BOARD)
        board = d.monday.tenant.boards[AR_BOARD]
    aging = next(c.id for c in board.columns if c.title == "Aging")
    status = next(c.id for c in board.columns if c.title == "Status")
    shown = {visma_id: {v["id"]: v["text"] for v in found[0]["column_values"]} for visma_id, found in items.items()}
    settled = [r.record_id for r in landed if r.payload["balance"] == 0]
    assert outcome.created == len(landed)
    assert all(shown[i][aging] is None and shown[i][status] == "Paid" for i in settled)
    assert sum(row["invoices"] for row in plan.aging) == len(landed) - len(settled)
    assert {shown[r.record_id][aging] for r in landed if r.record_id not in settled} <= {"current", "1-30", "31-60",
                                                                                            "61-90", "90+"}


def test_every_document_the_push_sent_validates_against_the_sdl(tmp_path: Path) -> None:
    with desk(tmp_path) as d:
        for entity in ("supplier_invoices", "purchase_orders", "customer_invoices"):
            d.land(entity)
            d.sync(entity)
        problems = invalid_documents(d.monday)
        sent = sum(1 for r in d.monday.requests if r.path == "/v2")
    assert sent > 0 and problems == {}
