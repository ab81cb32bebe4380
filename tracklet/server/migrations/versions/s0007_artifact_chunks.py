"""Chunk-level artifact uploads: artifact_chunks (which chunks each project holds, and in which
pack), artifact_files (large files held as chunks, verified), server/artifact_blobs.py.

Revision ID: s0007
Revises: s0005
"""

import sqlalchemy as sa
from alembic import op

revision = "s0007"
down_revision = "s0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_chunks",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("chunk_id", sa.String(64), primary_key=True),
        sa.Column("pack_id", sa.String(64), nullable=False),
        sa.Column("pack_offset", sa.BigInteger, nullable=False),
        sa.Column("length", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_artifact_chunks_pack", "artifact_chunks", ["pack_id"])
    op.create_table(
        "artifact_files",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("recipe", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("artifact_files")
    op.drop_index("ix_artifact_chunks_pack", table_name="artifact_chunks")
    op.drop_table("artifact_chunks")
