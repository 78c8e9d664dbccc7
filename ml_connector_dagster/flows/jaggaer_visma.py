"""JAGGAER and Visma: purchase orders and invoices from JAGGAER land in Visma AP, on the right supplier
and GL account, and JAGGAER hears back when an invoice is received and paid.

- JAGGAER POs and invoices, polled from J1P (``jaggaer/purchase_orders``, ``jaggaer/invoices``), are
  created in Visma (``visma/jaggaer_purchase_orders``, ``visma/jaggaer_supplier_invoices``) and
  kept up to date there, exactly once: the ledger links each JAGGAER id to its Visma number, and
  the Visma record carries the JAGGAER id (marker in its description, document number as the
  supplier's reference) for audit and for finding it again after a lost answer.
- Vendors are matched to Visma suppliers by explicit link, organisation number or name
  (:mod:`.jaggaer_visma_matching`); GL codes and cost allocation go through the GL table
  (:mod:`.jaggaer_visma_mapping`). A document that cannot be matched or posted is a dead letter
  with its reason, listed in the materialization and in the ``no_open_dead_letters`` check; once
  the mapping is fixed, ``jaggaer_visma_replay`` sends it on.
- Vendor reference data is aligned field by field in the configured direction
  (``visma/jaggaer_vendor_alignment``, :mod:`.jaggaer_visma_reference`).
- Invoice receipt and payment are confirmed to JAGGAER over cXML, once per status
  (``jaggaer/visma_invoice_confirmations``, fed by Visma's own poll: :mod:`.jaggaer_visma_cxml`).

Dagster shape: the document assets are graph-backed (plan -> push), partitioned like their JAGGAER
sources, their push in the ``visma_api`` pool; each has a ``reconciled`` check against Visma. A
``dry_run`` run config shows the plan without writing.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from ml_connector_dagster.assets.jaggaer import BACKFILL, jaggaer_partitions
from ml_connector_dagster.assets.visma import visma_partitions
from ml_connector_dagster.check_scope import PARTITION_AUDIT
from ml_connector_dagster.config import JaggaerSettings, JaggaerVismaFlow, VismaSettings
from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.run_tags import job_tags
from ml_connector_dagster.systems.jaggaer.client import SYSTEM as JAGGAER
from ml_connector_dagster.systems.jaggaer.client import JaggaerEntity
from ml_connector_dagster.systems.jaggaer.resource import JaggaerResource
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.client import VismaClient, VismaEntity
from ml_connector_dagster.systems.visma.resource import VismaResource

from . import jaggaer_visma_cxml as confirmations
from . import jaggaer_visma_reference as reference
from .destination import (
    CreateInDoubt,
    PushConfig,
    Reconciliation,
    build_dead_letter_check,
    dead_letter_review,
    replay_copies,
    step_retry_policy,
)
from .jaggaer_visma_index import MarkerIndex
from .jaggaer_visma_plan import (
    KINDS,
    Action,
    DocumentKind,
    DocumentPlan,
    load_references,
    plan_documents,
    plan_partitions,
)
from .jaggaer_visma_push import PushOutcome, push_plan

__all__ = [
    "GROUP",
    "REPLAY_JOB",
    "JaggaerVismaDefinitions",
    "build_jaggaer_visma",
    "dry_run_config",
    "reconcile_partitions",
]

GROUP = "jaggaer_visma"
VISMA_POOL = "visma_api"
JAGGAER_POOL = "jaggaer_api"
KINDS_TAG = {"jaggaer", "visma"}
REPLAY_JOB = "jaggaer_visma_replay"
SAMPLE = 10
SOURCES = {kind.name: dg.AssetKey(["jaggaer", kind.source.value]) for kind in KINDS}
# Lineage: what planning matches and maps against (read from the landing store, never called).
REFERENCES = (dg.AssetKey(["jaggaer", "vendors"]), dg.AssetKey(["visma", "suppliers"]),
              dg.AssetKey(["visma", "gl_accounts"]), dg.AssetKey(["visma", "dimensions"]))


def _retry(settings: JaggaerVismaFlow) -> dg.RetryPolicy:
    return step_retry_policy(settings.op_retries, settings.op_retry_delay_s)


def _key(asset: str) -> dg.AssetKey:
    return dg.AssetKey(asset.split("/"))


def _graph_name(kind: DocumentKind) -> str:
    return kind.asset.replace("/", "__")


def dry_run_config(kind: DocumentKind) -> dict[str, Any]:
    """Run config that makes a materialization of ``kind`` plan only (nothing written to Visma)."""
    return {"ops": {_graph_name(kind): {"ops": {f"push_{kind.name}": {"config": {"dry_run": True}}}}}}


# -- metadata ----------------------------------------------------------------------------------------


def _plan_table(plan: DocumentPlan) -> dg.MetadataValue:
    rows = [{"jaggaer_id": r.record_id, "number": r.number, "action": r.action.value, "visma": r.visma_id or "",
             "supplier": r.supplier or "", "matched_by": r.match_method or "", "reason": (r.reason or "")[:200]}
            for r in plan.records[:500]]
    return dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "_empty_")


def plan_metadata(plan: DocumentPlan) -> dict[str, Any]:
    """What a push of ``plan`` would do: counts per action, failures by reason, and the plan."""
    return {"dry_run": True, **{f"would_{a.value}": plan.count(a) for a in Action},
            "failed_by_reason": dg.MetadataValue.json(dict(plan.by_reason(Action.FAILED))), "plan": _plan_table(plan)}


def push_metadata(plan: DocumentPlan, outcome: PushOutcome, ledger: Ledger) -> dict[str, Any]:
    """Counts of what the push did, failures by reason, the open dead letters for review, a sample of links."""
    keys = set((plan.partition_key or "").split("...")) | {r.partition_key for r in plan.records}
    letters = [letter for letter in ledger.open_dead_letters(plan.asset) if letter.partition_key in keys]
    return {
        "dry_run": False, "created": outcome.created, "recovered": outcome.recovered, "updated": outcome.updated,
        "skipped": outcome.skipped, "filtered": outcome.filtered, "failed": outcome.failed,
        "conflicts_resolved": outcome.conflicts, "deferred": len(outcome.deferred),
        "failed_by_reason": dg.MetadataValue.json(dict(plan.by_reason(Action.FAILED))),
        "review": dead_letter_review(letters),
        "written": dg.MetadataValue.json(dict(list(outcome.written.items())[:SAMPLE])),
    }  # fmt: skip


# -- the document assets -----------------------------------------------------------------------------


def build_document_asset(kind: DocumentKind, settings: JaggaerVismaFlow,
                         partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The graph-backed asset of one kind: plan the partition (ledger only), then push it to Visma."""
    retry = _retry(settings)

    @dg.op(name=f"plan_{kind.name}", ins={"landed": dg.In(dg.Nothing)}, retry_policy=retry,
           description=f"Match, map and render {kind.asset}'s partition; decide create / update / skip per document.")
    def plan(context: dg.OpExecutionContext, ledger: LedgerResource) -> DocumentPlan:
        with ledger.open() as opened:
            planned = plan_partitions(kind, context.partition_keys, ledger=opened, settings=settings)
        context.log.info(f"{kind.asset} {planned.partition_key}: " + ", ".join(f"{a.value} {planned.count(a)}" for a in Action))
        return planned

    @dg.op(name=f"push_{kind.name}", pool=VISMA_POOL, retry_policy=retry, out=dg.Out(dg.Nothing),
           description=f"Carry out the plan in Visma (or, with dry_run, only show it) for {kind.asset}.")
    def push(context: dg.OpExecutionContext, config: PushConfig, plan: DocumentPlan, visma: VismaResource,
             ledger: LedgerResource) -> None:
        if config.dry_run:
            context.add_output_metadata(plan_metadata(plan))
            return
        with visma.client() as client, ledger.open() as opened:
            outcome = push_plan(plan, kind, client=client, ledger=opened, run_id=context.run_id, log=context.log)
            metadata = push_metadata(plan, outcome, opened)
        if outcome.deferred:
            raise CreateInDoubt(f"{kind.asset}: {len(outcome.deferred)} create(s) in doubt "
                                f"({', '.join(outcome.deferred[:SAMPLE])}); retrying instead of creating twice")
        context.add_output_metadata(metadata)

    ins = {"landed": dg.AssetIn(key=SOURCES[kind.name], dagster_type=dg.Nothing),
           **{"__".join(key.path): dg.AssetIn(key=key, dagster_type=dg.Nothing) for key in REFERENCES}}

    @dg.graph_asset(key=_key(kind.asset), ins=ins, partitions_def=partitions_def, group_name=GROUP, kinds=KINDS_TAG,
                    backfill_policy=BACKFILL,
                    description=f"JAGGAER {kind.source.value.replace('_', ' ')} in Visma ({kind.entity.value}), "
                                "matched to their supplier and GL accounts.")
    def documents(**landed: Any) -> Any:
        return push(plan(list(landed.values())))

    return documents


# -- reconciliation ----------------------------------------------------------------------------------


def reconcile_partitions(kind: DocumentKind, partition_keys: Sequence[str], *, client: VismaClient, ledger: Ledger,
                         settings: JaggaerVismaFlow) -> Reconciliation:
    """Every matched, mapped document of the partitions has one Visma record carrying its marker."""
    plan = plan_partitions(kind, partition_keys, ledger=ledger, settings=settings)
    eligible = [r.record_id for r in plan.records if r.action in (Action.CREATE, Action.UPDATE, Action.SKIP)]
    links = {rid: link for rid, link in ledger.links_for(kind.flow, eligible).items() if link.state == "linked"}
    # Counted from the kind's index of Visma documents, brought up to date (changes since it last
    # looked) and with the documents it counts that the listing did not show read back.
    holders = MarkerIndex(client, ledger, kind).holders_now(eligible) if eligible else {}
    return Reconciliation.of(eligible, links, {rid: len(numbers) for rid, numbers in holders.items()})


def build_reconciled_check(kind: DocumentKind, settings: JaggaerVismaFlow,
                           partitions_def: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    """``reconciled``: each eligible document of the partition is in Visma once (duplicates: ERROR)."""

    @dg.asset_check(asset=_key(kind.asset), name="reconciled", partitions_def=partitions_def, pool=VISMA_POOL,
                    metadata=PARTITION_AUDIT,
                    description="Every matched and mapped JAGGAER document of the partition is in Visma exactly once.")
    def reconciled(context: dg.AssetCheckExecutionContext, visma: VismaResource,
                   ledger: LedgerResource) -> dg.AssetCheckResult:
        with visma.client() as client, ledger.open() as opened:
            result = reconcile_partitions(kind, context.partition_keys, client=client, ledger=opened, settings=settings)
        return result.check_result("visma", SAMPLE)

    return reconciled


# -- cXML confirmations ------------------------------------------------------------------------------


def build_confirmations_asset(settings: JaggaerVismaFlow, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``jaggaer/visma_invoice_confirmations``: receipt and payment of the partition's Visma invoices, to JAGGAER."""

    @dg.asset(key=_key(confirmations.ASSET), partitions_def=partitions_def, group_name=GROUP, kinds=KINDS_TAG,
              pool=JAGGAER_POOL, retry_policy=_retry(settings), backfill_policy=BACKFILL,
              deps=[dg.AssetDep(dg.AssetKey(["visma", "supplier_invoices"])), dg.AssetDep(_key(KINDS[1].asset))],
              description="cXML StatusUpdateRequests telling JAGGAER its invoices are in Visma AP, and when they are paid.")
    def invoice_confirmations(context: dg.AssetExecutionContext, jaggaer: JaggaerResource,
                              ledger: LedgerResource) -> dg.MaterializeResult:
        with ledger.open() as opened, jaggaer.cxml() as client:
            confirmer = confirmations.Confirmer(client, jaggaer.envelope(), jaggaer.cxml_shared_secret or "")
            store = LandingStore(opened)
            invoices = [landed.payload for key in context.partition_keys
                        for chunk in store.iter_partition(VISMA, VismaEntity.SUPPLIER_INVOICE.value, key)
                        for landed in chunk]
            outcome = confirmations.confirm_invoices(invoices, ledger=opened, confirmer=confirmer, run_id=context.run_id,
                                                     partition_key=context.partition_keys[-1], log=context.log)
            letters = [letter for letter in opened.open_dead_letters(confirmations.ASSET)
                       if letter.partition_key in set(context.partition_keys)]
        return dg.MaterializeResult(metadata={"sent": outcome.sent, "already_sent": outcome.already,
                                              "failed": outcome.failed, "not_from_jaggaer": outcome.not_ours,
                                              "review": dead_letter_review(letters)})

    return invoice_confirmations


# -- reference data ----------------------------------------------------------------------------------


def _changes_table(changes: Sequence[reference.FieldChange]) -> dg.MetadataValue:
    if not changes:
        return dg.MetadataValue.md("_none_")
    frame = pd.DataFrame([{"jaggaer_id": c.jaggaer_id, "visma": c.visma_number, "field": c.field,
                           "jaggaer": c.jaggaer_value, "visma_value": c.visma_value} for c in changes[:200]])
    return dg.MetadataValue.md(frame.to_markdown(index=False, disable_numparse=True))


def alignment_metadata(outcome: reference.AlignmentOutcome, gaps: list[str]) -> dict[str, Any]:
    """Matches by method, the unmatched vendors with reasons, what was written to Visma and what JAGGAER needs."""
    methods = pd.Series([m.method or "unmatched" for m in outcome.matches], dtype="object").value_counts()
    unmatched = [{"jaggaer_id": m.jaggaer_id, "reason": m.detail[:240]} for m in outcome.matches if not m.matched]
    return {
        "vendors": len(outcome.matches), "matched_by": dg.MetadataValue.json({str(k): int(v) for k, v in methods.items()}),
        "unmatched": dg.MetadataValue.md(pd.DataFrame(unmatched).to_markdown(index=False, disable_numparse=True)
                                         if unmatched else "_none_"),
        "suppliers_updated": outcome.suppliers_updated, "conflicts_resolved": outcome.conflicts, "failed": outcome.failed,
        "written_to_visma": _changes_table(outcome.applied),
        "planned_for_jaggaer": _changes_table(outcome.planned),
        "jaggaer_write_endpoint": "none: J1P vendors are read-only; the planned changes go to JAGGAER's supplier import",
        "gl_gaps": dg.MetadataValue.json(gaps),
    }  # fmt: skip


def build_alignment_asset(settings: JaggaerVismaFlow) -> dg.AssetsDefinition:
    """``visma/jaggaer_vendor_alignment``: vendor fields aligned in their configured direction; GL gaps listed."""

    @dg.asset(key=_key(reference.ASSET), group_name=GROUP, kinds=KINDS_TAG, pool=VISMA_POOL,
              retry_policy=_retry(settings),
              deps=[*REFERENCES, dg.AssetKey(["jaggaer", "gl_accounts"])],
              description="Visma suppliers kept in step with their JAGGAER vendors (name, address, hierarchy, "
                          "terms), each field in its configured direction.")
    def vendor_alignment(context: dg.AssetExecutionContext, visma: VismaResource,
                         ledger: LedgerResource) -> dg.MaterializeResult:
        with visma.client() as client, ledger.open() as opened:
            references = load_references(opened, settings)
            outcome = reference.align_vendors(references, client=client, ledger=opened, settings=settings,
                                              run_id=context.run_id, log=context.log)
            accounts = [r.payload for chunk in LandingStore(opened).iter_partition(
                JAGGAER, JaggaerEntity.GL_ACCOUNTS.value, None) for r in chunk]
        return dg.MaterializeResult(metadata=alignment_metadata(outcome, reference.gl_gaps(references, accounts,
                                                                                             references.chart)))

    return vendor_alignment


# -- replay ------------------------------------------------------------------------------------------


def replay(ledger: Ledger, visma: VismaClient, confirmer: confirmations.Confirmer | None, *,
           settings: JaggaerVismaFlow, run_id: str, log: Any) -> dict[str, Any]:
    """Push every open dead letter of the flow again, with the mapping and reference data of now.

    Documents go through plan and push again (their latest landed copy), confirmations are sent
    again for their Visma invoice's latest landed copy, and vendor alignment runs again whole.
    """
    metadata: dict[str, Any] = {}
    deferred: list[str] = []
    references = load_references(ledger, settings)
    for kind in KINDS:
        letters = ledger.open_dead_letters(kind.asset)
        if not letters:
            continue
        records = replay_copies(ledger, letters, system=JAGGAER, entity=kind.source.value)
        plan = plan_documents(kind, [records], partition_key=None, ledger=ledger, settings=settings,
                              references=references)
        outcome = push_plan(plan, kind, client=visma, ledger=ledger, run_id=run_id, log=log)
        deferred += outcome.deferred
        metadata |= {f"{kind.name}_replayed": len(letters), f"{kind.name}_failed": outcome.failed,
                     f"{kind.name}_resolved": len(letters) - ledger.count_open_dead_letters(kind.asset)}
    letters = ledger.open_dead_letters(confirmations.ASSET)
    if letters and confirmer is not None:
        numbers = {str(letter.record.get("referenceNumber")): letter.record for letter in letters}
        landed = LandingStore(ledger).get_many(VISMA, VismaEntity.SUPPLIER_INVOICE.value, numbers)
        invoices = [landed[n].payload if n in landed else record for n, record in numbers.items()]
        outcome = confirmations.confirm_invoices(invoices, ledger=ledger, confirmer=confirmer, run_id=run_id,
                                                 partition_key=None, log=log)
        metadata |= {"confirmations_replayed": len(letters), "confirmations_failed": outcome.failed}
    if vendor_letters := ledger.count_open_dead_letters(reference.ASSET):
        aligned = reference.align_vendors(references, client=visma, ledger=ledger, settings=settings, run_id=run_id,
                                          log=log)
        metadata |= {"vendors_replayed": vendor_letters, "vendors_failed": aligned.failed}
    if deferred:
        raise CreateInDoubt(f"{REPLAY_JOB}: {len(deferred)} create(s) in doubt; retrying")
    return metadata or {"replayed": 0}


def build_replay_job(settings: JaggaerVismaFlow, *, with_confirmations: bool) -> dg.JobDefinition:
    """``jaggaer_visma_replay``: the flow's open dead letters, through the same plan and push, once fixed."""

    @dg.op(name="replay_jaggaer_visma_dead_letters", pool=VISMA_POOL, retry_policy=_retry(settings),
           out=dg.Out(dg.Nothing))
    def replay_letters(context: dg.OpExecutionContext, visma: VismaResource, jaggaer: JaggaerResource,
                       ledger: LedgerResource) -> None:
        with visma.client() as client, ledger.open() as opened:
            if with_confirmations:
                with jaggaer.cxml() as cxml:
                    confirmer = confirmations.Confirmer(cxml, jaggaer.envelope(), jaggaer.cxml_shared_secret or "")
                    metadata = replay(opened, client, confirmer, settings=settings, run_id=context.run_id,
                                      log=context.log)
            else:
                metadata = replay(opened, client, None, settings=settings, run_id=context.run_id, log=context.log)
        context.add_output_metadata(metadata)

    writes = ["visma", "jaggaer"] if with_confirmations else ["visma"]  # confirmations go back to JAGGAER

    @dg.job(name=REPLAY_JOB, description="Retry the open dead letters of the JAGGAER -> Visma flow.",
            tags=job_tags("jaggaer_visma", writes=writes, kind="replay"))
    def jaggaer_visma_replay() -> None:
        replay_letters()

    return jaggaer_visma_replay


# -- the flow's definitions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JaggaerVismaDefinitions:
    """What the flow adds to the code location."""

    assets: list[dg.AssetsDefinition]
    asset_checks: list[dg.AssetChecksDefinition]
    jobs: list[dg.JobDefinition]


def build_jaggaer_visma(settings: JaggaerVismaFlow, jaggaer: JaggaerSettings,
                        visma: VismaSettings) -> JaggaerVismaDefinitions:
    """Both document assets, the vendor alignment, the cXML confirmations (when cXML is set up), checks, replay."""
    partitions_def = jaggaer_partitions(jaggaer.partitions_start)
    assets = [build_document_asset(kind, settings, partitions_def) for kind in KINDS]
    assets.append(build_alignment_asset(settings))
    checks = [build_reconciled_check(kind, settings, partitions_def) for kind in KINDS]
    confirming = settings.cxml_confirmations and jaggaer.cxml_url is not None
    if confirming:
        assets.append(build_confirmations_asset(settings, visma_partitions(visma.partitions_start)))
    checks += [build_dead_letter_check(key, replay_job=REPLAY_JOB)
               for asset in assets for key in asset.keys]
    return JaggaerVismaDefinitions(assets=assets, asset_checks=checks,
                                   jobs=[build_replay_job(settings, with_confirmations=confirming)])
