"""JAGGAER source assets: read changed J1P records, validate them, land the good ones, quarantine the rest.

``jaggaer/purchase_orders`` and ``jaggaer/invoices`` share one daily UTC partitioning by
*modification* date (``end_offset=1``, so today's partition exists); ``jaggaer/vendors`` and
``jaggaer/gl_accounts`` are reference data, unpartitioned and read whole.

A partitioned run reads its partition's whole day unless its run config (:class:`JaggaerWindow`,
set by the poll sensor) narrows it to the changes the sensor found, with ``overlap_s`` re-read
behind the window's start. J1P filters on both ends (``lastModifiedFrom``/``lastModifiedTo``), so
a run reads its window only. Valid records are upserted into the landing store (a re-run lands
nothing new); invalid ones become dead letters naming the field; nothing is dropped silently.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import dagster as dg
import pandas as pd

from ml_connector_dagster.config import JaggaerSettings
from ml_connector_dagster.core.http import AuthenticationFailed
from ml_connector_dagster.core.landing import LandCounts, LandedRecord, LandingStore, content_hash
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.systems.jaggaer.client import SYSTEM, JaggaerClient, JaggaerEntity
from ml_connector_dagster.systems.jaggaer.models import (
    GlAccount,
    Invoice,
    JaggaerRecord,
    PurchaseOrder,
    Vendor,
    modified_at,
    parse_timestamp,
    validate_record,
)
from ml_connector_dagster.systems.jaggaer.resource import JaggaerResource

__all__ = [
    "GROUP",
    "JAGGAER_SOURCES",
    "POOL",
    "JaggaerSource",
    "JaggaerWindow",
    "jaggaer_asset_checks",
    "jaggaer_partitions",
    "jaggaer_source_assets",
    "read_window",
]

GROUP = "jaggaer"
POOL = "jaggaer_api"
PREVIEW_ROWS = 10
RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=7)
_UNREADABLE_TIMESTAMP = "lastModifiedDate: missing or not an ISO 8601 timestamp with offset"


class JaggaerWindow(dg.Config):
    """Narrows a run to the changes a sensor found; without it the run reads its partitions' whole days."""

    modified_from: str | None = None
    modified_to: str | None = None


@dataclass(frozen=True)
class JaggaerSource:
    """One J1P record type as a source asset."""

    name: str
    entity: JaggaerEntity
    model: type[JaggaerRecord]
    description: str
    partitioned: bool = True
    preview: tuple[str, ...] = ("record_id", "modified_at")

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([GROUP, self.name])

    @property
    def op_name(self) -> str:
        """The op behind the asset (where run config for :class:`JaggaerWindow` goes)."""
        return "__".join(self.key.path)

    def pages(self, client: JaggaerClient, window: tuple[datetime, datetime] | None) -> Iterator[list[dict[str, Any]]]:
        """Raw pages: the changes in ``window`` for documents, everything for reference data."""
        if window is None:
            yield from client.iter_all(self.entity)
        else:
            yield from client.iter_changed(self.entity, *window)


JAGGAER_SOURCES: tuple[JaggaerSource, ...] = (
    JaggaerSource("purchase_orders", JaggaerEntity.PURCHASE_ORDERS, PurchaseOrder,
                  "JAGGAER purchase orders with their lines, by day of last modification.",
                  preview=("record_id", "po_number", "status", "supplier.supplier_id", "total_amount", "currency")),
    JaggaerSource("invoices", JaggaerEntity.INVOICES, Invoice,
                  "JAGGAER supplier invoices (most against a PO), by day of last modification.",
                  preview=("record_id", "invoice_number", "status", "purchase_order_number", "total_amount", "currency")),
    JaggaerSource("vendors", JaggaerEntity.VENDORS, Vendor, "Every JAGGAER supplier (reference data).",
                  partitioned=False, preview=("record_id", "name", "tax_id", "erp_number")),
    JaggaerSource("gl_accounts", JaggaerEntity.GL_ACCOUNTS, GlAccount, "JAGGAER GL account codes (reference data).",
                  partitioned=False, preview=("record_id", "name", "active")),
)  # fmt: skip


@lru_cache(maxsize=8)
def jaggaer_partitions(start: date) -> dg.DailyPartitionsDefinition:
    """The daily partitioning every JAGGAER document asset (and its destinations) shares."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)


def read_window(days: dg.TimeWindow, config: JaggaerWindow, overlap: timedelta) -> tuple[datetime, datetime]:
    """``[start, end)`` to read: the run's days, narrowed to the sensor's window (with ``overlap`` behind).

    ``modified_to`` is inclusive (the latest change the sensor saw); the window never leaves the days.
    """
    start, end = days.start, days.end
    if config.modified_from:
        start = max(start, parse_timestamp(config.modified_from) - overlap)
    if config.modified_to:
        end = min(end, parse_timestamp(config.modified_to) + timedelta(microseconds=1))
    if end <= start:
        raise dg.Failure(f"empty window: modified_from/modified_to select nothing of "
                         f"{days.start:%Y-%m-%d}..{days.end:%Y-%m-%d}", allow_retries=False)
    return start, end


def _preview_value(record: JaggaerRecord, path: str) -> Any:
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

    def __init__(self, source: JaggaerSource, ledger: Ledger, run_id: str,
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
        valid: list[tuple[JaggaerRecord, dict[str, Any]]] = []
        for raw in (r if isinstance(r, dict) else {"value": r} for r in page):
            moment = modified_at(raw)
            if window is not None and moment is None:
                self._quarantine(raw, _UNREADABLE_TIMESTAMP, None)
            elif window is not None and moment is not None and not window[0] <= moment < window[1]:
                self.tally.outside += 1  # changed again meanwhile: its new day's run lands it
            elif isinstance(checked := validate_record(self.source.model, raw), str):
                self._quarantine(raw, checked, self._partition_key(moment))
            else:
                valid.append((checked, raw))
        self._land(valid)

    def _land(self, valid: list[tuple[JaggaerRecord, dict[str, Any]]]) -> None:
        landed = [LandedRecord(record_id=record.record_id, partition_key=self._partition_key(record.modified_at),
                               modified_at=record.modified_at, payload=raw) for record, raw in valid]
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
            "read": t.read, "inserted": t.landed.inserted, "updated": t.landed.updated,
            "unchanged": t.landed.unchanged, "quarantined": t.quarantined, "outside_window": t.outside,
            "preview": dg.MetadataValue.md(preview.to_markdown(index=False, disable_numparse=True)
                                           if t.preview else "_nothing landed_"),
        }
        if window is not None:
            metadata["window"] = dg.MetadataValue.text(f"{window[0].isoformat()} .. {window[1].isoformat()}")
        return dg.MaterializeResult(metadata=metadata)


def _read_and_land(context: dg.AssetExecutionContext, source: JaggaerSource, jaggaer: JaggaerResource,
                   ledger: LedgerResource, window: tuple[datetime, datetime] | None,
                   partition_key_for: Callable[[datetime], str] | None) -> dg.MaterializeResult:
    try:
        with jaggaer.client() as client, ledger.open() as opened:
            lander = _Lander(source, opened, context.run_id, partition_key_for)
            for page in source.pages(client, window):
                lander.take(page, window)
    except AuthenticationFailed as exc:
        # Retrying will not mend credentials; the message is already redacted.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    t = lander.tally
    context.log.info(f"{source.key.to_user_string()}: read {t.read}, landed {t.landed}, quarantined {t.quarantined}")
    return lander.result(window)


def build_jaggaer_source(source: JaggaerSource, *, partitions_def: dg.DailyPartitionsDefinition,
                         overlap: timedelta) -> dg.AssetsDefinition:
    """The asset of one :class:`JaggaerSource`: partitioned by modification day, or reference data."""
    common: dict[str, Any] = {"key": source.key, "group_name": GROUP, "kinds": {"jaggaer"},
                              "description": source.description, "pool": POOL, "retry_policy": RETRY}
    if not source.partitioned:
        @dg.asset(**common)
        def reference(context: dg.AssetExecutionContext, jaggaer: JaggaerResource,
                      ledger: LedgerResource) -> dg.MaterializeResult:
            return _read_and_land(context, source, jaggaer, ledger, None, None)

        return reference

    def partition_key_for(moment: datetime) -> str:
        return partitions_def.get_partition_key_for_timestamp(moment.timestamp())

    @dg.asset(**common, partitions_def=partitions_def, backfill_policy=BACKFILL)
    def documents(context: dg.AssetExecutionContext, config: JaggaerWindow, jaggaer: JaggaerResource,
                  ledger: LedgerResource) -> dg.MaterializeResult:
        window = read_window(context.partition_time_window, config, overlap)
        return _read_and_land(context, source, jaggaer, ledger, window, partition_key_for)

    return documents


def _dead_letter_check(source: JaggaerSource) -> dg.AssetChecksDefinition:
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
            metadata["sample"] = dg.MetadataValue.md(sample.to_markdown(index=False, disable_numparse=True))
        return dg.AssetCheckResult(passed=not letters, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)

    return no_open_dead_letters


def jaggaer_source_assets(settings: JaggaerSettings) -> list[dg.AssetsDefinition]:
    """Every JAGGAER source asset, for connector.yaml's JAGGAER settings."""
    partitions_def = jaggaer_partitions(settings.partitions_start)
    overlap = timedelta(seconds=settings.overlap_s)
    return [build_jaggaer_source(source, partitions_def=partitions_def, overlap=overlap) for source in JAGGAER_SOURCES]


def jaggaer_asset_checks() -> list[dg.AssetChecksDefinition]:
    """The dead-letter check of every JAGGAER source asset."""
    return [_dead_letter_check(source) for source in JAGGAER_SOURCES]
