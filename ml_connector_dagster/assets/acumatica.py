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



from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from ml_connector_dagster.config import AcumaticaSettings
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

from . import landing
from .landing import (
    BACKFILL,
    RETRY,
    ModifiedWindow,
    RecordRules,
    land_pages,
    pages_by_id,
    partition_key_function,
)

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
_UNREADABLE_TIMESTAMP = "LastModifiedDateTime: missing, or not an ISO 8601 date-time with an offset"


class AcumaticaWindow(ModifiedWindow):
    """Narrows a run to the changes a sensor found; without it the run reads its partitions' whole days."""

    ids: list[str] = Field(
        default_factory=list,
        description="Fetch exactly these records (ids from the webhook inbox) instead of reading a window.",
    )


def _payload(plain: dict[str, Any]) -> dict[str, Any]:
    # rowNumber is the record's position in one answer, not part of the record.
    return {name: value for name, value in plain.items() if name != "rowNumber"}


def _wire_id(raw: dict[str, Any]) -> str | None:
    record_id = raw.get("id")
    return record_id if isinstance(record_id, str) else None


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

    @property
    def rules(self) -> RecordRules:
        """How the lander reads this entity: validated and landed plain, quarantined in wire form."""
        return RecordRules(system=SYSTEM, entity=self.entity.value,
                           validate=lambda plain: validate_record(self.model, plain), modified_at=modified_at,
                           raw_id=_wire_id, unreadable_timestamp=_UNREADABLE_TIMESTAMP, preview=self.preview,
                           to_plain=from_wire, payload=_payload, always_dated=True)


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



def acumatica_partitions(start: date) -> dg.DailyPartitionsDefinition:
    """The one daily partitioning every Acumatica document asset (and its destinations) shares."""
    return landing.daily_partitions(start)


def read_window(days: dg.TimeWindow, config: AcumaticaWindow, overlap: timedelta) -> tuple[datetime, datetime]:
    """``[start, end)`` to read: the run's days, narrowed to the sensor's window (see :func:`landing.read_window`)."""
    return landing.read_window(days, config, overlap, parse_moment)


def _read_and_land(context: dg.AssetExecutionContext, source: AcumaticaSource, acumatica: AcumaticaResource,
                   ledger: LedgerResource, window: tuple[datetime, datetime] | None,
                   partition_key_for: Callable[[datetime], str], ids: Sequence[str] = ()) -> dg.MaterializeResult:
    def pages(client: AcumaticaClient) -> Iterable[list[dict[str, Any]]]:
        if not ids:
            assert window is not None, "a partition run reads a window"
            return client.iter_changed(source.entity, *window, expand=source.expand)

        def gone(record_id: str) -> None:
            context.log.warning(f"{source.key.to_user_string()} {record_id} no longer exists in Acumatica")

        # The records a push notification named, one GET each by id; a deleted one is skipped.
        return pages_by_id(lambda record_id: client.get(source.entity, [record_id], expand=source.expand), ids,
                           missing=gone)

    # An auth failure (bad credentials, no free licence slot) is not retried; the message is redacted.
    return land_pages(context, source.key, source.rules, acumatica.client(), ledger, pages,
                      window=window, partition_key_for=partition_key_for)


def build_acumatica_source(source: AcumaticaSource, *, partitions_def: dg.DailyPartitionsDefinition,
                           overlap: timedelta, retry: dg.RetryPolicy = RETRY) -> dg.AssetsDefinition:
    """The asset of one :class:`AcumaticaSource`, partitioned by the UTC day of modification."""
    partition_key_for = partition_key_function(partitions_def)

    @dg.asset(key=source.key, group_name=GROUP, kinds={"acumatica"}, description=source.description, pool=POOL,
              retry_policy=retry, partitions_def=partitions_def, backfill_policy=BACKFILL)
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
    return landing.build_dead_letter_check(source.key, per_partition=False)


def acumatica_source_assets(settings: AcumaticaSettings) -> list[dg.AssetsDefinition]:
    """Every Acumatica source asset, for connector.yaml's Acumatica settings."""
    partitions_def = acumatica_partitions(settings.partitions_start)
    overlap = timedelta(seconds=settings.overlap_s)
    retry = landing.source_retry(settings.op_retries, settings.op_retry_delay_s)
    return [build_acumatica_source(source, partitions_def=partitions_def, overlap=overlap, retry=retry)
            for source in ACUMATICA_SOURCES]


def acumatica_asset_checks() -> list[dg.AssetChecksDefinition]:
    """The dead-letter check of every Acumatica source asset."""
    return [build_dead_letter_check(source) for source in ACUMATICA_SOURCES]
