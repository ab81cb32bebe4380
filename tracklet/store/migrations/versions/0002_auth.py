"""Once: users, their API keys (hashed), and project members with roles. Now nothing.

These are a tracking server's own tables, which no record log holds; they moved to the server's
schema and migrations (``tracklet/server/schema.py``, ``tracklet/server/migrations/``), whose
first revision creates them, or adopts them with their rows in a database this revision made
before the move. The revision stays, empty, so every database's store history is unchanged.

Revision ID: 0002
Revises: 0001
"""

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
