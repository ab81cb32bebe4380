"""PostgreSQL's extended statistics on ``run_sort_values`` (source, path, rank): how many entries a
config or summary key's numbers (or strings) are. Without them the planner multiplied the
table-wide shares of the source, the path and the rank as if independent (a path is of one source,
and its values mostly of one kind), underestimated a key's part up to ~40 times, and read a page
at an offset into it as the whole part hash-joined to every run of the project and sorted, where
the index gives the order (docs/store.md, docs/performance.md session 29).

``st_run_sort_values_kind``: functional ``dependencies`` (path -> source, path -> rank: a key's
entries are its path's, not a product of shares) and the ``mcv`` list of (source, path, rank)
combinations (which rank a path's entries have: dependencies alone took a strings key's empty
numbers part for every entry of the path, and counted it as a hash join of every run), chosen by
measurement (docs/performance.md, session 29); ``ndistinct`` changed no plan (these are
equalities, not groupings). The MCV list holds up to the statistics target's combinations (100 by
default); a store with more keys falls back to the dependencies for the others. The statistics
are filled by ANALYZE only: the upgrade analyzes the table once (a sample of it, ShareUpdateExclusive
lock: reads and writes of the table go on), so a store that isn't written again has them too;
afterwards autovacuum's analyzes and the indexer's (``ingest.analyze_after_import``) keep them.

SQLite has no such statistics (its planner takes the index's order here): a no-op there. The
downgrade drops the statistics object.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

STATISTICS = "st_run_sort_values_kind"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE STATISTICS IF NOT EXISTS {STATISTICS} (dependencies, mcv) ON source, path, rank FROM run_sort_values")
    op.execute("ANALYZE run_sort_values")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP STATISTICS IF EXISTS {STATISTICS}")
