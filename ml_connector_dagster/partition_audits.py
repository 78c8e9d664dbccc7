"""The daily partition audit: each flow's ``reconciled`` checks, run once a day for the day that ended.

A ``reconciled`` check reads its whole partition back from the destination: one Jira search per 40
records, an Asana task read back per record, a monday lookup per 100, a Visma listing. Sensor runs
carry changes (a poll run the records of a window, a webhook's run a few ids), so they leave it out
(:func:`~ml_connector_dagster.check_scope.record_checks`): a poll run a minute auditing its whole day
re-read a 5,000-record day's destination objects every minute, the re-read the sync exists to avoid
(read back from Asana, more than a free plan allows in half an hour). Instead, one job per flow
(``reconcile_<flow>``) runs the flow's audited destination assets with their checks for a partition,
and a schedule runs it every day at ``audit_at_utc`` for the day before: the plan finds nothing new
(the ledger links every record), the push makes no call, a record whose push failed is tried once
more, and the audit reads the partition back once. Backfills and runs started by hand carry every check, as Dagster does; a
backfill of a ``reconcile_<flow>`` job audits any range of days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, time, timedelta
from typing import Any

import dagster as dg

from ml_connector_dagster.check_scope import audits_partition
from ml_connector_dagster.run_tags import FLOW_TAG, JOB_KIND_TAG, tags_for_assets

__all__ = ["AUDIT_JOB_KIND", "AuditSchedules", "audit_job_name", "audit_schedules"]

AUDIT_JOB_KIND = "reconcile"


def audit_job_name(flow: str) -> str:
    """The job that audits ``flow``'s partitions (its assets' group)."""
    return f"{AUDIT_JOB_KIND}_{flow}"


@dataclass(frozen=True)
class AuditSchedules:
    """The audit jobs, one per flow with a partition audit, and their daily schedules."""

    jobs: Sequence[dg.UnresolvedAssetJobDefinition]
    schedules: Sequence[dg.ScheduleDefinition]


def _audited_assets(assets: Iterable[Any], checks: Iterable[dg.AssetChecksDefinition],
                    ) -> dict[str, list[dg.AssetsDefinition]]:  # fmt: skip
    """Flow (group name) -> its daily-partitioned assets that a partition audit checks.

    An unpartitioned asset (reference data on a monday board) is audited whole by every run of it:
    its own schedule's, no sensor's.
    """
    audited = {spec.asset_key for check in checks for spec in check.check_specs if audits_partition(spec)}
    by_flow: dict[str, list[dg.AssetsDefinition]] = {}
    for asset in assets:
        if not isinstance(asset, dg.AssetsDefinition) or not audited & set(asset.keys) or not isinstance(
                asset.partitions_def, dg.TimeWindowPartitionsDefinition):
            continue
        groups = {asset.group_names_by_key[key] for key in asset.keys}
        if len(groups) != 1:
            keys = sorted(key.to_user_string() for key in asset.keys)
            raise ValueError(f"an audited asset spans groups {sorted(groups)}: {keys}")
        by_flow.setdefault(groups.pop(), []).append(asset)
    return by_flow


def audit_schedules(assets: Iterable[Any], checks: Iterable[dg.AssetChecksDefinition], *,
                    at: time) -> AuditSchedules:  # fmt: skip
    """A ``reconcile_<flow>`` job and its daily schedule (at ``at``, UTC) for every flow with a partition audit."""
    jobs: list[dg.UnresolvedAssetJobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    for flow, audited in sorted(_audited_assets(assets, checks).items()):
        shared = {asset.partitions_def for asset in audited}
        if len(shared) != 1:
            raise ValueError(f"{flow}: the audited assets must share one partitioning")
        partitions = shared.pop()
        assert isinstance(partitions, dg.TimeWindowPartitionsDefinition)
        job = dg.define_asset_job(
            audit_job_name(flow), selection=dg.AssetSelection.assets(*audited), partitions_def=partitions,
            tags={FLOW_TAG: flow, JOB_KIND_TAG: AUDIT_JOB_KIND, **tags_for_assets(audited)},
            description=f"{flow}: plan and push a day again (nothing new: no call) and audit it against the "
                        "destination (the reconciled checks).",
        )  # fmt: skip
        jobs.append(job)
        schedules.append(_daily_audit(job, partitions, flow, at))
    return AuditSchedules(jobs=jobs, schedules=schedules)


def _daily_audit(job: dg.UnresolvedAssetJobDefinition, partitions: dg.TimeWindowPartitionsDefinition, flow: str,
                 at: time) -> dg.ScheduleDefinition:  # fmt: skip
    # Not build_schedule_from_partitioned_job: the partitions run a day ahead (end_offset=1: today's
    # changes sync as they happen), so "the latest partition" at the tick is today's, still open.
    @dg.schedule(name=f"{job.name}_schedule", job=job, cron_schedule=f"{at.minute} {at.hour} * * *",
                 execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Audit {flow}'s partition of the day that ended (sensor runs leave the audit out).")
    def daily_audit(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        ended = context.scheduled_execution_time.astimezone(UTC) - timedelta(days=1)
        key = partitions.get_partition_key_for_timestamp(ended.timestamp())
        if not partitions.has_partition_key(key):
            return dg.SkipReason(f"{ended:%Y-%m-%d} is before the first partition")
        return dg.RunRequest(run_key=f"{job.name}:{key}", partition_key=key)

    return daily_audit
