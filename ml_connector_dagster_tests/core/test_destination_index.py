"""The destination index: a destination's objects by external id, listed whole once, then by what changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.core.destination_index import (
    AuditIncomplete,
    DestinationIndex,
    Listed,
    ReadBack,
    metadata,
)
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster_tests.core.migration_check import differences_from_migration

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
OVERLAP = timedelta(minutes=2)


class Destination:
    """A destination's objects (id -> (external id, modified at)), listed as a vendor lists them."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[str | None, datetime]] = {}
        self.asked: list[datetime | None] = []

    def put(self, dest_id: str, external_id: str | None, at: datetime) -> None:
        self.objects[dest_id] = (external_id, at)

    def changes(self, since: datetime | None) -> list[Listed]:
        self.asked.append(since)
        return [Listed(dest_id, external_id, at) for dest_id, (external_id, at) in self.objects.items()
                if since is None or at >= since]  # fmt: skip


def _indexed(ledger: Ledger, *objects: tuple[str, str | None],
             overlap: timedelta = OVERLAP) -> tuple[Destination, DestinationIndex]:  # fmt: skip
    """A destination holding ``objects`` (id, external id) modified at T0, and an index that listed it once."""
    destination = Destination()
    for dest_id, external_id in objects:
        destination.put(dest_id, external_id, T0)
    index = DestinationIndex(ledger, "project-a", overlap=overlap)
    index.refresh(destination.changes)
    return destination, index


def test_table_definition_matches_its_migration(ledger: Ledger) -> None:
    assert differences_from_migration(ledger, metadata, "destination_index") == []


def test_the_first_refresh_lists_the_destination_whole(ledger: Ledger) -> None:
    destination = Destination()
    destination.put("101", "INV-1", T0)
    index = DestinationIndex(ledger, "project-a")

    refresh = index.refresh(destination.changes)

    assert (refresh.full, refresh.listed, destination.asked) == (True, 1, [None])
    assert index.lookup(["INV-1", "INV-2"]) == {"INV-1": "101"}


def test_a_later_refresh_lists_only_what_changed_since_the_newest_modification_seen_less_the_overlap(
        ledger: Ledger) -> None:  # fmt: skip
    destination, index = _indexed(ledger, ("101", "INV-1"))
    destination.put("102", "INV-2", T0 + timedelta(hours=1))

    refresh = index.refresh(destination.changes)

    assert (refresh.full, refresh.since, destination.asked[-1]) == (False, T0 - OVERLAP, T0 - OVERLAP)
    assert index.lookup(["INV-1", "INV-2"]) == {"INV-1": "101", "INV-2": "102"}
    index.refresh(destination.changes)
    assert destination.asked[-1] == T0 + timedelta(hours=1) - OVERLAP


def test_a_changed_external_id_refiles_its_object_and_a_cleared_one_unfiles_it(ledger: Ledger) -> None:
    destination, index = _indexed(ledger, ("101", "INV-1"), ("102", "INV-2"))
    destination.put("101", "INV-9", T0 + timedelta(minutes=5))
    destination.put("102", None, T0 + timedelta(minutes=5))

    index.refresh(destination.changes)

    assert index.lookup(["INV-1", "INV-2", "INV-9"]) == {"INV-9": "101"}


def test_an_older_copy_of_an_object_never_overwrites_a_newer_one(ledger: Ledger) -> None:
    index = DestinationIndex(ledger, "project-a")
    newer = Destination()
    newer.put("101", "INV-NEW", T0 + timedelta(minutes=5))
    index.refresh(newer.changes)
    older = Destination()  # a run that listed before the change and writes after the one that saw it
    older.put("101", "INV-OLD", T0)

    index.refresh(older.changes)

    assert index.lookup(["INV-NEW", "INV-OLD"]) == {"INV-NEW": "101"}


def test_of_two_objects_carrying_one_external_id_the_oldest_is_found(ledger: Ledger) -> None:
    _destination, index = _indexed(ledger, ("1000", "INV-1"), ("999", "INV-1"))

    assert index.lookup(["INV-1"]) == {"INV-1": "999"}
    assert index.holders(["INV-1"]) == {"INV-1": ["999", "1000"]}


def test_a_dropped_object_is_no_longer_found(ledger: Ledger) -> None:
    _destination, index = _indexed(ledger, ("101", "INV-1"))

    index.drop(["101"])

    assert index.lookup(["INV-1"]) == {}


def test_after_a_reset_the_next_refresh_lists_whole_and_forgets_objects_gone(ledger: Ledger) -> None:
    destination, index = _indexed(ledger, ("101", "INV-1"), ("102", "INV-2"))
    del destination.objects["101"]  # deleted: a listing of changes never says so

    index.reset()
    refresh = index.refresh(destination.changes)

    assert (refresh.full, destination.asked[-1]) == (True, None)
    assert index.lookup(["INV-1", "INV-2"]) == {"INV-2": "102"}


def test_an_unreadable_watermark_starts_afresh_with_a_full_listing(ledger: Ledger) -> None:
    destination, index = _indexed(ledger, ("101", "INV-1"))
    ledger.set_state("index:project-a", "not json")

    assert index.refresh(destination.changes).full


def test_objects_a_refresh_did_not_list_are_those_listed_before_it_began(ledger: Ledger) -> None:
    destination, index = _indexed(ledger, ("101", "INV-1"), ("102", "INV-2"), overlap=timedelta(0))
    destination.put("102", "INV-2", T0 + timedelta(minutes=5))
    index.refresh(destination.changes)  # the watermark moves past 101's last change
    destination.put("102", "INV-2", T0 + timedelta(minutes=10))

    refresh = index.refresh(destination.changes)

    assert index.listed_before(["101", "102"], refresh.began) == {"101"}


class Reader:
    """Reads objects back from a :class:`Destination`: a missing one is gone; ``failing`` ones cannot be read."""

    def __init__(self, destination: Destination, failing: set[str] | None = None) -> None:
        self.destination, self.failing, self.read = destination, failing or set(), []  # type: list[str]

    def __call__(self, dest_ids: list[str]) -> ReadBack:
        self.read.extend(dest_ids)
        return ReadBack(gone={i for i in dest_ids if i not in self.destination.objects and i not in self.failing},
                        unread={i for i in dest_ids if i in self.failing})


def _audit(index: DestinationIndex, destination: Destination, reader: Reader, ids: list[str], *,
           page_size: int = 1) -> dict[str, list[str]]:  # fmt: skip
    holders, _refreshes = index.holders_now(ids, destination.changes, read_back=reader, page_size=page_size,
                                            read_requests=lambda n: n)
    return holders


def _older(ledger: Ledger) -> tuple[Destination, DestinationIndex]:
    """Three objects, listed whole once, then a change to 103 listed: 101 and 102 are not in the last listing."""
    destination, index = _indexed(ledger, ("101", "INV-1"), ("102", "INV-2"), ("103", "INV-3"), overlap=timedelta(0))
    destination.put("103", "INV-3", T0 + timedelta(minutes=5))
    index.refresh(destination.changes)
    destination.put("103", "INV-3", T0 + timedelta(minutes=10))
    return destination, index


def test_an_audit_reads_back_only_the_objects_its_refresh_did_not_list(ledger: Ledger) -> None:
    destination, index = _older(ledger)
    reader = Reader(destination)

    holders = _audit(index, destination, reader, ["INV-1", "INV-3"])

    assert holders == {"INV-1": ["101"], "INV-3": ["103"]}
    assert reader.read == ["101"]  # 103 was just listed; INV-2's 102 was not asked for


def test_an_object_deleted_in_the_destination_is_missing_from_the_audit_and_leaves_the_index(ledger: Ledger) -> None:
    destination, index = _older(ledger)
    del destination.objects["101"]

    holders = _audit(index, destination, Reader(destination), ["INV-1", "INV-3"])

    assert holders == {"INV-3": ["103"]}
    assert index.lookup(["INV-1"]) == {}


def test_an_audit_lists_the_destination_whole_when_that_takes_fewer_requests(ledger: Ledger) -> None:
    destination, index = _older(ledger)
    del destination.objects["101"]
    reader = Reader(destination)

    holders = _audit(index, destination, reader, ["INV-1", "INV-2"], page_size=100)  # 1 page < 2 reads

    assert holders == {"INV-2": ["102"]}
    assert reader.read == [] and destination.asked[-1] is None


def test_an_audit_whose_objects_cannot_be_read_back_gives_no_verdict(ledger: Ledger) -> None:
    destination, index = _older(ledger)

    with pytest.raises(AuditIncomplete, match="1 object"):
        _audit(index, destination, Reader(destination, failing={"101"}), ["INV-1"])


def test_an_audit_right_after_a_full_listing_reads_nothing_back(ledger: Ledger) -> None:
    destination = Destination()
    destination.put("101", "INV-1", T0)
    reader = Reader(destination)

    holders = _audit(DestinationIndex(ledger, "project-a"), destination, reader, ["INV-1"])

    assert holders == {"INV-1": ["101"]} and reader.read == []


def test_the_size_counts_every_object_with_an_external_id_or_without(ledger: Ledger) -> None:
    _destination, index = _indexed(ledger, ("101", "INV-1"), ("102", None))

    assert index.size() == 2


def test_a_destination_without_modification_times_is_listed_whole_every_time(ledger: Ledger) -> None:
    index = DestinationIndex(ledger, "project-a")
    listing = [Listed("101", "INV-1", None)]

    assert [index.refresh(lambda _since: listing).full for _ in range(2)] == [True, True]


def test_scopes_are_kept_apart(ledger: Ledger) -> None:
    one, other = Destination(), Destination()
    one.put("101", "INV-1", T0)
    other.put("201", "INV-1", T0)
    DestinationIndex(ledger, "project-a").refresh(one.changes)
    DestinationIndex(ledger, "project-b").refresh(other.changes)

    assert DestinationIndex(ledger, "project-a").lookup(["INV-1"]) == {"INV-1": "101"}
    assert DestinationIndex(ledger, "project-b").lookup(["INV-1"]) == {"INV-1": "201"}


# Each step: (object id, its external id or None, minutes after the previous step, refresh after it).
_steps = st.lists(st.tuples(st.sampled_from(["1", "2", "3", "10", "11"]), st.sampled_from([None, "A", "B", "C"]),
                            st.integers(0, 10), st.booleans()), max_size=25)


@settings(max_examples=60, deadline=None)
@given(steps=_steps)
def test_after_any_history_of_changes_a_refresh_finds_what_the_destination_holds(tmp_path_factory: pytest.TempPathFactory,
                                                                                 steps: list) -> None:  # fmt: skip
    with Ledger.open(f"sqlite:///{tmp_path_factory.mktemp('index') / 'ledger.db'}") as ledger:
        destination, index, at = Destination(), DestinationIndex(ledger, "p", overlap=timedelta(0)), T0
        for dest_id, external_id, minutes, refresh in steps:
            at += timedelta(minutes=minutes)
            destination.put(dest_id, external_id, at)
            if refresh:
                index.refresh(destination.changes)
        index.refresh(destination.changes)

        holders: dict[str, list[str]] = {}
        for dest_id, (external_id, _at) in destination.objects.items():
            if external_id:
                holders.setdefault(external_id, []).append(dest_id)
        assert index.holders(["A", "B", "C"]) == {k: sorted(v, key=lambda i: (len(i), i)) for k, v in holders.items()}
