"""A shared run's parts' indexing state in a table of its own: indexing a part's new records
wrote the run's whole ``metadata["parts"]`` (every part's entry) each time, a cost that grew with
the number of parts, per upload of any of them (docs/shared-runs.md).

``run_parts`` (run_pk, label, log_offset, state, last_step, system_ms): one row per part, keyed by
(run_pk, label); a deleted run's rows go by the foreign key (ON DELETE CASCADE). Nothing is copied:
a part indexed before this revision has its offset in ``metadata["parts"]``, which the indexer reads
when a part has no row yet, and writes the part's row then (``Indexer._fold_part``). The downgrade
copies each row's offset, last step and system time back into its run's ``metadata["parts"]``
(where 0015's indexer keeps them), then drops the table.

Revision ID: 0016
Revises: 0015
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_parts",
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("label", sa.String(128), primary_key=True),
        sa.Column("log_offset", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_step", sa.BigInteger, nullable=True),
        sa.Column("system_ms", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT run_pk, label, log_offset, last_step, system_ms FROM run_parts "
                                      "ORDER BY run_pk")).all()
    by_run: dict[int, list] = {}
    for row in rows:
        by_run.setdefault(row.run_pk, []).append(row)
    for run_pk, found in by_run.items():
        text = connection.execute(sa.text("SELECT metadata FROM runs WHERE id = :id"), {"id": run_pk}).scalar()
        metadata = json.loads(text) if isinstance(text, str) else dict(text or {})
        parts = metadata.setdefault("parts", {})
        for row in found:
            entry = parts.setdefault(row.label, {})
            entry["offset"] = row.log_offset
            for name in ("last_step", "system_ms"):
                if getattr(row, name) is not None:
                    entry[name] = getattr(row, name)
        statement = ("UPDATE runs SET metadata = CAST(:metadata AS JSONB) WHERE id = :id"
                     if connection.dialect.name == "postgresql" else "UPDATE runs SET metadata = :metadata WHERE id = :id")
        connection.execute(sa.text(statement), {"metadata": json.dumps(metadata), "id": run_pk})
    op.drop_table("run_parts")
