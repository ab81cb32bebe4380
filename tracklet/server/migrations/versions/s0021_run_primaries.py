"""Who holds each shared run's primary (``server/primaries.py``): run_primaries, one row per run
whose primary a client claimed (``POST /api/v1/runs/{project}/{run_id}/primary``: W&B's shared mode
without ``x_primary``, docs/shared-runs.md). The row's primary key makes the first claim win on
every server process and node sharing the database; a takeover moves it by compare-and-set on the
holder's token. A run with no row has no claimed primary (a run started before this migration, or
by a client that doesn't claim).

Revision ID: s0021
Revises: s0020
"""

import sqlalchemy as sa
from alembic import op

revision = "s0021"
down_revision = "s0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_primaries",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("claimed_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_primaries")
