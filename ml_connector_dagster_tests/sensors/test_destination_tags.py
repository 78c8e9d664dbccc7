"""Runs say which systems they write to (``ml_connector/destination.<system>``), so that the run
queue's per-destination limits of deploy/dagster.yaml hold them: sensor run requests, flow jobs,
schedules, replay jobs."""

# No ``from __future__ import annotations`` here: Dagster reads the stand-in assets' config
# annotation at definition time.
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ml_connector_dagster.config import load_config
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.run_tags import (
    JOB_KIND_TAG,
    destination_tag,
    job_tags,
    tags_for_assets,
    tags_for_selection,
    written_system,
)
from ml_connector_dagster.sensors.inbox import build_inbox_sensor
from ml_connector_dagster.sensors.poll import Change, PollPolicy, build_poll_sensor
from ml_connector_dagster_tests.sensors.stand_ins import (
    DAYS,
    ISSUES,
    ORDERS,
    inbox_request,
    issues,
    items,
    orders,
)


def changed_yesterday(_context: dg.SensorEvaluationContext, _since: datetime) -> Iterator[list[Change]]:
    yield [Change("PO-1", datetime.now(UTC) - timedelta(days=1))]


POLL = build_poll_sensor(
    name="orders_poll", target=orders, partitions_def=DAYS, probe=changed_yesterday,
    run_config_for=lambda window: {}, policy=PollPolicy(lookback=timedelta(days=3)), minimum_interval_seconds=30,
    required_resource_keys=set(), description="test", tags={"ml_connector/source": "visma"},
)  # fmt: skip
INBOX = build_inbox_sensor({("visma", "purchase_orders"): [ORDERS, ISSUES]})
DEFS = dg.Definitions(assets=[orders, issues, items], sensors=[POLL, INBOX])


def test_a_landing_asset_writes_to_no_system() -> None:
    assert written_system(ORDERS, "visma") is None


def test_an_asset_under_a_systems_prefix_in_a_flow_group_writes_to_that_system() -> None:
    assert written_system(ISSUES, "visma_jira") == "jira"
    assert written_system(dg.AssetKey(["visma", "jaggaer_purchase_orders"]), "jaggaer_visma") == "visma"


def test_a_poll_run_carries_a_tag_per_system_its_assets_write_to() -> None:
    with dg.build_sensor_context(definitions=DEFS) as context:
        result = POLL(context)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests or []
    assert request.tags[destination_tag("jira")] == request.tags[destination_tag("monday")] == "true"
    assert destination_tag("visma") not in request.tags  # the poll only reads Visma
    assert request.tags["ml_connector/source"] == "visma"


def test_an_inbox_run_carries_the_tags_of_its_routes_assets(tmp_path: Path) -> None:
    request = inbox_request(tmp_path, INBOX, DEFS)
    assert request.tags[destination_tag("jira")] == "true"
    assert destination_tag("monday") not in request.tags  # not in this route's selection


def test_a_flow_job_says_its_flow_kind_and_destinations() -> None:
    assert job_tags("visma_asana", writes=["asana"], kind="replay") == {
        "ml_connector/flow": "visma_asana", JOB_KIND_TAG: "replay", destination_tag("asana"): "true"}


def test_tag_keys_are_ones_dagster_accepts_without_a_deprecation_warning() -> None:
    # Dagster deprecates tag keys with more than one "/" (warning at definition time).
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        job = dg.define_asset_job("tagged", selection=[ISSUES], tags=tags_for_assets([issues, orders]))
        dg.Definitions(assets=[orders, issues], jobs=[job]).resolve_job_def("tagged")
    assert tags_for_assets([issues, orders]) == {destination_tag("jira"): "true"}


# -- the code location as configured ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_defs() -> dg.Definitions:
    return build_definitions(load_config(None))


def test_every_replay_job_is_tagged_with_the_systems_it_writes_to(sandbox_defs: dg.Definitions) -> None:
    replays = {job.name: job.tags for job in sandbox_defs.resolve_all_job_defs()
               if job.tags.get(JOB_KIND_TAG) == "replay"}
    assert replays["visma_jira_replay"][destination_tag("jira")] == "true"
    assert replays["visma_asana_replay"][destination_tag("asana")] == "true"
    assert replays["visma_monday_replay"][destination_tag("monday")] == "true"
    assert replays["jaggaer_visma_replay"][destination_tag("visma")] == "true"


def test_the_jobs_sensors_start_write_to_what_they_say(sandbox_defs: dg.Definitions) -> None:
    tags = {job.name: job.tags for job in sandbox_defs.resolve_all_job_defs()}
    assert destination_tag("visma") in tags["visma_asana_return"]  # Asana changes -> Visma notes
    assert destination_tag("visma") in tags["visma_monday_receipts"]
    assert destination_tag("acumatica") in tags["acumatica_jira_release"]


def test_the_schedules_runs_are_tagged(sandbox_defs: dg.Definitions) -> None:
    jobs = {job.name: job.tags for job in sandbox_defs.resolve_all_job_defs()}
    for schedule in sandbox_defs.schedules or []:
        tags = {**schedule.tags, **jobs.get(getattr(schedule, "job_name", None) or "", {})}
        assert any(key.startswith("ml_connector/destination.") for key in tags), schedule.name


def test_a_visma_purchase_order_poll_writes_to_jira_monday_and_asana(sandbox_defs: dg.Definitions) -> None:
    repository = sandbox_defs.get_repository_def()
    job = repository.get_job(repository.get_sensor_def("visma_purchase_orders_poll").job_name)
    assert set(tags_for_selection(repository, job.asset_layer.selected_asset_keys)) == {
        destination_tag("jira"), destination_tag("monday"), destination_tag("asana")}
