"""The model registry (tracklet/registry/, docs/registry.md): collections of links to artifact
versions, aliases, the append-only alias history, model cards, protected aliases and promotion
requests with their reviews. The same tables a data root keeps in registry.sqlite
(tracklet/registry/tables.py).

Revision ID: s0003
Revises: s0002
"""

import sqlalchemy as sa
from alembic import op

revision = "s0003"
down_revision = "s0002"
branch_labels = None
depends_on = None

TABLES = ("registry_reviews", "registry_requests", "registry_protections", "registry_cards", "registry_alias_events",
          "registry_aliases", "registry_links", "registry_collections")


def upgrade() -> None:
    op.create_table(
        "registry_collections",
        sa.Column("registry", sa.String(128), primary_key=True),
        sa.Column("collection", sa.String(128), primary_key=True),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("next_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "registry_links",
        sa.Column("registry", sa.String(128), primary_key=True),
        sa.Column("collection", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("source_project", sa.String(128), nullable=False),
        sa.Column("source_name", sa.String(128), nullable=False),
        sa.Column("source_version", sa.Integer, nullable=False),
        sa.Column("source_digest", sa.String(64), nullable=False),
        sa.Column("linked_at", sa.Float, nullable=False),
        sa.Column("linked_by", sa.String(300), nullable=False),
    )
    op.create_index("ux_registry_links_source", "registry_links",
                    ["registry", "collection", "source_project", "source_name", "source_version"], unique=True)
    op.create_index("ix_registry_links_by_source", "registry_links", ["source_project", "source_name", "source_version"])
    op.create_table(
        "registry_aliases",
        sa.Column("registry", sa.String(128), primary_key=True),
        sa.Column("collection", sa.String(128), primary_key=True),
        sa.Column("alias", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_registry_aliases_version", "registry_aliases", ["registry", "collection", "version"])
    op.create_table(
        "registry_alias_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("registry", sa.String(128), nullable=False),
        sa.Column("collection", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("request_id", sa.Integer, nullable=True),
    )
    op.create_index("ix_registry_alias_events_alias", "registry_alias_events", ["registry", "collection", "alias", "id"])
    op.create_table(
        "registry_cards",
        sa.Column("registry", sa.String(128), primary_key=True),
        sa.Column("collection", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("author", sa.String(300), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "registry_protections",
        sa.Column("registry", sa.String(128), primary_key=True),
        sa.Column("collection", sa.String(128), primary_key=True),
        sa.Column("alias", sa.String(128), primary_key=True),
        sa.Column("approvals", sa.Integer, nullable=False),
    )
    op.create_table(
        "registry_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("registry", sa.String(128), nullable=False),
        sa.Column("collection", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("to_version", sa.Integer, nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("requester", sa.String(300), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("decided_at", sa.Float, nullable=True),
    )
    op.create_index("ix_registry_requests_alias", "registry_requests", ["registry", "collection", "alias", "state"])
    op.create_table(
        "registry_reviews",
        sa.Column("request_id", sa.Integer, primary_key=True),
        sa.Column("reviewer", sa.String(300), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
