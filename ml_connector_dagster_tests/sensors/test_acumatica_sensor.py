"""Acumatica poll sensors, ticked against a served simulator through the code location's definitions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.assets.acumatica import ACUMATICA_SOURCES
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sensors.poll import PollCursor
from ml_connector_dagster_tests.acumatica_sandbox import records_per_day, sandbox_config, use_demo_credentials

SENSOR = "acumatica_bills_poll"
BILLS = next(source for source in ACUMATICA_SOURCES if source.name == "bills")


@pytest.fixture
def sim() -> Iterator[tuple[AcumaticaSimulator, str]]:
    simulator = AcumaticaSimulator(size=60, start=datetime.now(UTC))
    with served(simulator) as server:
        yield simulator, server.base_url
    simulator.close()


@pytest.fixture
def defs(sim: tuple[AcumaticaSimulator, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dg.Definitions:
    use_demo_credentials(monkeypatch)
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    return build_definitions(sandbox_config(sim[1]))


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    sensor = next(s for s in defs.sensors if s.name == SENSOR)
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources) as context:
        return sensor.evaluate_tick(context)


def test_the_code_location_has_the_acumatica_sources_and_their_sensors(defs: dg.Definitions) -> None:
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"acumatica/bills", "acumatica/purchase_orders", "acumatica/payments"} <= keys
    assert {f"acumatica_{source.name}_poll" for source in ACUMATICA_SOURCES} <= {s.name for s in defs.sensors}


def test_the_first_tick_requests_one_run_per_day_with_changes(
    sim: tuple[AcumaticaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    result = tick(defs, instance)
    bills = httpx.get(f"{sim[1]}/_sandbox/state", timeout=10).json()["bills"]
    assert sorted(r.partition_key for r in result.run_requests) == sorted(records_per_day(bills))
    assert all(r.run_config["ops"][BILLS.op_name]["config"]["modified_from"] for r in result.run_requests)


def test_the_probe_reads_only_ids_and_modification_times(
    sim: tuple[AcumaticaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    tick(defs, instance)
    calls = [c for c in httpx.get(f"{sim[1]}/_sandbox/requests", timeout=10).json() if c["path"].endswith("/Bill")]
    assert calls and all(c["query"]["$select"] == "LastModifiedDateTime" for c in calls)


def test_a_change_after_the_cursor_requests_only_its_day(
    sim: tuple[AcumaticaSimulator, str], defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    first = tick(defs, instance)
    assert tick(defs, instance, first.cursor).run_requests == []
    simulator = sim[0]
    simulator.clock.advance(1)
    simulator.put_bill_on_hold(simulator.references("Bill", "Balanced")[0], "Mangler varemottak")
    later = tick(defs, instance, first.cursor)
    today = simulator.now().strftime("%Y-%m-%d")
    assert [r.partition_key for r in later.run_requests] == [today]
    assert PollCursor.from_json(later.cursor or "").watermark > PollCursor.from_json(first.cursor or "").watermark
