"""A page of runs sorted by ``user`` (their verified creator) reads the page's rows in an index's
order: ``run_creators`` keeps its user's name (``user_name``, copied from ``users``, whose names
never change) and ``ix_run_creators_project_user_run`` (project, user_name, run_id) lists a project's
credited runs by name, ties by run id, as the sort wants (``Store.runs``: runs without a creator
follow, read apart). Before it the sort joined every run of the project to its creator's user and
sorted them all for a page of 50 (docs/performance.md, session 26).

Revision ID: s0020
Revises: s0019
"""

import sqlalchemy as sa
from alembic import op

revision = "s0020"
down_revision = "s0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_creators") as batch:
        batch.add_column(sa.Column("user_name", sa.String(128), nullable=True))
    op.execute("UPDATE run_creators SET user_name = (SELECT name FROM users WHERE users.id = run_creators.user_id)")
    with op.batch_alter_table("run_creators") as batch:
        batch.alter_column("user_name", existing_type=sa.String(128), nullable=False)
    op.create_index("ix_run_creators_project_user_run", "run_creators", ["project", "user_name", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_run_creators_project_user_run", table_name="run_creators")
    with op.batch_alter_table("run_creators") as batch:
        batch.drop_column("user_name")
