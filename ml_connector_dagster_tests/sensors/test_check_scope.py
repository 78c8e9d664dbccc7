"""A sensor's run checks the records it carries, not its whole partition: the partition audits
(``reconciled``) re-read the destination for every record of the day, and are left to the daily audit
(``partition_audits``) and to backfills."""

# No ``from __future__ import annotations`` here: Dagster reads the stand-in assets' config
# annotation at definition time.
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ml_connector_dagster.check_scope import PARTITION_AUDIT, record_checks
from ml_connector_dagster.config import load_config
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.sensors.inbox import build_inbox_sensor
from ml_connector_dagster.sensors.poll import Change, PollPolicy, build_poll_sensor
from ml_connector_dagster_tests.sensors.stand_ins import DAYS, ISSUES, ORDERS, inbox_request, issues, orders


@dg.asset_check(asset=ISSUES, name="no_open_dead_letters")
def dead_letters() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset_check(asset=ISSUES, name="reconciled", partitions_def=DAYS, metadata=PARTITION_AUDIT)
def reconciled() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


INBOX = build_inbox_sensor({("visma", "purchase_orders"): [ORDERS, ISSUES]})
CHANGED = datetime.now(UTC) - timedelta(minutes=5)
POLL = build_poll_sensor(
    name="visma_purchase_orders_poll", target=orders, partitions_def=DAYS,
    probe=lambda context, watermark: [[Change("PO-1", CHANGED)]],
    run_config_for=lambda window: {}, policy=PollPolicy(lookback=timedelta(days=1)), minimum_interval_seconds=30,
    required_resource_keys=set(), description="Stand-in poll of Visma purchase orders.",
)  # fmt: skip
DEFS = dg.Definitions(assets=[orders, issues], asset_checks=[dead_letters, reconciled], sensors=[INBOX, POLL])


def _inbox_request(tmp_path: Path) -> dg.RunRequest:
    return inbox_request(tmp_path, INBOX, DEFS)


def test_a_webhooks_run_carries_the_record_checks_of_its_assets(tmp_path: Path) -> None:
    request = _inbox_request(tmp_path)
    assert request.asset_check_keys == [dg.AssetCheckKey(ISSUES, "no_open_dead_letters")]


def test_a_webhooks_run_leaves_the_partition_audit_to_the_daily_audit_and_backfills(tmp_path: Path) -> None:
    request = _inbox_request(tmp_path)
    assert request.asset_check_keys is not None  # None would be Dagster's default: every check
    assert dg.AssetCheckKey(ISSUES, "reconciled") not in request.asset_check_keys
    assert request.asset_selection == [ORDERS, ISSUES]  # the assets themselves all run


def _poll_request() -> dg.RunRequest:
    with dg.build_sensor_context(definitions=DEFS) as context:
        result = POLL(context)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests or []
    return request


def test_a_poll_run_carries_the_record_checks_of_its_assets() -> None:
    request = _poll_request()
    assert request.asset_check_keys == [dg.AssetCheckKey(ISSUES, "no_open_dead_letters")]
    assert request.partition_key == CHANGED.date().isoformat()


def test_a_poll_run_leaves_the_partition_audit_to_the_daily_audit_and_backfills() -> None:
    request = _poll_request()
    assert dg.AssetCheckKey(ISSUES, "reconciled") not in (request.asset_check_keys or [])
    assert request.asset_selection == [ISSUES, ORDERS]  # the source and the destination it feeds all run


def test_without_a_repository_dagsters_default_holds_every_check() -> None:
    assert record_checks(None, [ISSUES]) is None


def test_the_selected_checks_run_and_the_audit_does_not() -> None:
    checks = record_checks(DEFS.get_repository_def(), [ORDERS, ISSUES])
    selection = dg.AssetSelection.assets(ORDERS, ISSUES).without_checks() | dg.AssetSelection.checks(*checks or [])
    result = dg.materialize([orders, issues, dead_letters, reconciled], selection=selection,
                            partition_key="2026-03-01")  # fmt: skip
    ran = {evaluation.check_name for evaluation in result.get_asset_check_evaluations()}
    assert ran == {"no_open_dead_letters"}


@pytest.fixture(scope="module")
def sandbox_defs() -> dg.Definitions:
    return build_definitions(load_config(None))


def test_every_flows_reconciled_check_is_a_partition_audit(sandbox_defs: dg.Definitions) -> None:
    graph = sandbox_defs.get_repository_def().asset_graph
    reconciled_checks = [key for key in graph.asset_check_keys if key.name == "reconciled"]
    assert len(reconciled_checks) >= 5  # visma_jira's, visma_asana's, visma_monday's, acumatica_jira's, jaggaer_visma's
    for key in reconciled_checks:
        assert graph.get_check_spec(key).metadata.get("ml_connector/scope") is not None, key


def test_the_sandbox_inbox_runs_carry_no_partition_audit(sandbox_defs: dg.Definitions) -> None:
    graph = sandbox_defs.get_repository_def().asset_graph
    assets = {key.asset_key for key in graph.asset_check_keys}
    carried = record_checks(sandbox_defs.get_repository_def(), assets) or []
    assert carried  # the dead-letter checks
    assert all(key.name != "reconciled" for key in carried)
