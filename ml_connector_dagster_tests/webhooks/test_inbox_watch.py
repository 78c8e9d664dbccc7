"""The inbox sensor watches the inbox between the daemon's ticks, so a webhook's run is requested at once."""

# No ``from __future__ import annotations``: Dagster reads the stand-in asset's config annotation.
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sensors.inbox import build_inbox_sensor

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
INVOICES = dg.AssetKey(["visma", "supplier_invoices"])
WAIT_S = 1.5


class ByIds(dg.Config):
    ids: list[str] = []


@dg.asset(key=INVOICES, partitions_def=DAYS)
def supplier_invoices(config: ByIds) -> None:
    """Stands in for the Visma source asset."""


WATCHING = build_inbox_sensor({("visma", "supplier_invoices"): INVOICES}, wait_for_events_s=WAIT_S)
DEFS = dg.Definitions(assets=[supplier_invoices], sensors=[WATCHING])


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as opened:
        yield opened


def timed_tick(ledger_url: str, cursor: str | None = None) -> tuple[dg.SensorResult, float]:
    started = time.monotonic()
    with dg.build_sensor_context(
        cursor=cursor, resources={"ledger": LedgerResource(db_url=ledger_url)}, definitions=DEFS
    ) as context:
        result = WATCHING(context)
    assert isinstance(result, dg.SensorResult)
    return result, time.monotonic() - started


def announce(ledger: Ledger, event_id: str, record_id: str) -> None:
    ledger.append_inbox("visma", event_id, {"n": event_id}, partition_key="2026-03-01",
                        record_ref={"entity": "supplier_invoices", "id": record_id})  # fmt: skip


def test_an_event_arriving_while_the_tick_watches_is_requested_by_that_tick(ledger: Ledger, ledger_url: str) -> None:
    later = threading.Timer(0.3, announce, args=(ledger, "e1", "INV-1"))
    later.start()
    try:
        result, took = timed_tick(ledger_url)
    finally:
        later.join()
    assert [request.run_config["ops"]["visma__supplier_invoices"]["config"]["ids"]
            for request in result.run_requests or []] == [["INV-1"]]  # fmt: skip
    assert took < WAIT_S


def test_a_tick_that_finds_events_at_once_does_not_wait(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "INV-1")
    result, took = timed_tick(ledger_url)
    assert len(result.run_requests or []) == 1
    assert took < WAIT_S / 2


def test_a_tick_with_nothing_to_read_watches_for_its_wait_then_skips(ledger: Ledger, ledger_url: str) -> None:
    announce(ledger, "e1", "INV-1")
    first, _ = timed_tick(ledger_url)
    result, took = timed_tick(ledger_url, cursor=first.cursor)
    assert (result.run_requests, result.cursor) == ([], first.cursor)
    assert WAIT_S - 0.5 <= took < WAIT_S + 2


def test_events_the_sensor_cannot_route_do_not_end_the_watch(ledger: Ledger, ledger_url: str) -> None:
    # Jira's deliveries about the connector's own writes land in the same inbox, unrouted here.
    ledger.append_inbox("jira", "j1", {"webhookEvent": "jira:issue_created"})
    later = threading.Timer(0.5, announce, args=(ledger, "e1", "INV-1"))
    later.start()
    try:
        result, _ = timed_tick(ledger_url)
    finally:
        later.join()
    assert len(result.run_requests or []) == 1
    assert result.cursor == "2"
