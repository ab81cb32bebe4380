"""An artifact collection's own description and tags on a server on PostgreSQL:
artifact_collections, one row per collection once edited (W&B's ``ArtifactCollection.description``
and ``.tags``, set by ``collection.save()``; ``PATCH /api/v1/projects/{p}/artifacts/{name}``),
deleted with the collection. On SQLite the server keeps them in each collection's
``collection.json`` (artifacts/registry.py), as it keeps its versions. A collection from before this
migration reads back with an empty description and no tags.

Revision ID: s0018
Revises: s0017
"""

import sqlalchemy as sa
from alembic import op

revision = "s0018"
down_revision = "s0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_collections",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("artifact_collections")
