"""Run data for the run page: console lines, system metric series, run metadata.

Adds ``console_lines``, the ``runs.metadata`` column, and ``series.kind`` to the series' unique
key (system metrics live beside a run's metrics under kinds of their own, so a metric may share a
system metric's name). The store is derived from the record logs, and the logs already hold the
console output, system metrics and metadata of runs indexed before this revision: their series
are dropped and their offsets reset, so the next index reads every log again from the start and
a migrated store equals one built from scratch.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.execute("DELETE FROM blocks")
    op.execute("DELETE FROM series")
    op.execute("UPDATE runs SET log_offset = 0")
    with op.batch_alter_table("series") as batch:
        batch.drop_constraint("uq_series_run_key", type_="unique")
        batch.create_unique_constraint("uq_series_run_kind_key", ["run_pk", "kind", "key"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("metadata", Json, nullable=False, server_default="{}"))
    op.create_table(
        "console_lines",
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("console_lines")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("metadata")
    op.execute("DELETE FROM blocks WHERE series_id IN (SELECT id FROM series WHERE kind <> 'number')")
    op.execute("DELETE FROM series WHERE kind <> 'number'")
    with op.batch_alter_table("series") as batch:
        batch.drop_constraint("uq_series_run_kind_key", type_="unique")
        batch.create_unique_constraint("uq_series_run_key", ["run_pk", "key"])
