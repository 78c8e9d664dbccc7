"""``python -m bench``: run the benchmark scenarios and write their part of docs/benchmarks.md.

Scenarios: backfill (Visma into Jira), backfill_api_bound, backfill_asana, backfill_monday,
backfill_acumatica (acumatica_jira), backfill_jaggaer (jaggaer_visma), memory, incremental,
lookups (new records into a large Asana project), sensor_runs (a poll run into a large day), overhead, peer (``--only`` picks some). Sizes come in three scales: full (the issue's: 100k backfills, a monday
board's capacity, 25k/50k/100k memory, 10k/100k/1M incremental),
``--quick`` (a smoke run of a few minutes) and ``--tiny`` (the CI test, well under a minute).
The exit code is non-zero only when a scenario could not run; targets that do not hold are
reported, not failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ml_connector_dagster.progress import configure_progress, printing_beside_bars, progress_bar

from .backfill import BackfillRun, backfill_outcome, memory_outcome, run_backfill, sized
from .destinations import DESTINATIONS, Destination
from .document import outcomes_in_report, render_sections, stamp, write_report
from .incremental import POLLED, incremental_outcome, measure_incremental
from .limits import BenchLimits
from .lookups import lookups_outcome, measure_lookups
from .overhead import measure_overhead, overhead_outcome
from .peer import measure_peer, peer_outcome
from .peer_acumatica import measure_acumatica_peer
from .peer_jaggaer import measure_jaggaer_peer
from .results import Outcome
from .sensor_runs import measure_sensor_run, sensor_runs_outcome

SCENARIOS = ("backfill", "backfill_api_bound", "backfill_asana", "backfill_monday", "backfill_acumatica",
             "backfill_jaggaer", "memory", "incremental", "lookups", "sensor_runs", "overhead", "peer")
OTHER_BACKFILLS = {"backfill_asana": "asana", "backfill_monday": "monday",  # scenario -> destination
                   "backfill_acumatica": "jira_exceptions", "backfill_jaggaer": "visma_ap"}
SCALES: dict[str, dict[str, Any]] = {
    "full": {"backfill": 100_000, "backfill_api_bound": 20_000, "backfill_asana": 100_000, "backfill_monday": 100_000,
             "backfill_acumatica": 20_000, "backfill_jaggaer": 1_000,
             "memory": (25_000, 50_000, 100_000), "incremental": (10_000, 100_000, 1_000_000),
             "lookups": (1_000, 10_000, 100_000), "sensor_runs": (1_000, 10_000), "overhead": 5_000, "peer": 20_000},
    "quick": {"backfill": 5_000, "backfill_api_bound": 3_000, "backfill_asana": 3_000, "backfill_monday": 2_000,
              "backfill_acumatica": 2_000, "backfill_jaggaer": 200,
              "memory": (1_250, 2_500, 5_000), "incremental": (1_000, 10_000, 100_000), "lookups": (1_000, 10_000),
              "sensor_runs": (500, 2_000), "overhead": 1_000,
              "peer": 5_000},
    "tiny": {"backfill": 300, "backfill_api_bound": 300, "backfill_asana": 100, "backfill_monday": 100,
             "backfill_acumatica": 100, "backfill_jaggaer": 30, "memory": (150, 300),
             "incremental": (500, 5_000), "lookups": (100, 1_000), "sensor_runs": (50, 200), "overhead": 200,
             "peer": 500},
}
REPORT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# A Jira tenant with a tenth of the simulator's default burst budget: the job is then bound by the API on
# any machine (CPU to spare), so its ratio measures how the connector spends the API, not this machine's CPU.
API_BOUND_JIRA = {"jira_burst_per_s": 10, "jira_client_rate_per_s": 9.5, "jira_client_burst": 1}
# Visma's 15,000 calls an hour, refilled every minute as 250: JAGGAER's documents reach Visma one POST each,
# so a backfill of a few thousand meets the window's refill in minutes instead of hours, at the same pace.
MINUTE_VISMA = {"visma_rate_limit_per_hour": 250, "visma_rate_window_s": 60.0}
SCENARIO_LIMITS: dict[str, dict[str, Any]] = {"backfill_acumatica": API_BOUND_JIRA, "backfill_jaggaer": MINUTE_VISMA}


def _rerun(scenario: str, scale: str) -> str:
    flag = {"full": "", "quick": " --quick", "tiny": " --tiny"}[scale]
    return f".venv/bin/python -m bench --only {scenario}{flag}"


class _Runner:
    """Runs the chosen scenarios, sharing the largest backfill between backfill and memory."""

    def __init__(self, limits: BenchLimits, scale: str, destination: str) -> None:
        self.limits = limits
        self.scale = scale
        self.sizes = SCALES[scale]
        self.destination = DESTINATIONS[destination]
        self.backfills: dict[int, BackfillRun] = {}

    def backfill_of(self, records: int) -> BackfillRun:
        if records not in self.backfills:
            self.backfills[records] = run_backfill(records, self.limits, self.destination)
        return self.backfills[records]

    def backfill(self) -> Outcome:
        run = self.backfill_of(self.sizes["backfill"])
        return backfill_outcome(run, self.limits, self.destination, key="backfill",
                                rerun=_rerun("backfill", self.scale))

    def backfill_api_bound(self) -> Outcome:
        limits = self.limits.model_copy(update=API_BOUND_JIRA)
        jira = DESTINATIONS["jira"]
        run = run_backfill(self.sizes["backfill_api_bound"], limits, jira)
        outcome = backfill_outcome(run, limits, jira, key="backfill_api_bound",
                                   rerun=_rerun("backfill_api_bound", self.scale))
        outcome.title += f", Jira at {limits.jira_burst_per_s} requests/s per endpoint (API-bound)"
        outcome.notes.insert(0, (
            f"the Jira simulator's burst budget is {limits.jira_burst_per_s}/s per endpoint and method here (the "
            f"connector's {limits.jira_client_rate_per_s:g}/s, burst {limits.jira_client_burst}), a tenth of the "
            "default, everything else as above: the API, not this machine's CPU, is then the limit, so the ratio "
            "shows how close the flow's design (step order, concurrency, batching) comes to what the API allows"))
        return outcome

    def _other_backfill(self, scenario: str) -> Outcome:
        destination: Destination = DESTINATIONS[OTHER_BACKFILLS[scenario]]
        limits = self.limits.model_copy(update=SCENARIO_LIMITS.get(scenario, {}))
        run = run_backfill(sized(self.sizes[scenario], destination, limits), limits, destination)
        outcome = backfill_outcome(run, limits, destination, key=scenario, rerun=_rerun(scenario, self.scale))
        if scenario == "backfill_acumatica":
            outcome.notes.insert(0, (
                f"Jira at {limits.jira_burst_per_s} requests/s per endpoint, as in the API-bound Visma backfill: "
                "Acumatica has no request budget, so at Jira's default burst the job would measure this machine's CPU"))
        if scenario == "backfill_jaggaer":
            outcome.notes.insert(0, (
                f"Visma's budget refilled every {limits.visma_rate_window_s:g} s with "
                f"{limits.visma_rate_limit_per_hour:,} calls (15,000 an hour, as the production budget, in minute "
                "windows), so the run meets the refill; at 15,000 an hour the same documents take as long"))
        return outcome

    def backfill_asana(self) -> Outcome:
        return self._other_backfill("backfill_asana")

    def backfill_monday(self) -> Outcome:
        return self._other_backfill("backfill_monday")

    def backfill_acumatica(self) -> Outcome:
        return self._other_backfill("backfill_acumatica")

    def backfill_jaggaer(self) -> Outcome:
        return self._other_backfill("backfill_jaggaer")

    def memory(self) -> Outcome:
        runs = {size: self.backfill_of(size) for size in self.sizes["memory"]}
        return memory_outcome(runs, rerun=_rerun("memory", self.scale))

    def incremental(self) -> Outcome:
        runs = [measure_incremental(polled, size, self.limits) for polled in POLLED.values()
                for size in self.sizes["incremental"]]
        return incremental_outcome(runs, rerun=_rerun("incremental", self.scale))

    def lookups(self) -> Outcome:
        runs = [measure_lookups(size, self.limits) for size in self.sizes["lookups"]]
        return lookups_outcome(runs, rerun=_rerun("lookups", self.scale))

    def sensor_runs(self) -> Outcome:
        runs = [measure_sensor_run(size, self.limits) for size in self.sizes["sensor_runs"]]
        return sensor_runs_outcome(runs, rerun=_rerun("sensor_runs", self.scale))

    def overhead(self) -> Outcome:
        return overhead_outcome(measure_overhead(self.sizes["overhead"]), rerun=_rerun("overhead", self.scale))

    def peer(self) -> Outcome:
        size = self.sizes["peer"]
        return peer_outcome(measure_peer(size, self.limits), acumatica=measure_acumatica_peer(size, self.limits),
                            jaggaer=measure_jaggaer_peer(size, self.limits),
                            rerun=_rerun("peer", self.scale))


def _failed(key: str, error: BaseException) -> Outcome:
    return Outcome(key=key, title=f"{key}: could not run", rerun=f".venv/bin/python -m bench --only {key}",
                   notes=[f"{type(error).__name__}: {str(error)[:500]}"])


def run(scenarios: Sequence[str], limits: BenchLimits, scale: str, destination: str,
        log: Callable[[str], None] = print,
        done: Callable[[list[Outcome]], None] = lambda outcomes: None) -> tuple[list[Outcome], bool]:
    """Every chosen scenario's outcome (a crashed one as a note), and whether all ran.

    ``done`` is called with the outcomes so far after each scenario (the report is kept current,
    so a long run stopped half-way still leaves the figures it made).
    """
    runner = _Runner(limits, scale, destination)
    # The backfill runs before memory so that memory reuses its largest run.
    ordered = [name for name in SCENARIOS if name in scenarios]
    outcomes, ok = [], True

    def say(line: str) -> None:
        with printing_beside_bars():
            log(line)

    with progress_bar(ordered, desc="bench", unit="scenario") as bar:
        for name in bar:
            bar.set_postfix_str(name)
            began = time.perf_counter()
            say(f"bench: {name} ({scale}) ...")
            try:
                outcome = getattr(runner, name)()
            except Exception as error:  # noqa: BLE001 - one broken scenario must not lose the others' figures
                traceback.print_exc()
                outcome, ok = _failed(name, error), False
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            outcome.notes.append(f"ran {time.perf_counter() - began:.0f} s; load average (1 min) as it ended: "
                                 f"{load:.1f} on {os.cpu_count()} CPUs")
            say(f"bench: {name} done in {time.perf_counter() - began:.0f} s: "
                + ", ".join(f"{t.name} {t.value:g} ({'holds' if t.holds else 'MISSED'})" for t in outcome.targets))
            outcomes.append(outcome)
            done(outcomes)
    return outcomes, ok


def _kept_outcomes(path: Path | None, report: Path, rerun: Sequence[str]) -> list[Outcome]:
    """The outcomes of earlier runs of the scenarios not run now, marked as such: from the JSON file
    (``--json``) when there is one, else from the generated block of the report itself."""
    if path is not None and path.exists():
        earlier = [Outcome.model_validate(o) for o in json.loads(path.read_text())]
    else:
        earlier = outcomes_in_report(report.read_text()) if report.exists() else []
    kept = [outcome for outcome in earlier if outcome.key not in rerun]
    for outcome in kept:
        if not any("earlier run" in note for note in outcome.notes):
            outcome.notes.append("measured in an earlier run (its time and load in the note above); the others were rerun")
    return kept


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"Comma-separated, of: {', '.join(SCENARIOS)}.")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="Small sizes: a smoke run of a few minutes.")
    sizes.add_argument("--tiny", action="store_true", help="Tiny sizes: the CI test (under a minute).")
    parser.add_argument("--latency-ms", type=float, default=BenchLimits().latency_ms,
                        help="Latency the simulators add to every request (default 30).")
    parser.add_argument("--destination", default="jira", choices=sorted(DESTINATIONS))
    parser.add_argument("--out", type=Path, default=REPORT, help="The Markdown report (default docs/benchmarks.md).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the outcomes as JSON here.")
    parser.add_argument("--merge", action="store_true",
                        help="Keep the other scenarios' outcomes found in --json, or without one in --out's "
                             "generated block (rerun one scenario of a run; `--only ''` only rewrites the report).")
    parser.add_argument("--no-progress", action="store_true",
                        help="No progress bar on stderr (it is only drawn on a terminal anyway).")
    args = parser.parse_args(argv)
    configure_progress(enabled=not args.no_progress)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    scale = "quick" if args.quick else "tiny" if args.tiny else "full"
    # A SIGTERM unwinds like Ctrl-C, so every simulator and backfill process started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    limits = BenchLimits(latency_ms=args.latency_ms)
    started, began = stamp(), time.perf_counter()
    command = ("python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])).strip()

    def report(outcomes: list[Outcome]) -> None:
        # Read again at every write: runs of other scenarios merging into the same files meanwhile keep theirs.
        kept = _kept_outcomes(args.json, args.out, [o.key for o in outcomes] + chosen) if args.merge else []
        outcomes = sorted([*kept, *outcomes], key=lambda o: SCENARIOS.index(o.key) if o.key in SCENARIOS else 99)
        block = render_sections(outcomes, limits, command=command, scale=scale, started=started,
                                seconds=time.perf_counter() - began)
        write_report(args.out, block)
        if args.json is not None:
            args.json.write_text(json.dumps([o.model_dump() for o in outcomes], indent=2))

    outcomes, ok = run(chosen, limits, scale, args.destination, done=report)
    if not chosen and args.merge:
        report(outcomes)  # `--only "" --merge`: rewrite the report from the kept outcomes alone
    print(f"bench: wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
