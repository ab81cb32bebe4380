"""Every run indexed again from its record log: summaries of runs indexed while they recorded
could be stale.

Indexing a run in several appends (a run still recording: every upload a server takes, ``tracklet
ui`` beside a training run) left a summary entry two or more levels up stale when an append
ended inside an entry below it (``BlockWriter.append`` took the first changed entry of each level
from the level below's old entry count rounded up, not the first changed entry): a zoomed-out
chart's count came up short and its last, min and max were old. The blocks can't be mended
without their points, which the record logs hold: as in 0003 and 0005, every run's indexed data is
dropped and its offset reset, so the next index reads every log again from the start and a
migrated store equals one built from scratch. Runs keep their rows (a run deleted from the store
stays deleted); spans received over OTLP (no run) have no log to come back from and stay.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("blocks", "series", "console_lines", "alerts", "artifact_edges", "media"):
        op.execute(f"DELETE FROM {table}")
    op.execute("DELETE FROM spans WHERE run_pk IS NOT NULL")
    op.execute("UPDATE runs SET log_offset = 0")


def downgrade() -> None:
    pass  # the summaries written by 0009's indexer were the stale ones
