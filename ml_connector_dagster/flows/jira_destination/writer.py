"""Exactly-once creates, updates and dead letters of a flow's records in Jira (:class:`IssueWriter`)."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, Field

from ml_connector_dagster.core.http import ApiError
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.systems.jira.client import BulkCreateInterrupted, JiraClient, StatusUnreachable
from ml_connector_dagster.systems.jira.models import BulkCreateResult, JiraIssue, Transition

from ..destination import CreateInDoubt
from .records import RECHECK, Action, PlannedIssueBase
from .workflow import TransitionMenu, comment_once, move_to_status

__all__ = [
    "DEST",
    "LOOKUPS_AHEAD",
    "SENDERS",
    "CreateInDoubt",
    "InFlight",
    "IssueWriter",
    "PushOutcome",
]

DEST = "jira"
Chunk = TypeVar("Chunk")
Read = TypeVar("Read")
SENDERS = 3  # bulk creates on the wire at once: Jira works on one while the next is rendered and marked
LOOKUPS_AHEAD = 2  # chunks taken ahead of the one being created: their searches overlap the creates


class PushOutcome(BaseModel):
    """What one push did, for the materialization's metadata."""

    created: int = 0
    updated: int = 0
    linked: int = 0
    commented: int = 0
    transitioned: int = 0
    failed: int = 0
    deferred: list[str] = Field(default_factory=list, description="Record ids whose create is in doubt.")
    issues: dict[str, str | None] = Field(default_factory=dict, description="Issue key -> browse URL, of issues written.")
    succeeded: list[str] = Field(default_factory=list)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class InFlight(NamedTuple):
    """A bulk create sent on another thread: its records (marked pending), their hashes and first hops."""

    marked: list[Any]
    hashes: Mapping[str, str]
    moves: list[Transition | None]
    future: Future[BulkCreateResult]


# -- the push --------------------------------------------------------------------------------------


class IssueWriter:
    """Exactly-once creates, updates and dead letters of one flow's records in Jira.

    A flow subclasses it and says how a record becomes create fields (:meth:`_create_fields`) and
    how records are found by external id (:meth:`_lookup`); :meth:`_after_create` lets it act on a
    new issue. Only the calling thread writes to the ledger.
    """

    def __init__(self, *, flow: str, asset: str, client: JiraClient, ledger: Ledger, run_id: str,
                 log: logging.Logger | Any, retrying: bool, consistency_window_s: float,
                 now: Callable[[], datetime] = _utcnow, outcome: PushOutcome | None = None,
                 initial_status: str | None = None) -> None:
        self.flow = flow
        self.asset = asset
        self.client = client
        self.ledger = ledger
        self.run_id = run_id
        self.log = log
        self.retrying = retrying
        self.now = now
        self.window = timedelta(seconds=consistency_window_s)
        self.outcome = outcome if outcome is not None else PushOutcome()
        self.initial_status = initial_status
        self.menu = TransitionMenu()

    # -- what a flow says ------------------------------------------------------------------------
    def _create_fields(self, record: Any) -> dict[str, Any]:
        """The ``fields`` of the create request of ``record``."""
        raise NotImplementedError

    def _lookup(self, wanted: Sequence[tuple[str, str | None]]) -> Mapping[str, JiraIssue]:
        """Issues by external id, for ``(external id, issue id if known)`` pairs."""
        raise NotImplementedError

    def _after_create(self, record: Any, issue_id: str, key: str, status: str | None, *,
                      status_known: bool = True) -> None:
        """Called for each issue created (or found created by an unanswered call), with its status
        (``status_known=False``: as a search saw it, which may lag the issue)."""

    def _status_settled(self, record: Any, status: str | None) -> bool:
        """Whether a new issue in ``status`` needs no move (a flow whose issues follow a status says when)."""
        return True

    def _create_transition(self, record: Any) -> Transition | None:
        """The transition the create of ``record`` asks Jira to apply at once (None: none).

        The bulk create carries it, so a new issue bound for a later status costs no call of its
        own; the issue's status after the create is this transition's when Jira applied it.
        """
        return None

    # -- ledger and outcome helpers --------------------------------------------------------------
    def _link(self, record: PlannedIssueBase, issue_id: str, key: str | None, hash_: str) -> Link:
        assert record.issue is not None
        return Link(flow=self.flow, source_id=record.record_id, source_version=record.issue.source_version,
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
        self.ledger.add_dead_letter(self.asset, source_id, payload or {}, str(error),
                                    partition_key=partition_key, run_id=self.run_id)  # fmt: skip
        self.log.warning(f"{self.asset}: {source_id} failed: {error}")

    def resolve_dead_letters(self) -> None:
        """Close the dead letters of every record that succeeded (call once, at the end)."""
        self.ledger.resolve_dead_letters_for(self.asset, self.outcome.succeeded)

    # -- creates ---------------------------------------------------------------------------------
    def _create_chunk(self, chunk: Sequence[Any], hashes: Mapping[str, str] | None = None) -> None:
        """Create the chunk's records (at most one bulk request) that no earlier attempt created.

        ``hashes``: the renderings' content hashes when the caller has them already (record id -> hash).
        """
        prepared = self._prepare(chunk, hashes)
        if prepared is not None:
            marked, known = prepared
            moves, updates = self._updates(marked)
            self._land(marked, moves, known, lambda: self.client.bulk_create(updates))

    def _submit_chunk(self, chunk: Sequence[Any], hashes: Mapping[str, str] | None,
                      senders: Executor) -> InFlight | None:
        """Like :meth:`_create_chunk`, but the bulk request goes out on ``senders``: its records are
        marked pending here (the calling thread writes the ledger) and linked by :meth:`land_flight`."""
        prepared = self._prepare(chunk, hashes)
        if prepared is None:
            return None
        marked, known = prepared
        moves, updates = self._updates(marked)
        return InFlight(marked, known, moves, senders.submit(self.client.bulk_create, updates))

    def create_ahead(self, chunks: Iterable[Chunk], *, read_back: Callable[[Chunk], Read],
                     look_up: Callable[[Chunk], Mapping[str, JiraIssue]],
                     send: Callable[[Read, Mapping[str, JiraIssue], deque[InFlight], Executor], None]) -> None:
        """Create chunk by chunk, each chunk read back (rendered: a thread of its own) and looked up in Jira
        :data:`LOOKUPS_AHEAD` chunks ahead of the one being sent, so the CPU work here overlaps Jira's and a
        backfill's searches run beside its creates (each endpoint has its own budget).

        ``send`` gets a chunk as read back, what Jira holds of it, the creates in flight and the executor
        for up to :data:`SENDERS` bulk requests on the wire at once (:meth:`_submit_chunk`,
        :meth:`land_flights`). Whatever stops the push, the creates already sent are linked (or left
        pending) before it surfaces.
        """
        pending = iter(chunks)
        flying: deque[InFlight] = deque()
        coming: deque[tuple[Future[Read], Future[Mapping[str, JiraIssue]]]] = deque()
        with (ThreadPoolExecutor(1, thread_name_prefix="jira-render") as renderer,
              ThreadPoolExecutor(LOOKUPS_AHEAD, thread_name_prefix="jira-lookup") as lookups,
              ThreadPoolExecutor(SENDERS, thread_name_prefix="jira-create") as senders):

            def ahead() -> None:
                while len(coming) < LOOKUPS_AHEAD and (chunk := next(pending, None)) is not None:
                    coming.append((renderer.submit(read_back, chunk), lookups.submit(look_up, chunk)))

            try:
                ahead()
                while coming:
                    rendering, looking_up = coming.popleft()
                    read, found = rendering.result(), looking_up.result()
                    ahead()
                    send(read, found, flying, senders)
            except BaseException:
                for rendering, looking_up in coming:  # reads only: nothing to undo
                    rendering.cancel()
                    looking_up.cancel()
                with contextlib.suppress(Exception):
                    self.land_flights(flying)
                raise
            self.land_flights(flying)

    def land_flight(self, flight: InFlight) -> None:
        """Link (or dead-letter, or leave in doubt) what a submitted bulk create did, once it is answered."""
        self._land(flight.marked, flight.moves, flight.hashes, flight.future.result)

    def land_flights(self, flying: deque[InFlight], *, keep: int = 0) -> None:
        """Land the oldest submitted creates until at most ``keep`` are in flight (all of them once one
        fails: every answered create is linked before the failure surfaces)."""
        error: BaseException | None = None
        while len(flying) > (0 if error is not None else keep):
            flight = flying.popleft()
            try:
                self.land_flight(flight)
            except BaseException as exc:  # noqa: BLE001 - the others are landed first, then it is raised
                error = error or exc
        if error is not None:
            raise error

    def _prepare(self, chunk: Sequence[Any], hashes: Mapping[str, str] | None) -> tuple[list[Any], dict[str, str]] | None:
        """The chunk's records to send, marked pending (one commit), and their hashes; None: nothing to send."""
        links = self.ledger.links_for(self.flow, [r.record_id for r in chunk])
        ready: list[Any] = []
        doubtful: list[tuple[Any, Link]] = []
        for record in chunk:
            link = links.get(record.record_id)
            if link is None:
                ready.append(record)
            elif link.state == "linked" and link.content_hash == RECHECK:
                # Created, but left unfinished by an earlier attempt (its status move failed or never ran,
                # or the record changed meanwhile): no success to count. A dead letter makes sure a plan
                # compares the issue again (the replay), even if the partition never runs again.
                self._dead_letter(record.record_id, record.payload, f"{link.dest_key or 'the issue'} was created "
                                  "but not brought up to date; the replay compares it again", record.partition_key)
            elif link.state == "linked":  # created by an earlier attempt, or a concurrent run
                if link.run_id == self.run_id:
                    self.outcome.created += 1
                self.outcome.succeeded.append(record.record_id)
            else:
                doubtful.append((record, link))
        ready += self._settle(doubtful, just_sent=False)
        known = hashes or {}
        hashes = {r.record_id: known.get(r.record_id) or r.issue.content_hash for r in ready if r.issue is not None}
        intents = [(r.record_id, r.issue.source_version, hashes[r.record_id]) for r in ready if r.issue is not None]
        linked = self.ledger.mark_pending_many(self.flow, intents, DEST, self.run_id)  # one commit per chunk
        marked = []
        for record in ready:
            if record.record_id in linked:  # linked meanwhile (a concurrent run): nothing to create
                self.outcome.succeeded.append(record.record_id)
                continue
            marked.append(record)
        return (marked, hashes) if marked else None

    def _updates(self, marked: Sequence[Any]) -> tuple[list[Transition | None], list[dict[str, Any]]]:
        """Each record's first workflow hop (if the create can carry one) and its IssueUpdateDetails."""
        moves = [self._create_transition(r) for r in marked]
        updates = []
        for record, move in zip(marked, moves, strict=True):
            assert record.issue is not None
            update: dict[str, Any] = {"fields": self._create_fields(record)}
            if move is not None:
                update["transition"] = {"id": move.id}
            updates.append(update)
        return moves, updates

    def _land(self, marked: list[Any], moves: list[Transition | None], hashes: Mapping[str, str],
              answer: Callable[[], BulkCreateResult]) -> None:
        """Settle a bulk create of ``marked`` whose result ``answer`` gives (or raises)."""
        try:
            result = answer()
        except BulkCreateInterrupted as exc:
            self._created(marked, exc.result, moves, hashes)
            for index in exc.not_sent:  # never reached Jira: drop the intent, send on the retry
                self.ledger.forget_link(self.flow, marked[index].record_id)
                self.outcome.deferred.append(marked[index].record_id)
            in_doubt = [marked[index] for index in exc.in_doubt]
            self.log.warning(f"{self.asset}: no answer to a bulk create; looking up {len(in_doubt)} issue(s)")
            self._settle([(r, None) for r in in_doubt], just_sent=True)
            return
        except ApiError as exc:
            if exc.status_code is not None and exc.status_code < 500:
                for record in marked:  # refused before anything was created (4xx, 429 included)
                    self.ledger.forget_link(self.flow, record.record_id)
            raise  # a 5xx may have created some: the pending marks stay, the retry looks them up
        self._created(marked, result, moves, hashes)

    def _created(self, marked: list[Any], result: BulkCreateResult, moves: Sequence[Transition | None],
                 hashes: Mapping[str, str]) -> None:
        statuses: dict[int, str | None] = {}
        for created in result.created:
            move = moves[created.index]
            # None asked, or refused: the issue is where its workflow starts.
            statuses[created.index] = move.to_status if move is not None and created.transitioned else self.initial_status
        links = []
        for created in result.created:
            record = marked[created.index]
            assert record.issue is not None
            # An issue whose status must still move is linked with a recheck hash until the move is done:
            # a process dying before then leaves it to be compared (and moved) by the next attempt.
            settled = self._status_settled(record, statuses[created.index])
            links.append(self._link(record, created.id, created.key, hashes[record.record_id] if settled else RECHECK))
        self.ledger.record_links(links)
        for created in result.created:
            record = marked[created.index]
            self.outcome.created += 1
            self.outcome.succeeded.append(record.record_id)
            self._touched(created.key)
            move = moves[created.index]
            if move is not None and created.transitioned:
                self.outcome.transitioned += 1
            elif move is not None:
                self.log.info(f"{self.asset}: {created.key} was created but not moved to {move.to_status!r} "
                              f"({created.transition_error or 'no answer for the transition'}); moving it on its own")
            self._after_create(record, created.id, created.key, statuses[created.index])
        for failed in result.failed:
            record = marked[failed.index]
            self.ledger.forget_link(self.flow, record.record_id)  # refused: no issue exists
            self._dead_letter(record.record_id, record.payload, failed.message, record.partition_key)

    def _settle(self, doubtful: Sequence[tuple[Any, Link | None]], *, just_sent: bool) -> list[Any]:
        """Look pending creates up in Jira; return the ones to create (not found, window passed)."""
        if not doubtful:
            return []
        found = self._lookup([(r.external_id, None) for r, _ in doubtful])
        again = []
        for record, link in doubtful:
            assert record.issue is not None
            issue = found.get(record.external_id)
            if issue is not None:
                same = link is None or link.content_hash == record.issue.content_hash
                # The search may lag the issue's status (no issue id to reconcile it by): the status is
                # taken as settled only where none is wanted, and the mover reads the real one.
                settled = same and self._status_settled(record, None)
                self.ledger.record_links([self._link(record, issue.id, issue.key,
                                                     record.issue.content_hash if settled else RECHECK)])
                self.log.info(f"{self.asset}: {record.record_id} was created as {issue.key} by an unanswered call")
                self.outcome.created += 1
                self.outcome.succeeded.append(record.record_id)
                self._touched(issue.key)
                if same and issue.key:
                    self._after_create(record, issue.id, issue.key, issue.status_name, status_known=False)
            elif just_sent or link is None or self.now() - link.updated_at < self.window:
                self.outcome.deferred.append(record.record_id)
            else:
                again.append(record)
        return again

    # -- updates ---------------------------------------------------------------------------------
    def _update(self, record: PlannedIssueBase, fields: Mapping[str, Any], *,
                comments: Sequence[tuple[dict[str, Any], str]] = (), transition_to: str | None = None,
                path: Sequence[str] = ()) -> None:
        """Comment (``(body, marker)`` each, once), set ``fields``, move to ``transition_to``, then link.

        A LINK (an issue found without a ledger link) is linked first with a recheck hash, so a
        failure half-way leaves the record to be compared again, never created again. Its status came
        from a search that may lag the issue, so its walk reads the real one first. An update the
        ledger already holds as done (this content, linked by an earlier attempt of the push: a retried
        step, a re-executed run) is not carried out again: its plan's status is stale by then, and a
        walk from a stale status can take a transition that is valid from the real one too and leads
        elsewhere (Dispute, out of Approved as well as In Review).
        """
        issue, key = record.issue, record.issue_key
        assert issue is not None
        if not key or not record.issue_id:
            self._dead_letter(record.record_id, record.payload, "linked issue has no key", record.partition_key)
            return
        link = self.ledger.links_for(self.flow, [record.record_id]).get(record.record_id)
        if link is not None and link.state == "linked" and link.content_hash == issue.content_hash:
            self._count_update(record, counted=link.run_id == self.run_id)
            return
        # An earlier attempt may have been here: a retry, a walk or comment left half-way (a recheck
        # hash), an issue found by a search (a LINK). The plan's status is then stale (the real one is
        # read) and a comment may be on the issue already (the issue's comments are read first).
        earlier = (record.action is Action.LINK or self.retrying
                   or (link is not None and link.content_hash == RECHECK))  # fmt: skip
        try:
            if record.action is Action.LINK or (comments and not earlier):
                # Said before anything is written: a worker that dies after posting the comment leaves
                # the next attempt a recheck, which looks for the comment instead of posting it twice.
                self.ledger.record_links([self._link(record, record.issue_id, key, RECHECK)])
            for body, marker in comments:
                comment_once(self.client, key, body, marker, look_first=earlier)
                self.outcome.commented += 1
            self.client.update_issue(key, fields)
            if transition_to and move_to_status(self.client, key, record.current_status, transition_to, path,
                                                self.menu, status_known=not earlier):
                self.outcome.transitioned += 1
            self.ledger.record_links([self._link(record, record.issue_id, key, issue.content_hash)])
        except (ApiError, StatusUnreachable) as exc:
            # The issue may be half-way (a field set, a hop taken): whatever the ledger held, the next plan
            # compares it again, and its walk starts from the real status.
            self.ledger.record_links([self._link(record, record.issue_id, key, RECHECK)])
            self._dead_letter(record.record_id, record.payload, exc, record.partition_key)
            return
        self._count_update(record)

    def _count_update(self, record: PlannedIssueBase, *, counted: bool = True) -> None:
        if counted and record.action is Action.LINK:
            self.outcome.linked += 1
        elif counted:
            self.outcome.updated += 1
        self.outcome.succeeded.append(record.record_id)
        self._touched(record.issue_key)
