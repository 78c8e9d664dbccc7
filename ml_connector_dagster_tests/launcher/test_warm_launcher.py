"""The warm run launcher: runs are forked from a server that imported the code once, and run as Dagster's own."""

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
from ml_connector_dagster.launcher.fork_server import ForkServer
from ml_connector_dagster.launcher.worker import preload

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
        "config": {"preload_modules": [TEST_JOBS]},
    }
    home = tmp_path / "home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home), overrides={"run_launcher": launcher}) as temp:
        yield temp
        temp.run_launcher.dispose()


def _launch_warm(instance: DagsterInstance):
    launcher = instance.run_launcher
    assert isinstance(launcher, WarmProcessRunLauncher)
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


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _ready_server(watch: list[Path], **kwargs: float) -> ForkServer:
    server = ForkServer([TEST_JOBS], watch, max_idle_s=kwargs.get("max_idle_s", 600), ready_timeout_s=60)
    server.start()
    return server


def test_runs_launched_one_after_another_are_forked_from_one_server(
    instance: DagsterInstance, release: Path
) -> None:
    launcher, first = _launch_warm(instance)
    _, second = _launch_warm(instance)
    server = launcher.fork_server().server_pid
    workers = [int(run.tags[WORKER_PID_TAG]) for run in (first, second)]
    assert workers[0] != workers[1]
    assert [_parent_of(pid) for pid in workers] == [server, server]
    release.touch()
    finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}
    assert [_wait_for(instance, run.run_id, finished).status for run in (first, second)] == [
        DagsterRunStatus.SUCCESS,
        DagsterRunStatus.SUCCESS,
    ]


def test_a_server_started_before_a_code_change_is_replaced_before_its_next_run(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text("x = 1\n")
    server = _ready_server([tmp_path])
    try:
        before = server.server_pid
        later = time.time() + 1
        os.utime(source, (later, later))
        assert server.start_run("not a run") is not None
        assert server.server_pid not in (None, before)
    finally:
        server.close()


def test_a_server_idle_too_long_is_replaced_before_its_next_run(tmp_path: Path) -> None:
    server = _ready_server([], max_idle_s=0.0)
    try:
        before = server.server_pid
        time.sleep(0.01)
        assert server.start_run("not a run") is not None
        assert server.server_pid not in (None, before)
    finally:
        server.close()


def test_the_server_exits_when_the_launcher_closes_it(tmp_path: Path) -> None:
    server = _ready_server([])
    pid = server.server_pid
    assert pid is not None and server.start_run("not a run") is not None
    server.close()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert server.start_run("not a run") is None


def test_a_forked_child_that_fails_is_reaped_by_the_server(tmp_path: Path) -> None:
    server = _ready_server([])
    try:
        child = server.start_run("not a run")  # unreadable arguments: the child fails at once
        assert child is not None
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{child}").exists()  # exited and collected, not left a zombie
    finally:
        server.close()


def test_preloading_that_starts_a_thread_is_refused_rather_than_forked_from() -> None:
    with pytest.raises(RuntimeError, match="started-at-import"):
        preload(["ml_connector_dagster_tests.launcher.threaded_module"])
    from . import threaded_module

    threaded_module.stop.set()


def test_a_server_that_cannot_preload_leaves_runs_to_the_default_launch_for_a_while(tmp_path: Path) -> None:
    server = ForkServer(["ml_connector_dagster_tests.launcher.threaded_module"], [], max_idle_s=600,
                        ready_timeout_s=60)  # fmt: skip
    try:
        assert server.start_run("not a run") is None
        started = time.monotonic()
        assert server.start_run("not a run") is None and server.server_pid is None  # not started again at once
        assert time.monotonic() - started < 1
    finally:
        server.close()


def test_an_older_dagster_yaml_with_the_pools_settings_still_loads(tmp_path: Path) -> None:
    launcher = {
        "module": "ml_connector_dagster.launcher",
        "class": "WarmProcessRunLauncher",
        "config": {"preload_modules": [TEST_JOBS], "pool_size": 2, "refill_delay_seconds": 3.0},
    }
    with DagsterInstance.local_temp(str(tmp_path), overrides={"run_launcher": launcher}) as instance:
        assert isinstance(instance.run_launcher, WarmProcessRunLauncher)
