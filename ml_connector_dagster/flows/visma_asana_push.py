"""Carrying out a plan in Asana, exactly once: tasks, line subtasks and (optionally) one project per PO.

Every write goes through ``POST /batch`` (10 actions per request; the client resends actions
refused with 429 once ``Retry-After`` has passed). A lean plan's creates are rendered again from
the landing store, one chunk at a time. Creates have no idempotency key, so each chunk
is first marked *pending* in the ledger (one commit), then created with
:meth:`~ml_connector_dagster.systems.asana.client.AsanaClient.ensure_tasks`, which looks a create
in doubt up in the project before it would send it again; the link is recorded at once. A chunk
holding a record whose earlier create went unanswered (a pending mark) looks its records up first.
Look-ups go to the project's index in the ledger, brought up to date by a listing of the tasks
changed since (:mod:`.visma_asana_index`); a listing is consistent at once, unlike search.

A create Asana refused (4xx) created nothing: its mark is dropped and the record becomes a dead
letter. An update refused is a dead letter too; a PO whose line subtasks did not all go through
keeps a recheck hash, so the next run compares it again. Successes resolve their dead letters.

New tasks get their assignee from the supplier mapping, or the review flag when no member matches,
and a baseline of their people-owned state (done, assignee, review flag) for the return path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from pydantic import BaseModel, Field

from ml_connector_dagster.config import VismaAsanaFlow
from ml_connector_dagster.core.http import ApiError
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.systems.asana.client import AsanaClient
from ml_connector_dagster.systems.asana.models import BatchResult

from .destination import CreateInDoubt, CreateIntent, create_once
from .visma_asana_index import ProjectIndex
from .visma_asana_plan import Action, PlannedTask, TaskPlan, restore_tasks
from .visma_asana_render import NOTES_FLOW, RenderedLine, RenderedTask, TaskKind, review_flag, task_state_hash

__all__ = ["DEST", "PO_PROJECTS_FLOW", "RECHECK", "WRITE_CHUNK", "PushOutcome", "push_plan"]

DEST = "asana"
WRITE_CHUNK = 50  # records marked and written together (the client sends them 10 per /batch)
RECHECK = "recheck"  # content hash of a link whose task must be compared again on the next run
PO_PROJECTS_FLOW = "visma_asana.po_projects"
TASKS_SHOWN = 5


class PushOutcome(BaseModel):
    """What one push did, for the materialization's metadata."""

    created: int = 0
    updated: int = 0
    linked: int = 0
    skipped: int = 0
    failed: int = 0
    lines_created: int = 0
    lines_updated: int = 0
    lines_failed: int = Field(0, description="Line subtasks not written; their PO is compared again next run.")
    projects_created: int = 0
    flagged_for_review: int = 0
    unresolved_values: int = Field(0, description="Tasks with a value left empty for want of an enum option.")
    deferred: list[str] = Field(default_factory=list, description="Records whose create is in doubt.")
    succeeded: list[str] = Field(default_factory=list)
    tasks: dict[str, str] = Field(default_factory=dict, description="Visma ID -> task gid, of (a few) tasks written.")


def _errors(result: BatchResult) -> str:
    return "; ".join(result.errors) or f"HTTP {result.status_code}"


def _chunks(records: Iterable[PlannedTask], size: int = WRITE_CHUNK) -> Iterator[list[PlannedTask]]:
    """``records`` in chunks of ``size``, read as the chunks are taken (a lean plan's creates are made so)."""
    iterator = iter(records)
    while chunk := list(islice(iterator, size)):
        yield chunk


class _Pusher:
    def __init__(self, plan: TaskPlan, kind: TaskKind, *, client: AsanaClient, ledger: Ledger,
                 settings: VismaAsanaFlow, run_id: str, log: logging.Logger | Any) -> None:
        self.plan, self.kind, self.client, self.ledger = plan, kind, client, ledger
        self.settings, self.run_id, self.log = settings, run_id, log
        self.project = plan.context.projects[kind.name]
        visma_id = plan.context.field_gid("visma_id")
        assert visma_id is not None
        self.visma_id = visma_id
        self.review = review_flag(plan.context, settings.review_option)
        self.outcome = PushOutcome()
        self._projects: dict[str, str] | None = None
        self.index = ProjectIndex(client, ledger, plan.context, kind)

    # -- bookkeeping -----------------------------------------------------------------------------
    def _link(self, task: RenderedTask, gid: str, hash_: str | None = None) -> Link:
        return Link(flow=self.kind.flow, source_id=task.record_id, source_version=task.version, dest_system=DEST,
                    dest_id=gid, dest_key=task.external_id, content_hash=hash_ or task.content_hash,
                    run_id=self.run_id)  # fmt: skip

    def _written(self, record: PlannedTask, gid: str) -> None:
        self.outcome.succeeded.append(record.record_id)
        if len(self.outcome.tasks) < TASKS_SHOWN:
            self.outcome.tasks[record.external_id] = gid
        if record.task is not None and record.task.unresolved:
            self.outcome.unresolved_values += 1

    def dead_letter(self, record: PlannedTask, error: str) -> None:
        self.outcome.failed += 1
        self.ledger.add_dead_letter(self.plan.asset, record.record_id, record.payload or {}, error,
                                    partition_key=record.partition_key, run_id=self.run_id)  # fmt: skip
        self.log.warning(f"{self.plan.asset}: {record.external_id} failed: {error}")

    def find_fresh(self, visma_ids: Sequence[str]) -> dict[str, str]:
        """The tasks carrying ``visma_ids`` as the project is now (after creates whose answer never came)."""
        return self.index.find(visma_ids, fresh=True)

    # -- creates ---------------------------------------------------------------------------------
    def create(self, records: Iterable[PlannedTask]) -> None:
        for chunk in _chunks(records):
            restored = restore_tasks(self.kind, chunk, ledger=self.ledger, context=self.plan.context,
                                     settings=self.settings)  # fmt: skip
            for record in restored:
                if record.action is Action.FAILED:
                    self.dead_letter(record, record.reason or "invalid record")
            ready = [record for record in restored if record.action is Action.CREATE]
            if ready:
                self._create_chunk(ready)

    def _create_chunk(self, chunk: list[PlannedTask]) -> None:
        links = self.ledger.links_for(self.kind.flow, [r.record_id for r in chunk])
        ready: list[PlannedTask] = []
        earlier: list[tuple[str, PlannedTask, bool]] = []
        for record in chunk:
            link = links.get(record.record_id)
            if link is not None and link.state == "linked" and link.dest_id:  # an earlier attempt created it
                self.outcome.created += link.run_id == self.run_id
                self._written(record, link.dest_id)
                earlier.append((link.dest_id, record, False))  # its lines may be what that attempt left undone
            else:
                ready.append(record)
        self.lines(earlier)
        homes = {r.record_id: [self.project] for r in ready}
        if self.settings.po_layout == "projects" and self.kind.has_lines:
            ready = [r for r in ready if self._own_project(r, homes)]
        was_pending = any(r.record_id in links for r in ready)
        intents = [(r.record_id, r.task.version, r.task.content_hash) for r in ready if r.task is not None]
        linked = self.ledger.mark_pending_many(self.kind.flow, intents, DEST, self.run_id)
        ready = [r for r in ready if r.record_id not in linked]
        if not ready:
            return
        drafts = {r.external_id: self._draft(r, homes[r.record_id]) for r in ready}
        # After an unanswered create the records are looked up again; otherwise the plan's look is fresh.
        result = self.client.ensure_tasks(self.project, self.visma_id, drafts, known=None if was_pending else {},
                                          find=self.find_fresh)
        new_parents: list[tuple[str, PlannedTask, bool]] = []
        links_made = []
        for record in ready:
            assert record.task is not None
            gid = result.created.get(record.external_id) or result.existing.get(record.external_id)
            if gid is not None:
                links_made.append(self._link(record.task, gid, self._until_lines()))
                new_parents.append((gid, record, record.external_id in result.created))
                continue
            failure = result.failed.get(record.external_id)
            if failure is not None and failure.in_doubt:
                self.outcome.deferred.append(record.record_id)  # the pending mark stays: looked up next time
            else:
                self.ledger.forget_link(self.kind.flow, record.record_id)
                self.dead_letter(record, f"create refused: {_errors(failure) if failure else 'no answer'}")
        self.ledger.record_links(links_made)
        self.ledger.record_links([self._baseline(record, gid) for record in ready
                                  if (gid := result.created.get(record.external_id))])  # fmt: skip
        for record in ready:
            gid = result.created.get(record.external_id) or result.existing.get(record.external_id)
            if gid is None:
                continue
            if record.external_id in result.created:
                self.outcome.created += 1
                self.outcome.flagged_for_review += self._flagged(record)
            else:
                self.outcome.linked += 1
            self._written(record, gid)
        self.lines(new_parents)

    def _flagged(self, record: PlannedTask) -> bool:
        return self.review is not None and record.assignment is not None and record.assignment.member_gid is None

    def _draft(self, record: PlannedTask, homes: list[str]) -> dict[str, Any]:
        assert record.task is not None
        member = record.assignment.member_gid if record.assignment else None
        return record.task.create_fields(homes, assignee=member, review=None if member else self.review)

    def _baseline(self, record: PlannedTask, gid: str) -> Link:
        """What the new task's people-owned state is, so the return path reports only their changes."""
        assert record.task is not None
        assignment = record.assignment
        review = self.settings.review_option if self.review is not None and not (assignment and assignment.member_gid) else None
        state = task_state_hash(False, assignment.member_name if assignment else None, review)
        return Link(flow=NOTES_FLOW, source_id=gid, source_version="0", dest_system="visma",
                    dest_id=record.record_id, dest_key=self.kind.entity.value, content_hash=state, run_id=self.run_id)

    # -- one project per PO (po_layout: projects) -------------------------------------------------
    def _own_project(self, record: PlannedTask, homes: dict[str, list[str]]) -> bool:
        """Instantiate the PO's project from the template (once); False when that failed or is in doubt."""
        task = record.task
        assert task is not None and self.plan.context.template_gid is not None
        name = f"PO {task.number} – {task.supplier_name}"
        intent = CreateIntent(flow=PO_PROJECTS_FLOW, source_id=task.record_id, source_version=task.version,
                              content_hash="project", dest_system=DEST)
        template = self.plan.context.template_gid
        try:
            made = create_once(self.ledger, intent, run_id=self.run_id, dest_key=name,
                               create=lambda: self.client.instantiate_project(template, name, wait=False).gid,
                               find=lambda _since: self._project_named(f"PO {task.number} – "))  # fmt: skip
        except CreateInDoubt:
            self.outcome.deferred.append(record.record_id)
            return False
        except ApiError as exc:
            self.dead_letter(record, f"project from template {self.settings.po_template!r}: {exc}")
            return False
        self.outcome.projects_created += made.created
        homes[record.record_id].append(made.dest_id)
        return True

    def _project_named(self, prefix: str) -> str | None:
        if self._projects is None:
            self._projects = {p.name or "": p.gid for p in self.client.projects(self.plan.context.workspace_gid)}
        return next((gid for name, gid in self._projects.items() if name.startswith(prefix)), None)

    # -- updates and adoptions -------------------------------------------------------------------
    def update(self, records: Sequence[PlannedTask]) -> None:
        for chunk in _chunks(records):
            updates = {r.task_gid: r.task.update_fields() for r in chunk if r.task is not None and r.task_gid}
            results = self.client.update_tasks(updates)
            done, parents = [], []
            for record in chunk:
                assert record.task is not None and record.task_gid
                result = results[record.task_gid]
                if not result.ok:
                    self.dead_letter(record, f"update refused: {_errors(result)}{self._gone(record, result)}")
                    continue
                done.append(self._link(record.task, record.task_gid, self._until_lines()))
                parents.append((record.task_gid, record, False))
                self.outcome.updated += record.action is Action.UPDATE
                self.outcome.linked += record.action is Action.LINK
                self._written(record, record.task_gid)
            self.ledger.record_links(done)
            self.lines(parents)

    def _gone(self, record: PlannedTask, result: BatchResult) -> str:
        """What a 404 means for the record; the task leaves the project's index."""
        if result.status_code != 404 or not record.task_gid:
            return ""
        self.index.drop([record.task_gid])
        if record.action is Action.LINK:
            return " (the task the project held for it was deleted in Asana; the next run creates it)"
        return " (the task was deleted in Asana?)"

    # -- line items as subtasks ------------------------------------------------------------------
    def _until_lines(self) -> str | None:
        """The hash a PO's link carries until its lines are written: a recheck, so that a push dying
        in between leaves the PO to be compared (and its lines written) by the next attempt."""
        return RECHECK if self.kind.has_lines else None

    def lines(self, parents: Sequence[tuple[str, PlannedTask, bool]]) -> None:
        """Each PO's lines as subtasks: created where missing, updated where changed.

        ``parents``: (task gid, planned PO, created just now). A PO whose lines did not all go
        through gets a recheck hash and a dead letter: nothing else would bring it back (the next
        run of its partition may never come), and the replay compares it again.
        """
        if not self.kind.has_lines or not parents:
            return
        owner = {line.line_id: (gid, record) for gid, record, _ in parents if record.task for line in record.task.lines}
        fresh = {record.record_id for _, record, new in parents if new}
        wanted = [line for _, record, _ in parents if record.task for line in record.task.lines]
        links = self.ledger.links_for(self.kind.lines_flow, [line.line_id for line in wanted])
        updates: dict[str, RenderedLine] = {}
        creates: list[RenderedLine] = []
        for line in wanted:
            link = links.get(line.line_id)
            if link is not None and link.state == "linked" and link.dest_id:
                if link.content_hash != line.content_hash:
                    updates[link.dest_id] = line
            else:
                creates.append(line)
        broken = self._update_lines(updates) | self._create_lines(creates, owner, fresh, links)
        self.outcome.lines_failed += len(broken)
        rechecks = [self._link(owner[line_id][1].task, owner[line_id][0], RECHECK)  # type: ignore[arg-type]
                    for line_id in broken]  # fmt: skip
        self.ledger.record_links(list({link.source_id: link for link in rechecks}.values()))
        unfinished = {owner[line_id][1].record_id: owner[line_id][1] for line_id in sorted(broken)}
        self.ledger.record_links([self._link(record.task, gid) for gid, record, _ in parents
                                  if record.task is not None and record.record_id not in unfinished])  # fmt: skip
        self.outcome.succeeded = [rid for rid in self.outcome.succeeded if rid not in unfinished]
        for record in unfinished.values():
            missing = sorted(line_id for line_id in broken if owner[line_id][1].record_id == record.record_id)
            self.dead_letter(record, f"line subtask(s) not written: {', '.join(missing)}")

    def _update_lines(self, updates: dict[str, RenderedLine]) -> set[str]:
        if not updates:
            return set()
        results = self.client.update_tasks({gid: line.update_fields() for gid, line in updates.items()})
        broken = {updates[gid].line_id for gid, result in results.items() if not result.ok}
        self.ledger.record_links([self._line_link(line, gid) for gid, line in updates.items()
                                  if line.line_id not in broken])  # fmt: skip
        self.outcome.lines_updated += len(updates) - len(broken)
        return broken

    def _create_lines(self, creates: list[RenderedLine], owner: dict[str, tuple[str, PlannedTask]],
                      fresh: set[str], links: dict[str, Link]) -> set[str]:
        if not creates:
            return set()
        was_pending = any(line.line_id in links for line in creates)
        # Lines of a task created just now cannot exist yet; others may, from a lost ledger.
        older = [line for line in creates if owner[line.line_id][1].record_id not in fresh]
        known = None if was_pending else self._listed(older)
        self.ledger.mark_pending_many(self.kind.lines_flow, [(line.line_id, "-", line.content_hash) for line in creates],
                                      DEST, self.run_id)  # fmt: skip
        drafts = {line.external_id: line.create_fields(owner[line.line_id][0], self.project) for line in creates}
        result = self.client.ensure_tasks(self.project, self.visma_id, drafts, known=known, find=self.find_fresh)
        broken: set[str] = set()
        made = []
        for line in creates:
            gid = result.get(line.external_id)
            if gid is not None:
                made.append(self._line_link(line, gid))
                self.outcome.lines_created += line.external_id in result.created
                continue
            broken.add(line.line_id)
            failure = result.failed.get(line.external_id)
            if failure is None or not failure.in_doubt:
                self.ledger.forget_link(self.kind.lines_flow, line.line_id)
            self.log.warning(f"{self.plan.asset}: line {line.external_id} not created: "
                             f"{_errors(failure) if failure else 'no answer'}")
        self.ledger.record_links(made)
        return broken

    def _listed(self, lines: Sequence[RenderedLine]) -> dict[str, str]:
        if not lines:
            return {}
        return self.index.find([line.external_id for line in lines])

    def _line_link(self, line: RenderedLine, gid: str) -> Link:
        return Link(flow=self.kind.lines_flow, source_id=line.line_id, source_version="-", dest_system=DEST,
                    dest_id=gid, dest_key=line.external_id, content_hash=line.content_hash, run_id=self.run_id)


def push_plan(plan: TaskPlan, kind: TaskKind, *, client: AsanaClient, ledger: Ledger, settings: VismaAsanaFlow,
              run_id: str, log: logging.Logger | Any) -> PushOutcome:
    """Carry out ``plan``; per-record failures become dead letters, successes resolve theirs.

    Returns with ``outcome.deferred`` listing creates in doubt; the caller decides to retry.
    """
    pusher = _Pusher(plan, kind, client=client, ledger=ledger, settings=settings, run_id=run_id, log=log)
    try:
        for record in plan.of(Action.FAILED):
            pusher.dead_letter(record, record.reason or "invalid record")
        pusher.create(plan.creates())
        pusher.update(plan.of(Action.UPDATE, Action.LINK))
        skipped = plan.of(Action.SKIP)
        pusher.outcome.skipped = len(skipped)
        pusher.outcome.succeeded += [record.record_id for record in skipped]
    finally:
        ledger.resolve_dead_letters_for(plan.asset, pusher.outcome.succeeded)
    return pusher.outcome
