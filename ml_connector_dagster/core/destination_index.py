"""What a destination holds, by the external id each object carries, kept in the ledger.

Before a create the connector asks the destination whether the record is there already (a create
whose answer never came, a ledger restored from a backup, a copy someone made by hand). Where the
destination answers by key (Jira's JQL, monday's ``items_page_by_column_values``) it is asked by key.
Asana cannot be: its search is premium-only and eventually consistent, so the one faithful answer is
a listing of the project, 100 tasks a request. Listed afresh for every run, a webhook's run for one
new invoice read a 10,000-task project in 100 requests, two thirds of the free plan's minute.

This index keeps that listing in the ledger. The first refresh lists everything; each one after it
lists only the objects modified since the newest modification already seen, less an overlap for
writes that were still in flight when the last listing read past them: O(changes), whatever the size
of the destination. The watermark is the destination's own ``modified_at``, so no clock of ours is
compared with the vendor's. A listed change re-files its object (an external id set, changed or
cleared); an older copy never overwrites a newer one, so two runs refreshing at once converge.

A listing of changes cannot show a deletion: an object deleted in the destination stays here until
the caller learns of it (an update answered 404) and :meth:`DestinationIndex.drop` s it, or
:meth:`DestinationIndex.reset` makes the next refresh a full listing again. An audit, which must
know, asks :meth:`DestinationIndex.holders_now`: the objects the index names that its refresh did not
just list are read back, or the destination is listed whole when that takes fewer requests.

The table lives in the ledger's database (migration ``0003``) with its own MetaData, as the landing
store's does.
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ml_connector_dagster.core.ledger import Ledger, _UtcDateTime

__all__ = ["DEFAULT_OVERLAP", "AuditIncomplete", "DestinationIndex", "IndexedDestination", "ListChanges", "Listed",
           "ReadBack", "Refresh", "destination_index", "metadata"]

logger = logging.getLogger(__name__)

DEFAULT_OVERLAP = timedelta(minutes=2)
STATE_PREFIX = "index:"
_BATCH = 500  # rows per statement: well under SQLite's bound-parameter limit

metadata = sa.MetaData()

destination_index = sa.Table(
    "destination_index",
    metadata,
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("dest_id", sa.String(255), primary_key=True),
    sa.Column("external_id", sa.String(255)),
    sa.Column("modified_at", _UtcDateTime()),
    sa.Column("listed_at", _UtcDateTime(), nullable=False),
    sa.Index("ix_destination_index_external_id", "scope", "external_id"),
)


class Listed(NamedTuple):
    """One destination object as a listing showed it."""

    dest_id: str
    external_id: str | None  # None: the object carries no external id (any it carried is gone)
    modified_at: datetime | None


# Lists the objects modified at or after the moment given; None: every object.
ListChanges = Callable[[datetime | None], Iterable[Listed]]


class Refresh(NamedTuple):
    """What one :meth:`DestinationIndex.refresh` did."""

    full: bool
    since: datetime | None
    listed: int
    began: datetime  # every object it listed was filed at or after this moment (see listed_before)


class ReadBack(NamedTuple):
    """What reading objects back from the destination told: which are gone, which could not be read."""

    gone: set[str]  # deleted, or no longer where the index's scope looks (moved out of a project)
    unread: set[str]  # the destination kept failing: no verdict on them


# Reads the objects back (ids in); ReadBack out.
ReadObjects = Callable[[list[str]], ReadBack]


class AuditIncomplete(RuntimeError):
    """Objects an audit had to read back could not be read: no verdict without them."""


def _oldest_first(dest_id: str) -> tuple[int, str]:
    """Sort key of ids that grow with time (Asana's gids): shorter is older, then by text."""
    return (len(dest_id), dest_id)


def _batches(items: Iterable[Listed], size: int = _BATCH) -> Iterator[list[Listed]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _newest(batch: list[Listed]) -> list[Listed]:
    """One entry per object, its newest copy (a statement may not touch a row twice)."""
    kept: dict[str, Listed] = {}
    for entry in batch:
        seen = kept.get(entry.dest_id)
        if seen is None or seen.modified_at is None or (entry.modified_at and entry.modified_at >= seen.modified_at):
            kept[entry.dest_id] = entry
    return list(kept.values())


class DestinationIndex:
    """One destination's objects (a project, a board...) by external id, under ``scope``."""

    def __init__(self, ledger: Ledger, scope: str, *, overlap: timedelta = DEFAULT_OVERLAP) -> None:
        self.ledger, self.scope, self.overlap = ledger, scope, overlap
        self._insert = sqlite.insert if ledger.engine.dialect.name == "sqlite" else postgresql.insert

    def __repr__(self) -> str:
        return f"DestinationIndex({self.scope!r})"

    # -- the watermark -------------------------------------------------------------------------

    def _state(self) -> tuple[bool, datetime | None]:
        """(listed whole at least once, the newest modification seen)."""
        stored = self.ledger.get_state(STATE_PREFIX + self.scope)
        if stored is None:
            return False, None
        try:
            through = json.loads(stored).get("through")
            return True, None if through is None else datetime.fromisoformat(through)
        except (ValueError, AttributeError, TypeError):
            return False, None  # unreadable: start afresh with a full listing

    def _advance(self, through: datetime | None) -> None:
        def change(current: str | None) -> tuple[str, None]:
            try:
                before = json.loads(current or "{}").get("through")
                before_at = None if before is None else datetime.fromisoformat(before)
            except (ValueError, AttributeError, TypeError):
                before_at = None
            newest = max((m for m in (before_at, through) if m is not None), default=None)
            return json.dumps({"through": None if newest is None else newest.isoformat()}), None

        self.ledger.update_state(STATE_PREFIX + self.scope, change)

    # -- refresh ---------------------------------------------------------------------------------

    def refresh(self, list_changes: ListChanges) -> Refresh:
        """Bring the index up to date: everything the first time, the changes since the watermark after."""
        began = datetime.now(UTC)
        listed_whole, through = self._state()
        if not listed_whole or through is None:
            # Never listed, or nothing listed carried a modification time: only a full listing tells.
            return Refresh(full=True, since=None, listed=self._replace(list_changes(None)), began=began)
        since = through - self.overlap
        listed = 0
        newest: datetime | None = None
        for batch in _batches(list_changes(since)):
            listed += len(batch)
            newest = max((m for m in (newest, *(e.modified_at for e in batch)) if m is not None), default=None)
            self._upsert(_newest(batch))
        self._advance(newest)
        return Refresh(full=False, since=since, listed=listed, began=began)

    def _rows(self, batch: Iterable[Listed], now: datetime) -> list[dict[str, Any]]:
        return [{"scope": self.scope, "dest_id": e.dest_id, "external_id": e.external_id or None,
                 "modified_at": e.modified_at, "listed_at": now} for e in batch]  # fmt: skip

    def _replace(self, listing: Iterable[Listed]) -> int:
        """The scope's rows made anew from a full listing, in one transaction (read before it begins)."""
        t = destination_index
        entries = _newest(list(listing))
        now = datetime.now(UTC)
        with self.ledger._write() as connection:
            connection.execute(sa.delete(t).where(t.c.scope == self.scope))
            for batch in _batches(entries):
                connection.execute(self._insert(t), self._rows(batch, now))
        self._advance(max((e.modified_at for e in entries if e.modified_at is not None), default=None))
        return len(entries)

    def _upsert(self, batch: list[Listed]) -> None:
        t = destination_index
        statement = self._insert(t)
        incoming = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.scope, t.c.dest_id],
            set_={name: incoming[name] for name in ("external_id", "modified_at", "listed_at")},
            where=sa.or_(t.c.modified_at.is_(None), incoming.modified_at.is_(None),
                         incoming.modified_at >= t.c.modified_at),
        )
        with self.ledger._write() as connection:
            connection.execute(statement, self._rows(batch, datetime.now(UTC)))

    # -- reads and corrections -------------------------------------------------------------------

    def holders(self, external_ids: Iterable[str]) -> dict[str, list[str]]:
        """Every object carrying each of ``external_ids``, oldest first (ids with none absent)."""
        t = destination_index
        wanted = list(dict.fromkeys(i for i in external_ids if i))
        found: dict[str, list[str]] = {}
        with self.ledger._read() as connection:
            for start in range(0, len(wanted), _BATCH):
                rows = connection.execute(sa.select(t.c.external_id, t.c.dest_id).where(
                    t.c.scope == self.scope, t.c.external_id.in_(wanted[start : start + _BATCH])))
                for row in rows:
                    found.setdefault(row.external_id, []).append(row.dest_id)
        return {key: sorted(ids, key=_oldest_first) for key, ids in found.items()}

    def holders_now(self, external_ids: Iterable[str], list_changes: ListChanges, *, read_back: ReadObjects,
                    page_size: int, read_requests: Callable[[int], int]) -> tuple[dict[str, list[str]], list[Refresh]]:  # fmt: skip
        """Every object carrying each of ``external_ids``, as the destination holds them now (an audit's read).

        The index, brought up to date, names the objects. A listing of changes does not show an object
        deleted or moved away, so those it names that this refresh did not list are read back
        (``read_back``; the gone ones leave the index), or, when listing the destination whole
        (``page_size`` objects a request) takes no more requests than reading them back
        (``read_requests(n)`` for n objects), it is listed whole and the index made anew: the audit
        costs the cheaper of the objects it counts and the destination. Raises
        :class:`AuditIncomplete` when some could not be read. Also returns the refreshes made.
        """
        wanted = list(external_ids)
        refreshes = [self.refresh(list_changes)]
        holders = self.holders(wanted)
        if refreshes[0].full:
            return holders, refreshes
        unseen = self.listed_before((dest_id for ids in holders.values() for dest_id in ids), refreshes[0].began)
        if not unseen:
            return holders, refreshes
        if math.ceil(self.size() / page_size) <= read_requests(len(unseen)):
            self.reset()  # made anew from a whole listing, deletions and all
            refreshes.append(self.refresh(list_changes))
            return self.holders(wanted), refreshes
        read = read_back(sorted(unseen))
        self.drop(read.gone)
        if read.unread:
            raise AuditIncomplete(f"{self.scope}: {len(read.unread)} object(s) could not be read back, "
                                  f"e.g. {min(read.unread)}")
        return {key: kept for key, ids in holders.items() if (kept := [i for i in ids if i not in read.gone])}, refreshes

    def lookup(self, external_ids: Iterable[str]) -> dict[str, str]:
        """The object carrying each of ``external_ids``; of two carrying one, the oldest (a warning is logged)."""
        chosen: dict[str, str] = {}
        for key, ids in self.holders(external_ids).items():
            if len(ids) > 1:
                logger.warning("%s: objects %s all carry external id %r; the oldest is used", self.scope,
                               ", ".join(ids), key)  # fmt: skip
            chosen[key] = ids[0]
        return chosen

    def listed_before(self, dest_ids: Iterable[str], moment: datetime) -> set[str]:
        """Those of ``dest_ids`` no listing has shown since ``moment`` (a refresh's ``began``): whether
        they still exist only the destination can say."""
        t = destination_index
        wanted = list(dict.fromkeys(dest_ids))
        found: set[str] = set()
        with self.ledger._read() as connection:
            for start in range(0, len(wanted), _BATCH):
                found.update(connection.execute(sa.select(t.c.dest_id).where(
                    t.c.scope == self.scope, t.c.dest_id.in_(wanted[start : start + _BATCH]),
                    t.c.listed_at < moment)).scalars())
        return found

    def size(self) -> int:
        """How many objects the index holds (with an external id or without)."""
        t = destination_index
        with self.ledger._read() as connection:
            return connection.execute(sa.select(sa.func.count()).where(t.c.scope == self.scope)).scalar_one()

    def drop(self, dest_ids: Iterable[str]) -> None:
        """Forget objects the destination no longer has (deleted: a listing of changes never says so)."""
        t = destination_index
        gone = list(dict.fromkeys(dest_ids))
        with self.ledger._write() as connection:
            for start in range(0, len(gone), _BATCH):
                connection.execute(sa.delete(t).where(t.c.scope == self.scope,
                                                      t.c.dest_id.in_(gone[start : start + _BATCH])))

    def reset(self) -> None:
        """Forget the watermark: the next refresh lists the destination whole and replaces every entry."""
        self.ledger.delete_state(STATE_PREFIX + self.scope)


class IndexedDestination(ABC):
    """One run's look-ups in a destination through its index: what a vendor's side says is how to list
    its objects (:meth:`changes`) and read them back (:meth:`read_back`); the rest is the same everywhere."""

    page_size: int  # objects a listing request returns

    def __init__(self, index: DestinationIndex) -> None:
        self.index = index
        self.refreshes: list[Refresh] = []

    @abstractmethod
    def changes(self, since: datetime | None) -> Iterable[Listed]:
        """The objects modified at or after ``since``; every object for None."""

    @abstractmethod
    def read_back(self, dest_ids: list[str]) -> ReadBack:
        """Read the objects from the destination: which are gone, which could not be read."""

    def read_requests(self, count: int) -> int:
        """Requests :meth:`read_back` spends on ``count`` objects (one each unless the vendor batches)."""
        return count

    def find(self, external_ids: Sequence[str], *, fresh: bool = False) -> dict[str, str]:
        """External id -> the object carrying it, for those the destination holds.

        The index is brought up to date at the first call, and again at every call with ``fresh``
        (after creates whose answer never came).
        """
        if fresh or not self.refreshes:
            self.refreshes.append(self.index.refresh(self.changes))
        return self.index.lookup(external_ids)

    def drop(self, dest_ids: Iterable[str]) -> None:
        """Forget objects the destination answered 404 for: deleted, which a listing of changes does not show."""
        self.index.drop(dest_ids)

    def holders_now(self, external_ids: Sequence[str]) -> dict[str, list[str]]:
        """Every object carrying each of ``external_ids``, as the destination holds them now (an audit's
        read: :meth:`DestinationIndex.holders_now`)."""
        holders, refreshes = self.index.holders_now(external_ids, self.changes, read_back=self.read_back,
                                                    page_size=self.page_size, read_requests=self.read_requests)
        self.refreshes.extend(refreshes)
        return holders
