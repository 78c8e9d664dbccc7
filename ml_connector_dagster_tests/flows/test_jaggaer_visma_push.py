"""JAGGAER purchase orders and invoices created and kept up to date in Visma AP, exactly once, over the wire.

The Visma simulator runs in-process; the JAGGAER demo tenant's documents and both systems'
reference data are landed in the ledger as the source assets would land them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ml_connector_dagster.config import JaggaerVismaFlow
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.destination import Reconciliation
from ml_connector_dagster.flows.jaggaer_visma import reconcile_partitions, replay
from ml_connector_dagster.flows.jaggaer_visma_plan import (
    INVOICES,
    PURCHASE_ORDERS,
    Action,
    DocumentKind,
    plan_partitions,
)
from ml_connector_dagster.flows.jaggaer_visma_push import PushOutcome, push_plan
from ml_connector_dagster.flows.jaggaer_visma_render import find_marker
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator
from ml_connector_dagster.sandbox.jaggaer.data import ID_FIELDS
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.visma.client import VismaClient
from ml_connector_dagster_tests.jaggaer_visma_sandbox import (
    DAY,
    LOG,
    EditBeforePut,
    land_documents,
    land_references,
    settings,
)
from ml_connector_dagster_tests.visma_sandbox import in_process_client

COLLECTION = {PURCHASE_ORDERS.name: "purchase_orders", INVOICES.name: "supplier_invoices"}


@dataclass
class World:
    visma: VismaSimulator
    jaggaer: JaggaerSimulator
    ledger: Ledger
    client: VismaClient

    def run(self, kind: DocumentKind, flow: JaggaerVismaFlow | None = None, client: VismaClient | None = None,
            run_id: str = "run-1") -> PushOutcome:
        plan = plan_partitions(kind, [DAY], ledger=self.ledger, settings=flow or settings())
        return push_plan(plan, kind, client=client or self.client, ledger=self.ledger, run_id=run_id, log=LOG)

    def in_visma(self, kind: DocumentKind) -> dict[str, list[dict[str, Any]]]:
        """Visma records of ``kind`` by the JAGGAER id they carry (a list: a duplicate would show as two)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for record in self.visma.collections()[COLLECTION[kind.name]]:
            if (jaggaer_id := find_marker(record.get("description"), kind.label)) is not None:
                found.setdefault(jaggaer_id, []).append(record)
        return found

    def posts(self) -> int:
        return sum(1 for r in self.visma.requests if r.method == "POST" and r.path.startswith("/v1/"))

    def reland(self, entity: str, record_id: int, **changes: Any) -> None:
        """A JAGGAER user edits a document; the next poll lands it again."""
        self.jaggaer.update(entity, record_id, **changes)
        land_documents(self.ledger, self.jaggaer, entity)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    visma, jaggaer = VismaSimulator(size=30), JaggaerSimulator(size=30)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    land_references(ledger, visma, jaggaer)
    land_documents(ledger, jaggaer, "purchase_orders")
    land_documents(ledger, jaggaer, "invoices")
    try:
        with in_process_client(visma) as client:
            yield World(visma, jaggaer, ledger, client)
    finally:
        ledger.dispose()
        visma.close()


def linked_number(world: World, kind: DocumentKind, record_id: str) -> str:
    link = world.ledger.links_for(kind.flow, [record_id])[record_id]
    assert link.state == "linked" and link.dest_id
    return link.dest_id


# -- creates -----------------------------------------------------------------------------------------


def test_each_matched_po_is_created_once_on_its_supplier_with_its_jaggaer_id(world: World) -> None:
    outcome = world.run(PURCHASE_ORDERS)

    created = world.in_visma(PURCHASE_ORDERS)
    assert outcome.created == len(created) > 0 and all(len(records) == 1 for records in created.values())
    record_id, (order,) = next(iter(sorted(created.items())))
    source = world.jaggaer.record("purchase_orders", record_id)
    assert source is not None
    assert order["orderNbr"] == linked_number(world, PURCHASE_ORDERS, record_id)
    assert order["description"] == f"JAGGAER PO {record_id}: {source['poNumber']}"
    assert order["supplierRef"] == source["poNumber"]
    assert order["supplier"]["name"].split()[0].casefold() in source["supplier"]["name"].casefold()
    assert [line["lineDescription"] for line in order["lines"]] == [line["description"] for line in source["lines"]]


def test_invoices_land_in_ap_with_the_suppliers_reference_vat_code_and_mapped_accounts(world: World) -> None:
    world.run(INVOICES)

    record_id, (invoice,) = next(iter(sorted(world.in_visma(INVOICES).items())))
    source = world.jaggaer.record("invoices", record_id)
    assert source is not None
    assert invoice["supplierReference"] == source["invoiceNumber"]
    assert invoice["currencyId"] == source["currency"]
    gl = {"410100": "4000", "410300": "4300", "420100": "4500", "530100": "6100", "540100": "6300", "540200": "6340",
          "540300": "6400", "550100": "6540", "550200": "6550", "560100": "6600", "570100": "6705", "570900": "6790",
          "580100": "6800", "580600": "6860", "580900": "6900", "590400": "7140", "591200": "7320", "592000": "7500"}
    assert [line["account"]["number"] for line in invoice["invoiceLines"]] == [gl[line["accountCode"]]
                                                                               for line in source["lines"]]
    assert invoice["amount"] == pytest.approx(source["totalAmount"], abs=0.05 * len(source["lines"]))


def test_documents_not_yet_approved_in_jaggaer_stay_out_of_visma(world: World) -> None:
    world.run(INVOICES)

    statuses = Counter(world.jaggaer.record("invoices", rid)["status"] for rid in world.in_visma(INVOICES))  # type: ignore[index]
    assert set(statuses) <= {"APPROVED", "PAYABLE", "PAID"}


def test_a_second_run_creates_nothing_and_sends_nothing(world: World) -> None:
    world.run(PURCHASE_ORDERS)
    world.run(INVOICES)
    before, posts = world.visma.collections(), world.posts()

    again = world.run(PURCHASE_ORDERS, run_id="run-2")

    assert (again.created, again.updated, again.skipped) == (0, 0, len(world.in_visma(PURCHASE_ORDERS)))
    assert world.posts() == posts
    assert world.visma.collections()["purchase_orders"] == before["purchase_orders"]


def test_a_create_whose_answer_was_lost_is_found_by_its_jaggaer_id_not_sent_again(world: World) -> None:
    world.visma.set_faults(FaultPlan(timeout_after_rate=1.0, paths=[r"^/v1/purchaseorder$"], methods=["POST"]))

    outcome = world.run(PURCHASE_ORDERS)

    created = world.in_visma(PURCHASE_ORDERS)
    assert outcome.created == 0 and outcome.recovered == len(created) > 0
    assert all(len(records) == 1 for records in created.values())
    assert all(linked_number(world, PURCHASE_ORDERS, rid) == records[0]["orderNbr"] for rid, records in created.items())


def test_documents_in_visma_that_a_lost_ledger_forgot_are_linked_not_created_again(world: World,
                                                                                   tmp_path: Path) -> None:  # fmt: skip
    first = world.run(PURCHASE_ORDERS)
    posts = world.posts()
    world.ledger.dispose()
    world.ledger = Ledger.open(f"sqlite:///{tmp_path / 'restored-from-nothing.db'}")
    land_references(world.ledger, world.visma, world.jaggaer)
    land_documents(world.ledger, world.jaggaer, "purchase_orders")

    again = world.run(PURCHASE_ORDERS, run_id="run-2")

    assert (again.created, again.recovered) == (0, first.created) and world.posts() == posts
    assert all(len(records) == 1 for records in world.in_visma(PURCHASE_ORDERS).values())
    assert all(linked_number(world, PURCHASE_ORDERS, rid) == records[0]["orderNbr"]
               for rid, records in world.in_visma(PURCHASE_ORDERS).items())


def _po_listings(world: World) -> int:
    return sum(1 for r in world.visma.requests if r.method == "GET" and r.path.lower() == "/v1/purchaseorder")


def test_every_create_of_a_push_is_looked_up_in_one_listing_of_what_changed_in_visma(world: World) -> None:
    world.run(PURCHASE_ORDERS)  # the first look lists Visma's purchase orders whole: the index
    template = world.jaggaer.record("purchase_orders", sorted(world.in_visma(PURCHASE_ORDERS))[0])
    assert template is not None
    for n in range(3):  # three new approved POs in JAGGAER
        copy = {key: value for key, value in template.items() if key != ID_FIELDS["purchase_orders"]}
        world.jaggaer.add_record("purchase_orders", {**copy, "poNumber": f"PO-NEW-{n}"})
    land_documents(world.ledger, world.jaggaer, "purchase_orders")
    listings = _po_listings(world)

    outcome = world.run(PURCHASE_ORDERS, run_id="run-2")

    assert outcome.created == 3
    assert _po_listings(world) - listings == 1  # the changes since the index last looked, not a scan per create


def test_a_create_that_never_arrived_waits_in_doubt_then_goes_once(world: World) -> None:
    world.visma.set_faults(FaultPlan(timeout_before_rate=1.0, paths=[r"^/v1/purchaseorder$"], methods=["POST"]))
    first = world.run(PURCHASE_ORDERS)
    assert first.deferred and not world.in_visma(PURCHASE_ORDERS)
    assert {link.state for link in world.ledger.pending_links(PURCHASE_ORDERS.flow)} == {"pending"}

    world.visma.clear_faults()
    second = world.run(PURCHASE_ORDERS, run_id="run-2")

    assert second.created == len(first.deferred)
    assert all(len(records) == 1 for records in world.in_visma(PURCHASE_ORDERS).values())
    assert world.ledger.pending_links(PURCHASE_ORDERS.flow) == []


# -- updates -----------------------------------------------------------------------------------------


def _first_created(world: World, kind: DocumentKind) -> tuple[str, str]:
    record_id = sorted(world.in_visma(kind))[0]
    return record_id, linked_number(world, kind, record_id)


def _open_for_changes(world: World, kind: DocumentKind, number: str) -> None:
    if kind is INVOICES:
        world.visma.update_supplier_invoice(number, status="Balanced")
    else:
        world.visma.update_purchase_order(number, status="Open")


def test_a_change_in_jaggaer_is_put_to_visma_with_if_match(world: World) -> None:
    world.run(PURCHASE_ORDERS)
    record_id, number = _first_created(world, PURCHASE_ORDERS)
    _open_for_changes(world, PURCHASE_ORDERS, number)
    lines = world.jaggaer.record("purchase_orders", record_id)["lines"]  # type: ignore[index]
    world.reland("purchase_orders", int(record_id), lines=[{**lines[0], "quantity": 7.0, "description": "Changed"}])

    outcome = world.run(PURCHASE_ORDERS, run_id="run-2")

    assert outcome.updated == 1 and outcome.created == 0
    order = world.visma.purchase_order(number)
    assert order is not None and [(line["lineDescription"], line["orderQty"]) for line in order["lines"]] == [("Changed", 7.0)]
    (put,) = [r for r in world.visma.requests if r.method == "PUT"]
    assert put.headers.get("if-match") and world.visma.unconditional_puts == []


def test_a_412_is_read_again_and_the_change_applied_on_top_of_the_other_edit(world: World) -> None:
    world.run(INVOICES)
    record_id, number = _first_created(world, INVOICES)
    _open_for_changes(world, INVOICES, number)
    world.reland("invoices", int(record_id), dueDate="2027-01-31")
    racing = EditBeforePut(InProcessTransport(world.visma.app),
                           lambda: world.visma.update_supplier_invoice(number, paymentMessage="KID 12345"))

    with in_process_client(world.visma, transport=racing) as client:
        outcome = world.run(INVOICES, client=client, run_id="run-2")

    assert (outcome.updated, outcome.conflicts) == (1, 1) and record_id not in _letters(world, INVOICES)
    invoice = world.visma.supplier_invoice(number)
    assert invoice is not None and invoice["dueDate"].startswith("2027-01-31")
    assert invoice["paymentMessage"] == "KID 12345"
    assert [r.method for r in world.visma.requests if r.path.endswith(number)][-4:] == ["GET", "PUT", "GET", "PUT"]


def test_a_document_visma_has_closed_is_not_changed_and_waits_for_review(world: World) -> None:
    world.run(INVOICES)
    record_id, number = _first_created(world, INVOICES)
    world.visma.update_supplier_invoice(number, status="Closed")
    world.reland("invoices", int(record_id), dueDate="2027-01-31")

    outcome = world.run(INVOICES, run_id="run-2")

    assert outcome.updated == 0 and not any(r.method == "PUT" for r in world.visma.requests)
    (letter,) = [letter for letter in world.ledger.open_dead_letters(INVOICES.asset) if letter.source_id == record_id]
    assert f"Visma invoice {number} is Closed and can no longer be changed" in letter.error


def test_a_jaggaer_only_change_sends_nothing_to_visma(world: World) -> None:
    world.run(INVOICES)
    record_id, _ = _first_created(world, INVOICES)
    world.reland("invoices", int(record_id), erpStatus="PROCESSING")

    outcome = world.run(INVOICES, run_id="run-2")

    assert outcome.updated == 0 and not any(r.method == "PUT" for r in world.visma.requests)


# -- dead letters and replay -------------------------------------------------------------------------


def _letters(world: World, kind: DocumentKind) -> dict[str, str]:
    return {letter.source_id: letter.error for letter in world.ledger.open_dead_letters(kind.asset)}


def test_an_unmatched_vendor_is_a_dead_letter_until_the_vendor_map_names_its_supplier(world: World) -> None:
    world.run(PURCHASE_ORDERS)
    unmatched = {rid: error for rid, error in _letters(world, PURCHASE_ORDERS).items() if "unmatched vendor" in error}
    assert unmatched and not set(unmatched) & set(world.in_visma(PURCHASE_ORDERS))
    vendor_ids = {str(world.jaggaer.record("purchase_orders", rid)["supplier"]["supplierId"]) for rid in unmatched}  # type: ignore[index]

    fixed = settings(vendor_map=dict.fromkeys(vendor_ids, "10002"))
    metadata = replay(world.ledger, world.client, None, settings=fixed, run_id="replay-1", log=LOG)

    assert metadata["purchase_orders_resolved"] == len(unmatched)
    created = world.in_visma(PURCHASE_ORDERS)
    assert all(created[rid][0]["supplier"]["number"] == "10002" for rid in unmatched)
    assert _letters(world, PURCHASE_ORDERS) == {}


def test_an_unmapped_gl_account_waits_until_the_table_maps_it(world: World) -> None:
    record_id = sorted(world.jaggaer.records["purchase_orders"])[0]
    world.reland("purchase_orders", int(record_id), status="APPROVED", supplier={"supplierId": 310001},
                 lines=[{**world.jaggaer.record("purchase_orders", record_id)["lines"][0], "accountCode": "599000"}])  # type: ignore[index]
    world.run(PURCHASE_ORDERS)
    assert "JAGGAER account 599000 has no Visma account" in _letters(world, PURCHASE_ORDERS)[record_id]

    replay(world.ledger, world.client, None, settings=settings(gl_map={"599000": "6790"}), run_id="replay-1", log=LOG)

    (order,) = world.in_visma(PURCHASE_ORDERS)[record_id]
    assert order["lines"][0]["account"]["number"] == "6790"
    assert record_id not in _letters(world, PURCHASE_ORDERS)


def test_a_posting_visma_refuses_is_replayable_once_fixed(world: World) -> None:
    world.run(INVOICES, settings(vat_codes={"25": "77", "15": "77", "12": "77", "0": "77"}))
    refused = _letters(world, INVOICES)
    assert any("Visma refused the invoice" in error and "VAT code '77' not found" in error for error in refused.values())

    replay(world.ledger, world.client, None, settings=settings(), run_id="replay-1", log=LOG)

    refused_ids = {rid for rid, error in refused.items() if "Visma refused" in error}
    assert refused_ids <= set(world.in_visma(INVOICES))
    assert not refused_ids & set(_letters(world, INVOICES))


def test_a_dry_plan_names_what_it_would_do_without_calling_visma(world: World) -> None:
    requests = len(world.visma.requests)

    plan = plan_partitions(PURCHASE_ORDERS, [DAY], ledger=world.ledger, settings=settings())

    assert plan.count(Action.CREATE) > 0 and plan.by_reason(Action.FAILED)["unmatched vendor"] > 0
    assert len(world.visma.requests) == requests


# -- the audit ---------------------------------------------------------------------------------------


def _audit(world: World, client: VismaClient | None = None) -> Reconciliation:
    return reconcile_partitions(PURCHASE_ORDERS, [DAY], client=client or world.client, ledger=world.ledger,
                                settings=settings())  # fmt: skip


def test_the_audit_reads_what_changed_and_its_own_documents_not_all_of_visma_since_the_first_sync(
        world: World) -> None:  # fmt: skip
    world.run(PURCHASE_ORDERS)
    assert _audit(world).passed
    for _ in range(250):  # a busy Visma since: other people's purchase orders
        world.visma.create_purchase_order(description="Office chairs")
    world.visma.clock.advance(3600)
    world.visma.create_purchase_order(description="Desk lamps")
    _audit(world)  # sees the 251 new ones once
    world.visma.clock.advance(3600)
    world.visma.create_purchase_order(description="Printer paper")
    requests = len(world.visma.requests)

    with in_process_client(world.visma, page_size=10) as small_pages:  # the whole kind: 28+ pages
        audited = _audit(world, small_pages)

    made = Counter("list" if r.path.lower() == "/v1/purchaseorder" else "one" for r in world.visma.requests[requests:]
                   if r.method == "GET" and r.path.lower().startswith("/v1/purchaseorder"))
    assert audited.passed and audited.found == audited.linked > 0
    # One listing of the last hour's change, and the partition's own documents read back (one GET
    # each: a deleted one would be missing), not the 270 purchase orders modified since the first sync.
    assert made == {"list": 1, "one": audited.linked}


def test_the_audit_finds_a_copy_of_a_synced_document_made_in_visma_since(world: World) -> None:
    world.run(PURCHASE_ORDERS)
    assert _audit(world).passed
    record_id, (order,) = next(iter(sorted(world.in_visma(PURCHASE_ORDERS).items())))
    world.visma.create_purchase_order(description=order["description"])  # keyed again by hand, marker and all

    audited = _audit(world)

    assert not audited.passed and audited.duplicates == {record_id: 2}
