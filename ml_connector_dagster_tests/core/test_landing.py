"""The landing store, specified against SQLite and the machine's Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.core.landing import LandCounts, LandedRecord, LandingStore, content_hash, metadata
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster_tests.core.migration_check import differences_from_migration

DAY = "2026-01-05"
NOON = datetime(2026, 1, 5, 12, tzinfo=UTC)


def _record(record_id: str, *, modified: datetime = NOON, partition: str = DAY, **payload: object) -> LandedRecord:
    return LandedRecord(record_id=record_id, partition_key=partition, modified_at=modified,
                        payload={"id": record_id, **payload})


def test_table_definition_matches_its_migration(ledger: Ledger) -> None:
    assert differences_from_migration(ledger, metadata, "landed_records") == []


def test_first_landing_inserts_every_record(ledger: Ledger) -> None:
    counts = LandingStore(ledger).land("visma", "supplierInvoice", [_record("1"), _record("2")], run_id="run-1")
    assert counts == LandCounts(inserted=2, updated=0, unchanged=0)


def test_landing_the_same_records_again_changes_nothing(ledger: Ledger) -> None:
    store = LandingStore(ledger)
    store.land("visma", "supplierInvoice", [_record("1", amount=10)])
    assert store.land("visma", "supplierInvoice", [_record("1", amount=10)]) == LandCounts(unchanged=1)


def test_changed_content_is_an_update(ledger: Ledger) -> None:
    store = LandingStore(ledger)
    store.land("visma", "supplierInvoice", [_record("1", amount=10)])
    later = NOON + timedelta(minutes=5)
    assert store.land("visma", "supplierInvoice", [_record("1", modified=later, amount=12)]) == LandCounts(updated=1)
    assert store.get_many("visma", "supplierInvoice", ["1"])["1"].payload["amount"] == 12


def test_a_record_modified_later_moves_to_its_new_partition(ledger: Ledger) -> None:
    store = LandingStore(ledger)
    store.land("visma", "supplierInvoice", [_record("1")])
    store.land("visma", "supplierInvoice", [_record("1", modified=NOON + timedelta(days=1), partition="2026-01-06")])
    assert store.count_partition("visma", "supplierInvoice", DAY) == 0
    assert store.count_partition("visma", "supplierInvoice", "2026-01-06") == 1


def test_an_older_copy_never_overwrites_a_newer_one(ledger: Ledger) -> None:
    store = LandingStore(ledger)
    store.land("visma", "supplierInvoice", [_record("1", modified=NOON, amount=2)])
    stale = _record("1", modified=NOON - timedelta(hours=1), partition=DAY, amount=1)
    assert store.land("visma", "supplierInvoice", [stale]) == LandCounts(unchanged=1)
    assert store.get_many("visma", "supplierInvoice", ["1"])["1"].payload["amount"] == 2


def test_systems_and_entities_do_not_share_ids(ledger: Ledger) -> None:
    store = LandingStore(ledger)
    store.land("visma", "supplierInvoice", [_record("1")])
    assert store.land("visma", "customerinvoice", [_record("1")]) == LandCounts(inserted=1)
    assert store.get_many("acumatica", "supplierInvoice", ["1"]) == {}


def test_a_partition_streams_in_chunks_in_id_order(ledger: Ledger) -> None:
    store = LandingStore(ledger)
    store.land("visma", "supplierInvoice", [_record(f"{n:04d}") for n in range(1203)])
    chunks = list(store.iter_partition("visma", "supplierInvoice", DAY, chunk=500))
    assert [len(chunk) for chunk in chunks] == [500, 500, 203]
    ids = [record.record_id for chunk in chunks for record in chunk]
    assert ids == sorted(ids) and len(set(ids)) == 1203
    assert store.count_partition("visma", "supplierInvoice", DAY) == 1203


def test_landed_records_keep_payload_hash_and_run(ledger: Ledger) -> None:
    store = LandingStore(ledger)
    store.land("visma", "supplierInvoice", [_record("1", amount=10)], run_id="run-7")
    landed = store.get_many("visma", "supplierInvoice", ["1", "missing"])
    assert list(landed) == ["1"]
    assert landed["1"].content_hash == content_hash({"id": "1", "amount": 10})
    assert landed["1"].run_id == "run-7" and landed["1"].modified_at == NOON


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6))
def test_content_hash_ignores_key_order(payload: dict[str, object]) -> None:
    assert content_hash(dict(reversed(list(payload.items())))) == content_hash(payload)
