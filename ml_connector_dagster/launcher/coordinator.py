"""The run queue, with a fast lane for the small runs that webhooks trigger.

Dagster's queued coordinator holds every run until its daemon next looks at the queue (once a
second at best) — a second or more of a webhook's few-second budget, spent waiting in an empty
queue. :class:`WebhookFastLaneRunCoordinator` launches a run tagged as a webhook (inbox) run at
once, from the sensor that requested it, while fewer runs are in progress than the queue allows
and no tag limit applies to it; every other run, and a webhook run when the queue is full, is
queued exactly as before.

A backlog must not take a webhook's room: when poll and backfill runs fill ``max_concurrent_runs``
(slow runs on a busy machine do), a webhook run would wait behind them for minutes. The
``webhook_run_allowance`` setting lets that many webhook runs be in progress beyond the limit — they
are small (a few records fetched by id) — and webhook runs carry ``dagster/priority``, so
they are dequeued first and claim a vendor pool's op slots before a backlog's steps do.

It also carries one setting for the daemon process it is loaded in: ``sensor_loop_interval_seconds``.
Dagster's sensor daemon starts sensor ticks at most every 5 s (a constant, not a setting), so a
webhook that lands just after the inbox sensor's tick returned waits up to 5 s before anything looks
at it. The embedded instance sets 1 s; the constant is checked to exist, so a Dagster upgrade that
moves it fails loudly at start instead of silently slowing webhooks down.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from dagster import DagsterRunStatus, Field, RunsFilter
from dagster._config.config_schema import UserConfigSchema
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES, DagsterRun
from dagster._serdes import ConfigurableClassData

from ml_connector_dagster.run_tags import WEBHOOK_LANE

__all__ = ["FAST_LANE_TAGS", "WebhookFastLaneRunCoordinator", "set_sensor_loop_interval"]

# The tags that mark a run as a webhook's (run_tags.webhook_run_tags): the inbox sensor's runs, and
# acumatica_jira's release runs for resolutions Jira's webhooks reported.
FAST_LANE_TAGS = dict(WEBHOOK_LANE)


class WebhookFastLaneRunCoordinator(QueuedRunCoordinator):
    """Queued coordinator that launches webhook runs immediately while there is room."""

    _room_lock = threading.Lock()
    _webhook_run_allowance = 0

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        schema = dict(super().config_type())  # type: ignore[arg-type]
        schema["webhook_run_allowance"] = Field(
            int, is_required=False, default_value=0,
            description="How many webhook runs may be in progress beyond max_concurrent_runs.",
        )  # fmt: skip
        schema["sensor_loop_interval_seconds"] = Field(
            float, is_required=False,
            description="How often the sensor daemon may start sensor ticks (Dagster's built-in: 5 s).",
        )  # fmt: skip
        return schema

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> WebhookFastLaneRunCoordinator:
        interval = config_value.get("sensor_loop_interval_seconds")
        if interval is not None:
            set_sensor_loop_interval(interval)
        allowance = config_value.get("webhook_run_allowance") or 0
        if allowance < 0:
            raise ValueError(f"webhook_run_allowance: {allowance} is below 0")
        # Dagster's own constructor takes its settings by name and ignores the two above.
        coordinator = super().from_config_value(inst_data, config_value)
        coordinator._webhook_run_allowance = allowance
        return coordinator

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        """Launch a webhook run now if the queue has room for it, else enqueue it as usual."""
        run = context.dagster_run
        if (
            run.status != DagsterRunStatus.NOT_STARTED
            or not self._fast_lane(run)
            or context.workspace is None
        ):
            return super().submit_run(context)
        # One sensor thread at a time checks and takes the room, so two cannot both take the last slot.
        with self._room_lock:
            if not self._room_for_one_more():
                return super().submit_run(context)
            self._instance.launch_run(run.run_id, context.workspace)
        launched = self._instance.get_run_by_id(run.run_id)
        assert launched is not None
        return launched

    def _fast_lane(self, run: DagsterRun) -> bool:
        if any(run.tags.get(key) != value for key, value in FAST_LANE_TAGS.items()):
            return False
        limits = self._instance.get_concurrency_config().run_queue_config
        return not (limits and any(limit["key"] in run.tags for limit in limits.tag_concurrency_limits))

    def _room_for_one_more(self) -> bool:
        limits = self._instance.get_concurrency_config().run_queue_config
        maximum = limits.max_concurrent_runs if limits else self._max_concurrent_runs
        if maximum == -1:
            return True
        if self._instance.get_runs_count(RunsFilter(statuses=ACTIVE_RUN_STATUSES)) < maximum:
            return True
        if not self._webhook_run_allowance:
            return False
        webhook_runs = RunsFilter(statuses=ACTIVE_RUN_STATUSES, tags=FAST_LANE_TAGS)
        return self._instance.get_runs_count(webhook_runs) < self._webhook_run_allowance


def set_sensor_loop_interval(seconds: float) -> None:
    """Let this process's sensor daemon start sensor ticks every ``seconds`` (Dagster's default: 5)."""
    from dagster._daemon import sensor as sensor_daemon

    if not hasattr(sensor_daemon, "MIN_INTERVAL_LOOP_TIME"):
        raise RuntimeError(
            "sensor_loop_interval_seconds: this Dagster version has no dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME; "
            "remove the setting from dagster.yaml"
        )
    if not 0.2 <= seconds <= 60:
        raise ValueError(f"sensor_loop_interval_seconds: {seconds} is outside 0.2..60")
    sensor_daemon.MIN_INTERVAL_LOOP_TIME = seconds
