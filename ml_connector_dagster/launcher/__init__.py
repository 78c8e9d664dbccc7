"""A run launcher for a single machine that forks each run from a process that has imported the code.

Dagster's default launcher asks the code server to spawn a fresh Python for every run, which then
spends seconds of CPU importing before its first step: most of a webhook's journey to its
destination, and on a small machine most of what a burst of runs does. :class:`WarmProcessRunLauncher`
keeps one fork server (:mod:`.worker`, :mod:`.fork_server`) that has already imported the code
location and forks a run worker per run; a run it cannot serve that way (a different interpreter,
or a server that failed) goes the default way. It suits the embedded instance (``dagster dev``, one
machine); a cluster deployment uses its own launcher (see ``deploy/``).

Set in dagster.yaml::

    run_launcher:
      module: ml_connector_dagster.launcher
      class: WarmProcessRunLauncher
      config:
        preload_modules: [ml_connector_dagster.definitions]
"""

from __future__ import annotations

import importlib.util
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import Array, Field, Noneable
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClassData, serialize_value

from .coordinator import FAST_LANE_TAGS, WebhookFastLaneRunCoordinator
from .fork_server import ForkServer

__all__ = ["FAST_LANE_TAGS", "WORKER_PID_TAG", "WarmProcessRunLauncher", "WebhookFastLaneRunCoordinator"]

WORKER_PID_TAG = "ml_connector/run_worker_pid"
_IGNORED = "Ignored: it sized the pool of pre-importing workers that the fork server replaced."


def _package_dirs(modules: Sequence[str]) -> list[Path]:
    """The top-level package directory of each module: what a code change would touch."""
    dirs = []
    for name in modules:
        spec = importlib.util.find_spec(name.split(".")[0])
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(Path(p) for p in spec.submodule_search_locations)
        elif spec is not None and spec.origin:
            dirs.append(Path(spec.origin))
    return dirs


class WarmProcessRunLauncher(DefaultRunLauncher):
    """Launches runs in pre-started worker processes on this machine; falls back to the default."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        preload_modules: Sequence[str] = (),
        watch_paths: Sequence[str] | None = None,
        max_idle_seconds: float = 600.0,
        ready_timeout_seconds: float = 60.0,
        pool_size: int | None = None,
        refill_delay_seconds: float | None = None,
    ) -> None:
        super().__init__(inst_data=inst_data)
        # pool_size and refill_delay_seconds configured the pool of pre-importing workers the fork server
        # replaced: accepted and ignored, so that an instance's older dagster.yaml still loads.
        del pool_size, refill_delay_seconds
        self._preload = list(preload_modules)
        self._watch = [Path(p) for p in watch_paths] if watch_paths is not None else None
        self._max_idle_s = max_idle_seconds
        self._ready_timeout_s = ready_timeout_seconds
        self._server: ForkServer | None = None

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "preload_modules": Field(Array(str), is_required=False, default_value=[],
                                     description="Modules the fork server imports before it forks runs."),
            "watch_paths": Field(Noneable(Array(str)), is_required=False, default_value=None,
                                 description="Files/directories whose change replaces an older server "
                                             "(default: the preloaded packages, plus ML_CONNECTOR_CONFIG)."),
            "max_idle_seconds": Field(float, is_required=False, default_value=600.0,
                                      description="A server idle this long is replaced before its next run."),
            "ready_timeout_seconds": Field(float, is_required=False, default_value=60.0,
                                           description="How long a launch waits for a starting server."),
            "pool_size": Field(Noneable(int), is_required=False, description=_IGNORED),
            "refill_delay_seconds": Field(Noneable(float), is_required=False, description=_IGNORED),
        }  # fmt: skip

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> WarmProcessRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    def fork_server(self) -> ForkServer:
        """The fork server (started on the first launch)."""
        # Created on the first launch only: every process that loads the instance builds a launcher
        # (webserver, run workers themselves), and only the one that launches should hold a server.
        if self._server is None:
            watch = self._watch
            if watch is None:
                watch = _package_dirs(self._preload)
                if os.environ.get("ML_CONNECTOR_CONFIG"):
                    watch.append(Path(os.environ["ML_CONNECTOR_CONFIG"]))
            self._server = ForkServer(self._preload, watch, max_idle_s=self._max_idle_s,
                                      ready_timeout_s=self._ready_timeout_s)  # fmt: skip
        return self._server

    def launch_run(self, context: LaunchRunContext) -> None:
        """Fork the run from the warm server when it fits, else launch it through the code server."""
        run = context.dagster_run
        origin = run.job_code_origin
        server = self.fork_server()
        same_interpreter = origin is not None and os.path.realpath(
            origin.executable_path
        ) == os.path.realpath(server.executable)
        pid = None
        if same_interpreter:
            args = ExecuteRunArgs(job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref())
            pid = server.start_run(serialize_value(args))
        if pid is None:
            super().launch_run(context)
            return
        self._instance.add_run_tags(run.run_id, {WORKER_PID_TAG: str(pid)})
        self._run_ids.add(run.run_id)

    def terminate(self, run_id: str) -> bool:
        """Interrupt a warm worker's run as Dagster's own worker is (SIGINT -> the run is canceled)."""
        run = self._instance.get_run_by_id(run_id) if self.has_instance else None
        if run is None or run.is_finished or WORKER_PID_TAG not in run.tags:
            return super().terminate(run_id)
        self._instance.report_run_canceling(run)
        try:
            os.kill(int(run.tags[WORKER_PID_TAG]), signal.SIGINT)
        except ProcessLookupError:
            self._instance.report_run_canceled(run, message="Its run worker had already exited.")
        return True

    def dispose(self) -> None:
        if self._server is not None:
            self._server.close()

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """Alive or not, by the run worker's pid (every launch here is on this machine)."""
        pid = self._run_worker_pid(run)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker not started yet", transient=True)
        if _process_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker process {pid} exited without finishing the run",
            run_worker_id=str(pid),
        )

    def _run_worker_pid(self, run: DagsterRun) -> int | None:
        if WORKER_PID_TAG in run.tags:
            return int(run.tags[WORKER_PID_TAG])
        # A run launched through the code server records its process in an engine event.
        for record in self._instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
            event = record.dagster_event
            data = event.engine_event_data if event is not None else None
            pid = data.metadata.get("pid") if data is not None else None
            if pid is not None and (event.message or "").startswith("Started process for run"):
                return int(pid.value)
        return None


def _process_alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # our own child: reap it if it has exited
        return waited == 0
    except ChildProcessError:
        pass  # not our child: ask the kernel whether it exists at all
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
