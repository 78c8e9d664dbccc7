"""A rate budget kept in the ledger is spent by every process together, and learns pauses for all of them."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from ml_connector_dagster.core.http import KeyedRateLimiter, RateLimiter, rate_limiter_for
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.shared_budgets import (
    KEY_PREFIX,
    LedgerBudgets,
    budget_store,
    budgets_url,
    shared_budgets,
)
from ml_connector_dagster.sandbox.jira import DEMO_API_TOKEN, DEMO_EMAIL, JiraSimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.jira.client import JiraClient, endpoint_of
from ml_connector_dagster_tests.core.test_http import FakeTime

RATE = 40.0  # tokens a second, shared by every process
TOKENS_EACH = 15
PROCESSES = 3


@pytest.fixture
def budgets(ledger_url: str) -> Iterator[LedgerBudgets]:
    with Ledger.open(ledger_url) as ledger:
        yield LedgerBudgets(ledger)


def _spend(url: str, tokens: int, released: multiprocessing.Queue) -> None:
    """One process's requests: each acquire's wall-clock release time goes to ``released``."""
    limiter = RateLimiter(RATE, 1, store=shared_budgets(url), name="vendor")
    for _ in range(tokens):
        limiter.acquire()
        released.put(time.time())


def test_processes_sharing_a_budget_never_exceed_it_together(ledger_url: str) -> None:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as a Dagster run's process is
    released: multiprocessing.Queue = context.Queue()
    workers = [context.Process(target=_spend, args=(ledger_url, TOKENS_EACH, released)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    times = sorted(released.get(timeout=60) for _ in range(PROCESSES * TOKENS_EACH))
    for worker in workers:
        worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    # The n-th request of all processes together leaves no sooner than n intervals after the first
    # (give or take the scheduling of a process: 0.4 of an interval); three processes with a budget
    # each would have sent all 45 in a third of the time.
    early = [n for n, at in enumerate(times) if at - times[0] < (n - 0.4) / RATE]
    assert early == []


def test_a_pause_learned_by_one_process_holds_back_the_others(budgets: LedgerBudgets) -> None:
    clock = FakeTime()
    first, second = (RateLimiter(100.0, 10, clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep,
                                 store=budgets, name="jira") for _ in range(2))  # fmt: skip

    first.observe(httpx.Response(429, headers={"Retry-After": "7"}))

    assert second.acquire() == pytest.approx(7)


def test_the_burst_of_a_shared_budget_is_spent_once_by_all_of_them(budgets: LedgerBudgets) -> None:
    clock = FakeTime()
    runs = [RateLimiter(2.0, 3, clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep, store=budgets,
                        name="visma") for _ in range(3)]  # fmt: skip

    waits = [run.acquire() for run in runs + runs[:2]]

    assert waits == pytest.approx([0, 0, 0, 0.5, 0.5])


def test_each_endpoint_of_a_keyed_shared_budget_is_its_own_budget(budgets: LedgerBudgets) -> None:
    clock = FakeTime()
    runs = [KeyedRateLimiter(10.0, 1, endpoint_of, clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep,
                             store=budgets, name="jira") for _ in range(2)]  # fmt: skip
    bulk = httpx.Request("POST", "https://x.test/rest/api/3/issue/bulk")
    search = httpx.Request("POST", "https://x.test/rest/api/3/search/jql")

    waits = [runs[0].for_request(bulk).acquire(), runs[1].for_request(search).acquire(),
             runs[1].for_request(bulk).acquire()]  # fmt: skip

    assert waits == pytest.approx([0, 0, 0.1])
    assert set(budgets._ledger.states_under(KEY_PREFIX)) == {
        f"{KEY_PREFIX}jira:POST /rest/api/3/issue/bulk", f"{KEY_PREFIX}jira:POST /rest/api/3/search/jql",
    }  # fmt: skip


@pytest.mark.parametrize("stored", ["not json", '{"arrival": "soon"}', "[1, 2]", '{"arrival": NaN}'])
def test_an_unreadable_budget_starts_afresh(budgets: LedgerBudgets, stored: str) -> None:
    budgets._ledger.set_state(f"{KEY_PREFIX}visma", stored)
    limiter = RateLimiter(1.0, 1, store=budgets, name="visma", sleep=lambda _: None)

    assert limiter.acquire() == 0


def test_a_clock_that_jumped_back_does_not_stall_the_budget(budgets: LedgerBudgets) -> None:
    ten_hours_ahead = time.time() + 36_000
    budgets._ledger.set_state(f"{KEY_PREFIX}visma", f'{{"arrival": {ten_hours_ahead}, "paused_until": 0}}')
    limiter = RateLimiter(1.0, 1, store=budgets, name="visma", sleep=lambda _: None)

    assert limiter.acquire() == 0


class _BrokenStore:
    identity = "postgresql://ledger:***@db.internal/connector"
    calls = 0

    def reserve(self, budget: str, tokens: int, interval: float, burst: int, clock: Callable[[], float]) -> float:
        self.calls += 1
        raise sa.exc.OperationalError("SELECT value FROM kv_state", {}, Exception("connection refused: hunter2"))

    def pause(self, budget: str, until: float) -> None:
        raise sa.exc.OperationalError("UPDATE kv_state", {}, Exception("connection refused: hunter2"))


def test_a_failing_store_leaves_the_process_its_own_budget_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeTime()
    limiter = RateLimiter(2.0, 1, clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep, store=_BrokenStore(),
                          name="visma")  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="ml_connector.http"):
        waits = [limiter.acquire() for _ in range(3)]
        limiter.pause_for(1.0)

    assert waits == pytest.approx([0, 0.5, 0.5])
    assert limiter._store.calls == 1  # type: ignore[union-attr]  # left alone for a while after it failed
    assert [r.getMessage() for r in caplog.records] == [
        "rate budget visma: its shared store failed (OperationalError); this process keeps its own budget"
    ]
    assert "hunter2" not in caplog.text


def test_one_limiter_per_system_and_store(tmp_path: Path) -> None:
    first, second = (budget_store(True, f"sqlite:///{tmp_path / name / 'ledger.db'}") for name in ("a", "b"))

    assert rate_limiter_for("budget-test", store=first) is rate_limiter_for("budget-test", store=first)
    assert rate_limiter_for("budget-test", store=first) is not rate_limiter_for("budget-test", store=second)
    assert rate_limiter_for("budget-test", store=first) is not rate_limiter_for("budget-test")
    assert budget_store(False, f"sqlite:///{tmp_path / 'a' / 'ledger.db'}") is None


def test_a_store_url_never_shows_its_password() -> None:
    ledger = Ledger(sa.create_engine("postgresql://ledger:hunter2@db.internal/connector"))

    assert "hunter2" not in LedgerBudgets(ledger).identity
    assert "hunter2" not in repr(LedgerBudgets(ledger))


# -- over the wire: two runs calling one Jira -----------------------------------------------------------


class _Statuses(httpx.BaseTransport):
    """Counts the status codes the simulator answered."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.counts, self._lock = inner, Counter[int](), threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        with self._lock:
            self.counts[response.status_code] += 1
        return response


def _two_runs_ask_jira(store: LedgerBudgets | None) -> Counter[int]:
    """Two runs (a budget object each, as two processes have) read ``/myself`` 12 times each at once."""
    sim = JiraSimulator(seed_issues=0, burst_per_s=10)
    transport = _Statuses(InProcessTransport(sim.app))
    errors: list[BaseException] = []

    def run() -> None:
        budget = KeyedRateLimiter(9.0, 1, endpoint_of, store=store, name="jira")  # the connector's pace: 9 of 10
        try:
            with JiraClient.connect_api_token("http://nordic.test", DEMO_EMAIL, DEMO_API_TOKEN, transport=transport,
                                              rate_limiter=budget) as client:  # fmt: skip
                for _ in range(12):
                    client.myself()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        transport.inner.close()
        sim.close()
    assert errors == []
    return transport.counts


def test_two_runs_sharing_the_budget_draw_no_429_from_jira(budgets: LedgerBudgets) -> None:
    assert _two_runs_ask_jira(budgets) == {200: 24}


def test_two_runs_with_a_budget_each_draw_429s_from_jira() -> None:
    """Why the budget is shared: each run pacing itself under the limit still exceeds it together."""
    counts = _two_runs_ask_jira(None)

    assert counts[200] == 24 and counts[429] > 0


def test_a_sqlite_ledger_keeps_its_budgets_in_a_file_beside_it() -> None:
    assert budgets_url("sqlite:////srv/connector/ledger.db") == "sqlite:////srv/connector/ledger.budgets.db"
    assert budgets_url("postgresql://ledger:pw@db.internal/connector") == "postgresql://ledger:pw@db.internal/connector"


def test_a_reservation_does_not_wait_behind_a_write_to_the_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    limiter = RateLimiter(10.0, 1, store=shared_budgets(url), name="acumatica")
    writing, release = threading.Event(), threading.Event()

    def land_a_page() -> None:  # SQLite's one writer, held as long as a big page takes to land
        with Ledger.open(url) as ledger, ledger._write() as connection:
            connection.exec_driver_sql("SELECT 1")
            writing.set()
            release.wait(10)

    writer = threading.Thread(target=land_a_page)
    writer.start()
    try:
        assert writing.wait(10)
        started = time.monotonic()
        limiter.acquire()
        took = time.monotonic() - started
    finally:
        release.set()
        writer.join()

    assert took < 1.0
