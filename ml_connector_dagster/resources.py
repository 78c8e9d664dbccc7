"""Dagster resources for the connector's own plumbing (the ledger); vendor resources live in systems/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from ml_connector_dagster.core.collector import pace_for_bulk_work
from ml_connector_dagster.core.ledger import Ledger

__all__ = ["DB_URL_ENV", "LedgerResource"]

DB_URL_ENV = "ML_CONNECTOR_DB_URL"


class LedgerResource(dg.ConfigurableResource):
    """The ledger database: links, dead letters, inbox, state and landed records."""

    db_url: str | None = Field(
        None, repr=False, description="SQLAlchemy URL (may hold a password: feed it with EnvVar). "
        "Default: Ledger.default_url(), i.e. ML_CONNECTOR_DB_URL or SQLite in the connector home.",
    )

    @classmethod
    def from_env(cls) -> LedgerResource:
        """``db_url`` from ``ML_CONNECTOR_DB_URL`` as an ``EnvVar`` when set, else the default location."""
        return cls(db_url=dg.EnvVar(DB_URL_ENV)) if os.environ.get(DB_URL_ENV) else cls()

    @contextmanager
    def open(self) -> Iterator[Ledger]:
        """The migrated ledger for the duration of the block; its connections are closed afterwards.

        Every step that moves records opens the ledger first: the process's garbage collector is
        paced for bulk work here (:func:`pace_for_bulk_work`).
        """
        pace_for_bulk_work()
        ledger = Ledger.open(self.db_url or None)
        try:
            yield ledger
        finally:
            ledger.dispose()
