"""JAGGAER poll sensors, ticked against a served simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.assets.jaggaer import JAGGAER_SOURCES
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.sandbox.jaggaer import DEFAULT_PATHS, JaggaerSimulator
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sensors.poll import PollCursor
from ml_connector_dagster.systems.jaggaer.cxml import InvoiceStatusUpdate
from ml_connector_dagster.systems.jaggaer.models import parse_timestamp
from ml_connector_dagster_tests.jaggaer_sandbox import (
    records_per_day,
    sandbox_config,
    state,
    use_demo_credentials,
)

SENSOR = "jaggaer_invoices_poll"
INVOICES = next(source for source in JAGGAER_SOURCES if source.name == "invoices")


@pytest.fixture
def sim() -> Iterator[tuple[JaggaerSimulator, str]]:
    simulator = JaggaerSimulator(size=120)
    with served(simulator) as server:
        yield simulator, server.base_url


@pytest.fixture
def defs(sim: tuple[JaggaerSimulator, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dg.Definitions:
    use_demo_credentials(monkeypatch)
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    return build_definitions(sandbox_config(sim[1]))


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    sensor = next(s for s in defs.sensors if s.name == SENSOR)
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources) as context:
        return sensor.evaluate_tick(context)


def window_of(request: dg.RunRequest) -> dict[str, str]:
    return request.run_config["ops"][INVOICES.op_name]["config"]


def day_of(record: dict[str, Any]) -> str:
    return parse_timestamp(record["lastModifiedDate"]).strftime("%Y-%m-%d")


def test_the_first_tick_requests_one_run_per_day_with_changes(
    sim: tuple[JaggaerSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    result = tick(defs, instance)
    assert sorted(r.partition_key for r in result.run_requests) == sorted(records_per_day(state(sim[1], "invoices")))
    for request in result.run_requests:
        window = window_of(request)
        assert window["modified_from"][:10] == window["modified_to"][:10] == request.partition_key
        assert request.run_key.startswith(f"{SENSOR}:{request.partition_key}:")


def test_the_cursor_ends_at_the_latest_change_with_the_ids_sharing_it(
    sim: tuple[JaggaerSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    cursor = PollCursor.from_json(tick(defs, instance).cursor or "")
    invoices = state(sim[1], "invoices")
    latest = max(parse_timestamp(r["lastModifiedDate"]) for r in invoices)
    assert cursor.watermark == latest
    assert set(cursor.ids_at_watermark) == {
        str(r["invoiceId"]) for r in invoices if parse_timestamp(r["lastModifiedDate"]) == latest}


def test_a_tick_without_changes_requests_nothing(
    sim: tuple[JaggaerSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    first = tick(defs, instance)
    httpx.delete(f"{sim[1]}/_sandbox/requests", timeout=10)
    second = tick(defs, instance, first.cursor)
    assert second.run_requests == [] and second.cursor == first.cursor
    calls = [r for r in httpx.get(f"{sim[1]}/_sandbox/requests", timeout=10).json()
             if r["path"] == DEFAULT_PATHS["invoices"]]
    assert len(calls) == 1


def test_a_late_record_at_the_boundary_timestamp_is_requested_once(
    sim: tuple[JaggaerSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    simulator, base_url = sim
    first = tick(defs, instance)
    watermark = PollCursor.from_json(first.cursor or "").watermark
    late = state(base_url, "invoices")[0]
    simulator.update("invoices", late["invoiceId"], at=watermark)  # committed late, stamped at the boundary
    second = tick(defs, instance, first.cursor)
    (request,) = second.run_requests
    assert window_of(request)["modified_from"] == window_of(request)["modified_to"] == watermark.isoformat()
    assert str(late["invoiceId"]) in PollCursor.from_json(second.cursor or "").ids_at_watermark
    assert tick(defs, instance, second.cursor).run_requests == []


def test_a_cxml_payment_confirmation_is_found_by_the_next_tick(
    sim: tuple[JaggaerSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    simulator, base_url = sim
    first = tick(defs, instance)
    simulator.clock.advance(5)
    invoices = state(base_url, "invoices")
    numbers = [i["invoiceNumber"] for i in invoices]
    target = next(i for i in invoices if numbers.count(i["invoiceNumber"]) == 1)
    with dg.build_resources({"jaggaer": defs.resources["jaggaer"]}) as resources, resources.jaggaer.cxml() as client:
        client.confirm_invoice_status(InvoiceStatusUpdate(invoice_id=target["invoiceNumber"], status="paid",
                                                          partial_amount=Decimal(1), currency="NOK"))
    (request,) = tick(defs, instance, first.cursor).run_requests
    assert request.partition_key == day_of(simulator.record("invoices", target["invoiceId"]) or {})


def test_an_unreadable_cursor_starts_fresh_from_the_lookback(
    sim: tuple[JaggaerSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    fresh = tick(defs, instance)
    recovered = tick(defs, instance, cursor="not a cursor")
    assert [r.partition_key for r in recovered.run_requests] == [r.partition_key for r in fresh.run_requests]


def test_a_sensor_that_cannot_authenticate_fails_its_tick_without_the_secret(
    sim: tuple[JaggaerSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JAGGAER_CLIENT_SECRET", "revoked-secret")
    with pytest.raises(Exception, match="invalid_client") as raised:
        tick(defs, instance)
    assert "revoked-secret" not in str(raised.value)


def test_every_partitioned_source_has_a_running_sensor(defs: dg.Definitions) -> None:
    sensors = {sensor.name: sensor for sensor in defs.sensors if sensor.name.startswith("jaggaer_")}
    assert set(sensors) == {f"jaggaer_{s.name}_poll" for s in JAGGAER_SOURCES if s.partitioned}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING and s.minimum_interval_seconds == 30
               for s in sensors.values())


def test_a_requested_run_materializes_its_partition(
    sim: tuple[JaggaerSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    request = tick(defs, instance).run_requests[-1]
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, partition_key=request.partition_key,
                                    run_config=request.run_config, asset_selection=[INVOICES.key], tags=request.tags)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.partition == request.partition_key
    window = window_of(request)
    start = max(datetime.fromisoformat(window["modified_from"]) - timedelta(seconds=300),
                datetime.fromisoformat(f"{request.partition_key}T00:00:00+00:00"))
    end = datetime.fromisoformat(window["modified_to"])
    expected = [r for r in state(sim[1], "invoices") if start <= parse_timestamp(r["lastModifiedDate"]) <= end]
    assert event.materialization.metadata["read"].value == len(expected) > 0
