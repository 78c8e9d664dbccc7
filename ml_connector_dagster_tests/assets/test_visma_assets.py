"""Visma source assets, materialized against a served simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from ml_connector_dagster.assets.visma import VISMA_SOURCES, visma_asset_checks, visma_source_assets
from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster_tests.assets.materialized import (
    forget_requests,
    materialize_with_checks,
    metadata_of,
    recorded_gets,
)
from ml_connector_dagster_tests.visma_sandbox import (
    records_per_day,
    sandbox_config,
    state,
    use_demo_credentials,
    utc_day,
    visma_resource,
)

OVERLAP = timedelta(seconds=300)


class Sandbox:
    def __init__(self, base_url: str, sim: VismaSimulator) -> None:
        self.base_url = base_url
        self.sim = sim
        self.invoices = state(base_url, "supplier_invoices")
        invalid_ids = {number for _, number, _ in sim.invalid_records()}
        self.invalid = [r for r in self.invoices if r["referenceNumber"] in invalid_ids]
        # The day of a malformed invoice: its partition holds good and bad records.
        self.mixed_day = utc_day(self.invalid[0])

    def requests(self, path: str) -> list[dict[str, Any]]:
        return recorded_gets(self.base_url, path)

    def forget_requests(self) -> None:
        forget_requests(self.base_url)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sim = VismaSimulator(size=200)
    with served(sim) as server:
        yield Sandbox(server.base_url, sim)


@pytest.fixture(scope="module")
def assets(sandbox: Sandbox) -> dict[str, dg.AssetsDefinition]:
    settings = sandbox_config(sandbox.base_url, overlap_s=int(OVERLAP.total_seconds())).systems.visma
    assert settings is not None
    return {asset.key.path[-1]: asset for asset in visma_source_assets(settings)}


@pytest.fixture
def resources(sandbox: Sandbox, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    use_demo_credentials(monkeypatch)
    return {"visma": visma_resource(sandbox.base_url), "ledger": LedgerResource(db_url=ledger_url)}


def run(asset: dg.AssetsDefinition, resources: dict[str, Any], partition_key: str | None = None,
        **options: Any) -> dg.ExecuteInProcessResult:
    return materialize_with_checks(asset, visma_asset_checks(), resources, partition_key, **options)


def landed(ledger_url: str, entity: str, partition_key: str | None) -> list[str]:
    with Ledger.open(ledger_url) as ledger:
        chunks = LandingStore(ledger).iter_partition("visma", entity, partition_key)
        return [record.record_id for chunk in chunks for record in chunk]


def test_a_partition_lands_its_days_valid_records_and_quarantines_the_invalid(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    day = sandbox.mixed_day
    assert run(assets["supplier_invoices"], resources, day).success
    invalid_that_day = {r["referenceNumber"] for r in sandbox.invalid if utc_day(r) == day}
    expected = {r["referenceNumber"] for r in sandbox.invoices if utc_day(r) == day} - invalid_that_day
    assert set(landed(ledger_url, "supplierInvoice", day)) == expected
    with Ledger.open(ledger_url) as ledger:
        letters = ledger.open_dead_letters("visma/supplier_invoices")
    assert {letter.source_id for letter in letters} == invalid_that_day
    assert all(letter.partition_key == day for letter in letters)


def test_a_quarantined_record_keeps_its_raw_form_and_a_reason_naming_the_field(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    run(assets["supplier_invoices"], resources, sandbox.mixed_day)
    with Ledger.open(ledger_url) as ledger:
        letter = ledger.open_dead_letters("visma/supplier_invoices")[0]
    raw = next(r for r in sandbox.invoices if r["referenceNumber"] == letter.source_id)
    assert letter.error.split(":")[0] in {"amount", "currencyId"}
    assert letter.record["referenceNumber"] == raw["referenceNumber"]


def test_the_materialization_reports_what_was_read_landed_and_quarantined(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    day = sandbox.mixed_day
    metadata = metadata_of(run(assets["supplier_invoices"], resources, day))
    day_count = records_per_day(sandbox.invoices)[day]
    quarantined = sum(1 for r in sandbox.invalid if utc_day(r) == day)
    assert metadata["read"] == day_count
    assert (metadata["inserted"], metadata["updated"], metadata["unchanged"]) == (day_count - quarantined, 0, 0)
    assert metadata["quarantined"] == quarantined
    assert metadata["window"] == f"{day}T00:00:00+00:00 .. {datetime.fromisoformat(day) + timedelta(days=1):%Y-%m-%d}T00:00:00+00:00"
    assert "record_id" in metadata["preview"]
    assert any(r["referenceNumber"] in metadata["preview"] for r in sandbox.invoices if utc_day(r) == day)


def test_running_a_partition_again_lands_nothing_new(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    first = metadata_of(run(assets["purchase_orders"], resources, utc_day(state(sandbox.base_url, "purchase_orders")[0])))
    again = metadata_of(run(assets["purchase_orders"], resources, utc_day(state(sandbox.base_url, "purchase_orders")[0])))
    assert first["inserted"] > 0
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, first["inserted"])


def test_without_run_config_the_whole_day_is_read(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    day = sandbox.mixed_day
    sandbox.forget_requests()
    run(assets["supplier_invoices"], resources, day)
    calls = sandbox.requests("/v1/supplierInvoice")
    assert {call["query"]["lastModifiedDateTime"] for call in calls} == {f"{day}T00:00:00.000+00:00"}


def test_a_sensor_window_is_read_from_its_start_less_the_overlap(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    day = sandbox.mixed_day
    moments = sorted(datetime.fromisoformat(r["lastModifiedDateTime"]).astimezone(UTC)
                     for r in sandbox.invoices if utc_day(r) == day)
    first, last = moments[len(moments) // 2], moments[-2]
    config = {"ops": {"visma__supplier_invoices": {"config": {"modified_from": first.isoformat(),
                                                               "modified_to": last.isoformat()}}}}
    sandbox.forget_requests()
    metadata = metadata_of(run(assets["supplier_invoices"], resources, day, run_config=config))
    start = max(first - OVERLAP, datetime.fromisoformat(f"{day}T00:00:00+00:00"))
    (query,) = {call["query"]["lastModifiedDateTime"] for call in sandbox.requests("/v1/supplierInvoice")}
    assert datetime.fromisoformat(query) == start
    in_window = sum(1 for moment in moments if start <= moment <= last)
    assert metadata["inserted"] + metadata["quarantined"] == in_window


def test_records_modified_on_other_days_are_not_filed_under_the_partition(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    days = sorted(records_per_day(sandbox.invoices))
    run(assets["supplier_invoices"], resources, days[0])
    assert landed(ledger_url, "supplierInvoice", days[0])
    assert all(landed(ledger_url, "supplierInvoice", other) == [] for other in days[1:])


def test_a_ranged_backfill_files_each_record_under_its_own_day(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str
) -> None:
    orders = state(sandbox.base_url, "payments")
    days = sorted(records_per_day(orders))[:3]
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    assert run(assets["payments"], resources, tags=tags).success
    expected = records_per_day(orders)
    assert {day: len(landed(ledger_url, "payment", day)) for day in days} == {day: expected[day] for day in days}


def test_the_dead_letter_check_warns_while_letters_are_open(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    result = run(assets["supplier_invoices"], resources, sandbox.mixed_day)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "no_open_dead_letters" and not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["open_dead_letters"].value == evaluation.metadata["open_in_these_partitions"].value >= 1


def test_the_dead_letter_check_passes_for_a_clean_partition(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any]
) -> None:
    result = run(assets["customer_invoices"], resources, utc_day(state(sandbox.base_url, "customer_invoices")[0]))
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed


@pytest.mark.parametrize(("name", "entity", "collection"), [
    ("suppliers", "supplier", "suppliers"), ("gl_accounts", "account", "accounts"),
    ("dimensions", "dimension", "dimensions"),
])  # fmt: skip
def test_reference_data_is_landed_whole(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any], ledger_url: str,
    name: str, entity: str, collection: str,
) -> None:
    assert run(assets[name], resources).success
    assert len(landed(ledger_url, entity, None)) == len(state(sandbox.base_url, collection))


def test_refused_credentials_fail_the_run_without_showing_the_secret(
    sandbox: Sandbox, assets: dict[str, dg.AssetsDefinition], resources: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VISMA_CLIENT_SECRET", "not-the-secret-4711")
    result = run(assets["supplier_invoices"], resources, sandbox.mixed_day, raise_on_error=False)
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    assert "connect/token -> 400: invalid_client" in failure.step_failure_data.error.message
    assert not [event for event in result.all_events if event.event_type_value in {"STEP_UP_FOR_RETRY", "STEP_RESTARTED"}]
    assert all("not-the-secret-4711" not in str(event) for event in result.all_events)


def test_supplier_payments_land_under_their_number_and_a_malformed_one_becomes_a_dead_letter(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = VismaSimulator(size=60)
    payments = sim.tables["supplier_payments"]
    with sim.lock:  # a payment in a currency that is no ISO 4217 code
        bad_seq = payments.seqs()[-1]
        payments.changes.setdefault(bad_seq, {})["currency"] = {"id": "KR"}
    bad = payments.number(bad_seq)
    everything = sim.collections()["supplier_payments"]
    day = utc_day(next(r for r in everything if r["refNbr"] == bad))
    use_demo_credentials(monkeypatch)
    try:
        with served(sim) as server:
            settings = sandbox_config(server.base_url).systems.visma
            assert settings is not None
            (asset,) = [a for a in visma_source_assets(settings) if a.key.path[-1] == "supplier_payments"]
            resources = {"visma": visma_resource(server.base_url), "ledger": LedgerResource(db_url=ledger_url)}
            result = run(asset, resources, day)
    finally:
        sim.close()

    assert result.success
    assert set(landed(ledger_url, "supplierPayment", day)) == {r["refNbr"] for r in everything if utc_day(r) == day} - {bad}
    with Ledger.open(ledger_url) as ledger:
        (letter,) = ledger.open_dead_letters("visma/supplier_payments")
    assert (letter.source_id, letter.partition_key) == (bad, day)
    assert letter.error.startswith("currency.id:") and "KR" in letter.error
    assert "currency_id" in metadata_of(result)["preview"]


def test_every_source_has_an_asset_and_a_check() -> None:
    assert {check_key.asset_key for check in visma_asset_checks() for check_key in check.check_keys} == {
        source.key for source in VISMA_SOURCES}
