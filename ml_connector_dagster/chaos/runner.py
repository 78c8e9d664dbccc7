"""Run many schedules, in this process or in worker processes, and sum them up."""

from __future__ import annotations

import multiprocessing
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

import dagster as dg

from .plan import Schedule, schedules_for
from .report import ChaosReport
from .schedule import ScheduleOutcome, run_schedule

__all__ = ["FLOWS", "make_schedule", "replay", "run_chaos"]

# An instance keeps every run in memory: a fresh one now and then keeps a worker's memory flat.
SCHEDULES_PER_INSTANCE = 20


def _scenarios() -> dict[str, type]:
    from .scenarios import SCENARIOS

    return SCENARIOS


FLOWS: tuple[str, ...] = ("visma_jira", "acumatica_jira", "visma_asana", "visma_monday", "jaggaer_visma")


def make_schedule(flow: str, seed: int) -> Schedule:
    """The schedule ``<flow>:<seed>`` (the same one on every machine)."""
    scenarios = _scenarios()
    if flow not in scenarios:
        raise ValueError(f"no chaos scenario for flow {flow!r} (known: {', '.join(sorted(scenarios))})")
    scenario = scenarios[flow]
    return Schedule.draw(flow, seed, scenario.fault_kinds, scenario.kills)


def parse_schedule_id(schedule_id: str) -> tuple[str, int]:
    flow, _, seed = schedule_id.partition(":")
    if not seed.isdigit():
        raise ValueError(f"a schedule id is <flow>:<seed>, not {schedule_id!r}")
    return flow, int(seed)


def replay(schedule_id: str) -> ScheduleOutcome:
    """Run the schedule ``<flow>:<seed>`` again, alone."""
    return run_schedule(make_schedule(*parse_schedule_id(schedule_id)))


class _Worker:
    """The state of one worker: its Dagster instance, renewed every :data:`SCHEDULES_PER_INSTANCE`."""

    instance: dg.DagsterInstance | None = None
    served = 0

    @classmethod
    def run(cls, flow: str, seed: int, kills: bool) -> ScheduleOutcome:
        warnings.filterwarnings("ignore")
        if cls.instance is None or cls.served >= SCHEDULES_PER_INSTANCE:
            if cls.instance is not None:
                cls.instance.dispose()
            cls.instance, cls.served = dg.DagsterInstance.ephemeral(), 0
        cls.served += 1
        schedule = make_schedule(flow, seed)
        if not kills and schedule.kill is not None:
            schedule = Schedule(
                flow=schedule.flow,
                seed=schedule.seed,
                kill=None,
                rounds=schedule.rounds,
                faults=schedule.faults,
            )
        return run_schedule(schedule, cls.instance)


def _run_in_worker(flow: str, seed: int, kills: bool) -> ScheduleOutcome:
    return _Worker.run(flow, seed, kills)


def run_chaos(
    count: int,
    master_seed: int,
    flows: Sequence[str] = FLOWS,
    *,
    workers: int = 1,
    kills: bool = True,
    command: str = "",
    on_outcome: Callable[[ScheduleOutcome], None] | None = None,
    checkpoint: Callable[[ChaosReport], None] | None = None,
    checkpoint_every: int = 25,
) -> ChaosReport:
    """``count`` schedules drawn from ``master_seed`` over ``flows``; ``on_outcome`` sees each as it ends,
    ``checkpoint`` the report so far every ``checkpoint_every`` schedules (a long run stopped early still
    leaves its figures)."""
    pairs = schedules_for(master_seed, count, list(flows))
    report = ChaosReport(command=command, master_seed=master_seed, workers=workers, planned=count)
    started = time.monotonic()

    def add(outcome: ScheduleOutcome) -> None:
        report.add(outcome)
        report.wall_seconds = time.monotonic() - started
        if on_outcome is not None:
            on_outcome(outcome)
        if checkpoint is not None and len(report.outcomes) % checkpoint_every == 0:
            checkpoint(report)

    if workers <= 1:
        for flow, seed in pairs:
            add(_run_in_worker(flow, seed, kills))
    else:
        # spawn: a worker must not inherit this process's threads (simulators, transports) half-way.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(_run_in_worker, flow, seed, kills) for flow, seed in pairs]
            for future in futures:
                add(future.result())
    report.wall_seconds = time.monotonic() - started
    return report
