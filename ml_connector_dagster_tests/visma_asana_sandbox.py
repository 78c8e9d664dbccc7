"""What the visma_asana tests share: Visma records landed in a ledger, the Asana simulator in-process,
and the flow's plan and push run against it over the wire (no Dagster)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ml_connector_dagster.config import VismaAsanaFlow
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.visma_asana_plan import TaskPlan, plan_partitions
from ml_connector_dagster.flows.visma_asana_push import PushOutcome, push_plan
from ml_connector_dagster.flows.visma_asana_render import AsanaContext, TaskKind, resolve_context
from ml_connector_dagster.sandbox.asana import AsanaSimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.asana.client import AsanaClient
from ml_connector_dagster.systems.visma.models import (
    Account,
    Dimension,
    PurchaseOrder,
    SupplierInvoice,
    validate_record,
)
from ml_connector_dagster_tests.asana_sandbox import pat_client

PARTITION = "2026-11-20"
VISMA_ENTITIES = {"purchaseorder": ("purchase_orders", PurchaseOrder), "supplierInvoice": ("supplier_invoices", SupplierInvoice),
                  "account": ("accounts", Account), "dimension": ("dimensions", Dimension)}  # fmt: skip
REFERENCE = ("account", "dimension")


def visma_simulator(size: int = 12) -> VismaSimulator:
    """A Visma simulator whose documents were all modified within one day."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return VismaSimulator(size=size, days=0.9, start=midnight - timedelta(hours=2))


def visma_records(sim: VismaSimulator) -> dict[str, list[dict[str, Any]]]:
    """Raw records of the simulator, as its API answers them, by API entity name."""
    collections = sim.collections()
    return {entity: list(collections[name]) for entity, (name, _) in VISMA_ENTITIES.items()}


def land(ledger: Ledger, entity: str, raws: list[dict[str, Any]]) -> None:
    """Land the valid raw Visma records as the source assets do (documents in :data:`PARTITION`)."""
    model = VISMA_ENTITIES[entity][1]
    partition = None if entity in REFERENCE else PARTITION
    valid = [(checked, raw) for raw in raws if not isinstance(checked := validate_record(model, raw), str)]
    records = [LandedRecord(record_id=record.record_id, partition_key=partition,
                            payload={k: v for k, v in raw.items() if k != "metadata"}) for record, raw in valid]  # fmt: skip
    LandingStore(ledger).land("visma", entity, records)


@dataclass
class AsanaWorld:
    """The Asana simulator in-process, a client on it, a ledger with Visma's records landed."""

    sim: AsanaSimulator
    transport: InProcessTransport
    client: AsanaClient
    ledger: Ledger
    settings: VismaAsanaFlow
    visma_sim: VismaSimulator
    visma: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def context(self) -> AsanaContext:
        return resolve_context(self.client, self.settings, None)

    def plan(self, kind: TaskKind, settings: VismaAsanaFlow | None = None) -> TaskPlan:
        settings = settings or self.settings
        return plan_partitions(kind, [PARTITION], client=self.client, ledger=self.ledger, settings=settings,
                               context=resolve_context(self.client, settings, None))

    def sync(self, kind: TaskKind, settings: VismaAsanaFlow | None = None) -> tuple[TaskPlan, PushOutcome]:
        plan = self.plan(kind, settings)
        outcome = push_plan(plan, kind, client=self.client, ledger=self.ledger, settings=settings or self.settings,
                            run_id="run-1", log=_Log())
        return plan, outcome

    def tasks(self, project: str, *, lines: bool = False) -> dict[str, list[Any]]:
        """Tasks of a project (subtasks with ``lines``) by Visma ID text (a list: a duplicate shows as two)."""
        visma_id = self.sim.field_gid("Visma ID")
        found: dict[str, list[Any]] = {}
        for gid in self.sim.tenant.projects[self.sim.project_gid(project)].task_gids:
            task = self.sim.tenant.tasks[gid]
            if task.custom.get(visma_id) and (lines or task.parent is None):
                found.setdefault(task.custom[visma_id], []).append(task)
        return found

    def option_name(self, field_name: str, option_gid: str | None) -> str | None:
        field_gid = self.sim.field_gid(field_name)
        return next((o.name for o in self.sim.tenant.fields[field_gid].options if o.gid == option_gid), None)


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    warning = info


@contextmanager
def asana_world(tmp_path: Path, settings: VismaAsanaFlow, *, size: int = 12, **sim: Any) -> Iterator[AsanaWorld]:
    """A world with Visma's documents and reference data landed; closed when the block ends."""
    visma = visma_simulator(size)
    records = visma_records(visma)
    simulator = AsanaSimulator(**sim)
    transport = InProcessTransport(simulator.app)
    try:
        with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger, pat_client(simulator, transport) as client:
            for entity, raws in records.items():
                land(ledger, entity, raws)
            yield AsanaWorld(simulator, transport, client, ledger, settings, visma, records)
    finally:
        transport.close()
        simulator.close()
        visma.close()
