"""Planning one partition of Visma documents against Asana: create, update, adopt or skip each task.

The ledger decides first: a linked record whose content hash is unchanged is skipped, a changed one
updated on the task it links. Only records the ledger does not link (never synced, an unanswered
create, or a ledger that was lost) are looked up in the project, by its index in the ledger
(:mod:`.visma_asana_index`: brought up to date by one listing of the tasks changed since, not a
listing of the whole project; no search, which is premium-only and eventually consistent). A task
found there by its Visma ID custom field is adopted (LINK: updated and linked), never duplicated;
the others are created.
Nothing is written here: the plan is a value the push (or a dry run) acts on.

A partition's plan is *lean*: a create keeps its ids and its assignee, not its rendered task or
payload, which the push renders again from the landing store one chunk at a time
(:func:`restore_tasks`), so the plan of a 100,000-record backfill stays small.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ml_connector_dagster.config import VismaAsanaFlow
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.systems.asana.client import AsanaClient
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.models import describe_error

from .visma_asana_index import ProjectIndex
from .visma_asana_mapping import Assignment, SupplierDirectory
from .visma_asana_render import AsanaContext, RenderedTask, TaskKind, render_task

__all__ = ["CHUNK", "Action", "PlannedTask", "TaskPlan", "plan_partitions", "plan_records", "restore_tasks"]

CHUNK = 200  # landed records planned together: one ledger read


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    LINK = "link"  # found in Asana by its Visma ID without a ledger link: adopt it
    SKIP = "skip"
    FAILED = "failed"


class PlannedTask(BaseModel):
    """What the push will do with one record, and why."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    external_id: str
    action: Action
    task_gid: str | None = None
    task: RenderedTask | None = None
    assignment: Assignment | None = Field(None, description="Creates only: the supplier mapping's decision.")
    reason: str | None = None
    payload: dict | None = Field(None, description="The landed record, kept for a dead letter.")
    partition_key: str | None = None
    stored: bool = Field(False, description="task and payload left in the landing store (restore_tasks).")


class TaskPlan(BaseModel):
    """The plan of one partition (or of replayed records) of one task kind."""

    kind: str
    flow: str
    asset: str
    partition_key: str | None
    context: AsanaContext
    records: list[PlannedTask] = Field(default_factory=list)
    stored_creates: list[tuple[str, str, str | None, Assignment]] = Field(
        default_factory=list, description="Creates left in the landing store: (record id, external id, partition key, "
        "the supplier mapping's decision). A tuple is a tenth of a PlannedTask's memory: 100,000 of them in a "
        "backfill's plan weighed 130 MB as models.",
    )
    looked_up: int = Field(0, description="Records the ledger does not link, looked up in the project's index.")

    @property
    def record_count(self) -> int:
        """Every record planned: those in :attr:`records` and the creates left in the landing store."""
        return len(self.records) + len(self.stored_creates)

    def count(self, action: Action) -> int:
        counted = sum(1 for record in self.records if record.action is action)
        return counted + len(self.stored_creates) if action is Action.CREATE else counted

    def creates(self) -> Iterator[PlannedTask]:
        """Every create, the stored ones as ``stored`` records (see :func:`restore_tasks`), made as they are read."""
        yield from (record for record in self.records if record.action is Action.CREATE)
        yield from self.stored_records()

    def stored_records(self) -> Iterator[PlannedTask]:
        """The creates left in the landing store, as ``stored`` records."""
        for record_id, external_id, partition_key, assignment in self.stored_creates:
            yield PlannedTask(record_id=record_id, external_id=external_id, action=Action.CREATE,
                              assignment=assignment, partition_key=partition_key, stored=True)

    def of(self, *actions: Action) -> list[PlannedTask]:
        """The records planned for ``actions`` (stored creates included, made into records: a list of them all)."""
        chosen = [record for record in self.records if record.action in actions and record.action is not Action.CREATE]
        return [*(self.creates() if Action.CREATE in actions else ()), *chosen]


def _rendered(kind: TaskKind, landed: LandedRecord, context: AsanaContext,
              settings: VismaAsanaFlow) -> RenderedTask | str:
    """The task of a landed record, or why it has none (it is not a valid Visma record)."""
    try:
        record = kind.model.model_validate(landed.payload)
    except ValidationError as error:
        return describe_error(error)
    return render_task(kind, record, context, settings)


def restore_tasks(kind: TaskKind, records: Sequence[PlannedTask], *, ledger: Ledger, context: AsanaContext,
                  settings: VismaAsanaFlow) -> list[PlannedTask]:
    """``records`` with the task and payload of the stored ones rendered again from the landing store.

    The newest landed copy is rendered (a run may have landed a later one since the plan); a record
    no longer there, or no longer valid, comes back ``FAILED``.
    """
    wanted = [record.record_id for record in records if record.stored]
    if not wanted:
        return list(records)
    landed = LandingStore(ledger).get_many(VISMA, kind.entity.value, wanted)
    restored = []
    for record in records:
        copy = landed.get(record.record_id) if record.stored else None
        if not record.stored:
            restored.append(record)
        elif copy is None:
            restored.append(record.model_copy(update={"action": Action.FAILED, "stored": False,
                                                      "reason": "the landed record is no longer in the landing store"}))
        elif isinstance(task := _rendered(kind, copy, context, settings), str):
            restored.append(record.model_copy(update={"action": Action.FAILED, "reason": task, "stored": False,
                                                      "payload": copy.payload}))
        else:
            restored.append(record.model_copy(update={"task": task, "payload": copy.payload, "stored": False}))
    return restored


class _Planner:
    def __init__(self, kind: TaskKind, *, client: AsanaClient, ledger: Ledger, settings: VismaAsanaFlow,
                 plan: TaskPlan, lean: bool) -> None:
        self.kind, self.client, self.ledger, self.settings, self.plan = kind, client, ledger, settings, plan
        self.lean = lean
        self.directory = SupplierDirectory.from_settings(settings, plan.context.users)
        self.index = ProjectIndex(client, ledger, plan.context, kind)

    def found(self, rendered: Sequence[tuple[LandedRecord, RenderedTask]], links: dict[str, Link]) -> dict[str, str]:
        """Visma ID -> task gid in the project, of the records the ledger does not link (or holds a
        create for whose answer never came): one lookup a chunk."""
        unlinked = [task.external_id for landed, task in rendered
                    if not ((link := links.get(landed.record_id)) and link.state == "linked" and link.dest_id)]
        if not unlinked:
            return {}
        self.plan.looked_up += len(unlinked)
        return self.index.find(unlinked)

    def chunk(self, chunk: Sequence[LandedRecord]) -> Iterator[PlannedTask]:
        rendered: list[tuple[LandedRecord, RenderedTask]] = []
        for landed in chunk:
            task = _rendered(self.kind, landed, self.plan.context, self.settings)
            if isinstance(task, str):
                yield PlannedTask(record_id=landed.record_id, external_id=landed.record_id, action=Action.FAILED,
                                  reason=task, payload=landed.payload, partition_key=landed.partition_key)
                continue
            rendered.append((landed, task))
        links = self.ledger.links_for(self.kind.flow, [landed.record_id for landed, _ in rendered])
        in_project = self.found(rendered, links)
        for landed, task in rendered:
            link = links.get(landed.record_id)
            base = {"record_id": landed.record_id, "external_id": task.external_id, "task": task,
                    "payload": landed.payload, "partition_key": landed.partition_key}
            if link is not None and link.state == "linked" and link.dest_id:
                same = link.content_hash == task.content_hash
                yield PlannedTask(**base, action=Action.SKIP if same else Action.UPDATE, task_gid=link.dest_id)
                continue
            # No link, or a create whose answer never came: what the project holds tells.
            found = in_project.get(task.external_id)
            if found is not None:
                yield PlannedTask(**base, action=Action.LINK, task_gid=found)
            else:
                assignment = self.directory.assign(task.supplier_number, task.supplier_name)
                if self.lean:  # the landing store keeps the record: the push renders it again when it creates it
                    base |= {"task": None, "payload": None, "stored": True}
                yield PlannedTask(**base, action=Action.CREATE, assignment=assignment)


def plan_records(
    kind: TaskKind, chunks: Iterable[Sequence[LandedRecord]], *, partition_key: str | None, client: AsanaClient,
    ledger: Ledger, settings: VismaAsanaFlow, context: AsanaContext, lean: bool = False,
) -> TaskPlan:
    """The plan for these landed records (already chunked).

    ``lean`` (records read from the landing store): creates leave their task and payload there.
    """
    plan = TaskPlan(kind=kind.name, flow=kind.flow, asset=kind.asset, partition_key=partition_key, context=context)
    planner = _Planner(kind, client=client, ledger=ledger, settings=settings, plan=plan, lean=lean)
    decisions: dict[Assignment, Assignment] = {}  # one object per distinct decision: suppliers repeat
    for chunk in chunks:
        for record in planner.chunk(chunk):
            if record.stored and record.assignment is not None:
                assignment = decisions.setdefault(record.assignment, record.assignment)
                plan.stored_creates.append((record.record_id, record.external_id, record.partition_key, assignment))
            else:
                plan.records.append(record)
    return plan


def plan_partitions(
    kind: TaskKind, partition_keys: Sequence[str], *, client: AsanaClient, ledger: Ledger, settings: VismaAsanaFlow,
    context: AsanaContext,
) -> TaskPlan:
    """The plan of daily partitions (one, or a backfill's range) of the kind's landed documents."""
    store = LandingStore(ledger)
    chunks = (c for key in partition_keys for c in store.iter_partition(VISMA, kind.entity.value, key, chunk=CHUNK))
    label = partition_keys[0] if len(partition_keys) == 1 else f"{partition_keys[0]}...{partition_keys[-1]}"
    return plan_records(kind, chunks, partition_key=label, client=client, ledger=ledger, settings=settings,
                        context=context, lean=True)
