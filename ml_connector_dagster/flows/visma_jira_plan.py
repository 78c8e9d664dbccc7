"""Planning one partition of Visma documents against Jira: create, update, link, skip or filter each.

The plan reads the partition's landed records in chunks, renders each as an issue, and asks the
ledger what it already links (batched). A partition's plan is *lean*: a create keeps only its ids
(:attr:`Plan.stored_creates`), not its rendered issue or payload, which the push reads back from
the landing store chunk by chunk (:func:`restore_records`), so a plan of 100,000 creates stays small.
Where the ledger holds a create intent (pending) or a link whose content hash changed, the plan asks
Jira, by the external-id field (batched, with ``reconcileIssues`` for the issue ids it knows, so a
just-written issue is seen); the searches of a few chunks overlap while the next chunks are
rendered. A lean plan leaves the lookup of a record the ledger has never seen (no link, no intent)
to the push, which makes it just before the create, while earlier creates are on the wire: a
backfill's searches then share the time with its creates instead of all coming first (each
endpoint has its own budget). Such a create is *unchecked* until then; one the push finds in Jira
is linked (:func:`adopt`), not created. Nothing is written here: the plan is a value the push step
(or a dry run) acts on.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from itertools import chain
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from ml_connector_dagster.config import VismaJiraFilters, VismaJiraFlow
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.systems.jira.client import JiraClient
from ml_connector_dagster.systems.jira.models import JiraIssue
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.client import VismaEntity
from ml_connector_dagster.systems.visma.models import VismaRecord, describe_error

from .jira_destination import LOOKUP_BATCH, RECHECK, Action, PlannedIssueBase, known_issue_id, lookup_issues
from .visma_jira_audit import AUDIT_ENTITIES, AuditEntry, audit_entries
from .visma_jira_render import (
    DocumentView,
    FieldChange,
    JiraFieldIds,
    RenderedIssue,
    describe_changes,
    facts_of,
    render_issue,
)

__all__ = [
    "AUDIT_FLOW",
    "LOOKUP_BATCH",
    "RECHECK",
    "Action",
    "DocumentKind",
    "Plan",
    "PlannedRecord",
    "adopt",
    "check_creates",
    "filter_reason",
    "lookup_fields",
    "lookup_issues",
    "plan_partitions",
    "plan_records",
    "resolve_field_ids",
    "restore_records",
]

CHUNK = 200  # landed records planned together: one ledger read, a handful of Jira searches
LOOKUPS_IN_FLIGHT = 4  # chunks whose Jira lookups overlap (each search is a round trip; the budget caps the rate)
AUDIT_FLOW = "visma_jira.audit"  # ledger flow of audit comments: one link per (record, invoice)


@dataclass(frozen=True)
class DocumentKind:
    """One kind of Visma document that becomes Jira issues: everything that differs between kinds."""

    name: str
    entity: VismaEntity
    model: type[VismaRecord]
    asset: str
    view: Callable[[Any], DocumentView]
    issue_type: Callable[[VismaJiraFlow], str]
    status_filtered: bool = False  # the PO status filter applies
    audited: bool = False  # GL postings and payments against it become audit comments

    @property
    def flow(self) -> str:
        """The ledger's flow name of this kind's links."""
        return f"visma_jira.{self.name}"


class PlannedRecord(PlannedIssueBase):
    """What the push step will do with one record, and why."""

    changes: tuple[FieldChange, ...] = ()
    transition_to: str | None = None
    issue: RenderedIssue | None = None
    pending_since: datetime | None = Field(None, description="When an earlier, unanswered create was sent.")
    stored: bool = Field(False, description="issue and payload left in the landing store (restore_records).")
    checked: bool = Field(True, description="False: a create not looked up in Jira yet (the push looks it up first).")


class Plan(BaseModel):
    """The plan of one partition (or of replayed records) of one document kind."""

    kind: str
    flow: str
    asset: str
    partition_key: str | None
    field_ids: JiraFieldIds
    records: list[PlannedRecord] = Field(default_factory=list)
    stored_creates: list[tuple[str, str, str | None, bool]] = Field(
        default_factory=list, description="Creates left in the landing store: (record id, external id, partition key, "
        "checked: looked up in Jira already).",
    )
    audits: list[AuditEntry] = Field(default_factory=list)

    @property
    def record_count(self) -> int:
        """Every record planned: those in :attr:`records` and the creates left in the landing store."""
        return len(self.records) + len(self.stored_creates)

    def count(self, action: Action) -> int:
        counted = sum(1 for record in self.records if record.action is action)
        return counted + len(self.stored_creates) if action is Action.CREATE else counted

    def creates(self, size: int) -> Iterator[list[PlannedRecord]]:
        """Every create, in chunks of ``size``; stored ones come as ``stored`` records (see restore_records)."""
        chunk: list[PlannedRecord] = []
        stored = (PlannedRecord(record_id=record_id, external_id=external_id, action=Action.CREATE,
                                partition_key=partition_key, stored=True, checked=checked)
                  for record_id, external_id, partition_key, checked in self.stored_creates)  # fmt: skip
        for record in chain((r for r in self.records if r.action is Action.CREATE), stored):
            chunk.append(record)
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def unchecked_creates(self) -> int:
        """Creates the push looks up in Jira before sending them (a found one is linked instead)."""
        return sum(1 for *_, checked in self.stored_creates if not checked)

    def filtered_by_reason(self) -> Counter[str]:
        return Counter(r.reason or "unknown" for r in self.records if r.action is Action.FILTERED)


def resolve_field_ids(client: JiraClient, settings: VismaJiraFlow) -> JiraFieldIds:
    """The configured custom fields' ids (a missing field fails with its name)."""
    return JiraFieldIds(
        external_id=client.field_id(settings.external_id_field),
        amount=client.field_id(settings.amount_field),
        po_reference=client.field_id(settings.po_reference_field) if settings.po_reference_field else None,
        currency=client.field_id(settings.currency_field) if settings.currency_field else None,
    )


# -- filters ---------------------------------------------------------------------------------------


def _folded(values: Iterable[str]) -> set[str]:
    return {value.casefold() for value in values}


def filter_reason(view: DocumentView, filters: VismaJiraFilters, *, status_filtered: bool) -> str | None:
    """Why a document gets no issue (``None``: it does). ``min_amount`` is in the document's currency."""
    supplier = _folded(s for s in (view.supplier_number, view.supplier_name) if s)
    if filters.suppliers_include and not supplier & _folded(filters.suppliers_include):
        return "supplier_not_included"
    if supplier & _folded(filters.suppliers_exclude):
        return "supplier_excluded"
    if filters.exclude_internal_orders and (
        supplier & _folded(filters.internal_suppliers)
        or (view.order_type or "").casefold() in _folded(filters.internal_order_types)
    ):
        return "internal_order"
    if filters.exclude_zero_amounts and view.amount == 0:
        return "zero_amount"
    if filters.min_amount is not None and abs(view.amount) < Decimal(str(filters.min_amount)):
        return "below_min_amount"
    if status_filtered and filters.po_statuses and view.status.casefold() not in _folded(filters.po_statuses):
        return "po_status"
    return None


# -- Jira lookups ----------------------------------------------------------------------------------


def lookup_fields(ids: JiraFieldIds) -> list[str]:
    """The fields a lookup reads of each issue found: what an adoption compares."""
    return ["description", "duedate", "assignee", ids.amount]


# -- planning --------------------------------------------------------------------------------------


@dataclass
class _Rendered:
    landed: LandedRecord
    view: DocumentView
    filtered: str | None
    settings: VismaJiraFlow

    @cached_property
    def issue(self) -> RenderedIssue:
        """Rendered when first needed: a lean plan's creates never need it (the push renders them)."""
        return render_issue(self.view, self.settings)


def _render(kind: DocumentKind, landed: LandedRecord, settings: VismaJiraFlow) -> _Rendered | PlannedRecord:
    try:
        record = kind.model.model_validate(landed.payload)
    except ValidationError as error:
        return PlannedRecord(record_id=landed.record_id, external_id=landed.record_id, action=Action.FAILED,
                             reason=describe_error(error), payload=landed.payload, partition_key=landed.partition_key)
    view = kind.view(record)
    reason = filter_reason(view, settings.filters, status_filtered=kind.status_filtered)
    return _Rendered(landed, view, reason, settings)


def _compared(item: _Rendered, action: Action, issue: JiraIssue, **extra: Any) -> PlannedRecord:
    """An update (or adoption) of ``issue``: what differs from Jira, and the status to move to."""
    return _compared_issue(item.issue, action, issue, record_id=item.landed.record_id, payload=item.landed.payload,
                           partition_key=item.landed.partition_key, **extra)


def _compared_issue(rendered: RenderedIssue, action: Action, issue: JiraIssue, *, record_id: str,
                    payload: dict[str, Any] | None, partition_key: str | None, **extra: Any) -> PlannedRecord:
    changes = describe_changes(facts_of(issue.fields.get("description")), rendered.facts)
    current = issue.status_name
    target = rendered.jira_status
    # An adoption's status comes from a search not reconciled by issue id, which may lag the issue: its
    # walk reads the real status first, and moves only if it must.
    moves = target is not None and (action is Action.LINK or (current or "").casefold() != target.casefold())
    return PlannedRecord(
        record_id=record_id, external_id=rendered.external_id, action=action, changes=tuple(changes),
        transition_to=target if moves else None, current_status=current, issue=rendered, issue_id=issue.id,
        issue_key=issue.key, payload=payload, partition_key=partition_key, **extra,
    )  # fmt: skip


def adopt(record: PlannedRecord, issue: JiraIssue) -> PlannedRecord:
    """An unchecked create (read back and rendered) that the push found in Jira: a link to ``issue``,
    brought up to date as a plan's adoption is."""
    if record.issue is None:
        raise ValueError(f"{record.record_id}: only a rendered create can be adopted")
    return _compared_issue(record.issue, Action.LINK, issue, record_id=record.record_id, payload=record.payload,
                           partition_key=record.partition_key)


@dataclass
class _Chunk:
    """A chunk decided as far as the ledger can; ``ask_jira`` waits for the lookup of its external ids."""

    planned: list[PlannedRecord]
    ask_jira: list[_Rendered]
    links: dict[str, Link]


def _triaged(kind: DocumentKind, chunk: Sequence[LandedRecord], *, ledger: Ledger, settings: VismaJiraFlow,
             lean: bool) -> _Chunk:
    planned: list[PlannedRecord] = []
    rendered: list[_Rendered] = []
    for landed in chunk:
        item = _render(kind, landed, settings)
        (planned if isinstance(item, PlannedRecord) else rendered).append(item)  # type: ignore[arg-type]
    links = ledger.links_for(kind.flow, [item.landed.record_id for item in rendered])
    ask_jira: list[_Rendered] = []
    for item in rendered:
        link = links.get(item.landed.record_id)
        base = {"record_id": item.landed.record_id, "external_id": item.view.external_id,
                "partition_key": item.landed.partition_key}
        if link is None and item.filtered:
            planned.append(PlannedRecord(**base, action=Action.FILTERED, reason=item.filtered))
        elif link is not None and link.state == "linked" and link.content_hash == item.issue.content_hash:
            planned.append(PlannedRecord(**base, action=Action.SKIP, issue_id=link.dest_id, issue_key=link.dest_key))
        elif link is None and lean:
            # Never seen by the ledger: the push looks it up just before creating it (see the module's text).
            planned.append(PlannedRecord(**base, action=Action.CREATE, stored=True, checked=False))
        else:
            # A linked record keeps its issue in step even if a filter would no longer select it.
            ask_jira.append(item)
    return _Chunk(planned, ask_jira, links)


def _lookup(chunk: _Chunk, *, client: JiraClient, settings: VismaJiraFlow, ids: JiraFieldIds) -> dict[str, JiraIssue]:
    wanted = [(i.view.external_id, known_issue_id(chunk.links.get(i.landed.record_id))) for i in chunk.ask_jira]
    return lookup_issues(client, settings.project_key, ids.external_id, wanted, fields=lookup_fields(ids))


def _decided(chunk: _Chunk, found: dict[str, JiraIssue], *, lean: bool) -> list[PlannedRecord]:
    return chunk.planned + [_decide(item, chunk.links.get(item.landed.record_id), found.get(item.view.external_id),
                                    lean=lean) for item in chunk.ask_jira]


def _planned_chunks(
    kind: DocumentKind, chunks: Iterable[Sequence[LandedRecord]], *, client: JiraClient, ledger: Ledger,
    settings: VismaJiraFlow, ids: JiraFieldIds, lean: bool,
) -> Iterator[list[PlannedRecord]]:
    """The planned records, chunk by chunk; the Jira lookups of up to :data:`LOOKUPS_IN_FLIGHT` groups
    run at once (threads, under the shared budget) while the next chunks are rendered.

    What the ledger decides comes out with its chunk. The records Jira must be asked about are
    gathered across chunks into searches of :data:`LOOKUP_BATCH`: a run of ten changes scattered over
    a day of 10,000 records makes one search, not one per chunk that holds a change.
    """
    with ThreadPoolExecutor(LOOKUPS_IN_FLIGHT, thread_name_prefix="jira-lookup") as lookups:
        waiting: deque[tuple[_Chunk, Future[dict[str, JiraIssue]] | None]] = deque()
        asking = _Chunk([], [], {})

        def ask(group: _Chunk) -> None:
            waiting.append((group, lookups.submit(_lookup, group, client=client, settings=settings, ids=ids)))

        try:
            for chunk in chunks:
                triaged = _triaged(kind, chunk, ledger=ledger, settings=settings, lean=lean)
                if triaged.planned:
                    waiting.append((_Chunk(triaged.planned, [], {}), None))
                for item in triaged.ask_jira:
                    asking.ask_jira.append(item)
                    if (link := triaged.links.get(item.landed.record_id)) is not None:
                        asking.links[item.landed.record_id] = link
                if len(asking.ask_jira) >= LOOKUP_BATCH:
                    ask(asking)
                    asking = _Chunk([], [], {})
                while len(waiting) > LOOKUPS_IN_FLIGHT:
                    done, looked_up = waiting.popleft()
                    yield _decided(done, looked_up.result() if looked_up else {}, lean=lean)
            if asking.ask_jira:
                ask(asking)
            while waiting:
                done, looked_up = waiting.popleft()
                yield _decided(done, looked_up.result() if looked_up else {}, lean=lean)
        finally:
            for _, left in waiting:  # a failed lookup stops the plan: the others need not finish
                if left is not None:
                    left.cancel()


def _decide(item: _Rendered, link: Link | None, issue: JiraIssue | None, *, lean: bool = False) -> PlannedRecord:
    linked = link is not None and link.state == "linked"
    if issue is not None:
        return _compared(item, Action.UPDATE if linked else Action.LINK, issue)
    if linked:
        # Linked, but the search (reconciled by id) does not return it: the update goes to the
        # linked key and fails there, with Jira's reason, if the issue was deleted.
        assert link is not None
        return PlannedRecord(
            record_id=item.landed.record_id, external_id=item.view.external_id, action=Action.UPDATE,
            issue=item.issue, issue_id=link.dest_id, issue_key=link.dest_key, payload=item.landed.payload,
            partition_key=item.landed.partition_key, transition_to=item.issue.jira_status,
        )  # fmt: skip
    if item.filtered:
        # An earlier create of a record the filters now leave out: the pending intent stays, so a
        # later run still adopts the issue if that create did reach Jira; nothing is sent now.
        return PlannedRecord(record_id=item.landed.record_id, external_id=item.view.external_id,
                             action=Action.FILTERED, reason=item.filtered, partition_key=item.landed.partition_key)
    if lean:  # the landing store keeps the record: the push reads and renders it when it creates it
        return PlannedRecord(record_id=item.landed.record_id, external_id=item.view.external_id, action=Action.CREATE,
                             partition_key=item.landed.partition_key, stored=True,
                             pending_since=link.updated_at if link is not None else None)
    return PlannedRecord(
        record_id=item.landed.record_id, external_id=item.view.external_id, action=Action.CREATE,
        issue=item.issue, payload=item.landed.payload, partition_key=item.landed.partition_key,
        pending_since=link.updated_at if link is not None else None,
    )  # fmt: skip


def restore_records(kind: DocumentKind, records: Sequence[PlannedRecord], *, ledger: Ledger,
                    settings: VismaJiraFlow) -> list[PlannedRecord]:
    """``records`` with the issue and payload of the stored ones read back from the landing store.

    The issue is rendered again from the landed copy (the newest, should a run have landed a later
    one since the plan). A record no longer there, or no longer valid, comes back ``FAILED``.
    """
    wanted = [record.record_id for record in records if record.stored]
    if not wanted:
        return list(records)
    landed = LandingStore(ledger).get_many(VISMA, kind.entity.value, wanted)
    restored = []
    for record in records:
        if not record.stored:
            restored.append(record)
            continue
        copy = landed.get(record.record_id)
        item = _render(kind, copy, settings) if copy is not None else None
        if isinstance(item, _Rendered):
            restored.append(record.model_copy(update={"issue": item.issue, "payload": copy.payload, "stored": False}))
        else:
            reason = item.reason if item is not None else "the landed record is no longer in the landing store"
            restored.append(record.model_copy(update={"action": Action.FAILED, "reason": reason, "stored": False,
                                                      "payload": copy.payload if copy is not None else None}))
    return restored


def check_creates(plan: Plan, *, client: JiraClient, settings: VismaJiraFlow) -> Plan:
    """``plan`` with its unchecked creates looked up in Jira, as the push will (what a dry run shows):
    one found becomes a link to its issue."""
    wanted = [(external_id, None) for _, external_id, _, checked in plan.stored_creates if not checked]
    if not wanted:
        return plan
    found = lookup_issues(client, settings.project_key, plan.field_ids.external_id, wanted)
    records, stored = list(plan.records), []
    for record_id, external_id, partition_key, checked in plan.stored_creates:
        issue = None if checked else found.get(external_id)
        if issue is None:
            stored.append((record_id, external_id, partition_key, True))
        else:
            records.append(PlannedRecord(record_id=record_id, external_id=external_id, action=Action.LINK,
                                         issue_id=issue.id, issue_key=issue.key, partition_key=partition_key))
    return plan.model_copy(update={"records": records, "stored_creates": stored})


def plan_records(
    kind: DocumentKind, chunks: Iterable[Sequence[LandedRecord]], *, partition_key: str | None,
    client: JiraClient, ledger: Ledger, settings: VismaJiraFlow, audits: Iterable[AuditEntry] = (),
    lean: bool = False,
) -> Plan:
    """The plan for these landed records (already chunked), plus the audit comments to add.

    ``lean`` (records read from the landing store): creates leave their issue and payload there.
    """
    ids = resolve_field_ids(client, settings)
    plan = Plan(kind=kind.name, flow=kind.flow, asset=kind.asset, partition_key=partition_key, field_ids=ids)
    for planned in _planned_chunks(kind, chunks, client=client, ledger=ledger, settings=settings, ids=ids, lean=lean):
        for record in planned:
            if lean and record.action is Action.CREATE:  # the landing store keeps its issue and payload
                plan.stored_creates.append((record.record_id, record.external_id, record.partition_key,
                                            record.checked))
            else:
                plan.records.append(record)
    pending = list(audits)
    done = ledger.links_for(AUDIT_FLOW, [entry.audit_id for entry in pending])
    plan.audits.extend(entry for entry in pending if getattr(done.get(entry.audit_id), "state", None) != "linked")
    return plan


def _audits_of(store: LandingStore, partition_keys: Sequence[str]) -> Iterator[AuditEntry]:
    for partition_key in partition_keys:
        for entity in AUDIT_ENTITIES:
            for chunk in store.iter_partition(VISMA, entity.value, partition_key, chunk=CHUNK):
                for landed in chunk:
                    yield from audit_entries(entity.value, landed.payload)


def _documents_of(store: LandingStore, kind: DocumentKind, partition_keys: Sequence[str]) -> Iterator[list[LandedRecord]]:
    for partition_key in partition_keys:
        yield from store.iter_partition(VISMA, kind.entity.value, partition_key, chunk=CHUNK)


def plan_partitions(
    kind: DocumentKind, partition_keys: Sequence[str], *, client: JiraClient, ledger: Ledger, settings: VismaJiraFlow
) -> Plan:
    """The plan of daily partitions (one, or a backfill's range): their landed documents and, for
    invoices, the audit records landed with them."""
    store = LandingStore(ledger)
    audits = _audits_of(store, partition_keys) if kind.audited and settings.audit_comments else ()
    label = partition_keys[0] if len(partition_keys) == 1 else f"{partition_keys[0]}...{partition_keys[-1]}"
    return plan_records(kind, _documents_of(store, kind, partition_keys), partition_key=label, client=client,
                        ledger=ledger, settings=settings, audits=audits, lean=True)
