"""Visma and Asana: purchase orders and supplier invoices become Asana tasks with their budget context.

- Every purchase order and supplier invoice of a day becomes one task in its project ("Purchase
  orders", "Supplier invoices"), with the vendor, amount, currency, due date, PO and invoice
  number, GL account, cost centre, Visma status and the Visma ID in custom fields. A PO's line
  items become its subtasks, each with its own amount and GL account; with ``po_layout: projects``
  each new PO also gets its own project, instantiated from the PO project template.
- GL account names and cost centres from Visma are the options of the GL account and Cost center
  enum fields: added, renamed, disabled when gone or inactive (never deleted while in use), and
  enabled again when they come back.
- Suppliers are mapped to team members by number, name pattern and e-mail or member-name pattern
  (a table in connector.yaml and/or a CSV). A supplier no row maps keeps its name in the Vendor
  field and its task is flagged for review. The decision is made when a task is created: editing
  the table changes the next assignments, never re-syncs old tasks.
- Deduplication needs no search (premium-only in Asana): the Visma ID field and the ledger decide
  create or update; a lost ledger is rebuilt by listing the project once.
- Optionally, what people change on a task (done, assignee, review flag) is noted on the Visma
  document's note, once per change (:mod:`.visma_asana_return`). Finance fields never flow back.

Dagster shape: ``asana/visma_purchase_order_tasks`` and ``asana/visma_invoice_tasks`` are graph-backed
assets (plan -> push) partitioned like their Visma sources; ``asana/visma_reference_options`` is
unpartitioned and follows ``visma/gl_accounts`` and ``visma/dimensions``. All are in the group
``visma_asana``, kinds visma + asana, ops in the ``asana_api`` pool; the task assets have a
``reconciled`` and a dead-letter check. ``visma_asana_replay`` retries dead letters; a ``dry_run``
push config shows the plan without writing. The return path adds ``asana/visma_task_webhooks`` (kept
by a daily schedule), the ``visma_asana_return`` job and its sensor.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import chain, islice
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from ml_connector_dagster.assets.visma import BACKFILL, visma_partitions
from ml_connector_dagster.check_scope import PARTITION_AUDIT
from ml_connector_dagster.config import VismaAsanaFlow, VismaSettings, connector_home
from ml_connector_dagster.core.kept_reference import forget
from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.run_tags import job_tags
from ml_connector_dagster.systems.asana.client import AsanaClient
from ml_connector_dagster.systems.asana.resource import AsanaResource
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.models import validate_record
from ml_connector_dagster.systems.visma.resource import VismaResource

from .destination import (
    CreateInDoubt,
    PushConfig,
    Reconciliation,
    build_dead_letter_check,
    replay_copies,
    step_retry_policy,
)
from .visma_asana_index import ProjectIndex
from .visma_asana_plan import Action, TaskPlan, plan_partitions, plan_records
from .visma_asana_push import PushOutcome, push_plan
from .visma_asana_reference import landed_reference, sync_options
from .visma_asana_render import (
    INVOICES,
    KINDS,
    PURCHASE_ORDERS,
    AsanaContext,
    TaskKind,
    context_key,
    current_fields,
    kept_context,
)
from .visma_asana_return import (
    RETURN_ASSET,
    ReturnOutcome,
    build_return_sensor,
    ensure_task_webhooks,
    report_changes,
)

__all__ = [
    "GROUP",
    "INVOICES",
    "KINDS",
    "POOL",
    "PURCHASE_ORDERS",
    "REFERENCE_KEY",
    "REPLAY_JOB",
    "RETURN_JOB",
    "RETURN_OP",
    "VismaAsanaDefinitions",
    "build_reconciled_check",
    "build_reference_asset",
    "build_task_asset",
    "build_visma_asana",
    "dry_run_config",
    "reconcile",
]

GROUP = "visma_asana"
POOL = "asana_api"
KINDS_TAG = {"visma", "asana"}
REFERENCE_KEY = dg.AssetKey(["asana", "visma_reference_options"])
WEBHOOKS_KEY = dg.AssetKey(["asana", "visma_task_webhooks"])
REPLAY_JOB = "visma_asana_replay"
RETURN_JOB = "visma_asana_return"
RETURN_OP = "note_asana_changes_in_visma"
PLAN_ROWS_SHOWN = 500


def _retry(settings: VismaAsanaFlow) -> dg.RetryPolicy:
    return step_retry_policy(settings.op_retries, settings.op_retry_delay_s)


def _graph_name(kind: TaskKind) -> str:
    return kind.asset.replace("/", "__")


def dry_run_config(kind: TaskKind) -> dict[str, Any]:
    """Run config that makes a materialization of ``kind`` plan only (nothing written to Asana)."""
    return {"ops": {_graph_name(kind): {"ops": {f"push_{kind.name}": {"config": {"dry_run": True}}}}}}


def _context(client: AsanaClient, asana: AsanaResource, settings: VismaAsanaFlow, ledger: Ledger) -> AsanaContext:
    """The workspace's projects, custom fields and users, kept in the ledger for ``context_ttl_s``."""
    return kept_context(client, settings, asana.workspace_gid, ledger=ledger, site=asana.base_url)


# -- metadata ----------------------------------------------------------------------------------------


def _plan_table(plan: TaskPlan) -> dg.MetadataValue:
    frame = pd.DataFrame([{
        "visma_id": r.external_id, "action": r.action.value, "task": r.task_gid or "",
        "assignee": (r.assignment.member_name or "review") if r.assignment else "",
        "detail": r.reason or "; ".join(r.task.unresolved if r.task else ()),
    } for r in islice(chain(plan.records, plan.stored_records()), PLAN_ROWS_SHOWN)],
        columns=["visma_id", "action", "task", "assignee", "detail"])  # fmt: skip
    return dg.MetadataValue.md(frame.to_markdown(index=False, disable_numparse=True) if len(frame) else "_nothing to do_")


def dry_run_metadata(plan: TaskPlan) -> dict[str, Any]:
    """What a push of ``plan`` would do: counts per action and the table of planned actions."""
    unmapped = sum(1 for r in plan.creates() if r.assignment and r.assignment.member_gid is None)
    return {"dry_run": True, **{f"would_{a.value}": plan.count(a) for a in Action}, "would_flag_for_review": unmapped,
            "looked_up_in_asana": plan.looked_up, "plan": _plan_table(plan)}


def push_metadata(outcome: PushOutcome) -> dict[str, Any]:
    """Counts of what the push did (zeros included, so the UI charts them) and a few of the tasks written."""
    counts = outcome.model_dump(exclude={"deferred", "succeeded", "tasks"})
    return {"dry_run": False, **counts, "deferred": len(outcome.deferred), "tasks": dg.MetadataValue.json(outcome.tasks)}


# -- the task assets ---------------------------------------------------------------------------------


def build_task_asset(kind: TaskKind, settings: VismaAsanaFlow,
                     partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The graph-backed asset of one document kind: plan the partition, then push the plan."""
    retry = _retry(settings)

    @dg.op(name=f"plan_{kind.name}", ins={"landed": dg.In(dg.Nothing), "options": dg.In(dg.Nothing)}, pool=POOL,
           retry_policy=retry, description=f"Render {kind.asset}'s partition and decide create / update / skip.")
    def plan(context: dg.OpExecutionContext, asana: AsanaResource, ledger: LedgerResource) -> TaskPlan:
        with asana.client() as client, ledger.open() as opened:
            planned = plan_partitions(kind, context.partition_keys, client=client, ledger=opened, settings=settings,
                                      context=_context(client, asana, settings, opened))  # fmt: skip
        context.log.info(f"{kind.asset} {planned.partition_key}: " + ", ".join(f"{a.value} {planned.count(a)}" for a in Action))
        return planned

    @dg.op(name=f"push_{kind.name}", pool=POOL, retry_policy=retry, out=dg.Out(dg.Nothing),
           description=f"Carry out the plan in Asana (or, with dry_run, only show it) for {kind.asset}.")
    def push(context: dg.OpExecutionContext, config: PushConfig, plan: TaskPlan, asana: AsanaResource,
             ledger: LedgerResource) -> None:
        if config.dry_run:
            context.add_output_metadata(dry_run_metadata(plan))
            return
        with asana.client() as client, ledger.open() as opened:
            outcome = push_plan(plan, kind, client=client, ledger=opened, settings=settings, run_id=context.run_id,
                                log=context.log)  # fmt: skip
        if outcome.deferred:
            raise CreateInDoubt(f"{kind.asset}: {len(outcome.deferred)} create(s) in doubt ({', '.join(outcome.deferred[:10])});"
                                " retrying, which looks them up in the project before creating anything again")
        context.add_output_metadata(push_metadata(outcome))

    @dg.graph_asset(
        key=dg.AssetKey(kind.asset.split("/")), partitions_def=partitions_def, group_name=GROUP, kinds=KINDS_TAG,
        backfill_policy=BACKFILL, ins={
            "landed": dg.AssetIn(key=dg.AssetKey(["visma", kind.source]), dagster_type=dg.Nothing),
            "options": dg.AssetIn(key=REFERENCE_KEY, dagster_type=dg.Nothing),
        },
        description=f"Asana tasks of Visma {kind.entity.value} records, one per document"
                    + (", line items as subtasks." if kind.has_lines else "."),
    )  # fmt: skip
    def tasks(landed: Any, options: Any) -> Any:
        return push(plan(landed=landed, options=options))

    return tasks


# -- reference options -------------------------------------------------------------------------------


def build_reference_asset(settings: VismaAsanaFlow) -> dg.AssetsDefinition:
    """``asana/visma_reference_options``: GL accounts and cost centres as enum options (never deleted)."""

    @dg.asset(key=REFERENCE_KEY, group_name=GROUP, kinds=KINDS_TAG, pool=POOL, retry_policy=_retry(settings),
              deps=[dg.AssetKey(["visma", "gl_accounts"]), dg.AssetKey(["visma", "dimensions"])],
              description="Visma's GL account names and cost centres as the options of Asana's enum custom fields: "
                          "added, renamed, disabled when gone (never deleted while in use), re-enabled.")  # fmt: skip
    def reference_options(context: dg.AssetExecutionContext, asana: AsanaResource,
                          ledger: LedgerResource) -> dg.MaterializeResult:
        with ledger.open() as opened:
            desired = landed_reference(opened, settings)
        with asana.client() as client:
            # Read now, not kept: the options are what this asset changes.
            made = sync_options(client, current_fields(client, settings, asana.workspace_gid), desired, context.log)
        if made:
            with ledger.open() as opened:
                forget(opened, context_key(asana.base_url, asana.workspace_gid, settings))  # seen at once
        counts = Counter(f"{field}: {change.action}" for field, change in made)
        metadata: dict[str, Any] = {"changes_made": len(made), "by_change": dg.MetadataValue.json(dict(counts))}
        rows = [{"field": field, "change": change.action, "option": change.name} for field, change in made]
        table = pd.DataFrame(rows, columns=["field", "change", "option"])
        metadata["changes"] = dg.MetadataValue.md(table.to_markdown(index=False, disable_numparse=True)
                                                  if rows else "_the options already say what Visma says_")
        return dg.MaterializeResult(metadata=metadata)

    return reference_options


# -- reconciliation ----------------------------------------------------------------------------------


def reconcile(kind: TaskKind, partition_keys: Sequence[str], *, client: AsanaClient, context: AsanaContext,
              ledger: Ledger) -> Reconciliation:
    """Every valid landed record of the partitions should have one linked task, and only one.

    The tasks are counted as Asana holds them now (:meth:`ProjectIndex.holders_now`: the project's
    index brought up to date, the tasks it names read back, or the project listed whole when that
    is cheaper).
    """
    eligible: dict[str, str] = {}
    store = LandingStore(ledger)
    for chunk in (c for key in partition_keys for c in store.iter_partition(VISMA, kind.entity.value, key)):
        for landed in chunk:
            checked = validate_record(kind.model, landed.payload)
            if not isinstance(checked, str):
                eligible[landed.record_id] = kind.view(checked).external_id
    links = ledger.links_for(kind.flow, eligible)
    holders = ProjectIndex(client, ledger, context, kind).holders_now(list(eligible.values()))
    return Reconciliation.of(list(eligible), [rid for rid, link in links.items() if link.state == "linked"],
                             {rid: len(holders.get(external_id, ())) for rid, external_id in eligible.items()})


def build_reconciled_check(kind: TaskKind, settings: VismaAsanaFlow,
                           partitions_def: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    """``reconciled``: each landed record of the partition has exactly one task (duplicates: ERROR)."""

    @dg.asset_check(asset=dg.AssetKey(kind.asset.split("/")), name="reconciled", partitions_def=partitions_def,
                    pool=POOL, metadata=PARTITION_AUDIT,
                    description="Every Visma record of the partition has exactly one Asana task.")
    def reconciled(context: dg.AssetCheckExecutionContext, asana: AsanaResource,
                   ledger: LedgerResource) -> dg.AssetCheckResult:
        with asana.client() as client, ledger.open() as opened:
            result = reconcile(kind, context.partition_keys, client=client,
                               context=_context(client, asana, settings, opened), ledger=opened)  # fmt: skip
        return result.check_result("asana")

    return reconciled


# -- replay and the return path ----------------------------------------------------------------------


def build_replay_job(settings: VismaAsanaFlow) -> dg.JobDefinition:
    """``visma_asana_replay``: push the open dead letters of both kinds again, through the same push."""

    @dg.op(name="replay_visma_asana_dead_letters", pool=POOL, retry_policy=_retry(settings), out=dg.Out(dg.Nothing))
    def replay(context: dg.OpExecutionContext, asana: AsanaResource, ledger: LedgerResource) -> None:
        metadata: dict[str, Any] = {}
        deferred: list[str] = []
        with asana.client() as client, ledger.open() as opened:
            asana_context = _context(client, asana, settings, opened)
            for kind in KINDS:
                letters = opened.open_dead_letters(kind.asset)
                if not letters:
                    continue
                copies = replay_copies(opened, letters, system=VISMA, entity=kind.entity.value)
                plan = plan_records(kind, [copies], partition_key=None, client=client, ledger=opened,
                                    settings=settings, context=asana_context)  # fmt: skip
                outcome = push_plan(plan, kind, client=client, ledger=opened, settings=settings, run_id=context.run_id,
                                    log=context.log)  # fmt: skip
                deferred += outcome.deferred
                metadata |= {f"{kind.name}_replayed": len(letters), f"{kind.name}_failed": outcome.failed}
        if deferred:
            raise CreateInDoubt(f"{REPLAY_JOB}: {len(deferred)} create(s) in doubt; retrying")
        context.add_output_metadata(metadata or {"replayed": 0})

    @dg.job(name=REPLAY_JOB, description="Retry the open dead letters of the Visma -> Asana flow.",
            tags=job_tags("visma_asana", writes=["asana"], kind="replay"))
    def visma_asana_replay() -> None:
        replay()

    return visma_asana_replay


class ReturnConfig(dg.Config):
    """The tasks whose changes to note (gids, from the sensor); none: the return path's open dead letters."""

    tasks: list[str] = Field(default_factory=list)


def build_return_job(settings: VismaAsanaFlow) -> dg.JobDefinition:
    """``visma_asana_return``: note the given tasks' people-owned changes on their Visma documents."""

    @dg.op(name=RETURN_OP, pool=POOL, retry_policy=_retry(settings), out=dg.Out(dg.Nothing),
           description="Read each task again and append its change to the Visma document's note, once.")
    def note_changes(context: dg.OpExecutionContext, config: ReturnConfig, asana: AsanaResource, visma: VismaResource,
                     ledger: LedgerResource) -> None:
        with asana.client() as client, visma.client() as visma_client, ledger.open() as opened:
            # No tasks given: the open dead letters of the return path, so that a failed note is not lost.
            tasks = config.tasks or [letter.source_id for letter in opened.open_dead_letters(RETURN_ASSET)]
            outcome: ReturnOutcome = report_changes(tasks, asana=client, visma=visma_client, ledger=opened,
                                                    context=_context(client, asana, settings, opened),
                                                    run_id=context.run_id,
                                                    log=context.log)  # fmt: skip
        context.add_output_metadata(outcome.model_dump(exclude={"documents"})
                                    | {"documents": dg.MetadataValue.json(dict(list(outcome.documents.items())[:20]))})

    @dg.job(name=RETURN_JOB, description="Asana task changes -> notes on their Visma documents (non-financial).",
            tags=job_tags("visma_asana", writes=["visma"]))
    def visma_asana_return() -> None:
        note_changes()

    return visma_asana_return


def build_webhooks_asset(settings: VismaAsanaFlow, *, sandbox: bool) -> dg.AssetsDefinition:
    """``asana/visma_task_webhooks``: one webhook per synced project, confirmed by the receiver's handshake."""

    @dg.asset(key=WEBHOOKS_KEY, group_name=GROUP, kinds={"asana"}, pool=POOL, retry_policy=_retry(settings),
              description="Asana webhooks on the synced projects, delivering to the receiver (registered only if "
                          "missing, never twice). The return path's poll works without them.")  # fmt: skip
    def task_webhooks(asana: AsanaResource, ledger: LedgerResource) -> dg.MaterializeResult:
        with asana.client() as client, ledger.open() as opened:
            vault = Vault.from_env(opened.engine, sandbox=sandbox, home=connector_home())
            hooks = ensure_task_webhooks(client, _context(client, asana, settings, opened), settings, opened, vault)
        return dg.MaterializeResult(metadata={"webhooks": len(hooks),
                                              "resources": dg.MetadataValue.json([h.resource.gid if h.resource else None
                                                                                  for h in hooks])})  # fmt: skip

    return task_webhooks


# -- the flow's definitions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VismaAsanaDefinitions:
    """What the flow adds to the code location."""

    assets: list[dg.AssetsDefinition]
    asset_checks: list[dg.AssetChecksDefinition]
    jobs: list[dg.JobDefinition]
    sensors: list[dg.SensorDefinition] = field(default_factory=list)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)


def build_visma_asana(settings: VismaAsanaFlow, visma: VismaSettings, *, workspace_gid: str | None = None,
                      sandbox: bool = False, lookback: timedelta = timedelta(days=1),
                      minimum_interval_seconds: int = 60) -> VismaAsanaDefinitions:
    """Both task assets, the reference options, their checks, the replay job and, if enabled, the return path."""
    partitions_def = visma_partitions(visma.partitions_start)
    checks = [build_reconciled_check(kind, settings, partitions_def) for kind in KINDS]
    checks += [build_dead_letter_check(dg.AssetKey(kind.asset.split("/")), replay_job=REPLAY_JOB) for kind in KINDS]
    parts = VismaAsanaDefinitions(
        assets=[*(build_task_asset(kind, settings, partitions_def) for kind in KINDS), build_reference_asset(settings)],
        asset_checks=checks, jobs=[build_replay_job(settings)],
    )  # fmt: skip
    if not settings.return_path.enabled:
        return parts
    job = build_return_job(settings)
    parts.jobs.append(job)
    # With webhooks the sensor ticks every second (a hint is a ledger read); it polls Asana at the poll interval.
    parts.sensors.append(build_return_sensor(settings, job, RETURN_OP, workspace_gid=workspace_gid, lookback=lookback,
                                             poll_interval_seconds=minimum_interval_seconds
                                             if settings.return_path.poll_s is None else settings.return_path.poll_s,
                                             minimum_interval_seconds=1 if settings.return_path.webhooks
                                             else minimum_interval_seconds))  # fmt: skip
    if settings.return_path.webhooks:
        parts.assets.append(build_webhooks_asset(settings, sandbox=sandbox))
        hooks_job = dg.define_asset_job("visma_asana_webhooks", selection=dg.AssetSelection.assets(WEBHOOKS_KEY),
                                        description="Registers Asana's task webhooks where they are missing.",
                                        tags=job_tags("visma_asana", writes=["asana"]))
        parts.jobs.append(hooks_job)
        parts.schedules.append(dg.ScheduleDefinition(
            name="visma_asana_webhooks_schedule", job=hooks_job, cron_schedule="0 6 * * *", execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Re-registers a webhook Asana deleted (after 24 h of failed deliveries).",
        ))  # fmt: skip
    return parts
