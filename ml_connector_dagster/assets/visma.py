"""Visma.net source assets: read changed records, validate them, land the good ones, quarantine the rest.

Documents (``visma/supplier_invoices``, ``purchase_orders``, ``customer_invoices``, ``payments``
(customer payments), ``supplier_payments``, ``gl_transactions``) share one daily UTC partitioning by *modification* date; reference data
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
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from ml_connector_dagster.config import VismaSettings
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
    SupplierPayment,
    VismaRecord,
    parse_utc,
    validate_record,
)
from ml_connector_dagster.systems.visma.resource import VismaResource

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
_UNREADABLE_TIMESTAMP = "lastModifiedDateTime: missing or not an ISO 8601 timestamp"


class VismaWindow(ModifiedWindow):
    """Narrows a run to the changes a sensor found; without it the run reads its partitions' whole days."""

    ids: list[str] = Field(
        default_factory=list,
        description="Fetch exactly these records (from the webhook inbox) instead of reading a window.",
    )


def _payload(raw: dict[str, Any]) -> dict[str, Any]:
    # Paging metadata (totalCount) changes with the query, not with the record.
    return {name: value for name, value in raw.items() if name != "metadata"}


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

    @property
    def rules(self) -> RecordRules:
        """How the lander reads this source's records."""
        return RecordRules(system=SYSTEM, entity=self.entity.value,
                           validate=lambda raw: validate_record(self.model, raw), modified_at=modified_at,
                           raw_id=self.model.raw_id, unreadable_timestamp=_UNREADABLE_TIMESTAMP,
                           preview=self.preview, payload=_payload)

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
                "Customer (AR) payments by day of last modification.",
                preview=(*_DOCUMENT_PREVIEW, "customer.number", "payment_amount", "currency")),
    VismaSource("supplier_payments", VismaEntity.SUPPLIER_PAYMENT, SupplierPayment,
                "Supplier (AP) payments with the invoices they settle, by day of last modification.",
                preview=(*_DOCUMENT_PREVIEW, "supplier.number", "payment_amount", "currency_id")),
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



def visma_partitions(start: date) -> dg.DailyPartitionsDefinition:
    """The one daily partitioning every Visma document asset (and its destinations) shares."""
    return landing.daily_partitions(start)


def read_window(days: dg.TimeWindow, config: VismaWindow, overlap: timedelta) -> tuple[datetime, datetime]:
    """``[start, end)`` to read: the run's days, narrowed to the sensor's window (see :func:`landing.read_window`)."""
    return landing.read_window(days, config, overlap, parse_utc)


def _read_and_land(context: dg.AssetExecutionContext, source: VismaSource, visma: VismaResource,
                   ledger: LedgerResource, window: tuple[datetime, datetime] | None,
                   partition_key_for: Callable[[datetime], str] | None,
                   ids: Sequence[str] = ()) -> dg.MaterializeResult:
    def pages(client: VismaClient) -> Iterator[list[dict[str, Any]]]:
        if not ids:
            return source.pages(client, window)

        def gone(record_id: str) -> None:
            context.log.warning(f"{source.key.to_user_string()} {record_id} no longer exists in Visma")

        # Visma has no multi-get: a webhook's records come one GET each; a deleted one is skipped.
        return pages_by_id(lambda record_id: client.get(source.entity, record_id)[0], ids, missing=gone)

    # Records fetched by id land in the partition of their own modification day.
    return land_pages(context, source.key, source.rules, visma.client(), ledger, pages,
                      window=None if ids else window, partition_key_for=partition_key_for)


def build_visma_source(source: VismaSource, *, partitions_def: dg.DailyPartitionsDefinition,
                       overlap: timedelta, retry: dg.RetryPolicy = RETRY) -> dg.AssetsDefinition:
    """The asset of one :class:`VismaSource`: partitioned by modification day, or reference data."""
    common: dict[str, Any] = {
        "key": source.key, "group_name": GROUP, "kinds": {"visma"}, "description": source.description,
        "pool": POOL, "retry_policy": retry,
    }
    if not source.partitioned:
        @dg.asset(**common)
        def reference(context: dg.AssetExecutionContext, visma: VismaResource,
                      ledger: LedgerResource) -> dg.MaterializeResult:
            return _read_and_land(context, source, visma, ledger, None, None)

        return reference

    partition_key_for = partition_key_function(partitions_def)

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
    return landing.build_dead_letter_check(source.key)


def visma_source_assets(settings: VismaSettings) -> list[dg.AssetsDefinition]:
    """Every Visma source asset, for connector.yaml's Visma settings."""
    partitions_def = visma_partitions(settings.partitions_start)
    overlap = timedelta(seconds=settings.overlap_s)
    retry = landing.source_retry(settings.op_retries, settings.op_retry_delay_s)
    return [build_visma_source(source, partitions_def=partitions_def, overlap=overlap, retry=retry)
            for source in VISMA_SOURCES]


def visma_asset_checks() -> list[dg.AssetChecksDefinition]:
    """The dead-letter check of every Visma source asset."""
    return [build_dead_letter_check(source) for source in VISMA_SOURCES]
