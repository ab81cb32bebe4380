"""Small artifact blobs stored inside packs: artifact_packed_blobs (where each packed blob's bytes
are: pack, offset, length, its blake3 in the pack's index), server/artifact_blobs.py.

Revision ID: s0013
Revises: s0012
"""

import sqlalchemy as sa
from alembic import op

revision = "s0013"
down_revision = "s0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_packed_blobs",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("pack_id", sa.String(64), nullable=False),
        sa.Column("pack_offset", sa.BigInteger, nullable=False),
        sa.Column("length", sa.Integer, nullable=False),
        sa.Column("member", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_artifact_packed_blobs_pack", "artifact_packed_blobs", ["pack_id"])


def downgrade() -> None:
    op.drop_index("ix_artifact_packed_blobs_pack", table_name="artifact_packed_blobs")
    op.drop_table("artifact_packed_blobs")
