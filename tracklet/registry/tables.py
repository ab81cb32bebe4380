"""The model registry's tables (SQLAlchemy Core), the same on both sides:

- local mode keeps them in ``<artifact dir>/registry.sqlite`` (created on first link);
- a tracking server keeps them in its own database (SQLite or PostgreSQL), created by the server's
  migration ``s0003_registry`` (``tracklet/server/migrations/``), beside its accounts: back them up
  with it. No record log holds them, so nothing can rebuild them.

``registry_collections`` is the row a writer locks (``UPDATE`` first: PostgreSQL's row lock, SQLite's
write lock), so two links never get one number and two moves of one alias are applied one after
the other. ``registry_alias_events`` is append-only: nothing updates or deletes its rows.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_NAME = 128  # registry, collection, alias, project and artifact names (artifacts/names.py)
_ACTOR = 300  # a user's name, or "project/run_id"

registry_collections = sa.Table(
    "registry_collections",
    metadata,
    sa.Column("registry", sa.String(_NAME), primary_key=True),
    sa.Column("collection", sa.String(_NAME), primary_key=True),
    sa.Column("type", sa.String(_NAME), nullable=False),  # the artifact type every linked version has
    sa.Column("next_version", sa.Integer, nullable=False),  # numbers are never given twice
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),  # written first by every change: takes the lock
)

# A version of a collection is a link to an artifact version: no bytes are copied.
registry_links = sa.Table(
    "registry_links",
    metadata,
    sa.Column("registry", sa.String(_NAME), primary_key=True),
    sa.Column("collection", sa.String(_NAME), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("source_project", sa.String(_NAME), nullable=False),
    sa.Column("source_name", sa.String(_NAME), nullable=False),
    sa.Column("source_version", sa.Integer, nullable=False),
    sa.Column("source_digest", sa.String(64), nullable=False),  # the version's content digest when linked
    sa.Column("linked_at", sa.Float, nullable=False),
    sa.Column("linked_by", sa.String(_ACTOR), nullable=False),
    sa.Index("ux_registry_links_source", "registry", "collection", "source_project", "source_name",
             "source_version", unique=True),
    sa.Index("ix_registry_links_by_source", "source_project", "source_name", "source_version"),  # links_to
)

registry_aliases = sa.Table(
    "registry_aliases",
    metadata,
    sa.Column("registry", sa.String(_NAME), primary_key=True),
    sa.Column("collection", sa.String(_NAME), primary_key=True),
    sa.Column("alias", sa.String(_NAME), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_registry_aliases_version", "registry", "collection", "version"),
)

# Every alias move, append-only: from_version None = the alias was new; to_version None = removed.
registry_alias_events = sa.Table(
    "registry_alias_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("registry", sa.String(_NAME), nullable=False),
    sa.Column("collection", sa.String(_NAME), nullable=False),
    sa.Column("alias", sa.String(_NAME), nullable=False),
    sa.Column("from_version", sa.Integer, nullable=True),
    sa.Column("to_version", sa.Integer, nullable=True),
    sa.Column("actor", sa.String(_ACTOR), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("request_id", sa.Integer, nullable=True),  # the approved promotion request that moved it
    sa.Index("ix_registry_alias_events_alias", "registry", "collection", "alias", "id"),
)

# Model cards: Markdown with YAML front matter, one revision after another per version.
registry_cards = sa.Table(
    "registry_cards",
    metadata,
    sa.Column("registry", sa.String(_NAME), primary_key=True),
    sa.Column("collection", sa.String(_NAME), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("author", sa.String(_ACTOR), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Protected aliases: moving one takes a promotion request with ``approvals`` approvals by others
# holding ``approver_role`` (or a higher registry role) in the registry.
registry_protections = sa.Table(
    "registry_protections",
    metadata,
    sa.Column("registry", sa.String(_NAME), primary_key=True),
    sa.Column("collection", sa.String(_NAME), primary_key=True),
    sa.Column("alias", sa.String(_NAME), primary_key=True),
    sa.Column("approvals", sa.Integer, nullable=False),
    sa.Column("approver_role", sa.String(16), nullable=False, server_default="admin"),  # server s0011
)

registry_requests = sa.Table(
    "registry_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("registry", sa.String(_NAME), nullable=False),
    sa.Column("collection", sa.String(_NAME), nullable=False),
    sa.Column("alias", sa.String(_NAME), nullable=False),
    sa.Column("to_version", sa.Integer, nullable=False),
    sa.Column("from_version", sa.Integer, nullable=True),  # where the alias was when requested
    sa.Column("requester", sa.String(_ACTOR), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending, approved, rejected, superseded
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("decided_at", sa.Float, nullable=True),
    sa.Index("ix_registry_requests_alias", "registry", "collection", "alias", "state"),
)

registry_reviews = sa.Table(
    "registry_reviews",
    metadata,
    sa.Column("request_id", sa.Integer, primary_key=True),
    sa.Column("reviewer", sa.String(_ACTOR), primary_key=True),
    sa.Column("decision", sa.String(16), nullable=False),  # approve, reject
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

REGISTRY_TABLES = (registry_collections, registry_links, registry_aliases, registry_alias_events, registry_cards,
                   registry_protections, registry_requests, registry_reviews)
