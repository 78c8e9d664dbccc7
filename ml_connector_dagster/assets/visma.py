"""Visma.net source assets: read changed records, validate them, land the good ones, quarantine the rest.

Documents (``visma/supplier_invoices``, ``purchase_orders``, ``customer_invoices``, ``payments``,
``gl_transactions``) share one daily UTC partitioning by *modification* date; reference data
(``visma/suppliers``, ``gl_accounts``, ``dimensions``) is unpartitioned and read whole. Every asset
comes from one factory over :data:`VISMA_SOURCES`.

A partitioned run reads its partition's whole day (00:00 to 24:00 UTC) unless its run config
(:class:`VismaWindow`, set by the poll sensor) narrows it to the changes the sensor found, with
``overlap_s`` re-read behind the window's start for late commits. Records modified outside the
run's days are left for their own partition. Valid records are upserted into the landing store
(idempotent: a re-run lands nothing new); invalid ones become dead letters naming the field.

Backfills use ``BackfillPolicy.multi_run(7)``: a run covers up to a week of partitions and reads
their span in one pass. Visma's filter has a lower bound only, so every read pages through all
changes since its start; one pass per week rather than per day keeps backfills linear. (A
single-run backfill would read the whole range in one run, which is also correct here, but a
failure would then redo everything.)
"""


from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from ml_connector_dagster.config import VismaSettings
from ml_connector_dagster.core.http import AuthenticationFailed, NotFound
from ml_connector_dagster.core.landing import LandCounts, LandedRecord, LandingStore, content_hash
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.systems.visma.client import SYSTEM, VismaClient, VismaEntity, modified_at
from ml_connector_dagster.systems.visma.models import (
    Account,
    CustomerInvoice,
    Dimension,
    JournalTransaction,
    Payment,
    PurchaseOrder,
    Supplier,
    SupplierInvoice,
    VismaRecord,
    parse_utc,
    validate_record,
)
from ml_connector_dagster.systems.visma.resource import VismaResource

__all__ = [
    "BACKFILL",
    "GROUP",
    "POOL",
    "VISMA_SOURCES",
    "VismaSource",
    "VismaWindow",
    "build_dead_letter_check",
    "build_visma_source",
    "read_window",
    "visma_asset_checks",
    "visma_partitions",
    "visma_source_assets",
]

GROUP = "visma"
POOL = "visma_api"
PREVIEW_ROWS = 10
RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=7)
_UNREADABLE_TIMESTAMP = "lastModifiedDateTime: missing or not an ISO 8601 timestamp"


class VismaWindow(dg.Config):
    """Narrows a run to the changes a sensor found; without it the run reads its partitions' whole days."""

    modified_from: str | None = None
    modified_to: str | None = None
    ids: list[str] = Field(
        default_factory=list,
        description="Fetch exactly these records (from the webhook inbox) instead of reading a window.",
    )


@dataclass(frozen=True)
class VismaSource:
    """One Visma record type as a source asset."""

    name: str
    entity: VismaEntity
    model: type[VismaRecord]
    description: str
    partitioned: bool = True
    preview: tuple[str, ...] = ("record_id", "modified_at")

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([GROUP, self.name])

    @property
    def op_name(self) -> str:
        """The op behind the asset (where run config for :class:`VismaWindow` goes)."""
        return "__".join(self.key.path)

    def pages(self, client: VismaClient, window: tuple[datetime, datetime] | None) -> Iterator[list[dict[str, Any]]]:
        """Raw pages: the changes in ``window`` for documents, everything for reference data."""
        if self.entity is VismaEntity.DIMENSION:
            yield [client.get_dimension(dimension_id) for dimension_id in client.list_dimension_ids()]
        elif window is None:
            yield from client.iter_pages(self.entity)
        else:
            yield from client.iter_changed(self.entity, *window)


_DOCUMENT_PREVIEW = ("record_id", "status", "modified_at")
VISMA_SOURCES: tuple[VismaSource, ...] = (
    VismaSource("supplier_invoices", VismaEntity.SUPPLIER_INVOICE, SupplierInvoice,
                "Supplier invoices (AP documents) by day of last modification.",
                preview=(*_DOCUMENT_PREVIEW, "supplier.number", "amount", "currency_id")),
    VismaSource("purchase_orders", VismaEntity.PURCHASE_ORDER, PurchaseOrder,
                "Purchase orders with their lines, by day of last modification.",
                preview=(*_DOCUMENT_PREVIEW, "supplier.number", "order_total", "currency")),
    VismaSource("customer_invoices", VismaEntity.CUSTOMER_INVOICE, CustomerInvoice,
                "Customer invoices (AR documents) by day of last modification.",
                preview=(*_DOCUMENT_PREVIEW, "customer.number", "amount", "currency_id")),
    VismaSource("payments", VismaEntity.PAYMENT, Payment,
                "Customer payments by day of last modification.",
                preview=(*_DOCUMENT_PREVIEW, "customer.number", "payment_amount", "currency")),
    VismaSource("gl_transactions", VismaEntity.JOURNAL_TRANSACTION, JournalTransaction,
                "General ledger journal transactions (batches with their lines) by day of last modification.",
                preview=(*_DOCUMENT_PREVIEW, "debit_total", "credit_total", "currency_id")),
    VismaSource("suppliers", VismaEntity.SUPPLIER, Supplier, "Every supplier (reference data).",
                partitioned=False, preview=("record_id", "name", "status")),
    VismaSource("gl_accounts", VismaEntity.ACCOUNT, Account, "The chart of accounts (reference data).",
                partitioned=False, preview=("record_id", "description", "type")),
    VismaSource("dimensions", VismaEntity.DIMENSION, Dimension,
                "Dimensions (cost centres, projects ...) with their segment values (reference data).",
                partitioned=False, preview=("record_id", "description")),
)  # fmt: skip


@lru_cache(maxsize=8)
def visma_partitions(start: date) -> dg.DailyPartitionsDefinition:
    """The one daily partitioning every Visma document asset (and its destinations) shares."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)


def read_window(days: dg.TimeWindow, config: VismaWindow, overlap: timedelta) -> tuple[datetime, datetime]:
    """``[start, end)`` to read: the run's days, narrowed to the sensor's window (with ``overlap`` behind).

    ``modified_to`` is inclusive (the latest change the sensor saw); the window never leaves the days.
    """
    start, end = days.start, days.end
    if config.modified_from:
        start = max(start, parse_utc(config.modified_from) - overlap)
    if config.modified_to:
        end = min(end, parse_utc(config.modified_to) + timedelta(microseconds=1))
    if end <= start:
        raise dg.Failure(f"empty window: modified_from/modified_to select nothing of {days.start:%Y-%m-%d}..{days.end:%Y-%m-%d}",
                         allow_retries=False)
    return start, end


def _payload(raw: dict[str, Any]) -> dict[str, Any]:
    # Paging metadata (totalCount) changes with the query, not with the record.
    return {name: value for name, value in raw.items() if name != "metadata"}


def _markdown(frame: pd.DataFrame) -> str:
    # Ids like "000042" are text: keep them as written.
    return frame.to_markdown(index=False, disable_numparse=True)


def _preview_value(record: VismaRecord, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = getattr(value, part, None)
    return value.isoformat() if isinstance(value, datetime | date) else value


@dataclass
class _Tally:
    read: int = 0
    outside: int = 0
    quarantined: int = 0
    landed: LandCounts = field(default_factory=LandCounts)
    preview: list[dict[str, Any]] = field(default_factory=list)


class _Lander:
    """Validates pages of one source and lands or quarantines each record."""

    def __init__(self, source: VismaSource, ledger: Ledger, run_id: str,
                 partition_key_for: Callable[[datetime], str] | None) -> None:
        self.source = source
        self.asset = source.key.to_user_string()
        self.ledger = ledger
        self.store = LandingStore(ledger)
        self.run_id = run_id
        self.partition_key_for = partition_key_for
        self.tally = _Tally()

    def take(self, page: Sequence[Any], window: tuple[datetime, datetime] | None) -> None:
        """Validate one page: land the good records of the window, quarantine the bad ones."""
        self.tally.read += len(page)
        valid: list[tuple[VismaRecord, dict[str, Any]]] = []
        for raw in (r if isinstance(r, dict) else {"value": r} for r in page):  # a non-object fails by name
            moment = modified_at(raw)
            if window is not None and moment is None:
                self._quarantine(raw, _UNREADABLE_TIMESTAMP, None)
            elif window is not None and not window[0] <= moment < window[1]:
                self.tally.outside += 1  # another partition's record: its own run lands it
            elif isinstance(checked := validate_record(self.source.model, raw), str):
                self._quarantine(raw, checked, self._partition_key(moment))
            else:
                valid.append((checked, raw))
        self._land(valid)

    def _land(self, valid: list[tuple[VismaRecord, dict[str, Any]]]) -> None:
        landed = [
            LandedRecord(record_id=record.record_id, partition_key=self._partition_key(record.modified_at),
                         modified_at=record.modified_at, payload=_payload(raw))
            for record, raw in valid
        ]
        counts = self.store.land(SYSTEM, self.source.entity.value, landed, run_id=self.run_id)
        self.tally.landed = self.tally.landed.plus(counts)
        self.ledger.resolve_dead_letters_for(self.asset, [record.record_id for record in landed])
        room = max(PREVIEW_ROWS - len(self.tally.preview), 0)
        self.tally.preview += [{path: _preview_value(record, path) for path in self.source.preview}
                               for record, _ in valid[:room]]

    def _partition_key(self, moment: datetime | None) -> str | None:
        return self.partition_key_for(moment) if self.partition_key_for and moment else None

    def _quarantine(self, raw: dict[str, Any], reason: str, partition_key: str | None) -> None:
        source_id = self.source.model.raw_id(raw) or f"unidentified:{content_hash(raw)[:16]}"
        self.ledger.add_dead_letter(self.asset, source_id, raw, reason, partition_key=partition_key, run_id=self.run_id)
        self.tally.quarantined += 1

    def result(self, window: tuple[datetime, datetime] | None) -> dg.MaterializeResult:
        t = self.tally
        preview = pd.DataFrame(t.preview, columns=list(self.source.preview))
        metadata: dict[str, Any] = {
            "read": t.read,
            "inserted": t.landed.inserted,
            "updated": t.landed.updated,
            "unchanged": t.landed.unchanged,
            "quarantined": t.quarantined,
            "outside_window": t.outside,
            "preview": dg.MetadataValue.md(_markdown(preview) if t.preview else "_nothing landed_"),
        }
        if window is not None:
            metadata["window"] = dg.MetadataValue.text(f"{window[0].isoformat()} .. {window[1].isoformat()}")
        return dg.MaterializeResult(metadata=metadata)


def _pages_by_id(client: VismaClient, source: VismaSource, ids: Sequence[str],
                 log: Any, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
    """The records a webhook named, one GET each (Visma has no multi-get); a deleted one is skipped."""
    page: list[dict[str, Any]] = []
    for record_id in dict.fromkeys(ids):
        try:
            page.append(client.get(source.entity, record_id)[0])
        except NotFound:
            log.warning(f"{source.key.to_user_string()} {record_id} no longer exists in Visma")
            continue
        if len(page) >= page_size:
            yield page
            page = []
    if page:
        yield page


def _read_and_land(context: dg.AssetExecutionContext, source: VismaSource, visma: VismaResource,
                   ledger: LedgerResource, window: tuple[datetime, datetime] | None,
                   partition_key_for: Callable[[datetime], str] | None,
                   ids: Sequence[str] = ()) -> dg.MaterializeResult:
    try:
        with visma.client() as client, ledger.open() as opened:
            lander = _Lander(source, opened, context.run_id, partition_key_for)
            # Records fetched by id land in the partition of their own modification day.
            pages = _pages_by_id(client, source, ids, context.log) if ids else source.pages(client, window)
            for page in pages:
                lander.take(page, None if ids else window)
    except AuthenticationFailed as exc:
        # Retrying will not mend credentials; the message is already redacted.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    t = lander.tally
    context.log.info(f"{source.key.to_user_string()}: read {t.read}, landed {t.landed}, quarantined {t.quarantined}")
    return lander.result(window)


def build_visma_source(source: VismaSource, *, partitions_def: dg.DailyPartitionsDefinition,
                       overlap: timedelta) -> dg.AssetsDefinition:
    """The asset of one :class:`VismaSource`: partitioned by modification day, or reference data."""
    common: dict[str, Any] = {
        "key": source.key, "group_name": GROUP, "kinds": {"visma"}, "description": source.description,
        "pool": POOL, "retry_policy": RETRY,
    }
    if not source.partitioned:
        @dg.asset(**common)
        def reference(context: dg.AssetExecutionContext, visma: VismaResource,
                      ledger: LedgerResource) -> dg.MaterializeResult:
            return _read_and_land(context, source, visma, ledger, None, None)

        return reference

    @lru_cache(maxsize=64)
    def key_of_day(day: date) -> str:
        return partitions_def.get_partition_key_for_timestamp(datetime.combine(day, time(), UTC).timestamp())

    def partition_key_for(moment: datetime) -> str:
        # Daily UTC partitions: the key depends on the UTC date only, and Dagster's lookup walks a
        # cron schedule on every call, so it is asked once per day rather than once per record.
        return key_of_day(moment.astimezone(UTC).date())

    @dg.asset(**common, partitions_def=partitions_def, backfill_policy=BACKFILL)
    def documents(context: dg.AssetExecutionContext, config: VismaWindow, visma: VismaResource,
                  ledger: LedgerResource) -> dg.MaterializeResult:
        if config.ids:
            return _read_and_land(context, source, visma, ledger, None, partition_key_for, ids=config.ids)
        window = read_window(context.partition_time_window, config, overlap)
        return _read_and_land(context, source, visma, ledger, window, partition_key_for)

    return documents


def build_dead_letter_check(source: VismaSource) -> dg.AssetChecksDefinition:
    """``no_open_dead_letters`` (warning): records of this asset still quarantined, with a sample."""
    asset = source.key.to_user_string()

    @dg.asset_check(asset=source.key, name="no_open_dead_letters", blocking=False,
                    description=f"No record of {asset} is waiting in the dead-letter queue.")
    def no_open_dead_letters(context: dg.AssetCheckExecutionContext, ledger: LedgerResource) -> dg.AssetCheckResult:
        with ledger.open() as opened:
            letters = opened.open_dead_letters(asset)
        metadata: dict[str, Any] = {"open_dead_letters": len(letters)}
        if context.has_partition_key or context.has_partition_key_range:
            keys = set(context.partition_keys)
            metadata["open_in_these_partitions"] = sum(1 for letter in letters if letter.partition_key in keys)
        if letters:
            sample = pd.DataFrame([{"record": letter.source_id, "partition": letter.partition_key,
                                    "error": letter.error[:200]} for letter in letters[:PREVIEW_ROWS]])
            metadata["sample"] = dg.MetadataValue.md(_markdown(sample))
        return dg.AssetCheckResult(passed=not letters, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)

    return no_open_dead_letters


def visma_source_assets(settings: VismaSettings) -> list[dg.AssetsDefinition]:
    """Every Visma source asset, for connector.yaml's Visma settings."""
    partitions_def = visma_partitions(settings.partitions_start)
    overlap = timedelta(seconds=settings.overlap_s)
    return [build_visma_source(source, partitions_def=partitions_def, overlap=overlap) for source in VISMA_SOURCES]


def visma_asset_checks() -> list[dg.AssetChecksDefinition]:
    """The dead-letter check of every Visma source asset."""
    return [build_dead_letter_check(source) for source in VISMA_SOURCES]
