"""Per-record overhead: CPU time of validate + map + render per record, against a bare loop, per flow.

Each flow's path (:mod:`bench.paths`) starts from its source's records as its simulator serves them
(through JSON, as they arrive) and runs the stages each record takes through the flow: validation
into the source model (the source asset), the flow's mapping, the rendered destination record
(with its content hash) and the create request's body (the plan and the push). The bare loop only
moves each payload into a new dict, the least any connector does. Both are timed with
``time.process_time`` (CPU, not wall), best of three passes.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .limits import BenchLimits
from .paths import FlowPath
from .results import Outcome

__all__ = ["FLOWS", "measure_overhead", "overhead_outcome"]

FLOWS = ("visma_jira", "visma_asana", "visma_monday", "acumatica_jira", "jaggaer_visma")
STAGES = ("validate", "map", "render", "payload")


def _best_us(work: Callable[[], int], passes: int = 3) -> float:
    """Fastest CPU time per record (µs) of ``passes`` runs of ``work`` (which returns records done)."""
    best = float("inf")
    for _ in range(passes):
        started = time.process_time()
        done = work()
        best = min(best, (time.process_time() - started) / max(done, 1) * 1e6)
    return best


def _bare(payloads: Sequence[Mapping[str, Any]]) -> Callable[[], int]:
    def work() -> int:
        moved = [{"fields": {key: value for key, value in raw.items()}} for raw in payloads]
        return len(moved)

    return work


def measure_path(flow_path: FlowPath) -> dict[str, Any]:
    """µs of CPU per record of each of ``flow_path``'s stages, of all of them, and of the bare loop."""
    figures: dict[str, Any] = {"bare": _best_us(_bare(flow_path.payloads))}
    for stage in flow_path.stages:
        figures[stage.name] = _best_us(stage.work)
    figures["product"] = sum(figures[stage.name] for stage in flow_path.stages)
    figures["records"] = len(flow_path.payloads)
    figures["what"] = flow_path.records
    figures["stages"] = {stage.name: stage.label for stage in flow_path.stages}
    figures["notes"] = list(flow_path.notes)
    return figures


def measure_overhead(count: int, flows: Sequence[str] = FLOWS) -> dict[str, dict[str, Any]]:
    """Each flow's figures (:func:`measure_path`) over ``count`` source records."""
    from ml_connector_dagster.core.collector import pace_for_bulk_work

    pace_for_bulk_work()  # as in the product's steps (they open the ledger first)
    measured: dict[str, dict[str, Any]] = {}
    for flow in flows:
        module = importlib.import_module(f"bench.paths.{flow}")
        measured[flow] = measure_path(module.path(count))
    return measured


def overhead_outcome(measured: dict[str, dict[str, Any]], *, rerun: str) -> Outcome:
    """µs per record per stage and flow, and each flow's total over its bare loop."""
    rows: list[list[str]] = []
    notes: list[str] = []
    figures: dict[str, float] = {}
    for flow, measure in measured.items():
        ratio = measure["product"] / measure["bare"]
        rows.append([
            f"{flow} ({measure['records']:,} {measure['what']})", f"{measure['bare']:.1f}",
            *(f"{measure[stage]:.1f}" if stage in measure else "-" for stage in STAGES),
            f"**{measure['product']:.1f}**", f"**{ratio:.1f}**",
        ])  # fmt: skip
        stages = "; ".join(f"{name}: {label}" for name, label in measure["stages"].items())
        notes.append(f"{flow}: {stages}" + "".join(f"; {note}" for note in measure["notes"]))
        figures.update({f"{flow}_product_us": measure["product"], f"{flow}_bare_us": measure["bare"],
                        f"{flow}_ratio": ratio})
    if "visma_jira" in measured:
        jira = measured["visma_jira"]
        limits = BenchLimits()
        jira_bound = limits.jira_bulk_size * limits.jira_burst_per_s
        notes.append(
            f"at {jira['product']:.0f} µs of CPU per record one core turns {1e6 / jira['product']:,.0f} Visma "
            f"invoices/s into Jira issues; the Jira backfill's API bound is {jira_bound:,} records/s (bulk creates "
            f"of {limits.jira_bulk_size} at {limits.jira_burst_per_s}/s), so these stages alone need "
            f"{jira_bound * jira['product'] / 1e6:.1f} cores to keep up with it")
        figures.update({"product_us": jira["product"], "bare_us": jira["bare"],
                        "ratio": jira["product"] / jira["bare"]})
    return Outcome(
        key="overhead", title="Per-record overhead of each flow (CPU time)", rerun=rerun,
        headers=["flow (records)", "bare loop µs", "validate µs", "map µs", "render µs", "payload µs",
                 "validate + map + render + payload µs", "x bare loop"],
        rows=rows, notes=notes, figures=figures,
    )  # fmt: skip
