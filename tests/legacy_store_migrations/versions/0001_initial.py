"""The first schema: projects, runs, series, blocks.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("tags", Json, nullable=False),
        sa.Column("group_name", sa.String(512), nullable=False),
        sa.Column("job_type", sa.String(128), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("created_at", sa.Float),
        sa.Column("updated_at", sa.Float),
        sa.Column("heartbeat_at", sa.Float),
        sa.Column("exit_code", sa.Integer),
        sa.Column("config", Json, nullable=False),
        sa.Column("summary", Json, nullable=False),
        sa.Column("keys", Json, nullable=False),
        sa.Column("last_step", sa.BigInteger),
        sa.Column("log_path", sa.Text, nullable=False),
        sa.Column("log_offset", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.UniqueConstraint("project_id", "run_id", name="uq_runs_project_run"),
    )
    op.create_index("ix_runs_project_created", "runs", ["project_id", "created_at"])
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first_step", sa.BigInteger),
        sa.Column("last_step", sa.BigInteger),
        sa.UniqueConstraint("run_pk", "key", name="uq_series_run_key"),
    )
    op.create_table(
        "blocks",
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("first_step", sa.BigInteger, nullable=False),
        sa.Column("last_step", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_blocks_range", "blocks", ["series_id", "level", "last_step"])


def downgrade() -> None:
    op.drop_table("blocks")
    op.drop_table("series")
    op.drop_index("ix_runs_project_created", "runs")
    op.drop_table("runs")
    op.drop_table("projects")
