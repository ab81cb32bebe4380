"""The reports' tables (SQLAlchemy Core), the same on both sides:

- local mode keeps them in ``<root>/reports.sqlite`` (created on the first save);
- a tracking server keeps them in its own database (SQLite or PostgreSQL), created by the server's
  migration ``s0008_reports`` (``tracklet/server/migrations/``), beside its accounts: back them up
  with it. No record log holds them, so nothing can rebuild them.

``reports`` is the row a writer updates first (PostgreSQL's row lock, SQLite's write lock), so two
saves on one parent can't both become the next version. ``report_versions`` is append-only:
nothing updates or deletes its rows. ``report_tokens`` keeps the SHA-256 of each view token's
secret, never the secret.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_NAME = 128  # project names (core/layout.py)
_ACTOR = 300  # a user's name
_TITLE = 300

# 64-bit ids on PostgreSQL; SQLite's rowid alias must be declared INTEGER to autoincrement.
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(_NAME), nullable=False),
    sa.Column("title", sa.String(_TITLE), nullable=False),  # the latest version's
    sa.Column("version", sa.Integer, nullable=False),  # the latest version's number (from 1)
    sa.Column("published_version", sa.Integer, nullable=True),  # set once: then the report is immutable
    sa.Column("author", sa.String(_ACTOR), nullable=False),  # of the latest version
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),  # written first by every change: takes the lock
    sa.Index("ix_reports_project", "project", "updated_at"),
)

# Every save, append-only: version N's parent is the version it was edited from (None for 1).
report_versions = sa.Table(
    "report_versions",
    metadata,
    sa.Column("report_id", _BigId, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent", sa.Integer, nullable=True),
    sa.Column("title", sa.String(_TITLE), nullable=False),
    sa.Column("markdown", sa.Text, nullable=False),
    sa.Column("author", sa.String(_ACTOR), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("note", sa.String(_TITLE), nullable=False),  # what made it: edit, revert to vN, freeze
)

# Per-report view tokens: ``trv_<token_id>_<secret>``; the server keeps the secret's SHA-256.
report_tokens = sa.Table(
    "report_tokens",
    metadata,
    sa.Column("token_id", sa.String(32), primary_key=True),
    sa.Column("report_id", _BigId, nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("label", sa.String(_TITLE), nullable=False),
    sa.Column("created_by", sa.String(_ACTOR), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),  # a revoked token stays listed and never works again
    sa.Index("ix_report_tokens_report", "report_id"),
)

REPORT_TABLES = (reports, report_versions, report_tokens)

APPEND_ONLY = "report_versions is append-only: the versions of a report are never changed or removed"


def sqlite_append_only_triggers() -> list[str]:
    """SQLite triggers that refuse UPDATE and DELETE on ``report_versions`` (the server's migration
    makes PostgreSQL's)."""
    return [f"CREATE TRIGGER IF NOT EXISTS report_versions_no_{verb.lower()} BEFORE {verb} ON report_versions "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END" for verb in ("UPDATE", "DELETE")]
