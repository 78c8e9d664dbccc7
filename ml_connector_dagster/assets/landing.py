"""The vendor-neutral half of a source asset: validate pages, land the good records, quarantine the rest.

Each vendor module (``assets/visma.py`` ...) says how its wire records are read (:class:`RecordRules`:
id, timestamp, model, payload) and how pages are fetched; this module turns pages into landed records
(:class:`Lander`), dead letters and the run's ``MaterializeResult``, narrows a run to the sensor's
window (:func:`read_window`) and checks that no record of an asset waits in the dead-letter queue
(:func:`build_dead_letter_check`).
"""

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import dagster as dg
import pandas as pd

from ml_connector_dagster.core.canonical_json import canonical_json_stdlib
from ml_connector_dagster.core.http import AuthenticationFailed, NotFound
from ml_connector_dagster.core.landing import LandCounts, LandedRecord, LandingStore, id_problem
from ml_connector_dagster.core.ledger import FailedRecord, Ledger
from ml_connector_dagster.resources import LedgerResource

__all__ = [
    "BACKFILL",
    "PREVIEW_ROWS",
    "RETRY",
    "source_retry",
    "Lander",
    "LandingTally",
    "ModifiedWindow",
    "RecordRules",
    "SourceRecord",
    "Window",
    "build_dead_letter_check",
    "daily_partitions",
    "land_pages",
    "pages_by_id",
    "partition_key_function",
    "read_window",
]

PREVIEW_ROWS = 10
RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def source_retry(retries: int, delay_s: float) -> dg.RetryPolicy:
    """A source step's retries (``op_retries``, ``op_retry_delay_s`` of its system): backoff and jitter as :data:`RETRY`."""
    return dg.RetryPolicy(max_retries=retries, delay=delay_s, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
# A run covers up to a week of partitions in one pass: the vendors' filters page through everything
# since the window's start, so one pass per week rather than per day keeps a backfill linear.
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=7)

Window = tuple[datetime, datetime]
_Client = TypeVar("_Client")


class ModifiedWindow(dg.Config):
    """Narrows a run to the changes a sensor found; without it the run reads its partitions' whole days."""

    modified_from: str | None = None
    modified_to: str | None = None


class SourceRecord(Protocol):
    """What the lander needs of a validated record."""

    @property
    def record_id(self) -> str: ...

    @property
    def modified_at(self) -> datetime: ...


def _unchanged(raw: dict[str, Any]) -> dict[str, Any]:
    return raw


@dataclass(frozen=True)
class RecordRules:
    """How one vendor's wire records are read: the quirks :class:`Lander` defers to."""

    system: str
    entity: str
    validate: Callable[[dict[str, Any]], SourceRecord | str]
    modified_at: Callable[[dict[str, Any]], datetime | None]
    raw_id: Callable[[dict[str, Any]], str | None]
    unreadable_timestamp: str
    preview: tuple[str, ...]
    to_plain: Callable[[dict[str, Any]], dict[str, Any]] = _unchanged
    payload: Callable[[dict[str, Any]], dict[str, Any]] = _unchanged
    # Quarantine an undated record even when no window asks for its date (records fetched by id).
    always_dated: bool = False


@lru_cache(maxsize=8)
def daily_partitions(start: date) -> dg.DailyPartitionsDefinition:
    """A daily UTC partitioning by modification day from ``start``; ``end_offset=1`` so today's exists."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)


def partition_key_function(partitions_def: dg.DailyPartitionsDefinition) -> Callable[[datetime], str]:
    """``moment -> partition key`` of a daily UTC partitioning."""

    @lru_cache(maxsize=64)
    def key_of_day(day: date) -> str:
        return partitions_def.get_partition_key_for_timestamp(datetime.combine(day, time(), UTC).timestamp())

    def partition_key_for(moment: datetime) -> str:
        # The key depends on the UTC date only, and Dagster's lookup walks a cron schedule on every
        # call, so it is asked once per day rather than once per record.
        return key_of_day(moment.astimezone(UTC).date())

    return partition_key_for


def read_window(days: dg.TimeWindow, config: ModifiedWindow, overlap: timedelta,
                parse: Callable[[str], datetime]) -> Window:
    """``[start, end)`` to read: the run's days, narrowed to the sensor's window (with ``overlap`` behind).

    ``modified_to`` is inclusive (the latest change the sensor saw); the window never leaves the days.
    """
    start, end = days.start, days.end
    if config.modified_from:
        start = max(start, parse(config.modified_from) - overlap)
    if config.modified_to:
        end = min(end, parse(config.modified_to) + timedelta(microseconds=1))
    if end <= start:
        raise dg.Failure(f"empty window: modified_from/modified_to select nothing of "
                         f"{days.start:%Y-%m-%d}..{days.end:%Y-%m-%d}", allow_retries=False)
    return start, end


def _markdown(frame: pd.DataFrame) -> str:
    # Ids like "000042" are text: keep them as written.
    return frame.to_markdown(index=False, disable_numparse=True)


def _preview_value(record: SourceRecord, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = getattr(value, part, None)
    return value.isoformat() if isinstance(value, datetime | date) else value


@dataclass
class LandingTally:
    """What one run read, landed and quarantined, with a preview of the first landed records."""

    read: int = 0
    outside: int = 0
    quarantined: int = 0
    landed: LandCounts = field(default_factory=LandCounts)
    preview: list[dict[str, Any]] = field(default_factory=list)


class Lander:
    """Validates pages of one source and lands or quarantines each record."""

    def __init__(self, key: dg.AssetKey, rules: RecordRules, ledger: Ledger, run_id: str,
                 partition_key_for: Callable[[datetime], str] | None) -> None:
        self.rules = rules
        self.asset = key.to_user_string()
        self.ledger = ledger
        self.store = LandingStore(ledger)
        self.run_id = run_id
        self.partition_key_for = partition_key_for
        self.tally = LandingTally()

    def take(self, page: Sequence[Any], window: Window | None) -> None:
        """Validate one page: land the good records of the window, quarantine the bad ones."""
        self.tally.read += len(page)
        valid: list[tuple[SourceRecord, dict[str, Any]]] = []
        broken: list[FailedRecord] = []
        for raw in (r if isinstance(r, dict) else {"value": r} for r in page):  # a non-object fails by name
            moment = self.rules.modified_at(raw)
            if moment is None and (window is not None or self.rules.always_dated):
                broken.append(self._failed(raw, self.rules.unreadable_timestamp, None))
            elif window is not None and moment is not None and not window[0] <= moment < window[1]:
                self.tally.outside += 1  # another partition's record: its own run lands it
            elif isinstance(checked := self.rules.validate(plain := self.rules.to_plain(raw)), str):
                broken.append(self._failed(raw, checked, self._partition_key(moment)))
            else:
                valid.append((checked, plain))
        if broken:  # one commit for the page's broken records, not one each
            self.tally.quarantined += self.ledger.add_dead_letters(self.asset, broken, run_id=self.run_id)
        self._land(valid)

    def _land(self, valid: list[tuple[SourceRecord, dict[str, Any]]]) -> None:
        landed = [
            LandedRecord(record_id=record.record_id, partition_key=self._partition_key(record.modified_at),
                         modified_at=record.modified_at, payload=self.rules.payload(plain))
            for record, plain in valid
        ]
        counts = self.store.land(self.rules.system, self.rules.entity, landed, run_id=self.run_id)
        self.tally.landed = self.tally.landed.plus(counts)
        self.ledger.resolve_dead_letters_for(self.asset, [record.record_id for record in landed])
        room = max(PREVIEW_ROWS - len(self.tally.preview), 0)
        self.tally.preview += [{path: _preview_value(record, path) for path in self.rules.preview}
                               for record, _ in valid[:room]]

    def _partition_key(self, moment: datetime | None) -> str | None:
        return self.partition_key_for(moment) if self.partition_key_for and moment else None

    def _failed(self, raw: dict[str, Any], reason: str, partition_key: str | None) -> FailedRecord:
        # A broken record's id may be as broken as the rest: one the ledger cannot key is replaced.
        source_id = self.rules.raw_id(raw)
        if source_id is None or id_problem(source_id):
            # Keyed by the standard library's text, which tells NaN from null (the fast canonical JSON
            # writes both as null): two different broken records must never share one dead letter.
            fingerprint = hashlib.sha256(canonical_json_stdlib(raw).encode("ascii")).hexdigest()
            source_id = f"unidentified:{fingerprint[:16]}"
        return FailedRecord(source_id, raw, reason, partition_key)

    def result(self, window: Window | None) -> dg.MaterializeResult:
        """The run's counts, a markdown preview and (for a window run) the window read."""
        t = self.tally
        preview = pd.DataFrame(t.preview, columns=list(self.rules.preview))
        metadata: dict[str, Any] = {
            "read": t.read,
            "inserted": t.landed.inserted,
            "updated": t.landed.updated,
            "unchanged": t.landed.unchanged,
            "quarantined": t.quarantined,
            "outside_window": t.outside,
            "preview": dg.MetadataValue.md(_markdown(preview) if t.preview else "_nothing landed_"),
        }
        if window is not None:
            metadata["window"] = dg.MetadataValue.text(f"{window[0].isoformat()} .. {window[1].isoformat()}")
        return dg.MaterializeResult(metadata=metadata)


def pages_by_id(fetch: Callable[[str], dict[str, Any]], ids: Sequence[str], *, missing: Callable[[str], None],
                page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
    """The records named by id, one ``fetch`` each, in pages; a deleted one is reported to ``missing``."""
    page: list[dict[str, Any]] = []
    for record_id in dict.fromkeys(ids):
        try:
            page.append(fetch(record_id))
        except NotFound:
            missing(record_id)
            continue
        if len(page) >= page_size:
            yield page
            page = []
    if page:
        yield page


def land_pages(context: dg.AssetExecutionContext, key: dg.AssetKey, rules: RecordRules,
                  client: AbstractContextManager[_Client], ledger: LedgerResource,
                  pages: Callable[[_Client], Iterable[Sequence[Any]]], *, window: Window | None,
                  partition_key_for: Callable[[datetime], str] | None) -> dg.MaterializeResult:
    """Land every page ``pages`` reads through the opened ``client``; auth failures are not retried."""
    try:
        with client as opened_client, ledger.open() as opened:
            lander = Lander(key, rules, opened, context.run_id, partition_key_for)
            for page in pages(opened_client):
                lander.take(page, window)
    except AuthenticationFailed as exc:
        # Retrying will not mend credentials; the message is already redacted.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    t = lander.tally
    context.log.info(f"{key.to_user_string()}: read {t.read}, landed {t.landed}, quarantined {t.quarantined}")
    return lander.result(window)


def build_dead_letter_check(key: dg.AssetKey, *, per_partition: bool = True) -> dg.AssetChecksDefinition:
    """``no_open_dead_letters`` (warning): records of this asset still quarantined, with a sample.

    With ``per_partition`` a partitioned check run also counts the letters of its own partitions.
    """
    asset = key.to_user_string()

    @dg.asset_check(asset=key, name="no_open_dead_letters", blocking=False,
                    description=f"No record of {asset} is waiting in the dead-letter queue.")
    def no_open_dead_letters(context: dg.AssetCheckExecutionContext, ledger: LedgerResource) -> dg.AssetCheckResult:
        with ledger.open() as opened:
            letters = opened.open_dead_letters(asset)
        metadata: dict[str, Any] = {"open_dead_letters": len(letters)}
        if per_partition and (context.has_partition_key or context.has_partition_key_range):
            keys = set(context.partition_keys)
            metadata["open_in_these_partitions"] = sum(1 for letter in letters if letter.partition_key in keys)
        if letters:
            sample = pd.DataFrame([{"record": letter.source_id, "partition": letter.partition_key,
                                    "error": letter.error[:200]} for letter in letters[:PREVIEW_ROWS]])
            metadata["sample"] = dg.MetadataValue.md(_markdown(sample))
        return dg.AssetCheckResult(passed=not letters, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)

    return no_open_dead_letters
