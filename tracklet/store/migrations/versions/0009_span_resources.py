"""Spans received over OTLP keep their resource's and scope's attributes once per resource
(``span_resources``, named by ``spans.resource_id``) instead of in every span's ``attributes``;
``ix_spans_trace`` is dropped: every query of spans names the project, and the unique index on
(project, trace, span) serves a trace's lookup (``tracklet/store/spans.py``).

Spans stored before keep those attributes inline (``resource_id`` NULL); a read merges either.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "span_resources",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("attributes", json, nullable=False),
    )
    op.create_index("uq_span_resources_project_digest", "span_resources", ["project_id", "digest"], unique=True)
    op.add_column("spans", sa.Column("resource_id", sa.Integer, nullable=True))
    op.drop_index("ix_spans_trace", table_name="spans")


def downgrade() -> None:
    op.create_index("ix_spans_trace", "spans", ["trace_id"])
    op.drop_column("spans", "resource_id")
    op.drop_index("uq_span_resources_project_digest", table_name="span_resources")
    op.drop_table("span_resources")
