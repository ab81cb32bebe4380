"""Every run indexed again from its record log: each level's open (last, partial) block is now
stored in pieces.

Until 0010 a level's last block was one row however full, and every append re-encoded and
rewrote it whole (a server's small append rewrote ~50 times the bytes it appended). Now a level's
open block is stored as pieces of ``PIECE_SIZE`` entries, one row each (``blocks.py``); the indexer
appends to the last piece only, so it must find the open block stored that way. As in 0010 every
run's indexed data is dropped and its offset reset, so the next index reads every log again from
the start and a migrated store equals one built from scratch. (An upgrade from before 0010 pays
that once: 0010 has reset the offsets already.) Runs keep their rows (a run deleted from the store
stays deleted); spans received over OTLP (no run) have no log to come back from and stay.

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
