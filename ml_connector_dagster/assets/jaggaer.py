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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg

from ml_connector_dagster.config import JaggaerSettings
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

from . import landing
from .landing import BACKFILL, RETRY, ModifiedWindow, RecordRules, land_pages, partition_key_function

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
_UNREADABLE_TIMESTAMP = "lastModifiedDate: missing or not an ISO 8601 timestamp with offset"


class JaggaerWindow(ModifiedWindow):
    """Narrows a run to the changes a sensor found; without it the run reads its partitions' whole days."""


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

    @property
    def rules(self) -> RecordRules:
        """How the lander reads this source's records (landed as they came)."""
        return RecordRules(system=SYSTEM, entity=self.entity.value,
                           validate=lambda raw: validate_record(self.model, raw), modified_at=modified_at,
                           raw_id=self.model.raw_id, unreadable_timestamp=_UNREADABLE_TIMESTAMP,
                           preview=self.preview)

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



def jaggaer_partitions(start: date) -> dg.DailyPartitionsDefinition:
    """The daily partitioning every JAGGAER document asset (and its destinations) shares."""
    return landing.daily_partitions(start)


def read_window(days: dg.TimeWindow, config: JaggaerWindow, overlap: timedelta) -> tuple[datetime, datetime]:
    """``[start, end)`` to read: the run's days, narrowed to the sensor's window (see :func:`landing.read_window`)."""
    return landing.read_window(days, config, overlap, parse_timestamp)


def _read_and_land(context: dg.AssetExecutionContext, source: JaggaerSource, jaggaer: JaggaerResource,
                   ledger: LedgerResource, window: tuple[datetime, datetime] | None,
                   partition_key_for: Callable[[datetime], str] | None) -> dg.MaterializeResult:
    return land_pages(context, source.key, source.rules, jaggaer.client(), ledger,
                      lambda client: source.pages(client, window), window=window, partition_key_for=partition_key_for)


def build_jaggaer_source(source: JaggaerSource, *, partitions_def: dg.DailyPartitionsDefinition,
                         overlap: timedelta, retry: dg.RetryPolicy = RETRY) -> dg.AssetsDefinition:
    """The asset of one :class:`JaggaerSource`: partitioned by modification day, or reference data."""
    common: dict[str, Any] = {"key": source.key, "group_name": GROUP, "kinds": {"jaggaer"},
                              "description": source.description, "pool": POOL, "retry_policy": retry}
    if not source.partitioned:
        @dg.asset(**common)
        def reference(context: dg.AssetExecutionContext, jaggaer: JaggaerResource,
                      ledger: LedgerResource) -> dg.MaterializeResult:
            return _read_and_land(context, source, jaggaer, ledger, None, None)

        return reference

    partition_key_for = partition_key_function(partitions_def)

    @dg.asset(**common, partitions_def=partitions_def, backfill_policy=BACKFILL)
    def documents(context: dg.AssetExecutionContext, config: JaggaerWindow, jaggaer: JaggaerResource,
                  ledger: LedgerResource) -> dg.MaterializeResult:
        window = read_window(context.partition_time_window, config, overlap)
        return _read_and_land(context, source, jaggaer, ledger, window, partition_key_for)

    return documents


def jaggaer_source_assets(settings: JaggaerSettings) -> list[dg.AssetsDefinition]:
    """Every JAGGAER source asset, for connector.yaml's JAGGAER settings."""
    partitions_def = jaggaer_partitions(settings.partitions_start)
    overlap = timedelta(seconds=settings.overlap_s)
    retry = landing.source_retry(settings.op_retries, settings.op_retry_delay_s)
    return [build_jaggaer_source(source, partitions_def=partitions_def, overlap=overlap, retry=retry)
            for source in JAGGAER_SOURCES]


def jaggaer_asset_checks() -> list[dg.AssetChecksDefinition]:
    """The dead-letter check of every JAGGAER source asset."""
    return [landing.build_dead_letter_check(source.key) for source in JAGGAER_SOURCES]
