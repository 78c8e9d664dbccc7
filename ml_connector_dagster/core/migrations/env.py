"""Alembic environment: runs on the connection ``Ledger.open()`` hands over (inside its lock)."""

from alembic import context

from ml_connector_dagster.core.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("ledger migrations run through Ledger.open(), which supplies the connection")

context.configure(connection=connection, version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
