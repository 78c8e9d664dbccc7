"""What an operator reads in the Dagster UI: every definition explains itself and sits in its flow's group.

Built from the shipped sandbox configuration, which turns every system and flow on, so each
contributor's definitions are checked. Dagster's own implicit jobs (``__ASSET_JOB``, a sensor's
anonymous asset job) are not ours to describe.
"""

from __future__ import annotations

import dagster as dg
import pytest

from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, ConnectorConfig, load_config
from ml_connector_dagster.definitions import build_definitions


@pytest.fixture(scope="module")
def config() -> ConnectorConfig:
    return load_config(SANDBOX_CONFIG_PATH)


@pytest.fixture(scope="module")
def defs(config: ConnectorConfig) -> dg.Definitions:
    return build_definitions(config)


def _asset_keys(defs: dg.Definitions) -> list[tuple[dg.AssetsDefinition, dg.AssetKey]]:
    return [(asset, key) for asset in defs.assets if isinstance(asset, dg.AssetsDefinition) for key in asset.keys]


def test_every_asset_has_a_description(defs: dg.Definitions) -> None:
    undescribed = [key.to_user_string() for asset, key in _asset_keys(defs) if not asset.descriptions_by_key.get(key)]
    assert undescribed == []


def test_every_asset_check_has_a_description(defs: dg.Definitions) -> None:
    undescribed = [f"{spec.asset_key.to_user_string()}:{spec.name}"
                   for checks in defs.asset_checks for spec in checks.check_specs if not spec.description]  # fmt: skip
    assert undescribed == []


def test_every_sensor_and_schedule_has_a_description(defs: dg.Definitions) -> None:
    undescribed = [automation.name for automation in [*defs.sensors, *defs.schedules] if not automation.description]
    assert undescribed == []


def test_every_job_of_ours_has_a_description(defs: dg.Definitions) -> None:
    jobs = [job for job in defs.get_repository_def().get_all_jobs() if not job.name.startswith("__")]
    assert jobs, "no jobs: the shipped configuration should enable the replay jobs at least"
    assert [job.name for job in jobs if not job.description] == []


def test_assets_are_grouped_by_source_system_or_by_flow(defs: dg.Definitions, config: ConnectorConfig) -> None:
    systems = {name for name in type(config.systems).model_fields if getattr(config.systems, name) is not None}
    flows = {name for name in type(config.flows).model_fields
             if (flow := getattr(config.flows, name)) is not None and flow.enabled}  # fmt: skip
    groups = {key.to_user_string(): asset.group_names_by_key[key] for asset, key in _asset_keys(defs)}
    assert {key: group for key, group in groups.items() if group not in systems | flows} == {}
    # A system's group holds only that system's sources; every enabled flow shows as a group of its own.
    assert {key: group for key, group in groups.items() if group in systems and not key.startswith(f"{group}/")} == {}
    assert flows <= set(groups.values())


def test_partitioned_assets_share_one_daily_partitioning(defs: dg.Definitions) -> None:
    partitionings = {asset.partitions_def for asset in defs.assets
                     if isinstance(asset, dg.AssetsDefinition) and asset.partitions_def is not None}  # fmt: skip
    assert len(partitionings) == 1
    (daily,) = partitionings
    assert isinstance(daily, dg.DailyPartitionsDefinition) and daily.timezone == "UTC"
