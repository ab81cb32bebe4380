"""Every sort of a project's runs ends with the run id (``filters.compile_sort``), so a page never
repeats nor skips a run among runs with equal keys (equal names, states, creation times); the
listing indexes end with it too, so a page by name, state or creation time still reads the page's
rows in the index's order, ties included, where an index without it left every run of a tie (for
a page by state: every finished run) to be sorted.

``ix_runs_project_created``, ``ix_runs_project_state`` and ``ix_runs_project_name`` become
(project_id, KEY, run_id) on both backends; PostgreSQL's ``ix_runs_project_created_desc`` becomes
(project_id, created_at DESC NULLS LAST, run_id DESC). The tie-breaker takes the direction of the
sort's last key, so one index serves a key both ways (read backwards for a descending key).

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_KEYS = {"ix_runs_project_created": "created_at", "ix_runs_project_state": "state", "ix_runs_project_name": "name"}


def upgrade() -> None:
    for name, key in _KEYS.items():
        op.drop_index(name, table_name="runs")
        op.create_index(name, "runs", ["project_id", key, "run_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_runs_project_created_desc", table_name="runs")
        op.execute("CREATE INDEX ix_runs_project_created_desc ON runs "
                   "(project_id, created_at DESC NULLS LAST, run_id DESC)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_runs_project_created_desc", table_name="runs")
        op.execute("CREATE INDEX ix_runs_project_created_desc ON runs (project_id, created_at DESC NULLS LAST)")
    for name, key in _KEYS.items():
        op.drop_index(name, table_name="runs")
        op.create_index(name, "runs", ["project_id", key])
