"""Reference data read once and kept in the ledger for the runs that follow, for a time to live."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from ml_connector_dagster.core.kept_reference import KEPT_PREFIX, forget, kept
from ml_connector_dagster.core.ledger import Ledger


class Workspace(BaseModel):
    gid: str
    fields: dict[str, str]


class Reads:
    """A loader that counts its calls: each one stands for the vendor requests it would make."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> Workspace:
        self.count += 1
        return Workspace(gid="w1", fields={"visma_id": f"f{self.count}"})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ledger(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


def test_a_second_run_within_the_time_to_live_reads_nothing(ledger: Ledger) -> None:
    reads, clock = Reads(), Clock()
    first = kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock)
    clock.now += 299
    again = kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock)
    assert reads.count == 1
    assert again == first


def test_an_expired_copy_is_read_again_and_kept_anew(ledger: Ledger) -> None:
    reads, clock = Reads(), Clock()
    kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock)
    clock.now += 300
    fresh = kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock)
    clock.now += 10
    assert kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock) == fresh
    assert reads.count == 2 and fresh.fields == {"visma_id": "f2"}


def test_an_expired_copy_is_brought_up_to_date_by_refresh_when_given_not_read_again(ledger: Ledger) -> None:
    reads, clock = Reads(), Clock()
    kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock)
    clock.now += 300

    def refresh(older: Workspace) -> Workspace:
        return older.model_copy(update={"fields": {**older.fields, "checked": "yes"}})

    fresh = kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock, refresh=refresh)

    assert reads.count == 1 and fresh.fields == {"visma_id": "f1", "checked": "yes"}
    assert kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock) == fresh  # kept anew


def test_without_a_copy_refresh_is_not_asked_and_the_data_is_read(ledger: Ledger) -> None:
    reads = Reads()

    def refresh(older: Workspace) -> Workspace:
        raise AssertionError("nothing to refresh")

    kept(ledger, "ws", Workspace, reads, ttl_s=300, refresh=refresh)

    assert reads.count == 1


def test_a_copy_from_the_future_is_not_trusted(ledger: Ledger) -> None:
    reads, clock = Reads(), Clock()
    kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock)
    clock.now -= 60  # another host's clock ran ahead when it kept the copy
    kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock)
    assert reads.count == 2


@pytest.mark.parametrize("case", ["a time to live of zero", "the copy forgotten", "another key"])
def test_the_next_run_reads_again_with(ledger: Ledger, case: str) -> None:
    reads = Reads()
    ttl_s = 0 if case == "a time to live of zero" else 300
    kept(ledger, "ws", Workspace, reads, ttl_s=ttl_s)
    if case == "the copy forgotten":
        forget(ledger, "ws")
    kept(ledger, "other" if case == "another key" else "ws", Workspace, reads, ttl_s=ttl_s)
    assert reads.count == 2


def test_a_time_to_live_of_zero_keeps_nothing(ledger: Ledger) -> None:
    kept(ledger, "ws", Workspace, Reads(), ttl_s=0)
    assert ledger.get_state(KEPT_PREFIX + "ws") is None


@pytest.mark.parametrize("stored", ["not json", '{"at": 1000}', '{"at": "x", "value": {}}', '{"at": 1000, "value": {"gid": 1}}'])
def test_an_unreadable_copy_is_read_again(ledger: Ledger, stored: str) -> None:
    ledger.set_state(KEPT_PREFIX + "ws", stored)
    reads, clock = Reads(), Clock()
    assert kept(ledger, "ws", Workspace, reads, ttl_s=300, clock=clock).gid == "w1"
    assert reads.count == 1
