"""Landing store: the latest validated copy of each source record, filed under its partition.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.String(255)
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``landed_records``."""
    op.create_table(
        "landed_records",
        sa.Column("system", sa.String(50), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("partition_key", sa.String(100), nullable=True),
        sa.Column("modified_at", _TS, nullable=True),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("landed_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("system", "entity", "record_id", name="pk_landed_records"),
    )
    # Destination assets stream one partition at a time.
    op.create_index(
        "ix_landed_records_partition", "landed_records", ["system", "entity", "partition_key"]
    )


def downgrade() -> None:
    """Drop ``landed_records``."""
    op.drop_index("ix_landed_records_partition", table_name="landed_records")
    op.drop_table("landed_records")
