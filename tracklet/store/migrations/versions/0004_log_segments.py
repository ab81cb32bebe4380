"""Once: record log copies in shared storage, log_heads and log_segments. Now nothing.

A scaled-out server's copies are its own tables (the logs themselves: nothing rebuilds them);
they moved to the server's schema and migrations (``tracklet/server/schema.py``,
``tracklet/server/migrations/``), whose first revision creates them, or adopts them with their
rows in a database this revision made before the move. The revision stays, empty, so every
database's store history is unchanged.

Revision ID: 0004
Revises: 0003
"""

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
