"""Destination index: the objects a destination holds, by the external id each carries.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.String(255)
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``destination_index``."""
    op.create_table(
        "destination_index",
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("dest_id", _ID, nullable=False),
        sa.Column("external_id", _ID, nullable=True),
        sa.Column("modified_at", _TS, nullable=True),
        sa.Column("listed_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("scope", "dest_id", name="pk_destination_index"),
    )
    # Lookups go by the record's external id.
    op.create_index("ix_destination_index_external_id", "destination_index", ["scope", "external_id"])


def downgrade() -> None:
    """Drop ``destination_index``."""
    op.drop_index("ix_destination_index_external_id", table_name="destination_index")
    op.drop_table("destination_index")
