"""Backfill and memory: N source records -> a destination's records, against the physical bound.

Each run serves a fresh source simulator of N records (Visma supplier invoices, Acumatica bills,
JAGGAER invoices, with what the simulator generates beside them; all modified yesterday, one daily
partition) and a fresh destination simulator (Jira, Asana, monday.com or Visma), each in its own
process with the configured latency and rate limits, and runs the product's backfill
(:mod:`bench.backfill_run`) in a third process. Counted server-side: every API call, by endpoint.

Ratios:

- throughput = achieved records/s / bound records/s (:mod:`bench.limits`); the push step alone
  is also set against its own bound (its calls only);
- API calls per record against the minimum the bulk APIs need (auth calls excluded, listed apart);
- CPU seconds of the product's process and of the simulators, per record: on a machine where
  they exceed the bound's time, the CPU, not an API budget, is what a run waits for;
- memory: the peak RSS of the run's process at each size, and its slope per 10,000 records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from .destinations import DESTINATIONS, Destination, JobFacts
from .limits import BenchLimits, Bound, bound_of
from .results import Outcome, Target
from .sandbox import PROJECT_ROOT, cpu_seconds, pinned_start, simulator_process
from .sources import SOURCES, Source

__all__ = ["BackfillRun", "backfill_outcome", "memory_outcome", "run_backfill", "sized"]

DAYS = 0.85  # every generated record falls in yesterday's partition (see pinned_start)


class BackfillRun(dict[str, Any]):
    """The figures of one backfill: the child's report plus the calls counted by the simulators."""

    @property
    def source(self) -> Source:
        return SOURCES[self["source"]]

    @property
    def read(self) -> dict[str, int]:
        """Records read, by source asset."""
        prefix = self.source.prefix
        return {key: int(figures.get("read", 0)) for key, figures in self["assets"].items()
                if key.startswith(prefix) and "read" in figures}

    @property
    def records(self) -> int:
        return sum(self.read.values())

    @property
    def quarantined(self) -> int:
        prefix = self.source.prefix
        return sum(int(figures.get("quarantined", 0)) for key, figures in self["assets"].items()
                   if key.startswith(prefix))

    @property
    def destination_figures(self) -> dict[str, Any]:
        """The destination assets' figures, added up (jaggaer_visma has one asset per document kind)."""
        prefix = self.source.prefix
        added: dict[str, Any] = {}
        for key, figures in self["assets"].items():
            if key.startswith(prefix) and "read" in figures:
                continue
            for name, value in figures.items():
                added[name] = added.get(name, 0) + value if not isinstance(value, bool) else value
        return added

    @property
    def job(self) -> JobFacts:
        return JobFacts(created=int(self.destination_figures.get("created", 0)), moves=int(self["workflow_moves"]),
                        later_moves=int(self.get("later_moves", self["workflow_moves"])))


def sized(records: int, destination: Destination, limits: BenchLimits) -> int:
    """``records``, or fewer when the destination holds fewer (a monday board: 10,000 items)."""
    capacity = destination.capacity(limits)
    return records if capacity is None else min(records, capacity)


def _labelled(calls: dict[str, int], label_of: Any) -> tuple[dict[str, int], int]:
    """Calls by report label, and the auth calls (no label) apart."""
    labelled: dict[str, int] = {}
    auth = 0
    for endpoint, count in calls.items():
        label = label_of(endpoint)
        if label is None:
            auth += count
        else:
            labelled[label] = labelled.get(label, 0) + count
    return labelled, auth


def run_backfill(records: int, limits: BenchLimits, destination: Destination, *, timeout_s: float = 4 * 3600,
                 ) -> BackfillRun:  # fmt: skip
    """One backfill of ``records`` source records into ``destination``, measured."""
    start = pinned_start()
    source = SOURCES[destination.source]
    placed = {"days": DAYS, "start": start.isoformat(), "latency_ms": limits.latency_ms}
    with simulator_process(source.simulator, **placed, **source.simulator_settings(records, limits)) as origin, \
         simulator_process(destination.simulator, **placed,
                           **destination.simulator_settings(records, limits)) as target:  # fmt: skip
        origin.counts(reset=True)
        target.counts(reset=True)
        cpu_before = {"source": cpu_seconds(origin.process.pid), "target": cpu_seconds(target.process.pid)}
        settings = {"source_url": origin.url, "destination_url": target.url, "destination": destination.name,
                    "limits": limits.model_dump(), "partition": start.date().isoformat(), "records": records,
                    "simulator_pids": {"source": origin.process.pid, "target": target.process.pid}}
        child = subprocess.run([sys.executable, "-m", "bench.backfill_run", json.dumps(settings)],
                               capture_output=True, text=True, timeout=timeout_s, cwd=PROJECT_ROOT)
        if child.returncode != 0 or not child.stdout.strip():
            raise RuntimeError(f"the backfill process failed ({child.returncode}): {child.stderr[-2000:]}")
        run = BackfillRun(json.loads(child.stdout.strip().splitlines()[-1]))
        run["source_calls"] = origin.counts()["calls"]
        counted = target.counts()
        run["destination_calls"] = counted["calls"]
        run["destination_statuses"] = counted.get("statuses", {})
        # From the timed run's start: reference data landed before it is not the backfill's.
        at_start = {**cpu_before, **run.get("simulator_cpu_at_start", {})}
        run["simulator_cpu_s"] = {source.name: cpu_seconds(origin.process.pid) - at_start["source"],
                                  destination.name: cpu_seconds(target.process.pid) - at_start["target"]}
    return run


def bound_for(run: BackfillRun, limits: BenchLimits, destination: Destination) -> tuple[Bound, Bound]:
    """(the whole job's bound, the push step's bound) from what the run had to do."""
    push_needs = destination.needs(run.job, limits)
    reads = run.source.reads(run.read, limits)
    # A budget both sides draw on (Visma's, in a Visma -> Visma job) is one budget, spent by both.
    budgets = {**run.source.budgets(limits), **destination.budgets(limits)}
    latency = limits.latency_ms / 1000
    whole = bound_of(run.records, [*reads, *push_needs], budgets, round_trips=3, latency_s=latency)
    push = bound_of(run.records, push_needs, budgets, round_trips=1, latency_s=latency)
    return whole, push


def _made_calls(run: BackfillRun, destination: Destination) -> tuple[dict[str, int], int]:
    read, read_auth = _labelled(run["source_calls"], run.source.label_of)
    target, target_auth = _labelled(run["destination_calls"], destination.label_of)
    return {**read, **target}, read_auth + target_auth


def _step_seconds(run: BackfillRun, word: str) -> float:
    """The seconds of the steps named with ``word`` (a flow may push each document kind in a step of its own)."""
    return sum(seconds for step, seconds in run["steps"].items() if word in step.split(".")[-1])


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cpu_floor(run: BackfillRun) -> float:
    """Seconds the run needs for the CPU its processes spent: all of it spread perfectly over this machine's
    cores, but never less than the busiest process's own (one Python interpreter runs on one core at a
    time: the GIL)."""
    per_process = [float(run.get("cpu_s", 0.0)), *(float(s) for s in run.get("simulator_cpu_s", {}).values())]
    return max(sum(per_process) / _cores(), max(per_process))


def _steps_note(run: BackfillRun) -> list[str]:
    """What the steps before the push cost: they run first (a job's steps run in dependency order)."""
    push = _step_seconds(run, "push")
    before = sum(seconds for step, seconds in run["steps"].items() if "push" not in step.split(".")[-1])
    if not push or not before:
        return []
    return [f"the steps before the push (reading the source, planning) took {before:.1f} s of the run's "
            f"{run['seconds']:.1f} s: they finish before the push starts, so their time counts against the "
            "bound too (the table's push-step-alone row leaves them out)"]


def _cpu_note(run: BackfillRun, bound: Bound) -> list[str]:
    floor = _cpu_floor(run)
    if floor <= bound.total_seconds:
        return []
    return [f"CPU-bound on this machine: the processes' CPU floor ({floor:.0f} s on {_cores()} cores) is "
            f"{floor / bound.total_seconds:.1f}x the API bound ({bound.total_seconds:.1f} s), so the throughput "
            "target cannot hold here whatever the connector does with its calls; the run took "
            f"{run['seconds'] / floor:.1f}x its CPU floor (1.0: every core busy with this run throughout)"]


def _cpu_rows(run: BackfillRun) -> list[list[str]]:
    product = float(run.get("cpu_s", 0.0))
    simulators = {name: float(seconds) for name, seconds in run.get("simulator_cpu_s", {}).items()}
    total = product + sum(simulators.values())
    per_record = 1e6 / max(run.records, 1)
    cores = _cores()
    return [
        ["CPU: product process / simulators (s)",
         f"{product:.1f} / " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in simulators.items())],
        ["CPU per record: product / all processes (µs)", f"{product * per_record:,.0f} / {total * per_record:,.0f}"],
        [f"CPU floor of the run on {cores} cores (all processes' CPU / cores, or the busiest process's own CPU: "
         "one interpreter uses one core)", f"{_cpu_floor(run):.1f} s"],
    ]


def _collector_rows(run: BackfillRun) -> list[list[str]]:
    if "gc_s" not in run:  # an outcome read back from an older report
        return []
    seconds, counts = run["gc_s"], run["gc_collections"]
    return [["garbage collector in the product process: seconds (collections) by generation 0 / 1 / 2",
             " / ".join(f"{s:.1f} ({n:,})" for s, n in zip(seconds, counts, strict=True))]]


def backfill_outcome(run: BackfillRun, limits: BenchLimits, destination: Destination, *, key: str,
                     rerun: str) -> Outcome:  # fmt: skip
    """The backfill scenario's table and targets."""
    whole, push = bound_for(run, limits, destination)
    made, auth = _made_calls(run, destination)
    figures = run.destination_figures
    achieved = run.records / run["seconds"]
    push_step = _step_seconds(run, "push")
    push_rate = run.records / push_step if push_step else 0.0
    ratio = achieved / whole.records_per_s
    calls_ratio = sum(made.values()) / whole.minimum_calls
    refused = sum(run.get("refused_by_design", {}).values())
    failed = int(figures.get("failed", 0)) - refused + (0 if run["success"] else 1)
    throttled = int(run.get("destination_statuses", {}).get("429", 0))
    job = run.job
    rows = [
        [f"records read from {run.source.name}", ", ".join(f"{key} {n:,}" for key, n in run.read.items())
         if len(run.read) > 1 else f"{run.records:,}"],
        [f"{destination.noun} created / linked / filtered / quarantined (malformed on purpose) / failed",
         f"{figures.get('created', 0):,} / {figures.get('linked', 0):,} / {figures.get('filtered', 0):,} / "
         f"{run.quarantined:,} / {figures.get('failed', 0):,}"],
    ]
    for counted, label in (("refused_by_design", "  of those failed, refused by design (the data plants them for "
                                                 "the flow to refuse), by reason"),
                           ("failures", "  of those failed, the others (the target's), by reason")):
        if run.get(counted):
            rows.append([label, "; ".join(f"{reason} ({n:,})" for reason, n in sorted(run[counted].items()))])
    if job.moves:
        rows.append(["workflow transitions needed (status map): all / beyond a create's own",
                     f"{job.moves:,} / {job.later_moves:,}"])
    rows += [
        ["wall time (materialize)", f"{run['seconds']:.1f} s"],
        ["  of which steps", ", ".join(f"{k.split('.')[-1]} {v:.1f} s" for k, v in run["steps"].items())],
        ["bound: busiest budget", whole.describe_bottleneck()],
        ["  every budget (s)", ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(whole.seconds.items()))],
        ["records/s achieved / bound", f"{achieved:.1f} / {whole.records_per_s:.1f} = **{ratio:.2f}**"],
        ["push step alone: records/s achieved / its bound",
         f"{push_rate:.1f} / {push.records_per_s:.1f} = {push_rate / push.records_per_s:.2f}"],
        ["API calls made / minimum", f"{sum(made.values()):,} / {whole.minimum_calls:,} = **{calls_ratio:.3f}x**"],
        ["  made, by endpoint", ", ".join(f"{k} {v:,}" for k, v in sorted(made.items()))],
        ["  minimum, by endpoint", ", ".join(f"{k} {v:,}" for k, v in sorted(whole.calls.items()))],
        ["  refused with 429 (counted in made)", f"{throttled:,}"],
        ["  auth calls (not rate limited, not counted above)", f"{auth}"],
        *_cpu_rows(run),
        ["peak RSS of the run's process", f"{run['peak_rss_mb']:.0f} MB (after imports {run['rss_before_mb']:.0f} MB)"],
        *_collector_rows(run),
    ]
    return Outcome(
        key=key, title=_title(run, destination),
        rerun=rerun, headers=["figure", "value"], rows=rows,
        notes=[*destination.notes(limits), *_steps_note(run), *_cpu_note(run, whole),
               *(f"a failed record, as its dead letter says: {example}" for example in run.get("failure_examples", []))],
        targets=[
            Target(name="throughput / bound", value=round(ratio, 3), goal=">= 0.9", holds=ratio >= 0.9),
            Target(name="API calls / minimum", value=round(calls_ratio, 3), goal="<= 1.1x", holds=calls_ratio <= 1.1),
            Target(name="failed records", value=failed, goal="0", holds=failed == 0),
        ],
        figures={"records": run.records, "created": int(figures.get("created", 0)), "seconds": run["seconds"],
                 "throughput_ratio": ratio,
                 "calls_ratio": calls_ratio, "failed": failed, "peak_rss_mb": run["peak_rss_mb"],
                 "bound_s": whole.total_seconds, "cpu_s": float(run.get("cpu_s", 0.0)),
                 "simulators_cpu_s": sum(float(s) for s in run.get("simulator_cpu_s", {}).values())},
    )


def _title(run: BackfillRun, destination: Destination) -> str:
    if run.source.name == "visma":
        return f"Backfill: {run.records:,} Visma supplier invoices -> {destination.name} {destination.noun}"
    return (f"Backfill: {run.records:,} {run.source.name} documents -> {destination.name} {destination.noun} "
            f"({destination.flow.split('.')[0]})")


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
