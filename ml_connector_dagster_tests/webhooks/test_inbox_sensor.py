"""The inbox sensor: group verified events, request fetch-by-id runs, move the cursor, mark processed."""

# No ``from __future__ import annotations`` here: Dagster reads the stand-in assets' config
# annotation at definition time, and a string 'ByIds' on a context-free asset does not resolve.
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sensors.inbox import InboxRoute, build_inbox_sensor

from .support import inbox_rows

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
INVOICES = dg.AssetKey(["visma", "supplier_invoices"])
ORDERS = dg.AssetKey(["visma", "purchase_orders"])
ISSUES = dg.AssetKey(["jira", "visma_invoice_issues"])
ACCOUNTS = dg.AssetKey(["visma", "gl_accounts"])


class ByIds(dg.Config):
    """The shape the source assets take: a window (poll sensor) or ids (inbox sensor)."""

    modified_from: str | None = None
    modified_to: str | None = None
    ids: list[str] = []


def source_asset(key: dg.AssetKey, partitioned: bool = True) -> dg.AssetsDefinition:
    @dg.asset(key=key, partitions_def=DAYS if partitioned else None)
    def source(config: ByIds) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"ids": len(config.ids)})

    return source


@dg.asset(key=ISSUES, deps=[INVOICES], partitions_def=DAYS)
def invoice_issues() -> None:
    """Downstream of the invoices, fed in the same run."""


ROUTES: dict[tuple[str, str], Any] = {
    ("visma", "supplier_invoices"): [INVOICES, ISSUES],
    ("visma", "purchase_orders"): ORDERS,
    ("visma", "accounts"): InboxRoute((ACCOUNTS,)),
}
SENSOR = build_inbox_sensor(ROUTES, max_ids_per_run=3)
DEFS = dg.Definitions(
    assets=[source_asset(INVOICES), source_asset(ORDERS), source_asset(ACCOUNTS, partitioned=False), invoice_issues],
    sensors=[SENSOR],
)


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as opened:
        yield opened


def tick(ledger_url: str, cursor: str | None = None, sensor: dg.SensorDefinition = SENSOR) -> dg.SensorResult:
    with dg.build_sensor_context(
        cursor=cursor, resources={"ledger": LedgerResource(db_url=ledger_url)}, definitions=DEFS
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def announce(ledger: Ledger, event_id: str, entity: str | None, record_id: str | None, day: str | None,
             system: str = "visma", received_at: datetime | None = None) -> None:  # fmt: skip
    ref = {"entity": entity, "id": record_id} if entity and record_id else None
    ledger.append_inbox(system, event_id, {"n": event_id}, record_ref=ref, partition_key=day, received_at=received_at)


def requested(result: dg.SensorResult) -> list[tuple[str | None, str | None, list[str], list[str]]]:
    """(run key, partition, asset keys, ids) of every request."""
    rows = []
    for request in result.run_requests or []:
        [op_config] = request.run_config["ops"].values()
        keys = [key.to_user_string() for key in request.asset_selection or []]
        rows.append((request.run_key, request.partition_key, keys, op_config["config"]["ids"]))
    return rows


def test_events_are_grouped_by_system_entity_and_partition(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    announce(ledger, "e2", "purchase_orders", "PO-1", "2026-03-01")
    announce(ledger, "e3", "supplier_invoices", "INV-2", "2026-03-02")
    announce(ledger, "e4", "supplier_invoices", "INV-3", "2026-03-01")
    result = tick(ledger_url)
    assert requested(result) == [
        ("inbox:visma:supplier_invoices:2026-03-01:4", "2026-03-01",
         ["visma/supplier_invoices", "jira/visma_invoice_issues"], ["INV-1", "INV-3"]),
        ("inbox:visma:purchase_orders:2026-03-01:2", "2026-03-01", ["visma/purchase_orders"], ["PO-1"]),
        ("inbox:visma:supplier_invoices:2026-03-02:3", "2026-03-02",
         ["visma/supplier_invoices", "jira/visma_invoice_issues"], ["INV-2"]),
    ]  # fmt: skip


def test_the_ids_go_to_the_source_op_config(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    [request] = tick(ledger_url).run_requests or []
    assert request.run_config == {"ops": {"visma__supplier_invoices": {"config": {"ids": ["INV-1"]}}}}


def test_webhook_runs_go_ahead_of_a_backlog_in_the_queue_and_the_pools(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    [request] = tick(ledger_url).run_requests or []
    assert request.tags["ml_connector/trigger"] == "inbox"
    assert int(request.tags["dagster/priority"]) > 0


def test_the_requested_run_config_is_accepted_by_the_source_asset(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    [request] = tick(ledger_url).run_requests or []
    result = dg.materialize(
        [source_asset(INVOICES)], run_config=request.run_config, partition_key=request.partition_key
    )
    [materialization] = result.asset_materializations_for_node("visma__supplier_invoices")
    assert materialization.metadata["ids"].value == 1


def test_the_cursor_moves_to_the_last_inbox_id_read(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    announce(ledger, "e2", "supplier_invoices", "INV-2", "2026-03-01")
    assert tick(ledger_url).cursor == "2"


def test_a_tick_after_the_cursor_requests_nothing_again(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    first = tick(ledger_url)
    second = tick(ledger_url, cursor=first.cursor)
    assert second.run_requests == []
    assert second.cursor == first.cursor


def test_only_events_past_the_cursor_are_requested(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    first = tick(ledger_url)
    announce(ledger, "e2", "supplier_invoices", "INV-2", "2026-03-01")
    assert [ids for *_, ids in requested(tick(ledger_url, cursor=first.cursor))] == [["INV-2"]]


def test_requested_events_are_marked_processed_with_their_run_key(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    announce(ledger, "e2", "purchase_orders", "PO-1", "2026-03-01")
    tick(ledger_url)
    rows = inbox_rows(ledger)
    assert all(row.processed_at is not None for row in rows)
    assert [row.run_key for row in rows] == [
        "inbox:visma:supplier_invoices:2026-03-01:1",
        "inbox:visma:purchase_orders:2026-03-01:2",
    ]


def test_events_received_while_dagster_was_down_are_all_requested_at_the_next_tick(
    ledger: Ledger, ledger_url: str
) -> None:
    first = tick(ledger_url)  # the sensor ran once, then Dagster went down
    assert first.run_requests == []
    for n in range(5):  # the receiver kept storing meanwhile
        announce(ledger, f"down-{n}", "supplier_invoices", f"INV-{n}", "2026-03-01")
    result = tick(ledger_url, cursor=first.cursor)
    assert sorted(ids for *_, group in requested(result) for ids in group) == [f"INV-{n}" for n in range(5)]
    assert result.cursor == "5"


def test_a_tick_repeated_after_a_crash_asks_for_the_same_run_keys(ledger: Ledger, ledger_url: str) -> None:
    # The daemon died before committing the tick: the cursor never moved, the rows were marked.
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    lost = tick(ledger_url, cursor="0")
    retried = tick(ledger_url, cursor="0")
    assert requested(retried) == requested(lost) != []


def test_duplicate_announcements_of_one_record_fetch_it_once(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    announce(ledger, "e2", "supplier_invoices", "INV-1", "2026-03-01")
    assert [ids for *_, ids in requested(tick(ledger_url))] == [["INV-1"]]
    assert all(row.processed_at for row in inbox_rows(ledger))


def test_a_large_group_is_split_into_runs_of_bounded_size(ledger: Ledger, ledger_url: str) -> None:
    for n in range(7):
        announce(ledger, f"e{n}", "supplier_invoices", f"INV-{n}", "2026-03-01")
    groups = requested(tick(ledger_url))
    assert [ids for *_, ids in groups] == [["INV-0", "INV-1", "INV-2"], ["INV-3", "INV-4", "INV-5"], ["INV-6"]]
    assert len({key for key, *_ in groups}) == 3


def test_an_unpartitioned_route_requests_no_partition(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "accounts", "4010", "2026-03-01")
    assert requested(tick(ledger_url)) == [("inbox:visma:accounts:-:1", None, ["visma/gl_accounts"], ["4010"])]


def test_an_event_without_a_modification_day_falls_in_the_day_it_was_received(
    ledger: Ledger, ledger_url: str
) -> None:
    received = datetime(2026, 3, 5, 23, 59, tzinfo=UTC)
    announce(ledger, "e1", "supplier_invoices", "INV-1", None, received_at=received)
    [(_, partition, *_)] = requested(tick(ledger_url))
    assert partition == "2026-03-05"


def test_events_the_sensor_cannot_route_are_passed_over_and_left_unprocessed(
    ledger: Ledger, ledger_url: str
) -> None:
    announce(ledger, "e1", None, None, "2026-03-01")  # the vendor module could not place it
    announce(ledger, "e2", "tasks", "T-1", "2026-03-01", system="asana")  # no flow routes Asana here
    announce(ledger, "e3", "supplier_invoices", "INV-1", "2025-06-01")  # before the first partition
    result = tick(ledger_url)
    assert result.run_requests == []
    assert result.cursor == "3"
    assert [row.processed_at for row in inbox_rows(ledger)] == [None, None, None]


def test_a_fresh_sensor_does_not_rerequest_events_already_processed(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "old", "supplier_invoices", "INV-OLD", "2026-03-01")
    ledger.mark_inbox_processed([1], "inbox:visma:supplier_invoices:2026-03-01:1")
    announce(ledger, "new", "supplier_invoices", "INV-NEW", "2026-03-01")
    assert [ids for *_, ids in requested(tick(ledger_url, cursor=None))] == [["INV-NEW"]]


def test_an_empty_inbox_leaves_a_fresh_cursor_unset(ledger: Ledger, ledger_url: str) -> None:
    result = tick(ledger_url)
    assert (result.run_requests, result.cursor) == ([], None)


def test_the_requests_are_valid_for_the_code_location(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "supplier_invoices", "INV-1", "2026-03-01")
    announce(ledger, "e2", "accounts", "4010", None)
    with dg.build_sensor_context(
        resources={"ledger": LedgerResource(db_url=ledger_url)}, definitions=DEFS
    ) as context:
        data = SENSOR.evaluate_tick(context)
    assert len(data.run_requests or []) == 2
    dg.Definitions.validate_loadable(DEFS)


def test_a_route_needs_an_asset() -> None:
    with pytest.raises(ValueError, match="at least one asset"):
        InboxRoute(())
