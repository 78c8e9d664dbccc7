"""visma_monday: a Visma supplier invoice to a monday item's create_item alias in a mutation's variables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import yaml

from . import FlowPath, Stage
from .visma_jira import visma_payloads

if TYPE_CHECKING:
    from ml_connector_dagster.config import VismaMondayFlow
    from ml_connector_dagster.flows.visma_monday_mapping import ColumnMapping


def _mapping(settings: VismaMondayFlow) -> ColumnMapping:
    """The invoice board's column mapping as the flow resolves it, from the monday simulator's board."""
    from ml_connector_dagster.core.http import RateLimiter
    from ml_connector_dagster.flows.visma_monday_mapping import resolve_mapping
    from ml_connector_dagster.sandbox.monday import MondaySimulator
    from ml_connector_dagster.sandbox.transport import InProcessTransport
    from ml_connector_dagster.systems.monday.client import MondayClient

    board = settings.boards["supplier_invoices"]
    simulator = MondaySimulator()
    transport = InProcessTransport(simulator.app)
    try:
        with MondayClient.connect("http://monday.test", simulator.api_token, transport=transport,
                                  rate_limiter=RateLimiter(10_000, 10_000)) as client:
            return resolve_mapping("supplier_invoices", client.board(board.board_id), board)
    finally:
        transport.close()
        simulator.close()


def path(count: int) -> FlowPath:
    """Validate into :class:`SupplierInvoice`, make its row with the kind's ``_invoice_rows``, render the
    row's column values and content hash with :func:`render_item`, and build the create's mutation
    variables, with the shipped flow settings and the simulator's invoice board."""
    from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, VismaMondayFlow
    from ml_connector_dagster.flows.visma_monday_render import KINDS, render_item
    from ml_connector_dagster.systems.monday.client import DEFAULT_MAX_BATCH, _create_variables
    from ml_connector_dagster.systems.monday.models import ItemDraft
    from ml_connector_dagster.systems.visma.models import SupplierInvoice, validate_record

    settings = VismaMondayFlow.model_validate(yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())["flows"]["visma_monday"])
    kind = next(kind for kind in KINDS if kind.entity == "supplier_invoices")
    mapping = _mapping(settings)
    as_of = datetime.now(UTC).date()
    payloads = visma_payloads(count)
    valid = [record for raw in payloads if not isinstance(record := validate_record(SupplierInvoice, raw), str)]
    rows = kind.rows(valid, as_of)
    items = [render_item(row, mapping) for row in rows]

    def payload() -> int:
        # As _Pusher._create_chunk, then MondayClient.create_items: one request's variables per batch of aliases.
        drafts = [ItemDraft(name=item.name, column_values=item.values, group_id=mapping.group_id,
                            create_labels_if_missing=settings.create_labels_if_missing) for item in items]
        for start in range(0, len(drafts), DEFAULT_MAX_BATCH):
            _create_variables(mapping.board_id, drafts[start:start + DEFAULT_MAX_BATCH])
        return len(drafts)

    return FlowPath(
        flow="visma_monday", records="Visma supplier invoices", payloads=payloads,
        stages=(
            Stage("validate", "SupplierInvoice model",
                  lambda: sum(1 for raw in payloads if not isinstance(validate_record(SupplierInvoice, raw), str))),
            Stage("map", "_invoice_rows (Row of field values)", lambda: len(kind.rows(valid, as_of))),
            Stage("render", "render_item: column values, encode_column_values, content hash",
                  lambda: len([render_item(row, mapping) for row in rows])),
            Stage("payload", "create_item variables (ItemDraft, _create_variables)", payload),
        ),
    )  # fmt: skip
