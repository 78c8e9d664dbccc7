"""Acumatica and Jira: Acumatica documents that need attention become Jira issues; resolving one acts on it.

Jira is not an accounting system: no financial record moves into it. A bill on hold or out of
balance, a purchase order pending approval or rejected, a payment put on hold (the rules in
``connector.yaml``, :class:`~ml_connector_dagster.config.AcumaticaExceptionRule`) opens one Jira
issue per document, with the reference, vendor and amount in its summary and the document's facts
in an ADF description. A change of the document becomes a comment saying what changed; leaving the
exception, a closing comment (once). Issues are deduped on the external-id field, which holds the
document's Acumatica path (``Bill/Bill/001042``): a re-read document never opens a second issue.

The return path: when such an issue is resolved (Done), ml-connector re-reads the document and
releases the bill or payment, or approves the purchase order, exactly once, and comments the
outcome (released, already released, refused with Acumatica's reason) on the issue.

Dagster shape:

- ``jira/acumatica_exception_issues``: a graph-backed asset (plan -> push), partitioned like the
  Acumatica sources it depends on (``acumatica/bills``, ``acumatica/purchase_orders``,
  ``acumatica/payments``), in the ``jira_api`` pool; the sources' poll sensors and the inbox sensor
  request it with them. :func:`dry_run_config` plans without writing. Its ``reconciled`` check:
  exactly one issue per document of the partition that needs attention.
- ``acumatica_jira_release``: a job, one run per batch of resolved issues (issue ids in its run
  config; none: retry the return path's dead letters), in the ``acumatica_api`` pool. A job rather
  than an asset: a release is an action on a document, not a materialized dataset, and its runs
  follow resolutions, not partitions.
- ``acumatica_jira_resolutions``: the sensor requesting those runs, from Jira webhooks in the
  inbox and a JQL poll on the resolution date (:mod:`.acumatica_jira_resolutions`).
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from ml_connector_dagster.assets.acumatica import BACKFILL, acumatica_partitions
from ml_connector_dagster.assets.acumatica import POOL as ACUMATICA_POOL
from ml_connector_dagster.check_scope import PARTITION_AUDIT
from ml_connector_dagster.config import AcumaticaJiraFlow, AcumaticaSettings
from ml_connector_dagster.core.http import RetryPolicy
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.run_tags import job_tags
from ml_connector_dagster.systems.acumatica.resource import AcumaticaResource
from ml_connector_dagster.systems.jira.resource import JiraResource

from .acumatica_jira_issues import (
    ASSET,
    FLOW,
    IssuePlan,
    check_creates,
    exceptional_documents,
    plan_partitions,
    projects_of,
    push_plan,
)
from .acumatica_jira_release import RELEASE_ASSET, ActionInDoubt, release_resolved
from .acumatica_jira_resolutions import build_resolution_sensor
from .jira_destination import (
    Action,
    PushConfig,
    deferred_error,
    outcome_metadata,
    reconcile,
    reconciled_result,
    step_retry_policy,
)

__all__ = [
    "ACTION_RETRY",
    "GROUP",
    "KINDS",
    "POOL",
    "RELEASE_JOB",
    "RELEASE_OP",
    "AcumaticaJiraDefinitions",
    "ReleaseConfig",
    "build_acumatica_jira",
    "build_issue_asset",
    "build_reconciled_check",
    "build_release_job",
    "dry_run_config",
]

GROUP = "acumatica_jira"
POOL = "jira_api"
KINDS = {"acumatica", "jira"}
RELEASE_JOB = "acumatica_jira_release"
RELEASE_OP = "release_resolved_documents"
SOURCE_KEYS = tuple(dg.AssetKey(["acumatica", name]) for name in ("bills", "purchase_orders", "payments"))
PLAN_ROWS_SHOWN = 500
# A release's status polls: a few quick retries (the step's retry policy covers longer outages).
ACTION_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.5, max_delay_s=5)
_GRAPH = ASSET.replace("/", "__")


def dry_run_config() -> dict[str, Any]:
    """Run config that makes a materialization of the issues asset plan only (nothing written to Jira)."""
    return {"ops": {_GRAPH: {"ops": {"push_acumatica_exception_issues": {"config": {"dry_run": True}}}}}}


def _plan_table(plan: IssuePlan) -> dg.TableMetadataValue:
    shown = [r for r in plan.records if r.action is not Action.FILTERED][:PLAN_ROWS_SHOWN]
    rows = [dg.TableRecord({
        "document": r.external_id, "action": r.action.value, "exception": (r.issue.exception or "—") if r.issue else "",
        "issue": r.issue_key or "", "detail": "closing comment" if r.closing else ", ".join(c[0] for c in r.changes),
    }) for r in shown]  # fmt: skip
    rows += [dg.TableRecord({"document": c.external_id, "action": Action.CREATE.value, "exception": c.exception,
                             "issue": "", "detail": ""})
             for c in plan.stored_creates[: max(0, PLAN_ROWS_SHOWN - len(rows))]]  # fmt: skip
    columns = ("document", "action", "exception", "issue", "detail")
    return dg.MetadataValue.table(rows, schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]))


def _counts(plan: IssuePlan) -> dict[str, int]:
    return {"skipped": plan.count(Action.SKIP), "needs_no_attention": plan.count(Action.FILTERED)}


def build_issue_asset(settings: AcumaticaJiraFlow, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``jira/acumatica_exception_issues``: plan the partition's documents, then push the plan."""
    retry = step_retry_policy(settings.op_retries, settings.op_retry_delay_s)

    @dg.op(name="plan_acumatica_exception_issues", ins={"landed": dg.In(dg.Nothing)}, pool=POOL, retry_policy=retry,
           description="Name each document's exception and decide create / update / skip per document.")
    def plan(context: dg.OpExecutionContext, jira: JiraResource, ledger: LedgerResource) -> IssuePlan:
        with jira.client() as client, ledger.open() as opened:
            planned = plan_partitions(context.partition_keys, client=client, ledger=opened, settings=settings)
        context.log.info(f"{ASSET} {planned.partition_key}: " + ", ".join(f"{a.value} {planned.count(a)}" for a in Action))
        return planned

    @dg.op(name="push_acumatica_exception_issues", pool=POOL, retry_policy=retry, out=dg.Out(dg.Nothing),
           description="Carry out the plan in Jira (with dry_run, only show it).")
    def push(context: dg.OpExecutionContext, config: PushConfig, plan: IssuePlan, jira: JiraResource,
             ledger: LedgerResource) -> None:
        if config.dry_run:
            with jira.client() as client:
                plan = check_creates(plan, client=client, settings=settings)  # what the push would adopt
            context.add_output_metadata({"dry_run": True, **{f"would_{a.value}": plan.count(a) for a in
                                         (Action.CREATE, Action.UPDATE, Action.LINK)}, **_counts(plan),
                                         "plan": _plan_table(plan)})  # fmt: skip
            return
        with jira.client() as client, ledger.open() as opened:
            outcome = push_plan(plan, client=client, ledger=opened, settings=settings, run_id=context.run_id,
                                log=context.log, retrying=context.retry_number > 0)  # fmt: skip
        if outcome.deferred:
            raise deferred_error(ASSET, outcome.deferred)
        context.add_output_metadata({**outcome_metadata(outcome), **_counts(plan)})

    @dg.graph_asset(
        key=dg.AssetKey(ASSET.split("/")), ins={key.path[-1]: dg.AssetIn(key=key, dagster_type=dg.Nothing)
                                                for key in SOURCE_KEYS},
        partitions_def=partitions_def, group_name=GROUP, kinds=KINDS, backfill_policy=BACKFILL,
        description="Jira issues of the Acumatica bills, POs and payments that need attention, one per document.",
    )  # fmt: skip
    def issues(**landed: Any) -> Any:
        return push(plan(list(landed.values())))

    return issues


def build_reconciled_check(settings: AcumaticaJiraFlow, partitions_def: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    """``reconciled``: each document of the partition that needs attention has exactly one issue."""

    @dg.asset_check(asset=dg.AssetKey(ASSET.split("/")), name="reconciled", partitions_def=partitions_def, pool=POOL,
                    metadata=PARTITION_AUDIT,
                    description="Every Acumatica document of the partition that needs attention has exactly one "
                                "Jira issue (a duplicate is an error).")  # fmt: skip
    def reconciled(context: dg.AssetCheckExecutionContext, jira: JiraResource,
                   ledger: LedgerResource) -> dg.AssetCheckResult:
        with jira.client() as client, ledger.open() as opened:
            result = reconcile(exceptional_documents(opened, context.partition_keys, settings), flow=FLOW,
                               client=client, ledger=opened, project_keys=projects_of(settings),
                               field_id=client.field_id(settings.external_id_field))
        return reconciled_result(result)

    return reconciled


class ReleaseConfig(dg.Config):
    """Which resolved issues to act on."""

    issues: list[str] = Field(
        default_factory=list, description="Jira issue ids or keys; empty: retry the return path's dead letters.",
    )


def _replayed(ledger: Ledger) -> list[str]:
    return [letter.source_id for letter in ledger.open_dead_letters(RELEASE_ASSET)]


def build_release_job(settings: AcumaticaJiraFlow) -> dg.JobDefinition:
    """``acumatica_jira_release``: release (or approve) the documents of resolved issues, once each."""

    @dg.op(name=RELEASE_OP, pool=ACUMATICA_POOL, retry_policy=step_retry_policy(settings.op_retries,
                                                                                settings.op_retry_delay_s),
           description="Re-read each resolved issue's document, release or approve it once, comment the outcome.")
    def release(context: dg.OpExecutionContext, config: ReleaseConfig, jira: JiraResource,
                acumatica: AcumaticaResource, ledger: LedgerResource) -> None:
        with jira.client() as jira_client, acumatica.client(retry=ACTION_RETRY) as client, ledger.open() as opened:
            issues = config.issues or _replayed(opened)
            report = release_resolved(issues, jira=jira_client, acumatica=client, ledger=opened, settings=settings,
                                      run_id=context.run_id, log=context.log)
        if report.in_doubt:
            raise ActionInDoubt(f"{RELEASE_JOB}: {len(report.in_doubt)} action(s) in doubt "
                                f"({', '.join(report.in_doubt[:10])}); looking again before acting")
        context.add_output_metadata({"issues": len(issues), **report.counts,
                                     "comments": dg.MetadataValue.json(report.comments)})

    @dg.job(name=RELEASE_JOB, tags=job_tags("acumatica_jira", writes=["acumatica"]),
            description="Jira issues resolved -> Release/Approve of their Acumatica documents, after a status check.")
    def acumatica_jira_release() -> None:
        release()

    return acumatica_jira_release


@dataclass(frozen=True)
class AcumaticaJiraDefinitions:
    """What the flow adds to the code location."""

    assets: list[dg.AssetsDefinition]
    asset_checks: list[dg.AssetChecksDefinition]
    jobs: list[dg.JobDefinition]
    sensors: list[dg.SensorDefinition]


def build_acumatica_jira(settings: AcumaticaJiraFlow, acumatica: AcumaticaSettings, *, lookback: timedelta,
                         poll_interval_seconds: float = 60, wait_for_events_s: float = 0.0) -> AcumaticaJiraDefinitions:
    """The issues asset with its reconciliation check, the release job and the sensor that feeds it
    (webhook hints every second, watched for ``wait_for_events_s`` in a tick that finds none; Jira
    polled every ``poll_interval_seconds``)."""
    job = build_release_job(settings)
    sensor = build_resolution_sensor(settings, job, RELEASE_OP, lookback=lookback,
                                     poll_interval_seconds=poll_interval_seconds, wait_for_events_s=wait_for_events_s)
    partitions_def = acumatica_partitions(acumatica.partitions_start)
    return AcumaticaJiraDefinitions(assets=[build_issue_asset(settings, partitions_def)],
                                    asset_checks=[build_reconciled_check(settings, partitions_def)],
                                    jobs=[job], sensors=[sensor])
