"""Reports (tracklet/reports/, docs/reports.md): reports, their versions (append-only: triggers
refuse UPDATE and DELETE) and view tokens (hashed). The same tables a data root keeps in reports.sqlite (tracklet/reports/tables.py).

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
APPEND_ONLY = "report_versions is append-only: the versions of a report are never changed or removed"


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
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION tracklet_report_versions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$""")
        op.execute("CREATE TRIGGER report_versions_append_only BEFORE UPDATE OR DELETE ON report_versions "
                   "FOR EACH ROW EXECUTE FUNCTION tracklet_report_versions_append_only()")
        op.execute("CREATE TRIGGER report_versions_no_truncate BEFORE TRUNCATE ON report_versions "
                   "FOR EACH STATEMENT EXECUTE FUNCTION tracklet_report_versions_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER report_versions_no_{verb.lower()} BEFORE {verb} ON report_versions "
                       f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END")
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
    op.drop_table("report_versions")  # its triggers with it
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION tracklet_report_versions_append_only()")
    op.drop_index("ix_reports_project", table_name="reports")
    op.drop_table("reports")
