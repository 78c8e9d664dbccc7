"""A headless one-shot sync: reference data, then one daily partition, on the local Dagster instance.

Used by ``ml-connector sync`` (``make sync``). The runs land in the same instance the UI shows, so
what moved is also in run history; the printed report is the terminal's view of the same metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster import AssetKey, DagsterInstance, Definitions
from tqdm import tqdm

from .config import connector_home
from .progress import progress_bar, step_count, step_progress_logger

# Metadata keys worth a column in the terminal report, in this order.
REPORT_KEYS = ("read", "inserted", "updated", "unchanged", "quarantined", "created", "commented",
               "audit_commented", "transitioned", "skipped", "filtered", "failed")  # fmt: skip


# The terminal shows the report; the full event log is in the instance's run history. The progress
# logger moves the bar on stderr (drawn only on a terminal) as steps end.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}, "progress": {}}}


@dataclass
class AssetOutcome:
    asset: str
    partition: str | None
    figures: dict[str, int]


@dataclass
class SyncReport:
    partition_key: str
    outcomes: list[AssetOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.errors

    def render(self) -> str:
        """A fixed-width table: one row per materialized asset, one column per figure reported."""
        keys = [k for k in REPORT_KEYS if any(k in o.figures for o in self.outcomes)]
        header = ["asset", "partition", *keys]
        rows = [[o.asset, o.partition or "-", *[str(o.figures.get(k, "")) for k in keys]] for o in self.outcomes]
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
        lines = [f"ml-connector sync, partition {self.partition_key}"]
        for row in [header, *rows]:
            lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)))
        lines.extend(f"FAILED: {error}" for error in self.errors)
        return "\n".join(lines)


def local_instance() -> DagsterInstance:
    """The connector's local Dagster instance (``$DAGSTER_HOME``, else the connector home)."""
    os.environ.setdefault("DAGSTER_HOME", str(connector_home()))
    return DagsterInstance.get()


def run_sync(partition_key: str, defs: Definitions | None = None, instance: DagsterInstance | None = None) -> SyncReport:
    """Materialize every unpartitioned asset, then every partitioned one for ``partition_key``."""
    if defs is None:
        from .definitions import defs as loaded

        defs = loaded
    instance = instance or local_instance()
    specs = defs.resolve_all_asset_specs()
    reference = [s.key for s in specs if s.partitions_def is None]
    partitioned = [s.key for s in specs if s.partitions_def is not None]
    job = defs.resolve_implicit_global_asset_job_def()
    report = SyncReport(partition_key)
    phases = [(keys, partition) for keys, partition in ((reference, None), (partitioned, partition_key)) if keys]
    with progress_bar(desc="sync", unit="step",
                      total=sum(step_count(job.get_subset(asset_selection=set(keys))) for keys, _ in phases)) as bar:
        for keys, partition in phases:
            _execute(job, keys, partition, instance, bar, report)
    return report


def _execute(job: dg.JobDefinition, keys: list[AssetKey], partition: str | None, instance: DagsterInstance,
             bar: tqdm[Any], report: SyncReport) -> None:
    """One run of ``keys`` (one partition, or the unpartitioned assets); its figures go into ``report``."""
    loggers = {**(job.loggers or {"console": dg.colored_console_logger}), "progress": step_progress_logger(bar)}
    result = job.with_logger_defs(loggers).execute_in_process(
        instance=instance, asset_selection=keys, partition_key=partition, raise_on_error=False,
        tags={"ml_connector/trigger": "cli-sync"}, run_config=QUIET_CONSOLE,
    )  # fmt: skip
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        report.outcomes.append(
            AssetOutcome(
                asset=AssetKey(materialization.asset_key.path).to_user_string(),
                partition=materialization.partition,
                figures={k: int(v.value) for k, v in materialization.metadata.items()
                         if k in REPORT_KEYS and isinstance(v.value, int | float)},  # fmt: skip
            )
        )
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                report.errors.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
