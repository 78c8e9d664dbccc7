"""The run queue's fast lane: a webhook's run launches at once while there is room, nothing else does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRunStatus, in_process_executor, job, op
from dagster._core.events import DagsterEventType
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from ml_connector_dagster.launcher import FAST_LANE_TAGS, WebhookFastLaneRunCoordinator
from ml_connector_dagster.launcher.coordinator import set_sensor_loop_interval

from . import recording

WEBHOOK_TAGS = dict(FAST_LANE_TAGS)


@op
def noop() -> None:
    pass


@job(executor_def=in_process_executor)
def small_job() -> None:
    noop()


def _instance(tmp_path: Path, concurrency_runs: dict[str, Any], **coordinator: Any) -> DagsterInstance:
    home = tmp_path / "home"
    home.mkdir()
    return DagsterInstance.local_temp(
        str(home),
        overrides={
            "run_coordinator": {"module": "ml_connector_dagster.launcher", "class": "WebhookFastLaneRunCoordinator",
                                "config": {"dequeue_interval_seconds": 1, **coordinator}},
            "run_launcher": {"module": "ml_connector_dagster_tests.launcher.recording",
                             "class": "RecordingRunLauncher"},
            "concurrency": {"runs": concurrency_runs},
        },
    )  # fmt: skip


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    recording.LAUNCHED.clear()
    with _instance(tmp_path, {"max_concurrent_runs": 2}) as temp:
        yield temp


# Queued runs need to say where their job comes from; this file is as good a code location as any.
ORIGIN = RemoteJobOrigin(
    RemoteRepositoryOrigin(
        InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=__file__)), "__repository__"
    ),
    "small_job",
)


def _submit(instance: DagsterInstance, tags: dict[str, str]):
    run = instance.create_run_for_job(small_job, tags=tags, remote_job_origin=ORIGIN)
    # The sensor daemon submits with its workspace; the recording launcher never looks inside it.
    return instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=object()))


def test_a_webhook_run_launches_at_once_when_the_queue_has_room(instance: DagsterInstance) -> None:
    run = _submit(instance, WEBHOOK_TAGS)
    assert [run.run_id] == recording.LAUNCHED
    assert run.status == DagsterRunStatus.STARTING
    assert not instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_ENQUEUED)


def test_other_runs_wait_in_the_queue(instance: DagsterInstance) -> None:
    run = _submit(instance, {"ml_connector/trigger": "poll"})
    assert recording.LAUNCHED == []
    assert run.status == DagsterRunStatus.QUEUED


def test_a_webhook_run_queues_when_max_concurrent_runs_are_in_progress(instance: DagsterInstance) -> None:
    for _ in range(2):
        instance.create_run_for_job(small_job, status=DagsterRunStatus.STARTED)
    run = _submit(instance, WEBHOOK_TAGS)
    assert recording.LAUNCHED == []
    assert run.status == DagsterRunStatus.QUEUED


def test_webhook_runs_within_the_allowance_launch_while_a_backlog_fills_the_queue(tmp_path: Path) -> None:
    recording.LAUNCHED.clear()
    with _instance(tmp_path, {"max_concurrent_runs": 2}, webhook_run_allowance=2) as instance:
        for _ in range(2):
            instance.create_run_for_job(small_job, status=DagsterRunStatus.STARTED)
        first, second = (_submit(instance, WEBHOOK_TAGS) for _ in range(2))
        third = _submit(instance, WEBHOOK_TAGS)
        poll = _submit(instance, {"ml_connector/trigger": "poll"})
    assert [first.run_id, second.run_id] == recording.LAUNCHED
    assert (third.status, poll.status) == (DagsterRunStatus.QUEUED, DagsterRunStatus.QUEUED)


def test_a_webhook_run_allowance_below_zero_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="webhook_run_allowance"):
        _instance(tmp_path, {"max_concurrent_runs": 2}, webhook_run_allowance=-1).run_coordinator  # noqa: B018


def test_a_webhook_run_under_a_tag_limit_queues(tmp_path: Path) -> None:
    recording.LAUNCHED.clear()
    limit = {"key": "ml_connector/destination/jira", "limit": 1}
    with _instance(tmp_path, {"max_concurrent_runs": 4, "tag_concurrency_limits": [limit]}) as instance:
        run = _submit(instance, {**WEBHOOK_TAGS, "ml_connector/destination/jira": "true"})
    assert recording.LAUNCHED == []
    assert run.status == DagsterRunStatus.QUEUED


def test_the_sensor_loop_interval_setting_reaches_the_sensor_daemon(tmp_path: Path) -> None:
    from dagster._daemon import sensor as sensor_daemon

    built_in = sensor_daemon.MIN_INTERVAL_LOOP_TIME
    home = tmp_path / "home"
    home.mkdir()
    coordinator = {"module": "ml_connector_dagster.launcher", "class": "WebhookFastLaneRunCoordinator",
                   "config": {"sensor_loop_interval_seconds": 1.0}}  # fmt: skip
    try:
        with DagsterInstance.local_temp(str(home), overrides={"run_coordinator": coordinator}) as instance:
            assert isinstance(instance.run_coordinator, WebhookFastLaneRunCoordinator)
            assert sensor_daemon.MIN_INTERVAL_LOOP_TIME == 1.0
    finally:
        sensor_daemon.MIN_INTERVAL_LOOP_TIME = built_in


def test_a_sensor_loop_interval_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="sensor_loop_interval_seconds"):
        set_sensor_loop_interval(0.0)
