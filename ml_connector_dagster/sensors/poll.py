"""Watermark poll sensors: find what changed since the cursor, ask for one run per affected partition.

The cursor is a watermark (the latest modification time requested so far, UTC) plus the ids
modified at exactly that instant. Each tick asks the source for changes at or after the watermark
(``>=``: records sharing the boundary timestamp are never skipped), drops the ids already requested
at the watermark (nor are they requested twice), groups the rest by partition and emits one
``RunRequest`` per partition, carrying the window of that partition's changes. The cursor moves
only past what was requested, and its id list stays bounded: only ids at the new maximum.

A tick has a time budget and a ceiling on changes. When either is hit the changes seen so far
cannot bound the unseen ones (the source need not return them in time order), so the tick falls
back to *coverage*: it requests every partition from the watermark up to the tick's start, each
for the whole of that span, and moves the watermark to the tick's start. Nothing is skipped; the
runs do the paging; the next tick carries on from there.

An unreadable cursor is logged and replaced by a fresh start at ``now - lookback`` (as the first
tick is); reading the source is not guarded: a failing source fails the tick, visibly.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import dagster as dg
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, field_validator

from ml_connector_dagster.check_scope import record_checks
from ml_connector_dagster.run_tags import tags_for_selection

__all__ = [
    "Change",
    "Collected",
    "PartitionWindow",
    "PollCursor",
    "PollPlan",
    "PollPolicy",
    "build_poll_sensor",
    "changes_in",
    "window_run_config",
    "collect_changes",
    "load_cursor",
    "plan_poll",
    "poll_due",
]

# The gRPC deadline of a sensor tick is 60 s; leave room for building the requests.
DEFAULT_TIME_BUDGET_S = 40.0
DEFAULT_MAX_CHANGES = 5000
_MICROSECOND = timedelta(microseconds=1)


class PollCursor(BaseModel):
    """What a poll sensor has requested so far: a UTC watermark and the ids seen exactly at it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    watermark: AwareDatetime
    ids_at_watermark: tuple[str, ...] = ()

    @field_validator("watermark")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def to_json(self) -> str:
        """The cursor string Dagster stores."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, raw: str) -> PollCursor:
        """Parse a stored cursor; raises ``ValueError`` when it is not one."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as error:
            raise ValueError(f"not a poll cursor: {error.error_count()} problem(s)") from None


class Change(NamedTuple):
    """One changed record, as a sensor sees it: its id and when it was modified (UTC)."""

    record_id: str
    modified_at: datetime


@dataclass(frozen=True)
class PollPolicy:
    """How far back a fresh start looks, and how much one tick may do."""

    lookback: timedelta
    time_budget_s: float = DEFAULT_TIME_BUDGET_S
    max_changes: int = DEFAULT_MAX_CHANGES


@dataclass(frozen=True)
class Collected:
    """The new changes of one tick; ``complete`` is False when the tick stopped early."""

    changes: list[Change]
    complete: bool


@dataclass(frozen=True)
class PartitionWindow:
    """One run to request: a partition and the inclusive span of modification times to read."""

    partition_key: str
    modified_from: datetime
    modified_to: datetime
    changes: int | None  # None: a coverage window after an early stop (count unknown)


@dataclass(frozen=True)
class PollPlan:
    """The runs to request and the cursor to store with them."""

    windows: list[PartitionWindow]
    cursor: PollCursor
    skipped_before_start: int = 0
    deferred: int = 0


def load_cursor(raw: str | None, *, now: datetime, lookback: timedelta, log: Any = None) -> PollCursor:
    """The stored cursor, or a fresh start at ``now - lookback`` when there is none or it is unreadable."""
    fresh = PollCursor(watermark=now - lookback)
    if not raw:
        return fresh
    try:
        return PollCursor.from_json(raw)
    except ValueError as error:
        if log is not None:
            log.warning(f"unreadable cursor ({error}); starting fresh from {fresh.watermark.isoformat()}")
        return fresh


def collect_changes(
    pages: Iterable[Iterable[Change]],
    cursor: PollCursor,
    policy: PollPolicy,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Collected:
    """Read pages of changes until they end, the time budget runs out or ``max_changes`` are found.

    Drops what the cursor already covers: changes before the watermark, and the ids already seen
    at it. A record seen twice keeps its latest modification.
    """
    started = clock()
    seen_at_watermark = set(cursor.ids_at_watermark)
    latest: dict[str, datetime] = {}
    iterator = iter(pages)
    for page in iterator:
        for change in page:
            moment = change.modified_at.astimezone(UTC)
            if moment < cursor.watermark or (moment == cursor.watermark and change.record_id in seen_at_watermark):
                continue
            if change.record_id not in latest or latest[change.record_id] < moment:
                latest[change.record_id] = moment
        if len(latest) >= policy.max_changes or clock() - started > policy.time_budget_s:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # release the source's connection now, not at garbage collection
            return Collected([Change(i, m) for i, m in latest.items()], complete=False)
    return Collected([Change(i, m) for i, m in latest.items()], complete=True)


def _windows_by_partition(changes: Iterable[Change], key_for: Callable[[datetime], str]) -> list[PartitionWindow]:
    spans: dict[str, list[datetime]] = {}
    for change in changes:
        spans.setdefault(key_for(change.modified_at), []).append(change.modified_at)
    return [PartitionWindow(key, min(times), max(times), len(times)) for key, times in sorted(spans.items())]


def _coverage(
    cursor: PollCursor, until: datetime, partitions_def: dg.TimeWindowPartitionsDefinition
) -> list[PartitionWindow]:
    """Windows covering ``[watermark, until)`` partition by partition (existing partitions only)."""
    windows = []
    start = max(cursor.watermark, partitions_def.start.astimezone(UTC))
    key: str | None = partitions_def.get_partition_key_for_timestamp(start.timestamp())
    while key is not None and partitions_def.has_partition_key(key):
        span = partitions_def.time_window_for_partition_key(key)
        if span.start >= until:
            break
        end = min(span.end, until)
        windows.append(PartitionWindow(key, max(span.start, start), end - _MICROSECOND, None))
        key = partitions_def.get_next_partition_key(key)
    return windows


def plan_poll(
    collected: Collected,
    cursor: PollCursor,
    *,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    tick_started_at: datetime,
) -> PollPlan:
    """Turn one tick's changes into run windows and the cursor that goes with them.

    Changes before the first partition are dropped (no partition can hold them); changes in a
    partition that does not exist yet (a source clock ahead of ours, past midnight) wait for a
    later tick — they are all later than every change requested, so the watermark stays below them.
    """
    def key_for(moment: datetime) -> str:
        return partitions_def.get_partition_key_for_timestamp(moment.timestamp())

    first = partitions_def.start.astimezone(UTC)
    usable = [c for c in collected.changes if c.modified_at >= first]
    skipped = len(collected.changes) - len(usable)
    ready = [c for c in usable if partitions_def.has_partition_key(key_for(c.modified_at))]
    deferred = len(usable) - len(ready)
    if not collected.complete:
        until = tick_started_at.astimezone(UTC)
        if until > cursor.watermark:
            return PollPlan(_coverage(cursor, until, partitions_def), PollCursor(watermark=until), skipped, deferred)
        # A watermark ahead of our clock: request what was seen, but do not move past the unseen.
        return PollPlan(_windows_by_partition(ready, key_for), cursor, skipped, deferred)
    if not ready:
        return PollPlan([], cursor, skipped, deferred)
    top = max(c.modified_at for c in ready)
    at_top = {c.record_id for c in ready if c.modified_at == top}
    if top == cursor.watermark:
        at_top |= set(cursor.ids_at_watermark)
    new_cursor = PollCursor(watermark=top, ids_at_watermark=tuple(sorted(at_top)))
    return PollPlan(_windows_by_partition(ready, key_for), new_cursor, skipped, deferred)


def _run_key(name: str, window: PartitionWindow, cursor: PollCursor) -> str:
    # Run keys are deduplicated forever: the watermark alone would repeat when only new ids at an
    # unchanged watermark arrive, so a digest of the whole cursor goes in too.
    digest = hashlib.sha256(cursor.to_json().encode()).hexdigest()[:12]
    return f"{name}:{window.partition_key}:{cursor.watermark.isoformat()}:{digest}"


def build_poll_sensor(
    *,
    name: str,
    target: dg.AssetsDefinition,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    probe: Callable[[dg.SensorEvaluationContext, datetime], Iterable[Iterable[Change]]],
    run_config_for: Callable[[PartitionWindow], Mapping[str, Any]],
    policy: PollPolicy,
    minimum_interval_seconds: int,
    required_resource_keys: set[str],
    description: str,
    tags: Mapping[str, str] | None = None,
) -> dg.SensorDefinition:
    """A running-by-default sensor that polls ``probe(context, watermark)`` and requests runs of ``target``
    and its direct downstream assets."""

    # Runs cover the source and the assets fed directly by it (each flow's destination), so one
    # run per changed day moves a change from the source to every destination.
    selection = dg.AssetSelection.assets(target).downstream(depth=1)

    @dg.sensor(
        name=name,
        target=selection,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=required_resource_keys,
        description=description,
    )
    def poll(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        started = datetime.now(UTC)
        cursor = load_cursor(context.cursor, now=started, lookback=policy.lookback, log=context.log)
        collected = collect_changes(probe(context, cursor.watermark), cursor, policy)
        plan = plan_poll(collected, cursor, partitions_def=partitions_def, tick_started_at=started)
        if not collected.complete:
            context.log.info(f"stopped early after {len(collected.changes)} changes; covering "
                             f"{len(plan.windows)} partition(s) up to {plan.cursor.watermark.isoformat()}")
        if plan.skipped_before_start or plan.deferred:
            context.log.warning(f"{plan.skipped_before_start} change(s) before the first partition skipped, "
                                f"{plan.deferred} in a partition not open yet deferred")
        # Tagged with every system the run writes to: the run queue's per-destination limits.
        run_tags = {**(tags or {}), **tags_for_selection(context.repository_def, selection), "ml_connector/trigger": name}
        # The window's records' checks; the partition audit is the daily audit's (partition_audits).
        checks = record_checks(context.repository_def, selection)
        assets = None if checks is None else sorted(selection.resolve(context.repository_def.asset_graph),
                                                    key=lambda key: key.to_user_string())
        requests = [
            dg.RunRequest(
                run_key=_run_key(name, window, plan.cursor),
                partition_key=window.partition_key,
                run_config=dict(run_config_for(window)),
                tags=run_tags,
                asset_selection=assets,
                asset_check_keys=checks,
            )
            for window in plan.windows
        ]
        return dg.SensorResult(run_requests=requests, cursor=plan.cursor.to_json())

    return poll


def changes_in(pages: Iterable[Sequence[Any]], *, id_of: Callable[[Any], str | None],
               modified_of: Callable[[Any], datetime | None], asset: str, log: Any) -> Iterator[list[Change]]:
    """Pages of raw records -> pages of (id, modified).

    A record without an id or a readable timestamp cannot be placed in a partition; it is logged,
    and the run of whichever day reads it quarantines it.
    """
    for page in pages:
        changes = []
        for raw in page:
            record_id, moment = id_of(raw), modified_of(raw)
            if not isinstance(record_id, str) or moment is None:
                log.warning(f"{asset}: a changed record has no id or timestamp")
                continue
            changes.append(Change(record_id, moment))
        yield changes


def window_run_config(op_name: str, window_config: type[dg.Config]) -> Callable[[PartitionWindow], Mapping[str, Any]]:
    """``run_config_for`` that hands a partition's window to ``op_name`` as its ``window_config``."""

    def run_config_for(window: PartitionWindow) -> Mapping[str, Any]:
        config = window_config(modified_from=window.modified_from.isoformat(),
                               modified_to=window.modified_to.isoformat())
        return {"ops": {op_name: {"config": config.model_dump()}}}

    return run_config_for


def poll_due(polled_at: float | None, now: datetime, interval_s: float) -> bool:
    """Whether a sensor that reads webhook hints at every tick polls its vendor at this one: it never has
    (``polled_at`` None, epoch seconds otherwise), or ``interval_s`` has passed since."""
    return polled_at is None or now.timestamp() - polled_at >= interval_s
