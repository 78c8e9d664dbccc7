"""Kill schedules: the simulators on sockets, and a real process of the connector SIGKILLed while it works.

- **run worker**: one run of the storm executes in its own process (:mod:`.worker`), killed once a
  destination simulator has received its k-th write of that run (k in 1..3): a push dies half-way,
  its ``finally`` blocks never run. The instance's run monitoring then marks the run failed and run
  retries execute it again (here: the harness's daemon, in process).
- **sensor daemon**: one tick is evaluated in its own process and killed mid-tick: once a poll sensor
  has asked its source, or once the inbox sensor has marked its events processed, before the daemon
  could commit the tick. The restarted daemon ticks again from the last committed cursor.
- **webhook receiver**: ``ml-connector webhooks serve`` runs as its own process, killed once the source
  has delivered k webhooks to it, and restarted on the same port a moment later; the source retries
  its deliveries meanwhile (and may give up: polling is the guarantee).

A kill is counted only when the process was really SIGKILLed while it still worked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import yaml
from dagster._serdes import deserialize_value

import ml_connector_dagster
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.sandbox.serve import ServedApp, ServedSimulator
from ml_connector_dagster.webhooks.configured import configured_receiver

from .daemon import Daemon, RunAttempt
from .network import attached, scoped_environ
from .plan import KillKind, Schedule
from .scenario import Scenario
from .secrets import LogCollector, SecretCheck

__all__ = ["run_killing"]

PROJECT_ROOT = Path(ml_connector_dagster.__file__).resolve().parent.parent
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CHILD_TIMEOUT_S = 120.0
RECEIVER_DOWN_S = 0.5
# Served webhooks retry for real: slow enough that a restarted receiver gets some of them again.
KILL_WEBHOOK_TIME_SCALE = 0.05


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Child:
    """A process of the connector that the harness may SIGKILL."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.process = subprocess.Popen([sys.executable, *argv], env=dict(env), cwd=PROJECT_ROOT,
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)  # fmt: skip

    def kill_when(self, trigger: Callable[[], bool], timeout_s: float = CHILD_TIMEOUT_S) -> bool:
        """SIGKILL the process as soon as ``trigger()`` holds; True when it was killed (False: it ended first)."""
        deadline = time.monotonic() + timeout_s
        try:
            while self.process.poll() is None:
                if trigger() or time.monotonic() > deadline:
                    os.kill(self.process.pid, signal.SIGKILL)
                    self.process.wait()
                    return True
                time.sleep(0.005)
            return False
        finally:
            self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _writes(simulator: Any) -> int:
    with simulator.lock:
        return sum(
            1 for request in simulator.requests if request.method in WRITES and "token" not in request.path
        )


def _requests(simulator: Any) -> int:
    with simulator.lock:
        return len(simulator.requests)


class Killer:
    """Does the kill of one schedule in its chosen storm round."""

    def __init__(self, schedule: Schedule, scenario: Scenario, home: Path, config_path: Path) -> None:
        self.schedule = schedule
        self.scenario = scenario
        self.home = home
        self.config_path = config_path
        rng = schedule.rng("kill")
        self.round = rng.randrange(schedule.rounds)
        self.nth = rng.randint(1, 3)
        self.kills = 0
        self.receiver: Child | None = None
        self.receiver_port = _free_port()
        self._watcher: threading.Thread | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ML_CONNECTOR_CONFIG": str(self.config_path),
            "PYTHONPATH": str(PROJECT_ROOT),
            "ML_CONNECTOR_NO_PROGRESS": "1",
        }

    def _child(self, *argv: str) -> Child:
        return Child(list(argv), self.env(), self.home / "children.log")

    # -- the receiver ----------------------------------------------------------------------------
    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    def start_receiver(self) -> None:
        """``ml-connector webhooks serve`` in its own process, answering once it listens."""
        self.receiver = self._child(
            "-m",
            "ml_connector_dagster.cli",
            "webhooks",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.receiver_port),
        )
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.receiver_url}/webhooks/_stats", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the webhook receiver did not start")

    def stop_receiver(self) -> None:
        if self._watcher is not None:
            self._watcher.join(timeout=CHILD_TIMEOUT_S)
        if self.receiver is not None:
            self.receiver.stop()

    def _kill_receiver_after(self, source: Any, delivered_before: int) -> None:
        def delivered() -> bool:
            with source.lock:
                return (
                    sum(1 for d in source.deliveries if d["outcome"] == "delivered")
                    >= delivered_before + self.nth
                )

        assert self.receiver is not None
        if self.receiver.kill_when(delivered, timeout_s=5):
            self.kills += 1
            self.scenario.note(f"killed the webhook receiver after {self.nth} deliveries")
        time.sleep(RECEIVER_DOWN_S)
        self.start_receiver()

    # -- hooks of the storm ------------------------------------------------------------------------
    def before_round(self, round_number: int) -> None:
        if self.schedule.kill is not KillKind.RECEIVER or round_number != self.round:
            return
        source = self.scenario.simulators[self.scenario.webhook_source]
        with source.lock:
            before = sum(1 for d in source.deliveries if d["outcome"] == "delivered")
        self._watcher = threading.Thread(target=self._kill_receiver_after, args=(source, before), daemon=True)
        self._watcher.start()

    def tick_round(self, round_number: int, daemon: Daemon, sensors: list[str]) -> None:
        if self._watcher is not None:
            self._watcher.join(timeout=CHILD_TIMEOUT_S)
            self._watcher = None
        if round_number == self.round and self.schedule.kill is KillKind.RUN_WORKER:
            self._kill_a_run(daemon, sensors)
            return
        if round_number == self.round and self.schedule.kill is KillKind.SENSOR_DAEMON:
            self._kill_a_tick(daemon, sensors)
        for sensor in sensors:
            daemon.tick(sensor)

    # -- the run worker ----------------------------------------------------------------------------
    def _kill_a_run(self, daemon: Daemon, sensors: list[str]) -> None:
        """The round's runs, each in a worker process until one is killed mid-push (a run that writes too
        little to be killed ends normally), the rest in process."""
        victim_chosen = False
        for sensor in sensors:
            evaluated = daemon.evaluate(sensor)
            if evaluated is None:
                continue
            requests, cursor = evaluated
            daemon.cursors[sensor] = cursor
            for request in requests:
                if request.run_key is not None and request.run_key in daemon.run_keys:
                    continue
                if victim_chosen:
                    daemon.launch(sensor, [request])
                    continue
                if request.run_key is not None:
                    daemon.run_keys.add(request.run_key)
                attempt = daemon.attempt_of(sensor, request)
                finished = self._run_in_child(attempt)
                victim_chosen = self.kills > 0
                if not finished:
                    daemon.run_with_retry(attempt)  # run monitoring marks it failed; run retries run it again

    def _run_in_child(self, attempt: RunAttempt) -> bool:
        """The run in a worker process, killed at its k-th write; True when it ended by itself, succeeded."""
        spec = self.home / "run.json"
        spec.write_text(json.dumps({
            "job_name": attempt.job_name, "run_config": dict(attempt.run_config), "partition_key": attempt.partition_key,
            "asset_selection": [list(key.path) for key in attempt.asset_selection or []],
            "tags": dict(attempt.tags),
        }), encoding="utf-8")  # fmt: skip
        destinations = [self.scenario.simulators[name] for name in self.scenario.destinations]
        before = sum(_writes(simulator) for simulator in destinations)
        child = self._child("-m", "ml_connector_dagster.chaos.worker", "run", str(spec))
        killed = child.kill_when(lambda: sum(_writes(s) for s in destinations) >= before + self.nth)
        if killed:
            self.kills += 1
            self.scenario.note(f"killed the run worker of {attempt.origin} at its write {self.nth}")
            return False
        return child.process.returncode == 0

    # -- the sensor daemon -------------------------------------------------------------------------
    def _kill_a_tick(self, daemon: Daemon, sensors: list[str]) -> None:
        with Ledger.open() as ledger:
            waiting = len(ledger.inbox_after(0))
        sensor = "inbox_sensor" if waiting and "inbox_sensor" in sensors else sensors[0]
        simulators = list(self.scenario.simulators.values())
        spec = self.home / "tick.json"
        result = self.home / "tick-result.json"
        spec.write_text(json.dumps({"sensor": sensor, "cursor": daemon.cursors.get(sensor),
                                    "result": str(result)}), encoding="utf-8")  # fmt: skip
        asked = sum(_requests(simulator) for simulator in simulators)

        def mid_tick() -> bool:
            if sensor == "inbox_sensor":
                with Ledger.open() as ledger:
                    return len(ledger.inbox_after(0)) < waiting
            return sum(_requests(simulator) for simulator in simulators) > asked

        child = self._child("-m", "ml_connector_dagster.chaos.worker", "tick", str(spec))
        if child.kill_when(mid_tick):
            self.kills += 1
            self.scenario.note(f"killed the sensor daemon mid-tick of {sensor}")
            return
        if child.process.returncode == 0 and result.exists():
            # The tick ended before the kill could land: the daemon commits it as usual.
            outcome = json.loads(result.read_text(encoding="utf-8"))
            daemon.cursors[sensor] = outcome["cursor"]
            daemon.launch(sensor, deserialize_value(outcome["run_requests"], list))


def run_killing(schedule: Schedule, scenario: Scenario, home: Path, outcome: Any, logs: LogCollector) -> None:
    """One kill schedule: simulators and receiver on sockets, the storm with its kill, convergence, verdict."""
    from .schedule import drive, schedule_environ

    config_path = home / "connector.yaml"
    killer = Killer(schedule, scenario, home, config_path)
    in_thread = schedule.kill is not KillKind.RECEIVER
    simulators = scenario.build(killer.receiver_url, None, webhook_time_scale=KILL_WEBHOOK_TIME_SCALE)
    servers = [ServedSimulator(simulator).start() for simulator in simulators.values()]
    receiver_thread: ServedApp | None = None
    try:
        urls = {name: server.base_url for name, server in zip(simulators, servers, strict=True)}
        config_dict = scenario.connector_config(urls, killer.receiver_url)
        config_path.write_text(yaml.safe_dump(config_dict), encoding="utf-8")
        config, environ = schedule_environ(scenario, config_dict, home)
        with (
            scoped_environ(environ),
            attached(None),
            Ledger.open() as ledger,
            dg.DagsterInstance.ephemeral() as instance,
        ):
            if in_thread:
                receiver_thread = ServedApp(
                    configured_receiver(config, ledger), "webhook receiver", "127.0.0.1", killer.receiver_port
                ).start()
            else:
                killer.start_receiver()
            daemon = Daemon(build_definitions(config), instance)
            with httpx.Client(timeout=10) as operator:
                drive(schedule, scenario, daemon, config, ledger, operator, outcome, killer=killer)
            outcome.kills = killer.kills
            if killer.kills:
                outcome.faults[schedule.kill.value] = (
                    outcome.faults.get(schedule.kill.value, 0) + killer.kills
                )
            check = SecretCheck.of(simulators.values(), environ)
            child_logs = (
                [("worker processes' output", (home / "children.log").read_text("utf-8", "replace"))]
                if (home / "children.log").exists()
                else []
            )
            outcome.secrets = check.findings(daemon, logs.texts, child_logs)
    finally:
        killer.stop_receiver()
        if receiver_thread is not None:
            receiver_thread.stop()
        for server in servers:
            server.stop()
