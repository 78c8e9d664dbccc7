"""A fresh ledger per test: a SQLite file, and a throwaway schema of the machine's Postgres."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ml_connector_dagster.core.ledger import Ledger

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    """An engine on the test database; fails under CI and skips elsewhere when Postgres is down."""
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = f"Postgres at {POSTGRES_URL} is unreachable: {exc.orig}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
            yield opened
        return
    admin: sa.Engine = request.getfixturevalue("postgres_admin")
    schema = f"fuzz_{secrets.token_hex(6)}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        with Ledger.open(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}") as opened:
            yield opened
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
