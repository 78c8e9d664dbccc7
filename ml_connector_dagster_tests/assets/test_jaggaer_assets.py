"""JAGGAER source assets, materialized against a served simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from ml_connector_dagster.assets.jaggaer import JAGGAER_SOURCES, jaggaer_asset_checks, jaggaer_source_assets
from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sandbox.jaggaer import DEFAULT_PATHS, JaggaerSimulator
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.systems.jaggaer.models import parse_timestamp
from ml_connector_dagster_tests.assets.materialized import (
    forget_requests,
    materialize_with_checks,
    metadata_of,
    recorded_gets,
)
from ml_connector_dagster_tests.jaggaer_sandbox import (
    jaggaer_resource,
    records_per_day,
    sandbox_config,
    state,
    use_demo_credentials,
    utc_day,
)

OVERLAP = timedelta(seconds=300)


class Sandbox:
    def __init__(self, base_url: str, sim: JaggaerSimulator) -> None:
        self.base_url = base_url
        self.sim = sim
        self.invoices = state(base_url, "invoices")
        invalid = {record_id for collection, record_id, _ in sim.invalid_records() if collection == "invoices"}
        self.invalid = [r for r in self.invoices if str(r["invoiceId"]) in invalid]
        self.mixed_day = utc_day(self.invalid[0])  # a day holding good and malformed invoices

    def requests(self, path: str) -> list[dict[str, Any]]:
        return recorded_gets(self.base_url, path)

    def forget_requests(self) -> None:
        forget_requests(self.base_url)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sim = JaggaerSimulator(size=200)
    with served(sim) as server:
        yield Sandbox(server.base_url, sim)


@pytest.fixture(scope="module")
def assets(sandbox: Sandbox) -> dict[str, dg.AssetsDefinition]:
    settings = sandbox_config(sandbox.base_url, overlap_s=int(OVERLAP.total_seconds())).systems.jaggaer
    assert settings is not None
    return {asset.key.path[-1]: asset for asset in jaggaer_source_assets(settings)}


@pytest.fixture
def resources(sandbox: Sandbox, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    use_demo_credentials(monkeypatch)
    return {"jaggaer": jaggaer_resource(sandbox.base_url), "ledger": LedgerResource(db_url=ledger_url)}


def run(asset: dg.AssetsDefinition, resources: dict[str, Any], partition_key: str | None = None,
        **options: Any) -> dg.ExecuteInProcessResult:
    return materialize_with_checks(asset, jaggaer_asset_checks(), resources, partition_key, **options)


def landed(ledger_url: str, entity: str, partition_key: str | None) -> list[str]:
    with Ledger.open(ledger_url) as ledger:
        return [record.record_id for chunk in LandingStore(ledger).iter_partition("jaggaer", entity, partition_key)
                for record in chunk]


def test_a_partition_lands_its_days_valid_records_and_quarantines_the_invalid(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    day = sandbox.mixed_day
    assert run(assets["invoices"], resources, day).success
    invalid_that_day = {str(r["invoiceId"]) for r in sandbox.invalid if utc_day(r) == day}
    expected = {str(r["invoiceId"]) for r in sandbox.invoices if utc_day(r) == day} - invalid_that_day
    assert set(landed(ledger_url, "invoices", day)) == expected
    with Ledger.open(ledger_url) as ledger:
        letters = ledger.open_dead_letters("jaggaer/invoices")
    assert {letter.source_id for letter in letters} == invalid_that_day
    assert all(letter.partition_key == day for letter in letters)


def test_a_quarantined_record_keeps_its_raw_form_and_a_reason_naming_the_field(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    run(assets["invoices"], resources, sandbox.mixed_day)
    with Ledger.open(ledger_url) as ledger:
        letter = ledger.open_dead_letters("jaggaer/invoices")[0]
    assert letter.error.split(":")[0] in {"totalAmount", "currency"}
    assert str(letter.record["invoiceId"]) == letter.source_id


def test_the_materialization_reports_what_was_read_landed_and_quarantined(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    day = sandbox.mixed_day
    metadata = metadata_of(run(assets["invoices"], resources, day))
    count = records_per_day(sandbox.invoices)[day]
    quarantined = sum(1 for r in sandbox.invalid if utc_day(r) == day)
    assert (metadata["read"], metadata["quarantined"]) == (count, quarantined)
    assert (metadata["inserted"], metadata["updated"], metadata["unchanged"]) == (count - quarantined, 0, 0)
    assert metadata["window"].startswith(f"{day}T00:00:00+00:00 .. ")


def test_running_a_partition_again_lands_nothing_new(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    day = utc_day(state(sandbox.base_url, "purchase_orders")[-1])
    first = metadata_of(run(assets["purchase_orders"], resources, day))
    again = metadata_of(run(assets["purchase_orders"], resources, day))
    assert first["inserted"] > 0
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, first["inserted"])


def test_a_run_reads_only_its_day_from_j1p(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    day = sandbox.mixed_day
    sandbox.forget_requests()
    run(assets["invoices"], resources, day)
    (first, *_) = sandbox.requests(DEFAULT_PATHS["invoices"])
    next_day = (datetime.fromisoformat(day) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert (first["query"]["lastModifiedFrom"], first["query"]["lastModifiedTo"]) == (
        f"{day}T00:00:00.000000+00:00", f"{next_day}T00:00:00.000000+00:00")


def test_a_sensor_window_is_read_from_its_start_less_the_overlap(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    day = sandbox.mixed_day
    moments = sorted(parse_timestamp(r["lastModifiedDate"]) for r in sandbox.invoices if utc_day(r) == day)
    first, last = moments[len(moments) // 2], moments[-2]
    config = {"ops": {"jaggaer__invoices": {"config": {"modified_from": first.isoformat(),
                                                        "modified_to": last.isoformat()}}}}
    metadata = metadata_of(run(assets["invoices"], resources, day, run_config=config))
    start = max(first - OVERLAP, datetime.fromisoformat(f"{day}T00:00:00+00:00"))
    assert metadata["read"] == sum(1 for moment in moments if start <= moment <= last)


def test_a_ranged_backfill_files_each_record_under_its_own_day(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    orders = state(sandbox.base_url, "purchase_orders")
    days = sorted(records_per_day(orders))[:3]
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    assert run(assets["purchase_orders"], resources, tags=tags).success
    invalid = {record_id for collection, record_id, _ in sandbox.sim.invalid_records() if collection == "purchase_orders"}
    expected = records_per_day([o for o in orders if str(o["purchaseOrderId"]) not in invalid])
    assert {day: len(landed(ledger_url, "purchase_orders", day)) for day in days} == {d: expected[d] for d in days}


@pytest.mark.parametrize(("name", "collection"), [("vendors", "vendors"), ("gl_accounts", "gl_accounts")])
def test_reference_data_is_landed_whole(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str,
    name: str, collection: str,
) -> None:
    assert run(assets[name], resources).success
    assert len(landed(ledger_url, collection, None)) == len(state(sandbox.base_url, collection))


def test_the_dead_letter_check_warns_while_letters_are_open(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    (evaluation,) = run(assets["invoices"], resources, sandbox.mixed_day).get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed, evaluation.severity) == (
        "no_open_dead_letters", False, dg.AssetCheckSeverity.WARN)


def test_refused_credentials_fail_the_run_without_showing_the_secret(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JAGGAER_CLIENT_SECRET", "not-the-secret-4711")
    result = run(assets["invoices"], resources, sandbox.mixed_day, raise_on_error=False)
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    assert "token -> 401: invalid_client" in failure.step_failure_data.error.message
    assert not [event for event in result.all_events if event.event_type_value in {"STEP_UP_FOR_RETRY", "STEP_RESTARTED"}]
    assert all("not-the-secret-4711" not in str(event) for event in result.all_events)


def test_every_source_has_an_asset_and_a_check() -> None:
    assert {key.asset_key for check in jaggaer_asset_checks() for key in check.check_keys} == {
        source.key for source in JAGGAER_SOURCES}


def test_today_has_a_partition(assets: dict[str, dg.AssetsDefinition]) -> None:
    partitions = assets["invoices"].partitions_def
    assert partitions is not None and partitions.has_partition_key(datetime.now(UTC).strftime("%Y-%m-%d"))
