"""One chaos schedule from start to verdict: storm, convergence, comparison, secret scan.

1. **Storm** (``schedule.rounds`` rounds): each round installs fresh fault plans on the flow's
   simulators, lets the users act (:meth:`Scenario.act`), lets the webhooks go out, and ticks the
   sensors that feed the flow, launching what they request (a failed run is retried once).
2. **Convergence**: faults off; the operator's part (consent again after a revoked refresh token);
   then, until a round finds nothing to do: failed runs re-executed, webhooks delivered, sensors
   ticked, replay jobs launched while dead letters are open. Never anything the product does not do.
3. **Verdict**: every destination against the sources' final state (:meth:`Scenario.verdict`).
4. **Secrets**: every secret the schedule used (simulators' credentials, every token they issued) is
   looked for in the runs' configs, tags and event logs (metadata, errors with their stacks, log lines),
   the captured Python log records and the errors the harness saw.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

from ml_connector_dagster.config import parse_config
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.definitions import build_definitions, use_sandbox_credentials
from ml_connector_dagster.webhooks.configured import configured_receiver

from .daemon import Daemon
from .network import InProcessNetwork, attached, scoped_environ
from .plan import Schedule, draw_fault_plans
from .scenario import Scenario
from .secrets import LogCollector, SecretCheck

__all__ = ["CONVERGENCE_ROUNDS", "ScheduleOutcome", "run_schedule"]

CONVERGENCE_ROUNDS = 8
RECEIVER = "receiver"


@dataclass
class ScheduleOutcome:
    """What one schedule injected, what it left wrong, and what it cost."""

    id: str
    flow: str
    kill: str | None
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    runs: int = 0
    failed_runs: int = 0
    checked: int = 0
    seconds: float = 0.0
    converged_in: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.mismatched or self.secrets or self.error)

    def summary(self) -> str:
        """One line per problem, for the terminal and for a regression test's message."""
        lines = [
            f"schedule {self.id} (kill: {self.kill or '-'}; faults: {dict(sorted(self.faults.items()))})"
        ]
        lines += [f"  duplicate: {d}" for d in self.duplicates]
        lines += [f"  lost: {d}" for d in self.lost]
        lines += [f"  mismatched: {d}" for d in self.mismatched]
        lines += [f"  secret: {d}" for d in self.secrets]
        if self.error:
            lines.append(f"  harness error: {self.error}")
        return "\n".join(lines)


def _scenario(schedule: Schedule) -> Scenario:
    from .scenarios import SCENARIOS

    return SCENARIOS[schedule.flow](schedule)


def run_schedule(schedule: Schedule, instance: dg.DagsterInstance | None = None) -> ScheduleOutcome:
    """Run ``schedule`` in this process (its kill, if any, on real processes) and judge the result."""
    started = time.monotonic()
    outcome = ScheduleOutcome(id=schedule.id, flow=schedule.flow, kill=schedule.kill)
    scenario = _scenario(schedule)
    with tempfile.TemporaryDirectory(prefix="ml-connector-chaos-") as home, _captured_logs() as logs:
        try:
            if schedule.kill is not None:
                from .kills import run_killing

                run_killing(schedule, scenario, Path(home), outcome, logs)
            else:
                owned = instance is None
                instance = instance or dg.DagsterInstance.ephemeral()
                try:
                    _run_in_process(schedule, scenario, Path(home), instance, outcome, logs)
                finally:
                    if owned:
                        instance.dispose()
        except Exception as exc:  # noqa: BLE001 - a harness failure is reported, never mistaken for a pass
            logging.getLogger("ml_connector.chaos").exception("schedule %s", schedule.id)
            outcome.error = f"{type(exc).__name__}: {exc}"
        finally:
            scenario.close()
            for simulator in scenario.simulators.values():
                for kind, count in simulator.fault_counts.items():
                    outcome.faults[kind] = outcome.faults.get(kind, 0) + count
    outcome.notes = scenario.notes
    outcome.seconds = round(time.monotonic() - started, 2)
    return outcome


def schedule_environ(
    scenario: Scenario, config_dict: dict[str, Any], home: Path
) -> tuple[Any, dict[str, str]]:
    """The parsed connector.yaml and the environment of one schedule (its ledger, its demo credentials)."""
    config = parse_config(config_dict)
    environ = {"ML_CONNECTOR_HOME": str(home), "ML_CONNECTOR_DB_URL": f"sqlite:///{home / 'ledger.db'}"}
    credentials: dict[str, str] = {}
    use_sandbox_credentials(config, credentials)
    return config, {**environ, **credentials, **scenario.environ()}


def _run_in_process(
    schedule: Schedule,
    scenario: Scenario,
    home: Path,
    instance: dg.DagsterInstance,
    outcome: ScheduleOutcome,
    logs: LogCollector,
) -> None:
    network = InProcessNetwork()
    try:
        simulators = scenario.build(f"http://{RECEIVER}.chaos", network)
        urls = {name: network.add(name, simulator.app) for name, simulator in simulators.items()}
        config, environ = schedule_environ(
            scenario, scenario.connector_config(urls, f"http://{RECEIVER}.chaos"), home
        )
        with scoped_environ(environ), attached(network), Ledger.open() as ledger:
            network.add(RECEIVER, configured_receiver(config, ledger))
            daemon = Daemon(build_definitions(config), instance)
            with httpx.Client(transport=network, timeout=10) as operator:
                drive(schedule, scenario, daemon, config, ledger, operator, outcome)
            check = SecretCheck.of(simulators.values(), environ)
            outcome.secrets = check.findings(daemon, logs.texts)
    finally:
        network.close()


def drive(
    schedule: Schedule,
    scenario: Scenario,
    daemon: Daemon,
    config: Any,
    ledger: Ledger,
    operator: httpx.Client,
    outcome: ScheduleOutcome,
    *,
    killer: Any = None,
) -> None:
    """Storm, convergence and verdict of one schedule on a running stack (in process or on sockets)."""
    simulators = scenario.simulators
    sensors = [*daemon.sensors_reaching(scenario.group), *scenario.extra_sensors]
    sensors = [name for name in dict.fromkeys(sensors) if name in daemon.sensor_names()]
    rng = schedule.rng("workload")
    scenario.prepare(daemon)
    for round_number in range(schedule.rounds):
        for name, plan in draw_fault_plans(schedule, round_number, scenario.fault_kinds).items():
            simulators[name].set_faults(plan)
        if killer is not None:
            killer.before_round(round_number)
        scenario.act(rng, round_number)
        scenario.flush_webhooks()
        if killer is not None:
            killer.tick_round(round_number, daemon, sensors)
        else:
            for sensor in sensors:
                daemon.tick(sensor)
    for simulator in simulators.values():
        simulator.clear_faults()
    scenario.flush_webhooks()
    scenario.recover(config, ledger, operator)
    settled = False
    for round_number in range(1, CONVERGENCE_ROUNDS + 1):
        work = daemon.retry_failed()
        scenario.flush_webhooks()
        work += sum(daemon.tick(sensor) for sensor in sensors)
        work += scenario.replay(daemon.launch_job, daemon.materialize_group, ledger)
        outcome.converged_in = round_number
        if work or daemon.failed:
            settled = False
        elif settled or not scenario.settle_s:
            break
        else:
            # Quiet, but a search index may still be catching up with the last writes: the daemon's
            # next ticks come later anyway, so look once more after that lag.
            time.sleep(scenario.settle_s)
            settled = True
    verdict = scenario.verdict()
    outcome.duplicates, outcome.lost, outcome.mismatched = (
        verdict.duplicates,
        verdict.lost,
        verdict.mismatched,
    )
    outcome.checked = verdict.checked
    outcome.runs, outcome.failed_runs = daemon.runs, daemon.failed_runs
    if daemon.failed:
        scenario.note(f"{len(daemon.failed)} run(s) still failing after convergence")
    scenario.notes += [f"error: {error}" for error in daemon.errors]


@contextlib.contextmanager
def _captured_logs() -> Iterator[LogCollector]:
    """Every Python log record of the schedule (ml_connector's down to DEBUG), kept for the secret scan."""
    collector = LogCollector()
    root, ours = logging.getLogger(), logging.getLogger("ml_connector")
    levels = (root.level, ours.level)
    root.addHandler(collector)
    root.setLevel(logging.INFO)
    ours.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
