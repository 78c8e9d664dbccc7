"""The warm run launcher: runs execute in pre-started worker processes, exactly as Dagster's own."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, reconstructable
from dagster._core.events import DagsterEventType
from dagster._core.launcher import LaunchRunContext, WorkerStatus

from ml_connector_dagster.launcher import WORKER_PID_TAG, WarmProcessRunLauncher
from ml_connector_dagster.launcher.pool import WarmWorkerPool

from .jobs import held_job

TEST_JOBS = "ml_connector_dagster_tests.launcher.jobs"


@pytest.fixture
def release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "release"
    monkeypatch.setenv("LAUNCHER_TEST_RELEASE", str(path))
    return path


@pytest.fixture
def instance(tmp_path: Path, release: Path) -> Iterator[DagsterInstance]:
    launcher = {
        "module": "ml_connector_dagster.launcher",
        "class": "WarmProcessRunLauncher",
        "config": {"preload_modules": [TEST_JOBS], "pool_size": 1, "refill_delay_seconds": 60.0},
    }
    home = tmp_path / "home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home), overrides={"run_launcher": launcher}) as temp:
        yield temp
        temp.run_launcher.dispose()


def _launch_warm(instance: DagsterInstance):
    launcher = instance.run_launcher
    assert isinstance(launcher, WarmProcessRunLauncher)
    launcher._worker_pool().fill()
    run = instance.create_run_for_job(held_job, job_code_origin=reconstructable(held_job).get_python_origin())
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    return launcher, instance.get_run_by_id(run.run_id)


def _wait_for(instance: DagsterInstance, run_id: str, statuses: set[DagsterRunStatus], timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run.status in statuses:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} stayed {instance.get_run_by_id(run_id).status}")


def test_a_run_executes_in_the_preloaded_worker_and_succeeds(
    instance: DagsterInstance, release: Path
) -> None:
    _, run = _launch_warm(instance)
    release.touch()
    finished = _wait_for(instance, run.run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE})
    assert finished.status == DagsterRunStatus.SUCCESS
    started = [r for r in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
               if (r.dagster_event.message or "").startswith("Started process for run")]  # fmt: skip
    assert (
        started
        and started[0].dagster_event.engine_event_data.metadata["pid"].value == (run.tags[WORKER_PID_TAG])
    )


def test_terminate_cancels_a_run_in_a_warm_worker(instance: DagsterInstance, release: Path) -> None:
    launcher, run = _launch_warm(instance)
    _wait_for(instance, run.run_id, {DagsterRunStatus.STARTED})
    assert launcher.terminate(run.run_id)
    finished = _wait_for(instance, run.run_id, {DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE})
    assert finished.status == DagsterRunStatus.CANCELED


def test_health_check_reports_a_killed_worker_as_failed(instance: DagsterInstance, release: Path) -> None:
    launcher, run = _launch_warm(instance)
    _wait_for(instance, run.run_id, {DagsterRunStatus.STARTED})
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    os.kill(int(run.tags[WORKER_PID_TAG]), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (
        launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.FAILED


def test_a_worker_started_before_a_code_change_is_not_used(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text("x = 1\n")
    pool = WarmWorkerPool([TEST_JOBS], [tmp_path], size=1, max_idle_s=600, refill_delay_s=60)
    try:
        pool.fill()
        time.sleep(0.05)
        os.utime(source, (time.time() + 1, time.time() + 1))
        assert pool.take() is None
    finally:
        pool.close()


def test_a_worker_idle_too_long_is_not_used(tmp_path: Path) -> None:
    pool = WarmWorkerPool([TEST_JOBS], [], size=1, max_idle_s=0.0, refill_delay_s=60)
    try:
        pool.fill()
        assert pool.take() is None
    finally:
        pool.close()


def test_an_idle_worker_exits_when_the_pool_closes(tmp_path: Path) -> None:
    pool = WarmWorkerPool([TEST_JOBS], [], size=1, max_idle_s=600, refill_delay_s=60)
    pool.fill()
    worker = pool.take()
    assert worker is not None
    worker.discard()
    assert not worker.alive()
    pool.close()
