"""What dagster-daemon does for a code location, done by hand in this process for one chaos schedule.

Sensor ticks (the cursor is kept only when a tick completes, as the daemon commits it), the run queue
(a run key is launched once, ever), run retries (``run_retries: max_retries: 1`` of the production
instance) and launches of jobs from the Launchpad (the replay jobs an operator starts). Runs execute
in process against the schedule's instance, as the code location defines them.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

__all__ = ["Daemon", "RunAttempt"]

# Runs log to the instance (scanned for secrets afterwards), not to the terminal.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass(frozen=True)
class RunAttempt:
    """A run as it was requested: enough to execute it again."""

    job_name: str
    run_config: Mapping[str, Any]
    partition_key: str | None
    asset_selection: tuple[dg.AssetKey, ...] | None
    tags: Mapping[str, str]
    origin: str


@dataclass
class Daemon:
    """Sensor ticks, the run queue and run retries of one code location, on one instance."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    cursors: dict[str, str | None] = field(default_factory=dict)
    run_keys: set[str] = field(default_factory=set)
    failed: list[RunAttempt] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    runs: int = 0
    failed_runs: int = 0
    failed_ticks: int = 0
    errors: list[str] = field(default_factory=list)
    tick_logs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.repository = self.defs.get_repository_def()

    def sensor_names(self) -> list[str]:
        return [sensor.name for sensor in self.repository.sensor_defs]

    def sensors_reaching(self, group: str) -> list[str]:
        """The sensors whose runs materialize an asset of ``group`` (the poll sensors feeding a flow)."""
        graph = self.defs.resolve_asset_graph()
        wanted = {key for key in graph.get_all_asset_keys() if graph.get(key).group_name == group}
        reaching = []
        for sensor in self.repository.sensor_defs:
            try:
                keys = self.repository.get_job(sensor.job_name).asset_layer.executable_asset_keys
            except Exception:  # noqa: BLE001 - a sensor without a job (run status sensors) reaches nothing
                continue
            if keys & wanted and sensor.name != "inbox_sensor":
                reaching.append(sensor.name)
        return reaching

    # -- sensors ---------------------------------------------------------------------------------
    def evaluate(self, name: str) -> tuple[list[dg.RunRequest], str | None] | None:
        """One tick of sensor ``name``: its run requests and new cursor, or None when the tick failed."""
        sensor = self.repository.get_sensor_def(name)
        console = io.StringIO()  # a tick's log goes to the daemon's console: kept for the secret scan
        try:
            with contextlib.redirect_stderr(console), dg.build_sensor_context(
                instance=self.instance, cursor=self.cursors.get(name), definitions=self.defs,
                resources=self.defs.resources,
            ) as context:  # fmt: skip
                data = sensor.evaluate_tick(context)
        except Exception as exc:  # noqa: BLE001 - a failed tick is what a source outage looks like
            self.failed_ticks += 1
            self.errors.append(f"tick {name}: {type(exc).__name__}: {exc}")
            return None
        finally:
            if console.getvalue():
                self.tick_logs.append(console.getvalue())
        return list(data.run_requests or []), data.cursor

    def tick(self, name: str) -> int:
        """Evaluate sensor ``name``, keep its cursor, launch what it requests; how many runs it launched."""
        evaluated = self.evaluate(name)
        if evaluated is None:
            return 0
        requests, cursor = evaluated
        self.cursors[name] = cursor
        return self.launch(name, requests)

    def launch(self, sensor_name: str, requests: list[dg.RunRequest]) -> int:
        """Execute each request whose run key is new (the daemon dedupes run keys forever), retrying a
        failed run once."""
        launched = 0
        for request in requests:
            if request.run_key is not None:
                if request.run_key in self.run_keys:
                    continue
                self.run_keys.add(request.run_key)
            self.run_with_retry(self.attempt_of(sensor_name, request))
            launched += 1
        return launched

    def attempt_of(self, sensor_name: str, request: dg.RunRequest) -> RunAttempt:
        """The run a sensor's request asks for: its job (the sensor's, or the asset job for a selection)."""
        sensor = self.repository.get_sensor_def(sensor_name)
        return RunAttempt(
            job_name=sensor.job_name if request.asset_selection is None else "__ASSET_JOB",
            run_config=dict(request.run_config or {}), partition_key=request.partition_key,
            asset_selection=tuple(request.asset_selection) if request.asset_selection else None,
            tags={**(request.tags or {}), "dagster/sensor_name": sensor_name}, origin=sensor_name,
        )  # fmt: skip

    # -- runs -------------------------------------------------------------------------------------
    def job(self, name: str) -> dg.JobDefinition:
        if name == "__ASSET_JOB":
            return self.defs.resolve_implicit_global_asset_job_def()
        return self.repository.get_job(name)

    def execute(self, attempt: RunAttempt) -> bool:
        """Execute one run of ``attempt`` in process; True when it succeeded."""
        self.runs += 1
        config = {**QUIET, **attempt.run_config}
        try:
            result = self.job(attempt.job_name).execute_in_process(
                run_config=config, partition_key=attempt.partition_key, instance=self.instance,
                asset_selection=list(attempt.asset_selection) if attempt.asset_selection else None,
                tags=dict(attempt.tags), raise_on_error=False,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the framework failing a run is a failed run
            self.failed_runs += 1
            self.errors.append(f"run {attempt.origin}: {type(exc).__name__}: {exc}")
            return False
        self.run_ids.append(result.run_id)
        if not result.success:
            self.failed_runs += 1
            failures = [event for event in result.all_events if event.is_step_failure]
            for event in failures[:2]:
                error = event.step_failure_data.error
                while error is not None and error.cause is not None:  # the user code's own error, innermost
                    error = error.cause
                message = error.message.strip().splitlines()[0] if error else "failed"
                self.errors.append(f"run {attempt.origin} {event.step_key}: {message}")
        return result.success

    def run_with_retry(self, attempt: RunAttempt) -> bool:
        """Execute, and once more when it fails (run retries); a run failing twice waits in ``failed``."""
        if self.execute(attempt) or self.execute(attempt):
            return True
        self.failed.append(attempt)
        return False

    def retry_failed(self) -> int:
        """Re-execute every run that failed for good (what an operator does from the Runs page once the
        outage is over); how many were re-executed."""
        pending, self.failed = self.failed, []
        for attempt in pending:
            self.run_with_retry(attempt)
        return len(pending)

    def materialize_group(self, group: str, partition_key: str) -> bool:
        """Materialize a flow's assets and the sources feeding them for one partition, as an operator's
        backfill from the Lineage page does."""
        graph = self.defs.resolve_asset_graph()
        keys = {key for key in graph.get_all_asset_keys() if graph.get(key).group_name == group
                and graph.get(key).partitions_def is not None}  # fmt: skip
        keys |= {parent for key in keys for parent in graph.get(key).parent_keys
                 if graph.get(parent).partitions_def is not None}  # fmt: skip
        return self.run_with_retry(RunAttempt(job_name="__ASSET_JOB", run_config={}, partition_key=partition_key,
                                              asset_selection=tuple(sorted(keys)), origin=f"backfill {group}",
                                              tags={"ml_connector/trigger": "chaos-operator"}))  # fmt: skip

    def materialize_reference(self) -> bool:
        """Materialize every unpartitioned asset, as ``ml-connector sync`` does before the partitions."""
        graph = self.defs.resolve_asset_graph()
        keys = tuple(sorted(key for key in graph.get_all_asset_keys() if graph.get(key).is_materializable
                            and graph.get(key).partitions_def is None))  # fmt: skip
        return self.run_with_retry(RunAttempt(job_name="__ASSET_JOB", run_config={}, partition_key=None,
                                              asset_selection=keys, origin="reference data",
                                              tags={"ml_connector/trigger": "chaos-operator"}))  # fmt: skip

    def launch_job(self, name: str, run_config: Mapping[str, Any] | None = None) -> bool:
        """Launch job ``name`` as an operator does from the Launchpad (replay jobs)."""
        return self.run_with_retry(RunAttempt(job_name=name, run_config=dict(run_config or {}), partition_key=None,
                                              asset_selection=None, tags={"ml_connector/trigger": "chaos-operator"},
                                              origin=name))  # fmt: skip
