"""Visma -> monday as Dagster runs it: the source assets land a day, the item assets put it on the boards.

Both simulators are served on 127.0.0.1 and the resources are built as definitions.py builds them
(secrets as ``EnvVar``). The Visma simulator is pinned to yesterday evening, so every generated
record falls in one daily partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ml_connector_dagster.assets.visma import visma_source_assets
from ml_connector_dagster.config import VismaMondayFlow
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.visma_monday import GROUP, POOL, build_visma_monday, dry_run_config, kind_of
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sandbox.monday import (
    AR_BOARD,
    DIMENSIONS_BOARD,
    GL_BOARD,
    INVOICE_BOARD,
    MondaySimulator,
)
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.monday.resource import MondayResource
from ml_connector_dagster_tests.visma_monday_sandbox import flow_settings, invalid_documents
from ml_connector_dagster_tests.visma_sandbox import sandbox_config, use_demo_credentials, visma_resource

DOCUMENTS = ("supplier_invoices", "purchase_orders", "customer_invoices")


@dataclass
class World:
    visma: VismaSimulator
    monday: MondaySimulator
    visma_url: str
    monday_url: str
    partition: str
    ledger_url: str

    def resources(self) -> dict[str, Any]:
        monday = MondayResource(base_url=self.monday_url, api_token=dg.EnvVar("MONDAY_API_TOKEN"), rate_per_s=1000,
                                burst=1000)  # fmt: skip
        return {"visma": visma_resource(self.visma_url), "ledger": LedgerResource(), "monday": monday}

    def parts(self, settings: VismaMondayFlow) -> Any:
        visma = sandbox_config(self.visma_url).systems.visma
        assert visma is not None
        return build_visma_monday(settings, visma, lookback=timedelta(days=2), minimum_interval_seconds=30)

    def sources(self, *names: str) -> list[dg.AssetsDefinition]:
        visma = sandbox_config(self.visma_url).systems.visma
        assert visma is not None
        return [asset for asset in visma_source_assets(visma) if asset.key.path[-1] in names]

    def run(self, settings: VismaMondayFlow, entities: tuple[str, ...], *, land: bool = True, checked: bool = True,
            run_config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:  # fmt: skip
        """Materialize the entities' sources (``land``), item assets and (``checked``) their checks."""
        parts = self.parts(settings)
        keys = {dg.AssetKey(kind_of(entity).asset.split("/")) for entity in entities}
        assets = [asset for asset in parts.assets if asset.key in keys]
        checks = [check for check in parts.asset_checks
                  if checked and any(k.asset_key in keys for k in check.check_keys)]  # fmt: skip
        partitioned = kind_of(entities[0]).partitioned
        return dg.materialize(
            [*(self.sources(*entities) if land else []), *assets, *checks], resources=self.resources(),
            partition_key=self.partition if partitioned else None, instance=dg.DagsterInstance.ephemeral(),
            run_config=run_config, raise_on_error=False,
        )  # fmt: skip

    def items(self, board: int) -> dict[str, list[dict[str, Any]]]:
        column = next(c.id for c in self.monday.tenant.boards[board].columns if c.title == "Visma ID")
        found: dict[str, list[dict[str, Any]]] = {}
        for item in self.monday.items_on(board):
            text = next((v["text"] for v in item["column_values"] if v["id"] == column), None)
            if text:
                found.setdefault(text, []).append(item)
        return found


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", ledger_url)
    use_demo_credentials(monkeypatch)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    visma = VismaSimulator(size=30, days=0.9, start=midnight - timedelta(hours=2))
    monday = MondaySimulator()
    monkeypatch.setenv("MONDAY_API_TOKEN", monday.api_token)
    try:
        with served(visma) as visma_server, served(monday) as monday_server:
            yield World(visma, monday, visma_server.base_url, monday_server.base_url,
                        (midnight - timedelta(days=1)).date().isoformat(), ledger_url)
    finally:
        visma.close()
        monday.close()


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    assert len(events) == 1, f"{asset} was not materialized once"
    return {key: value.value for key, value in events[0].step_materialization_data.materialization.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_a_days_documents_become_items_once_and_reconcile(world: World) -> None:
    first = world.run(flow_settings(), DOCUMENTS, checked=False)
    again = world.run(flow_settings(), DOCUMENTS, land=False)
    assert first.success and again.success
    invoices = metadata(first, "monday/visma_invoice_items")
    assert (invoices["created"], invoices["failed"]) == (29, 0)  # 000010 was quarantined by the source
    assert metadata(first, "monday/visma_purchase_order_items")["created"] == 15
    receivables = metadata(first, "monday/visma_customer_invoice_items")
    assert receivables["created"] == 15 and "| bucket" in receivables["ar_aging"]
    assert receivables["ar_open_invoices"] == sum(receivables[f"ar_{b}"] for b in ("current", "1-30", "31-60", "61-90", "90+"))
    assert str(receivables["board_url"]).endswith(f"/boards/{AR_BOARD}")
    assert [metadata(again, kind_of(e).asset)["skipped"] for e in DOCUMENTS] == [29, 15, 15]
    assert [metadata(again, kind_of(e).asset)["created"] for e in DOCUMENTS] == [0, 0, 0]
    assert all(len(found) == 1 for found in world.items(INVOICE_BOARD).values())
    evaluations = checks(again)
    assert all(evaluations[(kind_of(e).asset, "reconciled")].passed for e in DOCUMENTS)
    assert all(evaluations[(kind_of(e).asset, "no_open_dead_letters")].passed for e in DOCUMENTS)
    assert invalid_documents(world.monday) == {}


def test_gl_accounts_and_dimension_values_fill_the_reference_boards(world: World) -> None:
    result = world.run(flow_settings(), ("gl_accounts", "dimensions"))
    assert result.success
    assert metadata(result, "monday/visma_gl_accounts")["created"] == 64
    assert metadata(result, "monday/visma_dimensions")["created"] == 18  # 7 departments, 7 cost centres, 4 projects
    assert all(evaluation.passed for evaluation in checks(result).values())
    assert "SUBACCOUNT/1/100" in world.items(DIMENSIONS_BOARD) and "1200" in world.items(GL_BOARD)


def test_a_dry_run_shows_the_plan_and_writes_nothing(world: World) -> None:
    before = len(world.monday.items_on(INVOICE_BOARD))
    kind = kind_of("supplier_invoices")
    result = world.run(flow_settings(), ("supplier_invoices",), checked=False, run_config=dry_run_config(kind))
    assert result.success
    assert len(world.monday.items_on(INVOICE_BOARD)) == before
    outputs = [e for e in result.all_events if e.is_successful_output and e.step_key.endswith("push_monday_supplier_invoices")]
    assert outputs[0].step_output_data.metadata["would_create"].value == 29


def test_refused_items_wait_as_dead_letters_until_the_replay_job_puts_them_through(world: World) -> None:
    # The AR board's Aging column has no "current" / "1-30" labels, and the flow may not add them.
    strict = flow_settings(create_labels_if_missing=False)
    result = world.run(strict, ("customer_invoices",))
    failed = metadata(result, "monday/visma_customer_invoice_items")["failed"]
    with Ledger.open(world.ledger_url) as ledger:
        letters = ledger.open_dead_letters("monday/visma_customer_invoice_items")
    assert failed > 0 and len(letters) == failed and "ColumnValueException" in letters[0].error
    assert not checks(result)[("monday/visma_customer_invoice_items", "no_open_dead_letters")].passed

    replay = next(job for job in world.parts(flow_settings()).jobs if job.name == "visma_monday_replay")
    replayed = replay.execute_in_process(resources=world.resources())
    with Ledger.open(world.ledger_url) as ledger:
        assert ledger.open_dead_letters("monday/visma_customer_invoice_items") == []
    assert replayed.success
    assert len(world.items(AR_BOARD)) == 15


def test_the_item_assets_follow_their_visma_sources_in_the_flows_group_and_pool() -> None:
    visma = sandbox_config("http://visma.test").systems.visma
    assert visma is not None
    parts = build_visma_monday(flow_settings(), visma, lookback=timedelta(days=2), minimum_interval_seconds=30)
    by_key = {asset.key.to_user_string(): asset for asset in parts.assets}
    invoices = by_key["monday/visma_invoice_items"]
    assert invoices.asset_deps[invoices.key] == {dg.AssetKey(["visma", "supplier_invoices"])}
    assert invoices.partitions_def is not None and by_key["monday/visma_gl_accounts"].partitions_def is None
    assert {asset.group_names_by_key[asset.key] for asset in parts.assets} == {GROUP}
    assert all(asset.specs_by_key[asset.key].kinds == {"visma", "monday"} for asset in parts.assets)
    assert {node.pool for asset in parts.assets for node in asset.node_def.node_defs} == {POOL}
    assert {job.name for job in parts.jobs} == {"visma_monday_replay", "visma_monday_receipts"}
    assert [sensor.name for sensor in parts.sensors] == ["visma_monday_receipts"]
