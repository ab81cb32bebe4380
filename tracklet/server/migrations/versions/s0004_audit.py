"""The audit log (audit_events, append-only: triggers refuse UPDATE and DELETE), the events outbox
(event_outbox) and automations (automations, automation_deliveries, automation_attempts).

Revision ID: s0004
Revises: s0003
"""

import sqlalchemy as sa
from alembic import op

revision = "s0004"
down_revision = "s0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Compared by code point on both backends (SQLite's default; PostgreSQL's "C" collation), so a
# prefix is an index range whatever the database's collation.
CodeTarget = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")

APPEND_ONLY = "audit_events is append-only: its rows are never updated or deleted"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("target", CodeTarget, nullable=False),
        sa.Column("project", sa.String(128), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_audit_events_time", "audit_events", ["time", "id"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor", "time", "id"])
    op.create_index("ix_audit_events_action", "audit_events", ["action", "time", "id"])
    op.create_index("ix_audit_events_project", "audit_events", ["project", "time", "id"])
    op.create_index("ix_audit_events_target", "audit_events", ["target", "time", "id"])
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION tracklet_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$""")
        op.execute("CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
                   "FOR EACH ROW EXECUTE FUNCTION tracklet_audit_append_only()")
        op.execute("CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
                   "FOR EACH STATEMENT EXECUTE FUNCTION tracklet_audit_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                       f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END")

    op.create_table(
        "event_outbox",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("project", sa.String(128), nullable=True),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("dedupe", sa.String(512), nullable=True, unique=True),
        sa.Column("dispatched", sa.Boolean, nullable=False),
    )
    op.create_index("ix_event_outbox_pending", "event_outbox", ["dispatched", "id"])
    op.create_table(
        "automations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("filter", sa.Text, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("deleted_at", sa.Float, nullable=True),
    )
    op.create_table(
        "automation_deliveries",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("event_id", sa.BigInteger, sa.ForeignKey("event_outbox.id"), nullable=False),
        sa.Column("automation_id", sa.Integer, sa.ForeignKey("automations.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.UniqueConstraint("event_id", "automation_id", name="uq_automation_deliveries_event"),
    )
    op.create_index("ix_automation_deliveries_due", "automation_deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_automation_deliveries_rule", "automation_deliveries", ["automation_id", "id"])
    op.create_table(
        "automation_attempts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("delivery_id", sa.BigInteger, sa.ForeignKey("automation_deliveries.id"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration", sa.Float, nullable=False),
    )
    op.create_index("ix_automation_attempts_delivery", "automation_attempts", ["delivery_id", "attempt"])


def downgrade() -> None:
    op.drop_table("automation_attempts")
    op.drop_table("automation_deliveries")
    op.drop_table("automations")
    op.drop_table("event_outbox")
    op.drop_table("audit_events")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tracklet_audit_append_only()")
