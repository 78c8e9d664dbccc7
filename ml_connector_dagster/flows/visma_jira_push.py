"""Carrying out a plan in Jira, exactly once: creates, updates, transitions and audit comments.

Creates go through Jira's bulk API, 50 at a time. Jira has no idempotency key, so each create is
preceded by a *pending* mark in the ledger and followed at once by the link. Whoever meets a
pending mark (a timed-out create, a crashed run) looks the record up in Jira before creating it
again. The search index is eventually consistent, so "not found" is only believed once the mark
is older than the consistency window; until then the record is *deferred* and the step fails with
a retryable :class:`CreateInDoubt`, so its retry policy (or the next run) looks again.

Updates comment first (what changed, old to new), then set the fields, then move the status, and
only then advance the ledger's content hash: a failure anywhere leaves the hash behind, so the
next run picks the record up again. Comments carry a marker and are looked for before being sent
a second time. Records that still fail become dead letters; a record that succeeds resolves its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from ml_connector_dagster.config import VismaJiraFlow
from ml_connector_dagster.core.http import ApiError, TransportFailure
from ml_connector_dagster.core.landing import content_hash
from ml_connector_dagster.core.ledger import AlreadyLinked, Ledger, Link
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.jira.client import (
    BULK_CREATE_LIMIT,
    BulkCreateInterrupted,
    JiraClient,
    StatusUnreachable,
)
from ml_connector_dagster.systems.jira.models import BulkCreateResult, Comment

from .visma_jira_audit import AuditEntry
from .visma_jira_plan import AUDIT_FLOW, RECHECK, Action, Plan, PlannedRecord, lookup_issues
from .visma_jira_render import change_comment, change_marker

__all__ = ["CreateInDoubt", "PushOutcome", "comment_once", "move_to_status", "push_plan"]

DEST = "jira"
MAX_HOPS = 8


class CreateInDoubt(RuntimeError):
    """Some creates may have reached Jira and cannot be found yet: look again later, do not create."""


class PushOutcome(BaseModel):
    """What one push did, for the materialization's metadata."""

    created: int = 0
    updated: int = 0
    linked: int = 0
    commented: int = 0
    transitioned: int = 0
    audit_commented: int = 0
    audit_waiting: int = 0
    failed: int = 0
    deferred: list[str] = Field(default_factory=list, description="Record ids whose create is in doubt.")
    issues: dict[str, str | None] = Field(default_factory=dict, description="Issue key -> browse URL, of issues written.")
    succeeded: list[str] = Field(default_factory=list)


# -- building blocks -------------------------------------------------------------------------------


def _find_comment(client: JiraClient, key: str, marker: str) -> Comment | None:
    return next((c for c in client.comments(key) if marker in adf.plain_text(c.body)), None)


def comment_once(client: JiraClient, key: str, body: dict[str, Any], marker: str, *, look_first: bool) -> Comment:
    """Add a comment containing ``marker`` unless the issue already has one.

    ``look_first`` when an earlier attempt may have sent it; after a lost answer the comments are
    read (a plain GET, consistent at once) before the failure is believed.
    """
    if look_first and (existing := _find_comment(client, key, marker)) is not None:
        return existing
    try:
        return client.add_comment(key, body)
    except TransportFailure as exc:
        if exc.may_have_been_applied and (existing := _find_comment(client, key, marker)) is not None:
            return existing
        raise


def move_to_status(client: JiraClient, key: str, current: str | None, target: str, path: Sequence[str]) -> int:
    """Walk the issue's workflow to ``target``; return how many transitions it took.

    A direct transition is taken when Jira offers one; otherwise the step that comes closest to
    ``target`` along ``path`` (the statuses in workflow order). Raises ``StatusUnreachable``.
    """
    order = {status.casefold(): index for index, status in enumerate(path)}
    goal = target.casefold()
    seen = {(current or "").casefold()}
    hops = 0
    while (current or "").casefold() != goal:
        available = client.transitions(key)
        step = next((t for t in available if (t.to_status or "").casefold() == goal), None)
        if step is None and goal in order:
            distance = abs(order.get((current or "").casefold(), len(path) * 2) - order[goal])
            closer = [t for t in available if (t.to_status or "").casefold() in order
                      and (t.to_status or "").casefold() not in seen
                      and abs(order[(t.to_status or "").casefold()] - order[goal]) < distance]  # fmt: skip
            step = min(closer, key=lambda t: abs(order[(t.to_status or "").casefold()] - order[goal]), default=None)
        if step is None or hops >= MAX_HOPS:
            if hops == 0 and (client.get_issue(key, ["status"]).status_name or "").casefold() == goal:
                return 0
            reachable = ", ".join(sorted({t.to_status or t.name for t in available})) or "none"
            raise StatusUnreachable(f"issue {key} is in status {current!r}; no way to {target!r} (reachable: {reachable})")
        client.transition(key, step.id)
        hops += 1
        current = step.to_status
        seen.add((current or "").casefold())
    return hops


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- the push --------------------------------------------------------------------------------------


class _Pusher:
    def __init__(self, plan: Plan, *, client: JiraClient, ledger: Ledger, settings: VismaJiraFlow, issue_type: str,
                 run_id: str, log: logging.Logger | Any, retrying: bool, now: Callable[[], datetime]) -> None:
        self.plan = plan
        self.client = client
        self.ledger = ledger
        self.settings = settings
        self.issue_type = issue_type
        self.run_id = run_id
        self.log = log
        self.retrying = retrying
        self.now = now
        self.window = timedelta(seconds=settings.consistency_window_s)
        self.path = list(dict.fromkeys([settings.initial_status, *settings.status_map.values()]))
        self.outcome = PushOutcome()

    # -- ledger and outcome helpers --------------------------------------------------------------
    def _link(self, record: PlannedRecord, issue_id: str, key: str | None, hash_: str) -> Link:
        assert record.issue is not None
        return Link(flow=self.plan.flow, source_id=record.record_id, source_version=record.issue.source_version,
                    dest_system=DEST, dest_id=issue_id, dest_key=key, dest_url=self._url(key), content_hash=hash_,
                    run_id=self.run_id)  # fmt: skip

    def _url(self, key: str | None) -> str | None:
        return self.client.browse_url(key) if key else None

    def _touched(self, key: str | None) -> None:
        if key:
            self.outcome.issues[key] = self._url(key)

    def _dead_letter(self, source_id: str, payload: dict[str, Any] | None, error: Exception | str,
                     partition_key: str | None) -> None:
        self.outcome.failed += 1
        self.ledger.add_dead_letter(self.plan.asset, source_id, payload or {}, str(error),
                                    partition_key=partition_key, run_id=self.run_id)  # fmt: skip
        self.log.warning(f"{self.plan.asset}: {source_id} failed: {error}")

    def unreadable(self, record: PlannedRecord) -> None:
        self._dead_letter(record.record_id, record.payload, record.reason or "invalid record", record.partition_key)

    # -- creates ---------------------------------------------------------------------------------
    def create(self, records: Sequence[PlannedRecord]) -> None:
        for start in range(0, len(records), BULK_CREATE_LIMIT):
            self._create_chunk(records[start : start + BULK_CREATE_LIMIT])

    def _create_chunk(self, chunk: Sequence[PlannedRecord]) -> None:
        links = self.ledger.links_for(self.plan.flow, [r.record_id for r in chunk])
        ready: list[PlannedRecord] = []
        doubtful: list[tuple[PlannedRecord, Link]] = []
        for record in chunk:
            link = links.get(record.record_id)
            if link is None:
                ready.append(record)
            elif link.state == "linked":  # created by an earlier attempt, or a concurrent run
                if link.run_id == self.run_id:
                    self.outcome.created += 1
                self.outcome.succeeded.append(record.record_id)
            else:
                doubtful.append((record, link))
        ready += self._settle(doubtful, just_sent=False)
        marked = []
        for record in ready:
            assert record.issue is not None
            try:
                self.ledger.mark_pending(self.plan.flow, record.record_id, record.issue.source_version, DEST,
                                         record.issue.content_hash, self.run_id)  # fmt: skip
            except AlreadyLinked:
                self.outcome.succeeded.append(record.record_id)
                continue
            marked.append(record)
        if marked:
            self._send(marked)

    def _send(self, marked: list[PlannedRecord]) -> None:
        ids = self.plan.field_ids
        updates = [{"fields": r.issue.create_fields(ids, self.settings.project_key, self.issue_type)}
                   for r in marked if r.issue is not None]  # fmt: skip
        try:
            result = self.client.bulk_create(updates)
        except BulkCreateInterrupted as exc:
            self._created(marked, exc.result)
            for index in exc.not_sent:  # never reached Jira: drop the intent, send on the retry
                self.ledger.forget_link(self.plan.flow, marked[index].record_id)
                self.outcome.deferred.append(marked[index].record_id)
            in_doubt = [marked[index] for index in exc.in_doubt]
            self.log.warning(f"{self.plan.asset}: no answer to a bulk create; looking up {len(in_doubt)} issue(s)")
            self._settle([(r, None) for r in in_doubt], just_sent=True)
            return
        except ApiError as exc:
            if exc.status_code is not None and exc.status_code < 500:
                for record in marked:  # refused before anything was created (4xx, 429 included)
                    self.ledger.forget_link(self.plan.flow, record.record_id)
            raise  # a 5xx may have created some: the pending marks stay, the retry looks them up
        self._created(marked, result)

    def _created(self, marked: list[PlannedRecord], result: BulkCreateResult) -> None:
        links = []
        for created in result.created:
            record = marked[created.index]
            assert record.issue is not None
            links.append(self._link(record, created.id, created.key, record.issue.content_hash))
        self.ledger.record_links(links)
        for created in result.created:
            record = marked[created.index]
            self.outcome.created += 1
            self.outcome.succeeded.append(record.record_id)
            self._touched(created.key)
            self._after_create(record, created.id, created.key, self.settings.initial_status)
        for failed in result.failed:
            record = marked[failed.index]
            self.ledger.forget_link(self.plan.flow, record.record_id)  # refused: no issue exists
            self._dead_letter(record.record_id, record.payload, failed.message, record.partition_key)

    def _after_create(self, record: PlannedRecord, issue_id: str, key: str, status: str | None) -> None:
        target = record.issue.jira_status if record.issue else None
        if not target or (status or "").casefold() == target.casefold():
            return
        try:
            move_to_status(self.client, key, status, target, self.path)
            self.outcome.transitioned += 1
        except (ApiError, StatusUnreachable) as exc:
            # Linked, but its status lags: a recheck hash makes the next run compare it again.
            self.ledger.record_links([self._link(record, issue_id, key, RECHECK)])
            self._dead_letter(record.record_id, record.payload, exc, record.partition_key)

    def _settle(self, doubtful: Sequence[tuple[PlannedRecord, Link | None]], *, just_sent: bool) -> list[PlannedRecord]:
        """Look pending creates up in Jira; return the ones to create (not found, window passed)."""
        if not doubtful:
            return []
        wanted = [(r.external_id, None) for r, _ in doubtful]
        found = lookup_issues(self.client, self.settings, self.plan.field_ids, wanted)
        again = []
        for record, link in doubtful:
            assert record.issue is not None
            issue = found.get(record.external_id)
            if issue is not None:
                same = link is None or link.content_hash == record.issue.content_hash
                self.ledger.record_links([self._link(record, issue.id, issue.key,
                                                     record.issue.content_hash if same else RECHECK)])
                self.log.info(f"{self.plan.asset}: {record.record_id} was created as {issue.key} by an unanswered call")
                self.outcome.created += 1
                self.outcome.succeeded.append(record.record_id)
                self._touched(issue.key)
                if same and issue.key:
                    self._after_create(record, issue.id, issue.key, issue.status_name)
            elif just_sent or link is None or self.now() - link.updated_at < self.window:
                self.outcome.deferred.append(record.record_id)
            else:
                again.append(record)
        return again

    # -- updates ---------------------------------------------------------------------------------
    def update(self, record: PlannedRecord) -> None:
        issue, key = record.issue, record.issue_key
        assert issue is not None
        if not key or not record.issue_id:
            self._dead_letter(record.record_id, record.payload, "linked issue has no key", record.partition_key)
            return
        try:
            if record.action is Action.LINK:
                self.ledger.record_links([self._link(record, record.issue_id, key, RECHECK)])
            if record.changes:
                body = change_comment(issue, record.changes)
                comment_once(self.client, key, body, change_marker(issue), look_first=self.retrying)
                self.outcome.commented += 1
            self.client.update_issue(key, issue.update_fields(self.plan.field_ids))
            if record.transition_to:
                move_to_status(self.client, key, record.current_status, record.transition_to, self.path)
                self.outcome.transitioned += 1
            self.ledger.record_links([self._link(record, record.issue_id, key, issue.content_hash)])
        except (ApiError, StatusUnreachable) as exc:
            self._dead_letter(record.record_id, record.payload, exc, record.partition_key)
            return
        if record.action is Action.LINK:
            self.outcome.linked += 1
        else:
            self.outcome.updated += 1
        self.outcome.succeeded.append(record.record_id)
        self._touched(key)

    # -- audit comments --------------------------------------------------------------------------
    def audit(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        invoices = self.ledger.links_for(self.plan.flow, {e.invoice_id for e in entries})
        done = self.ledger.links_for(AUDIT_FLOW, [e.audit_id for e in entries])
        for entry in entries:
            earlier = done.get(entry.audit_id)
            if earlier is not None and earlier.state == "linked":
                continue
            invoice = invoices.get(entry.invoice_id)
            if invoice is None or invoice.state != "linked" or not invoice.dest_key:
                self.outcome.audit_waiting += 1  # the invoice has no issue (yet): its next run comments
                continue
            self._audit_comment(entry, invoice.dest_key, look_first=earlier is not None or self.retrying)

    def _audit_comment(self, entry: AuditEntry, key: str, *, look_first: bool) -> None:
        body_hash = content_hash(entry.body)
        try:
            self.ledger.mark_pending(AUDIT_FLOW, entry.audit_id, entry.record_id, DEST, body_hash, self.run_id)
            comment = comment_once(self.client, key, entry.body, entry.marker, look_first=look_first)
        except AlreadyLinked:
            return
        except ApiError as exc:
            self._dead_letter(entry.audit_id, entry.payload, exc, self.plan.partition_key)
            return
        self.ledger.record_links([Link(
            flow=AUDIT_FLOW, source_id=entry.audit_id, source_version=entry.record_id, dest_system=DEST,
            dest_id=comment.id, dest_key=key, dest_url=self._url(key), content_hash=body_hash, run_id=self.run_id,
        )])  # fmt: skip
        self.outcome.audit_commented += 1
        self.outcome.succeeded.append(entry.audit_id)
        self._touched(key)


def push_plan(
    plan: Plan, *, client: JiraClient, ledger: Ledger, settings: VismaJiraFlow, issue_type: str, run_id: str,
    log: logging.Logger | Any, retrying: bool = False, now: Callable[[], datetime] = _utcnow,
) -> PushOutcome:
    """Carry out ``plan``; per-record failures become dead letters, successes resolve theirs.

    Returns with ``outcome.deferred`` listing creates in doubt; the caller decides to retry.
    """
    pusher = _Pusher(plan, client=client, ledger=ledger, settings=settings, issue_type=issue_type, run_id=run_id,
                     log=log, retrying=retrying, now=now)  # fmt: skip
    outcome = pusher.outcome
    try:
        pusher.create([r for r in plan.records if r.action is Action.CREATE])
        for record in plan.records:
            if record.action in (Action.UPDATE, Action.LINK):
                pusher.update(record)
            elif record.action is Action.FAILED:
                pusher.unreadable(record)
            elif record.action in (Action.SKIP, Action.FILTERED):
                outcome.succeeded.append(record.record_id)  # nothing to do is a success too
        pusher.audit(plan.audits)
    finally:
        ledger.resolve_dead_letters_for(plan.asset, outcome.succeeded)
    return outcome
