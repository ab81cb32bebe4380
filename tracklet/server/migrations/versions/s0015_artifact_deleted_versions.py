"""Deleted artifact versions of a server on PostgreSQL: artifact_deleted_versions, one row per
version deleted (``DELETE /api/v1/projects/{p}/artifacts/{name}/versions/vN``), so its number is
never given again (what a ``vN.deleted`` tombstone file does on SQLite: artifacts/registry.py).

Revision ID: s0015
Revises: s0014
"""

import sqlalchemy as sa
from alembic import op

revision = "s0015"
down_revision = "s0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_deleted_versions",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("manifest", sa.String(64), nullable=False),
        sa.Column("deleted_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("artifact_deleted_versions")
