"""An index for a project's runs by name: a page of a listing sorted by ``name`` (the dashboard's
Name column, ``order_by="name"`` / ``"-name"``) reads the page's rows in the index's order where
both planners read and sorted every run of the project (docs/performance.md, session 25).

``ix_runs_project_name`` (project_id, name), on both backends. ``name`` is NOT NULL, so its sort
keys carry no NULLS LAST (``filters.compile_sort``) and PostgreSQL reads the index backwards for
``-name``.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_project_name", "runs", ["project_id", "name"])


def downgrade() -> None:
    op.drop_index("ix_runs_project_name", table_name="runs")
