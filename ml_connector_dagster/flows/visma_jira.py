"""Visma and Jira: supplier invoices and purchase orders land in Jira as issues the team can act on.

- Every supplier invoice and PO of a day becomes one issue in the configured project (by default
  all of them; filters by supplier, amount, PO status, internal orders and zero amounts select the
  ones that need attention). The amount goes to a number field, the supplier becomes a label or,
  through the mapping table, the assignee, the due date is Jira's due date, the Visma ID goes to
  the external-id field, and the description (ADF) shows amounts, supplier, PO reference, due
  date, the line items, the Visma ID and the last-modified timestamp for the audit trail.
- Updates in Visma become a comment listing what changed, and a status change in Visma moves the
  issue through its workflow (``status_map``).
- GL postings and supplier payments against an invoice become read-only audit comments on its issue.

Dagster shape: ``jira/visma_invoice_issues`` and ``jira/visma_purchase_order_issues`` are
graph-backed assets (plan -> push), partitioned like their Visma sources, in the ``jira_api``
pool; each has a ``reconciled`` check. A ``dry_run`` run config shows the plan without writing.
``visma_jira_replay`` retries this flow's dead letters through the same push.
"""


from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import dagster as dg

from ml_connector_dagster.assets.visma import BACKFILL, visma_partitions
from ml_connector_dagster.check_scope import PARTITION_AUDIT
from ml_connector_dagster.config import VismaJiraFlow, VismaSettings
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import DeadLetter, Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.run_tags import job_tags
from ml_connector_dagster.systems.jira.client import JiraClient
from ml_connector_dagster.systems.jira.resource import JiraResource
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.client import VismaEntity
from ml_connector_dagster.systems.visma.models import PurchaseOrder, SupplierInvoice

from .jira_destination import (
    CreateInDoubt,
    PushConfig,
    Reconciliation,
    deferred_error,
    outcome_metadata,
    reconcile,
    reconciled_result,
    step_retry_policy,
)
from .visma_jira_audit import audit_entries, audit_id_prefix
from .visma_jira_plan import (
    Action,
    DocumentKind,
    Plan,
    check_creates,
    filter_reason,
    plan_partitions,
    plan_records,
)
from .visma_jira_push import PushOutcome, push_plan
from .visma_jira_render import invoice_view, purchase_order_view

__all__ = [
    "GROUP",
    "INVOICES",
    "KINDS",
    "POOL",
    "PURCHASE_ORDERS",
    "PushConfig",
    "VismaJiraDefinitions",
    "build_issue_asset",
    "build_reconciled_check",
    "build_replay_job",
    "build_visma_jira",
    "dry_run_config",
    "reconcile_partitions",
]

GROUP = "visma_jira"
POOL = "jira_api"
KINDS_TAG = {"visma", "jira"}
PLAN_ROWS_SHOWN = 500

# -- what becomes an issue ---------------------------------------------------------------------------

INVOICES = DocumentKind(
    name="invoice_issues", entity=VismaEntity.SUPPLIER_INVOICE, model=SupplierInvoice,
    asset="jira/visma_invoice_issues", view=invoice_view, issue_type=attrgetter("invoice_issue_type"), audited=True,
)  # fmt: skip
PURCHASE_ORDERS = DocumentKind(
    name="purchase_order_issues", entity=VismaEntity.PURCHASE_ORDER, model=PurchaseOrder,
    asset="jira/visma_purchase_order_issues", view=purchase_order_view,
    issue_type=attrgetter("purchase_order_issue_type"), status_filtered=True,
)  # fmt: skip
KINDS = (INVOICES, PURCHASE_ORDERS)
SOURCES = {INVOICES.name: dg.AssetKey(["visma", "supplier_invoices"]),
           PURCHASE_ORDERS.name: dg.AssetKey(["visma", "purchase_orders"])}  # fmt: skip
# Lineage only: the invoice issues also read the partition's GL batches and supplier payments (audit
# comments), so those sources' poll sensors request the invoice issues too.
AUDIT_SOURCES = (dg.AssetKey(["visma", "gl_transactions"]), dg.AssetKey(["visma", "supplier_payments"]))


def _retry(settings: VismaJiraFlow) -> dg.RetryPolicy:
    return step_retry_policy(settings.op_retries, settings.op_retry_delay_s)


def _graph_name(kind: DocumentKind) -> str:
    return kind.asset.replace("/", "__")


def dry_run_config(kind: DocumentKind) -> dict[str, Any]:
    """Run config that makes a materialization of ``kind`` plan only (nothing written to Jira)."""
    return {"ops": {_graph_name(kind): {"ops": {f"push_{kind.name}": {"config": {"dry_run": True}}}}}}


# -- metadata ----------------------------------------------------------------------------------------


def _plan_table(plan: Plan) -> dg.TableMetadataValue:
    rows = []
    for record in plan.records[:PLAN_ROWS_SHOWN]:
        detail = record.reason or ""
        if record.transition_to:
            detail = f"status -> {record.transition_to}"
        rows.append(dg.TableRecord({
            "visma_id": record.external_id, "action": record.action.value,
            "changed_fields": ", ".join(change.field for change in record.changes), "issue": record.issue_key or "",
            "detail": detail,
        }))  # fmt: skip
    for _, external_id, _, checked in plan.stored_creates[: max(0, PLAN_ROWS_SHOWN - len(rows))]:
        rows.append(dg.TableRecord({"visma_id": external_id, "action": Action.CREATE.value, "changed_fields": "",
                                    "issue": "", "detail": "" if checked else "looked up in Jira first"}))
    for entry in plan.audits[: max(0, PLAN_ROWS_SHOWN - len(rows))]:
        rows.append(dg.TableRecord({"visma_id": entry.audit_id, "action": "audit_comment", "changed_fields": "",
                                    "issue": "", "detail": f"{entry.title} on invoice {entry.invoice_id}"}))
    schema = dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in
                                     ("visma_id", "action", "changed_fields", "issue", "detail")])  # fmt: skip
    return dg.MetadataValue.table(rows, schema=schema)


def _plan_counts(plan: Plan) -> dict[str, Any]:
    filtered = plan.filtered_by_reason()
    return {
        "skipped": plan.count(Action.SKIP),
        "filtered": sum(filtered.values()),
        **{f"filtered_{reason}": count for reason, count in sorted(filtered.items())},
    }


def dry_run_metadata(plan: Plan) -> dict[str, Any]:
    """What a push of ``plan`` would do: counts per action and the table of planned actions."""
    return {
        "dry_run": True,
        **{f"would_{action.value}": plan.count(action) for action in (Action.CREATE, Action.UPDATE, Action.LINK)},
        "would_comment": sum(1 for r in plan.records if r.changes),
        "would_transition": sum(1 for r in plan.records if r.transition_to),
        "would_audit_comment": len(plan.audits),
        **_plan_counts(plan),
        "plan": _plan_table(plan),
    }


def push_metadata(plan: Plan, outcome: PushOutcome) -> dict[str, Any]:
    """Counts of what the push did (audit comments and filters included), and links to the issues it wrote."""
    return {**outcome_metadata(outcome), "audit_commented": outcome.audit_commented,
            "audit_waiting": outcome.audit_waiting, **_plan_counts(plan)}


# -- the destination assets --------------------------------------------------------------------------


def build_issue_asset(
    kind: DocumentKind, settings: VismaJiraFlow, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """The graph-backed asset of one document kind: plan the partition, then push the plan."""
    retry = _retry(settings)

    @dg.op(name=f"plan_{kind.name}", ins={"landed": dg.In(dg.Nothing)}, pool=POOL, retry_policy=retry,
           description=f"Render {kind.asset}'s partition and decide create / update / skip per record.")
    def plan(context: dg.OpExecutionContext, jira: JiraResource, ledger: LedgerResource) -> Plan:
        with jira.client() as client, ledger.open() as opened:
            planned = plan_partitions(kind, context.partition_keys, client=client, ledger=opened, settings=settings)
        context.log.info(f"{kind.asset} {planned.partition_key}: {planned.record_count} records, "
                         + ", ".join(f"{a.value} {planned.count(a)}" for a in Action))
        if unchecked := planned.unchecked_creates():
            context.log.info(f"{kind.asset} {planned.partition_key}: {unchecked} of the creates are new to the "
                             "ledger; the push looks them up in Jira just before creating them (a found one is linked)")
        return planned

    @dg.op(name=f"push_{kind.name}", pool=POOL, retry_policy=retry, out=dg.Out(dg.Nothing),
           description=f"Carry out the plan in Jira (or, with dry_run, only record it) for {kind.asset}.")
    def push(context: dg.OpExecutionContext, config: PushConfig, plan: Plan, jira: JiraResource,
             ledger: LedgerResource) -> None:
        if config.dry_run:
            with jira.client() as client:  # read only: the lookups the push would make first
                checked = check_creates(plan, client=client, settings=settings)
            context.add_output_metadata(dry_run_metadata(checked))
            return
        with jira.client() as client, ledger.open() as opened:
            outcome = push_plan(plan, client=client, ledger=opened, settings=settings,
                                issue_type=kind.issue_type(settings), run_id=context.run_id, log=context.log,
                                retrying=context.retry_number > 0, kind=kind)  # fmt: skip
        if outcome.deferred:
            raise deferred_error(kind.asset, outcome.deferred)
        context.add_output_metadata(push_metadata(plan, outcome))

    sources = {"landed": dg.AssetIn(key=SOURCES[kind.name], dagster_type=dg.Nothing)}
    if kind.audited:
        sources |= {key.path[-1]: dg.AssetIn(key=key, dagster_type=dg.Nothing) for key in AUDIT_SOURCES}

    @dg.graph_asset(
        key=dg.AssetKey(kind.asset.split("/")), ins=sources, partitions_def=partitions_def, group_name=GROUP,
        kinds=KINDS_TAG, backfill_policy=BACKFILL, description=f"Jira issues of Visma {kind.entity.value} records, one per document.",
    )  # fmt: skip
    def issues(**landed: Any) -> Any:
        return push(plan(list(landed.values())))

    return issues


# -- reconciliation ----------------------------------------------------------------------------------


def _eligible(kind: DocumentKind, ledger: Ledger, partition_keys: Sequence[str],
              settings: VismaJiraFlow) -> dict[str, str]:
    """Record id -> external id of every landed record of the partitions the filters select."""
    eligible = {}
    store = LandingStore(ledger)
    for chunk in (c for key in partition_keys for c in store.iter_partition(VISMA, kind.entity.value, key)):
        for landed in chunk:
            view = kind.view(kind.model.model_validate(landed.payload))
            if filter_reason(view, settings.filters, status_filtered=kind.status_filtered) is None:
                eligible[landed.record_id] = view.external_id
    return eligible


def reconcile_partitions(kind: DocumentKind, partition_keys: Sequence[str], *, client: JiraClient, ledger: Ledger,
                         settings: VismaJiraFlow) -> Reconciliation:
    """Every eligible landed record of the partitions should have one linked issue, and only one."""
    eligible = _eligible(kind, ledger, partition_keys, settings)
    return reconcile(eligible, flow=kind.flow, client=client, ledger=ledger, project_keys=[settings.project_key],
                     field_id=client.field_id(settings.external_id_field))


def build_reconciled_check(
    kind: DocumentKind, settings: VismaJiraFlow, partitions_def: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    """``reconciled``: each eligible record of the partition has exactly one issue (duplicates: ERROR)."""

    @dg.asset_check(asset=dg.AssetKey(kind.asset.split("/")), name="reconciled", partitions_def=partitions_def,
                    pool=POOL, metadata=PARTITION_AUDIT,
                    description="Every eligible Visma record of the partition has exactly one Jira issue.")
    def reconciled(context: dg.AssetCheckExecutionContext, jira: JiraResource,
                   ledger: LedgerResource) -> dg.AssetCheckResult:
        with jira.client() as client, ledger.open() as opened:
            result = reconcile_partitions(kind, context.partition_keys, client=client, ledger=opened,
                                          settings=settings)
        return reconciled_result(result)

    return reconciled


# -- replay ------------------------------------------------------------------------------------------


def _replay_plan(kind: DocumentKind, letters: Sequence[DeadLetter], *, client: JiraClient, ledger: Ledger,
                 settings: VismaJiraFlow) -> Plan:
    """The plan for a kind's open dead letters: each record's latest landed copy, else the letter's."""
    prefix = audit_id_prefix()
    documents = [letter for letter in letters if not letter.source_id.startswith(prefix)]
    current = LandingStore(ledger).get_many(VISMA, kind.entity.value, [letter.source_id for letter in documents])
    records = [current.get(letter.source_id) or LandedRecord(record_id=letter.source_id,
                                                             partition_key=letter.partition_key, payload=letter.record)
               for letter in documents]  # fmt: skip
    audits = []
    for letter in letters:
        if letter.source_id.startswith(prefix):
            entity = letter.source_id.removeprefix(prefix).split("/", 1)[0]
            audits += [e for e in audit_entries(entity, letter.record) if e.audit_id == letter.source_id]
    return plan_records(kind, [records] if records else [], partition_key=None, client=client, ledger=ledger,
                        settings=settings, audits=audits)


def build_replay_job(settings: VismaJiraFlow) -> dg.JobDefinition:
    """``visma_jira_replay``: push the open dead letters of both kinds again, through the same push."""

    @dg.op(name="replay_visma_jira_dead_letters", pool=POOL, retry_policy=_retry(settings), out=dg.Out(dg.Nothing))
    def replay(context: dg.OpExecutionContext, jira: JiraResource, ledger: LedgerResource) -> None:
        metadata: dict[str, Any] = {}
        deferred: list[str] = []
        with jira.client() as client, ledger.open() as opened:
            for kind in KINDS:
                letters = opened.open_dead_letters(kind.asset)
                if not letters:
                    continue
                plan = _replay_plan(kind, letters, client=client, ledger=opened, settings=settings)
                outcome = push_plan(plan, client=client, ledger=opened, settings=settings,
                                    issue_type=kind.issue_type(settings), run_id=context.run_id, log=context.log,
                                    retrying=context.retry_number > 0, kind=kind)  # fmt: skip
                deferred += outcome.deferred
                still_open = opened.count_open_dead_letters(kind.asset)
                metadata[f"{kind.name}_replayed"] = len(letters)
                metadata[f"{kind.name}_resolved"] = len(letters) - still_open
                metadata[f"{kind.name}_failed"] = outcome.failed
        if deferred:
            raise CreateInDoubt(f"visma_jira_replay: {len(deferred)} create(s) in doubt; retrying")
        context.add_output_metadata(metadata or {"replayed": 0})

    @dg.job(name="visma_jira_replay", description="Retry the open dead letters of the Visma -> Jira flow.",
            tags=job_tags("visma_jira", writes=["jira"], kind="replay"))
    def visma_jira_replay() -> None:
        replay()

    return visma_jira_replay


# -- the flow's definitions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VismaJiraDefinitions:
    """What the flow adds to the code location."""

    assets: list[dg.AssetsDefinition]
    asset_checks: list[dg.AssetChecksDefinition]
    jobs: list[dg.JobDefinition]


def build_visma_jira(settings: VismaJiraFlow, visma: VismaSettings) -> VismaJiraDefinitions:
    """Both destination assets (one factory), their reconciliation checks and the replay job."""
    partitions_def = visma_partitions(visma.partitions_start)
    return VismaJiraDefinitions(
        assets=[build_issue_asset(kind, settings, partitions_def) for kind in KINDS],
        asset_checks=[build_reconciled_check(kind, settings, partitions_def) for kind in KINDS],
        jobs=[build_replay_job(settings)],
    )
