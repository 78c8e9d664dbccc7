"""visma_asana: a Visma supplier invoice to an Asana task's create action in a /batch request."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from . import FlowPath, Stage
from .visma_jira import visma_payloads

if TYPE_CHECKING:
    from ml_connector_dagster.config import VismaAsanaFlow
    from ml_connector_dagster.flows.visma_asana_render import AsanaContext


def _context(settings: VismaAsanaFlow) -> AsanaContext:
    """The run's AsanaContext as the flow resolves it, from the Asana simulator's workspace."""
    from ml_connector_dagster.core.http import RateLimiter
    from ml_connector_dagster.flows.visma_asana_render import resolve_context
    from ml_connector_dagster.sandbox.asana import AsanaSimulator
    from ml_connector_dagster.sandbox.transport import InProcessTransport
    from ml_connector_dagster.systems.asana.client import AsanaClient

    simulator = AsanaSimulator()
    transport = InProcessTransport(simulator.app)
    try:
        with AsanaClient.connect_pat("http://asana.test", simulator.credentials()["pat"], transport=transport,
                                     rate_limiter=RateLimiter(10_000, 10_000)) as client:
            return resolve_context(client, settings, None)
    finally:
        transport.close()
        simulator.close()


def path(count: int) -> FlowPath:
    """Validate into :class:`SupplierInvoice`, render the invoice task with :func:`render_task`, decide its
    assignee with the supplier mapping, and build the create's batch action, with the shipped flow settings
    and the simulator's projects, custom fields and users."""
    from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, VismaAsanaFlow
    from ml_connector_dagster.flows.visma_asana_mapping import SupplierDirectory
    from ml_connector_dagster.flows.visma_asana_render import INVOICES, render_task, review_flag
    from ml_connector_dagster.systems.asana.client import create_task_action
    from ml_connector_dagster.systems.visma.models import SupplierInvoice, validate_record

    settings = VismaAsanaFlow.model_validate(yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())["flows"]["visma_asana"])
    context = _context(settings)
    directory = SupplierDirectory.from_settings(settings, context.users)  # once per plan, as _Planner does
    review = review_flag(context, settings.review_option)  # once per push, as _Pusher does
    homes = [context.projects[INVOICES.name]]
    payloads = visma_payloads(count)
    valid = [record for raw in payloads if not isinstance(record := validate_record(SupplierInvoice, raw), str)]
    tasks = [render_task(INVOICES, record, context, settings) for record in valid]
    members = [directory.assign(task.supplier_number, task.supplier_name).member_gid for task in tasks]

    def render() -> int:
        # The ledger stores (and the plan compares) the hash: it is part of rendering a record.
        return len([render_task(INVOICES, record, context, settings).content_hash for record in valid])

    def payload() -> int:
        # As _Pusher._draft, then AsanaClient.create_tasks and its batch request (action.as_json()).
        drafts = [task.create_fields(homes, assignee=member, review=None if member else review)
                  for task, member in zip(tasks, members, strict=True)]
        return len([create_task_action(draft).as_json() for draft in drafts])

    return FlowPath(
        flow="visma_asana", records="Visma supplier invoices", payloads=payloads,
        stages=(
            Stage("validate", "SupplierInvoice model",
                  lambda: sum(1 for raw in payloads if not isinstance(validate_record(SupplierInvoice, raw), str))),
            Stage("map", "supplier mapping: SupplierDirectory.assign (assignee)",
                  lambda: len([directory.assign(task.supplier_number, task.supplier_name) for task in tasks])),
            Stage("render", "render_task: invoice_view, notes, custom fields, content hash", render),
            Stage("payload", "batch action body (create_fields, create_task_action)", payload),
        ),
        notes=("render_task includes invoice_view, which is visma_jira's map stage",),
    )  # fmt: skip
