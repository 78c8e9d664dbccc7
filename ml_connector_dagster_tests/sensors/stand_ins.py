"""Stand-in assets of the sensor tests: a Visma landing asset fetched by ids, and two flows' destinations."""

# No ``from __future__ import annotations`` here: Dagster reads the config annotation at definition time.
from pathlib import Path

import dagster as dg

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
ORDERS = dg.AssetKey(["visma", "purchase_orders"])
ISSUES = dg.AssetKey(["jira", "visma_purchase_order_issues"])
ITEMS = dg.AssetKey(["monday", "visma_purchase_order_items"])


class ByIds(dg.Config):
    ids: list[str] = []


@dg.asset(key=ORDERS, group_name="visma", partitions_def=DAYS)
def orders(config: ByIds) -> None:
    """A landing asset: it reads Visma."""


@dg.asset(key=ISSUES, group_name="visma_jira", deps=[ORDERS], partitions_def=DAYS)
def issues() -> None:
    """Writes Jira."""


@dg.asset(key=ITEMS, group_name="visma_monday", deps=[ORDERS], partitions_def=DAYS)
def items() -> None:
    """Writes monday."""


def inbox_request(tmp_path: Path, sensor: dg.SensorDefinition, definitions: dg.Definitions) -> dg.RunRequest:
    """The one run ``sensor`` requests for a webhook about purchase order PO-1 (day 2026-03-01) in its inbox."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        ledger.append_inbox("visma", "e1", {}, record_ref={"entity": "purchase_orders", "id": "PO-1"},
                            partition_key="2026-03-01")
    with dg.build_sensor_context(resources={"ledger": LedgerResource(db_url=url)}, definitions=definitions) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests or []
    return request
