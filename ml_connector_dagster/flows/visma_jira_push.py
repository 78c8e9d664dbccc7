"""Carrying out a plan in Jira, exactly once: creates, updates, transitions and audit comments.

Creates go through Jira's bulk API, 50 at a time; a lean plan's creates are read back from the
landing store, and rendered, one chunk ahead while the previous ones are sent, a few bulk requests
on the wire at once (each chunk marked pending before it leaves, linked as its answer comes). A new issue whose
Visma status maps to a later Jira status takes its first transition in the bulk create itself
(Jira applies it at once and answers how it went), so the usual new issue costs no call of its
own. The transitions out of the initial status are learnt from the first new issue that needs
one, created alone for that (one GET per push); an issue that needs more hops, or whose transition
Jira refused, is moved on by :data:`MOVERS` threads while the next chunk is created: under the
shared Jira budget (each endpoint its own), moves of many issues overlap their round trips instead
of queueing behind each other. The transitions Jira offers from a status are asked once per push
(one workflow per push) and asked again for an issue that refuses one. Only the calling thread
writes to the ledger.

Jira has no idempotency key, so each create is preceded by a *pending* mark in the ledger (one
commit per bulk request) and followed at once by the link. Whoever meets a pending mark (a
timed-out create, a crashed run) looks the record up in Jira before creating it again. The search index is eventually consistent, so "not found" is only believed once the mark
is older than the consistency window; until then the record is *deferred* and the step fails with
a retryable :class:`CreateInDoubt`, so its retry policy (or the next run) looks again.

Updates comment first (what changed, old to new), then set the fields, then move the status, and
only then advance the ledger's content hash: a failure anywhere leaves the hash behind, so the
next run picks the record up again. Comments carry a marker and are looked for before being sent
a second time. Records that still fail become dead letters; a record that succeeds resolves its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ml_connector_dagster.config import VismaJiraFlow
from ml_connector_dagster.core.http import ApiError
from ml_connector_dagster.core.landing import content_hash
from ml_connector_dagster.core.ledger import AlreadyLinked, Ledger, Link
from ml_connector_dagster.systems.jira.client import BULK_CREATE_LIMIT, JiraClient, StatusUnreachable
from ml_connector_dagster.systems.jira.models import JiraIssue, Transition

from .jira_destination import (
    DEST,
    RECHECK,
    SENDERS,
    UNKNOWN_LOOKUP_BATCH,
    Action,
    CreateInDoubt,
    InFlight,
    IssueWriter,
    TransitionMenu,
    comment_once,
    lookup_issues,
    move_to_status,
    next_step,
)
from .jira_destination import PushOutcome as IssuePushOutcome
from .visma_jira_audit import AuditEntry, audit_entries
from .visma_jira_plan import (
    AUDIT_FLOW,
    DocumentKind,
    Plan,
    PlannedRecord,
    adopt,
    lookup_fields,
    restore_records,
)
from .visma_jira_render import change_comment, change_marker

# Ledger state key prefix of an audit comment whose invoice had no issue yet: + "<flow>/<audit id>".
AUDIT_WAITING = "visma_jira.audit_waiting/"

__all__ = ["CreateInDoubt", "PushOutcome", "TransitionMenu", "comment_once", "move_to_status", "push_plan"]

MOVERS = 16  # new issues walked through their workflow at once (round trips overlap; the budget caps the rate)


class PushOutcome(IssuePushOutcome):
    """What one push did, for the materialization's metadata: the shared counts and the audit comments."""

    audit_commented: int = 0
    audit_waiting: int = 0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Move(NamedTuple):
    """A new issue on its way to the status its record maps to."""

    record: PlannedRecord
    issue_id: str
    key: str


# -- the push --------------------------------------------------------------------------------------


class _Pusher(IssueWriter):
    def __init__(self, plan: Plan, *, client: JiraClient, ledger: Ledger, settings: VismaJiraFlow, issue_type: str,
                 run_id: str, log: logging.Logger | Any, retrying: bool, now: Callable[[], datetime],
                 kind: DocumentKind | None, movers: ThreadPoolExecutor) -> None:
        self.plan = plan
        self.kind = kind
        self.movers = movers
        self.moving: list[tuple[_Move, Future[int]]] = []
        self.settings = settings
        self.issue_type = issue_type
        self.path = list(dict.fromkeys([settings.initial_status, *settings.status_map.values()]))
        super().__init__(flow=plan.flow, asset=plan.asset, client=client, ledger=ledger, run_id=run_id, log=log,
                         retrying=retrying, consistency_window_s=settings.consistency_window_s, now=now,
                         outcome=PushOutcome(), initial_status=settings.initial_status)  # fmt: skip

    # -- what the shared push asks of this flow --------------------------------------------------
    def _create_fields(self, record: PlannedRecord) -> dict[str, Any]:
        assert record.issue is not None
        return record.issue.create_fields(self.plan.field_ids, self.settings.project_key, self.issue_type)

    def _lookup(self, wanted: Sequence[tuple[str, str | None]]) -> Mapping[str, JiraIssue]:
        return lookup_issues(self.client, self.settings.project_key, self.plan.field_ids.external_id, wanted)

    def unreadable(self, record: PlannedRecord) -> None:
        self._dead_letter(record.record_id, record.payload, record.reason or "invalid record", record.partition_key)

    # -- creates ---------------------------------------------------------------------------------
    def create(self, chunks: Iterable[Sequence[PlannedRecord]]) -> None:
        """Create the plan's issues chunk by chunk (:meth:`create_ahead`): the next chunks are read back and
        rendered, and their unchecked creates (see :mod:`visma_jira_plan`) looked up in Jira, while this
        one is sent; one found is adopted (linked and brought up to date), not created."""
        self.create_ahead(chunks, read_back=self._read_back, look_up=self._look_up, send=self._send)
        self.settle_moves(wait=False)

    def _send(self, read: tuple[list[PlannedRecord], dict[str, str]], found: Mapping[str, JiraIssue],
              flying: deque[InFlight], senders: Executor) -> None:
        restored, hashes = read
        ready = []
        for record in restored:
            if record.action is Action.FAILED:
                self.unreadable(record)
            elif record.action is Action.CREATE:
                ready.append(record)
        adopted = [r for r in ready if not r.checked and r.external_id in found]
        self._adopt_found(adopted, found)
        self._create_ready([r for r in ready if r not in adopted] if adopted else ready, hashes, flying, senders)

    def _adopt_found(self, records: list[PlannedRecord], found: Mapping[str, JiraIssue]) -> None:
        """Link the creates found in Jira to their issues, as a plan's adoption does; one the ledger has
        come to know meanwhile (a concurrent run) goes the way of a create, whose checks settle it."""
        if not records:
            return
        known = self.ledger.links_for(self.plan.flow, [record.record_id for record in records])
        for record in records:
            if record.record_id in known:
                self._create_chunk([record])
            else:
                self.update(adopt(record, found[record.external_id]))

    def _create_ready(self, ready: list[PlannedRecord], hashes: dict[str, str], flying: deque[InFlight],
                      senders: Executor) -> None:
        """Send ``ready`` in bulk creates of at most Jira's limit (the first new issue that needs a move
        alone, once, to learn the workflow)."""
        first = next((i for i, r in enumerate(ready) if self._create_needs_move(r)), None)
        if first is not None and self.menu.known(self.settings.initial_status) is None:
            # One issue alone first: the transitions Jira offers it teach the menu where the
            # initial status leads, so every later create takes its first hop itself.
            self.land_flights(flying)
            self._create_chunk([ready.pop(first)], hashes)
        for start in range(0, len(ready), BULK_CREATE_LIMIT):
            if (flight := self._submit_chunk(ready[start : start + BULK_CREATE_LIMIT], hashes, senders)) is not None:
                flying.append(flight)
            self.land_flights(flying, keep=SENDERS - 1)
            self.settle_moves(wait=False)

    def _look_up(self, chunk: Sequence[PlannedRecord]) -> Mapping[str, JiraIssue]:
        """The chunk's unchecked creates found in Jira, by external id (one search per 100). Reads only.

        A record the ledger knows by now (an earlier attempt of this step marked or linked it) is left
        to the create's own checks, which look a pending one up as they always do.
        """
        unchecked = [record for record in chunk if record.action is Action.CREATE and not record.checked]
        known = self.ledger.links_for(self.plan.flow, [record.record_id for record in unchecked]) if unchecked else {}
        wanted = [(record.external_id, None) for record in unchecked if record.record_id not in known]
        if not wanted:
            return {}
        return lookup_issues(self.client, self.settings.project_key, self.plan.field_ids.external_id, wanted,
                             fields=lookup_fields(self.plan.field_ids))

    def _create_needs_move(self, record: PlannedRecord) -> bool:
        target = record.issue.jira_status if record.issue else None
        return bool(target) and target.casefold() != self.settings.initial_status.casefold()  # type: ignore[union-attr]

    def _read_back(self, chunk: Sequence[PlannedRecord]) -> tuple[list[PlannedRecord], dict[str, str]]:
        """The chunk with its stored creates read back from the landing store and rendered (unreadable
        ones ``FAILED``), and each rendering's content hash. Reads only: the calling thread writes the
        ledger."""
        restored = list(chunk)
        if any(record.stored for record in chunk):
            if self.kind is None:
                raise ValueError(f"{self.plan.asset}: a lean plan needs its document kind to read its records back")
            restored = restore_records(self.kind, chunk, ledger=self.ledger, settings=self.settings)
        return restored, {r.record_id: r.issue.content_hash for r in restored if r.issue is not None}

    def _create_transition(self, record: PlannedRecord) -> Transition | None:
        """The first step towards the record's status, once Jira's transitions out of the initial status
        are known."""
        target = record.issue.jira_status if record.issue else None
        start = self.settings.initial_status
        if not target or target.casefold() == start.casefold():
            return None
        offered = self.menu.known(start)
        return next_step(offered, start, target, self.path) if offered is not None else None

    def _status_settled(self, record: PlannedRecord, status: str | None) -> bool:
        target = record.issue.jira_status if record.issue else None
        return not target or (status or "").casefold() == target.casefold()

    def _after_create(self, record: PlannedRecord, issue_id: str, key: str, status: str | None, *,
                      status_known: bool = True) -> None:
        """Hand a new issue whose status must change (or, seen by a search only, may have to) to the
        movers (settled by :meth:`settle_moves`)."""
        target = record.issue.jira_status if record.issue else None
        if not target or (status_known and (status or "").casefold() == target.casefold()):
            return
        if status_known and self.menu.known(status) is None:
            # Asked here, once, before any mover could ask too: the next creates take their first step
            # themselves. A failure is left to the mover, which asks again and settles it.
            with contextlib.suppress(ApiError):
                self.menu.offered(self.client, key, status)
        future = self.movers.submit(move_to_status, self.client, key, status, target, self.path, self.menu,
                                    status_known=status_known)
        self.moving.append((_Move(record, issue_id, key), future))

    def settle_moves(self, *, wait: bool) -> None:
        """Count the finished moves (all of them with ``wait``); a failed one is dead-lettered.

        A move that failed, or never ran (the push stopped first), leaves a recheck hash on its link,
        so the next run compares the issue again.
        """
        still: list[tuple[_Move, Future[int]]] = []
        moved: list[_Move] = []
        broken: BaseException | None = None
        for move, future in self.moving:
            if not (wait or future.done()):
                still.append((move, future))
                continue
            try:
                hops = future.result()
            except (ApiError, StatusUnreachable) as exc:
                self._lagging(move, exc)
            except CancelledError as exc:  # the push stopped before this move ran
                self._lagging(move, exc, quiet=True)
            except BaseException as exc:  # a bug: every move is settled first, then it surfaces
                self._lagging(move, exc, quiet=True)
                broken = broken or exc
            else:
                self.outcome.transitioned += 1 if hops else 0  # none: a search's lagging status was stale
                moved.append(move)
        # Linked with a recheck hash at create (see IssueWriter._created), a moved issue is done now.
        self.ledger.record_links([self._link(move.record, move.issue_id, move.key, move.record.issue.content_hash)
                                  for move in moved if move.record.issue is not None])  # fmt: skip
        self.moving = still
        if broken is not None:
            raise broken

    def _lagging(self, move: _Move, error: BaseException, *, quiet: bool = False) -> None:
        record = move.record
        # Linked, but its status lags: a recheck hash makes the next run compare it again.
        self.ledger.record_links([self._link(record, move.issue_id, move.key, RECHECK)])
        # Created, yet not done: were it left among the successes, the end of this very push would
        # resolve the dead letter just written, and nothing would ever move the issue on.
        with contextlib.suppress(ValueError):
            self.outcome.succeeded.remove(record.record_id)
        if not quiet:
            self._dead_letter(record.record_id, record.payload, str(error), record.partition_key)

    # -- updates ---------------------------------------------------------------------------------
    def update(self, record: PlannedRecord) -> None:
        issue = record.issue
        assert issue is not None
        comments = [(change_comment(issue, record.changes), change_marker(issue))] if record.changes else []
        self._update(record, issue.update_fields(self.plan.field_ids), comments=comments,
                     transition_to=record.transition_to, path=self.path)

    # -- audit comments --------------------------------------------------------------------------
    def audit(self, entries: Sequence[AuditEntry]) -> None:
        """Comment each entry on its invoice's issue once; one whose invoice has no issue yet waits in the
        ledger, and every later push of invoices (of any partition) comments it once the issue exists: a
        GL batch or payment often lands in another day's partition than its invoice's issue is made in."""
        planned = {entry.audit_id for entry in entries}
        ready, waiting = self._waiting_audits() if self.settings.audit_comments else ([], set())
        entries = [*entries, *(e for e in ready if e.audit_id not in planned)]
        # Still waiting and not met again: counted, not read or written again (an invoice that never
        # gets an issue, filtered out, keeps its entries waiting for good).
        self.outcome.audit_waiting += len(waiting - planned - {e.audit_id for e in ready})
        if not entries:
            return
        invoices = self.ledger.links_for(self.plan.flow, {e.invoice_id for e in entries})
        done = self.ledger.links_for(AUDIT_FLOW, [e.audit_id for e in entries])
        for entry in entries:
            earlier = done.get(entry.audit_id)
            if earlier is not None and earlier.state == "linked":
                self.ledger.delete_state(self._waiting_key(entry))
                continue
            invoice = invoices.get(entry.invoice_id)
            if invoice is None or invoice.state != "linked" or not invoice.dest_key:
                self.outcome.audit_waiting += 1
                if entry.audit_id not in waiting:
                    self.ledger.set_state(self._waiting_key(entry),
                                          json.dumps({"entity": entry.entity, "record": entry.payload}))
                continue
            self._audit_comment(entry, invoice.dest_key, look_first=earlier is not None or self.retrying)

    def _waiting_key(self, entry: AuditEntry) -> str:
        return f"{AUDIT_WAITING}{self.plan.flow}/{entry.audit_id}"

    def _waiting_audits(self) -> tuple[list[AuditEntry], set[str]]:
        """The waiting entries whose invoice has its issue now (to comment), and the ids of all that wait.

        Only those are read back into entries: an audit id ends in its invoice's id, which is all the
        ledger is asked about for the others.
        """
        prefix = f"{AUDIT_WAITING}{self.plan.flow}/"
        stored = {key.removeprefix(prefix): value for key, value in self.ledger.states_under(prefix).items()}
        invoice_of = {audit_id: audit_id.rsplit("/", 1)[-1] for audit_id in stored}
        linked = self.ledger.links_for(self.plan.flow, set(invoice_of.values()))
        ready: list[AuditEntry] = []
        for audit_id, invoice_id in invoice_of.items():
            link = linked.get(invoice_id)
            if link is None or link.state != "linked" or not link.dest_key:
                continue
            kept = json.loads(stored[audit_id])
            ready += [e for e in audit_entries(kept["entity"], kept["record"]) if e.audit_id == audit_id]
        return ready, set(stored)

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
        self.ledger.delete_state(self._waiting_key(entry))
        self.outcome.audit_commented += 1
        self.outcome.succeeded.append(entry.audit_id)
        self._touched(key)


def push_plan(
    plan: Plan, *, client: JiraClient, ledger: Ledger, settings: VismaJiraFlow, issue_type: str, run_id: str,
    log: logging.Logger | Any, retrying: bool = False, now: Callable[[], datetime] = _utcnow,
    kind: DocumentKind | None = None,
) -> PushOutcome:
    """Carry out ``plan``; per-record failures become dead letters, successes resolve theirs.

    Returns with ``outcome.deferred`` listing creates in doubt; the caller decides to retry.
    ``kind`` reads a lean plan's creates back from the landing store.
    """
    with ThreadPoolExecutor(MOVERS, thread_name_prefix="jira-move") as movers:
        pusher = _Pusher(plan, client=client, ledger=ledger, settings=settings, issue_type=issue_type, run_id=run_id,
                         log=log, retrying=retrying, now=now, kind=kind, movers=movers)  # fmt: skip
        try:
            _push(pusher)
        finally:
            for _, future in pusher.moving:  # left only when the push stopped early
                future.cancel()
            pusher.settle_moves(wait=True)
            ledger.resolve_dead_letters_for(plan.asset, pusher.outcome.succeeded)
    return pusher.outcome


def _push(pusher: _Pusher) -> None:
    plan, outcome = pusher.plan, pusher.outcome
    pusher.create(plan.creates(UNKNOWN_LOOKUP_BATCH))  # one search per chunk, its creates in bulks of 50
    for record in plan.records:
        if record.action in (Action.UPDATE, Action.LINK):
            pusher.update(record)
        elif record.action is Action.FAILED:
            pusher.unreadable(record)
        elif record.action in (Action.SKIP, Action.FILTERED):
            outcome.succeeded.append(record.record_id)  # nothing to do is a success too
    pusher.audit(plan.audits)
    pusher.settle_moves(wait=True)
