"""Exactly-once creates over the ledger, whatever the destination: the rules of a pending mark."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ml_connector_dagster.core.http import ClientError, TransportFailure
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.destination import CreateInDoubt, CreateIntent, create_once

INTENT = CreateIntent(flow="demo.flow", source_id="42", source_version="v1", content_hash="h1", dest_system="dest")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.dispose()


def lost_answer() -> str:
    raise TransportFailure(system="dest", method="POST", detail="ReadTimeout", may_have_been_applied=True)


def test_a_create_links_the_new_object_and_a_second_call_creates_nothing(ledger: Ledger) -> None:
    made: list[str] = []

    def create() -> str:
        made.append("D-1")
        return "D-1"

    first = create_once(ledger, INTENT, create=create, find=lambda since: None, run_id="r1")
    second = create_once(ledger, INTENT, create=create, find=lambda since: None, run_id="r2")

    assert (first.dest_id, first.created, second.dest_id, second.created) == ("D-1", True, "D-1", False)
    assert made == ["D-1"]


def test_a_lost_answer_is_looked_up_from_the_moment_of_the_mark(ledger: Ledger) -> None:
    asked: list[datetime] = []

    def find(since: datetime) -> str:
        asked.append(since)
        return "D-7"

    before = datetime.now(UTC)
    result = create_once(ledger, INTENT, create=lost_answer, find=find, run_id="r1")

    assert (result.dest_id, result.created) == ("D-7", False)
    assert before <= asked[0] <= datetime.now(UTC)
    assert ledger.links_for(INTENT.flow, ["42"])["42"].state == "linked"


def test_a_lost_answer_not_found_leaves_the_mark_and_is_in_doubt(ledger: Ledger) -> None:
    with pytest.raises(CreateInDoubt):
        create_once(ledger, INTENT, create=lost_answer, find=lambda since: None, run_id="r1")

    assert ledger.links_for(INTENT.flow, ["42"])["42"].state == "pending"


def test_a_mark_younger_than_the_window_is_not_created_again(ledger: Ledger) -> None:
    with pytest.raises(CreateInDoubt):
        create_once(ledger, INTENT, create=lost_answer, find=lambda since: None, run_id="r1")

    with pytest.raises(CreateInDoubt):
        create_once(ledger, INTENT, create=lambda: "D-2", find=lambda since: None, run_id="r2",
                    window=timedelta(minutes=5))
    later = create_once(ledger, INTENT, create=lambda: "D-2", find=lambda since: None, run_id="r3",
                        window=timedelta(minutes=5), now=lambda: datetime.now(UTC) + timedelta(minutes=6))

    assert (later.dest_id, later.created) == ("D-2", True)


def test_a_refused_create_drops_its_mark(ledger: Ledger) -> None:
    def refused() -> str:
        raise ClientError(system="dest", method="POST", status_code=400, detail="Field 'x' is required")

    with pytest.raises(ClientError):
        create_once(ledger, INTENT, create=refused, find=lambda since: None, run_id="r1")

    assert ledger.links_for(INTENT.flow, ["42"]) == {}
