"""The destination index: a destination's objects by external id, listed whole once, then by what changed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.core.destination_index import DestinationIndex, Listed, metadata
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.migrations import VERSION_TABLE
from ml_connector_dagster_tests.postgres import schema_url, throwaway_schema

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
OVERLAP = timedelta(minutes=2)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A migrated ledger on SQLite, or in a fresh Postgres schema dropped afterwards."""
    if request.param == "sqlite":
        with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
            yield opened
        return
    admin: sa.Engine = request.getfixturevalue("postgres_admin")
    with throwaway_schema(admin, "index_test") as schema, Ledger.open(schema_url(schema)) as opened:
        yield opened


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


def _in_table(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return getattr(table, "name", None) == "destination_index"


def test_table_definition_matches_its_migration(ledger: Ledger) -> None:
    with ledger.engine.connect() as connection:
        opts = {"compare_type": True, "version_table": VERSION_TABLE, "include_object": _in_table}
        differences = compare_metadata(MigrationContext.configure(connection, opts=opts), metadata)
    assert differences == []


def test_the_first_refresh_lists_the_destination_whole(ledger: Ledger) -> None:
    destination = Destination()
    destination.put("101", "INV-1", T0)
    index = DestinationIndex(ledger, "project-a")

    refresh = index.refresh(destination.changes)

    assert (refresh.full, refresh.listed, destination.asked) == (True, 1, [None])
    assert index.lookup(["INV-1", "INV-2"]) == {"INV-1": "101"}


def test_a_later_refresh_lists_only_what_changed_since_the_newest_modification_seen_less_the_overlap(
        ledger: Ledger) -> None:  # fmt: skip
    destination = Destination()
    destination.put("101", "INV-1", T0)
    index = DestinationIndex(ledger, "project-a", overlap=OVERLAP)
    index.refresh(destination.changes)
    destination.put("102", "INV-2", T0 + timedelta(hours=1))

    refresh = index.refresh(destination.changes)

    assert (refresh.full, refresh.since, destination.asked[-1]) == (False, T0 - OVERLAP, T0 - OVERLAP)
    assert index.lookup(["INV-1", "INV-2"]) == {"INV-1": "101", "INV-2": "102"}
    index.refresh(destination.changes)
    assert destination.asked[-1] == T0 + timedelta(hours=1) - OVERLAP


def test_a_changed_external_id_refiles_its_object_and_a_cleared_one_unfiles_it(ledger: Ledger) -> None:
    destination = Destination()
    destination.put("101", "INV-1", T0)
    destination.put("102", "INV-2", T0)
    index = DestinationIndex(ledger, "project-a")
    index.refresh(destination.changes)
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
    destination = Destination()
    destination.put("1000", "INV-1", T0)
    destination.put("999", "INV-1", T0)
    index = DestinationIndex(ledger, "project-a")
    index.refresh(destination.changes)

    assert index.lookup(["INV-1"]) == {"INV-1": "999"}
    assert index.holders(["INV-1"]) == {"INV-1": ["999", "1000"]}


def test_a_dropped_object_is_no_longer_found(ledger: Ledger) -> None:
    destination = Destination()
    destination.put("101", "INV-1", T0)
    index = DestinationIndex(ledger, "project-a")
    index.refresh(destination.changes)

    index.drop(["101"])

    assert index.lookup(["INV-1"]) == {}


def test_after_a_reset_the_next_refresh_lists_whole_and_forgets_objects_gone(ledger: Ledger) -> None:
    destination = Destination()
    destination.put("101", "INV-1", T0)
    destination.put("102", "INV-2", T0)
    index = DestinationIndex(ledger, "project-a")
    index.refresh(destination.changes)
    del destination.objects["101"]  # deleted: a listing of changes never says so

    index.reset()
    refresh = index.refresh(destination.changes)

    assert (refresh.full, destination.asked[-1]) == (True, None)
    assert index.lookup(["INV-1", "INV-2"]) == {"INV-2": "102"}


def test_an_unreadable_watermark_starts_afresh_with_a_full_listing(ledger: Ledger) -> None:
    destination = Destination()
    destination.put("101", "INV-1", T0)
    index = DestinationIndex(ledger, "project-a")
    index.refresh(destination.changes)
    ledger.set_state("index:project-a", "not json")

    assert index.refresh(destination.changes).full


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
