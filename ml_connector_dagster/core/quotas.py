"""Quotas a server reports: so many points left until a reset, spent by every process together.

Some APIs do not publish a rate but answer, with each request, what is left of a budget and when
it is whole again (monday.com's complexity points, refilled a minute after their first spend). A
client that knows only its own answers lets two runs each spend what is left, and the second one's
request is refused. A :class:`QuotaStore` keeps the last reading where every client of the quota
sees it, and changes it atomically: :class:`LocalQuotas` for one process, the ledger's key-value
state (:meth:`~ml_connector_dagster.core.shared_budgets.LedgerBudgets.update_quota`) for a deployment.
Times are wall-clock seconds, so that processes agree on them.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["QUOTA_PREFIX", "LocalQuotas", "QuotaChange", "QuotaReading", "QuotaStore", "decoded", "encoded"]

QUOTA_PREFIX = "quota:"
T = TypeVar("T")


class QuotaReading(BaseModel):
    """What the server last said is left of a quota, when (wall clock, epoch seconds) it is whole again,
    and how much requests sent since have taken that its answers do not show yet."""

    model_config = ConfigDict(frozen=True)

    remaining: int
    resets_at: float
    in_flight: int = 0

    @property
    def available(self) -> int:
        """What a new request may still take."""
        return self.remaining - self.in_flight


QuotaChange = Callable[[QuotaReading | None], tuple[QuotaReading | None, T]]


class QuotaStore(Protocol):
    """Where a quota's reading is kept: ``update_quota`` replaces it atomically (None forgets it)."""

    def update_quota(self, name: str, change: QuotaChange[T]) -> T: ...


class LocalQuotas:
    """Quota readings of this process only (its threads share them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readings: dict[str, QuotaReading] = {}

    def update_quota(self, name: str, change: QuotaChange[T]) -> T:
        with self._lock:
            reading, result = change(self._readings.get(name))
            if reading is None:
                self._readings.pop(name, None)
            else:
                self._readings[name] = reading
            return result


def decoded(value: str | None) -> QuotaReading | None:
    """A stored reading; None when there is none, or none to trust (bookkeeping, not data)."""
    if not value:
        return None
    try:
        reading = QuotaReading.model_validate(json.loads(value))
    except (ValueError, ValidationError):
        return None
    return reading if math.isfinite(reading.resets_at) else None


def encoded(reading: QuotaReading | None) -> str | None:
    """The stored form of a reading (None: nothing kept)."""
    return None if reading is None else reading.model_dump_json()
