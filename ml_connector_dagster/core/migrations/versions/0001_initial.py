"""Initial ledger: links, dead letters, inbox, vault entries, small key-value state.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.String(255)
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the ledger's tables."""
    op.create_table(
        "links",
        sa.Column("flow", sa.String(200), nullable=False),
        sa.Column("source_id", _ID, nullable=False),
        sa.Column("source_version", sa.String(100), nullable=False),
        sa.Column("dest_system", sa.String(50), nullable=False),
        sa.Column("dest_id", _ID, nullable=True),
        sa.Column("dest_key", _ID, nullable=True),
        sa.Column("dest_url", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("flow", "source_id", name="pk_links"),
        sa.CheckConstraint("state IN ('pending', 'linked')", name="ck_links_state"),
    )
    # Back-flows (a Jira issue resolved -> its Acumatica bill) find the source from the destination.
    op.create_index("ix_links_flow_dest_id", "links", ["flow", "dest_id"])

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("asset", sa.String(200), nullable=False),
        sa.Column("source_id", _ID, nullable=False),
        sa.Column("partition_key", sa.String(100), nullable=True),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint("state IN ('open', 'resolved', 'abandoned')", name="ck_dead_letters_state"),
    )
    # One open letter per record; resolved and abandoned ones stay as history.
    op.create_index(
        "uq_dead_letters_open",
        "dead_letters",
        ["asset", "source_id"],
        unique=True,
        sqlite_where=sa.text("state = 'open'"),
        postgresql_where=sa.text("state = 'open'"),
    )

    op.create_table(
        "inbox",
        # AUTOINCREMENT on SQLite: ids are never reused, so sensors can use them as a cursor.
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("system", sa.String(50), nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("partition_key", sa.String(100), nullable=True),
        sa.Column("record_ref", sa.Text(), nullable=True),
        sa.Column("processed_at", _TS, nullable=True),
        sa.Column("run_key", sa.String(200), nullable=True),
        sa.UniqueConstraint("system", "event_id", name="uq_inbox_system_event_id"),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "vault_entries",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )

    op.create_table(
        "kv_state",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
    )


def downgrade() -> None:
    """Drop the ledger's tables."""
    op.drop_table("kv_state")
    op.drop_table("vault_entries")
    op.drop_table("inbox")
    op.drop_index("uq_dead_letters_open", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index("ix_links_flow_dest_id", table_name="links")
    op.drop_table("links")
