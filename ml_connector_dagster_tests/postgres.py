"""The machine's Postgres for the tests that need a real database: reached, or the test fails under CI
(and skips elsewhere, where a fresh machine has none); throwaway schemas dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

__all__ = ["POSTGRES_URL", "require_postgres", "schema_url", "throwaway_database", "throwaway_schema"]

SERVER_URL = "postgresql://postgres@127.0.0.1:5432"
POSTGRES_URL = f"{SERVER_URL}/test"


def require_postgres(**engine_options: Any) -> sa.Engine:
    """An engine on the test database; fails the test under CI and skips it elsewhere when Postgres is down."""
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3}, **engine_options)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = f"Postgres at {POSTGRES_URL} is unreachable: {exc.orig}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return engine


@contextmanager
def throwaway_schema(admin: sa.Engine, prefix: str) -> Iterator[str]:
    """A new schema named ``<prefix>_<random>``, dropped with everything in it afterwards."""
    schema = f"{prefix}_{secrets.token_hex(6)}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """A new database named ``<prefix>_<random>``: its URL; dropped afterwards (its connections forced out)."""
    admin = require_postgres(isolation_level="AUTOCOMMIT")  # CREATE DATABASE runs outside a transaction
    name = f"{prefix}_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER_URL}/{name}"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def schema_url(schema: str) -> str:
    """The test database's URL with ``schema`` first on the search path."""
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
