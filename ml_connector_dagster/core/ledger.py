"""The connector's durable memory: links, dead letters, the webhook inbox and small state.

One SQLAlchemy engine over SQLite (``$ML_CONNECTOR_HOME/ledger.db``, the default) or Postgres
(``ML_CONNECTOR_DB_URL``). ``Ledger.open()`` migrates the schema to head with alembic, safely when
several processes open at once. Every timestamp handed out is timezone-aware UTC, and JSON is
stored as sorted text so both backends behave the same.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ml_connector_dagster.core.migrations import SCRIPT_LOCATION

__all__ = [
    "AlreadyLinked",
    "DeadLetter",
    "FailedRecord",
    "InboxEvent",
    "Ledger",
    "Link",
    "metadata",
]

T = TypeVar("T")

_CHUNK = 500  # ids per IN list: well under SQLite's bound-parameter limit
_SQLITE_BUSY_TIMEOUT_MS = 30_000
# Serialises migrations (and inbox appends, see append_inbox) across processes on Postgres.
_MIGRATE_LOCK = 0x6D6C_636F_6E6E_0001
_MIGRATE_THREAD_LOCK = threading.Lock()
_INBOX_LOCK = 0x6D6C_636F_6E6E_0002
_WRITE = "ml_connector_write"  # execution option: the transaction will write
WRITE_OPTION = _WRITE  # for other stores sharing the ledger's engine (the vault, the landing store)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must be timezone-aware; the ledger stores UTC")
    return value.astimezone(UTC)


class _UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC in and out; SQLite keeps them naive, so the zone is put back on read."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = _as_utc(value, "timestamp")
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, default=str)


# Mirrors migrations/versions; a test compares the two so they cannot drift apart.
metadata = sa.MetaData()
_ID = sa.String(255)

links_table = sa.Table(
    "links",
    metadata,
    sa.Column("flow", sa.String(200), primary_key=True),
    sa.Column("source_id", _ID, primary_key=True),
    sa.Column("source_version", sa.String(100), nullable=False),
    sa.Column("dest_system", sa.String(50), nullable=False),
    sa.Column("dest_id", _ID),
    sa.Column("dest_key", _ID),
    sa.Column("dest_url", sa.Text()),
    sa.Column("content_hash", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", _UtcDateTime(), nullable=False),
    sa.Column("updated_at", _UtcDateTime(), nullable=False),
    sa.Index("ix_links_flow_dest_id", "flow", "dest_id"),
)

dead_letters_table = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("asset", sa.String(200), nullable=False),
    sa.Column("source_id", _ID, nullable=False),
    sa.Column("partition_key", sa.String(100)),
    sa.Column("record", sa.Text(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", _UtcDateTime(), nullable=False),
    sa.Column("updated_at", _UtcDateTime(), nullable=False),
)
_OPEN_LETTER = sa.text("state = 'open'")
sa.Index(
    "uq_dead_letters_open",
    dead_letters_table.c.asset,
    dead_letters_table.c.source_id,
    unique=True,
    sqlite_where=_OPEN_LETTER,
    postgresql_where=_OPEN_LETTER,
)

inbox_table = sa.Table(
    "inbox",
    metadata,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("system", sa.String(50), nullable=False),
    sa.Column("event_id", _ID, nullable=False),
    sa.Column("received_at", _UtcDateTime(), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("headers", sa.Text(), nullable=False),
    sa.Column("partition_key", sa.String(100)),
    sa.Column("record_ref", sa.Text()),
    sa.Column("processed_at", _UtcDateTime()),
    sa.Column("run_key", sa.String(200)),
    sa.UniqueConstraint("system", "event_id", name="uq_inbox_system_event_id"),
    sqlite_autoincrement=True,
)

kv_state_table = sa.Table(
    "kv_state",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text()),
    sa.Column("updated_at", _UtcDateTime(), nullable=False),
)


class AlreadyLinked(ValueError):
    """A create intent was declared for a record the ledger already links to a destination object."""


class Link(BaseModel):
    """Where one source record lives in a destination system.

    ``state='pending'`` is an intent written before a non-idempotent create: whoever finds it must
    look the record up in the destination before creating again.
    """

    model_config = ConfigDict(frozen=True)

    flow: str
    source_id: str
    source_version: str
    dest_system: str
    dest_id: str | None = None
    dest_key: str | None = None
    dest_url: str | None = None
    content_hash: str
    state: Literal["pending", "linked"] = "linked"
    run_id: str | None = None
    created_at: AwareDatetime = Field(default_factory=_utcnow)
    updated_at: AwareDatetime = Field(default_factory=_utcnow)


class FailedRecord(NamedTuple):
    """A record to dead-letter: its id, the record and why it failed."""

    source_id: str
    record: Mapping[str, Any]
    error: str
    partition_key: str | None = None


class DeadLetter(BaseModel):
    """A record that still failed after retries, kept with its error for replay."""

    model_config = ConfigDict(frozen=True)

    id: int
    asset: str
    source_id: str
    partition_key: str | None
    record: dict[str, Any]
    error: str
    attempts: int
    state: Literal["open", "resolved", "abandoned"]
    run_id: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class InboxEvent(BaseModel):
    """A verified webhook delivery, stored before it was acknowledged."""

    model_config = ConfigDict(frozen=True)

    id: int
    system: str
    event_id: str
    received_at: AwareDatetime
    payload: dict[str, Any]
    headers: dict[str, Any]
    partition_key: str | None
    record_ref: dict[str, Any] | None
    processed_at: AwareDatetime | None
    run_key: str | None


def _link(row: sa.Row[Any]) -> Link:
    return Link.model_validate(row._asdict())


def _dead_letter_row(asset: str, source_id: str, record: Mapping[str, Any], error: str, partition_key: str | None,
                     run_id: str | None, now: datetime) -> dict[str, Any]:
    """A new open letter's columns (on a conflict the upsert keeps its id, creation and count)."""
    return {"asset": asset, "source_id": source_id, "partition_key": partition_key, "attempts": 1, "state": "open",
            "created_at": now, "record": _dumps(record), "error": error, "run_id": run_id, "updated_at": now}


def _dead_letter(row: sa.Row[Any]) -> DeadLetter:
    return DeadLetter.model_validate({**row._asdict(), "record": json.loads(row.record)})


def _inbox_event(row: sa.Row[Any]) -> InboxEvent:
    values = row._asdict()
    values["payload"] = json.loads(row.payload)
    values["headers"] = json.loads(row.headers)
    values["record_ref"] = None if row.record_ref is None else json.loads(row.record_ref)
    return InboxEvent.model_validate(values)


def _chunks(ids: Iterable[Any]) -> Iterator[list[Any]]:
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), _CHUNK):
        yield unique[start : start + _CHUNK]


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, hide_parameters=True)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's begin event: pysqlite's own would not put
        # DDL in a transaction, nor let a writer take its lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer locks at BEGIN, so busy_timeout queues it; a deferred transaction upgrading
        # to a write lock would fail at once with "database is locked" under contention.
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database in WAL mode, waiting out other connections doing the same."""
    # Only a new file is converted, and the conversion needs an exclusive lock that SQLite will
    # not queue for when another connection holds a shared one (the busy handler would
    # deadlock), so several processes opening a new ledger at once get "database is locked"
    # immediately: retry within the busy timeout instead.
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(random.uniform(0.005, 0.05))


class Ledger:
    """Links, dead letters, the inbox and key-value state in one SQL database."""

    def __init__(self, engine: Engine) -> None:
        """Wrap an engine whose schema is already migrated; most callers want ``Ledger.open()``."""
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"the ledger supports SQLite and Postgres, not {engine.dialect.name}")
        self.engine = engine
        self._insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert

    def __repr__(self) -> str:
        return f"Ledger({self.engine.url!r})"  # URL repr masks the password

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.dispose()

    @staticmethod
    def default_url() -> str:
        """``ML_CONNECTOR_DB_URL``, else SQLite at ``$ML_CONNECTOR_HOME`` (or ``$DAGSTER_HOME``, or ``./.dagster``)."""
        url = os.environ.get("ML_CONNECTOR_DB_URL", "").strip()
        if url:
            return url
        home = os.environ.get("ML_CONNECTOR_HOME") or os.environ.get("DAGSTER_HOME") or ".dagster"
        return f"sqlite:///{Path(home).expanduser().resolve() / 'ledger.db'}"

    @classmethod
    def open(cls, url: str | None = None) -> Ledger:
        """Connect (``None`` -> ``default_url()``) and migrate the schema to head; safe concurrently."""
        parsed = sa.make_url(url or cls.default_url())
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed)
        else:
            # Bound parameters (vault ciphertexts, record payloads) never belong in an error message.
            engine = sa.create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
        ledger = cls(engine)
        try:
            ledger.migrate()
        except BaseException:
            engine.dispose()
            raise
        return ledger

    def migrate(self) -> None:
        """Apply pending migrations (``upgrade head``); a no-op when the schema is current."""
        config = Config()
        config.set_main_option("script_location", str(SCRIPT_LOCATION))
        with self._write() as connection:
            if self.engine.dialect.name == "postgresql":
                # Held until commit: a second process waits, then finds the schema at head.
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATE_LOCK)))
            config.attributes["connection"] = connection
            # alembic's `context` is a process-wide proxy: two threads upgrading at once (sensors
            # run in threads) would trample each other's configuration.
            with _MIGRATE_THREAD_LOCK:
                command.upgrade(config, "head")

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            connection.execution_options(**{_WRITE: True})
            with connection.begin():
                yield connection

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as connection, connection.begin():
            yield connection

    # -- links ---------------------------------------------------------------------------------

    def links_for(self, flow: str, source_ids: Iterable[str]) -> dict[str, Link]:
        """The links of these source records in ``flow``, by source id (missing ones absent)."""
        t = links_table
        found: dict[str, Link] = {}
        with self._read() as connection:
            for chunk in _chunks(source_ids):
                rows = connection.execute(sa.select(t).where(t.c.flow == flow, t.c.source_id.in_(chunk)))
                found.update((row.source_id, _link(row)) for row in rows)
        return found

    def links_by_dest(self, flow: str, dest_ids: Iterable[str]) -> dict[str, Link]:
        """The links of ``flow`` pointing at these destination objects, by destination id."""
        t = links_table
        found: dict[str, Link] = {}
        with self._read() as connection:
            for chunk in _chunks(dest_ids):
                rows = connection.execute(sa.select(t).where(t.c.flow == flow, t.c.dest_id.in_(chunk)))
                found.update((row.dest_id, _link(row)) for row in rows)
        return found

    def pending_links(self, flow: str, limit: int | None = None) -> list[Link]:
        """Create intents of ``flow`` not yet confirmed, oldest first."""
        t = links_table
        query = sa.select(t).where(t.c.flow == flow, t.c.state == "pending").order_by(t.c.updated_at)
        with self._read() as connection:
            return [_link(row) for row in connection.execute(query.limit(limit))]

    def mark_pending(
        self,
        flow: str,
        source_id: str,
        source_version: str,
        dest_system: str,
        content_hash: str,
        run_id: str | None,
    ) -> None:
        """Record the intent to create ``source_id`` in ``dest_system``, before the create is sent.

        Raises ``AlreadyLinked`` when the record is already linked: creating it again would
        duplicate the destination object.
        """
        t = links_table
        now = _utcnow()
        values = {
            "source_version": source_version,
            "dest_system": dest_system,
            "content_hash": content_hash,
            "run_id": run_id,
            "updated_at": now,
        }
        statement = self._insert(t).values(
            flow=flow, source_id=source_id, state="pending", created_at=now, **values
        )
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.flow, t.c.source_id], set_=values, where=t.c.state == "pending"
        )
        with self._write() as connection:
            if connection.execute(statement).rowcount == 0:
                raise AlreadyLinked(f"{flow}: source record {source_id!r} is already linked")

    def mark_pending_many(
        self,
        flow: str,
        intents: Sequence[tuple[str, str, str]],
        dest_system: str,
        run_id: str | None,
    ) -> set[str]:
        """:meth:`mark_pending` for many ``(source_id, source_version, content_hash)`` in one transaction.

        One commit (one fsync on SQLite) for a whole bulk request instead of one per record. Returns
        the source ids already linked, which were left alone (creating them would duplicate them).
        """
        if not intents:
            return set()
        t = links_table
        now = _utcnow()
        rows = {source_id: {"flow": flow, "source_id": source_id, "state": "pending", "created_at": now,
                            "source_version": source_version, "dest_system": dest_system, "content_hash": content_hash,
                            "run_id": run_id, "updated_at": now}
                for source_id, source_version, content_hash in intents}  # one row per record: the last intent
        statement = self._insert(t)
        # One statement for every row; a row the conflict clause leaves alone (already linked) is not
        # returned, so the linked ones are known without a second read (and without a race).
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.flow, t.c.source_id], where=t.c.state == "pending",
            set_={name: statement.excluded[name] for name in ("source_version", "dest_system", "content_hash",
                                                              "run_id", "updated_at")},
        ).returning(t.c.source_id)  # fmt: skip
        with self._write() as connection:
            marked = {row.source_id for row in connection.execute(statement, list(rows.values()))}
        return set(rows) - marked

    def record_links(self, links: Sequence[Link]) -> None:
        """Upsert these links as ``linked`` in one transaction (``created_at`` of existing rows kept)."""
        if not links:
            return
        unlinked = [link.source_id for link in links if not link.dest_id]
        if unlinked:
            raise ValueError(f"links need a dest_id; missing for source ids {unlinked[:10]}")
        t = links_table
        now = _utcnow()
        rows = [
            {
                **link.model_dump(exclude={"state", "created_at", "updated_at"}),
                "state": "linked",
                "created_at": now,
                "updated_at": now,
            }
            for link in links
        ]
        statement = self._insert(t)
        updated = (
            "source_version",
            "dest_system",
            "dest_id",
            "dest_key",
            "dest_url",
            "content_hash",
            "run_id",
        )
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.flow, t.c.source_id],
            set_={
                **{name: statement.excluded[name] for name in updated},
                "state": "linked",
                "updated_at": now,
            },
        )
        with self._write() as connection:
            connection.execute(statement, rows)

    def forget_link(self, flow: str, source_id: str) -> None:
        """Drop the link of one record (e.g. its destination object was deleted)."""
        t = links_table
        with self._write() as connection:
            connection.execute(sa.delete(t).where(t.c.flow == flow, t.c.source_id == source_id))

    def count_links(self, flow: str) -> int:
        """How many records of ``flow`` the ledger links (pending intents included)."""
        t = links_table
        with self._read() as connection:
            query = sa.select(sa.func.count()).select_from(t).where(t.c.flow == flow)
            return connection.execute(query).scalar_one()

    # -- dead letters --------------------------------------------------------------------------

    def add_dead_letter(
        self,
        asset: str,
        source_id: str,
        record: Mapping[str, Any],
        error: str,
        *,
        partition_key: str | None = None,
        run_id: str | None = None,
    ) -> DeadLetter:
        """Open a dead letter for a failed record, or count one more attempt on its open letter."""
        row = _dead_letter_row(asset, source_id, record, error, partition_key, run_id, _utcnow())
        with self._write() as connection:
            return _dead_letter(connection.execute(self._dead_letter_upsert().returning(*dead_letters_table.c),
                                                   row).one())

    def add_dead_letters(self, asset: str, letters: Iterable[FailedRecord], *, run_id: str | None = None) -> int:
        """:meth:`add_dead_letter` for many records in one transaction and one statement (executed for
        each row: a page's broken records); how many."""
        now = _utcnow()
        rows = [_dead_letter_row(asset, letter.source_id, letter.record, letter.error, letter.partition_key, run_id, now)
                for letter in letters]
        # A record failing twice in one call is two attempts. A driver that folds the rows into one
        # multi-row INSERT would have PostgreSQL refuse to update a row twice, so repeats go in later rounds.
        rounds: list[list[dict[str, Any]]] = []
        seen: Counter[str] = Counter()
        for row in rows:
            repeat = seen[row["source_id"]]
            seen[row["source_id"]] += 1
            if repeat == len(rounds):
                rounds.append([])
            rounds[repeat].append(row)
        if rounds:
            statement = self._dead_letter_upsert()
            with self._write() as connection:
                for batch in rounds:
                    connection.execute(statement, batch)
        return len(rows)

    def _dead_letter_upsert(self) -> Any:
        # One statement whatever the rows (its values are bound per row): building and compiling an
        # upsert per record cost ~1 ms each.
        t = dead_letters_table
        statement = self._insert(t)
        excluded = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=[t.c.asset, t.c.source_id],
            index_where=_OPEN_LETTER,
            set_={
                "record": excluded.record,
                "error": excluded.error,
                "run_id": excluded.run_id,
                "updated_at": excluded.updated_at,
                "attempts": t.c.attempts + 1,
                "partition_key": sa.func.coalesce(excluded.partition_key, t.c.partition_key),
            },
        )

    def dead_letter(self, letter_id: int) -> DeadLetter | None:
        """One dead letter by id, whatever its state."""
        t = dead_letters_table
        with self._read() as connection:
            row = connection.execute(sa.select(t).where(t.c.id == letter_id)).one_or_none()
        return None if row is None else _dead_letter(row)

    def open_dead_letters(self, asset: str | None = None, limit: int | None = None) -> list[DeadLetter]:
        """Open letters, oldest first, of one asset or of all."""
        t = dead_letters_table
        query = sa.select(t).where(t.c.state == "open").order_by(t.c.id).limit(limit)
        if asset is not None:
            query = query.where(t.c.asset == asset)
        with self._read() as connection:
            return [_dead_letter(row) for row in connection.execute(query)]

    def resolve_dead_letter(self, letter_id: int) -> None:
        """Mark one open letter resolved (its record has since gone through)."""
        self._close_letter(letter_id, "resolved")

    def abandon_dead_letter(self, letter_id: int) -> None:
        """Mark one open letter abandoned (an operator decided not to replay it)."""
        self._close_letter(letter_id, "abandoned")

    def _close_letter(self, letter_id: int, state: str) -> None:
        t = dead_letters_table
        statement = (
            sa.update(t)
            .where(t.c.id == letter_id, t.c.state == "open")
            .values(state=state, updated_at=_utcnow())
        )
        with self._write() as connection:
            connection.execute(statement)

    def resolve_dead_letters_for(self, asset: str, source_ids: Iterable[str]) -> int:
        """Resolve the open letters of records that later succeeded; returns how many closed."""
        t = dead_letters_table
        now = _utcnow()
        resolved = 0
        with self._write() as connection:
            for chunk in _chunks(source_ids):
                statement = (
                    sa.update(t)
                    .where(t.c.asset == asset, t.c.state == "open", t.c.source_id.in_(chunk))
                    .values(state="resolved", updated_at=now)
                )
                resolved += connection.execute(statement).rowcount
        return resolved

    def count_open_dead_letters(self, asset: str | None = None) -> int:
        """How many letters are open, for one asset or in all."""
        t = dead_letters_table
        query = sa.select(sa.func.count()).select_from(t).where(t.c.state == "open")
        if asset is not None:
            query = query.where(t.c.asset == asset)
        with self._read() as connection:
            return connection.execute(query).scalar_one()

    # -- inbox ---------------------------------------------------------------------------------

    def append_inbox(
        self,
        system: str,
        event_id: str,
        payload: Mapping[str, Any],
        *,
        headers: Mapping[str, Any] | None = None,
        partition_key: str | None = None,
        record_ref: Mapping[str, Any] | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        """Store a verified event once; ``False`` when ``(system, event_id)`` was already stored."""
        t = inbox_table
        statement = (
            self._insert(t)
            .values(
                system=system,
                event_id=event_id,
                received_at=_utcnow() if received_at is None else _as_utc(received_at, "received_at"),
                payload=_dumps(payload),
                headers=_dumps(headers or {}),
                partition_key=partition_key,
                record_ref=None if record_ref is None else _dumps(record_ref),
            )
            .on_conflict_do_nothing(index_elements=[t.c.system, t.c.event_id])
        )
        with self._write() as connection:
            if self.engine.dialect.name == "postgresql":
                # Sequence values are taken at insert but become visible at commit; serialising
                # appends keeps ids visible in order, so a sensor cursor on id never skips one.
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_INBOX_LOCK)))
            return connection.execute(statement).rowcount == 1

    def inbox_after(
        self,
        after_id: int,
        limit: int = 1000,
        *,
        system: str | None = None,
        unprocessed_only: bool = True,
    ) -> list[InboxEvent]:
        """Events with id greater than ``after_id``, in id order (the order they were stored)."""
        t = inbox_table
        query = sa.select(t).where(t.c.id > after_id).order_by(t.c.id).limit(limit)
        if system is not None:
            query = query.where(t.c.system == system)
        if unprocessed_only:
            query = query.where(t.c.processed_at.is_(None))
        with self._read() as connection:
            return [_inbox_event(row) for row in connection.execute(query)]

    def mark_inbox_processed(self, ids: Sequence[int], run_key: str | None = None) -> None:
        """Mark events as handed to a run (``run_key`` names the run request)."""
        t = inbox_table
        now = _utcnow()
        with self._write() as connection:
            for chunk in _chunks(ids):
                connection.execute(
                    sa.update(t).where(t.c.id.in_(chunk)).values(processed_at=now, run_key=run_key)
                )

    def prune_inbox(self, processed_before: datetime) -> int:
        """Delete events processed before a moment; returns how many went. Ids are never reused."""
        t = inbox_table
        cutoff = _as_utc(processed_before, "processed_before")
        with self._write() as connection:
            return connection.execute(sa.delete(t).where(t.c.processed_at < cutoff)).rowcount

    # -- key-value state -----------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        """The value stored under ``key``, or ``None``."""
        t = kv_state_table
        with self._read() as connection:
            return connection.execute(sa.select(t.c.value).where(t.c.key == key)).scalar_one_or_none()

    def set_state(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        t = kv_state_table
        now = _utcnow()
        statement = self._insert(t).values(key=key, value=value, updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.key], set_={"value": value, "updated_at": now}
        )
        with self._write() as connection:
            connection.execute(statement)

    def update_state(self, key: str, change: Callable[[str | None], tuple[str | None, T]]) -> T:
        """Replace the value under ``key`` by what ``change`` makes of it, atomically; return ``change``'s result.

        ``change`` gets the current value (``None`` when there is none) and returns the new value and
        a result. No other writer, in this process or another, reads or writes ``key`` in between:
        SQLite takes its write lock at BEGIN, Postgres locks the key's row.
        """
        t = kv_state_table
        now = _utcnow()
        current = sa.select(t.c.value).where(t.c.key == key)
        with self._write() as connection:
            if self.engine.dialect.name == "postgresql":
                # A row to lock: the first writer of a key creates it, the others wait on its lock.
                connection.execute(self._insert(t).values(key=key, value=None, updated_at=now).on_conflict_do_nothing())
                current = current.with_for_update()
            value, result = change(connection.execute(current).scalar_one_or_none())
            statement = self._insert(t).values(key=key, value=value, updated_at=now)
            connection.execute(
                statement.on_conflict_do_update(index_elements=[t.c.key], set_={"value": value, "updated_at": now})
            )
        return result

    def states_under(self, prefix: str) -> dict[str, str]:
        """Every key starting with ``prefix``, with its value (a range scan: no LIKE wildcards to escape)."""
        t = kv_state_table
        query = sa.select(t.c.key, t.c.value).where(t.c.key >= prefix, t.c.key < prefix + "\U0010ffff")
        with self._read() as connection:
            return {row.key: row.value for row in connection.execute(query) if row.key.startswith(prefix)}

    def delete_state(self, key: str) -> None:
        """Forget ``key``."""
        t = kv_state_table
        with self._write() as connection:
            connection.execute(sa.delete(t).where(t.c.key == key))
