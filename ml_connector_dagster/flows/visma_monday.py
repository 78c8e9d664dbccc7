"""Visma and monday.com: Visma finance records become items on the customer's own boards; receipts flow back.

- Every supplier invoice, purchase order and customer invoice of a day becomes one item on the board
  connector.yaml names for its entity; GL accounts and dimension values become items on reference
  boards (lookup values for filters and connect-boards columns). monday has no finance objects, so
  each Visma field goes to a column by title, by position or by a mapping table
  (:mod:`.visma_monday_mapping`; ``ml-connector map monday --board <id>`` proposes one).
- Items are deduped on the Visma-id column (looked up many values per request) and the ledger: an
  item a person entered by hand with the Visma id is adopted, never duplicated. A changed record
  updates its item; an unchanged one (same content hash) is skipped.
- Customer invoices carry their AR aging bucket (current, 1-30, 31-60, 61-90, 90+ days past due),
  computed with pandas and summarised per bucket in the materialization's metadata.
- The return path: marking an invoice or PO item "Received" appends a receipt line to the Visma
  document's note (``PUT`` with ``If-Match``; a 412 re-reads and re-applies), once per item
  (:mod:`.visma_monday_receipts`).

Dagster shape: ``monday/visma_invoice_items``, ``monday/visma_purchase_order_items`` and
``monday/visma_customer_invoice_items`` are graph-backed assets (plan -> push) partitioned like
their Visma sources and fed by them; ``monday/visma_gl_accounts`` and ``monday/visma_dimensions``
are unpartitioned. All are in group ``visma_monday``, kinds visma + monday, ops in the
``monday_api`` pool. Each has a dead-letter check, the partitioned ones a ``reconciled`` check.
``visma_monday_receipts`` (job + sensor) is the return path, ``visma_monday_webhooks`` subscribes the
received columns to the receiver (with ``webhook_url``); ``visma_monday_replay`` retries this flow's
dead letters; a ``dry_run`` push config shows the plan without writing.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from ml_connector_dagster.assets.visma import BACKFILL, visma_partitions
from ml_connector_dagster.assets.visma import POOL as VISMA_POOL
from ml_connector_dagster.check_scope import PARTITION_AUDIT
from ml_connector_dagster.config import VismaMondayFlow, VismaSettings
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.run_tags import destination_tags, job_tags
from ml_connector_dagster.systems.monday.client import MondayClient
from ml_connector_dagster.systems.monday.models import Board
from ml_connector_dagster.systems.monday.resource import MondayResource
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.resource import VismaResource

from .destination import (
    CreateInDoubt,
    PushConfig,
    Reconciliation,
    build_dead_letter_check,
    replay_copies,
    step_retry_policy,
)
from .visma_monday_mapping import ColumnMapping, MappingError, resolve_mapping
from .visma_monday_plan import Action, ItemPlan, landed_chunks, plan_items, render_records
from .visma_monday_push import DEST, PushOutcome, push_plan
from .visma_monday_receipts import (
    RECEIPTS_ASSET,
    ReceiptOutcome,
    apply_receipts,
    build_receipt_sensor,
    ensure_receipt_webhooks,
    receipt_boards,
)
from .visma_monday_render import KINDS, ItemKind

__all__ = [
    "GROUP",
    "KINDS",
    "POOL",
    "RECEIPTS_JOB",
    "RECEIPTS_OP",
    "VismaMondayDefinitions",
    "build_item_asset",
    "build_visma_monday",
    "dry_run_config",
    "kind_of",
    "plan_kind",
    "reconcile",
]

GROUP = "visma_monday"
POOL = "monday_api"
KINDS_TAG = {"visma", "monday"}
RECEIPTS_JOB = "visma_monday_receipts"
RECEIPTS_OP = "apply_monday_receipts"
REPLAY_JOB = "visma_monday_replay"
WEBHOOKS_JOB = "visma_monday_webhooks"
PLAN_ROWS_SHOWN = 500


def kind_of(entity: str) -> ItemKind:
    """The item kind of a Visma entity (``supplier_invoices`` ...)."""
    return next(kind for kind in KINDS if kind.entity == entity)


def _source(kind: ItemKind) -> dg.AssetKey:
    return dg.AssetKey(["visma", kind.entity])


def _graph_name(kind: ItemKind) -> str:
    return kind.asset.replace("/", "__")


def dry_run_config(kind: ItemKind) -> dict[str, Any]:
    """Run config that makes a materialization of ``kind`` plan only (nothing written to monday)."""
    return {"ops": {_graph_name(kind): {"ops": {f"push_monday_{kind.entity}": {"config": {"dry_run": True}}}}}}


def _today() -> date:
    return datetime.now(UTC).date()


def _mapping(kind: ItemKind, client: MondayClient, settings: VismaMondayFlow, found: Board | None = None) -> ColumnMapping:
    board = settings.boards[kind.entity]  # type: ignore[index]
    try:
        return resolve_mapping(kind.entity, found or client.board(board.board_id), board)
    except MappingError as exc:  # a configuration to fix, not a failure to retry
        raise dg.Failure(description=f"{exc} (run `ml-connector map monday --board {board.board_id}`)",
                         allow_retries=False) from None


def plan_kind(kind: ItemKind, partition_keys: Sequence[str | None], *, client: MondayClient, ledger: Ledger,
              settings: VismaMondayFlow, as_of: date | None = None) -> ItemPlan:  # fmt: skip
    """The plan of the kind's landed records in ``partition_keys`` (``[None]``: reference data)."""
    board = client.board(settings.boards[kind.entity].board_id)  # type: ignore[index]
    mapping = _mapping(kind, client, settings, board)
    keys = list(partition_keys) if kind.partitioned else [None]
    label = None if keys == [None] else keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"
    return plan_items(kind, landed_chunks(kind, ledger, keys), client=client, ledger=ledger, mapping=mapping,
                      settings=settings, as_of=as_of or _today(), label=label, url=board.url,
                      board_items=board.items_count)  # the board's one read also gives its URL


# -- metadata ----------------------------------------------------------------------------------------


def _plan_table(plan: ItemPlan) -> dg.TableMetadataValue:
    rows = [dg.TableRecord({"visma_id": item.visma_id, "action": item.action.value, "item": item.item_id or "",
                            "detail": item.reason or ""})
            for item in plan.items[:PLAN_ROWS_SHOWN]]  # fmt: skip
    schema = dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in ("visma_id", "action", "item", "detail")])
    return dg.MetadataValue.table(rows, schema=schema)


def _plan_metadata(plan: ItemPlan) -> dict[str, Any]:
    metadata: dict[str, Any] = {"skipped": plan.skipped, "duplicates_on_board": len(plan.duplicates),
                                "board": plan.mapping.board_name}  # fmt: skip
    if plan.board_url:
        metadata["board_url"] = dg.MetadataValue.url(plan.board_url)
    if plan.aging:
        frame = pd.DataFrame(plan.aging)
        metadata["ar_aging"] = dg.MetadataValue.md(frame.to_markdown(index=False))
        metadata["ar_open_invoices"] = int(frame["invoices"].sum())
        metadata |= {f"ar_{bucket}": int(count) for bucket, count in zip(frame["bucket"], frame["invoices"], strict=True)}
    return metadata


def dry_run_metadata(plan: ItemPlan) -> dict[str, Any]:
    """What a push of ``plan`` would do: counts per action and the planned rows."""
    return {"dry_run": True, **{f"would_{action.value}": plan.count(action) for action in Action},
            **_plan_metadata(plan), "plan": _plan_table(plan)}  # fmt: skip


def push_metadata(plan: ItemPlan, outcome: PushOutcome) -> dict[str, Any]:
    """Counts of what the push did, the board, a few items written and, for AR, the aging summary."""
    metadata: dict[str, Any] = {
        "dry_run": False, "created": outcome.created, "updated": outcome.updated, "linked": outcome.linked,
        "failed": outcome.failed, "deferred": len(outcome.deferred), **_plan_metadata(plan),
    }  # fmt: skip
    metadata |= {f"item {visma_id}": dg.MetadataValue.url(url) for visma_id, url in outcome.items.items()}
    return metadata


# -- the destination assets --------------------------------------------------------------------------


def _give_up(plan: ItemPlan, outcome: PushOutcome, ledger: Ledger, run_id: str) -> None:
    """The last attempt: record each create still in doubt as a dead letter (the replay settles it)."""
    by_row = {item.row_id: item for item in plan.items}
    for row_id in outcome.deferred:
        planned = by_row.get(row_id)
        record_id = planned.record_id if planned is not None else row_id
        ledger.add_dead_letter(plan.asset, record_id, {}, f"{row_id}: in doubt: the write may have reached monday "
                               "but the item cannot be found yet; a replay looks it up before writing again",
                               partition_key=planned.partition_key if planned else None, run_id=run_id)  # fmt: skip


def build_item_asset(kind: ItemKind, settings: VismaMondayFlow,
                     partitions_def: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:  # fmt: skip
    """The graph-backed asset of one kind: plan its partition (or the reference data), then push the plan."""
    retry = step_retry_policy(settings.op_retries, settings.op_retry_delay_s)

    @dg.op(name=f"plan_monday_{kind.entity}", ins={"landed": dg.In(dg.Nothing)}, pool=POOL, retry_policy=retry,
           description=f"Render {kind.asset}'s records and decide create / update / link / skip per item.")
    def plan(context: dg.OpExecutionContext, monday: MondayResource, ledger: LedgerResource) -> ItemPlan:
        keys = context.partition_keys if kind.partitioned else [None]
        with monday.client() as client, ledger.open() as opened:
            planned = plan_kind(kind, keys, client=client, ledger=opened, settings=settings)
        context.log.info(f"{kind.asset} {planned.label or ''}: skip {planned.skipped}, "
                         + ", ".join(f"{action.value} {planned.count(action)}" for action in Action))
        return planned

    @dg.op(name=f"push_monday_{kind.entity}", pool=POOL, retry_policy=retry, out=dg.Out(dg.Nothing),
           description=f"Carry out the plan on the monday board (or, with dry_run, only show it) for {kind.asset}.")
    def push(context: dg.OpExecutionContext, config: PushConfig, plan: ItemPlan, monday: MondayResource,
             ledger: LedgerResource) -> None:
        if config.dry_run:
            context.add_output_metadata(dry_run_metadata(plan))
            return
        with monday.client() as client, ledger.open() as opened:
            outcome = push_plan(plan, kind, client=client, ledger=opened, settings=settings, run_id=context.run_id,
                                log=context.log)  # fmt: skip
            if outcome.deferred and context.retry_number >= settings.op_retries:
                _give_up(plan, outcome, opened, context.run_id)
        if outcome.deferred:
            raise CreateInDoubt(f"{kind.asset}: {len(outcome.deferred)} write(s) in doubt or not sent "
                                f"({', '.join(outcome.deferred[:10])}); looking again instead of writing twice")
        context.add_output_metadata(push_metadata(plan, outcome))

    common: dict[str, Any] = {"key": dg.AssetKey(kind.asset.split("/")), "group_name": GROUP, "kinds": KINDS_TAG,
                              "ins": {"landed": dg.AssetIn(key=_source(kind), dagster_type=dg.Nothing)},
                              "description": f"monday items of Visma {kind.entity.replace('_', ' ')}, one per "
                                             f"{'document' if kind.partitioned else 'reference value'}."}  # fmt: skip
    if partitions_def is not None:
        common |= {"partitions_def": partitions_def, "backfill_policy": BACKFILL}

    @dg.graph_asset(**common)
    def items(landed: Any) -> Any:
        return push(plan(landed))

    return items


# -- reconciliation ----------------------------------------------------------------------------------


def reconcile(kind: ItemKind, partition_keys: Sequence[str | None], *, client: MondayClient, ledger: Ledger,
              settings: VismaMondayFlow) -> Reconciliation:  # fmt: skip
    """Every valid landed row of the partitions should have one linked item on the board, and only one."""
    mapping = _mapping(kind, client, settings)
    wanted: dict[str, str] = {}  # row id -> Visma id
    for chunk in landed_chunks(kind, ledger, list(partition_keys) if kind.partitioned else [None]):
        rendered, _, _ = render_records(kind, chunk, mapping, _today())
        wanted |= {item.row_id: item.visma_id for item in rendered}
    links = ledger.links_for(kind.flow, wanted)
    # How many items show each id is all it counts: the key-only read is a tenth of the points.
    found = client.find_items_by_column_values(mapping.board_id, mapping.visma_id_column, list(wanted.values()),
                                               key_only=True)
    return Reconciliation.of(list(wanted), [row for row, link in links.items() if link.state == "linked"],
                             {row: len(found.get(visma_id, [])) for row, visma_id in wanted.items()})


def build_reconciled_check(kind: ItemKind, settings: VismaMondayFlow,
                           partitions_def: dg.PartitionsDefinition | None) -> dg.AssetChecksDefinition:  # fmt: skip
    """``reconciled``: each valid record of the partition has exactly one item (duplicates: ERROR)."""

    @dg.asset_check(asset=dg.AssetKey(kind.asset.split("/")), name="reconciled", partitions_def=partitions_def,
                    pool=POOL, metadata=PARTITION_AUDIT,
                    description="Every valid Visma record has exactly one item on its monday board.")
    def reconciled(context: dg.AssetCheckExecutionContext, monday: MondayResource,
                   ledger: LedgerResource) -> dg.AssetCheckResult:
        keys = context.partition_keys if partitions_def is not None else [None]
        with monday.client() as client, ledger.open() as opened:
            return reconcile(kind, keys, client=client, ledger=opened, settings=settings).check_result(DEST)

    return reconciled


# -- the return path and the replay ------------------------------------------------------------------


class ReceiptsConfig(dg.Config):
    """Run config of the receipts op: the receipts to write (none: retry the open receipt dead letters)."""

    items: list[str] = Field(default_factory=list, description="Receipts as <board id>:<item id>.")


def _receipt_metadata(outcome: ReceiptOutcome) -> dict[str, Any]:
    documents = pd.DataFrame([{"receipt": ref, "visma_document": doc} for ref, doc in outcome.documents.items()],
                             columns=["receipt", "visma_document"])  # fmt: skip
    return {"applied": outcome.applied, "already_done": outcome.already, "not_received": outcome.not_received,
            "conflicts_resolved": outcome.conflicts, "failed": outcome.failed,
            "documents": dg.MetadataValue.md(documents.head(50).to_markdown(index=False) if outcome.documents
                                             else "_none_")}  # fmt: skip


def _receive(refs: Sequence[str], *, settings: VismaMondayFlow, monday: MondayResource, visma: VismaResource,
             ledger: Ledger, run_id: str, log: Any) -> ReceiptOutcome:  # fmt: skip
    with monday.client() as board_client, visma.client() as visma_client:
        boards = receipt_boards(board_client, settings)
        return apply_receipts(refs, monday=board_client, visma=visma_client, ledger=ledger, settings=settings,
                              boards=boards, run_id=run_id, log=log)  # fmt: skip


def build_receipts_job(settings: VismaMondayFlow) -> dg.JobDefinition:
    """``visma_monday_receipts``: write the receipts of items marked received to their Visma documents."""

    @dg.op(name=RECEIPTS_OP, pool=VISMA_POOL, retry_policy=step_retry_policy(settings.op_retries,
           settings.op_retry_delay_s), out=dg.Out(dg.Nothing),
           description="Append a receipt line to the note of each received item's Visma document, once.")  # fmt: skip
    def receive(context: dg.OpExecutionContext, config: ReceiptsConfig, monday: MondayResource,
                visma: VismaResource, ledger: LedgerResource) -> None:
        with ledger.open() as opened:
            refs = config.items or [letter.source_id for letter in opened.open_dead_letters(RECEIPTS_ASSET)]
            outcome = _receive(refs, settings=settings, monday=monday, visma=visma, ledger=opened,
                               run_id=context.run_id, log=context.log)  # fmt: skip
        context.add_output_metadata(_receipt_metadata(outcome))

    @dg.job(name=RECEIPTS_JOB, tags=job_tags("visma_monday", writes=["visma"]),
            description="Items marked received in monday -> a receipt note on their Visma document.")
    def visma_monday_receipts() -> None:
        receive()

    return visma_monday_receipts


def build_webhooks_job(settings: VismaMondayFlow) -> dg.JobDefinition:
    """``visma_monday_webhooks``: subscribe the received columns to the receiver (once; run it again at will).

    A job, not an asset: monday challenges the receiver during the call, so it runs where the receiver is up.
    """

    @dg.op(name="subscribe_monday_receipt_webhooks", pool=POOL, out=dg.Out(dg.Nothing),
           description="Register a change_status_column_value webhook per received column, unless one exists.")
    def subscribe(context: dg.OpExecutionContext, monday: MondayResource) -> None:
        with monday.client() as client:
            hooks = ensure_receipt_webhooks(client, receipt_boards(client, settings), str(settings.webhook_url))
        context.add_output_metadata({"webhooks": dg.MetadataValue.json([hook.model_dump() for hook in hooks])})

    @dg.job(name=WEBHOOKS_JOB, tags=job_tags("visma_monday", writes=["monday"]),
            description="Subscribe the boards' received columns to the webhook receiver (the receipt poll stays on).")
    def visma_monday_webhooks() -> None:
        subscribe()

    return visma_monday_webhooks


def build_replay_job(settings: VismaMondayFlow, kinds: Sequence[ItemKind]) -> dg.JobDefinition:
    """``visma_monday_replay``: push the open dead letters of every kind again, and retry failed receipts."""

    @dg.op(name="replay_visma_monday_dead_letters", pool=POOL, out=dg.Out(dg.Nothing),
           retry_policy=step_retry_policy(settings.op_retries, settings.op_retry_delay_s))
    def replay(context: dg.OpExecutionContext, monday: MondayResource, visma: VismaResource,
               ledger: LedgerResource) -> None:
        metadata: dict[str, Any] = {}
        deferred: list[str] = []
        with monday.client() as client, ledger.open() as opened:
            for kind in kinds:
                letters = opened.open_dead_letters(kind.asset)
                if not letters:
                    continue
                copies = replay_copies(opened, letters, system=VISMA, entity=kind.visma_entity.value)
                plan = plan_items(kind, [copies], client=client, ledger=opened, mapping=_mapping(kind, client, settings),
                                  settings=settings, as_of=_today(), label="replay")  # fmt: skip
                outcome = push_plan(plan, kind, client=client, ledger=opened, settings=settings, run_id=context.run_id,
                                    log=context.log)  # fmt: skip
                deferred += outcome.deferred
                metadata |= {f"{kind.entity}_replayed": len(letters), f"{kind.entity}_failed": outcome.failed,
                             f"{kind.entity}_still_open": opened.count_open_dead_letters(kind.asset)}  # fmt: skip
            receipts = [letter.source_id for letter in opened.open_dead_letters(RECEIPTS_ASSET)]
            if receipts:
                outcome_ = _receive(receipts, settings=settings, monday=monday, visma=visma, ledger=opened,
                                    run_id=context.run_id, log=context.log)  # fmt: skip
                metadata |= {"receipts_replayed": len(receipts), "receipts_failed": outcome_.failed}
        if deferred:
            raise CreateInDoubt(f"{REPLAY_JOB}: {len(deferred)} write(s) in doubt; looking again")
        context.add_output_metadata(metadata or {"replayed": 0})

    # Items go to monday; failed receipts go again to their Visma documents.
    @dg.job(name=REPLAY_JOB, tags=job_tags("visma_monday", writes=["monday", "visma"], kind="replay"),
            description="Retry the open dead letters of the Visma -> monday flow (items and receipts).")
    def visma_monday_replay() -> None:
        replay()

    return visma_monday_replay


# -- the flow's definitions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VismaMondayDefinitions:
    """What the flow adds to the code location."""

    assets: list[dg.AssetsDefinition]
    asset_checks: list[dg.AssetChecksDefinition]
    jobs: list[dg.JobDefinition]
    sensors: list[dg.SensorDefinition]
    schedules: list[dg.ScheduleDefinition]


def build_visma_monday(settings: VismaMondayFlow, visma: VismaSettings, *, lookback: timedelta,
                       minimum_interval_seconds: int) -> VismaMondayDefinitions:  # fmt: skip
    """The item asset of every configured board, their checks, the receipts job and sensor, the replay job,
    and a daily refresh of the reference boards."""
    partitions_def = visma_partitions(visma.partitions_start)
    kinds = [kind for kind in KINDS if kind.entity in settings.boards]
    assets, checks = [], []
    for kind in kinds:
        partitioned = partitions_def if kind.partitioned else None
        assets.append(build_item_asset(kind, settings, partitioned))
        checks += [build_reconciled_check(kind, settings, partitioned),
                   build_dead_letter_check(dg.AssetKey(kind.asset.split("/")), replay_job=REPLAY_JOB)]
    jobs = [build_replay_job(settings, kinds)]
    sensors = []
    if settings.return_path and any(board.received_column for board in settings.boards.values()):
        receipts = build_receipts_job(settings)
        jobs.append(receipts)
        if settings.webhook_url is not None:
            jobs.append(build_webhooks_job(settings))
        # With webhooks the sensor ticks every second (a hint is a ledger read); it polls monday at the poll interval.
        sensors.append(build_receipt_sensor(settings, receipts, RECEIPTS_OP, lookback=lookback,
                                            poll_interval_seconds=minimum_interval_seconds
                                            if settings.receipt_poll_s is None else settings.receipt_poll_s,
                                            minimum_interval_seconds=1 if settings.webhook_url is not None
                                            else minimum_interval_seconds))  # fmt: skip
    reference = [kind for kind in kinds if not kind.partitioned]
    schedules = []
    if reference:
        keys = [key for kind in reference for key in (_source(kind), dg.AssetKey(kind.asset.split("/")))]
        schedules.append(dg.ScheduleDefinition(
            name="visma_monday_reference", cron_schedule="0 5 * * *", execution_timezone="UTC",
            target=dg.AssetSelection.assets(*keys), default_status=dg.DefaultScheduleStatus.RUNNING,
            tags=destination_tags(["monday"]),
            description="Refresh the GL accounts and dimensions on their monday reference boards daily.",
        ))  # fmt: skip
    return VismaMondayDefinitions(assets=assets, asset_checks=checks, jobs=jobs, sensors=sensors, schedules=schedules)
