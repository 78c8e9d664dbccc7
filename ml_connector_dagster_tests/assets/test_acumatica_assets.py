"""Acumatica source assets, materialized against a served simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.assets.acumatica import (
    ACUMATICA_SOURCES,
    acumatica_asset_checks,
    acumatica_source_assets,
)
from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator, Licence
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster_tests.acumatica_sandbox import (
    acumatica_resource,
    sandbox_config,
    use_demo_credentials,
    utc_day,
    value,
)
from ml_connector_dagster_tests.assets.materialized import (
    materialize_with_checks,
    metadata_of,
)

START = datetime.now(UTC).replace(microsecond=0)


class Sandbox:
    def __init__(self, base_url: str, sim: AcumaticaSimulator) -> None:
        self.base_url = base_url
        self.sim = sim
        state = httpx.get(f"{base_url}/_sandbox/state", timeout=10).json()
        self.bills = state["bills"]
        invalid_ids = {record_id for _, record_id, _ in sim.invalid_records()}
        self.invalid = [b for b in self.bills if b["id"] in invalid_ids]
        self.mixed_day = utc_day(self.invalid[0])  # a day with good and malformed bills


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # Every test has a ledger (so a vault) of its own, so each signs in anew: a trial's 2 API users would
    # run out by the third test, as they would in production for runs that lose their refresh token.
    sim = AcumaticaSimulator(size=120, start=START, licence=Licence("Unlimited", api_users=None))
    with served(sim) as server:
        yield Sandbox(server.base_url, sim)
    sim.close()


@pytest.fixture(scope="module")
def assets(sandbox: Sandbox) -> dict[str, dg.AssetsDefinition]:
    settings = sandbox_config(sandbox.base_url).systems.acumatica
    assert settings is not None
    return {asset.key.path[-1]: asset for asset in acumatica_source_assets(settings)}


@pytest.fixture
def resources(sandbox: Sandbox, ledger_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    use_demo_credentials(monkeypatch)
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))  # the sandbox vault key lives there
    return {"acumatica": acumatica_resource(sandbox.base_url, ledger_url), "ledger": LedgerResource(db_url=ledger_url)}


def run(asset: dg.AssetsDefinition, resources: dict[str, Any], partition_key: str,
        **options: Any) -> dg.ExecuteInProcessResult:
    return materialize_with_checks(asset, acumatica_asset_checks(), resources, partition_key, **options)


def landed(ledger_url: str, entity: str, partition_key: str) -> dict[str, dict[str, Any]]:
    with Ledger.open(ledger_url) as ledger:
        chunks = LandingStore(ledger).iter_partition("acumatica", entity, partition_key)
        return {record.record_id: record.payload for chunk in chunks for record in chunk}


def test_a_partition_lands_its_days_valid_bills_and_quarantines_the_invalid(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    day = sandbox.mixed_day
    assert run(assets["bills"], resources, day).success
    invalid = {b["id"] for b in sandbox.invalid if utc_day(b) == day}
    expected = {b["id"] for b in sandbox.bills if utc_day(b) == day} - invalid
    assert set(landed(ledger_url, "Bill", day)) == expected
    with Ledger.open(ledger_url) as ledger:
        letters = ledger.open_dead_letters("acumatica/bills")
    assert {letter.source_id for letter in letters} == invalid
    assert all(letter.error.startswith("CurrencyID") and letter.partition_key == day for letter in letters)


def test_landed_records_are_plain_with_their_lines(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    day = utc_day(sandbox.bills[0])
    run(assets["bills"], resources, day)
    payload = landed(ledger_url, "Bill", day)[sandbox.bills[0]["id"]]
    assert payload["ReferenceNbr"] == value(sandbox.bills[0], "ReferenceNbr")
    assert payload["Details"] and isinstance(payload["Details"][0]["Amount"], float)
    assert "_links" not in payload and "rowNumber" not in payload


def test_a_rerun_lands_nothing_new(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    day = utc_day(sandbox.bills[0])
    first = metadata_of(run(assets["bills"], resources, day))
    second = metadata_of(run(assets["bills"], resources, day))
    assert first["inserted"] > 0 and second["inserted"] == second["updated"] == 0
    assert second["unchanged"] == first["inserted"]


def test_the_sensor_window_narrows_the_read(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    day = utc_day(sandbox.bills[0])
    of_day = sorted((b for b in sandbox.bills if utc_day(b) == day), key=lambda b: value(b, "LastModifiedDateTime"))
    last = datetime.fromisoformat(value(of_day[-1], "LastModifiedDateTime"))
    window = {"modified_from": last.isoformat(), "modified_to": last.isoformat()}
    source = next(s for s in ACUMATICA_SOURCES if s.name == "bills")
    config = {"ops": {source.op_name: {"config": window}}}
    assert run(assets["bills"], resources, day, run_config=config).success
    overlap = timedelta(seconds=300)
    expected = {b["id"] for b in of_day if datetime.fromisoformat(value(b, "LastModifiedDateTime")) >= last - overlap}
    assert set(landed(ledger_url, "Bill", day)) == expected - {b["id"] for b in sandbox.invalid}


def test_ids_from_a_push_notification_are_fetched_one_by_one(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    bill = sandbox.bills[3]
    source = next(s for s in ACUMATICA_SOURCES if s.name == "bills")
    config = {"ops": {source.op_name: {"config": {"ids": [bill["id"]]}}}}
    assert run(assets["bills"], resources, utc_day(bill), run_config=config).success
    assert list(landed(ledger_url, "Bill", utc_day(bill))) == [bill["id"]]


@pytest.mark.parametrize(("name", "entity", "collection"), [("purchase_orders", "PurchaseOrder", "purchase_orders"),
                                                            ("payments", "Payment", "payments")])
def test_purchase_orders_and_payments_land_by_day_too(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str,
    name: str, entity: str, collection: str,
) -> None:
    records = httpx.get(f"{sandbox.base_url}/_sandbox/state", timeout=10).json()[collection]
    day = utc_day(records[0])
    result = run(assets[name], resources, day)
    assert result.success
    assert set(landed(ledger_url, entity, day)) == {r["id"] for r in records if utc_day(r) == day}


def test_the_materialization_reports_its_counts_and_a_preview(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    metadata = metadata_of(run(assets["bills"], resources, sandbox.mixed_day))
    assert metadata["quarantined"] >= 1 and metadata["read"] >= metadata["inserted"] + metadata["quarantined"]
    assert "Bill " in metadata["preview"]
