"""The visma_asana assets, checks, job and sensor in Dagster, end to end over the wire.

The Visma and Asana simulators are served on 127.0.0.1; the Visma one is pinned to yesterday evening so every document falls in one daily partition.
Webhook deliveries go in-process to a real receiver on the same ledger the flow uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.assets.visma import visma_source_assets
from ml_connector_dagster.config import AsanaReturnPath, SupplierAssignee, VismaAsanaFlow
from ml_connector_dagster.core.kept_reference import KEPT_PREFIX
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.flows.visma_asana import (
    INVOICES,
    PURCHASE_ORDERS,
    RETURN_JOB,
    build_visma_asana,
    dry_run_config,
)
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sandbox.asana import AsanaSimulator
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.asana.resource import AsanaResource
from ml_connector_dagster.systems.asana.webhook import AsanaWebhookVerifier
from ml_connector_dagster.systems.visma.client import VismaEntity
from ml_connector_dagster.webhooks.receiver import build_receiver
from ml_connector_dagster_tests.asana_sandbox import RECEIVER_URL, Receiver
from ml_connector_dagster_tests.visma_asana_sandbox import visma_simulator
from ml_connector_dagster_tests.visma_sandbox import (
    in_process_client,
    sandbox_config,
    use_demo_credentials,
    visma_resource,
)

SOURCES = ("purchase_orders", "supplier_invoices", "gl_accounts", "dimensions")


def flow(**overrides: Any) -> VismaAsanaFlow:
    settings: dict[str, Any] = {
        "supplier_assignees": [SupplierAssignee(supplier="*logistikk*", member="lars.hansen@fjordlys.no")],
        "op_retries": 0, "return_path": AsanaReturnPath(enabled=True, receiver_url=RECEIVER_URL), **overrides,
    }  # fmt: skip
    return VismaAsanaFlow(**settings)


@dataclass
class World:
    visma: Any
    asana: AsanaSimulator
    visma_url: str
    asana_url: str
    partition: str
    ledger_url: str
    hooks: Receiver

    def resources(self) -> dict[str, Any]:
        asana = AsanaResource(base_url=self.asana_url, pat=dg.EnvVar("ASANA_PAT"), rate_per_s=10_000, burst=10_000)
        return {"visma": visma_resource(self.visma_url), "ledger": LedgerResource(), "asana": asana}

    def parts(self, settings: VismaAsanaFlow) -> Any:
        return build_visma_asana(settings, sandbox_config(self.visma_url).systems.visma, sandbox=True)  # type: ignore[arg-type]

    def run(self, settings: VismaAsanaFlow, *, everything: bool = True, run_config: dict[str, Any] | None = None) -> Any:
        """Materialize the sources, the reference options, both task assets and their checks (else: only POs)."""
        visma = sandbox_config(self.visma_url).systems.visma
        assert visma is not None
        wanted = SOURCES if everything else ("purchase_orders",)
        sources = [a for a in visma_source_assets(visma) if a.key.path[-1] in wanted]
        parts = self.parts(settings)
        selection = [*sources, *(parts.assets[:3] if everything else parts.assets[:1]), *parts.asset_checks[:2]]
        return dg.materialize(selection, partition_key=self.partition, resources=self.resources(),
                              instance=dg.DagsterInstance.ephemeral(), run_config=run_config, raise_on_error=False)

    def tasks(self, project: str) -> dict[str, list[str]]:
        visma_id = self.asana.field_gid("Visma ID")
        found: dict[str, list[str]] = {}
        for gid in self.asana.tenant.projects[self.asana.project_gid(project)].task_gids:
            task = self.asana.tenant.tasks[gid]
            if task.parent is None and task.custom.get(visma_id):
                found.setdefault(task.custom[visma_id], []).append(gid)
        return found


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", ledger_url)
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    use_demo_credentials(monkeypatch)
    visma = visma_simulator()
    with Ledger.open(ledger_url) as ledger:
        # The receiver shares the flow's ledger (armed handshakes, inbox) and vault (webhook secrets).
        vault = Vault.from_env(ledger.engine, sandbox=True, home=tmp_path)
        hooks = Receiver(ledger, vault, InProcessTransport(build_receiver(ledger, [AsanaWebhookVerifier(ledger, vault)])))
        # A paid plan's 1,500 requests/min, so that no test waits a real Retry-After; search stays unused
        # (test_visma_asana_push.py runs the same flow on the free plan, where search answers 402).
        asana = AsanaSimulator(webhook_transport=hooks.transport, instantiate_delay_s=0, premium=True)
        monkeypatch.setenv("ASANA_PAT", asana.credentials()["pat"])
        try:
            with served(visma) as visma_server, served(asana) as asana_server:
                yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
                yield World(visma, asana, visma_server.base_url, asana_server.base_url, yesterday, ledger_url, hooks)
        finally:
            asana.close()
            visma.close()
            hooks.transport.close()


def metadata(result: Any, asset: str) -> dict[str, Any]:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {key: value.value for key, value in event.step_materialization_data.materialization.metadata.items()}


def test_a_partition_sync_fills_the_options_creates_the_tasks_and_reconciles(world: World) -> None:
    result = world.run(flow())

    assert result.success
    assert metadata(result, "asana/visma_reference_options")["changes_made"] > 0
    orders, invoices = world.tasks("Purchase orders"), world.tasks("Supplier invoices")
    assert metadata(result, PURCHASE_ORDERS.asset)["created"] == len(orders) > 0
    assert metadata(result, INVOICES.asset)["created"] == len(invoices) > 0
    assert metadata(result, PURCHASE_ORDERS.asset)["lines_created"] > len(orders)
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())


def _workspace_reads(world: World) -> int:
    """Requests for what a run's context is made of: workspaces, custom fields, projects, users."""
    return sum(1 for request in world.asana.requests if request.method == "GET"
               and request.path.rstrip("/").rsplit("/", 1)[-1] in {"workspaces", "custom_fields", "projects", "users"})


def test_runs_after_the_first_take_the_workspace_from_the_ledger_not_from_asana(world: World) -> None:
    settings = flow()
    world.run(settings)
    world.asana.requests.clear()

    result = world.run(settings)

    assert result.success
    # Only the reference options read anything of it now, the custom fields (and the workspace): the
    # options are what that asset changes.
    assert _workspace_reads(world) == 2


def _expire_kept_context(world: World) -> None:
    with Ledger.open(world.ledger_url) as ledger:
        for key, stored in ledger.states_under(KEPT_PREFIX).items():
            ledger.set_state(key, json.dumps({**json.loads(stored), "at": 0}))


def test_an_expired_context_reads_its_projects_back_by_gid_not_every_project_of_the_workspace(world: World) -> None:
    settings = flow()
    world.run(settings)
    _expire_kept_context(world)
    world.asana.requests.clear()

    assert world.run(settings).success

    paths = [r.path for r in world.asana.requests if r.method == "GET"]
    assert not any(path.rstrip("/").endswith("/projects") for path in paths)  # no listing of the workspace's
    assert sum(1 for path in paths if re.search(r"/projects/\d+$", path)) >= 2  # the two kinds' projects


def test_an_expired_context_whose_project_was_renamed_looks_for_it_by_name_again(world: World) -> None:
    settings = flow()
    world.run(settings)
    _expire_kept_context(world)
    with world.asana.lock:  # someone renames the project in Asana
        world.asana.tenant.projects[world.asana.project_gid("Purchase orders")].name = "Purchase orders 2025"
    world.asana.requests.clear()

    result = world.run(settings)

    assert any(r.method == "GET" and r.path.rstrip("/").endswith("/projects") for r in world.asana.requests)
    assert not result.success
    assert "no Asana project named 'Purchase orders'" in str(result.all_events)


def test_a_time_to_live_of_zero_reads_the_workspace_in_every_step(world: World) -> None:
    settings = flow(context_ttl_s=0)
    world.run(settings)
    world.asana.requests.clear()

    world.run(settings)

    assert _workspace_reads(world) >= 4 * 3  # the options, each kind's plan, each kind's reconciliation...


def test_a_dry_run_shows_the_plan_and_writes_no_task(world: World) -> None:
    config = {"ops": {**dry_run_config(PURCHASE_ORDERS)["ops"], **dry_run_config(INVOICES)["ops"]}}

    result = world.run(flow(), run_config=config)

    assert result.success
    shown = metadata(result, PURCHASE_ORDERS.asset)
    assert shown["dry_run"] is True and shown["would_create"] > 0 and "PO" in shown["plan"]
    assert world.tasks("Purchase orders") == {} and world.tasks("Supplier invoices") == {}


def test_a_task_completed_in_asana_reaches_the_visma_note_through_webhook_sensor_and_job(world: World) -> None:
    settings = flow()
    world.run(settings, everything=False)
    parts = world.parts(settings)
    dg.materialize([parts.assets[3]], resources=world.resources(), instance=dg.DagsterInstance.ephemeral())
    order, (gid,) = sorted(world.tasks("Purchase orders").items())[0]
    world.asana.edit_task(gid, completed=True)
    world.asana.flush_webhooks()
    (sensor,) = parts.sensors
    job = next(j for j in parts.jobs if j.name == RETURN_JOB)

    with dg.build_sensor_context(resources=world.resources()) as context:
        result = sensor.evaluate_tick(context)
    # The webhook's hint takes the fast lane; the first poll's finds (every synced task: none reported yet) queue.
    request = next(r for r in result.run_requests or []
                   if gid in r.run_config["ops"]["note_asana_changes_in_visma"]["config"]["tasks"])
    assert request.tags.get("ml_connector/lane") == "webhook"
    ran = job.execute_in_process(run_config=request.run_config, resources=world.resources())

    assert ran.success
    with in_process_client(world.visma) as visma:
        note = visma.get(VismaEntity.PURCHASE_ORDER, order.split("/", 1)[1])[0].get("note") or ""
    assert note.count(f"[asana task {gid} #1]") == 1 and "completed" in note
    assert httpx.get(f"{world.asana_url}/_sandbox/state", timeout=10).json()["webhooks"]  # registered by handshake


def test_between_polls_a_webhooks_hint_is_requested_without_asking_asana(world: World) -> None:
    settings = flow()
    world.run(settings, everything=False)
    parts = world.parts(settings)
    dg.materialize([parts.assets[3]], resources=world.resources(), instance=dg.DagsterInstance.ephemeral())
    (sensor,) = parts.sensors
    with dg.build_sensor_context(resources=world.resources()) as context:
        polled = sensor.evaluate_tick(context)  # the first tick polls the projects
    _, (gid,) = sorted(world.tasks("Purchase orders").items())[0]
    world.asana.edit_task(gid, completed=True)
    world.asana.flush_webhooks()
    world.asana.requests.clear()

    with dg.build_sensor_context(resources=world.resources(), cursor=polled.cursor) as context:
        hinted = sensor.evaluate_tick(context)

    assert world.asana.requests == []  # the inbox is the ledger's: the poll waits for its interval
    (request,) = hinted.run_requests or []
    assert gid in request.run_config["ops"]["note_asana_changes_in_visma"]["config"]["tasks"]
    assert request.tags.get("ml_connector/lane") == "webhook"
