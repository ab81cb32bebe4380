"""Audit intents (audit_intents): a mutating request whose change is not a row of the server's
database (record log bytes, run files, artifact blobs) commits an intent before it changes
anything; its audit event deletes the intent in the event's own transaction, and a server that
finds the intent of a process that died turns it into an event whose outcome is ``unknown``
(audit.py). Unlike audit_events, intents are deleted: they are the work in flight.

Revision ID: s0012
Revises: s0011
"""

import sqlalchemy as sa
from alembic import op

revision = "s0012"
down_revision = "s0011"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_intents",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("event", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_intents_owner", "audit_intents", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_audit_intents_owner", table_name="audit_intents")
    op.drop_table("audit_intents")
