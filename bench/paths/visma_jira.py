"""visma_jira: a Visma supplier invoice to a Jira issue's bulk-create entry."""

from __future__ import annotations

import json
from typing import Any

import yaml

from . import FlowPath, Stage

FIELD_IDS = {"external_id": "customfield_10040", "amount": "customfield_10042", "currency": "customfield_10043",
             "po_reference": "customfield_10045"}


def visma_payloads(count: int, table: str = "supplier_invoices") -> list[dict[str, Any]]:
    """``count`` records of one Visma simulator table, as they arrive (through JSON)."""
    from ml_connector_dagster.sandbox.visma import VismaSimulator

    simulator = VismaSimulator(size=count, days=0.85)
    try:
        rows = simulator.tables[table]
        return [json.loads(json.dumps(rows.render(seq))) for seq in range(count)]
    finally:
        simulator.close()


def path(count: int) -> FlowPath:
    """Validate into :class:`SupplierInvoice`, map with :func:`invoice_view`, render the issue and
    its bulk-create fields, with the shipped flow settings (status map, filters)."""
    from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, VismaJiraFlow
    from ml_connector_dagster.flows.visma_jira_render import JiraFieldIds, invoice_view, render_issue
    from ml_connector_dagster.systems.visma.models import SupplierInvoice, validate_record

    settings = VismaJiraFlow.model_validate(yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())["flows"]["visma_jira"])
    ids = JiraFieldIds(**FIELD_IDS)
    payloads = visma_payloads(count)
    valid = [record for raw in payloads if not isinstance(record := validate_record(SupplierInvoice, raw), str)]
    views = [invoice_view(record) for record in valid]
    rendered = [render_issue(view, settings) for view in views]
    return FlowPath(
        flow="visma_jira", records="Visma supplier invoices", payloads=payloads,
        stages=(
            Stage("validate", "SupplierInvoice model",
                  lambda: sum(1 for raw in payloads if not isinstance(validate_record(SupplierInvoice, raw), str))),
            Stage("map", "invoice_view", lambda: len([invoice_view(record) for record in valid])),
            Stage("render", "summary, fields, ADF description, content hash",
                  lambda: len([render_issue(view, settings).content_hash for view in views])),
            Stage("payload", "bulk-create entry (create_fields)",
                  lambda: len([issue.create_fields(ids, "FIN", "Task") for issue in rendered])),
        ),
    )  # fmt: skip
