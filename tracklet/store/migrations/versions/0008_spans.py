"""Trace spans: the ``spans`` table (one row per span: a run's ``Span`` records, or spans received
over OTLP/HTTP), typed columns plus attributes as JSON (``tracklet/store/spans.py``).

Record logs written before this revision hold no span records, so nothing is re-indexed.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "spans",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=True),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("parent_span_id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("status_message", sa.Text, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=True),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=True),
        sa.Column("output_tokens", sa.BigInteger, nullable=True),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("input_blob", sa.String(64), nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("output_blob", sa.String(64), nullable=False),
        sa.Column("attributes", json, nullable=False),
        sa.Column("events", json, nullable=False),
        sa.Column("links", json, nullable=False),
    )
    op.create_index("ix_spans_project_start", "spans", ["project_id", "start_ns"])
    op.create_index("ix_spans_trace", "spans", ["trace_id"])
    op.create_index("ix_spans_run_step", "spans", ["run_pk", "step"])
    op.create_index("uq_spans_project_trace_span", "spans", ["project_id", "trace_id", "span_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_spans_project_trace_span", table_name="spans")
    op.drop_index("ix_spans_run_step", table_name="spans")
    op.drop_index("ix_spans_trace", table_name="spans")
    op.drop_index("ix_spans_project_start", table_name="spans")
    op.drop_table("spans")
