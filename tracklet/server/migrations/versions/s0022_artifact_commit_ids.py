"""An incremental artifact version's commit id on a server on PostgreSQL (artifact_versions; on
SQLite the server keeps it in its version files, artifacts/registry.py): 32 hex digits the client
drew once per logged draft and sends with the commit, kept with the version the commit made (merged
onto a later latest or not). A commit sent again with that id (its answer lost, a repeated
`tracklet sync`) answers that version, and a new log of byte-identical files, with a new id, is a
new commit. Nullable: a version committed before this migration, or by a client that sends no id,
keeps the rules before it (same run and content, or the increment held: ``_applied_before``).

Revision ID: s0022
Revises: s0021
"""

import sqlalchemy as sa
from alembic import op

revision = "s0022"
down_revision = "s0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("artifact_versions", sa.Column("commit_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifact_versions") as batch:
        batch.drop_column("commit_id")
