"""Indexes for two run listings: the dashboard's poll of running runs, and newest first on
PostgreSQL.

``ix_runs_project_state`` (project_id, state): the dashboard asks every 2 s for the runs that are
running or new (``state = "running" or created > X``); the store finds each part by its own index
(``filters.indexed_alternatives``), where a planner read every run of the project for the ``or``.

``ix_runs_project_created_desc`` (project_id, created_at DESC NULLS LAST), PostgreSQL only: newest
first with missing times last, the order of every listing by default and of ``-created``.
PostgreSQL reads ``ix_runs_project_created`` backwards as ``DESC NULLS FIRST`` only, so it sorted
every run of the project for a page of 50. SQLite's index gives that order already (NULL is the
least value) and SQLite has no NULLS LAST in an index. docs/performance.md, session 24.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_project_state", "runs", ["project_id", "state"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_runs_project_created_desc ON runs (project_id, created_at DESC NULLS LAST)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_runs_project_created_desc", table_name="runs")
    op.drop_index("ix_runs_project_state", table_name="runs")
