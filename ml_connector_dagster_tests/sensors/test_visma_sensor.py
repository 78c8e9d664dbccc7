"""Visma poll sensors, ticked against a served simulator; and one sensor -> run -> materialization on Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.assets.visma import VISMA_SOURCES
from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.sandbox.demo_data import SUPPLIER_INVOICES
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.sensors.poll import PollCursor, PollPolicy
from ml_connector_dagster.sensors.visma import visma_poll_sensor
from ml_connector_dagster_tests.postgres import throwaway_database
from ml_connector_dagster_tests.visma_sandbox import (
    ms,
    records_per_day,
    sandbox_config,
    state,
    use_demo_credentials,
)

SENSOR = "visma_supplier_invoices_poll"
INVOICES = next(source for source in VISMA_SOURCES if source.name == "supplier_invoices")


@pytest.fixture
def sim() -> Iterator[tuple[VismaSimulator, str]]:
    simulator = VismaSimulator(size=200)
    with served(simulator) as server:
        yield simulator, server.base_url


@pytest.fixture
def defs(sim: tuple[VismaSimulator, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dg.Definitions:
    use_demo_credentials(monkeypatch)
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    return build_definitions(sandbox_config(sim[1]))


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None,
         sensor: dg.SensorDefinition | None = None) -> dg.SensorResult:
    sensor = sensor or next(s for s in defs.sensors if s.name == SENSOR)
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources) as context:
        return sensor.evaluate_tick(context)


def list_calls(base_url: str) -> list[dict[str, Any]]:
    recorded = httpx.get(f"{base_url}/_sandbox/requests", timeout=10).json()
    return [r for r in recorded if r["method"] == "GET" and r["path"] == "/v1/supplierInvoice"]


def window_of(request: dg.RunRequest) -> dict[str, str]:
    return request.run_config["ops"][INVOICES.op_name]["config"]


def test_the_first_tick_requests_one_run_per_day_with_changes(
    sim: tuple[VismaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    result = tick(defs, instance)
    days = records_per_day(state(sim[1], "supplier_invoices"))
    assert sorted(r.partition_key for r in result.run_requests) == sorted(days)
    for request in result.run_requests:
        window = window_of(request)
        assert window["modified_from"][:10] == window["modified_to"][:10] == request.partition_key
        assert request.run_key.startswith(f"{SENSOR}:{request.partition_key}:")
    assert len({r.run_key for r in result.run_requests}) == len(result.run_requests)


def test_the_cursor_ends_at_the_latest_change_with_the_ids_sharing_it(
    sim: tuple[VismaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    cursor = PollCursor.from_json(tick(defs, instance).cursor or "")
    invoices = state(sim[1], "supplier_invoices")
    latest = max(datetime.fromisoformat(r["lastModifiedDateTime"]) for r in invoices)
    assert cursor.watermark == latest
    assert set(cursor.ids_at_watermark) == {
        r["referenceNumber"] for r in invoices if datetime.fromisoformat(r["lastModifiedDateTime"]) == latest}


def test_a_second_tick_without_changes_requests_nothing_and_reads_one_page(
    sim: tuple[VismaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    first = tick(defs, instance)
    httpx.delete(f"{sim[1]}/_sandbox/requests", timeout=10)
    second = tick(defs, instance, first.cursor)
    assert second.run_requests == [] and second.cursor == first.cursor
    assert len(list_calls(sim[1])) == 1


def test_a_new_record_at_the_boundary_timestamp_is_requested_once(
    sim: tuple[VismaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    simulator, _ = sim
    first = tick(defs, instance)
    watermark = PollCursor.from_json(first.cursor or "").watermark
    table = simulator.tables[SUPPLIER_INVOICES]
    with simulator.lock:  # a late commit, stamped with the very instant the cursor stopped at
        table.touch(table.seq_of("000001"), ms(watermark))
    second = tick(defs, instance, first.cursor)
    (request,) = second.run_requests
    assert request.partition_key == watermark.strftime("%Y-%m-%d")
    assert window_of(request)["modified_from"] == window_of(request)["modified_to"] == watermark.isoformat()
    assert "000001" in PollCursor.from_json(second.cursor or "").ids_at_watermark
    assert tick(defs, instance, second.cursor).run_requests == []


def test_an_edit_after_the_watermark_requests_its_day(
    sim: tuple[VismaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    simulator, _ = sim
    first = tick(defs, instance)
    simulator.clock.advance(5)
    edited = simulator.update_supplier_invoice("000002", description="Approved by Kari")
    (request,) = tick(defs, instance, first.cursor).run_requests
    assert request.partition_key == datetime.fromisoformat(edited["lastModifiedDateTime"]).astimezone(UTC).strftime("%Y-%m-%d")


def test_a_restored_cursor_carries_on_where_it_stopped(
    sim: tuple[VismaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    stored = tick(defs, instance).cursor or ""
    restored = PollCursor.from_json(stored).to_json()
    assert restored == stored
    assert tick(defs, instance, restored).run_requests == []


def test_a_supplier_payment_made_after_the_watermark_requests_its_day_with_its_window(
    sim: tuple[VismaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    simulator, base_url = sim
    source = next(source for source in VISMA_SOURCES if source.name == "supplier_payments")
    sensor = next(s for s in defs.sensors if s.name == "visma_supplier_payments_poll")
    first = tick(defs, instance, sensor=sensor)
    simulator.clock.advance(5)
    invoice = next(i for i in state(base_url, "supplier_invoices") if i["status"] == "Open")
    paid = datetime.fromisoformat(simulator.pay_supplier_invoices({invoice["referenceNumber"]: None})["lastModifiedDateTime"])

    (request,) = tick(defs, instance, first.cursor, sensor=sensor).run_requests

    assert request.partition_key == paid.astimezone(UTC).strftime("%Y-%m-%d")
    window = request.run_config["ops"][source.op_name]["config"]
    assert window["modified_from"] == window["modified_to"] == paid.astimezone(UTC).isoformat()


def test_an_unreadable_cursor_starts_fresh_from_the_lookback(
    sim: tuple[VismaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    fresh = tick(defs, instance)
    recovered = tick(defs, instance, cursor="v1:2026-11-20")
    assert [r.partition_key for r in recovered.run_requests] == [r.partition_key for r in fresh.run_requests]
    assert recovered.cursor == fresh.cursor


def test_a_tick_that_hits_its_ceiling_covers_every_day_up_to_now(
    sim: tuple[VismaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    settings = sandbox_config(sim[1]).systems.visma
    assert settings is not None
    target = next(asset for asset in defs.assets if asset.key == INVOICES.key)
    lookback = timedelta(days=14)
    sensor = visma_poll_sensor(INVOICES, target, settings, lookback=lookback, minimum_interval_seconds=30,
                               policy=PollPolicy(lookback=lookback, max_changes=10))
    before = datetime.now(UTC)
    result = tick(defs, instance, sensor=sensor)
    cursor = PollCursor.from_json(result.cursor or "")
    assert before <= cursor.watermark <= datetime.now(UTC) and cursor.ids_at_watermark == ()
    keys = [r.partition_key for r in result.run_requests]
    assert keys[0] == (before - lookback).strftime("%Y-%m-%d") and keys[-1] == before.strftime("%Y-%m-%d")
    assert len(keys) == 15


def test_a_sensor_that_cannot_reach_visma_fails_its_tick(
    sim: tuple[VismaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VISMA_CLIENT_SECRET", "revoked-secret")
    with pytest.raises(Exception, match="invalid_client") as raised:
        tick(defs, instance)
    assert "revoked-secret" not in str(raised.value)


def test_every_partitioned_source_has_a_running_sensor(defs: dg.Definitions) -> None:
    sensors = {sensor.name: sensor for sensor in defs.sensors if sensor.name.startswith("visma_")}
    assert set(sensors) == {f"visma_{s.name}_poll" for s in VISMA_SOURCES if s.partitioned}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING and s.minimum_interval_seconds == 30
               for s in sensors.values())


# -- sensor -> run -> materialization, on a Postgres-backed instance ------------------------------


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A throwaway database on the machine's Postgres for Dagster's storage and the ledger."""
    with throwaway_database("visma_sensor") as url:
        yield url


@pytest.mark.postgres
def test_a_sensor_request_runs_and_materializes_its_partition_on_postgres(
    sim: tuple[VismaSimulator, str], monkeypatch: pytest.MonkeyPatch, postgres_database: str
) -> None:
    use_demo_credentials(monkeypatch)
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", postgres_database)  # the ledger shares Dagster's database
    defs = build_definitions(sandbox_config(sim[1]))
    overrides = {"storage": {"postgres": {"postgres_url": postgres_database}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        request = tick(defs, instance).run_requests[-1]
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance, partition_key=request.partition_key, run_config=request.run_config,
            asset_selection=[INVOICES.key], tags=request.tags,
        )
        assert result.success
        event = instance.get_latest_materialization_event(INVOICES.key)
        assert event is not None and event.asset_materialization is not None
        assert event.asset_materialization.partition == request.partition_key
        landed = event.asset_materialization.metadata["inserted"].value
        assert instance.get_run_by_id(result.run_id).tags["ml_connector/trigger"] == SENSOR
    with Ledger.open(postgres_database) as ledger:
        assert LandingStore(ledger).count_partition("visma", "supplierInvoice", request.partition_key) == landed > 0
