"""Fixtures of the core tests: a ledger database of each backend the connector supports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster_tests.postgres import schema_url, throwaway_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a SQLite file, or a fresh Postgres schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    admin: sa.Engine = request.getfixturevalue("postgres_admin")
    with throwaway_schema(admin, "ledger_test") as schema:
        yield schema_url(schema)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """A migrated ledger on each backend."""
    with Ledger.open(ledger_url) as opened:
        yield opened
