"""Aware moments moved to UTC, for every timestamp parser (vendor records, webhook headers)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["to_utc"]


def to_utc(moment: datetime) -> datetime:
    """An aware ``moment`` in UTC; a ``ValueError`` (never an ``OverflowError``) when UTC cannot hold it.

    ``0001-01-01T00:00:00+01:00`` and ``9999-12-31T23:59:59-14:00`` are valid ISO 8601 yet leave
    ``datetime``'s range once moved to UTC: bad input to refuse by name, not a crash.
    """
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is out of range once in UTC") from None
