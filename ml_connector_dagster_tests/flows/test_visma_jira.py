"""Visma supplier invoices and POs -> Jira issues, end to end over the wire.

Both simulators are served on 127.0.0.1; the Visma one is pinned to yesterday evening so every
generated record (and every edit a test makes) falls in one daily partition. The Jira search
index lags far behind by default (``index_delay_s``), so every test also shows that nothing relies
on a search seeing what was just written.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from ml_connector_dagster.assets.visma import VISMA_SOURCES, visma_source_assets
from ml_connector_dagster.config import VismaJiraFilters, VismaJiraFlow
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows import visma_jira_plan
from ml_connector_dagster.flows.visma_jira import (
    INVOICES,
    POOL,
    PURCHASE_ORDERS,
    build_visma_jira,
    dry_run_config,
)
from ml_connector_dagster.flows.visma_jira_plan import Action
from ml_connector_dagster.flows.visma_jira_push import AUDIT_WAITING
from ml_connector_dagster.flows.visma_jira_render import facts_of, format_money
from ml_connector_dagster.partition_audits import audit_schedules
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sandbox import jira as jira_sandbox
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jira import JiraSimulator
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.sensors.visma import visma_poll_sensor
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.jira.client import JiraClient
from ml_connector_dagster.systems.jira.resource import JiraResource
from ml_connector_dagster.systems.visma.models import parse_utc
from ml_connector_dagster_tests.visma_sandbox import sandbox_config, use_demo_credentials, visma_resource

VISMA_ID = "customfield_10040"
AMOUNT = "customfield_10042"
CURRENCY = "customfield_10043"
PO_REFERENCE = "customfield_10045"
STATUS_MAP = {"Open": "To Do", "Balanced": "In Review", "Released": "Approved", "Closed": "Done"}
ASSIGNABLE = "5f8a1c2e9b3d4e0012a7c3f1"  # Lars Nyström, a user of the simulated site
BULK = r"/issue/bulk$"


def flow(**overrides: Any) -> VismaJiraFlow:
    """The flow as a test configures it: quick step retries, every optional field mapped."""
    settings: dict[str, Any] = {
        "status_map": STATUS_MAP, "op_retries": 0, "op_retry_delay_s": 0.2,
        "po_reference_field": "PO Reference", "currency_field": "Currency", **overrides,
    }
    return VismaJiraFlow(**settings)


@dataclass
class World:
    visma: VismaSimulator
    jira: JiraSimulator
    visma_url: str
    jira_url: str
    partition: str
    ledger_url: str

    def resources(self, *, timeout_s: float = 10.0) -> dict[str, Any]:
        jira = JiraResource(
            sandbox=True, base_url=self.jira_url, auth_url=self.jira_url, rate_per_s=10_000, burst=10_000,
            timeout_s=timeout_s, client_id=dg.EnvVar("JIRA_CLIENT_ID"),
            client_secret=dg.EnvVar("JIRA_CLIENT_SECRET"), refresh_token=dg.EnvVar("JIRA_REFRESH_TOKEN"),
        )  # fmt: skip
        return {"visma": visma_resource(self.visma_url), "ledger": LedgerResource(), "jira": jira}

    def sources(self) -> dict[str, dg.AssetsDefinition]:
        settings = sandbox_config(self.visma_url).systems.visma
        assert settings is not None
        return {asset.key.path[-1]: asset for asset in visma_source_assets(settings)}

    def run(self, settings: VismaJiraFlow, kind: Any = INVOICES, *, run_config: dict[str, Any] | None = None,
            timeout_s: float = 10.0, land: bool = True, also_land: Sequence[str] = (),
            instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
        """Materialize the kind's source (``land``), the ``also_land`` sources and the kind's issues for
        the partition, with the check (on ``instance``, by default a new ephemeral one)."""
        parts = build_visma_jira(settings, sandbox_config(self.visma_url).systems.visma)  # type: ignore[arg-type]
        index = 0 if kind is INVOICES else 1
        source = "supplier_invoices" if kind is INVOICES else "purchase_orders"
        selection = [self.sources()[name] for name in ([source] if land else []) + list(also_land)]
        return dg.materialize(
            [*selection, parts.assets[index], parts.asset_checks[index]], partition_key=self.partition,
            resources=self.resources(timeout_s=timeout_s), instance=instance or dg.DagsterInstance.ephemeral(),
            run_config=run_config, raise_on_error=False,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        return httpx.get(f"{self.jira_url}/_sandbox/state", timeout=10).json()

    def issues(self) -> dict[str, list[dict[str, Any]]]:
        """Issues of the FIN project by Visma ID (a list: a duplicate would show as two)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for issue in self.state()["issues"]:
            visma_id = issue["fields"].get(VISMA_ID)
            if visma_id:
                found.setdefault(visma_id, []).append(issue)
        return found

    def comments(self, key: str) -> list[str]:
        return [adf.plain_text(c["body"]) for c in self.state()["comments"] if c["issueKey"] == key]

    def landed(self, entity: str) -> list[LandedRecord]:
        with Ledger.open(self.ledger_url) as ledger:
            return [r for chunk in LandingStore(ledger).iter_partition("visma", entity, self.partition) for r in chunk]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", ledger_url)
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    use_demo_credentials(monkeypatch)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    visma = VismaSimulator(size=30, days=0.9, start=midnight - timedelta(hours=2))
    jira = JiraSimulator(index_delay_s=1000)
    monkeypatch.setenv("JIRA_CLIENT_ID", jira_sandbox.DEMO_CLIENT_ID)
    monkeypatch.setenv("JIRA_CLIENT_SECRET", jira_sandbox.DEMO_APP_SECRET)
    monkeypatch.setenv("JIRA_REFRESH_TOKEN", jira.demo_refresh_token)
    try:
        with served(visma) as visma_server, served(jira) as jira_server:
            jira.site_url = jira_server.base_url
            yield World(visma, jira, visma_server.base_url, jira_server.base_url,
                        (midnight - timedelta(days=1)).date().isoformat(), ledger_url)
    finally:
        visma.close()
        jira.close()


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    assert len(events) == 1, f"{asset} was not materialized once"
    return {key: value.value for key, value in events[0].step_materialization_data.materialization.metadata.items()}


def check_of(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def synced_then_ledger_lost(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Sync the partition, let Jira's index catch up, then point the connector at an empty ledger;
    the issues by Visma ID."""
    world.run(flow())
    before = world.issues()
    world.jira.reindex()
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", f"sqlite:///{tmp_path / 'a-fresh-ledger.db'}")
    return before


# -- a partition sync ------------------------------------------------------------------------------


def test_a_partition_sync_creates_one_issue_per_invoice_with_its_fields(world: World) -> None:
    result = world.run(flow())

    assert result.success
    invoices = {r.record_id: r.payload for r in world.landed("supplierInvoice")}
    issues = world.issues()
    assert sorted(issues) == sorted(f"supplierInvoice/{number}" for number in invoices)
    assert all(len(found) == 1 for found in issues.values())
    assert metadata(result, INVOICES.asset)["created"] == len(invoices)
    number, invoice = next((n, i) for n, i in sorted(invoices.items()) if any(line.get("poNumber")
                                                                               for line in i["invoiceLines"]))
    fields = issues[f"supplierInvoice/{number}"][0]["fields"]
    assert fields["summary"].startswith(f"Invoice {number} – {invoice['supplier']['name']} – ")
    assert fields["summary"].endswith(f" {invoice['currencyId']}")
    assert fields[AMOUNT] == pytest.approx(invoice["amount"])
    assert fields[CURRENCY] == invoice["currencyId"]
    assert fields[PO_REFERENCE] == invoice["invoiceLines"][0]["poNumber"]
    assert fields["duedate"] == invoice["dueDate"][:10]
    assert invoice["supplier"]["name"].replace(" ", "_") in fields["labels"]
    adf.validate(fields["description"])
    facts = facts_of(fields["description"])
    assert facts["Visma ID"] == f"supplierInvoice/{number}"
    modified = parse_utc(invoice["lastModifiedDateTime"]).isoformat(timespec="milliseconds")
    assert facts["Last modified in Visma"] == modified.replace("+00:00", "Z")
    assert str(invoice["invoiceLines"][0]["lineNumber"]) in facts["Line items"]


def test_a_synced_issue_is_in_the_jira_status_its_visma_status_maps_to(world: World) -> None:
    world.run(flow())

    invoices = {r.record_id: r.payload for r in world.landed("supplierInvoice")}
    issues = world.issues()
    for number, invoice in invoices.items():
        (issue,) = issues[f"supplierInvoice/{number}"]
        assert issue["fields"]["status"]["name"] == STATUS_MAP.get(invoice["status"], "To Do")


def test_a_second_run_while_the_search_index_lags_creates_nothing(world: World) -> None:
    world.run(flow())
    before = {key: [i["key"] for i in found] for key, found in world.issues().items()}

    again = world.run(flow())

    assert again.success
    assert {key: [i["key"] for i in found] for key, found in world.issues().items()} == before
    figures = metadata(again, INVOICES.asset)
    assert (figures["created"], figures["updated"], figures["skipped"]) == (0, 0, len(before))


def test_issues_unknown_to_the_ledger_are_adopted_not_created_again(world: World, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    before = synced_then_ledger_lost(world, tmp_path, monkeypatch)

    result = world.run(flow())

    assert result.success
    assert {k: len(v) for k, v in world.issues().items()} == {k: 1 for k in before}
    figures = metadata(result, INVOICES.asset)
    assert (figures["created"], figures["linked"], figures["commented"]) == (0, len(before), 0)


def test_records_new_to_the_ledger_are_looked_up_by_the_push_once_each_not_by_the_plan(world: World) -> None:
    result = world.run(flow())

    assert result.success
    plan = result.output_for_node("jira__visma_invoice_issues.plan_invoice_issues")
    created = metadata(result, INVOICES.asset)["created"]
    # Lookups by external id; the reconciliation check's searches name the issues they reconcile.
    searches = [r for r in world.jira.requests
                if r.method == "POST" and r.path.endswith("/search/jql") and not r.body.get("reconcileIssues")]
    assert created > 0 and plan.unchecked_creates() == plan.count(Action.CREATE) == created
    assert len(searches) == math.ceil(created / 100)  # one search per 100 external ids, made by the push


def test_a_dry_run_shows_issues_unknown_to_the_ledger_as_links_not_creates(world: World, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    before = synced_then_ledger_lost(world, tmp_path, monkeypatch)

    result = world.run(flow(), run_config=dry_run_config(INVOICES))

    assert result.success
    figures = metadata(result, INVOICES.asset)
    assert (figures["would_create"], figures["would_link"]) == (0, len(before))
    assert {k: len(v) for k, v in world.issues().items()} == {k: 1 for k in before}


def test_an_adoption_moves_an_issue_from_its_real_status_not_the_lagging_search_s(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world.run(flow())
    world.jira.reindex()
    number = next(r.record_id for r in world.landed("supplierInvoice") if r.payload["status"] == "Open")
    (issue,) = world.issues()[f"supplierInvoice/{number}"]
    key = issue["key"]
    world.jira.set_status(key, "Done")  # after the index caught up: every search still says To Do (Open)
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", f"sqlite:///{tmp_path / 'a-fresh-ledger.db'}")

    result = world.run(flow())

    assert result.success
    assert world.jira.issue(key)["fields"]["status"]["name"] == "To Do"
    assert metadata(result, INVOICES.asset)["transitioned"] == 1


def test_an_update_in_visma_becomes_one_comment_and_a_transition(world: World) -> None:
    world.run(flow())
    number = next(r.record_id for r in world.landed("supplierInvoice") if r.payload["status"] == "Open")
    world.visma.update_supplier_invoice(number, status="Released", amount=12500.0)

    result = world.run(flow())
    world.run(flow())

    assert result.success
    figures = metadata(result, INVOICES.asset)
    assert (figures["updated"], figures["commented"], figures["transitioned"]) == (1, 1, 1)
    (issue,) = world.issues()[f"supplierInvoice/{number}"]
    assert issue["fields"]["status"]["name"] == "Approved"  # To Do -> In Review -> Approved
    assert issue["fields"][AMOUNT] == 12500.0
    (comment,) = [c for c in world.comments(issue["key"]) if "Updated in Visma" in c]
    assert "Status: Open → Released" in comment
    assert "Amount:" in comment and "12 500,00" in comment


def test_an_updates_change_comment_goes_out_without_reading_the_issues_comments_first(world: World) -> None:
    world.run(flow())
    number = next(r.record_id for r in world.landed("supplierInvoice") if r.payload["status"] == "Open")
    world.visma.update_supplier_invoice(number, amount=4321.0)
    world.jira.requests.clear()

    result = world.run(flow())

    assert metadata(result, INVOICES.asset)["commented"] == 1
    assert not [r for r in world.jira.requests if r.method == "GET" and r.path.endswith("/comment")]


def test_a_worker_that_died_after_posting_a_change_comment_leaves_no_second_one(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    world.run(flow())
    number = next(r.record_id for r in world.landed("supplierInvoice") if r.payload["status"] == "Open")
    world.visma.update_supplier_invoice(number, amount=4321.0)

    def dies(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the worker died between the comment and the field update")

    with monkeypatch.context() as patched:
        patched.setattr(JiraClient, "update_issue", dies)
        died = world.run(flow())
    world.run(flow())

    assert not died.success

    (issue,) = world.issues()[f"supplierInvoice/{number}"]
    assert issue["fields"][AMOUNT] == 4321.0
    assert sum("Updated in Visma" in c for c in world.comments(issue["key"])) == 1


def test_changes_scattered_over_the_day_are_looked_up_in_jira_together_not_once_per_chunk(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    world.run(flow())
    monkeypatch.setattr(visma_jira_plan, "CHUNK", 5)  # the day's 30 invoices in six chunks
    numbers = [r.record_id for r in world.landed("supplierInvoice")][::7][:4]  # four of them
    for number in numbers:
        world.visma.update_supplier_invoice(number, amount=777.0)
    world.jira.requests.clear()

    result = world.run(flow())

    assert metadata(result, INVOICES.asset)["updated"] == 4
    # The plan's look-ups read the issues' fields; the audit's searches count the external id only.
    lookups = [r for r in world.jira.requests if r.method == "POST" and r.path.endswith("/search/jql")
               and len(r.body.get("fields", [])) > 1]
    assert len(lookups) == 1


def test_filters_are_counted_per_reason_and_filtered_records_get_no_issue(world: World) -> None:
    orders = world.visma.tables["purchase_orders"]
    rendered = [world.visma.purchase_order(orders.number(seq)) for seq in orders.seqs()]
    excluded_supplier = rendered[0]["supplier"]["number"]
    settings = flow(filters=VismaJiraFilters(po_statuses=["Open", "Balanced"], suppliers_exclude=[excluded_supplier],
                                             min_amount=2000))

    result = world.run(settings, PURCHASE_ORDERS)

    assert result.success
    landed = [r.payload for r in world.landed("purchaseorder")]
    expected: dict[str, int] = {}
    eligible = set()
    for order in landed:
        if order["supplier"]["number"] == excluded_supplier:
            reason = "supplier_excluded"
        elif order["orderTotal"] < 2000:
            reason = "below_min_amount"
        elif order["status"] not in ("Open", "Balanced"):
            reason = "po_status"
        else:
            eligible.add(f"purchaseorder/{order['orderNbr']}")
            continue
        expected[reason] = expected.get(reason, 0) + 1
    figures = metadata(result, PURCHASE_ORDERS.asset)
    assert {k.removeprefix("filtered_"): v for k, v in figures.items() if k.startswith("filtered_")} == expected
    assert figures["filtered"] == sum(expected.values())
    assert set(world.issues()) == eligible
    assert check_of(result).passed


# -- failures, retries, exactly once ---------------------------------------------------------------


def test_a_refused_element_becomes_a_dead_letter_and_replay_after_the_fix_resolves_it(world: World) -> None:
    invalid = {number for _, number, _ in world.visma.invalid_records()}
    visma_state = httpx.get(f"{world.visma_url}/_sandbox/state", timeout=10).json()
    supplier = next(i["supplier"]["number"] for i in visma_state["supplier_invoices"] if i["referenceNumber"] not in invalid)
    broken = flow(supplier_as="assignee", supplier_assignees={supplier: "no-such-account"})

    result = world.run(broken)

    assert result.success
    invoices = world.landed("supplierInvoice")
    refused = sorted(r.record_id for r in invoices if r.payload["supplier"]["number"] == supplier)
    assert refused and metadata(result, INVOICES.asset)["failed"] == len(refused)
    assert set(world.issues()) == {f"supplierInvoice/{r.record_id}" for r in invoices if r.record_id not in refused}
    with Ledger.open(world.ledger_url) as ledger:
        letters = ledger.open_dead_letters(INVOICES.asset)
    assert sorted(letter.source_id for letter in letters) == refused
    assert all("assignee" in letter.error and letter.record["supplier"]["number"] == supplier for letter in letters)

    fixed = flow(supplier_as="assignee", supplier_assignees={supplier: ASSIGNABLE})
    replay = build_visma_jira(fixed, sandbox_config(world.visma_url).systems.visma).jobs[0]  # type: ignore[arg-type]
    outcome = replay.execute_in_process(resources=world.resources(), instance=dg.DagsterInstance.ephemeral())

    assert outcome.success
    with Ledger.open(world.ledger_url) as ledger:
        assert ledger.open_dead_letters(INVOICES.asset) == []
    for number in refused:
        (issue,) = world.issues()[f"supplierInvoice/{number}"]
        assert issue["fields"]["assignee"]["accountId"] == ASSIGNABLE


def test_a_create_whose_answer_was_lost_is_not_sent_again_within_the_window(world: World) -> None:
    world.jira.set_faults(FaultPlan(timeout_after_rate=1, paths=[BULK], methods=["POST"], hang_s=0.8))

    first = world.run(flow(), timeout_s=0.5)
    world.jira.clear_faults()
    second = world.run(flow())  # the search still cannot see the issues: wait, do not create
    invoices = world.landed("supplierInvoice")
    with Ledger.open(world.ledger_url) as ledger:
        in_doubt = ledger.pending_links(INVOICES.flow)
    world.jira.reindex()
    third = world.run(flow())

    assert not first.success and not second.success
    assert len(in_doubt) == len(invoices)
    assert third.success
    assert {k: len(v) for k, v in world.issues().items()} == {f"supplierInvoice/{r.record_id}": 1 for r in invoices}
    assert metadata(third, INVOICES.asset)["linked"] == len(invoices)
    assert check_of(third).passed


def test_past_the_window_a_lost_create_is_looked_up_before_being_sent_again(world: World) -> None:
    world.jira.set_faults(FaultPlan(timeout_after_rate=1, paths=[BULK], methods=["POST"], hang_s=0.8))
    settings = flow(consistency_window_s=0.1)
    world.run(settings, timeout_s=0.5)
    world.jira.clear_faults()
    world.jira.reindex()
    time.sleep(0.2)

    result = world.run(settings)

    assert result.success
    assert all(len(found) == 1 for found in world.issues().values())
    assert len(world.issues()) == len(world.landed("supplierInvoice"))


def test_past_the_window_a_create_that_never_arrived_is_sent_once(world: World) -> None:
    world.jira.set_faults(FaultPlan(timeout_before_rate=1, paths=[BULK], methods=["POST"], hang_s=0.8))
    settings = flow(consistency_window_s=0.1)
    first = world.run(settings, timeout_s=0.5)
    world.jira.clear_faults()
    time.sleep(0.2)

    second = world.run(settings)

    assert not first.success and second.success
    assert world.issues() and all(len(found) == 1 for found in world.issues().values())
    assert metadata(second, INVOICES.asset)["created"] == len(world.landed("supplierInvoice"))


def test_the_steps_retry_finds_a_lost_create_once_the_search_catches_up(world: World) -> None:
    world.jira.index_delay_s = 1.0
    world.jira.set_faults(FaultPlan(timeout_after_rate=1, paths=[BULK], methods=["POST"], hang_s=0.8))

    result = world.run(flow(op_retries=4, op_retry_delay_s=0.5), timeout_s=0.5)

    assert result.success
    assert all(len(found) == 1 for found in world.issues().values())
    assert metadata(result, INVOICES.asset)["created"] == len(world.landed("supplierInvoice"))


# -- dry run, audit, reconciliation ----------------------------------------------------------------


def test_a_dry_run_writes_nothing_and_lists_the_planned_actions(world: World) -> None:
    result = world.run(flow(), run_config=dry_run_config(INVOICES))

    assert result.success
    assert world.issues() == {}
    figures = metadata(result, INVOICES.asset)
    assert figures["dry_run"] is True
    rows = [row.data for row in figures["plan"].records]
    invoices = world.landed("supplierInvoice")
    assert sorted(r["visma_id"] for r in rows if r["action"] == "create") == sorted(
        f"supplierInvoice/{r.record_id}" for r in invoices)
    assert figures["would_create"] == len(invoices)


def test_the_plan_step_logs_every_record_planned_and_the_count_of_each_action(world: World) -> None:
    invoices = httpx.get(f"{world.visma_url}/_sandbox/state", timeout=10).json()["supplier_invoices"]
    amounts = sorted(abs(invoice["amount"]) for invoice in invoices)
    # A threshold mid-way: the plan holds filtered records and creates left in the landing store alike.
    settings = flow(filters=VismaJiraFilters(min_amount=amounts[len(amounts) // 2]))
    instance = dg.DagsterInstance.ephemeral()

    result = world.run(settings, run_config=dry_run_config(INVOICES), instance=instance)

    assert result.success
    step = "jira__visma_invoice_issues.plan_invoice_issues"
    plan = result.output_for_node(step)
    (line,) = [entry.user_message for entry in instance.all_logs(result.run_id)
               if entry.step_key == step and " records, " in entry.user_message]  # fmt: skip
    total, counts = re.fullmatch(r".*: (\d+) records, (.*)", line).groups()  # type: ignore[union-attr]
    logged = {action: int(count) for action, count in (item.split(" ") for item in counts.split(", "))}
    assert logged == {action.value: plan.count(action) for action in Action}
    assert logged["create"] > 0 and logged["filtered"] > 0
    assert int(total) == sum(logged.values()) == len(world.landed("supplierInvoice"))


def test_a_supplier_payment_made_after_the_issue_exists_becomes_one_audit_comment_with_its_amount(
    world: World,
) -> None:
    world.run(flow())
    invoice = next(r.payload for r in world.landed("supplierInvoice")
                   if r.payload["status"] == "Open" and r.payload["balance"] == r.payload["amount"])  # fmt: skip
    number, currency = invoice["referenceNumber"], invoice["currencyId"]
    payment = world.visma.pay_supplier_invoices({number: 1000.0}, payment_ref="KID 1234567890")
    by_webhook = {"ops": {"visma__supplier_payments": {"config": {"ids": [payment["refNbr"]]}}}}

    polled = world.run(flow(), also_land=["supplier_payments"])
    fetched_by_id = world.run(flow(), also_land=["supplier_payments"], run_config=by_webhook)
    polled_again = world.run(flow(), also_land=["supplier_payments"])

    assert polled.success and fetched_by_id.success and polled_again.success
    (issue,) = world.issues()[f"supplierInvoice/{number}"]
    (audit,) = [c for c in world.comments(issue["key"]) if f"Payment {payment['refNbr']}" in c]
    assert f"Paid on this invoice | {format_money(Decimal('1000.00'), currency)}" in audit
    remaining = Decimal(str(invoice["balance"])) - 1000
    assert f"Invoice balance after payment | {format_money(remaining, currency)}" in audit
    assert "KID 1234567890" in audit and "Read-only copy of a Visma record" in audit
    assert metadata(fetched_by_id, INVOICES.asset)["audit_commented"] == 0
    assert metadata(polled_again, INVOICES.asset)["audit_commented"] == 0


def test_generated_supplier_payments_of_the_day_comment_once_on_each_invoice_they_settle(world: World) -> None:
    first = world.run(flow(), also_land=["supplier_payments"])
    again = world.run(flow(), also_land=["supplier_payments"])

    issues = world.issues()
    settled = [(p.payload["refNbr"], line["invoiceRefNbr"]) for p in world.landed("supplierPayment")
               for line in p.payload.get("paymentLines", [])
               if f"supplierInvoice/{line['invoiceRefNbr']}" in issues]  # fmt: skip
    assert settled and metadata(first, INVOICES.asset)["audit_commented"] >= len(settled)
    for payment, invoice in settled:
        (issue,) = issues[f"supplierInvoice/{invoice}"]
        assert sum(f"Payment {payment}" in c for c in world.comments(issue["key"])) == 1
    assert metadata(again, INVOICES.asset)["audit_commented"] == 0


def test_a_payment_whose_invoice_gets_its_issue_in_a_later_run_without_it_is_commented_then(world: World) -> None:
    # The invoices are filtered out at first, so their payments' audit comments have no issue to go on.
    waiting = world.run(flow(filters=VismaJiraFilters(min_amount=10**12)), also_land=["supplier_payments"])
    payment, number = next((p.payload["refNbr"], line["invoiceRefNbr"]) for p in world.landed("supplierPayment")
                           for line in p.payload.get("paymentLines", []))  # fmt: skip
    # As when the invoice's issue is made by another day's run: that run's partition holds no payment.
    with Ledger.open(world.ledger_url) as ledger, ledger.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM landed_records WHERE entity = 'supplierPayment'"))

    later = world.run(flow())
    again = world.run(flow())

    assert waiting.success and metadata(waiting, INVOICES.asset)["audit_waiting"] > 0
    assert later.success and metadata(later, INVOICES.asset)["audit_commented"] >= 1
    (issue,) = world.issues()[f"supplierInvoice/{number}"]
    assert sum(f"Payment {payment}" in c for c in world.comments(issue["key"])) == 1
    assert metadata(again, INVOICES.asset)["audit_commented"] == 0


def test_audit_comments_waiting_for_an_invoice_that_gets_no_issue_are_not_written_again_by_every_run(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    filtered = flow(filters=VismaJiraFilters(min_amount=10**12))  # no invoice gets an issue
    first = world.run(filtered, also_land=["supplier_payments"])
    writes: list[str] = []
    set_state = Ledger.set_state

    def counted(ledger: Ledger, key: str, value: str) -> None:
        writes.append(key)
        set_state(ledger, key, value)

    monkeypatch.setattr(Ledger, "set_state", counted)

    again = world.run(filtered, land=False)

    waiting = metadata(first, INVOICES.asset)["audit_waiting"]
    assert waiting > 0 and metadata(again, INVOICES.asset)["audit_waiting"] == waiting
    assert not [key for key in writes if key.startswith(AUDIT_WAITING)]


def test_the_invoice_issues_read_gl_batches_and_supplier_payments_not_customer_payments(world: World) -> None:
    parts = build_visma_jira(flow(), sandbox_config(world.visma_url).systems.visma)  # type: ignore[arg-type]
    invoice_issues = next(iter(parts.assets[0].specs))
    upstream = {dep.asset_key.to_user_string() for dep in invoice_issues.deps}
    assert upstream == {"visma/supplier_invoices", "visma/gl_transactions", "visma/supplier_payments"}


def test_the_supplier_payments_poll_sensor_runs_the_invoice_issues_with_them(world: World) -> None:
    settings = sandbox_config(world.visma_url).systems.visma
    assert settings is not None
    sources = world.sources()
    parts = build_visma_jira(flow(), settings)
    source = next(source for source in VISMA_SOURCES if source.name == "supplier_payments")
    sensor = visma_poll_sensor(source, sources["supplier_payments"], settings, lookback=timedelta(days=1),
                               minimum_interval_seconds=30)
    graph = dg.Definitions(assets=[*sources.values(), *parts.assets], resources=world.resources()).resolve_asset_graph()

    selected = {key.to_user_string() for key in sensor.job.selection.resolve(graph)}

    assert selected == {"visma/supplier_payments", "jira/visma_invoice_issues"}


def test_reconciliation_passes_after_sync_and_fails_with_error_for_a_planted_duplicate(world: World) -> None:
    synced = world.run(flow())
    visma_id, (original,) = next(iter(world.issues().items()))
    httpx.post(
        f"{world.jira_url}/rest/api/3/issue",
        auth=(jira_sandbox.DEMO_EMAIL, jira_sandbox.DEMO_API_TOKEN), timeout=10,
        json={"fields": {"project": {"key": "FIN"}, "issuetype": {"name": "Task"}, "summary": "Copied by hand",
                         VISMA_ID: visma_id}},
    ).raise_for_status()
    world.jira.reindex()

    checked = world.run(flow(), land=False)

    assert check_of(synced).passed
    evaluation = check_of(checked)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["duplicates"].value == 1


def test_the_daily_audit_of_a_synced_day_writes_nothing_to_jira_and_passes(world: World) -> None:
    synced = world.run(flow())
    assert synced.success
    parts = build_visma_jira(flow(), sandbox_config(world.visma_url).systems.visma)  # type: ignore[arg-type]
    audits = audit_schedules([*world.sources().values(), *parts.assets], parts.asset_checks, at=time_of_day(1, 15))
    definitions = dg.Definitions(assets=[*world.sources().values(), *parts.assets], asset_checks=parts.asset_checks,
                                 jobs=audits.jobs, resources=world.resources())
    world.jira.requests.clear()

    audited = definitions.resolve_job_def("reconcile_visma_jira").execute_in_process(
        partition_key=world.partition, instance=dg.DagsterInstance.ephemeral())

    assert audited.success
    assert {(e.asset_key.to_user_string(), e.check_name, e.passed) for e in audited.get_asset_check_evaluations()} == {
        (INVOICES.asset, "reconciled", True), (PURCHASE_ORDERS.asset, "reconciled", True)}
    # Nothing new to plan: the only API calls (sign-in aside) are the audit's searches and the field list.
    calls = {(r.method, r.path.rsplit("/", 1)[-1]) for r in world.jira.requests if "/rest/api/" in r.path}
    assert calls <= {("POST", "jql"), ("GET", "field")}
    assert ("POST", "jql") in calls
    assert metadata(audited, INVOICES.asset)["created"] == 0


# -- the definitions -------------------------------------------------------------------------------


def test_both_destinations_come_from_one_factory_with_the_dagster_conventions(world: World) -> None:
    visma_settings = sandbox_config(world.visma_url).systems.visma
    assert visma_settings is not None
    parts = build_visma_jira(flow(op_retries=3), visma_settings)
    sources = world.sources()
    defs = dg.Definitions(assets=[*sources.values(), *parts.assets], asset_checks=parts.asset_checks,
                          jobs=parts.jobs, resources=world.resources())
    dg.Definitions.validate_loadable(defs)
    for asset, source in zip(parts.assets, ("supplier_invoices", "purchase_orders"), strict=True):
        spec = next(iter(asset.specs))
        assert spec.group_name == "visma_jira" and spec.kinds == {"visma", "jira"}
        assert dg.AssetKey(["visma", source]) in {dep.asset_key for dep in spec.deps}
        assert asset.partitions_def is sources[source].partitions_def
        ops = asset.node_def.node_defs
        assert [op.name.split("_", 1)[0] for op in ops] == ["plan", "push"]
        assert all(op.pool == POOL and op.retry_policy.max_retries == 3 for op in ops)
    assert {check.name for checks in parts.asset_checks for check in checks.check_specs} == {"reconciled"}
    assert parts.jobs[0].name == "visma_jira_replay"
