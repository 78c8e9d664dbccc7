"""The simulator's indexes of one collection: records by their keys, and in modification order.

A real tenant answers ``$filter=LastModifiedDateTime ge ...`` and a lookup by key from indexed
tables, so a page costs what it returns, not what the tenant holds; without these the simulator's
every page would scan (and sort) the whole collection, and a poll of 100 changes among a million
bills would time the simulator, not the connector. The simulator keeps them current through its
one place that stamps a change (:meth:`CollectionIndex.stored`).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .records import Entity

__all__ = ["MODIFIED_FIELD", "CollectionIndex"]

MODIFIED_FIELD = "LastModifiedDateTime"


def _stamp(record: Mapping[str, Any] | None) -> datetime | None:
    value = None if record is None else record.get(MODIFIED_FIELD)
    return value if isinstance(value, datetime) and value.tzinfo is not None else None


class CollectionIndex:
    """Key -> id (the first record stored under a key wins, as a scan in stored order would find)
    and ``(LastModifiedDateTime, id)`` in order; records without a readable stamp are kept aside,
    so a modification filter still sees them (and refuses or keeps them by its own test)."""

    def __init__(self, entity: Entity, table: Mapping[str, Mapping[str, Any]]) -> None:
        self.entity = entity
        self.by_key: dict[tuple[str, ...], str] = {}
        self.by_modified: list[tuple[datetime, str]] = []
        self.unstamped: set[str] = set()
        for record_id, record in table.items():
            self.by_key.setdefault(entity.key_of(record), record_id)
            stamp = _stamp(record)
            if stamp is None:
                self.unstamped.add(record_id)
            else:
                self.by_modified.append((stamp, record_id))
        self.by_modified.sort()

    def find(self, keys: tuple[str, ...]) -> str | None:
        """The id of the record stored under ``keys``."""
        return self.by_key.get(keys)

    def modified_since(self, moment: datetime) -> list[str]:
        """Ids of the records stamped at or after ``moment``, and of those with no readable stamp."""
        start = bisect_left(self.by_modified, (moment,))
        return [record_id for _, record_id in self.by_modified[start:]] + sorted(self.unstamped)

    def stored(self, before: Mapping[str, Any] | None, record: Mapping[str, Any]) -> None:
        """``record`` (``before`` it changed, None: new) was stored: move its key and stamp."""
        record_id = str(record["id"])
        if before is not None:
            old_key = self.entity.key_of(before)
            if self.by_key.get(old_key) == record_id and old_key != self.entity.key_of(record):
                del self.by_key[old_key]
            old_stamp = _stamp(before)
            if old_stamp is None:
                self.unstamped.discard(record_id)
            else:
                at = bisect_left(self.by_modified, (old_stamp, record_id))
                if at < len(self.by_modified) and self.by_modified[at] == (old_stamp, record_id):
                    del self.by_modified[at]
        self.by_key.setdefault(self.entity.key_of(record), record_id)
        stamp = _stamp(record)
        if stamp is None:
            self.unstamped.add(record_id)
        else:
            insort(self.by_modified, (stamp, record_id))
