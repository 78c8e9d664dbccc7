"""Near-real-time sync, end to end: Visma webhook -> receiver -> inbox -> inbox sensor -> fetch-by-id run -> Jira.

The Visma and Jira simulators and the receiver are served on 127.0.0.1; the code location is the
real one (``build_definitions``) for a visma + jira config, and its sensors are ticked by hand, as
the daemon would: each tick's run requests are executed in-process, once per run key (the daemon
dedupes run keys the same way). Destination state is read from the Jira simulator's
``/_sandbox/state`` only. The poll sensor starts from a cursor at "now", as after the initial
backfill: only what a test changes is new to it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.config import ConnectorConfig, parse_config
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.definitions import build_definitions, use_sandbox_credentials
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jira import JiraSimulator
from ml_connector_dagster.sandbox.serve import ServedApp, served
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.sensors.poll import PollCursor
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.visma.client import VismaClient, VismaEntity
from ml_connector_dagster.systems.visma.models import as_update_dto
from ml_connector_dagster.webhooks.configured import configured_receiver

VISMA_ID_FIELD = "customfield_10040"  # "Visma ID" on the simulated site
INBOX = "inbox_sensor"
POLL = "visma_supplier_invoices_poll"
SUPPLIER = "10001"


def stack_config(visma_url: str, jira_url: str) -> ConnectorConfig:
    """visma + jira in sandbox mode, the visma_jira flow on; no overlap, so a poll run reads only the new change."""
    unlimited = {"rate_per_s": 10_000, "burst": 10_000}
    return parse_config({
        "sandbox": {"days": 1, "size": 20},
        "poll_interval_s": 30,
        "systems": {
            "visma": {"mode": "sandbox", "base_url": visma_url, "token_url": f"{visma_url}/connect/token",
                      "overlap_s": 0, **unlimited},
            "jira": {"mode": "sandbox", "base_url": jira_url, "auth_url": jira_url, **unlimited},
        },
        "flows": {"visma_jira": {"op_retries": 0, "jira_webhooks": {"enabled": False}}},
        # Ticks are evaluated by hand here: an empty one need not watch the inbox (see test_inbox_watch.py).
        "webhooks": {"inbox_wait_s": 0},
    })  # fmt: skip


@dataclass
class Stack:
    """The served simulators and receiver, the code location, and a Dagster instance ticked by hand."""

    visma: VismaSimulator
    visma_url: str
    jira_url: str
    receiver_url: str
    defs: dg.Definitions
    instance: dg.DagsterInstance
    cursors: dict[str, str | None] = field(default_factory=dict)
    launched: set[str] = field(default_factory=set)

    # -- Visma, as its users and its webhook dispatcher ------------------------------------------
    def create_invoice(self, description: str) -> str:
        """``POST /v1/supplierInvoice`` through the API; the simulator then emits its webhook."""
        with VismaClient.build(
            base_url=self.visma_url, token_url=f"{self.visma_url}/connect/token",
            client_id=os.environ["VISMA_CLIENT_ID"], client_secret=os.environ["VISMA_CLIENT_SECRET"],
            tenant_id=os.environ["VISMA_TENANT_ID"],
        ) as client:  # fmt: skip
            body = as_update_dto({"supplierNumber": SUPPLIER, "description": description, "documentType": "Invoice"})
            return client.create(VismaEntity.SUPPLIER_INVOICE, body)

    def deliver(self) -> None:
        """Let every queued webhook reach the receiver (a held-back, reordered one last)."""
        assert self.visma.flush_webhooks(10), "webhook deliveries did not finish"

    def delivery_outcomes(self) -> list[str]:
        return [delivery["outcome"] for delivery in self.visma.deliveries]

    def receiver_counter(self, outcome: str) -> int:
        stats = httpx.get(f"{self.receiver_url}/webhooks/_stats", timeout=10).json()
        return stats["counters"].get("visma", {}).get(outcome, 0)

    # -- Dagster, as its daemon would --------------------------------------------------------------
    def tick(self, sensor_name: str) -> list[dg.RunRequest]:
        """One evaluation of a sensor of the code location; its cursor is kept for the next tick."""
        sensor = self.defs.get_repository_def().get_sensor_def(sensor_name)
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursors.get(sensor_name), definitions=self.defs,
            resources=self.defs.resources,
        ) as context:  # fmt: skip
            data = sensor.evaluate_tick(context)
        self.cursors[sensor_name] = data.cursor
        return list(data.run_requests or [])

    def launch(self, requests: list[dg.RunRequest], sensor_name: str) -> int:
        """Execute each request not launched before (the daemon dedupes run keys); how many ran."""
        job = self.defs.resolve_implicit_global_asset_job_def()
        graph = self.defs.resolve_asset_graph()
        target = self.defs.get_repository_def().get_sensor_def(sensor_name).asset_selection
        ran = 0
        for request in requests:
            if request.run_key in self.launched:
                continue
            selection = request.asset_selection or (target.resolve(graph) if target is not None else None)
            result = job.execute_in_process(
                run_config=request.run_config, partition_key=request.partition_key,
                asset_selection=list(selection or []), instance=self.instance, tags=request.tags,
            )  # fmt: skip
            assert result.success
            if request.run_key is not None:
                self.launched.add(request.run_key)
            ran += 1
        return ran

    def sync(self, sensor_name: str) -> int:
        """Tick ``sensor_name`` and run what it requests; the number of runs."""
        return self.launch(self.tick(sensor_name), sensor_name)

    # -- Jira, as its simulator shows it ----------------------------------------------------------
    def jira_state(self) -> dict[str, Any]:
        return httpx.get(f"{self.jira_url}/_sandbox/state", timeout=10).json()

    def issues_of(self, number: str) -> list[dict[str, Any]]:
        """The issues carrying supplier invoice ``number``'s Visma ID (two would be a duplicate)."""
        visma_id = f"supplierInvoice/{number}"
        return [issue for issue in self.jira_state()["issues"] if issue["fields"].get(VISMA_ID_FIELD) == visma_id]

    def the_issue_of(self, number: str) -> dict[str, Any]:
        issues = self.issues_of(number)
        assert len(issues) == 1, f"{len(issues)} issues for invoice {number}"
        return issues[0]

    def comments_on(self, issue_key: str) -> list[str]:
        return [adf.plain_text(c["body"]) for c in self.jira_state()["comments"] if c["issueKey"] == issue_key]


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", ledger_url)
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    visma, jira = VismaSimulator(size=20, days=1), JiraSimulator()
    try:
        with served(visma) as visma_server, served(jira) as jira_server:
            jira.site_url = jira_server.base_url
            config = stack_config(visma_server.base_url, jira_server.base_url)
            demo: dict[str, str] = {}
            use_sandbox_credentials(config, demo)
            for name, value in demo.items():  # through monkeypatch, so the test leaves the environment as it was
                monkeypatch.setenv(name, value)
            ledger = Ledger.open(ledger_url)
            receiver = ServedApp(configured_receiver(config, ledger), "webhook receiver").start()
            visma.webhook_url = f"{receiver.base_url}/webhooks/visma"
            try:
                with dg.instance_for_test() as instance:
                    stack = Stack(visma, visma_server.base_url, jira_server.base_url, receiver.base_url,
                                  build_definitions(config), instance)
                    # The initial backfill has settled: the poll sensor has seen everything until now.
                    stack.cursors[POLL] = PollCursor(watermark=datetime.now(UTC)).to_json()
                    yield stack
            finally:
                receiver.stop()
                ledger.dispose()
    finally:
        visma.close()
        jira.close()


# -- (a) the fast path ------------------------------------------------------------------------------


def test_an_invoice_created_in_visma_becomes_one_jira_issue_through_its_webhook(stack: Stack) -> None:
    number = stack.create_invoice("Forklift service")
    stack.deliver()

    assert stack.delivery_outcomes() == ["delivered"]
    assert stack.receiver_counter("stored") == 1
    [request] = stack.tick(INBOX)
    assert request.run_config == {"ops": {"visma__supplier_invoices": {"config": {"ids": [number]}}}}
    assert {key.to_user_string() for key in request.asset_selection or []} >= {
        "visma/supplier_invoices", "jira/visma_invoice_issues"}
    assert stack.launch([request], INBOX) == 1

    issue = stack.the_issue_of(number)
    assert issue["fields"]["summary"].startswith(f"Invoice {number} ")


def test_the_inbox_sensor_requests_nothing_more_once_its_events_are_synced(stack: Stack) -> None:
    number = stack.create_invoice("Pallet wrap")
    stack.deliver()
    stack.sync(INBOX)

    assert stack.tick(INBOX) == []
    assert len(stack.issues_of(number)) == 1


# -- (b) a dropped webhook --------------------------------------------------------------------------


def test_a_dropped_webhook_is_caught_by_the_poll_sensor_and_still_becomes_one_issue(stack: Stack) -> None:
    stack.visma.set_faults(FaultPlan(webhook_drop_rate=1))
    number = stack.create_invoice("Hydraulic oil")
    stack.deliver()

    assert stack.delivery_outcomes() == ["dropped"]
    assert stack.tick(INBOX) == []
    assert stack.sync(POLL) == 1
    assert len(stack.issues_of(number)) == 1
    assert stack.sync(POLL) == 0
    assert len(stack.issues_of(number)) == 1


# -- (c) duplicates, reordering, late arrival: one destination change each -------------------------


def test_a_duplicated_delivery_is_stored_once_and_makes_one_issue(stack: Stack) -> None:
    stack.visma.set_faults(FaultPlan(webhook_duplicate_rate=1))
    number = stack.create_invoice("Safety gloves")
    stack.deliver()

    assert stack.delivery_outcomes() == ["delivered", "delivered"]
    assert (stack.receiver_counter("stored"), stack.receiver_counter("duplicate")) == (1, 1)
    assert stack.sync(INBOX) == 1
    assert len(stack.issues_of(number)) == 1


def test_an_update_delivered_before_its_create_ends_in_one_issue_with_the_latest_state(stack: Stack) -> None:
    stack.visma.set_faults(FaultPlan(webhook_reorder_rate=1))
    number = stack.create_invoice("Conveyor belt")  # held back ...
    stack.visma.update_supplier_invoice(number, description="Conveyor belt, 12 m")  # ... and overtaken
    stack.deliver()

    inbox = [payload["event"] for payload in _inbox_payloads(stack)]
    assert inbox == ["SupplierInvoice.Updated", "SupplierInvoice.Created"]
    assert stack.sync(INBOX) == 1
    issue = stack.the_issue_of(number)
    assert "Conveyor belt, 12 m" in adf.plain_text(issue["fields"]["description"])
    assert stack.comments_on(issue["key"]) == []


def test_a_webhook_arriving_after_the_poll_synced_its_record_changes_nothing(stack: Stack) -> None:
    stack.visma.set_faults(FaultPlan(webhook_reorder_rate=1))
    number = stack.create_invoice("Welding wire")  # its webhook is held back
    assert stack.sync(POLL) == 1
    issue = stack.the_issue_of(number)

    stack.deliver()  # the late webhook
    assert stack.sync(INBOX) == 1

    assert stack.the_issue_of(number) == issue
    assert stack.comments_on(issue["key"]) == []


def test_one_update_seen_by_a_duplicated_webhook_and_by_the_poll_makes_one_comment(stack: Stack) -> None:
    number = stack.create_invoice("Compressor filter")
    stack.deliver()
    stack.sync(INBOX)
    stack.sync(POLL)  # the poll sees the create too, and changes nothing
    key = stack.the_issue_of(number)["key"]

    stack.visma.set_faults(FaultPlan(webhook_duplicate_rate=1))
    stack.visma.update_supplier_invoice(number, description="Compressor filter, 2 pcs")
    stack.deliver()
    stack.sync(INBOX)
    stack.sync(POLL)

    [comment] = stack.comments_on(key)
    assert "Compressor filter, 2 pcs" in comment
    assert len(stack.issues_of(number)) == 1


# -- (d) Dagster down ---------------------------------------------------------------------------------


def test_events_received_while_dagster_was_down_are_all_synced_on_the_next_tick(stack: Stack) -> None:
    numbers = [stack.create_invoice(f"Spare part {n}") for n in range(3)]
    stack.visma.update_supplier_invoice(numbers[0], description="Spare part 0, urgent")
    stack.deliver()  # the receiver stored them; no sensor ticked meanwhile
    assert stack.receiver_counter("stored") == 4

    assert stack.sync(INBOX) == 1  # one day's invoices: one fetch-by-id run

    for number in numbers:
        assert len(stack.issues_of(number)) == 1
    first = stack.the_issue_of(numbers[0])
    assert "Spare part 0, urgent" in adf.plain_text(first["fields"]["description"])
    assert stack.tick(INBOX) == []


def _inbox_payloads(stack: Stack) -> list[dict[str, Any]]:
    with Ledger.open() as ledger:
        return [event.payload for event in ledger.inbox_after(0, system="visma", unprocessed_only=False)]
