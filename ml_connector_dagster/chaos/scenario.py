"""A flow under chaos: its simulators, its connector.yaml, its users' work, and what the destinations should show.

Each flow has one :class:`Scenario` (``chaos/scenarios/``). The harness (:mod:`.schedule`) builds it,
puts its simulators on a network, lets its users act while faults are on, lets the code location
converge with the faults off, and asks it for the :class:`~.verdict.Verdict`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import httpx

from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, ConnectorConfig, load_config
from ml_connector_dagster.core.consent import CodeFlow
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.sandbox.framework import Simulator
from ml_connector_dagster.sandbox.visma import VismaSimulator

from .daemon import Daemon
from .plan import FaultKind, KillKind, Schedule
from .verdict import Verdict

__all__ = [
    "HTTP_FAULTS",
    "SOURCE_STEPS",
    "UNLIMITED",
    "WEBHOOK_FAULTS",
    "Scenario",
    "consent_again",
    "visma_system",
]

# What every simulator injects at the HTTP layer.
HTTP_FAULTS = (FaultKind.RATE_LIMIT, FaultKind.SERVER_ERROR, FaultKind.TIMEOUT_BEFORE, FaultKind.TIMEOUT_AFTER,
               FaultKind.RESET, FaultKind.TOKEN_EXPIRY)  # fmt: skip
WEBHOOK_FAULTS = (FaultKind.WEBHOOK_DROPPED, FaultKind.WEBHOOK_DUPLICATED, FaultKind.WEBHOOK_REORDERED)
# Unlimited budgets: the simulators' own limits and the injected 429s are what the clients must handle.
UNLIMITED = {"rate_per_s": 10_000, "burst": 10_000, "timeout_s": 5}
# A source's step retries at the pace of the flows' steps here (seconds, not the default tens of seconds).
SOURCE_STEPS = {"op_retries": 3, "op_retry_delay_s": 0.2}


class Scenario:
    """One flow's world under chaos. Subclasses fill in the class attributes and the abstract methods."""

    flow: ClassVar[str]
    # simulator name -> the fault kinds it can inject
    fault_kinds: ClassVar[Mapping[str, Sequence[FaultKind]]]
    kills: ClassVar[Sequence[KillKind]] = (KillKind.RUN_WORKER, KillKind.SENSOR_DAEMON, KillKind.RECEIVER)
    # The destination assets' group: sensors whose runs reach it are ticked.
    group: ClassVar[str]
    # Sensors ticked besides the poll sensors feeding the group (return paths, the inbox).
    extra_sensors: ClassVar[Sequence[str]] = ("inbox_sensor",)
    replay_jobs: ClassVar[Sequence[str]] = ()
    replay_assets: ClassVar[Sequence[str]] = ()
    # The simulators the flow writes to (a run worker is killed at its k-th write to them) and the one
    # whose webhooks the receiver takes (killed after k deliveries).
    destinations: ClassVar[Sequence[str]] = ()
    webhook_source: ClassVar[str] = ""
    # How long after the last write a poll may still miss it (a lagging search index): convergence
    # looks once more after that long before it calls the flow quiet.
    settle_s: ClassVar[float] = 0.0

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.simulators: dict[str, Simulator] = {}
        self.notes: list[str] = []
        self._replayed: set[int] = set()

    # -- to be provided by each flow -------------------------------------------------------------
    def build(
        self,
        webhook_base: str,
        webhook_transport: httpx.BaseTransport | None,
        *,
        webhook_time_scale: float = 0.001,
    ) -> dict[str, Simulator]:
        """Create the simulators (deliveries to ``<webhook_base>/webhooks/<system>``, their retry delays
        times ``webhook_time_scale``)."""
        raise NotImplementedError

    def connector_config(self, urls: Mapping[str, str], receiver_url: str) -> dict[str, Any]:
        """connector.yaml for the simulators at ``urls``."""
        raise NotImplementedError

    def act(self, rng: random.Random, round_number: int) -> None:
        """One round of the users' work in the source (and, for return paths, in the destination)."""
        raise NotImplementedError

    def verdict(self) -> Verdict:
        """The destinations against what the sources' final state says they should be."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------
    def visma_simulator(
        self,
        webhook_base: str,
        webhook_transport: httpx.BaseTransport | None,
        webhook_time_scale: float,
        *,
        size: int = 5,
    ) -> VismaSimulator:
        """The schedule's Visma.net tenant (a few hours of its seed's business), its webhooks to the receiver."""
        return VismaSimulator(
            seed=self.schedule.seed % 1000,
            size=size,
            days=0.25,
            webhook_url=f"{webhook_base}/webhooks/visma",
            time_scale=webhook_time_scale,
            webhook_transport=webhook_transport,
        )

    def shipped_flow(self, **changes: Any) -> dict[str, Any]:
        """The flow's settings as connector.sandbox.yaml ships them, retried at the harness's pace, with
        ``changes``."""
        shipped = load_config(SANDBOX_CONFIG_PATH).model_dump(mode="json", exclude_none=True)["flows"]
        return {**shipped[self.flow], "op_retries": 4, "op_retry_delay_s": 0.2, **changes}

    def config_with(
        self, systems: Mapping[str, Any], flow_settings: Mapping[str, Any], *, size: int = 5
    ) -> dict[str, Any]:
        """connector.yaml running this flow alone on ``systems``, the inbox read as soon as it fills."""
        return {
            "sandbox": {"days": 2, "size": size, "seed": self.schedule.seed % 1000},
            "systems": dict(systems),
            "flows": {self.flow: dict(flow_settings)},
            "webhooks": {"inbox_wait_s": 0},
        }

    def flush_webhooks(self) -> None:
        """Let every simulator's queued deliveries (held-back ones included) go out."""
        for simulator in self.simulators.values():
            flush = getattr(simulator, "flush_webhooks", None)
            if flush is not None:
                flush(10)

    def prepare(self, daemon: Daemon) -> None:
        """What an operator does once before the flow runs (a job to launch, reference data to land)."""

    def recover(self, config: ConnectorConfig, ledger: Ledger, client: httpx.Client) -> None:
        """What an operator does once an outage is over, besides re-running (e.g. consenting again)."""

    def open_dead_letters(self, ledger: Ledger) -> set[int]:
        """The open dead letters the flow's replay jobs handle, by id."""
        return {letter.id for asset in self.replay_assets for letter in ledger.open_dead_letters(asset)}

    def replay(
        self, launch_job: Callable[[str], bool], materialize: Callable[[str, str], bool], ledger: Ledger
    ) -> int:
        """What an operator does about open dead letters (docs/operations.md): launch the flow's replay
        jobs when letters appeared since the last replay (those a replay could not resolve, an unmatched
        vendor say, wait for a person to fix the mapping); how many runs that took."""
        letters = self.open_dead_letters(ledger)
        if not letters - self._replayed:
            return 0
        for job in self.replay_jobs:
            launch_job(job)
        self._replayed = self.open_dead_letters(ledger)
        return len(self.replay_jobs)

    def environ(self) -> dict[str, str]:
        """Variables the operator sets for this flow besides the sandbox's demo credentials."""
        return {}

    def close(self) -> None:
        for simulator in self.simulators.values():
            simulator.close()

    def note(self, text: str) -> None:
        self.notes.append(text)


def visma_system(urls: Mapping[str, str]) -> dict[str, Any]:
    """connector.yaml's ``systems.visma`` for the simulated tenant at ``urls["visma"]``."""
    return {"mode": "sandbox", "base_url": urls["visma"], "token_url": f"{urls['visma']}/connect/token",
            "page_size": 50, **UNLIMITED, **SOURCE_STEPS}  # fmt: skip


def consent_again(flow: CodeFlow, vault_key: str, ledger: Ledger, home: Any, client: httpx.Client) -> None:
    """``ml-connector auth <system>`` as an operator runs it: open the authorize URL, consent, paste the
    address the browser lands on; the new token goes into the vault."""
    vault = Vault.from_env(ledger.engine, sandbox=True, home=home)
    request = flow.begin(vault)
    answer = client.get(request.url, follow_redirects=False).headers["location"]
    grant = flow.complete(vault, answer)
    vault.put(vault_key, flow.token_to_keep(grant))
