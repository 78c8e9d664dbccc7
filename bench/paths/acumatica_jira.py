"""acumatica_jira: an Acumatica bill, purchase order or payment to a Jira issue's bulk-create entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import yaml

from . import FlowPath, Stage

FIELD_IDS = {"external_id": "customfield_10060", "amount": "customfield_10061", "currency": "customfield_10062",
             "vendor": "customfield_10063"}


def acumatica_payloads(count: int) -> list[tuple[Any, dict[str, Any]]]:
    """(source, wire record) of ``count`` bills and the simulator's half as many purchase orders and a
    third as many payments, with the details each source asks for, through JSON as they arrive."""
    from ml_connector_dagster.assets.acumatica import ACUMATICA_SOURCES
    from ml_connector_dagster.sandbox.acumatica.records import (
        BILL,
        PAYMENT,
        PURCHASE_ORDER,
        generate_tenant,
        render,
    )

    tenant = generate_tenant(0, count, 0.85, datetime.now(UTC))
    served: list[tuple[Any, dict[str, Any]]] = []
    for source, entity in zip(ACUMATICA_SOURCES, (BILL, PURCHASE_ORDER, PAYMENT), strict=True):
        for row, record in enumerate(tenant.records[entity.collection].values(), start=1):
            wire = render(entity, record, base_path="/entity/Default/24.200.001", row_number=row, expand=source.expand)
            served.append((source, json.loads(json.dumps(wire))))
    return served


def path(count: int) -> FlowPath:
    """Validate as the source asset does (``from_wire``, then the entity's model), map to the document
    view and its exception rule, render the issues of documents in exception (with the content hash
    the ledger keeps) and their bulk-create fields, with the shipped flow settings and rules."""
    from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, AcumaticaJiraFlow
    from ml_connector_dagster.flows.acumatica_jira_render import FieldIds, exception_of, render_issue, view_of
    from ml_connector_dagster.systems.acumatica.models import from_wire, validate_record

    flows = yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())["flows"]
    settings = AcumaticaJiraFlow.model_validate(flows["acumatica_jira"])
    ids = FieldIds(**FIELD_IDS)
    served = acumatica_payloads(count)

    def validated() -> list[Any]:
        return [record for source, raw in served
                if not isinstance(record := validate_record(source.model, from_wire(raw)), str)]

    valid = validated()
    views = [view_of(record) for record in valid]
    in_exception = [(view, rule) for view in views if (rule := exception_of(view, settings.rules)) is not None]
    rendered = [render_issue(view, rule, settings) for view, rule in in_exception]
    return FlowPath(
        flow="acumatica_jira", records="Acumatica documents", payloads=[raw for _, raw in served],
        stages=(
            Stage("validate", "from_wire, then the Bill/PurchaseOrder/Payment model", lambda: len(validated())),
            Stage("map", "view_of and exception_of (every document read)",
                  lambda: len([exception_of(view_of(record), settings.rules) for record in valid])),
            Stage("render", "render_issue and its content hash (documents in exception only)",
                  lambda: len([render_issue(view, rule, settings).content_hash for view, rule in in_exception])),
            Stage("payload", "bulk-create entry (create_fields)",
                  lambda: len([issue.create_fields(ids) for issue in rendered])),
        ),
        notes=(f"{len(served) - len(valid)} of {len(served)} documents refused by validation (planted), "
               f"{len(in_exception)} in exception: render and payload are per issue, validate and map per document",),
    )  # fmt: skip
