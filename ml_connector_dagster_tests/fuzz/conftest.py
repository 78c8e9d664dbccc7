"""A fresh ledger per test: a SQLite file, and a throwaway schema of the machine's Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster_tests.postgres import schema_url, throwaway_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
            yield opened
        return
    admin: sa.Engine = request.getfixturevalue("postgres_admin")
    with throwaway_schema(admin, "fuzz") as schema, Ledger.open(schema_url(schema)) as opened:
        yield opened
