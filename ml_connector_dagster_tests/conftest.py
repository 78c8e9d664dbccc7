"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ml_connector_dagster_tests.postgres import require_postgres


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    """An engine on the machine's Postgres test database (see :func:`require_postgres`)."""
    engine = require_postgres()
    yield engine
    engine.dispose()
