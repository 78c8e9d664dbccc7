"""What one chaos schedule does, decided by its seed alone: the flow, the faults, the kill, the workload's dice.

A schedule id is ``<flow>:<seed>``; :meth:`Schedule.from_id` rebuilds the same schedule, so a failing
one is replayed with ``ml-connector chaos --replay <id>`` and pinned in a regression test by its id.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from ml_connector_dagster.sandbox.framework import FaultPlan

__all__ = [
    "FaultKind",
    "KillKind",
    "Schedule",
    "draw_fault_plans",
    "schedules_for",
]


class FaultKind(StrEnum):
    """Every fault the simulators can inject, named as they count it (``fault_counts``)."""

    RATE_LIMIT = "rate_limit_429"
    SERVER_ERROR = "server_error_5xx"
    TIMEOUT_BEFORE = "timeout_before_apply"
    TIMEOUT_AFTER = "timeout_after_apply"
    RESET = "connection_reset"
    TOKEN_EXPIRY = "token_expiry"
    REFRESH_REVOKED = "refresh_token_revoked"
    WEBHOOK_DROPPED = "webhook_dropped"
    WEBHOOK_DUPLICATED = "webhook_duplicated"
    WEBHOOK_REORDERED = "webhook_reordered"
    ETAG_RACE = "etag_412_race"
    SEARCH_INDEX_DELAY = "search_index_delay"
    ACTION_INTERRUPTED = "action_interrupted"


class KillKind(StrEnum):
    """The processes a kill schedule SIGKILLs."""

    RUN_WORKER = "run_worker_killed"
    SENSOR_DAEMON = "sensor_daemon_killed"
    RECEIVER = "receiver_killed"


# Kinds that hang a served simulator's answer: kill schedules (served on sockets) leave them out, as a
# client's timeout there costs real seconds.
_HANGING = frozenset({FaultKind.TIMEOUT_BEFORE, FaultKind.TIMEOUT_AFTER, FaultKind.RESET})
KILL_SHARE = 0.1
ROUNDS = (2,)


@dataclass(frozen=True)
class Schedule:
    """One chaos schedule: a flow, a seed, and (for a share of schedules) a process to kill."""

    flow: str
    seed: int
    kill: KillKind | None = None
    rounds: int = 2
    faults: tuple[FaultKind, ...] = ()

    @property
    def id(self) -> str:
        """``<flow>:<seed>``: all it takes to run this schedule again."""
        return f"{self.flow}:{self.seed}"

    def rng(self, purpose: str) -> random.Random:
        """A generator for one purpose of this schedule (the workload, the faults of a round ...)."""
        return random.Random(f"{self.flow}:{self.seed}:{purpose}")

    @classmethod
    def draw(
        cls, flow: str, seed: int, kinds: Mapping[str, Sequence[FaultKind]], kills: Sequence[KillKind]
    ) -> Schedule:
        """The schedule of ``flow`` and ``seed``: ``kinds`` are the faults each of the flow's simulators
        can inject, ``kills`` the processes the flow has."""
        rng = random.Random(f"{flow}:{seed}")
        kill = rng.choice(list(kills)) if kills and rng.random() < KILL_SHARE else None
        available = sorted({kind for sim_kinds in kinds.values() for kind in sim_kinds})
        if kill is not None:
            available = [kind for kind in available if kind not in _HANGING]
        chosen = rng.sample(available, k=min(len(available), rng.randint(1, 4)))
        return cls(flow=flow, seed=seed, kill=kill, rounds=rng.choice(ROUNDS), faults=tuple(sorted(chosen)))


def schedules_for(master_seed: int, count: int, flows: Sequence[str]) -> list[tuple[str, int]]:
    """``count`` (flow, seed) pairs from ``master_seed``: flows in turn, so each gets its share."""
    rng = random.Random(master_seed)
    return [(flows[index % len(flows)], rng.getrandbits(31)) for index in range(count)]


@dataclass
class _Intensity:
    """How hard each kind hits, drawn once per schedule and round."""

    rng: random.Random

    def rate(self, low: float, high: float) -> float:
        return round(self.rng.uniform(low, high), 3)


def draw_fault_plans(
    schedule: Schedule, round_number: int, kinds: Mapping[str, Sequence[FaultKind]], *, hang_s: float = 0.0
) -> dict[str, FaultPlan]:
    """The fault plan of each simulator for one storm round of ``schedule`` (those without faults: none).

    Token expiry and a revoked refresh token happen once, in the first round (a revocation lasts until
    someone consents again); the rates and bursts are drawn again each round.
    """
    rng = schedule.rng(f"faults:{round_number}")
    intensity = _Intensity(rng)
    plans: dict[str, FaultPlan] = {}
    for simulator, possible in sorted(kinds.items()):
        active = [kind for kind in schedule.faults if kind in possible]
        if not active:
            continue
        settings: dict[str, object] = {"seed": rng.getrandbits(31), "hang_s": hang_s, "retry_after_s": 0}
        for kind in active:
            settings.update(_settings(kind, intensity, first_round=round_number == 0))
        if rng.random() < 0.3 and not _touches_tokens(active):
            settings["methods"] = ["POST", "PUT", "PATCH", "DELETE"]  # writes only: the hardest part
        plans[simulator] = FaultPlan.model_validate(settings)
    return plans


def _touches_tokens(active: Iterable[FaultKind]) -> bool:
    return any(kind in (FaultKind.TOKEN_EXPIRY, FaultKind.REFRESH_REVOKED) for kind in active)


def _settings(kind: FaultKind, intensity: _Intensity, *, first_round: bool) -> dict[str, object]:
    rate = intensity.rate
    match kind:
        case FaultKind.RATE_LIMIT:
            return {"rate_limit_burst": intensity.rng.randint(1, 6)}
        case FaultKind.SERVER_ERROR:
            return {"error_rate": rate(0.05, 0.3), "error_status": intensity.rng.choice([500, 502, 503, 504])}
        case FaultKind.TIMEOUT_BEFORE:
            return {"timeout_before_rate": rate(0.05, 0.25)}
        case FaultKind.TIMEOUT_AFTER:
            return {"timeout_after_rate": rate(0.05, 0.25)}
        case FaultKind.RESET:
            return {"reset_rate": rate(0.05, 0.2)}
        case FaultKind.TOKEN_EXPIRY:
            return {"expire_tokens": first_round}
        case FaultKind.REFRESH_REVOKED:
            return {"revoke_refresh_tokens": first_round}
        case FaultKind.WEBHOOK_DROPPED:
            return {"webhook_drop_rate": rate(0.2, 0.8)}
        case FaultKind.WEBHOOK_DUPLICATED:
            return {"webhook_duplicate_rate": rate(0.2, 0.8)}
        case FaultKind.WEBHOOK_REORDERED:
            return {"webhook_reorder_rate": rate(0.3, 0.9)}
        case FaultKind.ETAG_RACE:
            return {"etag_race_rate": rate(0.3, 0.8)}
        case FaultKind.SEARCH_INDEX_DELAY:
            return {"search_index_delay_s": rate(0.2, 0.6)}
        case FaultKind.ACTION_INTERRUPTED:
            return {"action_interrupt_rate": rate(0.3, 0.8)}
    raise ValueError(f"unknown fault kind {kind!r}")
