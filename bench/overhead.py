"""Per-record overhead: CPU time of validate + map + render per record, against a bare loop.

The records are real ``SupplierInvoiceDto`` payloads from the Visma simulator (through JSON, as
they arrive). The product's path is the one each record takes through the flow: validation into
the :class:`SupplierInvoice` model (the source asset), the :func:`invoice_view` mapping, the
rendered issue (summary, fields, ADF description, content hash) and the bulk-create payload (the
plan and the push). The bare loop only moves each payload into a new dict, the least any
connector does. Both are timed with ``time.process_time`` (CPU, not wall), best of three passes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from .limits import BenchLimits
from .results import Outcome

__all__ = ["measure_overhead", "overhead_outcome"]

FIELD_IDS = {"external_id": "customfield_10040", "amount": "customfield_10042", "currency": "customfield_10043",
             "po_reference": "customfield_10045"}


def _payloads(count: int) -> list[dict[str, Any]]:
    from ml_connector_dagster.sandbox.visma import VismaSimulator

    simulator = VismaSimulator(size=count, days=0.85)
    table = simulator.tables["supplier_invoices"]
    try:
        return [json.loads(json.dumps(table.render(seq))) for seq in range(count)]
    finally:
        simulator.close()


def _best_us(work: Callable[[], int], passes: int = 3) -> float:
    """Fastest CPU time per record (µs) of ``passes`` runs of ``work`` (which returns records done)."""
    best = float("inf")
    for _ in range(passes):
        started = time.process_time()
        done = work()
        best = min(best, (time.process_time() - started) / max(done, 1) * 1e6)
    return best


def measure_overhead(count: int) -> dict[str, float]:
    """µs of CPU per record of each stage of the product's path, and of the bare loop."""
    import yaml

    from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, VismaJiraFlow
    from ml_connector_dagster.core.collector import pace_for_bulk_work
    from ml_connector_dagster.flows.visma_jira_render import JiraFieldIds, invoice_view, render_issue
    from ml_connector_dagster.systems.visma.models import SupplierInvoice, validate_record

    # The shipped flow settings (status map, filters), read on their own.
    pace_for_bulk_work()  # as in the product's steps (they open the ledger first)
    settings = VismaJiraFlow.model_validate(yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())["flows"]["visma_jira"])
    ids = JiraFieldIds(**FIELD_IDS)
    payloads = _payloads(count)
    valid = [record for raw in payloads if not isinstance(record := validate_record(SupplierInvoice, raw), str)]
    views = [invoice_view(record) for record in valid]
    rendered = [render_issue(view, settings) for view in views]

    def bare() -> int:
        moved = [{"fields": {key: value for key, value in raw.items()}} for raw in payloads]
        return len(moved)

    def validate() -> int:
        return sum(1 for raw in payloads if not isinstance(validate_record(SupplierInvoice, raw), str))

    def mapping() -> int:
        return len([invoice_view(record) for record in valid])

    def render() -> int:
        return len([render_issue(view, settings) for view in views])

    def payload() -> int:
        return len([issue.create_fields(ids, "FIN", "Task") for issue in rendered])

    stages: Sequence[tuple[str, Callable[[], int]]] = (
        ("bare", bare), ("validate", validate), ("map", mapping), ("render", render), ("payload", payload),
    )
    figures = {name: _best_us(work) for name, work in stages}
    figures["product"] = sum(figures[name] for name in ("validate", "map", "render", "payload"))
    figures["records"] = float(len(payloads))
    return figures


def overhead_outcome(figures: dict[str, float], *, rerun: str) -> Outcome:
    """µs per record per stage, and the product's total over the bare loop."""
    ratio = figures["product"] / figures["bare"]
    limits = BenchLimits()
    jira_bound = limits.jira_bulk_size * limits.jira_burst_per_s
    rows = [
        ["bare loop (move each payload into a new dict)", f"{figures['bare']:.1f}", "1.0"],
        ["validate (SupplierInvoice model)", f"{figures['validate']:.1f}", f"{figures['validate'] / figures['bare']:.1f}"],
        ["map (invoice_view)", f"{figures['map']:.1f}", f"{figures['map'] / figures['bare']:.1f}"],
        ["render (summary, fields, ADF description, content hash)", f"{figures['render']:.1f}",
         f"{figures['render'] / figures['bare']:.1f}"],
        ["bulk-create payload (create_fields)", f"{figures['payload']:.1f}", f"{figures['payload'] / figures['bare']:.1f}"],
        ["**validate + map + render + payload**", f"**{figures['product']:.1f}**", f"**{ratio:.1f}**"],
    ]
    return Outcome(
        key="overhead", title=f"Per-record overhead ({int(figures['records']):,} supplier invoices, CPU time)",
        rerun=rerun, headers=["stage", "µs per record", "x bare loop"], rows=rows,
        notes=[f"at {figures['product']:.0f} µs of CPU per record one core turns "
               f"{1e6 / figures['product']:,.0f} records/s into issues; the Jira backfill's API bound is "
               f"{jira_bound:,} records/s (bulk creates of {limits.jira_bulk_size} at {limits.jira_burst_per_s}/s), "
               f"so these stages alone need {jira_bound * figures['product'] / 1e6:.1f} cores to keep up with it"],
        figures={"product_us": figures["product"], "bare_us": figures["bare"], "ratio": ratio},
    )
