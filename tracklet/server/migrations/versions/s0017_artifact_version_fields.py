"""An artifact version's history_step and tags on a server on PostgreSQL (artifact_versions; on
SQLite the server keeps them in its version files, artifacts/registry.py): the logging run's last
history step when it logged the version (W&B's ``history_step``) and the version's tags (a JSON
list, editable with ``artifact.save()``). Both nullable: a version committed before this migration
reads back with no history step and no tags.

Revision ID: s0017
Revises: s0016
"""

import sqlalchemy as sa
from alembic import op

revision = "s0017"
down_revision = "s0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("artifact_versions", sa.Column("history_step", sa.BigInteger, nullable=True))
    op.add_column("artifact_versions", sa.Column("tags", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifact_versions") as batch:
        batch.drop_column("tags")
        batch.drop_column("history_step")
