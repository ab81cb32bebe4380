"""Server-mode sweeps: sweep_studies (config and state per sweep), sweep_journal (the Optuna
study as journal entries) and sweep_leases (a row per leased trial), server/sweeps_db.py.

Revision ID: s0005
Revises: s0004
"""

import sqlalchemy as sa
from alembic import op

revision = "s0005"
down_revision = "s0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweep_studies",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("info", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_sweep_studies_project", "sweep_studies", ["project"])
    op.create_table(
        "sweep_journal",
        sa.Column("sweep_id", sa.String(128), sa.ForeignKey("sweep_studies.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("log", sa.Text, nullable=False),
    )
    op.create_table(
        "sweep_leases",
        sa.Column("sweep_id", sa.String(128), sa.ForeignKey("sweep_studies.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("trial", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sweep_leases")
    op.drop_table("sweep_journal")
    op.drop_index("ix_sweep_studies_project", table_name="sweep_studies")
    op.drop_table("sweep_studies")
