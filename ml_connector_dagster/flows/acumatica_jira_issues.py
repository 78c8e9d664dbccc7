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

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    Action,
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
    "exceptional_documents",
    "plan_partitions",
    "plan_records",
    "projects_of",
    "push_plan",
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


class IssuePlan(BaseModel):
    """The plan of one partition (or a backfill's range) of the three document kinds."""

    partition_key: str | None
    field_ids: FieldIds
    records: list[PlannedIssue] = Field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for record in self.records if record.action is action)


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


def _render(source: Source, landed: LandedRecord, settings: AcumaticaJiraFlow) -> _Rendered | PlannedIssue:
    try:
        view = view_of(source.model.model_validate(landed.payload))
    except ValidationError as error:
        return PlannedIssue(record_id=landed.record_id, external_id=landed.record_id, action=Action.FAILED,
                            reason=describe_error(error), payload=landed.payload, partition_key=landed.partition_key)
    return _Rendered(landed, render_issue(view, exception_of(view, settings.rules), settings))


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


def _plan_chunk(source: Source, chunk: Sequence[LandedRecord], *, client: JiraClient, ledger: Ledger,
                settings: AcumaticaJiraFlow, ids: FieldIds) -> list[PlannedIssue]:
    planned: list[PlannedIssue] = []
    rendered: list[_Rendered] = []
    for landed in chunk:
        item = _render(source, landed, settings)
        (planned if isinstance(item, PlannedIssue) else rendered).append(item)  # type: ignore[arg-type]
    links = ledger.links_for(FLOW, [item.landed.record_id for item in rendered])
    ask_jira: list[_Rendered] = []
    for item in rendered:
        settled = triage(links.get(item.landed.record_id), item.issue.content_hash, filtered=item.needs_no_issue)
        if settled is None:
            ask_jira.append(item)
            continue
        link = links.get(item.landed.record_id)
        planned.append(PlannedIssue(
            record_id=item.landed.record_id, external_id=item.issue.external_id, action=settled,
            reason="needs_no_attention" if settled is Action.FILTERED else None,
            issue_id=link.dest_id if link else None, issue_key=link.dest_key if link else None,
            partition_key=item.landed.partition_key,
        ))  # fmt: skip
    wanted = [(item.issue.external_id, known_issue_id(links.get(item.landed.record_id))) for item in ask_jira]
    found = lookup(client, settings, ids, wanted, fields=["description"]) if wanted else {}
    for item in ask_jira:
        link, issue = links.get(item.landed.record_id), found.get(item.issue.external_id)
        action = decide(link, issue, filtered=item.needs_no_issue)
        if action in (Action.UPDATE, Action.LINK):
            planned.append(_compared(item, action, issue, link))
        else:
            planned.append(PlannedIssue(
                record_id=item.landed.record_id, external_id=item.issue.external_id, action=action,
                reason="needs_no_attention" if action is Action.FILTERED else None,
                issue=item.issue if action is Action.CREATE else None, payload=item.landed.payload,
                partition_key=item.landed.partition_key,
            ))  # fmt: skip
    return planned


def plan_records(chunks: Iterable[tuple[Source, Sequence[LandedRecord]]], *, partition_key: str | None,
                 client: JiraClient, ledger: Ledger, settings: AcumaticaJiraFlow) -> IssuePlan:
    """The plan for these landed records (chunked, each chunk of one source)."""
    ids = resolve_field_ids(client, settings)
    plan = IssuePlan(partition_key=partition_key, field_ids=ids)
    for source, chunk in chunks:
        plan.records += _plan_chunk(source, chunk, client=client, ledger=ledger, settings=settings, ids=ids)
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
            item = _render(source, landed, settings)
            if isinstance(item, _Rendered) and not item.needs_no_issue:
                eligible[landed.record_id] = item.issue.external_id
    return eligible


def plan_partitions(partition_keys: Sequence[str], *, client: JiraClient, ledger: Ledger,
                    settings: AcumaticaJiraFlow) -> IssuePlan:
    """The plan of daily partitions (one, or a backfill's range) of all three sources."""
    label = partition_keys[0] if len(partition_keys) == 1 else f"{partition_keys[0]}...{partition_keys[-1]}"
    return plan_records(_landed(ledger, partition_keys), partition_key=label, client=client, ledger=ledger,
                        settings=settings)


# -- the push --------------------------------------------------------------------------------------


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

    def push(self) -> None:
        creates = [record for record in self.plan.records if record.action is Action.CREATE]
        for start in range(0, len(creates), BULK_CREATE_LIMIT):
            self._create_chunk(creates[start : start + BULK_CREATE_LIMIT])
        for record in self.plan.records:
            if record.action in (Action.UPDATE, Action.LINK) and record.issue is not None:
                comments = [change_comment(record.issue, record.changes, closing=record.closing)]
                self._update(record, record.issue.update_fields(self.plan.field_ids),
                             comments=comments if record.changes or record.closing else ())
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

