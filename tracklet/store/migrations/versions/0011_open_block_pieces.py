"""Open blocks in pieces: nothing to convert on the way up; on the way down every run is indexed
again.

Up to 0010 the last, partial block of each pyramid level was a single row, and each append
re-encoded and rewrote all of it (a server's 2 KiB upload rewrote ~100 KB of blocks). From 0011 the
indexer stores a level's open block as rows of ``PIECE_SIZE`` entries (``blocks.py``) while the run
records, and joins them into one row once it ended. A single-row open block, as 0010 left it, is
what this indexer reads as a joined block (an ended run's, or one resumed): the next append to it
writes it as pieces. So the upgrade changes no row (tests/test_store_small_appends.py appends to a
0010 store's open blocks and compares with one pass).

The way down is not so: 0010's indexer reads a level's open block by its one key and would write
over the pieces after the first (points lost, steps out of order). So ``downgrade`` drops every
run's indexed data and resets its log offset, as 0010's upgrade did, and 0010's indexer reads each
log again from its first byte. A deleted run stays deleted; OTLP spans without a run stay.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # see the docstring: 0010's open blocks are joined blocks to this indexer


def downgrade() -> None:
    for table in ("blocks", "series", "console_lines", "alerts", "artifact_edges", "media"):
        op.execute(f"DELETE FROM {table}")
    op.execute("DELETE FROM spans WHERE run_pk IS NOT NULL")
    op.execute("UPDATE runs SET log_offset = 0")
