"""An index on artifact_blobs.digest: the grants of one digest (or one ``sha256/<xx>/`` prefix) across
every project. Server artifact-gc reads each prefix's grants once through it (it asked each project
in turn: 256 x P queries, 55 s against 0.7 s at 1,000 projects and 100,000 grants on SQLite), and the
"does any project still hold this object?" checks of gc and media prune before a removal were scans
of the whole table.

Revision ID: s0019
Revises: s0018
"""

from alembic import op

revision = "s0019"
down_revision = "s0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_artifact_blobs_digest", "artifact_blobs", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_artifact_blobs_digest", table_name="artifact_blobs")
