"""Alembic migrations of the ledger's tables, applied by ``Ledger.open()`` (no alembic.ini needed).

A new revision is a file in ``versions/`` written by hand after ``0001_initial.py``: set
``revision`` and ``down_revision`` and keep every step valid on both SQLite and Postgres
(``op.batch_alter_table`` for column changes, since SQLite cannot ALTER most things in place).
"""

from pathlib import Path

SCRIPT_LOCATION = Path(__file__).resolve().parent
# Its own version table, so the ledger can share a Postgres database with Dagster's storage,
# which keeps its migrations in alembic's default `alembic_version`.
VERSION_TABLE = "ml_connector_alembic_version"
