"""monday's complexity budget, kept where every run of a deployment spends it together.

Each run is a process; a budget each process learnt only from its own answers let a second run
send what the first had already spent, and monday refused it (``COMPLEXITY_BUDGET_EXHAUSTED``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.quotas import LocalQuotas, QuotaStore
from ml_connector_dagster.core.shared_budgets import LedgerBudgets
from ml_connector_dagster.sandbox.monday import INVOICE_BOARD, MondaySimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.monday.client import ComplexityBudget, MondayClient, complexity_budget_for
from ml_connector_dagster.systems.monday.models import Complexity

from ..monday_sandbox import IN_PROCESS_URL, sim_sleeper, unlimited
from .test_monday_client import drafts

WRITE = 10_001  # what the simulator charges for a create that reads its id back


@pytest.fixture
def ledger_quotas(tmp_path: Path) -> Iterator[LedgerBudgets]:
    store = LedgerBudgets(Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}"))
    yield store
    store.close()


def answer(after: int, reset_in: int = 60) -> Complexity:
    return Complexity(before=after, after=after, query=0, reset_in_x_seconds=reset_in)


def test_what_one_run_learns_is_what_another_sees(ledger_quotas: LedgerBudgets) -> None:
    first, second = (ComplexityBudget(100_000, quotas=ledger_quotas, name="monday:t") for _ in range(2))
    first.observe(answer(30_000))
    assert second.remaining() == 30_000 and second.affordable(WRITE) == 2


def test_a_request_in_flight_holds_back_another_run_until_its_answer(ledger_quotas: LedgerBudgets) -> None:
    first, second = (ComplexityBudget(100_000, quotas=ledger_quotas, name="monday:t") for _ in range(2))
    first.observe(answer(30_000))
    taken = first.reserve(2 * WRITE, sleep=pytest.fail)
    assert second.affordable(WRITE) == 0  # monday's own figure does not show it yet
    first.observe(answer(30_000 - 2 * WRITE), reserved=taken)
    assert second.remaining() == 30_000 - 2 * WRITE


def test_a_request_without_an_answer_gives_back_what_it_took() -> None:
    budget = ComplexityBudget(100_000)
    budget.observe(answer(30_000))
    budget.release(budget.reserve(2 * WRITE, sleep=pytest.fail))
    assert budget.remaining() == 30_000


def test_an_answer_overtaken_by_a_later_one_does_not_raise_what_is_left() -> None:
    budget = ComplexityBudget(100_000)
    budget.observe(answer(10_000, reset_in=40))
    budget.observe(answer(30_000, reset_in=40))  # sent earlier, answered later
    assert budget.remaining() == 10_000


def test_a_new_window_replaces_the_reading() -> None:
    now = [0.0]
    budget = ComplexityBudget(100_000, clock=lambda: now[0])
    budget.observe(answer(10_000, reset_in=5))
    now[0] = 6.0
    assert budget.remaining() is None  # the reset has passed: unknown, go ahead
    budget.observe(answer(90_000, reset_in=60))
    assert budget.remaining() == 90_000


def test_a_request_that_does_not_fit_waits_for_the_reset_then_goes() -> None:
    now = [0.0]
    slept: list[float] = []
    budget = ComplexityBudget(100_000, clock=lambda: now[0])
    budget.observe(answer(5_000, reset_in=20))
    assert budget.reserve(WRITE, sleep=slept.append) == 0 and slept == [pytest.approx(21.0)]


def test_an_unreadable_stored_reading_is_forgotten_not_trusted(ledger_quotas: LedgerBudgets) -> None:
    ledger_quotas._ledger.set_state("quota:monday:t", "{not json")
    assert ComplexityBudget(100_000, quotas=ledger_quotas, name="monday:t").remaining() is None


def test_the_budget_is_named_by_a_digest_of_the_token_never_the_token(ledger_quotas: LedgerBudgets) -> None:
    complexity_budget_for("secret-token-value", quotas=ledger_quotas).observe(answer(1_000))
    stored = ledger_quotas._ledger.states_under("quota:")
    assert len(stored) == 1 and "secret-token-value" not in repr(stored)


class _RefusalCounter(httpx.BaseTransport):
    """The simulator's transport, counting the requests monday refused for want of points."""

    def __init__(self, sim: MondaySimulator) -> None:
        self.inner, self.refused = InProcessTransport(sim.app), 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = response.read()
        self.refused += b"COMPLEXITY_BUDGET_EXHAUSTED" in body
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    def close(self) -> None:
        self.inner.close()


def _two_runs_create(quotas_of_each_run: tuple[QuotaStore, QuotaStore]) -> int:
    """Two runs on one token, each with its own client, create items one after the other; refusals."""
    sim = MondaySimulator(complexity_per_minute=45_000)  # four creates a minute
    transport = _RefusalCounter(sim)
    try:
        for n, quotas in enumerate(quotas_of_each_run):
            budget = ComplexityBudget(45_000, quotas=quotas, name="monday:shared-token")
            with MondayClient.connect(IN_PROCESS_URL, sim.api_token, transport=transport, rate_limiter=unlimited(),
                                      budget=budget, sleep=sim_sleeper(sim), max_batch=4) as client:  # fmt: skip
                result = client.create_items(str(INVOICE_BOARD), drafts(2 if n == 0 else 4, prefix=f"RUN{n}"))
            assert all(outcome.ok for outcome in result.outcomes)
        return transport.refused
    finally:
        transport.close()
        sim.close()


def test_two_runs_sharing_the_ledgers_budget_are_never_refused(ledger_quotas: LedgerBudgets) -> None:
    assert _two_runs_create((ledger_quotas, ledger_quotas)) == 0


def test_two_runs_with_a_budget_each_are_refused(ledger_quotas: LedgerBudgets) -> None:
    assert _two_runs_create((LocalQuotas(), LocalQuotas())) >= 1
