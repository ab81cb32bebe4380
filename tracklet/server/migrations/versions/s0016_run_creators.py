"""Who created each run on a server: run_creators, one row per run uploaded with an API key, naming
the key's user (``server/run_creators.py``). Recorded by the server from the authenticated key at
the run's first upload, never from anything the client sends. A run uploaded before this migration
has no row and reads back with no user.

Revision ID: s0016
Revises: s0015
"""

import sqlalchemy as sa
from alembic import op

revision = "s0016"
down_revision = "s0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_creators",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_run_creators_user", "run_creators", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_run_creators_user", table_name="run_creators")
    op.drop_table("run_creators")
