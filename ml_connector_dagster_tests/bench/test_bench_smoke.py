"""The benchmarks, run at tiny sizes: every scenario runs, the report is written, the ratios are sane.

One ``python -m bench --tiny`` run (under a minute: simulators in child processes, each backfill
(Visma into Jira, Asana, monday; Acumatica into Jira; JAGGAER into Visma) in a third) feeds every test here; the report goes to a temp file that already holds another
engineer's section, which must survive.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import SCENARIOS, main
from bench.document import BEGIN, END, write_report
from bench.report import write_section

LATENCY_SECTION = "## Webhook -> destination latency\n\nmeasured elsewhere: p50 4.2 s\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("bench")
    report, figures = folder / "benchmarks.md", folder / "outcomes.json"
    report.write_text(f"# Benchmarks\n\n{LATENCY_SECTION}")
    code = main(["--tiny", "--out", str(report), "--json", str(figures)])
    outcomes = {o["key"]: o for o in json.loads(figures.read_text())}
    return {"code": code, "report": report.read_text(), "outcomes": outcomes}


def test_every_scenario_runs_at_tiny_sizes(tiny: dict[str, Any]) -> None:
    assert tiny["code"] == 0
    assert sorted(tiny["outcomes"]) == sorted(SCENARIOS)


def test_the_report_states_the_machine_the_limits_and_every_scenario(tiny: dict[str, Any]) -> None:
    report = tiny["report"]
    for fact in ("nproc", "RAM", "CPU", "Python", "Jira burst budget", "latency added to every request"):
        assert fact in report
    for outcome in tiny["outcomes"].values():
        assert f"## {outcome['title']}" in report


def test_the_report_keeps_the_sections_it_does_not_generate(tiny: dict[str, Any]) -> None:
    report = tiny["report"]
    assert report.count(BEGIN) == 1 and report.count(END) == 1
    assert LATENCY_SECTION.strip() in report


def test_the_backfill_creates_every_valid_invoice_near_the_minimum_of_calls(tiny: dict[str, Any]) -> None:
    figures = tiny["outcomes"]["backfill"]["figures"]
    assert figures["failed"] == 0
    assert 1.0 <= figures["calls_ratio"] <= 1.5
    assert 0 < figures["throughput_ratio"] <= 1.2  # nothing beats the rate limits


def test_the_api_bound_backfill_runs_under_the_stricter_jira_budget(tiny: dict[str, Any]) -> None:
    outcome = tiny["outcomes"]["backfill_api_bound"]
    assert outcome["figures"]["records"] > 0 and outcome["figures"]["failed"] == 0
    assert "10 requests/s per endpoint" in outcome["title"]
    assert "burst budget is 10/s per endpoint" in outcome["notes"][0]


@pytest.mark.parametrize("scenario", ["backfill_asana", "backfill_monday"])
def test_the_asana_and_monday_backfills_create_every_valid_invoice_within_their_limits(
    tiny: dict[str, Any], scenario: str
) -> None:
    figures = tiny["outcomes"][scenario]["figures"]
    assert figures["records"] > 0 and figures["failed"] == 0
    # At 100 records the plan's few reads of the workspace or board weigh against one or two writes.
    assert 1.0 <= figures["calls_ratio"] <= 2.0
    assert 0 < figures["throughput_ratio"] <= 1.2


def test_the_acumatica_backfill_opens_an_issue_per_exception_at_the_minimum_of_calls(tiny: dict[str, Any]) -> None:
    outcome = tiny["outcomes"]["backfill_acumatica"]
    figures = outcome["figures"]
    assert figures["records"] > 0 and figures["created"] > 0 and figures["failed"] == 0
    assert figures["calls_ratio"] == 1.0  # every page and search full but the last, one bulk create per 50
    assert "(acumatica_jira)" in outcome["title"]


def test_the_jaggaer_backfill_posts_each_document_once_and_refuses_only_what_the_data_plants(
    tiny: dict[str, Any],
) -> None:
    outcome = tiny["outcomes"]["backfill_jaggaer"]
    figures = outcome["figures"]
    assert figures["records"] > 0 and figures["created"] > 0 and figures["failed"] == 0
    assert 1.0 <= figures["calls_ratio"] <= 1.1
    assert "refused by design" in tiny["report"] and "(jaggaer_visma)" in outcome["title"]


def test_the_backfill_report_shows_the_cpu_each_process_spent(tiny: dict[str, Any]) -> None:
    for scenario in ("backfill", "backfill_asana", "backfill_monday", "backfill_acumatica", "backfill_jaggaer"):
        figures = tiny["outcomes"][scenario]["figures"]
        assert figures["cpu_s"] > 0 and figures["simulators_cpu_s"] >= 0
    assert "CPU per record" in tiny["report"]


@pytest.mark.parametrize("source", ["", "_acumatica", "_jaggaer"])
def test_incremental_requests_do_not_grow_with_any_polled_source(tiny: dict[str, Any], source: str) -> None:
    assert tiny["outcomes"]["incremental"]["figures"][f"calls_growth{source}"] == 1.0


def test_asana_look_ups_into_a_larger_project_take_no_more_requests_and_list_no_page_of_it(
        tiny: dict[str, Any]) -> None:  # fmt: skip
    outcome = tiny["outcomes"]["lookups"]
    assert outcome["figures"]["calls_growth"] == 1.0
    assert all(target["holds"] for target in outcome["targets"] if "pages" in target["name"])


def test_a_poll_run_into_a_larger_day_takes_no_more_jira_requests_and_leaves_the_audit_out(
        tiny: dict[str, Any]) -> None:  # fmt: skip
    outcome = tiny["outcomes"]["sensor_runs"]
    assert outcome["figures"]["calls_growth"] <= 1.0
    assert all(target["holds"] for target in outcome["targets"])


def test_overhead_and_peer_give_positive_ratios(tiny: dict[str, Any]) -> None:
    assert tiny["outcomes"]["overhead"]["figures"]["ratio"] > 1
    assert tiny["outcomes"]["peer"]["figures"]["pipeline_ratio"] > 0
    assert tiny["outcomes"]["peer"]["figures"]["acumatica_pipeline_ratio"] > 0
    assert tiny["outcomes"]["peer"]["figures"]["jaggaer_pipeline_ratio"] > 0
    assert tiny["outcomes"]["memory"]["figures"]["peak_rss_mb"] > 0


def test_a_rewrite_replaces_only_the_generated_block(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    write_report(report, f"{BEGIN}\nfirst\n{END}\n")
    write_section("## Webhook -> destination latency", "p50 4.2 s", report)

    write_report(report, f"{BEGIN}\nsecond\n{END}\n")

    text = report.read_text()
    assert "second" in text and "first" not in text
    assert "## Webhook -> destination latency\n\np50 4.2 s" in text


def test_the_latency_section_is_replaced_without_touching_the_generated_block(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    write_section("## Webhook -> destination latency", "p50 9 s", report)
    write_report(report, f"{BEGIN}\nfigures\n{END}\n")

    write_section("## Webhook -> destination latency", "p50 4 s", report)

    text = report.read_text()
    assert "p50 4 s" in text and "p50 9 s" not in text
    assert f"{BEGIN}\nfigures\n{END}" in text
