"""The return path: an item marked "Received" in monday appends one receipt line to its Visma document's note.

The write is a ``PUT`` with ``If-Match``; someone editing the document in between (412) makes the
flow read it again and re-apply. Duplicate events, retries and re-runs end in one note line.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_connector_dagster.core.ledger import DeadLetter
from ml_connector_dagster.flows.destination import appended_once
from ml_connector_dagster.flows.visma_monday import RECEIPTS_OP, build_receipts_job
from ml_connector_dagster.flows.visma_monday_receipts import (
    RECEIPTS_ASSET,
    announced_receipts,
    build_receipt_sensor,
    ensure_receipt_webhooks,
    receipt_boards,
    receipt_marker,
)
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sandbox.monday import DEMO_SIGNING_SECRET, INVOICE_BOARD, PO_BOARD, MondaySimulator
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.systems.monday.resource import MondayResource
from ml_connector_dagster.systems.visma.client import VismaClient
from ml_connector_dagster_tests.monday_sandbox import VerifyingReceiver
from ml_connector_dagster_tests.visma_monday_sandbox import Desk, desk, invalid_documents
from ml_connector_dagster_tests.visma_sandbox import in_process_client, use_demo_credentials, visma_resource


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """A desk whose invoices and POs are already items on their boards (each test receives other documents)."""
    with desk(tmp_path_factory.mktemp("receipts")) as d:
        d.land("supplier_invoices")
        d.land("purchase_orders")
        d.sync("supplier_invoices")
        d.sync("purchase_orders")
        yield d


def item_of(d: Desk, board: int, visma_id: str) -> str:
    [item] = d.by_visma_id(board)[visma_id]
    return str(item["id"])


def letters_of(d: Desk, ref: str) -> list[DeadLetter]:
    return [letter for letter in d.ledger.open_dead_letters(RECEIPTS_ASSET) if letter.source_id == ref]


def puts(d: Desk, path: str) -> int:
    return sum(1 for r in d.visma.requests if r.method == "PUT" and r.path == path)


def test_a_received_invoice_gets_one_receipt_line_in_its_visma_note(synced: Desk) -> None:
    item = item_of(synced, INVOICE_BOARD, "000003")
    synced.monday.mark_received(item)
    outcome = synced.receive([f"{INVOICE_BOARD}:{item}"])
    note = synced.visma.supplier_invoice("000003")["note"]
    link = synced.ledger.links_for("visma_monday.receipts", [f"{INVOICE_BOARD}:{item}"])[f"{INVOICE_BOARD}:{item}"]
    assert outcome.applied == 1 and outcome.failed == 0
    assert receipt_marker(item) in note and "Procurement — supplier invoices" in note
    assert (link.dest_id, link.dest_key, link.state) == ("000003", "supplierInvoice", "linked")
    assert synced.visma.unconditional_puts == []  # every PUT carried If-Match


def test_a_received_purchase_order_gets_its_receipt_too(synced: Desk) -> None:
    item = item_of(synced, PO_BOARD, "PO000004")
    synced.monday.mark_received(item)
    assert synced.receive([f"{PO_BOARD}:{item}"]).applied == 1
    assert receipt_marker(item) in synced.visma.purchase_order("PO000004")["note"]


def test_duplicate_receipt_events_make_one_visma_update(synced: Desk) -> None:
    item = item_of(synced, INVOICE_BOARD, "000005")
    synced.monday.mark_received(item)
    ref = f"{INVOICE_BOARD}:{item}"
    first = synced.receive([ref, ref])
    again = synced.receive([ref])
    assert (first.applied, again.applied, again.already) == (1, 0, 1)
    assert puts(synced, "/v1/supplierInvoice/000005") == 1
    assert synced.visma.supplier_invoice("000005")["note"].count(receipt_marker(item)) == 1


def test_a_receipt_whose_link_was_lost_is_not_written_twice(synced: Desk) -> None:
    item = item_of(synced, INVOICE_BOARD, "000006")
    synced.monday.mark_received(item)
    ref = f"{INVOICE_BOARD}:{item}"
    synced.receive([ref])
    synced.ledger.forget_link("visma_monday.receipts", ref)  # e.g. the run died after the PUT
    outcome = synced.receive([ref])
    assert (outcome.applied, outcome.already) == (0, 1)
    assert synced.visma.supplier_invoice("000006")["note"].count(receipt_marker(item)) == 1


class EditedMeanwhile:
    """A Visma client under which someone edits the document right after each of the first ``times`` reads."""

    def __init__(self, inner: VismaClient, edit: Any, times: int = 1) -> None:
        self.inner, self.edit, self.times = inner, edit, times

    def get(self, *args: Any, **kwargs: Any) -> Any:
        answer = self.inner.get(*args, **kwargs)
        if self.times:
            self.times -= 1
            self.edit()
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_etag_conflict_reads_the_document_again_and_re_applies(synced: Desk) -> None:
    item = item_of(synced, INVOICE_BOARD, "000007")
    synced.monday.mark_received(item)
    with in_process_client(synced.visma) as client:
        racing = EditedMeanwhile(client, lambda: synced.visma.update_supplier_invoice("000007", note="Call the supplier"))
        outcome = synced.receive([f"{INVOICE_BOARD}:{item}"], visma=racing)  # type: ignore[arg-type]
    note = synced.visma.supplier_invoice("000007")["note"]
    assert (outcome.conflicts, outcome.applied) == (1, 1)
    assert note.startswith("Call the supplier\n") and receipt_marker(item) in note  # their edit kept, ours added
    assert puts(synced, "/v1/supplierInvoice/000007") == 2  # 412, then the re-applied PUT


def test_a_document_that_keeps_changing_becomes_a_dead_letter(synced: Desk) -> None:
    item = item_of(synced, INVOICE_BOARD, "000008")
    synced.monday.mark_received(item)
    ref = f"{INVOICE_BOARD}:{item}"
    with in_process_client(synced.visma) as client:
        racing = EditedMeanwhile(client, lambda: synced.visma.update_supplier_invoice("000008", description="x"), times=9)
        outcome = synced.receive([ref], visma=racing)  # type: ignore[arg-type]
    [letter] = letters_of(synced, ref)
    assert outcome.failed == 1 and "412" in letter.error
    assert synced.receive([ref]).applied == 1  # the replay: the document has settled
    assert letters_of(synced, ref) == []


def test_an_item_no_longer_received_writes_nothing(synced: Desk) -> None:
    item = item_of(synced, INVOICE_BOARD, "000009")
    synced.monday.mark_received(item)
    synced.monday.set_column_value(item, "Status", {"label": "Approved"})  # undone before the run
    outcome = synced.receive([f"{INVOICE_BOARD}:{item}"])
    assert (outcome.applied, outcome.not_received) == (0, 1)
    assert not synced.visma.supplier_invoice("000009").get("note")


def test_an_item_without_a_visma_id_is_a_dead_letter_naming_why(synced: Desk) -> None:
    item = item_of(synced, INVOICE_BOARD, "000011")
    synced.monday.set_column_value(item, "Visma ID", None)
    synced.monday.mark_received(item)
    outcome = synced.receive([f"{INVOICE_BOARD}:{item}"])
    [letter] = letters_of(synced, f"{INVOICE_BOARD}:{item}")
    assert outcome.failed == 1 and "no Visma id" in letter.error


# -- the sensor and the job, over the wire -----------------------------------------------------------


def monday_event(d: Desk, board: int, item: str, label: str, event_id: str) -> dict[str, Any]:
    """A ``change_status_column_value`` event as monday delivers it (and the receiver stores it)."""
    column = next(c.id for c in d.monday.tenant.boards[board].columns if c.title == "Status")
    return {"event": {"type": "update_column_value", "boardId": board, "pulseId": int(item), "columnId": column,
                      "value": {"label": {"index": 1, "text": label}}, "triggerUuid": event_id}}


def tick(d: Desk, resources: dict[str, Any], cursor: str | None, *, poll_interval_seconds: float = 0) -> Any:
    job = build_receipts_job(d.settings)
    sensor = build_receipt_sensor(d.settings, job, RECEIPTS_OP, lookback=timedelta(days=1),
                                  poll_interval_seconds=poll_interval_seconds)
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        return sensor.evaluate_tick(context)


def test_the_sensor_requests_each_receipt_once_from_the_poll_and_the_webhooks(synced: Desk,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    polled = item_of(synced, INVOICE_BOARD, "000012")
    hinted = item_of(synced, PO_BOARD, "PO000002")
    monkeypatch.setenv("MONDAY_API_TOKEN", synced.monday.api_token)
    with served(synced.monday) as server:
        resources = {"monday": MondayResource(base_url=server.base_url, api_token=dg.EnvVar("MONDAY_API_TOKEN"),
                                              rate_per_s=1000, burst=1000),
                     "ledger": LedgerResource(db_url=str(synced.ledger.engine.url))}  # fmt: skip
        synced.monday.mark_received(polled)
        first = tick(synced, resources, None)
        synced.monday.mark_received(hinted)
        synced.ledger.append_inbox("monday", "evt-1", monday_event(synced, PO_BOARD, hinted, "Received", "evt-1"))
        synced.ledger.append_inbox("monday", "evt-2", monday_event(synced, PO_BOARD, hinted, "Received", "evt-2"))  # retried
        second = tick(synced, resources, first.cursor)
        third = tick(synced, resources, second.cursor)
    [one], [two] = first.run_requests, second.run_requests
    assert f"{INVOICE_BOARD}:{polled}" in one.run_config["ops"][RECEIPTS_OP]["config"]["items"]
    # polled and announced twice by webhook (a retried delivery): requested once
    assert two.run_config["ops"][RECEIPTS_OP]["config"]["items"] == [f"{PO_BOARD}:{hinted}"]
    assert not third.run_requests
    assert invalid_documents(synced.monday) == {}


def _resources(d: Desk, base_url: str) -> dict[str, Any]:
    return {"monday": MondayResource(base_url=base_url, api_token=dg.EnvVar("MONDAY_API_TOKEN"), rate_per_s=1000,
                                     burst=1000),
            "ledger": LedgerResource(db_url=str(d.ledger.engine.url))}  # fmt: skip


def test_between_polls_a_tick_with_no_webhook_asks_monday_nothing(synced: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONDAY_API_TOKEN", synced.monday.api_token)
    with served(synced.monday) as server:
        first = tick(synced, _resources(synced, server.base_url), None, poll_interval_seconds=60)
        synced.monday.requests.clear()
        second = tick(synced, _resources(synced, server.base_url), first.cursor, poll_interval_seconds=60)
    assert synced.monday.requests == []
    assert not second.run_requests


def test_between_polls_a_webhooks_receipt_is_requested_in_the_fast_lane(synced: Desk,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    hinted = item_of(synced, PO_BOARD, "PO000003")  # not received yet in the module's desk
    monkeypatch.setenv("MONDAY_API_TOKEN", synced.monday.api_token)
    with served(synced.monday) as server:
        first = tick(synced, _resources(synced, server.base_url), None, poll_interval_seconds=60)
        synced.monday.mark_received(hinted)
        synced.ledger.append_inbox("monday", "evt-lane", monday_event(synced, PO_BOARD, hinted, "Received", "evt-lane"))
        second = tick(synced, _resources(synced, server.base_url), first.cursor, poll_interval_seconds=60)
    [request] = second.run_requests
    assert request.run_config["ops"][RECEIPTS_OP]["config"]["items"] == [f"{PO_BOARD}:{hinted}"]
    assert request.tags.get("ml_connector/lane") == "webhook"


def test_the_receipts_job_writes_the_requested_receipts(synced: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    item = item_of(synced, INVOICE_BOARD, "000013")
    synced.monday.mark_received(item)
    use_demo_credentials(monkeypatch)
    monkeypatch.setenv("MONDAY_API_TOKEN", synced.monday.api_token)
    with served(synced.monday) as monday_server, served(synced.visma) as visma_server:
        result = build_receipts_job(synced.settings).execute_in_process(
            run_config={"ops": {RECEIPTS_OP: {"config": {"items": [f"{INVOICE_BOARD}:{item}"]}}}},
            resources={"monday": MondayResource(base_url=monday_server.base_url, api_token=dg.EnvVar("MONDAY_API_TOKEN"),
                                                rate_per_s=1000, burst=1000),
                       "visma": visma_resource(visma_server.base_url),
                       "ledger": LedgerResource(db_url=str(synced.ledger.engine.url))},
        )  # fmt: skip
    [output] = [e for e in result.all_events if e.is_successful_output]
    assert result.success and output.step_output_data.metadata["applied"].value == 1
    assert receipt_marker(item) in synced.visma.supplier_invoice("000013")["note"]


def test_receipt_webhooks_are_subscribed_once_and_their_events_announce_receipts(tmp_path: Path) -> None:
    holder: dict[str, MondaySimulator] = {}
    receiver = VerifyingReceiver(DEMO_SIGNING_SECRET, lambda: holder["sim"].now())
    with desk(tmp_path, monday={"webhook_transport": receiver.transport, "time_scale": 0.001}) as d:
        holder["sim"] = d.monday
        d.land("purchase_orders")
        d.sync("purchase_orders")
        with d.board_client() as client:
            boards = receipt_boards(client, d.settings)
            first = ensure_receipt_webhooks(client, boards, "https://connector.example/webhooks/monday")
            again = ensure_receipt_webhooks(client, boards, "https://connector.example/webhooks/monday")
        item = item_of(d, PO_BOARD, "PO000003")
        d.monday.mark_received(item)
        assert d.monday.flush_webhooks()
        for event in receiver.events:
            d.ledger.append_inbox("monday", str(event["triggerUuid"]), {"event": event})
        announced = list(announced_receipts(d.ledger.inbox_after(0, system="monday"), boards, "Received"))
    assert len(first) == 2 and [hook.id for hook in again] == [hook.id for hook in first]  # one per received column
    assert len(receiver.challenges) == 2
    assert announced == [f"{PO_BOARD}:{item}"]


@given(note=st.none() | st.text(max_size=80), item=st.from_regex(r"\A[0-9]{1,12}\Z"))
def test_a_note_takes_the_receipt_line_once_and_keeps_what_it_held(note: str | None, item: str) -> None:
    line = f"Received 2026-11-22 {receipt_marker(item)} on 'Board'"
    once = appended_once(note, line, receipt_marker(item))
    assert once is not None and once.endswith(line) and once.startswith((note or "").rstrip())
    assert appended_once(once, line, receipt_marker(item)) is None
