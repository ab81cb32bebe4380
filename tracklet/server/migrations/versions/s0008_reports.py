"""Reports (tracklet/reports/, docs/reports.md): reports, their append-only versions and view
tokens (hashed). The same tables a data root keeps in reports.sqlite (tracklet/reports/tables.py).

Revision ID: s0008
Revises: s0007
"""

import sqlalchemy as sa
from alembic import op

revision = "s0008"
down_revision = "s0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("published_version", sa.Integer, nullable=True),
        sa.Column("author", sa.String(300), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_reports_project", "reports", ["project", "updated_at"])
    op.create_table(
        "report_versions",
        sa.Column("report_id", BigId, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("parent", sa.Integer, nullable=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("markdown", sa.Text, nullable=False),
        sa.Column("author", sa.String(300), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("note", sa.String(300), nullable=False),
    )
    op.create_table(
        "report_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("report_id", BigId, nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.String(300), nullable=False),
        sa.Column("created_by", sa.String(300), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("ix_report_tokens_report", "report_tokens", ["report_id"])


def downgrade() -> None:
    op.drop_index("ix_report_tokens_report", table_name="report_tokens")
    op.drop_table("report_tokens")
    op.drop_table("report_versions")
    op.drop_index("ix_reports_project", table_name="reports")
    op.drop_table("reports")
