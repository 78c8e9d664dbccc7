"""The chaos suite's CI slice: fifty schedules over every flow, faults and kills included, must leave no
duplicate, no lost change, no wrong value and no secret behind (the full run: docs/reliability.md)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ml_connector_dagster.chaos.plan import FaultKind, KillKind, Schedule, draw_fault_plans
from ml_connector_dagster.chaos.report import ChaosReport
from ml_connector_dagster.chaos.runner import FLOWS, make_schedule, run_chaos
from ml_connector_dagster.chaos.scenarios import SCENARIOS
from ml_connector_dagster.chaos.schedule import ScheduleOutcome
from ml_connector_dagster.chaos.verdict import compare
from ml_connector_dagster.cli import main

SLICE = 50
SLICE_SEED = 2026


# About three minutes on two idle cores; the margin is for a shared CI runner.
@pytest.mark.timeout(900)
def test_fifty_schedules_leave_no_duplicate_no_loss_no_wrong_value_and_no_secret() -> None:
    report = run_chaos(SLICE, SLICE_SEED, FLOWS, workers=2)

    assert report.ok, report.failures_text()
    assert report.final_line() == f"{SLICE} schedules, 0 duplicates, 0 lost, 0 mismatched"
    total = report.total()
    assert set(report.per_flow()) == set(FLOWS)
    assert total.secrets == 0 and total.errors == 0
    assert total.kills >= 1, "no process was killed while it worked"
    assert sum(total.faults.values()) >= 10 * SLICE, "the storms hardly injected anything"
    assert total.checked >= 5 * SLICE


def test_every_flow_has_a_scenario_and_every_scenario_injects_faults() -> None:
    assert set(SCENARIOS) == set(FLOWS)
    assert all(any(scenario.fault_kinds.values()) for scenario in SCENARIOS.values())


def test_a_seed_draws_the_same_schedule_and_fault_plans_everywhere() -> None:
    first, again = make_schedule("visma_jira", 4242), make_schedule("visma_jira", 4242)
    kinds = SCENARIOS["visma_jira"].fault_kinds

    assert first == again
    assert draw_fault_plans(first, 0, kinds) == draw_fault_plans(again, 0, kinds)


def test_a_kill_schedule_leaves_out_the_faults_that_hang_a_served_simulator() -> None:
    kills = [make_schedule("visma_monday", seed) for seed in range(200)]
    killing = [schedule for schedule in kills if schedule.kill is not None]

    assert killing, "no kill schedule among 200 seeds"
    hanging = {FaultKind.TIMEOUT_BEFORE, FaultKind.TIMEOUT_AFTER, FaultKind.RESET}
    assert all(not hanging & set(schedule.faults) for schedule in killing)


def test_missing_objects_are_lost_extra_copies_duplicates_and_wrong_values_mismatches() -> None:
    expected = {"A": {"amount": 10.0}, "B": {"amount": 20.0}, "C": {"amount": 30.0}}
    actual = {"A": [{"amount": 10.001}], "B": [{"amount": 20.0}, {"amount": 20.0}, {"amount": 20.0}],
              "C": [{"amount": 31.0}], "D": [{"amount": 1.0}]}  # fmt: skip

    verdict = compare("issue", {**expected, "E": {"amount": 1.0}}, actual)

    assert verdict.lost == ["issue E: missing"]
    assert verdict.duplicates == ["issue B: 3 copies", "issue B: 3 copies"]
    assert verdict.mismatched == ["issue C: amount 31.0 != 30.0", "issue D: exists but should not"]


def test_the_report_ends_with_the_figure_and_fails_on_any_problem() -> None:
    report = ChaosReport(command="ml-connector chaos", master_seed=1)
    report.add(ScheduleOutcome(id="visma_jira:1", flow="visma_jira", kill=None, faults={"rate_limit_429": 3}))
    report.add(
        ScheduleOutcome(
            id="visma_jira:2",
            flow="visma_jira",
            kill=KillKind.RUN_WORKER.value,
            kills=1,
            lost=["issue X: missing"],
        )
    )

    assert report.final_line() == "2 schedules, 0 duplicates, 1 lost, 0 mismatched"
    assert not report.ok
    assert "visma_jira:2" in report.failures_text()
    assert "| rate_limit_429 | 3 | 3 |" in report.markdown()


def test_the_command_prints_the_figure_last_and_exits_zero_when_nothing_is_wrong() -> None:
    result = CliRunner().invoke(main, ["chaos", "--schedules", "1", "--flow", "jaggaer_visma", "--no-kills",
                                       "--seed", "3"])  # fmt: skip

    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "1 schedules, 0 duplicates, 0 lost, 0 mismatched"


def test_a_schedule_id_that_names_no_scenario_is_refused_with_the_known_ones() -> None:
    result = CliRunner().invoke(main, ["chaos", "--replay", "visma_excel:12"])

    assert result.exit_code == 2
    assert "visma_jira" in result.output


def test_a_schedule_is_its_flow_and_seed() -> None:
    assert Schedule(flow="visma_asana", seed=7).id == "visma_asana:7"


def test_a_report_written_before_the_run_ends_says_how_far_it_got() -> None:
    report = ChaosReport(command="ml-connector chaos --schedules 4", master_seed=1, planned=4)
    report.add(ScheduleOutcome(id="visma_jira:1", flow="visma_jira", kill=None))

    assert "**Partial: 1 of the 4 schedules asked for**" in report.markdown()
    report.outcomes *= 4
    assert "Partial" not in report.markdown()
