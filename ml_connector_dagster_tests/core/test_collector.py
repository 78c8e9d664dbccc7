"""Steps that move records run with the collector paced for bulk work."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ml_connector_dagster.core.collector import BULK_THRESHOLDS, pace_for_bulk_work
from ml_connector_dagster.resources import LedgerResource


@pytest.fixture
def default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_opening_the_ledger_paces_the_collector_for_bulk_work(default_thresholds: None, tmp_path) -> None:
    with LedgerResource(db_url=f"sqlite:///{tmp_path / 'ledger.db'}").open():
        assert gc.get_threshold() == BULK_THRESHOLDS


def test_a_higher_threshold_set_by_the_operator_is_kept(default_thresholds: None) -> None:
    gc.set_threshold(100_000, 5, 500)

    pace_for_bulk_work()

    assert gc.get_threshold() == (100_000, 20, 500)
