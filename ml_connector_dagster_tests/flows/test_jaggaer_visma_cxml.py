"""Invoice receipt and payment confirmed to JAGGAER over cXML, once per status, over the wire."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.jaggaer_visma_cxml import (
    ASSET,
    FLOW,
    Confirmer,
    ConfirmOutcome,
    confirm_invoices,
)
from ml_connector_dagster.flows.jaggaer_visma_plan import INVOICES, plan_partitions
from ml_connector_dagster.flows.jaggaer_visma_push import push_plan
from ml_connector_dagster.sandbox import jaggaer as jaggaer_sandbox
from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster_tests.jaggaer_sandbox import ENVELOPE, in_process_cxml
from ml_connector_dagster_tests.jaggaer_visma_sandbox import (
    DAY,
    LOG,
    land_documents,
    land_references,
    land_visma_invoices,
    settings,
)
from ml_connector_dagster_tests.visma_sandbox import in_process_client


@dataclass
class World:
    visma: VismaSimulator
    jaggaer: JaggaerSimulator
    ledger: Ledger
    confirmer: Confirmer
    created: dict[str, str]  # JAGGAER invoice id -> Visma number

    def confirm(self) -> ConfirmOutcome:
        land_visma_invoices(self.ledger, self.visma, list(self.created.values()))
        invoices = [self.visma.supplier_invoice(number) for number in self.created.values()]
        return confirm_invoices([i for i in invoices if i], ledger=self.ledger, confirmer=self.confirmer,
                                run_id="run-1", partition_key=DAY, log=LOG)

    def documents(self, invoice_id: str) -> list[dict[str, object]]:
        """The cXML documents JAGGAER accepted for one of its invoices, in order."""
        return [d for d in self.jaggaer.collections()["cxml_documents"] if d["reference"] == invoice_id]

    def open_for_payment(self, invoice_id: str) -> None:
        """Visma's AP pays the invoice in full."""
        self.visma.update_supplier_invoice(self.created[invoice_id], status="Closed", balance=0.0)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setattr("ml_connector_dagster.core.http.default_sleep", lambda _: None)  # the cXML client's backoff
    visma, jaggaer = VismaSimulator(size=30), JaggaerSimulator(size=30)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    land_references(ledger, visma, jaggaer)
    land_documents(ledger, jaggaer, "invoices")
    try:
        with in_process_client(visma) as client, in_process_cxml(jaggaer) as cxml:
            plan = plan_partitions(INVOICES, [DAY], ledger=ledger, settings=settings())
            outcome = push_plan(plan, INVOICES, client=client, ledger=ledger, run_id="run-0", log=LOG)
            for number in outcome.written.values():  # received in Visma, not paid yet
                visma.update_supplier_invoice(number, status="Balanced")
            confirmer = Confirmer(cxml, ENVELOPE, jaggaer_sandbox.DEMO_CXML_SHARED_SECRET)
            yield World(visma, jaggaer, ledger, confirmer, dict(outcome.written))
    finally:
        ledger.dispose()
        visma.close()


def test_every_invoice_in_visma_is_confirmed_received_once(world: World) -> None:
    first = world.confirm()
    again = world.confirm()

    assert first.sent == len(world.created) > 0 and (again.sent, again.already) == (0, len(world.created))
    for invoice_id in world.created:
        assert world.jaggaer.record("invoices", invoice_id)["erpStatus"] == "PROCESSING"  # type: ignore[index]
        assert [d["deliveries"] for d in world.documents(invoice_id)] == [1]


def test_a_paid_invoice_is_confirmed_paid_after_received(world: World) -> None:
    invoice_id = sorted(world.created)[0]
    world.open_for_payment(invoice_id)

    world.confirm()

    record = world.jaggaer.record("invoices", invoice_id)
    assert record is not None and (record["erpStatus"], record["paymentStatus"]) == ("PAID", "PAID")
    keys = [link.source_id for link in world.ledger.links_for(FLOW, [f"{invoice_id}/processing", f"{invoice_id}/paid"]).values()]
    assert sorted(keys) == [f"{invoice_id}/paid", f"{invoice_id}/processing"]
    assert len(world.documents(invoice_id)) == 2


def test_a_server_error_is_retried_with_the_same_payload_id(world: World) -> None:
    world.jaggaer.fail_next_cxml(2, code=560)

    outcome = world.confirm()

    assert outcome.failed == 0 and outcome.sent == len(world.created)
    invoice_id = sorted(world.created)[0]
    (document,) = world.documents(invoice_id)
    link = world.ledger.links_for(FLOW, [f"{invoice_id}/processing"])[f"{invoice_id}/processing"]
    assert link.dest_id == document["payloadID"]


def test_a_resend_after_a_lost_answer_changes_nothing_in_jaggaer(world: World) -> None:
    world.confirm()
    invoice_id = sorted(world.created)[0]
    world.ledger.forget_link(FLOW, f"{invoice_id}/processing")  # as if the answer never came back
    modified = world.jaggaer.record("invoices", invoice_id)["lastModifiedDate"]  # type: ignore[index]

    outcome = world.confirm()

    assert outcome.sent == 1
    assert [d["deliveries"] for d in world.documents(invoice_id)] == [2]
    assert world.jaggaer.record("invoices", invoice_id)["lastModifiedDate"] == modified  # type: ignore[index]


def test_a_rejected_confirmation_is_a_dead_letter_and_the_later_status_waits(world: World) -> None:
    invoice_id = sorted(world.created)[0]
    world.open_for_payment(invoice_id)
    world.jaggaer.fail_next_cxml(1, code=406)

    outcome = world.confirm()

    (letter,) = world.ledger.open_dead_letters(ASSET)
    assert outcome.failed == 1 and letter.source_id == f"{invoice_id}/processing"
    assert letter.error.startswith("JAGGAER did not take the processing confirmation: ") and "406" in letter.error
    assert not world.ledger.links_for(FLOW, [f"{invoice_id}/paid"])

    world.confirm()  # the replay

    assert world.ledger.open_dead_letters(ASSET) == []
    assert world.jaggaer.record("invoices", invoice_id)["paymentStatus"] == "PAID"  # type: ignore[index]


def test_an_invoice_number_jaggaer_cannot_tell_apart_is_rejected_with_its_reason(world: World) -> None:
    invoice_id, other = sorted(world.created)[:2]
    number = world.jaggaer.record("invoices", invoice_id)["invoiceNumber"]  # type: ignore[index]
    world.jaggaer.update("invoices", other, invoiceNumber=number)

    world.confirm()

    errors = {letter.source_id: letter.error for letter in world.ledger.open_dead_letters(ASSET)}
    assert f"{invoice_id}/processing" in errors and "is ambiguous" in errors[f"{invoice_id}/processing"]


def test_visma_invoices_this_flow_did_not_create_are_left_alone(world: World) -> None:
    own = world.visma.collections()["supplier_invoices"][:5]

    outcome = confirm_invoices(own, ledger=world.ledger, confirmer=world.confirmer, run_id="run-1",
                               partition_key=DAY, log=LOG)

    assert (outcome.sent, outcome.not_ours) == (0, 5)
