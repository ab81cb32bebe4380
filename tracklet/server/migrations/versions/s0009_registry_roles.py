"""Registry roles: registry_members (a user's viewer/member/admin role in one model registry,
server/registry_roles.py; existing registries keep working: whoever linked a version into one
becomes its admin), and registry_checks (a protected alias's webhook check, registry_checks.py).

Revision ID: s0009
Revises: s0008
"""

import sqlalchemy as sa
from alembic import op

revision = "s0009"
down_revision = "s0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_members",
        sa.Column("registry", sa.String(128), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_table(
        "registry_checks",
        sa.Column("registry", sa.String(128), primary_key=True),
        sa.Column("collection", sa.String(128), primary_key=True),
        sa.Column("alias", sa.String(128), primary_key=True),
        sa.Column("automation_id", sa.Integer, sa.ForeignKey("automations.id"), nullable=False),
    )
    # Before roles, rights followed the linked versions' projects; the users who linked into a
    # registry are the ones who used it: they become its admins (a server admin is one anyway).
    op.execute(
        "INSERT INTO registry_members (registry, user_id, role) "
        "SELECT DISTINCT registry_links.registry, users.id, 'admin' FROM registry_links "
        "JOIN users ON users.name = registry_links.linked_by"
    )


def downgrade() -> None:
    op.drop_table("registry_checks")
    op.drop_table("registry_members")
