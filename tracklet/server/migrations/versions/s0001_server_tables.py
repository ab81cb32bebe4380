"""The server's tables, moved out of the store's schema: users, api_keys, project_members,
log_heads, log_segments.

Databases made before the move already have them (the store's revisions 0002 and 0004 created
them there, and now create nothing): this revision adopts every table that exists, as it is and
with its rows, and creates the missing ones with the same layout.

Revision ID: s0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "s0001"
down_revision = None
branch_labels = ("server",)
depends_on = None


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("users"):
        op.create_table(
            "users",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(128), nullable=False, unique=True),
            sa.Column("is_admin", sa.Boolean, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("disabled", sa.Boolean, nullable=False),
        )
    if _missing("api_keys"):
        op.create_table(
            "api_keys",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("key_id", sa.String(32), nullable=False, unique=True),
            sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
            sa.Column("secret_hash", sa.String(64), nullable=False),
            sa.Column("label", sa.String(256), nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("last_used_at", sa.Float),
            sa.Column("revoked_at", sa.Float),
        )
        op.create_index("ix_api_keys_user", "api_keys", ["user_id"])
    if _missing("project_members"):
        op.create_table(
            "project_members",
            sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("role", sa.String(16), nullable=False),
        )
    if _missing("log_heads"):
        op.create_table(
            "log_heads",
            sa.Column("project", sa.String(128), primary_key=True),
            sa.Column("run_id", sa.String(128), primary_key=True),
            sa.Column("size", sa.BigInteger, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
    if _missing("log_segments"):
        op.create_table(
            "log_segments",
            sa.Column("project", sa.String(128), primary_key=True),
            sa.Column("run_id", sa.String(128), primary_key=True),
            sa.Column("offset", sa.BigInteger, primary_key=True),
            sa.Column("length", sa.BigInteger, nullable=False),
        )


def downgrade() -> None:
    op.drop_table("log_segments")
    op.drop_table("log_heads")
    op.drop_table("project_members")
    op.drop_index("ix_api_keys_user", "api_keys")
    op.drop_table("api_keys")
    op.drop_table("users")
