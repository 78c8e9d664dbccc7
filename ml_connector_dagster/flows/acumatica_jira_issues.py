"""One partition of Acumatica documents against Jira: plan (create / update / skip / filter), then push.

The plan reads the partition's landed bills, purchase orders and payments in chunks, names each
one's exception (:func:`~.acumatica_jira_render.exception_of`), renders it, and lets the ledger
decide what it can (:func:`~.jira_destination.triage`). Only the rest is looked up in Jira by the
external-id field, batched, in every project an issue may live in. A document that needs no
attention and has no issue is *filtered*; one that has an issue keeps it in step: a change becomes
a comment saying what changed, and leaving the exception becomes a closing comment (once: its
marker names the document's version). Creates are exactly once (:class:`~.jira_destination.IssueWriter`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, Field, ValidationError

from ml_connector_dagster.config import AcumaticaJiraFlow
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.systems.acumatica.client import SYSTEM as ACUMATICA
from ml_connector_dagster.systems.acumatica.client import AcumaticaEntity
from ml_connector_dagster.systems.acumatica.models import (
    AcumaticaRecord,
    Bill,
    Payment,
    PurchaseOrder,
    describe_error,
)
from ml_connector_dagster.systems.jira.client import BULK_CREATE_LIMIT, JiraClient
from ml_connector_dagster.systems.jira.models import JiraIssue

from .acumatica_jira_render import (
    EXCEPTION_FACT,
    FieldIds,
    RenderedIssue,
    change_comment,
    describe_changes,
    exception_of,
    render_issue,
    view_of,
)
from .jira_destination import (
    MISSING,
    SENDERS,
    UNKNOWN_LOOKUP_BATCH,
    Action,
    InFlight,
    IssueWriter,
    PlannedIssueBase,
    PushOutcome,
    decide,
    known_issue_id,
    lookup_issues,
    table_facts,
    triage,
)

__all__ = [
    "ASSET",
    "FLOW",
    "SOURCES",
    "IssuePlan",
    "PlannedIssue",
    "StoredCreate",
    "check_creates",
    "exceptional_documents",
    "plan_partitions",
    "plan_records",
    "projects_of",
    "push_plan",
    "restore_creates",
]

FLOW = "acumatica_jira.exceptions"  # ledger flow: document id -> its issue
ASSET = "jira/acumatica_exception_issues"
CHUNK = 200
Change = tuple[str, str | None, str | None]


@dataclass(frozen=True)
class Source:
    """One kind of landed Acumatica document the issues are made of."""

    entity: AcumaticaEntity
    model: type[AcumaticaRecord]


SOURCES = (Source(AcumaticaEntity.BILL, Bill), Source(AcumaticaEntity.PURCHASE_ORDER, PurchaseOrder),
           Source(AcumaticaEntity.PAYMENT, Payment))  # fmt: skip


class PlannedIssue(PlannedIssueBase):
    """What the push will do with one document, and why."""

    issue: RenderedIssue | None = None
    changes: tuple[Change, ...] = ()
    closing: bool = Field(False, description="The document left its exception: a closing comment.")


class StoredCreate(NamedTuple):
    """A create whose issue and payload the landing store keeps (a lean plan): the push renders it again.

    ``checked`` False: a document the ledger has never seen, not looked up in Jira yet; the push looks it
    up just before its create, beside the creates before it.
    """

    entity: str
    record_id: str
    external_id: str
    exception: str
    partition_key: str | None
    checked: bool = True


class IssuePlan(BaseModel):
    """The plan of one partition (or a backfill's range) of the three document kinds.

    Most documents need no attention: those are only named (``needs_no_attention``). A plan made from
    the landing store is *lean*: its creates keep only their ids (``stored_creates``), so a backfill's
    plan stays small whatever the partition holds, and a document the ledger has never seen is looked
    up by the push, not the plan, so a backfill's searches run beside its creates (each endpoint has
    its own budget) instead of all before them.
    """

    partition_key: str | None
    field_ids: FieldIds
    records: list[PlannedIssue] = Field(default_factory=list)
    needs_no_attention: list[str] = Field(default_factory=list, description="Ids of documents filtered out.")
    stored_creates: list[StoredCreate] = Field(default_factory=list)

    def count(self, action: Action) -> int:
        counted = sum(1 for record in self.records if record.action is action)
        if action is Action.FILTERED:
            return counted + len(self.needs_no_attention)
        return counted + len(self.stored_creates) if action is Action.CREATE else counted


def resolve_field_ids(client: JiraClient, settings: AcumaticaJiraFlow) -> FieldIds:
    """The configured custom fields' ids (a missing field fails with its name)."""
    return FieldIds(
        external_id=client.field_id(settings.external_id_field),
        amount=client.field_id(settings.amount_field),
        currency=client.field_id(settings.currency_field) if settings.currency_field else None,
        vendor=client.field_id(settings.vendor_field) if settings.vendor_field else None,
    )


def projects_of(settings: AcumaticaJiraFlow) -> list[str]:
    """Every Jira project an exception issue may live in."""
    return list(dict.fromkeys([settings.project_key, *(r.project_key for r in settings.rules if r.project_key)]))


def lookup(client: JiraClient, settings: AcumaticaJiraFlow, ids: FieldIds, wanted: Sequence[tuple[str, str | None]],
           *, fields: Sequence[str] = ()) -> dict[str, JiraIssue]:
    """Issues by external id, searched in each project an issue may live in until all are found."""
    found: dict[str, JiraIssue] = {}
    for project in projects_of(settings):
        missing = [pair for pair in wanted if pair[0] not in found]
        if not missing:
            break
        found.update(lookup_issues(client, project, ids.external_id, missing, fields=fields))
    return found


# -- planning --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rendered:
    landed: LandedRecord
    issue: RenderedIssue

    @property
    def needs_no_issue(self) -> bool:
        return self.issue.exception is None


def _view(source: Source, landed: LandedRecord) -> Any:
    """The document's view, or a FAILED plan entry naming the field Acumatica sent wrong."""
    try:
        return view_of(source.model.model_validate(landed.payload))
    except ValidationError as error:
        return PlannedIssue(record_id=landed.record_id, external_id=landed.record_id, action=Action.FAILED,
                            reason=describe_error(error), payload=landed.payload, partition_key=landed.partition_key)


def _compared(item: _Rendered, action: Action, found: JiraIssue | None, link: Link | None) -> PlannedIssue:
    """An update (or adoption): what changed since the issue was last written, and whether it closes."""
    old = table_facts(found.fields.get("description")) if found is not None else {}
    changes = tuple(describe_changes(old, item.issue.facts)) if old else ()
    closing = bool(old) and old.get(EXCEPTION_FACT, MISSING) != MISSING and item.needs_no_issue
    issue_id = found.id if found is not None else link.dest_id if link is not None else None
    issue_key = found.key if found is not None else link.dest_key if link is not None else None
    return PlannedIssue(record_id=item.landed.record_id, external_id=item.issue.external_id, action=action,
                        issue=item.issue, issue_id=issue_id, issue_key=issue_key, changes=changes, closing=closing,
                        payload=item.landed.payload, partition_key=item.landed.partition_key)  # fmt: skip


def _settled(item: _Rendered, action: Action, link: Link | None) -> PlannedIssue:
    return PlannedIssue(
        record_id=item.landed.record_id, external_id=item.issue.external_id, action=action,
        reason="needs_no_attention" if action is Action.FILTERED else None,
        issue_id=link.dest_id if link else None, issue_key=link.dest_key if link else None,
        partition_key=item.landed.partition_key,
    )  # fmt: skip


_Asking = tuple[Source, _Rendered, Link | None]  # a document Jira must be asked about, and its ledger link


def _triage_chunk(source: Source, chunk: Sequence[LandedRecord], plan: IssuePlan, *, ledger: Ledger,
                  settings: AcumaticaJiraFlow, lean: bool) -> list[_Asking]:  # fmt: skip
    """Plan what the ledger alone decides for a chunk (in a lean plan, a document it has never seen is an
    unchecked create); the documents Jira must be asked about now."""
    planned = plan.records
    views: list[tuple[LandedRecord, Any]] = []
    for landed in chunk:
        view = _view(source, landed)
        if isinstance(view, PlannedIssue):
            planned.append(view)
        else:
            views.append((landed, view))
    links = ledger.links_for(FLOW, [landed.record_id for landed, _ in views])
    ask_jira: list[_Asking] = []
    for landed, view in views:
        exception, link = exception_of(view, settings.rules), links.get(landed.record_id)
        if exception is None and link is None:
            # Most documents need no attention and never had an issue: no issue to render.
            plan.needs_no_attention.append(landed.record_id)
            continue
        if link is None and lean:
            # Never seen: a create, rendered by the push (which looks it up first) from the landed copy.
            plan.stored_creates.append(StoredCreate(source.entity.value, landed.record_id, view.ref.external_id,
                                                    exception.name, landed.partition_key, checked=False))
            continue
        item = _Rendered(landed, render_issue(view, exception, settings))
        settled = triage(link, item.issue.content_hash, filtered=item.needs_no_issue)
        if settled is None:
            ask_jira.append((source, item, link))
        elif settled is Action.FILTERED:
            plan.needs_no_attention.append(landed.record_id)
        else:
            planned.append(_settled(item, settled, link))
    return ask_jira


def _ask_jira(items: Sequence[_Asking], plan: IssuePlan, *, client: JiraClient, settings: AcumaticaJiraFlow,
              lean: bool) -> None:  # fmt: skip
    """Plan the documents the ledger could not decide, from what Jira holds under their external ids."""
    wanted = [(item.issue.external_id, known_issue_id(link)) for _, item, link in items]
    found = lookup(client, settings, plan.field_ids, wanted, fields=["description"])
    for source, item, link in items:
        issue = found.get(item.issue.external_id)
        action = decide(link, issue, filtered=item.needs_no_issue)
        if action in (Action.UPDATE, Action.LINK):
            plan.records.append(_compared(item, action, issue, link))
        elif action is Action.CREATE and lean:  # the landing store keeps its issue and payload
            assert item.issue.exception is not None
            plan.stored_creates.append(StoredCreate(source.entity.value, item.landed.record_id, item.issue.external_id,
                                                    item.issue.exception, item.landed.partition_key))
        elif action is Action.CREATE:
            plan.records.append(PlannedIssue(
                record_id=item.landed.record_id, external_id=item.issue.external_id, action=action,
                issue=item.issue, payload=item.landed.payload, partition_key=item.landed.partition_key,
            ))  # fmt: skip
        elif action is Action.FILTERED:
            plan.needs_no_attention.append(item.landed.record_id)
        else:
            plan.records.append(_settled(item, action, None))


def plan_records(chunks: Iterable[tuple[Source, Sequence[LandedRecord]]], *, partition_key: str | None,
                 client: JiraClient, ledger: Ledger, settings: AcumaticaJiraFlow, lean: bool = False) -> IssuePlan:
    """The plan for these landed records (chunked, each chunk of one source).

    The documents to look up in Jira wait across chunks (and sources) until they fill a search: a
    partition where one document in six is an exception makes a sixth of the searches. ``lean``
    (records read from the landing store): creates leave their issue and payload there.
    """
    plan = IssuePlan(partition_key=partition_key, field_ids=resolve_field_ids(client, settings))
    waiting: list[_Asking] = []
    for source, chunk in chunks:
        waiting += _triage_chunk(source, chunk, plan, ledger=ledger, settings=settings, lean=lean)
        while len(waiting) >= UNKNOWN_LOOKUP_BATCH:
            _ask_jira(waiting[:UNKNOWN_LOOKUP_BATCH], plan, client=client, settings=settings, lean=lean)
            waiting = waiting[UNKNOWN_LOOKUP_BATCH:]
    if waiting:
        _ask_jira(waiting, plan, client=client, settings=settings, lean=lean)
    return plan


def _landed(ledger: Ledger, partition_keys: Sequence[str]) -> Iterator[tuple[Source, list[LandedRecord]]]:
    store = LandingStore(ledger)
    for partition_key in partition_keys:
        for source in SOURCES:
            for chunk in store.iter_partition(ACUMATICA, source.entity.value, partition_key, chunk=CHUNK):
                yield source, chunk


def exceptional_documents(ledger: Ledger, partition_keys: Sequence[str], settings: AcumaticaJiraFlow) -> dict[str, str]:
    """Document id -> external id of every landed document of the partitions that needs attention."""
    eligible = {}
    for source, chunk in _landed(ledger, partition_keys):
        for landed in chunk:
            view = _view(source, landed)
            if not isinstance(view, PlannedIssue) and exception_of(view, settings.rules) is not None:
                eligible[landed.record_id] = view.ref.external_id
    return eligible


def plan_partitions(partition_keys: Sequence[str], *, client: JiraClient, ledger: Ledger,
                    settings: AcumaticaJiraFlow) -> IssuePlan:
    """The plan of daily partitions (one, or a backfill's range) of all three sources."""
    label = partition_keys[0] if len(partition_keys) == 1 else f"{partition_keys[0]}...{partition_keys[-1]}"
    return plan_records(_landed(ledger, partition_keys), partition_key=label, client=client, ledger=ledger,
                        settings=settings, lean=True)


def check_creates(plan: IssuePlan, *, client: JiraClient, settings: AcumaticaJiraFlow) -> IssuePlan:
    """``plan`` with its unchecked creates looked up in Jira, as the push will (what a dry run shows): one
    found becomes a link to its issue."""
    wanted = [(create.external_id, None) for create in plan.stored_creates if not create.checked]
    if not wanted:
        return plan
    found = lookup(client, settings, plan.field_ids, wanted)
    records, stored = list(plan.records), []
    for create in plan.stored_creates:
        issue = None if create.checked else found.get(create.external_id)
        if issue is None:
            stored.append(create._replace(checked=True))
        else:
            records.append(PlannedIssue(record_id=create.record_id, external_id=create.external_id, action=Action.LINK,
                                        issue_id=issue.id, issue_key=issue.key, partition_key=create.partition_key))
    return plan.model_copy(update={"records": records, "stored_creates": stored})


# -- the push --------------------------------------------------------------------------------------


def restore_creates(stored: Sequence[StoredCreate], *, ledger: Ledger, settings: AcumaticaJiraFlow) -> list[PlannedIssue]:
    """Creates of a lean plan with their issue rendered again from the landed copy (the newest, should a
    run have landed a later one since the plan): one no longer there or no longer valid comes back
    FAILED, one that needs no attention any more FILTERED."""
    store, restored = LandingStore(ledger), []
    by_entity: dict[str, list[StoredCreate]] = {}
    for create in stored:
        by_entity.setdefault(create.entity, []).append(create)
    for entity, creates in by_entity.items():
        source = next(s for s in SOURCES if s.entity.value == entity)
        landed = store.get_many(ACUMATICA, entity, [create.record_id for create in creates])
        for create in creates:
            copy = landed.get(create.record_id)
            if copy is None:
                restored.append(PlannedIssue(record_id=create.record_id, external_id=create.external_id,
                                             action=Action.FAILED, partition_key=create.partition_key,
                                             reason="the landed record is no longer in the landing store"))
                continue
            view = _view(source, copy)
            if isinstance(view, PlannedIssue):
                restored.append(view)
                continue
            exception = exception_of(view, settings.rules)
            restored.append(PlannedIssue(
                record_id=create.record_id, external_id=create.external_id,
                action=Action.CREATE if exception is not None else Action.FILTERED,
                issue=render_issue(view, exception, settings) if exception is not None else None,
                payload=copy.payload, partition_key=create.partition_key,
            ))  # fmt: skip
    return restored


class _ExceptionWriter(IssueWriter):
    def __init__(self, plan: IssuePlan, settings: AcumaticaJiraFlow, **kwargs: Any) -> None:
        super().__init__(flow=FLOW, asset=ASSET, consistency_window_s=settings.consistency_window_s, **kwargs)
        self.plan = plan
        self.settings = settings

    def _create_fields(self, record: PlannedIssue) -> dict[str, Any]:
        assert record.issue is not None
        return record.issue.create_fields(self.plan.field_ids)

    def _lookup(self, wanted: Sequence[tuple[str, str | None]]) -> Mapping[str, JiraIssue]:
        return lookup(self.client, self.settings, self.plan.field_ids, wanted)

    def _create_stored(self) -> None:
        """Create the lean plan's issues, 100 documents at a time (:meth:`create_ahead`): the next chunks
        are rendered again from the landing store and their unchecked documents looked up in Jira while
        this one is sent. A document found in Jira is adopted (linked and brought up to date), not created."""
        stored = self.plan.stored_creates
        self.create_ahead(
            (stored[start : start + UNKNOWN_LOOKUP_BATCH] for start in range(0, len(stored), UNKNOWN_LOOKUP_BATCH)),
            read_back=lambda chunk: restore_creates(chunk, ledger=self.ledger, settings=self.settings),
            look_up=self._look_up, send=self._send,
        )  # fmt: skip

    def _send(self, restored: list[PlannedIssue], found: Mapping[str, JiraIssue], flying: deque[InFlight],
              senders: Executor) -> None:
        ready = self._sort_restored(restored, found)
        for start in range(0, len(ready), BULK_CREATE_LIMIT):
            if (flight := self._submit_chunk(ready[start : start + BULK_CREATE_LIMIT], None, senders)) is not None:
                flying.append(flight)
            self.land_flights(flying, keep=SENDERS - 1)

    def _sort_restored(self, restored: Sequence[PlannedIssue], found: Mapping[str, JiraIssue]) -> list[PlannedIssue]:
        """Dead-letter what no longer reads, adopt what Jira already holds; the creates left to send."""
        ready: list[PlannedIssue] = []
        for record in restored:
            if record.action is Action.FAILED:
                self._dead_letter(record.record_id, record.payload, record.reason or "invalid record",
                                  record.partition_key)
            elif record.action is Action.FILTERED:
                self.outcome.succeeded.append(record.record_id)
            elif (issue := found.get(record.external_id)) is not None and record.issue is not None:
                adopted = _compared(_Rendered(LandedRecord(record_id=record.record_id, payload=record.payload or {},
                                                           partition_key=record.partition_key), record.issue),
                                    Action.LINK, issue, None)  # fmt: skip
                self._bring_up_to_date(adopted)
            else:
                ready.append(record)
        return ready

    def _look_up(self, chunk: Sequence[StoredCreate]) -> Mapping[str, JiraIssue]:
        """The chunk's unchecked documents found in Jira, by external id (one search per 100). Reads only.

        One the ledger knows by now (an earlier attempt of this step marked or linked it) is left to the
        create's own checks, which look a pending one up as they always do.
        """
        unchecked = [create for create in chunk if not create.checked]
        known = self.ledger.links_for(FLOW, [create.record_id for create in unchecked]) if unchecked else {}
        wanted = [(create.external_id, None) for create in unchecked if create.record_id not in known]
        return lookup(self.client, self.settings, self.plan.field_ids, wanted, fields=["description"]) if wanted else {}

    def _bring_up_to_date(self, record: PlannedIssue) -> None:
        assert record.issue is not None
        comments = [change_comment(record.issue, record.changes, closing=record.closing)]
        self._update(record, record.issue.update_fields(self.plan.field_ids),
                     comments=comments if record.changes or record.closing else ())

    def push(self) -> None:
        creates = [record for record in self.plan.records if record.action is Action.CREATE]
        for start in range(0, len(creates), BULK_CREATE_LIMIT):
            self._create_chunk(creates[start : start + BULK_CREATE_LIMIT])
        self._create_stored()
        self.outcome.succeeded += self.plan.needs_no_attention  # nothing to do is a success too
        for record in self.plan.records:
            if record.action in (Action.UPDATE, Action.LINK) and record.issue is not None:
                self._bring_up_to_date(record)
            elif record.action is Action.FAILED:
                self._dead_letter(record.record_id, record.payload, record.reason or "invalid record",
                                  record.partition_key)
            elif record.action in (Action.SKIP, Action.FILTERED):
                self.outcome.succeeded.append(record.record_id)  # nothing to do is a success too
        self.resolve_dead_letters()


def push_plan(plan: IssuePlan, *, client: JiraClient, ledger: Ledger, settings: AcumaticaJiraFlow, run_id: str,
              log: Any, retrying: bool = False, now: Callable[[], datetime] | None = None) -> PushOutcome:
    """Carry out ``plan``; per-record failures become dead letters. ``outcome.deferred`` lists creates
    in doubt (the caller retries)."""
    extra: dict[str, Any] = {"now": now} if now is not None else {}
    writer = _ExceptionWriter(plan, settings, client=client, ledger=ledger, run_id=run_id, log=log,
                              retrying=retrying, **extra)  # fmt: skip
    writer.push()
    return writer.outcome

