"""JAGGAER -> Visma as Dagster runs it: sources, destination assets, checks, confirmations and replay.

Both simulators are served on 127.0.0.1. Their demo data is generated as of yesterday evening, so it
falls in one daily partition (yesterday's); their clocks then run on real time, so what the flow
creates in Visma is modified today, and today's Visma partition is where its confirmations start.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ml_connector_dagster.assets.jaggaer import jaggaer_source_assets
from ml_connector_dagster.assets.visma import visma_source_assets
from ml_connector_dagster.config import JaggaerVismaFlow
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.definitions import defs
from ml_connector_dagster.flows.jaggaer_visma import REPLAY_JOB, build_jaggaer_visma, dry_run_config
from ml_connector_dagster.flows.jaggaer_visma_plan import INVOICES, PURCHASE_ORDERS, plan_partitions
from ml_connector_dagster.flows.jaggaer_visma_push import push_plan
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster_tests import jaggaer_sandbox, visma_sandbox
from ml_connector_dagster_tests.jaggaer_visma_sandbox import (
    DAY,
    LOG,
    land_documents,
    land_references,
    settings,
)
from ml_connector_dagster_tests.visma_sandbox import in_process_client

REFERENCE_SOURCES = ("jaggaer/vendors", "jaggaer/gl_accounts", "visma/suppliers", "visma/gl_accounts", "visma/dimensions")


@dataclass
class World:
    visma: VismaSimulator
    jaggaer: JaggaerSimulator
    visma_url: str
    jaggaer_url: str
    partition: str
    ledger_url: str

    def parts(self, flow: JaggaerVismaFlow) -> Any:
        jaggaer = jaggaer_sandbox.sandbox_config(self.jaggaer_url).systems.jaggaer
        visma = visma_sandbox.sandbox_config(self.visma_url).systems.visma
        return build_jaggaer_visma(flow, jaggaer, visma)  # type: ignore[arg-type]

    def sources(self) -> dict[str, dg.AssetsDefinition]:
        jaggaer = jaggaer_sandbox.sandbox_config(self.jaggaer_url).systems.jaggaer
        visma = visma_sandbox.sandbox_config(self.visma_url).systems.visma
        assets = [*jaggaer_source_assets(jaggaer), *visma_source_assets(visma)]  # type: ignore[arg-type]
        return {asset.key.to_user_string(): asset for asset in assets}

    def resources(self) -> dict[str, Any]:
        return {"visma": visma_sandbox.visma_resource(self.visma_url),
                "jaggaer": jaggaer_sandbox.jaggaer_resource(self.jaggaer_url), "ledger": LedgerResource()}

    def materialize(self, flow: JaggaerVismaFlow, sources: tuple[str, ...], flow_assets: tuple[str, ...], *,
                    partitioned: bool = True, partition: str | None = None,
                    run_config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
        parts = self.parts(flow)
        chosen = [a for a in parts.assets if a.key.to_user_string() in flow_assets]
        keys = {a.key for a in chosen}
        checks = [c for c in parts.asset_checks if {k.asset_key for k in c.check_keys} & keys]
        return dg.materialize(
            [*(self.sources()[name] for name in sources), *chosen, *checks],
            partition_key=(partition or self.partition) if partitioned else None, resources=self.resources(),
            instance=dg.DagsterInstance.ephemeral(), run_config=run_config, raise_on_error=False,
        )  # fmt: skip

    def land_references(self, flow: JaggaerVismaFlow) -> dg.ExecuteInProcessResult:
        return self.materialize(flow, REFERENCE_SOURCES, ("visma/jaggaer_vendor_alignment",), partitioned=False)

    def sync(self, flow: JaggaerVismaFlow, **kwargs: Any) -> dg.ExecuteInProcessResult:
        return self.materialize(flow, ("jaggaer/purchase_orders", "jaggaer/invoices"),
                                (PURCHASE_ORDERS.asset, INVOICES.asset), **kwargs)

    def ledger(self) -> Ledger:
        return Ledger.open(self.ledger_url)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", ledger_url)
    visma_sandbox.use_demo_credentials(monkeypatch)
    jaggaer_sandbox.use_demo_credentials(monkeypatch)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    visma = VismaSimulator(size=30, days=0.9, start=midnight - timedelta(hours=2))
    jaggaer = JaggaerSimulator(size=30, days=0.9, start=midnight - timedelta(hours=2))
    visma.clock.offset = jaggaer.clock.offset = 0.0
    try:
        with served(visma) as visma_server, served(jaggaer) as jaggaer_server:
            yield World(visma, jaggaer, visma_server.base_url, jaggaer_server.base_url,
                        (midnight - timedelta(days=1)).date().isoformat(), ledger_url)
    finally:
        visma.close()


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    assert len(events) == 1, f"{asset} was not materialized once"
    return {key: value.value for key, value in events[0].step_materialization_data.materialization.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in result.get_asset_check_evaluations()}


def test_a_day_lands_in_visma_reconciled_with_the_unmatched_listed_for_review(world: World) -> None:
    flow = settings()
    assert world.land_references(flow).success

    result = world.sync(flow)

    assert result.success
    figures = metadata(result, PURCHASE_ORDERS.asset)
    assert figures["created"] > 0 and figures["failed"] > 0
    assert "unmatched vendor" in figures["failed_by_reason"] and "unmatched vendor" in figures["review"]
    evaluations = checks(result)
    assert evaluations[f"{PURCHASE_ORDERS.asset}:reconciled"].passed
    assert evaluations[f"{INVOICES.asset}:reconciled"].passed
    letters = evaluations[f"{PURCHASE_ORDERS.asset}:no_open_dead_letters"]
    assert not letters.passed and "unmatched vendor" in letters.metadata["review"].value  # type: ignore[union-attr]

    confirmed = world.materialize(flow, ("visma/supplier_invoices",), ("jaggaer/visma_invoice_confirmations",),
                                  partition=datetime.now(UTC).date().isoformat())

    sent = metadata(confirmed, "jaggaer/visma_invoice_confirmations")
    assert confirmed.success and sent["failed"] == 0
    assert sent["sent"] >= metadata(result, INVOICES.asset)["created"]  # received, and paid where Visma closed it


def test_a_dry_run_shows_the_plan_and_writes_nothing(world: World) -> None:
    with world.ledger() as ledger:
        land_references(ledger, world.visma, world.jaggaer)
    visma_orders = len(world.visma.collections()["purchase_orders"])
    config = dry_run_config(PURCHASE_ORDERS)

    result = world.materialize(settings(), ("jaggaer/purchase_orders",), (PURCHASE_ORDERS.asset,), run_config=config)

    figures = metadata(result, PURCHASE_ORDERS.asset)
    assert figures["dry_run"] is True and figures["would_create"] > 0
    assert len(world.visma.collections()["purchase_orders"]) == visma_orders


def test_the_replay_job_sends_what_waited_once_its_vendor_is_mapped(world: World) -> None:
    with world.ledger() as ledger, in_process_client(world.visma) as client:
        land_references(ledger, world.visma, world.jaggaer)
        land_documents(ledger, world.jaggaer, "purchase_orders")
        plan = plan_partitions(PURCHASE_ORDERS, [DAY], ledger=ledger, settings=settings())
        push_plan(plan, PURCHASE_ORDERS, client=client, ledger=ledger, run_id="run-1", log=LOG)
        waiting = [l for l in ledger.open_dead_letters(PURCHASE_ORDERS.asset) if "unmatched vendor" in l.error]  # noqa: E741
    vendors = {str(letter.record["supplier"]["supplierId"]) for letter in waiting}
    parts = world.parts(settings(vendor_map=dict.fromkeys(vendors, "10003")))
    job = dg.Definitions(assets=parts.assets, jobs=parts.jobs, resources=world.resources()).get_job_def(REPLAY_JOB)

    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())

    assert result.success and waiting
    with world.ledger() as ledger:
        still = {letter.source_id for letter in ledger.open_dead_letters(PURCHASE_ORDERS.asset)}
    assert not still & {letter.source_id for letter in waiting}


def test_the_code_location_carries_the_flow() -> None:
    keys = {asset.key.to_user_string() for asset in defs.assets}
    assert {PURCHASE_ORDERS.asset, INVOICES.asset, "visma/jaggaer_vendor_alignment",
            "jaggaer/visma_invoice_confirmations"} <= keys
    assert REPLAY_JOB in {job.name for job in defs.jobs}
