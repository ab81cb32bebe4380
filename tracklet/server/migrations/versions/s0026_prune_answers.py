"""A paged media prune keeps its last answer and its start, so a page sent again is answered again.

``media_prune_states.answer``: the JSON of the page last answered (``media_retention.prune_page``),
replayed when its cursor (or, for the first page, its ``prune_id``) is sent again: a client whose
answer was lost on the way (a proxy, the network) retries the page instead of starting the prune
again, and nothing is counted or removed twice. A finished prune's row is kept (phase "", its
digests removed) with its last answer until ``PRUNE_STATE_TTL``, so a retry of the final page is
answered too. ``media_prune_states.started``: when the prune began; a grant used after it is never
dropped by the prune (a run created behind the seen phase's cursor uploads or asks about its
blobs after it). Both nullable: a state written before s0026 has neither (it is answered as
before: no replay; grants kept by the grace period alone). The downgrade drops them.

Revision ID: s0026
Revises: s0025
"""

import sqlalchemy as sa
from alembic import op

revision = "s0026"
down_revision = "s0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("media_prune_states", sa.Column("answer", sa.Text, nullable=True))
    op.add_column("media_prune_states", sa.Column("started", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media_prune_states") as batch:  # (SQLite: drop_column by copying the table)
        batch.drop_column("started")
        batch.drop_column("answer")
