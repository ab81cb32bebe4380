"""A protected alias's webhook check gets its own timeout (registry_checks.timeout, seconds; the
checks made before keep the 10 s they had). Audit events of every route are written in the
change's own transaction from this version on (audit.py), which needs no table change.

Revision ID: s0010
Revises: s0009
"""

import sqlalchemy as sa
from alembic import op

revision = "s0010"
down_revision = "s0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registry_checks", sa.Column("timeout", sa.Float, nullable=False, server_default="10"))


def downgrade() -> None:
    with op.batch_alter_table("registry_checks") as batch:
        batch.drop_column("timeout")
