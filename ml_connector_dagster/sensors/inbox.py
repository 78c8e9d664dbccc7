"""The inbox sensor: turn verified webhook events into runs that fetch exactly those records.

Each tick reads the inbox past its cursor (the last inbox id it handled), groups the events by
``(system, entity, partition)``, and requests one run per group (per ``max_ids_per_run`` ids) of
the assets routed for ``(system, entity)``, with the record ids in the run config of the source
asset's op::

    {"ops": {"<source op>": {"config": {"ids": ["<id>", ...]}}}}

plus the partition key (the day of the record's modification, else of receipt) when the assets are
partitioned. ``run_key = inbox:<system>:<entity>:<partition or ->:<max inbox id of the group>``.

Ordering, and why nothing is lost or requested twice: the cursor, not ``processed_at``, decides
what a tick reads (a fresh cursor starts at 0 and skips rows already processed). Rows are marked
processed with their run key in the same tick, after the ``SensorResult`` is built and before it
is returned. If the daemon dies before it commits that result, the cursor has not moved, so the
next tick reads the same rows again (their processed mark does not hide them) and builds the same
run keys, which Dagster dedupes; if more events of a group arrived meanwhile, the new key requests
a superset, and fetching by id is idempotent. Events stored while Dagster was down simply wait in
the inbox for the next tick.

A tick that finds nothing to request may keep watching the inbox for ``wait_for_events_s`` (one
indexed query every ``WATCH_INTERVAL_S``) and return as soon as a routable event is there: the
daemon starts sensor ticks at most every 5 s, so without watching a webhook waits 2.5 s on average,
5 s at worst, before its run is even requested. Nothing else changes: the same cursor, run keys and
marks.

Rows this sensor cannot request — no ``record_ref``, no route for their ``(system, entity)``, or
a partition the assets do not have — are passed by the cursor and left unprocessed (polling is the
guarantee); the tick logs how many.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from ml_connector_dagster.check_scope import record_checks
from ml_connector_dagster.core.ledger import InboxEvent, Ledger
from ml_connector_dagster.run_tags import tags_for_selection, webhook_run_tags

__all__ = ["InboxGroup", "InboxPlan", "InboxRoute", "build_inbox_sensor", "inbox_run_key", "plan_inbox"]

DEFAULT_BATCH_SIZE = 1000
DEFAULT_MAX_IDS_PER_RUN = 200
WATCH_INTERVAL_S = 0.2


@dataclass(frozen=True)
class InboxRoute:
    """The assets one ``(system, entity)`` triggers; the first fetches the records by id.

    ``ids_op`` is the op whose config takes ``ids`` (default: the first asset's op,
    ``"__".join(key.path)``). ``partitions_def`` defaults to the first asset's, as the code location
    defines it.
    """

    assets: tuple[dg.AssetKey, ...]
    ids_op: str | None = None
    partitions_def: dg.PartitionsDefinition | None = None

    def __post_init__(self) -> None:
        if not self.assets:
            raise ValueError("an inbox route needs at least one asset")

    @property
    def source(self) -> dg.AssetKey:
        """The asset that reads the records by id."""
        return self.assets[0]

    def run_config(self, ids: Sequence[str]) -> dict[str, Any]:
        """The run config handing ``ids`` to the source op."""
        op = self.ids_op or "__".join(self.source.path)
        return {"ops": {op: {"config": {"ids": list(ids)}}}}


RouteLike = InboxRoute | dg.AssetKey | Sequence[dg.AssetKey]


def _as_route(value: RouteLike) -> InboxRoute:
    if isinstance(value, InboxRoute):
        return value
    if isinstance(value, dg.AssetKey):
        return InboxRoute((value,))
    return InboxRoute(tuple(value))


@dataclass
class InboxGroup:
    """Events of one ``(system, entity, partition)`` to fetch in one run."""

    system: str
    entity: str
    partition_key: str | None
    record_ids: list[str] = field(default_factory=list)
    inbox_ids: list[int] = field(default_factory=list)

    @property
    def run_key(self) -> str:
        """The deduping key of this group's run request."""
        return inbox_run_key(self.system, self.entity, self.partition_key, max(self.inbox_ids))


def inbox_run_key(system: str, entity: str, partition_key: str | None, max_inbox_id: int) -> str:
    """``inbox:<system>:<entity>:<partition or ->:<max inbox id>``."""
    return f"inbox:{system}:{entity}:{partition_key or '-'}:{max_inbox_id}"


@dataclass
class InboxPlan:
    """What one tick requests, and what it passes over."""

    groups: list[InboxGroup]
    unrouted: int = 0
    outside_partitions: int = 0


def plan_inbox(
    events: Sequence[InboxEvent],
    routes: Mapping[tuple[str, str], InboxRoute],
    partitions: Mapping[tuple[str, str], dg.PartitionsDefinition | None],
    *,
    max_ids_per_run: int = DEFAULT_MAX_IDS_PER_RUN,
) -> InboxPlan:
    """Group events by ``(system, entity, partition)``, chunked to ``max_ids_per_run`` distinct ids."""
    plan = InboxPlan(groups=[])
    open_groups: dict[tuple[str, str, str | None], InboxGroup] = {}
    for event in events:
        ref = event.record_ref or {}
        entity, record_id = ref.get("entity"), ref.get("id")
        if not isinstance(entity, str) or record_id is None or (event.system, entity) not in routes:
            plan.unrouted += 1
            continue
        partitions_def = partitions.get((event.system, entity))
        partition_key = None
        if partitions_def is not None:
            partition_key = event.partition_key or event.received_at.date().isoformat()
            if not partitions_def.has_partition_key(partition_key):
                plan.outside_partitions += 1
                continue
        key = (event.system, entity, partition_key)
        group = open_groups.get(key)
        record_id = str(record_id)
        if group is None or (record_id not in group.record_ids and len(group.record_ids) >= max_ids_per_run):
            group = InboxGroup(event.system, entity, partition_key)
            open_groups[key] = group
            plan.groups.append(group)
        if record_id not in group.record_ids:
            group.record_ids.append(record_id)
        group.inbox_ids.append(event.id)
    return plan


def _partitions_of(context: dg.SensorEvaluationContext, route: InboxRoute) -> dg.PartitionsDefinition | None:
    if route.partitions_def is not None:
        return route.partitions_def
    repository = context.repository_def
    if repository is None:
        raise dg.DagsterInvariantViolationError(
            "the inbox sensor needs its code location (or InboxRoute.partitions_def) to know the partitions"
        )
    return repository.asset_graph.get(route.source).partitions_def


def _load_cursor(raw: str | None, log: Any) -> int | None:
    if raw is None:
        return None
    try:
        return max(int(raw), 0)
    except ValueError:
        log.warning("inbox sensor: unreadable cursor, starting from the unprocessed rows")
        return None


def build_inbox_sensor(
    routes: Mapping[tuple[str, str], RouteLike],
    *,
    name: str = "inbox_sensor",
    ledger_resource_key: str = "ledger",
    minimum_interval_seconds: int = 15,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_ids_per_run: int = DEFAULT_MAX_IDS_PER_RUN,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    wait_for_events_s: float = 0.0,
) -> dg.SensorDefinition:
    """A sensor requesting fetch-by-id runs for inbox events; ``routes`` maps ``(system, entity)`` to assets.

    ``wait_for_events_s``: how long a tick that finds nothing keeps watching the inbox (keep it
    under the daemon's 5 s between ticks, and well under the tick's 60 s deadline).

    The ledger comes from the resource ``ledger_resource_key`` (a ``LedgerResource``: ``.open()``
    yields a :class:`Ledger`). One inbox sensor per code location is the intended shape: flows
    contribute their routes to one mapping.
    """
    resolved = {key: _as_route(value) for key, value in routes.items()}
    if not resolved:
        raise ValueError("an inbox sensor needs at least one route")
    targets = list(dict.fromkeys(asset for route in resolved.values() for asset in route.assets))

    @dg.sensor(
        name=name,
        target=targets,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        required_resource_keys={ledger_resource_key},
        description="Requests runs fetching, by id, the records that verified webhooks announced.",
    )
    def inbox(context: dg.SensorEvaluationContext, **resources: Any) -> dg.SensorResult:
        # Dagster passes required resources as keywords when the sensor is called directly.
        ledger_resource = resources.get(ledger_resource_key) or getattr(context.resources, ledger_resource_key)
        after = _load_cursor(context.cursor, context.log)
        partitions = {key: _partitions_of(context, route) for key, route in resolved.items()}
        with ledger_resource.open() as ledger:
            read = _read_until_requestable(
                ledger, after, batch_size, wait_for_events_s,
                lambda events: plan_inbox(events, resolved, partitions, max_ids_per_run=max_ids_per_run),
            )  # fmt: skip
            if read.last_id is None:
                # A fresh cursor stays unset until there is something to read past.
                return dg.SensorResult(skip_reason="no new inbox events", cursor=context.cursor)
            groups = read.plan.groups
            requests = [_request(group, resolved[(group.system, group.entity)], context.repository_def)
                        for group in groups]
            result = dg.SensorResult(run_requests=requests, cursor=str(read.last_id))
            _mark(ledger, groups)
        if read.unrouted or read.outside_partitions:
            context.log.info(f"inbox: passed over {read.unrouted} event(s) without a route or record and "
                             f"{read.outside_partitions} outside the assets' partitions")  # fmt: skip
        return result

    return inbox


@dataclass
class _Read:
    """What one tick read: the plan of its last batch (the only one that can hold groups) and the counts."""

    plan: InboxPlan
    last_id: int | None = None
    unrouted: int = 0
    outside_partitions: int = 0


def _read_until_requestable(
    ledger: Ledger, after: int | None, batch_size: int, wait_s: float, plan_of: Callable[[list[InboxEvent]], InboxPlan]
) -> _Read:
    """Read past the cursor until a batch holds something to request, or ``wait_s`` has passed.

    Events the sensor cannot request (Jira's deliveries about our own writes, say) are passed over
    without ending the watch: they would otherwise end most watches early in a busy demo.
    """
    deadline = time.monotonic() + wait_s
    read = _Read(InboxPlan(groups=[]))
    while True:
        cursor = read.last_id if read.last_id is not None else after
        events = ledger.inbox_after(cursor or 0, batch_size, unprocessed_only=cursor is None)
        if events:
            read.plan = plan_of(events)
            read.last_id = events[-1].id
            read.unrouted += read.plan.unrouted
            read.outside_partitions += read.plan.outside_partitions
            if read.plan.groups:
                return read
        if time.monotonic() + WATCH_INTERVAL_S > deadline:
            return read
        if len(events) < batch_size:
            time.sleep(WATCH_INTERVAL_S)


def _request(group: InboxGroup, route: InboxRoute, repository: dg.RepositoryDefinition | None) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=group.run_key,
        run_config=route.run_config(group.record_ids),
        asset_selection=list(route.assets),
        # The records' checks, not the partition's audit: that is the next poll or backfill run's.
        asset_check_keys=record_checks(repository, route.assets),
        partition_key=group.partition_key,
        tags={
            "ml_connector/trigger": "inbox",
            **webhook_run_tags(),
            "ml_connector/inbox_system": group.system,
            "ml_connector/inbox_entity": group.entity,
            # Every system the run writes to: the run queue's per-destination limits.
            **tags_for_selection(repository, route.assets),
        },
    )


def _mark(ledger: Ledger, groups: Sequence[InboxGroup]) -> None:
    for group in groups:
        ledger.mark_inbox_processed(group.inbox_ids, group.run_key)
