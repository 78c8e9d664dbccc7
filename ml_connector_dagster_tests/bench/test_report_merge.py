"""Rerunning one scenario keeps the others' figures, whether or not the JSON of the earlier run survives;
a GraphQL endpoint is counted per operation; the CPU floor counts one core per interpreter."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import backfill
from bench.__main__ import main
from bench.document import outcomes_in_report, render_sections, write_report
from bench.limits import BenchLimits
from bench.results import Outcome, Target
from bench.sandbox import operation_of

LATENCY_SECTION = "## Webhook -> destination latency\n\nmeasured elsewhere: p50 4.2 s\n"


def _outcome(key: str, value: float) -> Outcome:
    return Outcome(key=key, title=f"{key}: a | title", rerun=f".venv/bin/python -m bench --only {key}",
                   headers=["figure", "value"], rows=[["calls", "1,234"], ["  of which | bulk", "1,200"]],
                   targets=[Target(name="throughput / bound", value=value, goal=">= 0.9", holds=value >= 0.9)],
                   notes=["ran 12 s; load average (1 min) as it ended: 1.0 on 2 CPUs"])


def _written(path: Path, *outcomes: Outcome) -> None:
    write_report(path, render_sections(list(outcomes), BenchLimits(), command="python -m bench", scale="full",
                                       started=datetime.now(UTC), seconds=60))


def test_a_report_gives_back_the_outcomes_it_was_written_from(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    written = [_outcome("backfill", 0.95), _outcome("peer", 0.5)]
    _written(report, *written)

    read = outcomes_in_report(report.read_text())

    assert [o.model_dump(exclude={"figures"}) for o in read] == [o.model_dump(exclude={"figures"}) for o in written]


def test_a_merged_rewrite_without_json_keeps_the_other_sections_and_the_latency_one(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text(f"# Benchmarks\n\n{LATENCY_SECTION}")
    _written(report, _outcome("backfill", 0.95), _outcome("peer", 0.5))

    assert main(["--only", "", "--merge", "--out", str(report), "--no-progress"]) == 0

    text = report.read_text()
    kept = outcomes_in_report(text)
    assert [o.key for o in kept] == ["backfill", "peer"]
    assert all(any("earlier run" in note for note in o.notes) for o in kept)
    assert LATENCY_SECTION.strip() in text


def test_a_merged_rewrite_prefers_the_json_of_the_earlier_run(tmp_path: Path) -> None:
    report, figures = tmp_path / "benchmarks.md", tmp_path / "outcomes.json"
    _written(report, _outcome("backfill", 0.95))
    figures.write_text(json.dumps([_outcome("backfill_asana", 0.97).model_dump()]))

    assert main(["--only", "", "--merge", "--json", str(figures), "--out", str(report), "--no-progress"]) == 0

    assert [o.key for o in outcomes_in_report(report.read_text())] == ["backfill_asana"]


def test_a_graphql_request_is_counted_by_its_operation_name() -> None:
    named = json.dumps({"query": "mutation CreateItems($board: ID!) { a0: create_item(board_id: $board) { id } }"})
    chosen = json.dumps({"query": "query A { me { id } } query B { me { id } }", "operationName": "B"})

    assert operation_of(named.encode()) == "CreateItems"
    assert operation_of(chosen.encode()) == "B"
    assert operation_of(b'{"query": "{ me { id } }"}') == "anonymous"
    assert operation_of(b"not json") == "unparsable"


def test_the_cpu_floor_is_never_below_the_busiest_process_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backfill, "_cores", lambda: 2)
    spread = backfill.BackfillRun(cpu_s=100.0, simulator_cpu_s={"jira": 100.0, "visma": 20.0})
    lopsided = backfill.BackfillRun(cpu_s=300.0, simulator_cpu_s={"jira": 100.0, "visma": 20.0})

    assert backfill._cpu_floor(spread) == 110.0  # all of it over 2 cores
    assert backfill._cpu_floor(lopsided) == 300.0  # one interpreter: its 300 s on one core
