"""Record log copies in shared storage: log_heads and log_segments (tracklet/server/segments.py).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_heads",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "log_segments",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("offset", sa.BigInteger, primary_key=True),
        sa.Column("length", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("log_segments")
    op.drop_table("log_heads")
