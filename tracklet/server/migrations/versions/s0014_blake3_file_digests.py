"""artifact_files.digest holds a chunked file's ``blake3:<hex>`` digest (71 characters) as well as
an older file's sha256 (64): tracklet.core.digests.

Revision ID: s0014
Revises: s0013
"""

import sqlalchemy as sa
from alembic import op

revision = "s0014"
down_revision = "s0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("artifact_files") as batch:
        batch.alter_column("digest", existing_type=sa.String(64), type_=sa.String(71), existing_nullable=False)


def downgrade() -> None:
    # Rows with a blake3: digest don't fit the old width: they go (their chunks are collected later).
    op.execute("DELETE FROM artifact_files WHERE digest LIKE 'blake3:%'")
    with op.batch_alter_table("artifact_files") as batch:
        batch.alter_column("digest", existing_type=sa.String(71), type_=sa.String(64), existing_nullable=False)
