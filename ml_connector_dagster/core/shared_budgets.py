"""Rate budgets (and quotas a server reports) that every process of a deployment spends together, kept in
the ledger's database.

Dagster runs each run in a process of its own, and several runs may call one API at once: the runs of
a backfill, a webhook's run beside a poll's, two flows writing to one Jira. A budget kept in each
process would let every one of them spend all of it, and the API would answer with 429s. Kept here,
a reservation is one short transaction on the budget's row (``rate_budget:<system>[:<endpoint>]`` in
the key-value state of the ledger's database, or of a SQLite file beside a SQLite ledger:
:func:`budgets_url`): the GCRA step of :func:`core.http.gcra_step` on wall-clock time, so every
process, and every host reading one Postgres, draws from one bucket, and a pause one of them learns
from the server (Retry-After, a spent quota) holds the others back too.

The state is bookkeeping, not data: an unreadable value, or one that a clock jumping back left far in
the future, starts the bucket afresh.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from ml_connector_dagster.core.http import gcra_step
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.quotas import QUOTA_PREFIX, QuotaChange, decoded, encoded

__all__ = ["KEY_PREFIX", "SHARED_BUDGET_HELP", "LedgerBudgets", "budget_store", "budgets_url", "shared_budgets"]

KEY_PREFIX = "rate_budget:"
T = TypeVar("T")
# A stored time further ahead than this is not a queue of waiting requests but a clock that jumped back.
_HORIZON_S = 3600.0


class LedgerBudgets:
    """A :class:`~ml_connector_dagster.core.http.BudgetStore` in a ledger's key-value state."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @property
    def identity(self) -> str:
        """The ledger's URL, its password hidden."""
        return self._ledger.engine.url.render_as_string(hide_password=True)

    def reserve(self, budget: str, tokens: int, interval: float, burst: int, clock: Callable[[], float]) -> float:
        """Reserve ``tokens`` of ``budget`` in one transaction; the wall-clock time they are free."""

        def step(value: str | None) -> tuple[str, float]:
            now = clock()  # inside the transaction, once its lock is held
            arrival, paused_until = _state(value, now)
            arrival, ready_at = gcra_step(arrival, paused_until, now, tokens, interval, burst)
            return _encoded(arrival, paused_until), ready_at

        return self._ledger.update_state(KEY_PREFIX + budget, step)

    def update_quota(self, name: str, change: QuotaChange[T]) -> T:
        """Replace the reading of quota ``name`` (:mod:`core.quotas`) by what ``change`` makes of it, in one
        transaction; return ``change``'s result."""

        def step(value: str | None) -> tuple[str | None, T]:
            reading, result = change(decoded(value))
            return encoded(reading), result

        return self._ledger.update_state(QUOTA_PREFIX + name, step)

    def pause(self, budget: str, until: float) -> None:
        """Hold ``budget`` back until ``until`` (wall clock) for every process; a longer pause stands."""

        def step(value: str | None) -> tuple[str, None]:
            arrival, paused_until = _state(value, until)
            return _encoded(arrival, max(paused_until, until)), None

        self._ledger.update_state(KEY_PREFIX + budget, step)

    def close(self) -> None:
        """Close the ledger's pooled connections (it reconnects when used again)."""
        self._ledger.dispose()

    def __repr__(self) -> str:
        return f"LedgerBudgets({self.identity})"


def _state(value: str | None, now: float) -> tuple[float, float]:
    """(theoretical arrival, paused until) of a stored value; a fresh bucket when there is none to trust."""
    try:
        data = json.loads(value) if value else {}
        arrival, paused_until = float(data.get("arrival", now)), float(data.get("paused_until", 0.0))
    except (ValueError, TypeError, AttributeError):
        return now, 0.0
    if not (math.isfinite(arrival) and math.isfinite(paused_until)):
        return now, 0.0
    horizon = now + _HORIZON_S
    return (arrival if arrival <= horizon else now), (paused_until if paused_until <= horizon else 0.0)


def _encoded(arrival: float, paused_until: float) -> str:
    return json.dumps({"arrival": arrival, "paused_until": paused_until})


_stores: OrderedDict[tuple[int, str], LedgerBudgets] = OrderedDict()
_stores_lock = threading.Lock()
# A deployment's process uses one ledger; a test session opens many, and each store holds connections.
_OPEN_STORES = 4


def budgets_url(ledger_url: str) -> str:
    """Where the budgets of the ledger at ``ledger_url`` are kept: a SQLite file of their own beside a
    SQLite ledger (``ledger.db`` -> ``ledger.budgets.db``), the ledger itself on Postgres.

    SQLite lets one writer at a time into a file: in the ledger's own file a reservation would wait
    behind a landing page's write, and a page read ahead would be asked for only once the last one had
    landed. Postgres locks the budget's row only.
    """
    parsed = sa.make_url(ledger_url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return ledger_url
    path = Path(database)
    return parsed.set(database=str(path.with_name(f"{path.stem}.budgets{path.suffix or '.db'}"))).render_as_string(
        hide_password=False
    )


def shared_budgets(url: str | None = None) -> LedgerBudgets:
    """The budgets of the ledger at ``url`` (``None``: ``Ledger.default_url()``; see :func:`budgets_url`), one
    per process.

    The ledger is opened (and migrated) once per process and URL and kept open: a reservation then
    costs one transaction on a pooled connection. A forked child opens its own, never its parent's
    connections. Beyond a few ledgers the least recently used one's connections are closed (it
    reconnects if used again).
    """
    key = (os.getpid(), budgets_url(url or Ledger.default_url()))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = LedgerBudgets(Ledger.open(key[1]))
        _stores.move_to_end(key)
        while len(_stores) > _OPEN_STORES:
            (pid, _), evicted = _stores.popitem(last=False)
            if pid == key[0]:  # a parent's connections are its own to close, not a forked child's
                evicted.close()
        return store


SHARED_BUDGET_HELP = (
    "Keep the rate budget in the ledger's database, spent by every run and process of the deployment "
    "together (from_settings: the system's share_budget, on by default); off, each process has its own."
)


def budget_store(shared: bool, url: str | None = None) -> LedgerBudgets | None:
    """Where a resource's rate budget lives: the ledger at ``url`` when ``shared``, else None (the process)."""
    return shared_budgets(url) if shared else None
