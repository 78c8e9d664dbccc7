"""jaggaer_visma: a JAGGAER invoice to a Visma.net AP supplier invoice's create request."""

from __future__ import annotations

import json
from collections import Counter
from contextlib import ExitStack, closing
from datetime import UTC, datetime
from typing import Any

import yaml

from . import FlowPath, Stage

Mapped = tuple[Any, str, dict[int, Any]]  # (Invoice, Visma supplier number, line number -> Allocation)


def _wire(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return json.loads(json.dumps(records))


def path(count: int) -> FlowPath:
    """Validate as ``jaggaer/invoices`` lands a record and as the plan reads it back, map as the plan
    does per chunk of landed invoices (:func:`allocate_documents` over the chunk, :meth:`References.match`
    per invoice), render with :func:`render_invoice` and its content hash, and build the POST body; with
    the shipped flow settings and both simulators' reference data landed in an in-memory ledger."""
    from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, JaggaerVismaFlow
    from ml_connector_dagster.core.landing import LandedRecord, LandingStore
    from ml_connector_dagster.core.ledger import Ledger
    from ml_connector_dagster.flows.jaggaer_visma_plan import (
        CHUNK,
        INVOICES,
        LineAllocations,
        allocate_documents,
        load_references,
    )
    from ml_connector_dagster.flows.jaggaer_visma_render import VismaDocument, render_invoice
    from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator
    from ml_connector_dagster.sandbox.visma import VismaSimulator
    from ml_connector_dagster.systems.jaggaer.models import Invoice, modified_at, validate_record

    settings = JaggaerVismaFlow.model_validate(yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())["flows"]["jaggaer_visma"])
    start = datetime.now(UTC)  # one moment for both, so JAGGAER's vendors are Visma's suppliers
    with ExitStack() as stack:
        visma = stack.enter_context(closing(VismaSimulator(size=count, days=0.9, start=start)))
        jaggaer = stack.enter_context(closing(JaggaerSimulator(size=count, days=0.9, start=start)))
        ledger, state = stack.enter_context(Ledger.open("sqlite://")), jaggaer.collections()
        store, payloads = LandingStore(ledger), _wire(state["invoices"])
        reference = {(system, entity, key): [table.render(seq) for seq in table.seqs()]
                     for system, entity, key, table in (("visma", "supplier", "number", visma.tables["suppliers"]),
                                                        ("visma", "account", "accountCD", visma.tables["accounts"]))}
        reference[("visma", "dimension", "id")] = visma.data.dimensions(visma.dimensions_modified_ms)
        reference[("jaggaer", "vendors", "supplierId")] = state["vendors"]
        for (system, entity, key), records in reference.items():
            store.land(system, entity, [LandedRecord(record_id=str(r[key]), payload=r) for r in _wire(records)])
        checked = [validate_record(Invoice, raw) for raw in payloads]
        store.land("jaggaer", "invoices", [  # what the source asset lands: the valid records only
            LandedRecord(record_id=record.record_id, modified_at=record.modified_at, payload=raw)
            for raw, record in zip(payloads, checked, strict=True) if not isinstance(record, str)])
        references = load_references(ledger, settings)
        chunks = list(store.iter_partition("jaggaer", "invoices", None, CHUNK))
    valid = [[(landed, validate_record(Invoice, landed.payload)) for landed in chunk] for chunk in chunks]
    statuses = {status.casefold() for status in settings.invoice_statuses}

    def validate() -> int:
        for raw in payloads:  # the source asset's lander: modification time, then the model
            modified_at(raw)
            validate_record(Invoice, raw)
        for chunk in chunks:  # the plan validates each landed record again
            for landed in chunk:
                validate_record(Invoice, landed.payload)
        return len(payloads)

    def map_chunk(chunk: list[tuple[LandedRecord, Invoice]]) -> list[Mapped | str]:
        by_record = allocate_documents(INVOICES, chunk, references, settings)
        mapped: list[Mapped | str] = []
        for landed, record in chunk:  # in the plan's order: status filter, vendor, GL problems
            if record.status.casefold() not in statuses:
                mapped.append("filtered by status")
                continue
            match = references.match(str(record.supplier.supplier_id), settings)
            lines = by_record.get(landed.record_id, LineAllocations({}, []))
            if not match.matched or lines.problems:
                mapped.append("unmatched vendor" if not match.matched else "unmapped GL posting")
                continue
            mapped.append((record, str(match.visma_number), lines.allocations))
        return mapped

    def render(item: Mapped) -> tuple[VismaDocument, str] | None:
        try:
            document = render_invoice(*item, settings.subaccount_segments, settings.vat_codes)
        except KeyError:  # a tax rate without a Visma VAT code: the plan fails it as an unmapped posting
            return None
        return document, document.content_hash  # the push's CreateIntent carries the hash

    outcomes = [item for chunk in valid for item in map_chunk(chunk)]
    mapped = [item for item in outcomes if not isinstance(item, str)]
    documents = [rendered[0] for item in mapped if (rendered := render(item)) is not None]
    invalid = Counter(problem.split(":")[0] for problem in checked if isinstance(problem, str))
    why = [f"{sum(invalid.values())} quarantined by the source asset ("
           + ", ".join(f"{field} {n}" for field, n in invalid.most_common()) + ")",
           *(f"{n} {reason}" for reason, n in Counter(o for o in outcomes if isinstance(o, str)).most_common())]
    return FlowPath(
        flow="jaggaer_visma", records="JAGGAER invoices", payloads=payloads,
        stages=(
            Stage("validate", "lander (modified_at, Invoice model), then the plan's re-validation", validate),
            Stage("map", f"plan per chunk of {CHUNK}: allocate_documents (GL table, chart), References.match",
                  lambda: sum(len(map_chunk(chunk)) for chunk in valid)),
            Stage("render", "render_invoice + content_hash", lambda: len([render(item) for item in mapped])),
            Stage("payload", "SupplierInvoiceUpdateDto POST body (create_body)",
                  lambda: len([document.create_body() for document in documents])),
        ),
        notes=(f"{count - len(mapped)} of {count} invoices stop before render: {', '.join(why)}; "
               f"of {len(mapped)} rendered, {len(mapped) - len(documents)} refused (tax rate without a VAT code)",),
    )  # fmt: skip
