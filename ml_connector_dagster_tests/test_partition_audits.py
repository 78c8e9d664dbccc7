"""The daily partition audit: one ``reconcile_<flow>`` job per flow, run each day for the day that ended."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest
import yaml

from ml_connector_dagster.check_scope import PARTITION_AUDIT
from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, ConfigError, load_config, parse_config
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.partition_audits import audit_job_name

FLOWS = ("acumatica_jira", "jaggaer_visma", "visma_asana", "visma_jira", "visma_monday")


@pytest.fixture(scope="module")
def repository() -> dg.RepositoryDefinition:
    return build_definitions(load_config(None)).get_repository_def()


def _audited_partitioned_assets(repository: dg.RepositoryDefinition) -> dict[str, set[dg.AssetKey]]:
    graph = repository.asset_graph
    found: dict[str, set[dg.AssetKey]] = {}
    for key in graph.asset_check_keys:
        spec = graph.get_check_spec(key)
        node = graph.get(key.asset_key)
        if spec.metadata.get("ml_connector/scope") == PARTITION_AUDIT["ml_connector/scope"] and node.partitions_def:
            found.setdefault(node.group_name, set()).add(key.asset_key)
    return found


def test_every_flow_has_a_daily_audit_job(repository: dg.RepositoryDefinition) -> None:
    jobs = {job.name for job in repository.get_all_jobs()}
    assert {audit_job_name(flow) for flow in FLOWS} <= jobs


def test_each_audit_job_runs_exactly_the_flows_audited_assets(repository: dg.RepositoryDefinition) -> None:
    for flow, audited in _audited_partitioned_assets(repository).items():
        job = repository.get_job(audit_job_name(flow))
        assert job.asset_layer.selected_asset_keys == audited, flow


def test_each_audit_job_carries_the_reconciled_checks(repository: dg.RepositoryDefinition) -> None:
    for flow, audited in _audited_partitioned_assets(repository).items():
        job = repository.get_job(audit_job_name(flow))
        assert {dg.AssetCheckKey(key, "reconciled") for key in audited} <= job.asset_layer.asset_graph.asset_check_keys


def test_the_daily_audit_asks_for_the_day_that_ended(repository: dg.RepositoryDefinition) -> None:
    schedule = repository.get_schedule_def(f"{audit_job_name('visma_jira')}_schedule")
    tick = datetime(2026, 11, 20, 1, 15, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=tick, repository_def=repository) as context:
        [request] = schedule.evaluate_tick(context).run_requests or []
    assert request.partition_key == "2026-11-19"
    assert schedule.cron_schedule == "15 1 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_the_audit_time_comes_from_connector_yaml() -> None:
    raw = yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())
    repository = build_definitions(parse_config({**raw, "audit_at_utc": "03:40"})).get_repository_def()
    assert repository.get_schedule_def(f"{audit_job_name('visma_monday')}_schedule").cron_schedule == "40 3 * * *"


@pytest.mark.parametrize("written", ["1:15", "25:00"])
def test_an_unquoted_yaml_time_read_as_a_number_is_refused_naming_the_field(written: str) -> None:
    raw = yaml.safe_load(SANDBOX_CONFIG_PATH.read_text() + f"\naudit_at_utc: {written}\n")
    with pytest.raises(ConfigError, match=r"audit_at_utc: .*quote it"):
        parse_config(raw)


def test_a_time_outside_the_day_is_refused_naming_the_field() -> None:
    raw = yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())
    with pytest.raises(ConfigError, match=r"audit_at_utc: .*00:00 to 23:59"):
        parse_config({**raw, "audit_at_utc": "24:00"})


def test_no_audit_is_asked_for_a_day_before_the_first_partition(repository: dg.RepositoryDefinition) -> None:
    schedule = repository.get_schedule_def(f"{audit_job_name('visma_jira')}_schedule")
    with dg.build_schedule_context(scheduled_execution_time=datetime(2000, 1, 2, 1, 15, tzinfo=UTC),
                                   repository_def=repository) as context:  # fmt: skip
        result = schedule.evaluate_tick(context)
    assert not result.run_requests
    assert "before the first partition" in (result.skip_message or "")
