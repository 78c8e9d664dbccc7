"""Acumatica exceptions -> Jira issues, and Jira resolutions -> Release in Acumatica, over the wire.

The Acumatica and Jira simulators are served on 127.0.0.1; the Acumatica one is pinned to
yesterday evening, so every document (and every edit a test makes) falls in one daily partition.
Jira's search index lags far behind (``index_delay_s``) unless a test lets it catch up, so nothing
relies on a search seeing what was just written. Destination state is read from the simulators.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.assets.acumatica import ACUMATICA_SOURCES, acumatica_source_assets
from ml_connector_dagster.config import AcumaticaJiraFlow, parse_config
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows import acumatica_jira_issues
from ml_connector_dagster.flows.acumatica_jira import (
    ACTION_RETRY,
    GROUP,
    POOL,
    RELEASE_JOB,
    build_acumatica_jira,
    dry_run_config,
)
from ml_connector_dagster.flows.acumatica_jira_issues import (
    ASSET,
    SOURCES,
    plan_partitions,
    plan_records,
    push_plan,
)
from ml_connector_dagster.flows.acumatica_jira_release import release_resolved
from ml_connector_dagster.flows.acumatica_jira_resolutions import ResolutionCursor
from ml_connector_dagster.flows.jira_destination import Action, PushOutcome
from ml_connector_dagster.launcher import FAST_LANE_TAGS
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sandbox import jira as jira_sandbox
from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator, Licence
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jira import JiraSimulator
from ml_connector_dagster.sandbox.serve import ServedApp, served
from ml_connector_dagster.systems.acumatica.models import from_wire
from ml_connector_dagster.systems.acumatica.resource import AcumaticaResource
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.jira.resource import JiraResource
from ml_connector_dagster.webhooks.configured import configured_receiver
from ml_connector_dagster_tests.acumatica_sandbox import use_demo_credentials, value

EXTERNAL_ID = "customfield_10041"  # "External ID" on the simulated site
AMOUNT = "customfield_10042"
VENDOR = "customfield_10047"
SENSOR = "acumatica_jira_resolutions"
EXPAND = {source.entity: source.expand for source in ACUMATICA_SOURCES}


def flow(**overrides: Any) -> AcumaticaJiraFlow:
    """The flow as a test configures it: quick retries, quick polls of a running release."""
    settings: dict[str, Any] = {"op_retries": 0, "op_retry_delay_s": 0.1, "action_poll_s": 0.05,
                                "action_timeout_s": 10, **overrides}  # fmt: skip
    return AcumaticaJiraFlow(**settings)


@dataclass
class World:
    acumatica: AcumaticaSimulator
    jira: JiraSimulator
    acumatica_url: str
    jira_url: str
    receiver_url: str
    partition: str
    ledger_url: str

    # -- Dagster --------------------------------------------------------------------------------
    def resources(self, *, acumatica_timeout_s: float = 10.0) -> dict[str, Any]:
        jira = JiraResource(
            sandbox=True, base_url=self.jira_url, auth_url=self.jira_url, rate_per_s=10_000, burst=10_000,
            client_id=dg.EnvVar("JIRA_CLIENT_ID"), client_secret=dg.EnvVar("JIRA_CLIENT_SECRET"),
            refresh_token=dg.EnvVar("JIRA_REFRESH_TOKEN"),
        )  # fmt: skip
        acumatica = AcumaticaResource(
            base_url=self.acumatica_url, sandbox=True, rate_per_s=10_000, burst=10_000, timeout_s=acumatica_timeout_s,
            client_id=dg.EnvVar("ACUMATICA_CLIENT_ID"), client_secret=dg.EnvVar("ACUMATICA_CLIENT_SECRET"),
            username=dg.EnvVar("ACUMATICA_USERNAME"), password=dg.EnvVar("ACUMATICA_PASSWORD"),
        )  # fmt: skip
        return {"jira": jira, "acumatica": acumatica, "ledger": LedgerResource()}

    def definitions(self, settings: AcumaticaJiraFlow, *, poll_interval_s: float = 0, wait_for_events_s: float = 0,
                    **resources: Any) -> dg.Definitions:
        """The flow's definitions; the resolution sensor polls Jira every ``poll_interval_s`` (0: every tick)
        and a tick that finds nothing watches the inbox for ``wait_for_events_s``."""
        acumatica = parse_config({"systems": {"acumatica": {"base_url": self.acumatica_url}}}).systems.acumatica
        assert acumatica is not None
        parts = build_acumatica_jira(settings, acumatica, lookback=timedelta(days=1),
                                     poll_interval_seconds=poll_interval_s, wait_for_events_s=wait_for_events_s)
        return dg.Definitions(assets=[*acumatica_source_assets(acumatica), *parts.assets], jobs=parts.jobs,
                              asset_checks=parts.asset_checks, sensors=parts.sensors,
                              resources={**self.resources(), **resources})

    def sync(self, settings: AcumaticaJiraFlow, *, run_config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
        """Land the partition's bills, POs and payments and materialize their issues."""
        defs = self.definitions(settings)
        job = defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(partition_key=self.partition, instance=dg.DagsterInstance.ephemeral(),
                                      run_config=run_config, raise_on_error=False)

    def release(self, settings: AcumaticaJiraFlow, issues: list[str], *,
                acumatica_timeout_s: float = 10.0) -> dg.ExecuteInProcessResult:
        """One run of the release job for ``issues``."""
        defs = self.definitions(settings, **self.resources(acumatica_timeout_s=acumatica_timeout_s))
        return defs.get_job_def(RELEASE_JOB).execute_in_process(
            run_config={"ops": {"release_resolved_documents": {"config": {"issues": issues}}}},
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        )  # fmt: skip

    def _resolved(self, **options: Any) -> dict[str, Any]:
        # Outside a run nothing resolves EnvVars: the resources get the variables' values.
        return {name: resource.model_copy(update={
            field: value.get_value() for field, value in resource.__dict__.items() if isinstance(value, dg.EnvVar)
        }) for name, resource in self.resources(**options).items()}  # fmt: skip

    def push_now(self, settings: AcumaticaJiraFlow) -> PushOutcome:
        """The partition read from Acumatica, planned and pushed to Jira without a Dagster run."""
        resources = self._resolved()
        with resources["jira"].client() as jira, resources["acumatica"].client() as acumatica, \
                Ledger.open(self.ledger_url) as ledger:  # fmt: skip
            chunks = [(source, [LandedRecord(record_id=raw["id"], payload=from_wire(raw), partition_key=self.partition)
                                for page in acumatica.iter_pages(source.entity, expand=EXPAND[source.entity])
                                for raw in page]) for source in SOURCES]  # fmt: skip
            plan = plan_records(chunks, partition_key=self.partition, client=jira, ledger=ledger, settings=settings)
            return push_plan(plan, client=jira, ledger=ledger, settings=settings, run_id="test", log=_Quiet())

    def release_now(self, settings: AcumaticaJiraFlow, issues: list[str], *, timeout_s: float = 10.0) -> Any:
        """The return path called directly (no Dagster run): what a step attempt does."""
        resources = self._resolved(acumatica_timeout_s=timeout_s)
        with resources["jira"].client() as jira, resources["acumatica"].client(retry=ACTION_RETRY) as acumatica, \
                Ledger.open(self.ledger_url) as ledger:  # fmt: skip
            return release_resolved(issues, jira=jira, acumatica=acumatica, ledger=ledger, settings=settings,
                                    run_id="test", log=_Quiet())

    # -- the simulators, as their users and as they show their state ---------------------------
    def issues(self) -> dict[str, list[dict[str, Any]]]:
        """ACU issues by external id (a list: a duplicate would show as two)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for issue in httpx.get(f"{self.jira_url}/_sandbox/state", timeout=10).json()["issues"]:
            if issue["fields"].get(EXTERNAL_ID):
                found.setdefault(issue["fields"][EXTERNAL_ID], []).append(issue)
        return found

    def the_issue_of(self, external_id: str) -> dict[str, Any]:
        (issue,) = self.issues()[external_id]
        return issue

    def comments(self, key: str) -> list[str]:
        state = httpx.get(f"{self.jira_url}/_sandbox/state", timeout=10).json()
        return [adf.plain_text(c["body"]) for c in state["comments"] if c["issueKey"] == key]

    def releases_of(self, record_id: str) -> int:
        return sum(1 for op in self.acumatica.operations.values() if op.record_id == record_id)

    def small_balanced_bill(self) -> dict[str, Any]:
        """A balanced NOK bill under the approval limit: off hold, it can be released at once."""
        for reference in self.acumatica.references("Bill", status="Balanced"):
            bill = self.acumatica.bill(reference)
            if value(bill, "CurrencyID") == "NOK" and value(bill, "Amount") < 50_000:
                return bill
        raise AssertionError("the demo tenant has no small balanced NOK bill")

    def exceptional(self) -> set[str]:
        """External ids of the documents the default rules name."""
        wanted = {"Bill": {"On Hold"}, "PurchaseOrder": {"Pending Approval", "Rejected"}, "Payment": {"On Hold"}}
        return {f"{entity}/{'Normal' if entity == 'PurchaseOrder' else entity}/{number}"
                for entity, number, status in self.acumatica.exception_documents() if status in wanted[entity]}


class _Quiet:
    def info(self, *_: Any) -> None: ...
    def warning(self, *_: Any) -> None: ...


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", ledger_url)
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    use_demo_credentials(monkeypatch)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    acumatica = AcumaticaSimulator(size=24, days=0.9, start=midnight - timedelta(hours=2), action_duration_s=0.2,
                                   licence=Licence("Unlimited", api_users=None))
    jira = JiraSimulator(index_delay_s=1000)
    monkeypatch.setenv("JIRA_CLIENT_ID", jira_sandbox.DEMO_CLIENT_ID)
    monkeypatch.setenv("JIRA_CLIENT_SECRET", jira_sandbox.DEMO_APP_SECRET)
    monkeypatch.setenv("JIRA_REFRESH_TOKEN", jira.demo_refresh_token)
    monkeypatch.setenv("JIRA_WEBHOOK_SECRET", jira_sandbox.DEMO_WEBHOOK_SECRET)
    ledger = Ledger.open(ledger_url)
    try:
        with served(acumatica) as acumatica_server, served(jira) as jira_server:
            jira.site_url = jira_server.base_url
            config = parse_config({"systems": {"jira": {"base_url": jira_server.base_url}}})
            receiver = ServedApp(configured_receiver(config, ledger), "webhook receiver").start()
            jira.add_admin_webhook(f"{receiver.base_url}/webhooks/jira")
            try:
                yield World(acumatica, jira, acumatica_server.base_url, jira_server.base_url, receiver.base_url,
                            (midnight - timedelta(days=1)).date().isoformat(), ledger_url)
            finally:
                receiver.stop()
    finally:
        ledger.dispose()
        acumatica.close()
        jira.close()


def metadata(result: dg.ExecuteInProcessResult, asset: str = ASSET) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    assert len(events) == 1, f"{asset} was not materialized once"
    return {key: value.value for key, value in events[0].step_materialization_data.materialization.metadata.items()}


def tick(defs: dg.Definitions, cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
    """One evaluation of the resolution sensor, as the daemon would run it."""
    sensor = defs.get_repository_def().get_sensor_def(SENSOR)
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor, definitions=defs,
                                 resources=defs.resources) as context:  # fmt: skip
        data = sensor.evaluate_tick(context)
    return list(data.run_requests or []), data.cursor


def resolve(world: World, key: str) -> None:
    """A user resolves the issue in Jira; its webhook reaches the receiver and the inbox."""
    world.jira.resolve_issue(key)
    assert world.jira.flush_webhooks(10)


def hold_a_bill(world: World, reason: str = "Venter på følgeseddel") -> str:
    """A user puts a small balanced bill on hold; its external id."""
    reference = value(world.small_balanced_bill(), "ReferenceNbr")
    world.acumatica.put_bill_on_hold(reference, reason)
    return f"Bill/Bill/{reference}"


def issue_of_a_held_bill(world: World, settings: AcumaticaJiraFlow) -> tuple[str, str]:
    """A user holds a bill and a sync opens its issue: (external id, issue key)."""
    external_id = hold_a_bill(world)
    world.push_now(settings)
    return external_id, world.the_issue_of(external_id)["key"]


def resolved_issue_of_a_held_bill(world: World, settings: AcumaticaJiraFlow,
                                  resolution: str = "Done") -> tuple[str, str]:
    """The issue of a held bill, which a user has since resolved in Jira: (external id, issue key)."""
    external_id, key = issue_of_a_held_bill(world, settings)
    world.jira.resolve_issue(key, resolution=resolution)
    return external_id, key


def bill_of(world: World, external_id: str) -> dict[str, Any]:
    """The bill an external id names, as Acumatica shows it now."""
    return world.acumatica.bill(external_id.rsplit("/", 1)[1])


# -- Acumatica -> Jira ------------------------------------------------------------------------------


def test_each_document_needing_attention_gets_one_issue_with_reference_vendor_and_amount(world: World) -> None:
    result = world.sync(flow())
    again = world.sync(flow())  # the search index still lags: nothing may be created twice

    assert result.success and again.success
    issues = world.issues()
    assert set(issues) == world.exceptional() and all(len(found) == 1 for found in issues.values())
    assert metadata(result)["created"] == len(issues) and metadata(again)["created"] == 0
    assert [check.passed for check in again.get_asset_check_evaluations()] == [True]
    number = next(external_id for external_id in issues if external_id.startswith("Bill/")).rsplit("/", 1)[1]
    bill = world.acumatica.bill(number)
    fields = issues[f"Bill/Bill/{number}"][0]["fields"]
    assert fields["summary"].startswith(f"Bill {number} – {value(bill, 'Vendor')} – ")
    assert fields["summary"].endswith(f" {value(bill, 'CurrencyID')}")
    assert fields[AMOUNT] == pytest.approx(value(bill, "Amount")) and fields[VENDOR] == value(bill, "Vendor")
    adf.validate(fields["description"])
    assert "When this issue is resolved: ml-connector releases the bill" in adf.plain_text(fields["description"])


def test_documents_new_to_the_ledger_are_looked_up_in_full_searches_across_chunks(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(acumatica_jira_issues, "CHUNK", 3)  # many chunks, a few exceptions in each
    result = world.sync(flow())

    assert result.success
    created = metadata(result)["created"]
    # Lookups by external id; the reconciliation check's searches name the issues they reconcile.
    searches = [r for r in world.jira.requests
                if r.method == "POST" and r.path.endswith("/search/jql") and not r.body.get("reconcileIssues")]
    assert created == len(world.exceptional()) > 3
    assert len(searches) == math.ceil(created / 100)


def test_a_backfills_plan_keeps_its_creates_as_ids_and_the_push_renders_them_from_the_landing(world: World) -> None:
    result = world.sync(flow())

    assert result.success
    plan = result.output_for_node("jira__acumatica_exception_issues.plan_acumatica_exception_issues")
    assert not [record for record in plan.records if record.action is Action.CREATE]
    assert {create.external_id for create in plan.stored_creates} == world.exceptional() == set(world.issues())
    assert plan.count(Action.CREATE) == metadata(result)["created"]


def test_a_stored_create_whose_document_left_its_exception_before_the_push_is_not_created(world: World) -> None:
    external_id = hold_a_bill(world)
    assert world.sync(flow(), run_config=dry_run_config()).success  # lands the partition, writes nothing
    with Ledger.open(world.ledger_url) as ledger, world._resolved()["jira"].client() as jira:
        plan = plan_partitions([world.partition], client=jira, ledger=ledger, settings=flow())
        (held,) = [create for create in plan.stored_creates if create.external_id == external_id]
        # Before the push, a later run lands the bill taken off hold again.
        store = LandingStore(ledger)
        landed = store.get_many("acumatica", held.entity, [held.record_id])[held.record_id]
        released = {**landed.payload, "Hold": False, "Status": "Balanced"}
        store.land("acumatica", held.entity, [landed.model_copy(update={"payload": released})])
        outcome = push_plan(plan, client=jira, ledger=ledger, settings=flow(), run_id="test", log=_Quiet())

    assert external_id not in world.issues() and held.record_id in outcome.succeeded
    assert outcome.created == len(plan.stored_creates) - 1


def test_the_plan_leaves_the_lookup_of_documents_new_to_the_ledger_to_the_push(world: World) -> None:
    assert world.sync(flow(), run_config=dry_run_config()).success  # lands the partition, writes nothing
    before = len(world.jira.requests)
    with Ledger.open(world.ledger_url) as ledger, world._resolved()["jira"].client() as jira:
        plan = plan_partitions([world.partition], client=jira, ledger=ledger, settings=flow())

    searches = [r for r in list(world.jira.requests)[before:] if r.path.endswith("/search/jql")]
    assert searches == [] and plan.stored_creates
    assert not any(create.checked for create in plan.stored_creates)


def test_issues_a_lost_ledger_no_longer_knows_are_found_and_linked_not_created_again(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert world.sync(flow()).success
    created = {external_id: [issue["key"] for issue in issues] for external_id, issues in world.issues().items()}
    world.jira.reindex()
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", f"sqlite:///{tmp_path / 'restored.db'}")  # the ledger is lost

    dry = world.sync(flow(), run_config=dry_run_config())
    again = world.sync(flow())

    assert dry.success and metadata(dry)["would_link"] == len(created) and metadata(dry)["would_create"] == 0
    assert again.success and metadata(again)["linked"] == len(created) and metadata(again)["created"] == 0
    assert {external_id: [issue["key"] for issue in issues] for external_id, issues in world.issues().items()} == created


def test_a_dry_run_writes_nothing_and_lists_the_issues_it_would_open(world: World) -> None:
    result = world.sync(flow(), run_config=dry_run_config())

    assert result.success and world.issues() == {}
    figures = metadata(result)
    assert figures["would_create"] == len(world.exceptional())
    assert {row.data["document"] for row in figures["plan"].records} == world.exceptional()


def test_a_change_becomes_a_comment_and_leaving_the_exception_one_closing_comment(world: World) -> None:
    external_id = hold_a_bill(world)
    reference = external_id.rsplit("/", 1)[1]
    world.push_now(flow())
    world.acumatica.update_bill(reference, Description="Følgeseddel mottatt")
    changed = world.push_now(flow())
    world.acumatica.update_bill(reference, Hold=False)  # balanced and small: it goes to Balanced
    closed = world.push_now(flow())
    again = world.push_now(flow())

    issue = world.the_issue_of(external_id)
    comments = world.comments(issue["key"])
    assert (changed.commented, closed.commented, again.commented) == (1, 1, 0)
    assert len(comments) == 2
    assert "Updated in Acumatica" in comments[0] and "Description: Venter på følgeseddel → Følgeseddel mottatt" in comments[0]
    assert "No longer needs attention in Acumatica" in comments[1] and "Status: On Hold → Balanced" in comments[1]
    assert "no longer needs attention" in adf.plain_text(issue["fields"]["description"])


# -- Jira -> Acumatica ------------------------------------------------------------------------------


def test_resolving_a_held_bills_issue_releases_the_bill_in_acumatica(world: World) -> None:
    settings = flow()
    external_id = hold_a_bill(world)
    synced = world.sync(settings)  # the poll sensors' run: the Acumatica sources and the issues
    key = world.the_issue_of(external_id)["key"]
    defs = world.definitions(settings)

    resolve(world, key)
    requests, cursor = tick(defs, None)  # the webhook's hint: Jira's index has not caught up yet
    (request,) = requests
    ran = defs.get_job_def(RELEASE_JOB).execute_in_process(run_config=request.run_config,
                                                           instance=dg.DagsterInstance.ephemeral())
    world.jira.reindex()
    later, _ = tick(defs, cursor)  # the poll now sees the resolution too: nothing more to do

    assert synced.success and ran.success and later == []
    bill = bill_of(world, external_id)
    assert value(bill, "Status") == "Open"
    (comment,) = world.comments(key)
    assert f"Bill {external_id.rsplit('/', 1)[1]} was released in Acumatica." in comment


def test_duplicate_resolution_events_release_the_bill_once(world: World) -> None:
    settings = flow()
    external_id, key = issue_of_a_held_bill(world, settings)
    defs = world.definitions(settings)
    resolve(world, key)
    world.jira.reindex()

    first, _ = tick(defs, None)  # webhook and poll both report it: one request
    lost_cursor, _ = tick(defs, None)  # a sensor whose cursor was lost asks again
    ran = defs.get_job_def(RELEASE_JOB).execute_in_process(run_config=first[0].run_config,
                                                           instance=dg.DagsterInstance.ephemeral())
    again = world.release_now(settings, [key])  # and the second request runs too
    after, _ = tick(defs, None)  # once handled, not even a sensor without a cursor asks again

    assert [request.run_config for request in first] == [{"ops": {"release_resolved_documents": {
        "config": {"issues": [world.the_issue_of(external_id)["id"]]}}}}]
    assert len(lost_cursor) == 1 and ran.success and again.counts == {"duplicate": 1} and after == []
    bill = bill_of(world, external_id)
    assert value(bill, "Status") == "Open" and world.releases_of(bill["id"]) == 1
    assert len(world.comments(key)) == 1


def test_a_resolution_whose_webhook_was_dropped_is_found_by_the_poll(world: World) -> None:
    settings = flow()
    external_id, key = issue_of_a_held_bill(world, settings)
    defs = world.definitions(settings)
    world.jira.set_faults(FaultPlan(webhook_drop_rate=1))
    resolve(world, key)

    unseen, cursor = tick(defs, None)  # no webhook, and Jira's index has not caught up yet
    world.jira.reindex()
    polled, cursor = tick(defs, cursor)
    repeated, _ = tick(defs, cursor)

    assert unseen == [] and repeated == []
    assert [request.run_config["ops"]["release_resolved_documents"]["config"]["issues"] for request in polled] == [
        [world.the_issue_of(external_id)["id"]]]


def _searches(world: World) -> int:
    return sum(1 for r in world.jira.requests if r.path.endswith("/search/jql"))


def test_between_polls_a_tick_reads_only_the_inbox_and_still_requests_the_webhooks_resolution(world: World) -> None:
    settings = flow()
    external_id, key = issue_of_a_held_bill(world, settings)
    defs = world.definitions(settings, poll_interval_s=3600)
    _, cursor = tick(defs, None)  # the first tick polls Jira
    searched = _searches(world)

    resolve(world, key)
    requests, _ = tick(defs, cursor)  # a second later: the webhook's hint, and no search

    assert [request.run_config["ops"]["release_resolved_documents"]["config"]["issues"] for request in requests] == [
        [world.the_issue_of(external_id)["id"]]]
    assert _searches(world) == searched


def test_a_tick_that_finds_nothing_watches_the_inbox_and_requests_a_resolution_reported_meanwhile(
    world: World,
) -> None:
    settings = flow()
    external_id, key = issue_of_a_held_bill(world, settings)
    defs = world.definitions(settings, poll_interval_s=3600, wait_for_events_s=20)
    cursor = ResolutionCursor(polled_at=time.time()).model_dump_json()  # Jira was polled a moment ago
    resolving = threading.Timer(0.5, resolve, (world, key))
    resolving.start()
    started = time.monotonic()
    try:
        requests, _ = tick(defs, cursor)  # watches the inbox until the webhook is there
    finally:
        resolving.join()

    assert [request.run_config["ops"]["release_resolved_documents"]["config"]["issues"] for request in requests] == [
        [world.the_issue_of(external_id)["id"]]]
    assert time.monotonic() - started < 10  # returned with the hint, not at the end of the watch


def test_the_poll_runs_again_once_its_interval_has_passed(world: World) -> None:
    settings = flow()
    defs = world.definitions(settings, poll_interval_s=3600)
    _, cursor = tick(defs, None)
    an_hour_ago = ResolutionCursor.model_validate_json(cursor or "{}").model_copy(
        update={"polled_at": time.time() - 3601})
    searched = _searches(world)

    _, after = tick(defs, an_hour_ago.model_dump_json())

    assert _searches(world) == searched + 1
    assert ResolutionCursor.model_validate_json(after or "{}").polled_at > an_hour_ago.polled_at


def test_a_resolution_a_webhook_reported_takes_the_run_queues_fast_lane(world: World) -> None:
    settings = flow()
    _, key = issue_of_a_held_bill(world, settings)
    defs = world.definitions(settings)
    resolve(world, key)

    (request,), _ = tick(defs, None)

    assert FAST_LANE_TAGS.items() <= request.tags.items() and request.tags["dagster/priority"] == "10"


def test_a_resolution_only_the_poll_found_waits_its_turn_in_the_queue(world: World) -> None:
    settings = flow()
    _, key = issue_of_a_held_bill(world, settings)
    defs = world.definitions(settings)
    world.jira.set_faults(FaultPlan(webhook_drop_rate=1))
    resolve(world, key)
    world.jira.reindex()

    (request,), _ = tick(defs, None)

    assert not FAST_LANE_TAGS.items() <= request.tags.items() and "dagster/priority" not in request.tags


def test_a_refused_release_comments_acumaticas_reason_once(world: World) -> None:
    reference = value(world.small_balanced_bill(), "ReferenceNbr")
    world.acumatica.mark_unbalanced(reference)  # its control total no longer matches its lines
    settings = flow()
    world.push_now(settings)
    unbalanced = f"Bill/Bill/{reference}"
    issue = world.the_issue_of(unbalanced)
    key = issue["key"]
    assert "Exception | bill unbalanced" in adf.plain_text(issue["fields"]["description"])
    world.jira.resolve_issue(key)

    report = world.release_now(settings, [key])
    world.release_now(settings, [key])

    bill = bill_of(world, unbalanced)
    assert report.counts == {"refused": 1} and value(bill, "Status") == "On Hold"
    assert world.releases_of(bill["id"]) == 0
    (comment,) = world.comments(key)
    assert "Acumatica refused to release" in comment and "Document is out of balance." in comment


def test_a_release_whose_answer_was_lost_is_not_sent_again(world: World) -> None:
    settings = flow()
    external_id, key = resolved_issue_of_a_held_bill(world, settings)
    world.acumatica.set_faults(FaultPlan(timeout_after_rate=1, paths=[r"/Bill/ReleaseBill$"], methods=["POST"],
                                         hang_s=1.0))

    lost = world.release_now(settings, [key], timeout_s=0.3)
    retried = world.release_now(settings, [key], timeout_s=0.3)  # the release has run meanwhile

    bill = bill_of(world, external_id)
    assert lost.in_doubt == [key] and retried.counts == {"already": 1}
    assert value(bill, "Status") == "Open" and world.releases_of(bill["id"]) == 1
    (comment,) = world.comments(key)
    assert "is already released in Acumatica; nothing was sent" in comment


def test_a_lost_release_still_running_is_waited_for_not_sent_again(world: World) -> None:
    settings = flow()
    external_id, key = resolved_issue_of_a_held_bill(world, settings)
    world.acumatica.action_duration_s = 30
    world.acumatica.set_faults(FaultPlan(timeout_after_rate=1, paths=[r"/Bill/ReleaseBill$"], methods=["POST"],
                                         hang_s=1.0))

    world.release_now(settings, [key], timeout_s=0.3)
    world.acumatica.clear_faults()
    retried = world.release_now(settings, [key])  # still Balanced: it may be running

    bill = bill_of(world, external_id)
    assert retried.in_doubt == [key] and world.releases_of(bill["id"]) == 1
    assert world.comments(key) == []


def test_an_interrupted_status_poll_is_followed_to_the_end_not_sent_again(world: World) -> None:
    settings = flow()
    external_id, key = resolved_issue_of_a_held_bill(world, settings)
    world.acumatica.action_duration_s = 600  # the release runs until the test lets it finish
    world.acumatica.set_faults(FaultPlan(timeout_before_rate=1, paths=[r"/ReleaseBill/status/"], methods=["GET"],
                                         hang_s=1.0))

    interrupted = world.release_now(settings, [key], timeout_s=0.3)
    world.acumatica.clear_faults()
    bill = bill_of(world, external_id)
    running = value(bill, "Status")
    with world.acumatica.lock:
        for operation in world.acumatica.operations.values():
            operation.due_at = world.acumatica.clock.time() + 0.3
    resumed = world.release_now(settings, [key])

    assert interrupted.in_doubt == [key] and running == "Balanced"
    assert resumed.counts == {"done": 1}
    bill = bill_of(world, external_id)
    assert value(bill, "Status") == "Open" and world.releases_of(bill["id"]) == 1
    (comment,) = world.comments(key)
    assert "was released in Acumatica" in comment


def test_a_wont_do_resolution_leaves_the_document_as_it_is(world: World) -> None:
    settings = flow()
    external_id, key = resolved_issue_of_a_held_bill(world, settings, resolution="Won't Do")

    report = world.release_now(settings, [key])

    bill = bill_of(world, external_id)
    assert report.counts == {"acknowledged": 1} and value(bill, "Status") == "On Hold"
    (comment,) = world.comments(key)
    assert "left as it is in Acumatica" in comment and "resolved as Won't Do" in comment


# -- the definitions --------------------------------------------------------------------------------


def test_the_flow_has_the_dagster_shape_of_a_jira_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    use_demo_credentials(monkeypatch)
    base_url = "http://127.0.0.1:1"
    acumatica = parse_config({"systems": {"acumatica": {"base_url": base_url}}}).systems.acumatica
    assert acumatica is not None
    parts = build_acumatica_jira(flow(op_retries=3), acumatica, lookback=timedelta(days=1))
    sources = acumatica_source_assets(acumatica)
    resources = World(None, None, base_url, base_url, base_url, "", "").resources()  # type: ignore[arg-type]
    dg.Definitions.validate_loadable(dg.Definitions(assets=[*sources, *parts.assets], asset_checks=parts.asset_checks,
                                                    jobs=parts.jobs, sensors=parts.sensors, resources=resources))
    (asset,) = parts.assets
    spec = next(iter(asset.specs))
    assert spec.key.to_user_string() == ASSET and spec.group_name == GROUP and spec.kinds == {"acumatica", "jira"}
    assert {dep.asset_key for dep in spec.deps} == {source.key for source in sources}
    assert asset.partitions_def is sources[0].partitions_def
    assert [op.name.split("_", 1)[0] for op in asset.node_def.node_defs] == ["plan", "push"]
    assert all(op.pool == POOL and op.retry_policy.max_retries == 3 for op in asset.node_def.node_defs)
    assert [job.name for job in parts.jobs] == [RELEASE_JOB] and [s.name for s in parts.sensors] == [SENSOR]
    assert [spec.name for check in parts.asset_checks for spec in check.check_specs] == ["reconciled"]
