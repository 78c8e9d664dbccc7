"""What the benchmarks made faster keeps its meaning: batched pending marks, prefetched pages, remembered transitions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_connector_dagster.core.http import ClientError
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.flows.visma_jira_push import TransitionMenu, move_to_status
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.jira.client import StatusUnreachable
from ml_connector_dagster.systems.jira.models import Transition
from ml_connector_dagster.systems.visma.client import VismaEntity
from ml_connector_dagster_tests.visma_sandbox import in_process_client

FLOW = "visma_jira.invoice_issues"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


def test_a_batch_of_pending_marks_leaves_linked_records_alone_and_reports_them(ledger: Ledger) -> None:
    ledger.record_links([Link(flow=FLOW, source_id="1", source_version="v1", dest_system="jira", dest_id="10001",
                              content_hash="h1")])

    linked = ledger.mark_pending_many(FLOW, [("1", "v2", "h2"), ("2", "v1", "h1")], "jira", "run-1")

    assert linked == {"1"}
    links = ledger.links_for(FLOW, ["1", "2"])
    assert (links["1"].state, links["1"].content_hash) == ("linked", "h1")
    assert links["2"].state == "pending"


def test_prefetched_paging_asks_for_no_page_beyond_the_last() -> None:
    sim = VismaSimulator(size=250)
    try:
        with in_process_client(sim, page_size=100) as client:
            read = sum(len(page) for page in client.iter_pages(VismaEntity.SUPPLIER_INVOICE))
        pages = [r for r in sim.requests if r.method == "GET" and r.path == "/v1/supplierInvoice"]
    finally:
        sim.close()
    assert read == 250
    assert sorted(int(r.query["pageNumber"]) for r in pages) == [1, 2, 3]


class _Issues:
    """A Jira stand-in: every issue starts in To Do; To Do -> In Review (11); issue BAD refuses it."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.moved: list[tuple[str, str]] = []

    def transitions(self, key: str) -> list[Transition]:
        self.asked.append(key)
        offered = [] if key == "BAD" else [{"id": "11", "name": "Start review", "to": {"name": "In Review"}}]
        return [Transition.model_validate(t) for t in offered]

    def transition(self, key: str, transition_id: str) -> None:
        if key == "BAD":
            raise _refused()
        self.moved.append((key, transition_id))

    def get_issue(self, key: str, fields: Any) -> Any:
        return type("Issue", (), {"status_name": "To Do"})()


def _refused() -> Exception:
    return ClientError(system="jira", status_code=400, method="POST", url="http://jira.test", detail="refused")


def test_the_transitions_of_a_status_are_asked_once_for_many_issues() -> None:
    jira, menu = _Issues(), TransitionMenu()

    for key in ("FIN-1", "FIN-2", "FIN-3"):
        move_to_status(jira, key, "To Do", "In Review", ["To Do", "In Review"], menu)  # type: ignore[arg-type]

    assert jira.asked == ["FIN-1"]
    assert jira.moved == [("FIN-1", "11"), ("FIN-2", "11"), ("FIN-3", "11")]


def test_an_issue_refusing_a_remembered_transition_is_asked_for_its_own() -> None:
    jira, menu = _Issues(), TransitionMenu()
    move_to_status(jira, "FIN-1", "To Do", "In Review", ["To Do", "In Review"], menu)  # type: ignore[arg-type]

    with pytest.raises(StatusUnreachable):
        move_to_status(jira, "BAD", "To Do", "In Review", ["To Do", "In Review"], menu)  # type: ignore[arg-type]

    assert jira.asked == ["FIN-1", "BAD"]

