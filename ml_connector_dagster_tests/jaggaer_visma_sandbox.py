"""What the jaggaer_visma tests share: both simulators' data landed in a ledger, and a transport that lets
someone else edit a record mid-update."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx

from ml_connector_dagster.config import JaggaerVismaFlow
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.sandbox.demo_data import SUPPLIERS, to_ms
from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.jaggaer.models import modified_at

LOG = logging.getLogger("ml_connector_dagster_tests.jaggaer_visma")
DAY = "2026-11-20"  # the one partition unit tests file JAGGAER documents under


def settings(**overrides: Any) -> JaggaerVismaFlow:
    """The flow as the tests configure it: no step retries."""
    return JaggaerVismaFlow(**{"op_retries": 0, "op_retry_delay_s": 0.1, **overrides})


def land_references(ledger: Ledger, visma: VismaSimulator, jaggaer: JaggaerSimulator) -> None:
    """Land what the reference source assets would: Visma suppliers, accounts, dimensions; JAGGAER vendors, GL."""
    store, state = LandingStore(ledger), visma.collections()
    for entity, key, records in (("supplier", "number", state["suppliers"]), ("account", "accountCD", state["accounts"]),
                                 ("dimension", "id", state["dimensions"])):
        store.land("visma", entity, [LandedRecord(record_id=str(r[key]), payload=r) for r in records])
    for entity, key in (("vendors", "supplierId"), ("gl_accounts", "code")):
        store.land("jaggaer", entity, [LandedRecord(record_id=str(r[key]), payload=r)
                                       for r in jaggaer.collections()[entity]])


def land_documents(ledger: Ledger, jaggaer: JaggaerSimulator, entity: str, *, partition: str = DAY) -> list[str]:
    """Land the valid JAGGAER documents of ``entity`` (as ``jaggaer/<entity>`` would) under ``partition``; their ids."""
    id_field = {"purchase_orders": "purchaseOrderId", "invoices": "invoiceId"}[entity]
    invalid = {record_id for collection, record_id, _ in jaggaer.invalid_records() if collection == entity}
    records = [LandedRecord(record_id=str(r[id_field]), partition_key=partition, modified_at=modified_at(r), payload=r)
               for r in jaggaer.collections()[entity] if str(r[id_field]) not in invalid]
    LandingStore(ledger).land("jaggaer", entity, records)
    return [r.record_id for r in records]


def land_visma_invoices(ledger: Ledger, visma: VismaSimulator, numbers: list[str], *, partition: str = DAY) -> None:
    """Land Visma supplier invoices (as ``visma/supplier_invoices`` would after its poll)."""
    LandingStore(ledger).land("visma", "supplierInvoice", [
        LandedRecord(record_id=n, partition_key=partition, payload=record)
        for n in numbers if (record := visma.supplier_invoice(n)) is not None])


class EditBeforePut(httpx.BaseTransport):
    """Runs ``edit`` (someone else changing the record) just before the first ``times`` PUTs go out."""

    def __init__(self, inner: httpx.BaseTransport, edit: Callable[[], None], times: int = 1) -> None:
        self.inner, self.edit, self.left = inner, edit, times

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and self.left > 0:
            self.left -= 1
            self.edit()
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def edit_supplier(visma: VismaSimulator, number: str, **changes: Any) -> None:
    """A Visma user edits a supplier (new timeStamp, so an ETag read before is stale)."""
    with visma.lock:
        table = visma.tables[SUPPLIERS]
        seq = table.seq_of(number)
        assert seq is not None, f"no supplier {number}"
        table.changes.setdefault(seq, {}).update(changes)
        table.touch(seq, to_ms(visma.now()))
