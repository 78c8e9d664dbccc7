"""Planning one partition of Visma documents against Asana: create, update, adopt or skip each task.

The ledger decides first: a linked record whose content hash is unchanged is skipped, a changed one
updated on the task it links. Only records the ledger does not link (never synced, an unanswered
create, or a ledger that was lost) make the plan list the project's tasks — once per plan, and
no search: search is premium-only and eventually consistent. A task found there by its Visma ID
custom field is adopted (LINK: updated and linked), never duplicated; the others are created.
Nothing is written here: the plan is a value the push (or a dry run) acts on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ml_connector_dagster.config import VismaAsanaFlow
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.asana.client import AsanaClient
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.models import describe_error

from .visma_asana_mapping import Assignment, SupplierDirectory
from .visma_asana_render import AsanaContext, RenderedTask, TaskKind, render_task

__all__ = ["CHUNK", "Action", "PlannedTask", "TaskPlan", "plan_partitions", "plan_records", "project_listing"]

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


class TaskPlan(BaseModel):
    """The plan of one partition (or of replayed records) of one task kind."""

    kind: str
    flow: str
    asset: str
    partition_key: str | None
    context: AsanaContext
    records: list[PlannedTask] = Field(default_factory=list)
    listing: dict[str, str] | None = Field(
        None, description="Visma ID -> task gid of the project, when the plan had to list it.")

    def count(self, action: Action) -> int:
        return sum(1 for record in self.records if record.action is action)

    def of(self, *actions: Action) -> list[PlannedTask]:
        return [record for record in self.records if record.action in actions]


def project_listing(client: AsanaClient, context: AsanaContext, kind: TaskKind) -> dict[str, str]:
    """Visma ID -> task gid of every task (and line subtask) in the kind's project: one paged listing."""
    visma_id = context.field_gid("visma_id")
    assert visma_id is not None
    found = client.tasks_by_external_id(context.projects[kind.name], visma_id)
    return {external_id: task.gid for external_id, task in found.items()}


class _Planner:
    def __init__(self, kind: TaskKind, *, client: AsanaClient, ledger: Ledger, settings: VismaAsanaFlow,
                 plan: TaskPlan) -> None:
        self.kind, self.client, self.ledger, self.settings, self.plan = kind, client, ledger, settings, plan
        self.directory = SupplierDirectory.from_settings(settings, plan.context.users)

    def listing(self) -> dict[str, str]:
        if self.plan.listing is None:
            self.plan.listing = project_listing(self.client, self.plan.context, self.kind)
        return self.plan.listing

    def chunk(self, chunk: Sequence[LandedRecord]) -> Iterator[PlannedTask]:
        rendered: list[tuple[LandedRecord, RenderedTask]] = []
        for landed in chunk:
            try:
                record = self.kind.model.model_validate(landed.payload)
            except ValidationError as error:
                yield PlannedTask(record_id=landed.record_id, external_id=landed.record_id, action=Action.FAILED,
                                  reason=describe_error(error), payload=landed.payload,
                                  partition_key=landed.partition_key)  # fmt: skip
                continue
            rendered.append((landed, render_task(self.kind, record, self.plan.context, self.settings)))
        links = self.ledger.links_for(self.kind.flow, [landed.record_id for landed, _ in rendered])
        for landed, task in rendered:
            link = links.get(landed.record_id)
            base = {"record_id": landed.record_id, "external_id": task.external_id, "task": task,
                    "payload": landed.payload, "partition_key": landed.partition_key}
            if link is not None and link.state == "linked" and link.dest_id:
                same = link.content_hash == task.content_hash
                yield PlannedTask(**base, action=Action.SKIP if same else Action.UPDATE, task_gid=link.dest_id)
                continue
            # No link, or a create whose answer never came: Asana's own listing tells.
            found = self.listing().get(task.external_id)
            if found is not None:
                yield PlannedTask(**base, action=Action.LINK, task_gid=found)
            else:
                assignment = self.directory.assign(task.supplier_number, task.supplier_name)
                yield PlannedTask(**base, action=Action.CREATE, assignment=assignment)


def plan_records(
    kind: TaskKind, chunks: Iterable[Sequence[LandedRecord]], *, partition_key: str | None, client: AsanaClient,
    ledger: Ledger, settings: VismaAsanaFlow, context: AsanaContext,
) -> TaskPlan:
    """The plan for these landed records (already chunked)."""
    plan = TaskPlan(kind=kind.name, flow=kind.flow, asset=kind.asset, partition_key=partition_key, context=context)
    planner = _Planner(kind, client=client, ledger=ledger, settings=settings, plan=plan)
    for chunk in chunks:
        plan.records.extend(planner.chunk(chunk))
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
                        context=context)
