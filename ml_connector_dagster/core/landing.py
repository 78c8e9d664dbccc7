"""The landing store: the latest validated copy of every source record, filed by partition.

Source assets *land* the records they read (an idempotent upsert keyed by system, entity and
record id); destination assets read one partition back, chunk by chunk, instead of passing records
through Dagster's IO manager. A record is filed under the partition of its latest modification, so
a record changed on a later day moves to that day's partition. An older copy never overwrites a
newer one (two runs racing over the same record converge on the newest).

The table lives in the ledger's database (migration ``0002``) and is declared here with its own
MetaData, as the vault's table is, so the ledger's schema stays its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import islice
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy.dialects import postgresql, sqlite

from ml_connector_dagster.core.canonical_json import canonical_json_bytes, loads
from ml_connector_dagster.core.ledger import Ledger, _UtcDateTime

__all__ = [
    "MAX_ID_LENGTH",
    "LandCounts",
    "LandedRecord",
    "LandingStore",
    "content_hash",
    "id_problem",
    "landed_records",
    "metadata",
]

T = TypeVar("T")
_BATCH = 500  # rows per statement: well under SQLite's bound-parameter limit

metadata = sa.MetaData()

landed_records = sa.Table(
    "landed_records",
    metadata,
    sa.Column("system", sa.String(50), primary_key=True),
    sa.Column("entity", sa.String(100), primary_key=True),
    sa.Column("record_id", sa.String(255), primary_key=True),
    sa.Column("partition_key", sa.String(100)),
    sa.Column("modified_at", _UtcDateTime()),
    sa.Column("content_hash", sa.String(128), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("landed_at", _UtcDateTime(), nullable=False),
    sa.Index("ix_landed_records_partition", "system", "entity", "partition_key"),
)


# The ledger's and this store's id columns (String(255)): Postgres refuses a longer value or a NUL.
MAX_ID_LENGTH = 255


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot key a record in the ledger (landing, links, dead letters), or None.

    Phrased to follow "the id": ``"is empty"``, ``"is longer than 255 characters (300)"`` ...
    """
    if not value.strip():
        return "is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters ({len(value)})"
    if "\x00" in value:
        return "contains a NUL character"
    return None


def content_hash(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the payload's canonical JSON: equal content, equal hash, whatever the key order."""
    return hashlib.sha256(canonical_json_bytes(payload)).hexdigest()


class LandedRecord(BaseModel):
    """One source record as landed: its id, partition, modification time and raw payload."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    partition_key: str | None = None
    modified_at: AwareDatetime | None = None
    payload: dict[str, Any]
    content_hash: str | None = None
    run_id: str | None = None
    landed_at: AwareDatetime | None = None


class LandCounts(NamedTuple):
    """What one :meth:`LandingStore.land` call did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def plus(self, other: LandCounts) -> LandCounts:
        """Both counts added up."""
        return LandCounts(*(a + b for a, b in zip(self, other, strict=True)))


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _landed(row: sa.Row[Any]) -> LandedRecord:
    values = row._asdict()
    values["payload"] = loads(row.payload)
    return LandedRecord.model_validate(values)


class LandingStore:
    """Upserts and partition reads over ``landed_records``, in the ledger's database."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._insert = sqlite.insert if ledger.engine.dialect.name == "sqlite" else postgresql.insert

    def __repr__(self) -> str:
        return f"LandingStore({self.ledger!r})"

    def land(
        self, system: str, entity: str, records: Iterable[LandedRecord], *, run_id: str | None = None
    ) -> LandCounts:
        """Upsert ``records`` in batches; count the inserted, updated and unchanged ones.

        Unchanged: same content and partition, or an older copy than the one already landed.
        A record id given twice keeps its last occurrence.
        """
        total = LandCounts()
        for batch in _batches(records, _BATCH):
            by_id = {record.record_id: record for record in batch}
            total = total.plus(self._land_batch(system, entity, list(by_id.values()), run_id))
        return total

    def _land_batch(self, system: str, entity: str, batch: list[LandedRecord], run_id: str | None) -> LandCounts:
        t = landed_records
        now = datetime.now(UTC)
        rows = []
        for record in batch:
            canonical = canonical_json_bytes(record.payload)  # serialized once: it is both the hash's input and the row
            rows.append({
                "system": system,
                "entity": entity,
                "record_id": record.record_id,
                "partition_key": record.partition_key,
                "modified_at": record.modified_at,
                "content_hash": hashlib.sha256(canonical).hexdigest(),
                "payload": canonical.decode("ascii"),
                "run_id": run_id,
                "landed_at": now,
            })
        statement = self._insert(t)
        incoming = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.system, t.c.entity, t.c.record_id],
            set_={name: incoming[name] for name in
                  ("partition_key", "modified_at", "content_hash", "payload", "run_id", "landed_at")},
            where=sa.or_(t.c.modified_at.is_(None), incoming.modified_at.is_(None),
                         incoming.modified_at >= t.c.modified_at),
        )
        # Writes take the ledger's write transaction (BEGIN IMMEDIATE on SQLite), so the
        # classification below and the upsert see the same rows.
        with self.ledger._write() as connection:
            existing = {
                row.record_id: row
                for row in connection.execute(
                    sa.select(t.c.record_id, t.c.content_hash, t.c.partition_key, t.c.modified_at).where(
                        t.c.system == system, t.c.entity == entity,
                        t.c.record_id.in_([row["record_id"] for row in rows]),
                    )
                )
            }
            inserted = updated = 0
            to_write = []
            for row in rows:
                old = existing.get(row["record_id"])
                if old is None:
                    inserted += 1
                elif (old.content_hash, old.partition_key) == (row["content_hash"], row["partition_key"]) or (
                    old.modified_at is not None and row["modified_at"] is not None
                    and row["modified_at"] < old.modified_at
                ):
                    continue
                else:
                    updated += 1
                to_write.append(row)
            if to_write:
                connection.execute(statement, to_write)
        return LandCounts(inserted, updated, len(rows) - inserted - updated)

    def iter_partition(
        self, system: str, entity: str, partition_key: str | None, chunk: int = 1000
    ) -> Iterator[list[LandedRecord]]:
        """The records of one partition in chunks of at most ``chunk``, ordered by record id.

        Each chunk is its own short read (keyset paging), so a slow consumer holds no transaction.
        """
        t = landed_records
        after: str | None = None
        while True:
            query = (
                sa.select(t)
                .where(t.c.system == system, t.c.entity == entity, self._partition_is(partition_key))
                .order_by(t.c.record_id)
                .limit(chunk)
            )
            if after is not None:
                query = query.where(t.c.record_id > after)
            with self.ledger._read() as connection:
                rows = [_landed(row) for row in connection.execute(query)]
            if not rows:
                return
            yield rows
            if len(rows) < chunk:
                return
            after = rows[-1].record_id

    def get_many(self, system: str, entity: str, ids: Iterable[str]) -> dict[str, LandedRecord]:
        """The landed records with these ids, by id (unknown ids absent)."""
        t = landed_records
        found: dict[str, LandedRecord] = {}
        with self.ledger._read() as connection:
            for batch in _batches(dict.fromkeys(ids), _BATCH):
                query = sa.select(t).where(t.c.system == system, t.c.entity == entity, t.c.record_id.in_(batch))
                found.update((row.record_id, _landed(row)) for row in connection.execute(query))
        return found

    def count_partition(self, system: str, entity: str, partition_key: str | None) -> int:
        """How many records one partition holds."""
        t = landed_records
        query = (
            sa.select(sa.func.count())
            .select_from(t)
            .where(t.c.system == system, t.c.entity == entity, self._partition_is(partition_key))
        )
        with self.ledger._read() as connection:
            return connection.execute(query).scalar_one()

    @staticmethod
    def _partition_is(partition_key: str | None) -> sa.ColumnElement[bool]:
        column = landed_records.c.partition_key
        return column.is_(None) if partition_key is None else column == partition_key
