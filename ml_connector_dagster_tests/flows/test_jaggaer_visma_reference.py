"""Vendor reference data aligned both ways, each field in its configured direction, over the wire."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ml_connector_dagster.config import JaggaerVismaFlow
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.jaggaer_visma import replay
from ml_connector_dagster.flows.jaggaer_visma_plan import load_references
from ml_connector_dagster.flows.jaggaer_visma_reference import ASSET, AlignmentOutcome, align_vendors, gl_gaps
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.visma.client import VismaClient
from ml_connector_dagster_tests.jaggaer_visma_sandbox import (
    LOG,
    EditBeforePut,
    edit_supplier,
    land_references,
    settings,
)
from ml_connector_dagster_tests.visma_sandbox import in_process_client


@dataclass
class World:
    visma: VismaSimulator
    jaggaer: JaggaerSimulator
    ledger: Ledger

    def align(self, flow: JaggaerVismaFlow | None = None, client: VismaClient | None = None) -> AlignmentOutcome:
        land_references(self.ledger, self.visma, self.jaggaer)
        with client or in_process_client(self.visma) as visma:
            return align_vendors(load_references(self.ledger, flow or settings()), client=visma, ledger=self.ledger,
                                 settings=flow or settings(), run_id="run-1", log=LOG)

    def matched(self, vendor_id: int) -> str:
        references = load_references(self.ledger, settings())
        number = references.match(str(vendor_id), settings()).visma_number
        assert number is not None
        return number

    def puts(self) -> list[Any]:
        return [r for r in self.visma.requests if r.method == "PUT"]


def make_world(tmp_path: Path, visma: VismaSimulator) -> Iterator[World]:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    jaggaer = JaggaerSimulator(size=30)
    land_references(ledger, visma, jaggaer)
    try:
        yield World(visma, jaggaer, ledger)
    finally:
        ledger.dispose()
        visma.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, VismaSimulator(size=30))


FIRST = 310001  # matched by organisation number in the demo tenant


def test_vendors_that_agree_by_meaning_change_nothing_in_visma(world: World) -> None:
    outcome = world.align()

    assert outcome.suppliers_updated == 0 and world.puts() == []
    assert sum(1 for m in outcome.matches if m.matched) > 0


def test_payment_terms_mastered_by_visma_are_planned_for_jaggaer_never_sent(world: World) -> None:
    outcome = world.align()

    assert outcome.planned and {(c.field, c.direction) for c in outcome.planned} == {("payment_terms", "visma_to_jaggaer")}
    change = outcome.planned[0]
    assert change.wanted == f"NET{int(change.visma_value.rstrip('D'))}"
    assert {r.method for r in world.jaggaer.requests} <= {"GET"}


def test_a_vendor_renamed_and_moved_in_jaggaer_updates_its_visma_supplier_with_if_match(world: World) -> None:
    number = world.matched(FIRST)
    address = {"street": "Kaigata 1", "postalCode": "5003", "city": "Bergen", "country": "NO"}
    world.jaggaer.update("vendors", FIRST, name="Fjordlys Energi Bergen AS", address=address)

    outcome = world.align()

    supplier = world.visma.record("suppliers", number)
    assert supplier is not None and supplier["name"] == "Fjordlys Energi Bergen AS"
    assert (supplier["mainAddress"]["addressLine1"], supplier["mainAddress"]["city"]) == ("Kaigata 1", "Bergen")
    assert outcome.suppliers_updated == 1 and {c.field for c in outcome.applied} == {"name", "address"}
    (put,) = world.puts()
    assert put.path == f"/v1/supplier/{number}" and put.headers.get("if-match")
    assert world.align().suppliers_updated == 0  # converged


def test_the_vendor_hierarchy_in_jaggaer_becomes_the_parent_in_visma(world: World) -> None:
    child, parent = FIRST, 310002
    world.jaggaer.update("vendors", child, parentSupplierId=parent)

    world.align()

    supplier = world.visma.record("suppliers", world.matched(child))
    assert supplier is not None and supplier["parentRecord"]["number"] == world.matched(parent)


def test_a_supplier_changed_meanwhile_is_read_again_and_updated(world: World) -> None:
    number = world.matched(FIRST)
    world.jaggaer.update("vendors", FIRST, name="Fjordlys Energi Bergen AS")
    racing = EditBeforePut(InProcessTransport(world.visma.app), lambda: edit_supplier(world.visma, number, note="VIP"))

    outcome = world.align(client=in_process_client(world.visma, transport=racing))

    assert (outcome.suppliers_updated, outcome.conflicts) == (1, 1)
    supplier = world.visma.record("suppliers", number)
    assert supplier is not None and (supplier["name"], supplier["note"]) == ("Fjordlys Energi Bergen AS", "VIP")


def test_a_field_mastered_by_visma_is_not_written_to_visma(world: World) -> None:
    flow = settings(reference_directions={"name": "visma_to_jaggaer", "address": "off", "parent": "off",
                                          "payment_terms": "off"})
    world.jaggaer.update("vendors", FIRST, name="Fjordlys Energi Bergen AS")

    outcome = world.align(flow)

    assert world.puts() == []
    (change,) = outcome.planned
    assert (change.field, change.jaggaer_value, change.wanted) == (
        "name", "Fjordlys Energi Bergen AS", world.visma.record("suppliers", world.matched(FIRST))["name"])  # type: ignore[index]


def test_a_supplier_visma_will_not_update_is_a_dead_letter(world: World) -> None:
    address = {"street": "Kaigata 1", "postalCode": "5003", "city": "Bergen", "country": "Norge"}
    world.jaggaer.update("vendors", FIRST, address=address)  # Visma knows countries by ISO code only

    outcome = world.align()

    (letter,) = world.ledger.open_dead_letters(ASSET)
    assert outcome.failed == 1 and letter.source_id == str(FIRST) and "Country 'Norge' not found" in letter.error


def test_jaggaer_accounts_without_a_visma_mapping_are_listed(world: World) -> None:
    references = load_references(world.ledger, settings())
    accounts = world.jaggaer.collections()["gl_accounts"]

    gaps = gl_gaps(references, accounts, references.chart)

    assert gaps == ["JAGGAER account 599000 (Miscellaneous purchases) has no Visma account in the GL table"]


def test_a_failed_supplier_update_is_replayed_once_visma_takes_it(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ml_connector_dagster.core.http.default_sleep", lambda _: None)
    world.jaggaer.update("vendors", FIRST, name="Fjordlys Energi Bergen AS")
    world.visma.set_faults(FaultPlan(error_rate=1.0, error_status=500, methods=["PUT"], paths=[r"^/v1/supplier/"]))
    world.align()
    assert [letter.source_id for letter in world.ledger.open_dead_letters(ASSET)] == [str(FIRST)]

    world.visma.clear_faults()
    with in_process_client(world.visma) as client:
        metadata = replay(world.ledger, client, None, settings=settings(), run_id="replay-1", log=LOG)

    assert (metadata["vendors_replayed"], metadata["vendors_failed"]) == (1, 0)
    assert world.ledger.open_dead_letters(ASSET) == []
    assert world.visma.record("suppliers", world.matched(FIRST))["name"] == "Fjordlys Energi Bergen AS"  # type: ignore[index]
