"""The optional return path: what people change on a synced task in Asana, noted on its Visma document.

What is written, and why there: one line appended to the document's ``note``
(``PurchaseOrderUpdateDto.note`` and ``SupplierInvoiceUpdateDto.note`` in
``specs/visma-net-v1.swagger.json``: user-defined text connected to the document). It is the one
free-text field both update DTOs share that carries no accounting meaning; amounts, accounts, dates,
hold and status stay Visma's own, as the product page promises. The line says what the people
working the task decided: ``Asana 2026-11-22: completed; assignee Lars Hansen; review flag Approved
[asana task 1209100000000123 #2]``.

What counts as a change: the task's *people-owned state* — completed, assignee, review flag — which
the Visma -> Asana push never writes after the create (it records the state a task was created
with as the baseline). A push updating amounts or names is therefore never echoed back.

Exactly once per change: the ledger (flow ``visma_asana.notes``) keeps, per task, the state last
reported and how many notes were written; a new state writes note ``#n+1``, whose marker is looked
for in the note before writing (a retry after a lost answer finds it and writes nothing), and the
``PUT`` carries ``If-Match`` (a 412 reads the document again and re-applies). Duplicate webhooks,
polls and re-runs thus end in one note line per change.

Two signals, one run per batch of tasks (:func:`build_return_sensor`): Asana's webhooks in the
inbox (a hint; registered through the receiver's ``X-Hook-Secret`` handshake by
:func:`ensure_task_webhooks`), and a poll of the projects' tasks modified since a watermark (the
guarantee), which requests only tasks whose state differs from the one last reported.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import dagster as dg
from pydantic import BaseModel, Field, ValidationError

from ml_connector_dagster.config import VismaAsanaFlow
from ml_connector_dagster.core.http import ApiError, NotFound
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.run_tags import webhook_run_tags
from ml_connector_dagster.sensors.poll import poll_due
from ml_connector_dagster.systems.asana.client import AsanaClient
from ml_connector_dagster.systems.asana.models import Task, Webhook
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.client import VismaClient
from ml_connector_dagster.systems.visma.conditional_update import StillChanging, update_with_etag
from ml_connector_dagster.systems.visma.models import as_update_dto

from .destination import appended_once
from .visma_asana_render import KINDS, NOTES_FLOW, AsanaContext, TaskKind, kept_context, task_state_hash

__all__ = [
    "NOTE_TASK_FIELDS",
    "RETURN_ASSET",
    "RETURN_FILTERS",
    "ReturnCursor",
    "ReturnOutcome",
    "TaskState",
    "build_return_sensor",
    "changed_tasks",
    "ensure_task_webhooks",
    "note_marker",
    "report_changes",
    "return_run_config",
]

RETURN_ASSET = "visma_asana.notes"  # where the return path's dead letters are filed
NOTE_TASK_FIELDS = ("name", "completed", "modified_at", "assignee", "assignee.name", "custom_fields.name",
                    "custom_fields.resource_subtype", "custom_fields.enum_value", "custom_fields.enum_value.name")
INBOX_BATCH = 500
# What the return path reports is a person's change of a task: done, assignee, the review flag (a custom
# field). Webhooks filtered to those: the tasks and subtasks the flow creates ("added") no longer come back
# as deliveries, inbox rows and runs that find nothing to report.
RETURN_FILTERS = ({"resource_type": "task", "action": "changed", "fields": ["completed", "assignee", "custom_fields"]},)


class TaskState(NamedTuple):
    """What people own on a synced task."""

    completed: bool
    assignee: str | None
    review: str | None

    @classmethod
    def of(cls, task: Task, review_field: str | None) -> TaskState:
        flag = task.custom(review_field) if review_field else None
        review = flag.enum_value.name if flag is not None and flag.enum_value is not None else None
        return cls(bool(task.completed), task.assignee.name if task.assignee else None, review)

    @property
    def hash(self) -> str:
        return task_state_hash(self.completed, self.assignee, self.review)

    def describe(self) -> str:
        return "; ".join([
            "completed" if self.completed else "open",
            f"assignee {self.assignee}" if self.assignee else "unassigned",
            f"review flag {self.review}" if self.review else "no review flag",
        ])  # fmt: skip


def note_marker(task_gid: str, sequence: int) -> str:
    """What a note shows once change ``sequence`` of the task is written (the bracket ends it)."""
    return f"[asana task {task_gid} #{sequence}]"


class ReturnOutcome(BaseModel):
    """What one run of the return path did."""

    written: int = Field(0, description="Note lines written to Visma.")
    already: int = Field(0, description="Changes found noted already (a retry after a lost answer).")
    unchanged: int = Field(0, description="Tasks whose people-owned state is the one last reported.")
    baselined: int = Field(0, description="Tasks seen for the first time (adopted, or synced before the return "
                                          "path existed): their state is recorded, nothing written.")
    not_synced: int = Field(0, description="Tasks that are no Visma document's (made by hand, subtasks, deleted).")
    conflicts: int = Field(0, description="412s met and resolved by reading the document again.")
    failed: int = 0
    documents: dict[str, str] = Field(default_factory=dict, description="Task gid -> Visma document noted.")


def _source(ledger: Ledger, gid: str) -> tuple[TaskKind, Link] | None:
    for kind in KINDS:
        link = ledger.links_by_dest(kind.flow, [gid]).get(gid)
        if link is not None and link.state == "linked":
            return kind, link
    return None


class _Reporter:
    def __init__(self, *, asana: AsanaClient, visma: VismaClient, ledger: Ledger, context: AsanaContext,
                 run_id: str, log: logging.Logger | Any) -> None:
        self.asana, self.visma, self.ledger, self.context, self.run_id, self.log = asana, visma, ledger, context, run_id, log
        self.outcome = ReturnOutcome()
        self.succeeded: list[str] = []

    def _remember(self, gid: str, kind: TaskKind, link: Link, state: TaskState, sequence: int) -> None:
        self.ledger.record_links([Link(flow=NOTES_FLOW, source_id=gid, source_version=str(sequence), dest_system=VISMA,
                                       dest_id=link.source_id, dest_key=kind.entity.value, content_hash=state.hash,
                                       run_id=self.run_id)])  # fmt: skip

    def report(self, gid: str) -> None:
        try:
            task = self.asana.get_task(gid, NOTE_TASK_FIELDS)
        except NotFound:
            self.outcome.not_synced += 1
            return
        source = _source(self.ledger, gid)
        if source is None:
            self.outcome.not_synced += 1
            return
        kind, link = source
        state = TaskState.of(task, self.context.field_gid("review_flag"))
        last = self.ledger.links_for(NOTES_FLOW, [gid]).get(gid)
        if last is None:
            self._remember(gid, kind, link, state, 0)
            self.outcome.baselined += 1
            return
        if last.content_hash == state.hash:
            self.outcome.unchanged += 1
            return
        sequence = int(last.source_version) + 1 if last.source_version.isdigit() else 1
        marker = note_marker(gid, sequence)
        day = (task.modified_at or datetime.now(UTC)).date().isoformat()
        line = f"Asana {day}: {state.describe()} {marker}"

        def note_body(current: Mapping[str, Any]) -> dict[str, Any] | None:
            note = appended_once(current.get("note"), line, marker)  # None: an earlier attempt wrote it
            return None if note is None else as_update_dto({"note": note})

        def conflicted() -> None:
            self.outcome.conflicts += 1

        try:
            written = update_with_etag(self.visma, kind.entity, link.source_id, note_body, on_conflict=conflicted)
        except (ApiError, StillChanging) as exc:
            self.outcome.failed += 1
            record = {"task_gid": gid, "task_name": task.name, "visma": f"{kind.entity.value} {link.source_id}"}
            self.ledger.add_dead_letter(RETURN_ASSET, gid, record, f"note on {kind.entity.value} {link.source_id}: {exc}",
                                        run_id=self.run_id)  # fmt: skip
            self.log.warning(f"{RETURN_ASSET}: task {gid} -> {kind.entity.value} {link.source_id} failed: {exc}")
            return
        self._remember(gid, kind, link, state, sequence)
        self.outcome.written += written
        self.outcome.already += not written
        self.outcome.documents[gid] = f"{kind.entity.value} {link.source_id}"
        self.succeeded.append(gid)


def report_changes(task_gids: Iterable[str], *, asana: AsanaClient, visma: VismaClient, ledger: Ledger,
                   context: AsanaContext, run_id: str, log: logging.Logger | Any) -> ReturnOutcome:
    """Note each task's people-owned changes on its Visma document, once per change.

    Each task is read again first (a webhook or poll only says *that* it changed). Per-task
    failures become dead letters; tasks that went through resolve theirs.
    """
    reporter = _Reporter(asana=asana, visma=visma, ledger=ledger, context=context, run_id=run_id, log=log)
    try:
        for gid in dict.fromkeys(task_gids):
            reporter.report(gid)
    finally:
        ledger.resolve_dead_letters_for(RETURN_ASSET, reporter.succeeded)
    return reporter.outcome


def return_run_config(op_name: str, task_gids: Iterable[str]) -> dict[str, Any]:
    """The run config handing task gids to the return path's op."""
    return {"ops": {op_name: {"config": {"tasks": list(task_gids)}}}}


def ensure_task_webhooks(client: AsanaClient, context: AsanaContext, settings: VismaAsanaFlow, ledger: Ledger,
                         vault: Vault) -> list[Webhook]:
    """One working webhook per synced project to the receiver (registered through its handshake only if needed),
    filtered to the changes the return path reports (:data:`RETURN_FILTERS`)."""
    receiver = str(settings.return_path.receiver_url)
    return [client.ensure_webhook(context.workspace_gid, project, receiver, ledger, vault, filters=RETURN_FILTERS)
            for project in dict.fromkeys(context.projects.values())]


# -- the sensor ------------------------------------------------------------------------------------


class ReturnCursor(BaseModel):
    """Where the sensor is: the inbox id read up to, and the latest task modification polled."""

    inbox: int = 0
    watermark: str | None = None
    polled_at: float | None = Field(None, description="When the projects were last polled (epoch s).")

    @classmethod
    def load(cls, raw: str | None) -> ReturnCursor:
        if not raw:
            return cls()
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            return cls()  # unreadable: start again; changes already noted are left out by the ledger


def _hinted(ledger: Ledger, after: int) -> tuple[list[str], int]:
    """Tasks Asana's webhooks announced since inbox id ``after``, and the last id read."""
    events = ledger.inbox_after(after, INBOX_BATCH, system="asana", unprocessed_only=False)
    gids = [str(ref["id"]) for event in events if (ref := event.record_ref) and ref.get("entity") == "tasks"]
    return gids, events[-1].id if events else after


def changed_tasks(client: AsanaClient, ledger: Ledger, context: AsanaContext, since: datetime,
                  limit: int) -> tuple[list[tuple[str, str]], datetime | None]:
    """(task gid, change key) of at most ``limit`` tasks modified since ``since`` whose state differs from the
    one reported, oldest first, and the watermark the next poll goes on from.

    With more changes than ``limit``, the watermark stops at the last one taken: the rest are read
    again by the next poll (moving it past them lost them unless a webhook told of them).
    """
    seen: dict[str, tuple[Task, str]] = {}
    latest: datetime | None = None
    for project in dict.fromkeys(context.projects.values()):
        for task in client.tasks_modified_since(project, since, NOTE_TASK_FIELDS):
            state = TaskState.of(task, context.field_gid("review_flag"))
            seen[task.gid] = (task, state.hash)
            if task.modified_at and (latest is None or task.modified_at > latest):
                latest = task.modified_at
    reported = ledger.links_for(NOTES_FLOW, seen)
    changed = sorted(((task.modified_at or since, gid, f"{gid}:{state}:{task.modified_at}")
                      for gid, (task, state) in seen.items()
                      if getattr(reported.get(gid), "content_hash", None) != state), key=lambda c: (c[0], c[1]))  # fmt: skip
    taken = changed[:limit]
    if len(changed) > limit:
        latest = taken[-1][0] if taken else since
    return [(gid, key) for _, gid, key in taken], latest


def build_return_sensor(settings: VismaAsanaFlow, job: dg.JobDefinition, op_name: str, *, workspace_gid: str | None,
                        lookback: timedelta, poll_interval_seconds: float,
                        minimum_interval_seconds: int = 1) -> dg.SensorDefinition:  # fmt: skip
    """``visma_asana_return``: changed synced tasks -> note runs. Asana's webhooks are read from the inbox
    every tick (the ledger only: a hint waits a tick, not a poll interval); the projects are polled for
    tasks modified since the watermark every ``poll_interval_seconds`` (Asana requests: the guarantee)."""
    overlap = timedelta(seconds=settings.return_path.overlap_s)

    @dg.sensor(name="visma_asana_return", job=job, minimum_interval_seconds=minimum_interval_seconds,
               required_resource_keys={"asana", "ledger"}, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Requests runs noting Asana task changes on their Visma documents (webhooks in the "
                           "inbox every tick, and a poll of the projects' tasks modified since the cursor every "
                           f"{poll_interval_seconds:g} s).")  # fmt: skip
    def asana_return(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = ReturnCursor.load(context.cursor)
        now = datetime.now(UTC)
        since = datetime.fromisoformat(cursor.watermark) - overlap if cursor.watermark else now - lookback
        poll = poll_due(cursor.polled_at, now, poll_interval_seconds)
        polled: list[tuple[str, str]] = []
        latest: datetime | None = None
        with context.resources.ledger.open() as ledger:
            hinted, inbox = _hinted(ledger, cursor.inbox)
            if poll:
                with context.resources.asana.client() as client:
                    asana_context = kept_context(client, settings, workspace_gid, ledger=ledger,
                                                 site=context.resources.asana.base_url)
                    polled, latest = changed_tasks(client, ledger, asana_context, since,
                                                   settings.return_path.tasks_per_tick)
        watermark = max(filter(None, [latest, datetime.fromisoformat(cursor.watermark) if cursor.watermark else None]),
                        default=None)  # fmt: skip
        next_cursor = ReturnCursor(inbox=inbox, watermark=watermark.isoformat() if watermark else cursor.watermark,
                                   polled_at=now.timestamp() if poll else cursor.polled_at)
        by_webhook = list(dict.fromkeys(hinted))
        by_poll = [(gid, change) for gid, change in polled if gid not in by_webhook]
        requests = []
        # What a webhook reported takes the fast lane; what only the poll found waits its turn in the queue.
        for gids, key, lane in ((by_webhook, f"inbox:{inbox}", webhook_run_tags()),
                                ([gid for gid, _ in by_poll], "|".join(change for _, change in by_poll), {})):
            if gids:
                requests.append(dg.RunRequest(
                    run_key=f"visma_asana_return:{hashlib.sha256(key.encode()).hexdigest()[:24]}",
                    run_config=return_run_config(op_name, gids), tags={"ml_connector/trigger": "asana_task_change", **lane}))
        if not requests:
            return dg.SensorResult(skip_reason="no task changes", cursor=next_cursor.model_dump_json())
        return dg.SensorResult(run_requests=requests, cursor=next_cursor.model_dump_json())

    return asana_return
