"""A shared run's part fits any run id and label: ``log_heads.run_id`` and ``log_segments.run_id``
hold a copy's key, the run's id or ``<run_id>/<label>`` for its part (segments.py), so they are
257 characters wide (a run id and a label are each at most 128 characters, core/layout.py
``MAX_NAME_CHARS``, joined by ``/``). At 128, a ``--logs`` server refused a part whose run id and
label were over 127 characters together (a 400 that a server keeping files never gave).

On PostgreSQL widening a ``varchar`` changes the catalog only (no table or index rewrite). The
downgrade narrows them back to 128, and refuses (naming the rows) while a part's key is longer:
narrowing would fail on PostgreSQL and truncate nothing on SQLite, so those parts' logs would be
keyed by what no route can ask for; delete those parts' rows, or stay at s0024.

Revision ID: s0024
Revises: s0023
"""

import sqlalchemy as sa
from alembic import op

revision = "s0024"
down_revision = "s0023"
branch_labels = None
depends_on = None

WIDE = 257  # a 128-character run id, "/", a 128-character label
NARROW = 128
TABLES = ("log_heads", "log_segments")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("run_id", existing_type=sa.String(NARROW), type_=sa.String(WIDE),
                               existing_nullable=False)


def downgrade() -> None:
    connection = op.get_bind()
    for table in TABLES:
        rows = sa.table(table, sa.column("project", sa.String), sa.column("run_id", sa.String))
        long = sa.select(rows.c.project, rows.c.run_id).where(sa.func.length(rows.c.run_id) > NARROW)
        count = connection.execute(sa.select(sa.func.count()).select_from(long.subquery())).scalar_one()
        if count:
            first = connection.execute(long.order_by(rows.c.project, rows.c.run_id).limit(1)).one()
            raise RuntimeError(
                f"can't migrate the server's tables below s0024: {table} has {count} row(s) whose run_id (a shared "
                f"run's part, <run_id>/<label>) is longer than {NARROW} characters, the most s0023 holds (the first: "
                f"project {first.project!r}, {first.run_id!r}); narrowing would cut them off from their part. Delete "
                "those parts' rows from log_heads and log_segments (their logs stay in the --logs bucket) or stay "
                "at s0024")
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("run_id", existing_type=sa.String(WIDE), type_=sa.String(NARROW),
                               existing_nullable=False)
