"""Alerts for the run page and the read API: the ``alerts`` table.

The record logs already hold the alerts of runs indexed before this revision: as in 0003, every
run's indexed data is dropped and its offset reset, so the next index reads every log again from
the start and a migrated store equals one built from scratch (runs keep their rows, so a run
deleted from the store stays deleted).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM blocks")
    op.execute("DELETE FROM series")
    op.execute("DELETE FROM console_lines")
    op.execute("UPDATE runs SET log_offset = 0")
    op.create_table(
        "alerts",
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alerts")
