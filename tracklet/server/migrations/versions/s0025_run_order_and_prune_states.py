"""A ``--logs`` server's walk of every run's logs reads its pages from an index, and a paged media
prune keeps its state in the database.

``ix_log_heads_run_order`` (PostgreSQL only: ``split_part``; a ``--logs`` server needs
PostgreSQL): ``log_heads`` by (project, the run id before any ``/``, key), the order
``SegmentCopies.run_logs`` reads the heads in, a keyset page (``RUN_LOGS_BATCH``) at a time. Without
it every page's query sorted every head: a walk of 100,000 runs took longer paged than in one query,
and grew with heads x pages. The index's columns are the key's only, so an append's update of a head
(size, time) stays a HOT update.

``media_prune_states`` and ``media_prune_digests``: a paged ``tracklet media prune --url`` between its
requests (``media_retention.prune_page``), which before lived in one object under the logs' base
that each page read and wrote whole (about 70 bytes per retired blob). Each page now adds its own
counts; the downgrade drops them (a prune under way then answers "over or unknown": start it again).

Revision ID: s0025
Revises: s0024
"""

import sqlalchemy as sa
from alembic import op

revision = "s0025"
down_revision = "s0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_log_heads_run_order ON log_heads (project, split_part(run_id, '/', 1), run_id)")
    op.create_table(
        "media_prune_states",
        sa.Column("token", sa.String(32), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("after", sa.Text, nullable=False),
        sa.Column("done", sa.BigInteger, nullable=False),
        sa.Column("running", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("removed", sa.BigInteger, nullable=False),
        sa.Column("freed", sa.BigInteger, nullable=False),
        sa.Column("kept_shared", sa.BigInteger, nullable=False),
        sa.Column("grants", sa.BigInteger, nullable=False),
        sa.Column("kept_running", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_media_prune_states_updated", "media_prune_states", ["updated_at"])
    op.create_table(
        "media_prune_digests",
        sa.Column("token", sa.String(32), sa.ForeignKey("media_prune_states.token", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("wanted", sa.BigInteger, nullable=False),
        sa.Column("named", sa.BigInteger, nullable=False),
        sa.Column("shared", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("media_prune_digests")
    op.drop_index("ix_media_prune_states_updated", table_name="media_prune_states")
    op.drop_table("media_prune_states")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_log_heads_run_order", table_name="log_heads")
