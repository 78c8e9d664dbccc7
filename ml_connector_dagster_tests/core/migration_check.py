"""Whether a store's own Table (kept out of the ledger's MetaData) matches the migration that made it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.migrations import VERSION_TABLE


def differences_from_migration(ledger: Ledger, metadata: sa.MetaData, table: str) -> list[Any]:
    """What alembic finds different between ``table`` as migrated in ``ledger`` and as declared in ``metadata``."""

    def in_table(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        owner = obj if type_ == "table" else getattr(obj, "table", None)
        return getattr(owner, "name", None) == table

    with ledger.engine.connect() as connection:
        opts = {"compare_type": True, "version_table": VERSION_TABLE, "include_object": in_table}
        return list(compare_metadata(MigrationContext.configure(connection, opts=opts), metadata))
