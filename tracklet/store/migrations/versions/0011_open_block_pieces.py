"""Open blocks in pieces: every run is indexed again from its record log.

Up to 0010 the last, partial block of each pyramid level was a single row, and each append
re-encoded and rewrote all of it (a server's 2 KiB upload rewrote ~100 KB of blocks). From 0011 the
indexer stores a level's open block as rows of ``PIECE_SIZE`` entries (``blocks.py``) and appends
to its last piece, which it can only do where the open block is stored that way; converting the
blocks in place would need the indexer's own encoding in a migration, so, as 0010 did, the indexed
data of every run goes and its log offset returns to 0: the next index pass reads each log from
its first byte. An upgrade from before 0010 re-reads every log once, not twice (0010 left the
offsets at 0 already). A deleted run stays deleted; OTLP spans without a run stay.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("blocks", "series", "console_lines", "alerts", "artifact_edges", "media"):
        op.execute(f"DELETE FROM {table}")
    op.execute("DELETE FROM spans WHERE run_pk IS NOT NULL")
    op.execute("UPDATE runs SET log_offset = 0")


def downgrade() -> None:
    pass  # 0010's indexer wrote open blocks whole: a store indexed again under it is what it knows
