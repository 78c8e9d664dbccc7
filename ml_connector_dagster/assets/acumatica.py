"""Acumatica source assets: read changed documents, validate them, land the good ones, quarantine the rest.

``acumatica/bills``, ``acumatica/purchase_orders`` and ``acumatica/payments`` share one daily UTC
partitioning by ``LastModifiedDateTime``. A run reads its partition's whole day unless its run
config (:class:`AcumaticaWindow`, set by the poll sensor) narrows it to the changes the sensor
found, with ``overlap_s`` re-read behind the window's start; or it fetches the records a push
notification named (``ids``). Records modified outside the run's days are left for their own
partition. Valid records land in the landing store *plain* (value objects unwrapped by
``models.from_wire``, detail rows included), keyed by their ``id``; invalid ones become dead letters
naming the API field, in their wire form.

Backfills use ``BackfillPolicy.multi_run(7)``: the filter has a lower bound only (see the client),
so one pass per week rather than per day keeps a backfill linear.
"""


from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from ml_connector_dagster.config import AcumaticaSettings
from ml_connector_dagster.core.http import AuthenticationFailed, NotFound
from ml_connector_dagster.core.landing import LandCounts, LandedRecord, LandingStore, content_hash
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.systems.acumatica.client import (
    SYSTEM,
    AcumaticaClient,
    AcumaticaEntity,
    modified_at,
)
from ml_connector_dagster.systems.acumatica.models import (
    AcumaticaRecord,
    Bill,
    Payment,
    PurchaseOrder,
    from_wire,
    parse_moment,
    validate_record,
)
from ml_connector_dagster.systems.acumatica.resource import AcumaticaResource

__all__ = [
    "ACUMATICA_SOURCES",
    "BACKFILL",
    "GROUP",
    "POOL",
    "AcumaticaSource",
    "AcumaticaWindow",
    "acumatica_asset_checks",
    "acumatica_partitions",
    "acumatica_source_assets",
    "build_acumatica_source",
    "build_dead_letter_check",
    "read_window",
]

GROUP = "acumatica"
POOL = "acumatica_api"
PREVIEW_ROWS = 10
RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=7)
_UNREADABLE_TIMESTAMP = "LastModifiedDateTime: missing, or not an ISO 8601 date-time with an offset"


class AcumaticaWindow(dg.Config):
    """Narrows a run to the changes a sensor found; without it the run reads its partitions' whole days."""

    modified_from: str | None = None
    modified_to: str | None = None
    ids: list[str] = Field(
        default_factory=list,
        description="Fetch exactly these records (ids from the webhook inbox) instead of reading a window.",
    )


@dataclass(frozen=True)
class AcumaticaSource:
    """One Acumatica entity as a source asset."""

    name: str
    entity: AcumaticaEntity
    model: type[AcumaticaRecord]
    expand: tuple[str, ...]
    description: str
    preview: tuple[str, ...]

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([GROUP, self.name])

    @property
    def op_name(self) -> str:
        """The op behind the asset (where run config for :class:`AcumaticaWindow` goes)."""
        return "__".join(self.key.path)


ACUMATICA_SOURCES: tuple[AcumaticaSource, ...] = (
    AcumaticaSource("bills", AcumaticaEntity.BILL, Bill, ("Details", "TaxDetails"),
                    "AP bills with their lines, by day of last modification.",
                    ("reference", "status", "vendor", "amount", "currency_id", "modified_at")),
    AcumaticaSource("purchase_orders", AcumaticaEntity.PURCHASE_ORDER, PurchaseOrder, ("Details",),
                    "Purchase orders with their lines, by day of last modification.",
                    ("reference", "status", "vendor_id", "order_total", "currency_id", "modified_at")),
    AcumaticaSource("payments", AcumaticaEntity.PAYMENT, Payment, ("DocumentsToApply",),
                    "Customer payments with the documents they pay, by day of last modification.",
                    ("reference", "status", "customer_id", "payment_amount", "currency_id", "modified_at")),
)  # fmt: skip


@lru_cache(maxsize=8)
def acumatica_partitions(start: date) -> dg.DailyPartitionsDefinition:
    """The one daily partitioning every Acumatica document asset (and its destinations) shares."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)


def read_window(days: dg.TimeWindow, config: AcumaticaWindow, overlap: timedelta) -> tuple[datetime, datetime]:
    """``[start, end)`` to read: the run's days, narrowed to the sensor's window (with ``overlap`` behind).

    ``modified_to`` is inclusive (the latest change the sensor saw); the window never leaves the days.
    """
    start, end = days.start, days.end
    if config.modified_from:
        start = max(start, parse_moment(config.modified_from) - overlap)
    if config.modified_to:
        end = min(end, parse_moment(config.modified_to) + timedelta(microseconds=1))
    if end <= start:
        raise dg.Failure(f"empty window: modified_from/modified_to select nothing of "
                         f"{days.start:%Y-%m-%d}..{days.end:%Y-%m-%d}", allow_retries=False)
    return start, end


def _preview_value(record: AcumaticaRecord, name: str) -> Any:
    value = getattr(record, name, None)
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

    def __init__(self, source: AcumaticaSource, ledger: Ledger, run_id: str,
                 partition_key_for: Callable[[datetime], str]) -> None:
        self.source = source
        self.asset = source.key.to_user_string()
        self.ledger = ledger
        self.store = LandingStore(ledger)
        self.run_id = run_id
        self.partition_key_for = partition_key_for
        self.tally = _Tally()

    def take(self, page: Sequence[Any], window: tuple[datetime, datetime] | None) -> None:
        """Validate one page of wire records: land the good ones of the window, quarantine the bad ones."""
        self.tally.read += len(page)
        landed: list[tuple[AcumaticaRecord, LandedRecord]] = []
        for raw in (r if isinstance(r, dict) else {"value": r} for r in page):  # a non-object fails by name
            moment = modified_at(raw)
            if moment is None:
                self._quarantine(raw, _UNREADABLE_TIMESTAMP, None)
                continue
            if window is not None and not window[0] <= moment < window[1]:
                self.tally.outside += 1  # another partition's record: its own run lands it
                continue
            plain = from_wire(raw)
            checked = validate_record(self.source.model, plain)
            if isinstance(checked, str):
                self._quarantine(raw, checked, self.partition_key_for(moment))
                continue
            landed.append((checked, LandedRecord(record_id=checked.record_id, modified_at=checked.modified_at,
                                                 partition_key=self.partition_key_for(checked.modified_at),
                                                 payload=_payload(plain))))
        counts = self.store.land(SYSTEM, self.source.entity.value, [record for _, record in landed], run_id=self.run_id)
        self.tally.landed = self.tally.landed.plus(counts)
        self.ledger.resolve_dead_letters_for(self.asset, [record.record_id for _, record in landed])
        room = max(PREVIEW_ROWS - len(self.tally.preview), 0)
        self.tally.preview += [{name: _preview_value(model, name) for name in self.source.preview}
                               for model, _ in landed[:room]]

    def _quarantine(self, raw: dict[str, Any], reason: str, partition_key: str | None) -> None:
        source_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        self.ledger.add_dead_letter(self.asset, source_id or f"unidentified:{content_hash(raw)[:16]}", raw, reason,
                                    partition_key=partition_key, run_id=self.run_id)
        self.tally.quarantined += 1

    def result(self, window: tuple[datetime, datetime] | None) -> dg.MaterializeResult:
        t = self.tally
        metadata: dict[str, Any] = {
            "read": t.read,
            "inserted": t.landed.inserted,
            "updated": t.landed.updated,
            "unchanged": t.landed.unchanged,
            "quarantined": t.quarantined,
            "outside_window": t.outside,
            "preview": dg.MetadataValue.md(
                pd.DataFrame(t.preview, columns=list(self.source.preview)).to_markdown(index=False, disable_numparse=True)
                if t.preview else "_nothing landed_"),
        }
        if window is not None:
            metadata["window"] = dg.MetadataValue.text(f"{window[0].isoformat()} .. {window[1].isoformat()}")
        return dg.MaterializeResult(metadata=metadata)


def _payload(plain: dict[str, Any]) -> dict[str, Any]:
    # rowNumber is the record's position in one answer, not part of the record.
    return {name: value for name, value in plain.items() if name != "rowNumber"}


def _pages_by_id(client: AcumaticaClient, source: AcumaticaSource, ids: Sequence[str],
                 log: Any, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
    """The records a push notification named, one GET each by id; a deleted one is skipped."""
    page: list[dict[str, Any]] = []
    for record_id in dict.fromkeys(ids):
        try:
            page.append(client.get(source.entity, [record_id], expand=source.expand))
        except NotFound:
            log.warning(f"{source.key.to_user_string()} {record_id} no longer exists in Acumatica")
            continue
        if len(page) >= page_size:
            yield page
            page = []
    if page:
        yield page


def _read_and_land(context: dg.AssetExecutionContext, source: AcumaticaSource, acumatica: AcumaticaResource,
                   ledger: LedgerResource, window: tuple[datetime, datetime] | None,
                   partition_key_for: Callable[[datetime], str], ids: Sequence[str] = ()) -> dg.MaterializeResult:
    try:
        with acumatica.client() as client, ledger.open() as opened:
            lander = _Lander(source, opened, context.run_id, partition_key_for)
            if ids:
                pages = _pages_by_id(client, source, ids, context.log)
            else:
                assert window is not None, "a partition run reads a window"
                pages = client.iter_changed(source.entity, *window, expand=source.expand)
            for page in pages:
                lander.take(page, window)
    except AuthenticationFailed as exc:
        # Retrying will not mend credentials (nor free a licence slot soon); the message is redacted.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    t = lander.tally
    context.log.info(f"{source.key.to_user_string()}: read {t.read}, landed {t.landed}, quarantined {t.quarantined}")
    return lander.result(window)


def build_acumatica_source(source: AcumaticaSource, *, partitions_def: dg.DailyPartitionsDefinition,
                           overlap: timedelta) -> dg.AssetsDefinition:
    """The asset of one :class:`AcumaticaSource`, partitioned by the UTC day of modification."""

    def partition_key_for(moment: datetime) -> str:
        return partitions_def.get_partition_key_for_timestamp(moment.timestamp())

    @dg.asset(key=source.key, group_name=GROUP, kinds={"acumatica"}, description=source.description, pool=POOL,
              retry_policy=RETRY, partitions_def=partitions_def, backfill_policy=BACKFILL)
    def documents(context: dg.AssetExecutionContext, config: AcumaticaWindow, acumatica: AcumaticaResource,
                  ledger: LedgerResource) -> dg.MaterializeResult:
        if config.ids:
            # Records fetched by id land in the partition of their own modification day.
            return _read_and_land(context, source, acumatica, ledger, None, partition_key_for, ids=config.ids)
        window = read_window(context.partition_time_window, config, overlap)
        return _read_and_land(context, source, acumatica, ledger, window, partition_key_for)

    return documents


def build_dead_letter_check(source: AcumaticaSource) -> dg.AssetChecksDefinition:
    """``no_open_dead_letters`` (warning): records of this asset still quarantined."""
    asset = source.key.to_user_string()

    @dg.asset_check(asset=source.key, name="no_open_dead_letters", blocking=False,
                    description=f"No record of {asset} is waiting in the dead-letter queue.")
    def no_open_dead_letters(ledger: LedgerResource) -> dg.AssetCheckResult:
        with ledger.open() as opened:
            letters = opened.open_dead_letters(asset)
        metadata: dict[str, Any] = {"open_dead_letters": len(letters)}
        if letters:
            sample = pd.DataFrame([{"record": letter.source_id, "partition": letter.partition_key,
                                    "error": letter.error[:200]} for letter in letters[:PREVIEW_ROWS]])
            metadata["sample"] = dg.MetadataValue.md(sample.to_markdown(index=False, disable_numparse=True))
        return dg.AssetCheckResult(passed=not letters, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)

    return no_open_dead_letters


def acumatica_source_assets(settings: AcumaticaSettings) -> list[dg.AssetsDefinition]:
    """Every Acumatica source asset, for connector.yaml's Acumatica settings."""
    partitions_def = acumatica_partitions(settings.partitions_start)
    overlap = timedelta(seconds=settings.overlap_s)
    return [build_acumatica_source(source, partitions_def=partitions_def, overlap=overlap) for source in ACUMATICA_SOURCES]


def acumatica_asset_checks() -> list[dg.AssetChecksDefinition]:
    """The dead-letter check of every Acumatica source asset."""
    return [build_dead_letter_check(source) for source in ACUMATICA_SOURCES]
