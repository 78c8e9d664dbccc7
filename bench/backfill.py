"""Backfill and memory: N Visma supplier invoices -> destination issues, against the physical bound.

Each run serves a fresh Visma simulator of N supplier invoices (all modified yesterday, one daily
partition) and a fresh destination simulator, each in its own process with the configured latency
and rate limits, and runs the product's backfill (:mod:`bench.backfill_run`) in a third process.
Counted server-side: every API call, by endpoint.

Ratios:

- throughput = achieved records/s / bound records/s (:mod:`bench.limits`); the push step alone
  is also set against its own bound (its calls only);
- API calls per record against the minimum the bulk APIs need (auth calls excluded, listed apart);
- memory: the peak RSS of the run's process at each size, and its slope per 10,000 records.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

from .destinations import DESTINATIONS, Destination
from .limits import BenchLimits, Bound, bound_of
from .results import Outcome, Target
from .sandbox import PROJECT_ROOT, pinned_start, simulator_process

__all__ = ["BackfillRun", "backfill_outcome", "memory_outcome", "run_backfill"]

DAYS = 0.85  # every generated record falls in yesterday's partition (see pinned_start)
VISMA_BUDGET = "visma GET /v1/supplierInvoice"


class BackfillRun(dict[str, Any]):
    """The figures of one backfill: the child's report plus the calls counted by the simulators."""

    @property
    def records(self) -> int:
        return int(self["assets"].get("visma/supplier_invoices", {}).get("read", 0))

    @property
    def destination_figures(self) -> dict[str, Any]:
        return next((v for k, v in self["assets"].items() if not k.startswith("visma/")), {})


def _budget_calls(calls: dict[str, int], budget_of: Any) -> tuple[dict[str, int], int]:
    """Calls per rate budget, and the auth calls (no budget) apart."""
    budgets: dict[str, int] = {}
    auth = 0
    for endpoint, count in calls.items():
        budget = budget_of(endpoint)
        if budget is None:
            auth += count
        else:
            budgets[budget] = budgets.get(budget, 0) + count
    return budgets, auth


def _visma_budget(endpoint: str) -> str | None:
    return None if endpoint.endswith("/connect/token") else f"visma {endpoint}"


def run_backfill(records: int, limits: BenchLimits, destination: Destination, *, timeout_s: float = 3600) -> BackfillRun:
    """One backfill of ``records`` supplier invoices into ``destination``, measured."""
    start = pinned_start()
    with simulator_process("visma", size=records, days=DAYS, start=start.isoformat(),
                           rate_limit_per_hour=limits.visma_rate_limit_per_hour, latency_ms=limits.latency_ms) as visma, \
         simulator_process(destination.simulator, latency_ms=limits.latency_ms,
                           **destination.simulator_settings(limits)) as target:  # fmt: skip
        visma.counts(reset=True)
        target.counts(reset=True)
        settings = {"visma_url": visma.url, "destination_url": target.url, "destination": destination.name,
                    "limits": limits.model_dump(), "partition": start.date().isoformat()}
        child = subprocess.run([sys.executable, "-m", "bench.backfill_run", json.dumps(settings)],
                               capture_output=True, text=True, timeout=timeout_s, cwd=PROJECT_ROOT)
        if child.returncode != 0 or not child.stdout.strip():
            raise RuntimeError(f"the backfill process failed ({child.returncode}): {child.stderr[-2000:]}")
        run = BackfillRun(json.loads(child.stdout.strip().splitlines()[-1]))
        run["visma_calls"] = visma.counts()["calls"]
        run["destination_calls"] = target.counts()["calls"]
    return run


def bound_for(run: BackfillRun, limits: BenchLimits, destination: Destination) -> tuple[Bound, Bound]:
    """(the whole job's bound, the push step's bound) from what the run had to do."""
    created = int(run.destination_figures.get("created", 0))
    push_calls = destination.minimum_calls(created, int(run["workflow_moves"]), limits)
    rates = {VISMA_BUDGET: limits.visma_rate_per_s, **destination.rates(limits)}
    pages = max(1, math.ceil(run.records / limits.visma_page_size))
    limited = {budget: calls for budget, calls in push_calls.items() if budget in rates}
    latency = limits.latency_ms / 1000
    whole = bound_of(run.records, {VISMA_BUDGET: pages, **limited}, rates, round_trips=3, latency_s=latency)
    push = bound_of(run.records, limited, rates, round_trips=1, latency_s=latency)
    whole_minimum = {VISMA_BUDGET: pages, **push_calls}
    whole.calls.update(whole_minimum)  # the unlimited ones (the field list) count towards the minimum too
    return whole, push


def _made_calls(run: BackfillRun, destination: Destination) -> tuple[dict[str, int], int]:
    visma, visma_auth = _budget_calls(run["visma_calls"], _visma_budget)
    target, target_auth = _budget_calls(run["destination_calls"], destination.budget_of)
    return {**visma, **target}, visma_auth + target_auth


def backfill_outcome(run: BackfillRun, limits: BenchLimits, destination: Destination, *, rerun: str) -> Outcome:
    """The backfill scenario's table and targets."""
    whole, push = bound_for(run, limits, destination)
    made, auth = _made_calls(run, destination)
    figures = run.destination_figures
    achieved = run.records / run["seconds"]
    push_step = next((s for k, s in run["steps"].items() if k.endswith(".push_invoice_issues") or "push" in k), 0.0)
    push_rate = run.records / push_step if push_step else 0.0
    ratio = achieved / whole.records_per_s
    calls_ratio = sum(made.values()) / whole.minimum_calls
    failed = int(figures.get("failed", 0)) + (0 if run["success"] else 1)
    rows = [
        ["records read from Visma", f"{run.records:,}"],
        ["issues created / filtered / quarantined (malformed on purpose) / failed",
         f"{figures.get('created', 0):,} / {figures.get('filtered', 0):,} / "
         f"{run['assets'].get('visma/supplier_invoices', {}).get('quarantined', 0):,} / {figures.get('failed', 0):,}"],
        ["workflow transitions needed (status map)", f"{run['workflow_moves']:,}"],
        ["wall time (materialize)", f"{run['seconds']:.1f} s"],
        ["  of which steps", ", ".join(f"{k.split('.')[-1]} {v:.1f} s" for k, v in run["steps"].items())],
        ["bound: busiest budget", f"{whole.bottleneck}: {whole.calls[whole.bottleneck]:,} calls "
                                  f"= {whole.seconds[whole.bottleneck]:.1f} s"],
        ["records/s achieved / bound", f"{achieved:.1f} / {whole.records_per_s:.1f} = **{ratio:.2f}**"],
        ["push step alone: records/s achieved / its bound",
         f"{push_rate:.1f} / {push.records_per_s:.1f} = {push_rate / push.records_per_s:.2f}"],
        ["API calls made / minimum", f"{sum(made.values()):,} / {whole.minimum_calls:,} = **{calls_ratio:.3f}x**"],
        ["  made, by endpoint", ", ".join(f"{k} {v:,}" for k, v in sorted(made.items()))],
        ["  minimum, by endpoint", ", ".join(f"{k} {v:,}" for k, v in sorted(whole.calls.items()))],
        ["  auth calls (not rate limited, not counted above)", f"{auth}"],
        ["peak RSS of the run's process", f"{run['peak_rss_mb']:.0f} MB (after imports {run['rss_before_mb']:.0f} MB)"],
    ]
    return Outcome(
        key="backfill", title=f"Backfill: {run.records:,} Visma supplier invoices -> {destination.name} issues",
        rerun=rerun, headers=["figure", "value"], rows=rows,
        targets=[
            Target(name="throughput / bound", value=round(ratio, 3), goal=">= 0.9", holds=ratio >= 0.9),
            Target(name="API calls / minimum", value=round(calls_ratio, 3), goal="<= 1.1x", holds=calls_ratio <= 1.1),
            Target(name="failed records", value=failed, goal="0", holds=failed == 0),
        ],
        figures={"records": run.records, "seconds": run["seconds"], "throughput_ratio": ratio,
                 "calls_ratio": calls_ratio, "failed": failed, "peak_rss_mb": run["peak_rss_mb"]},
    )


def memory_outcome(runs: dict[int, BackfillRun], *, rerun: str) -> Outcome:
    """Peak RSS at each size, and the slope (MB per 10,000 records) from the smallest to the largest."""
    sizes = sorted(runs)
    rows = [[f"{size:,}", f"{runs[size]['peak_rss_mb']:.0f}", f"{runs[size]['rss_before_mb']:.0f}",
             f"{runs[size]['seconds']:.0f}"] for size in sizes]
    low, high = sizes[0], sizes[-1]
    slope = ((runs[high]["peak_rss_mb"] - runs[low]["peak_rss_mb"]) / (high - low) * 10_000) if high > low else 0.0
    peak = runs[high]["peak_rss_mb"]
    return Outcome(
        key="memory", title="Memory: peak RSS of the backfill process by record count", rerun=rerun,
        headers=["records", "peak RSS (MB)", "RSS after imports (MB)", "wall time (s)"], rows=rows,
        targets=[Target(name=f"peak RSS at {high:,} records (MB)", value=round(peak, 1), goal="<= 500 MB",
                        holds=peak <= 500)],
        notes=[f"slope {slope:.1f} MB per 10,000 records between {low:,} and {high:,} "
               "(flat = streamed; what grows is the plan's one small entry per record)"],
        figures={"peak_rss_mb": peak, "slope_mb_per_10k": slope},
    )


def destination_named(name: str) -> Destination:
    return DESTINATIONS[name]
