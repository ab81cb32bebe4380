"""A protected alias names the registry role whose holders may approve its promotions
(registry_protections.approver_role: viewer, member or admin, and every higher role; the
protections made before keep the admins they had).

Revision ID: s0011
Revises: s0010
"""

import sqlalchemy as sa
from alembic import op

revision = "s0011"
down_revision = "s0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registry_protections",
                  sa.Column("approver_role", sa.String(16), nullable=False, server_default="admin"))


def downgrade() -> None:
    with op.batch_alter_table("registry_protections") as batch:
        batch.drop_column("approver_role")
