"""The store's tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

``runs`` holds one row per run with its identity, state, config and summary (JSON), and how far
its record log has been ingested. ``series`` is one (run, key) metric history; ``blocks`` holds
its data: level 0 blocks are the points themselves, level L >= 1 blocks are summaries of
``FANOUT ** L`` points each (see ``tracklet/store/blocks.py``). A series' ``kind`` keeps a run's
metrics (``number``) apart from its system metrics (``system``: window means, ``system_max``:
window maxima, with the window end in integer milliseconds as the step), so no metric name can
collide with a system metric's. ``console_lines`` holds the run's console output, one row per line,
and ``alerts`` its alerts, one row each.

Every table here is derived from the record logs (``tracklet index --rebuild`` empties and refills
them all but ``projects``, whose ids a server's project members refer to). A tracking server's
own tables (users, API keys, members, segment copies), which nothing can rebuild, are not here:
``tracklet/server/schema.py``, with migrations of their own.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

# JSON on SQLite (text + json_extract), JSONB on PostgreSQL (indexable, ->> operators).
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
)


def project_id_of(project: str) -> sa.ScalarSelect[int]:
    """The project's id as a scalar subquery: ``runs.c.project_id == project_id_of(name)``.

    A query of one project's rows (its runs, its spans) names the project so, never by joining
    ``projects``. With planner statistics (SQLite's after an ``ANALYZE``, PostgreSQL's always) the
    join is planned as a scan of ``projects`` (a table of a few rows) whose rows the planner doesn't
    count on being one, so the project's index on (project_id, created_at) no longer gives the
    page's order and every run of the project is sorted for a page of 50 (docs/performance.md,
    session 24). Compared with a value, the subquery is one constant to both planners, with or
    without statistics."""
    return sa.select(projects.c.id).where(projects.c.name == project).scalar_subquery()


runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    sa.Column("run_id", sa.String(128), nullable=False),
    sa.Column("name", sa.String(512), nullable=False, default=""),
    sa.Column("state", sa.String(16), nullable=False, default="running"),
    sa.Column("tags", Json, nullable=False, default=list),
    sa.Column("group_name", sa.String(512), nullable=False, default=""),
    sa.Column("job_type", sa.String(128), nullable=False, default=""),
    sa.Column("notes", sa.Text, nullable=False, default=""),
    sa.Column("host", sa.String(256), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=True),  # time of the last record ingested
    sa.Column("heartbeat_at", sa.Float, nullable=True),  # when the store last saw the log grow
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("config", Json, nullable=False, default=dict),
    sa.Column("summary", Json, nullable=False, default=dict),
    sa.Column("keys", Json, nullable=False, default=list),
    sa.Column("last_step", sa.BigInteger, nullable=True),
    sa.Column("log_path", sa.Text, nullable=False),
    sa.Column("log_offset", sa.BigInteger, nullable=False, default=0),  # bytes of the log ingested
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    # Where and how it ran (command, git, Python, GPUs...): tracklet/store/run_data.py.
    sa.Column("metadata", Json, nullable=False, default=dict, server_default="{}"),
    sa.UniqueConstraint("project_id", "run_id", name="uq_runs_project_run"),
    # Each listing index ends with run_id, every sort's last key (0014: filters.compile_sort), so a
    # page in its order reads the page's rows, ties included.
    sa.Index("ix_runs_project_created", "project_id", "created_at", "run_id"),
    sa.Index("ix_runs_project_state", "project_id", "state", "run_id"),  # 0012: the dashboard's poll of running runs
    sa.Index("ix_runs_project_name", "project_id", "name", "run_id"),  # 0013: a page of runs sorted by name
)
# Newest first with missing times last (every listing's default order): PostgreSQL reads the index
# above backwards as `created_at DESC NULLS FIRST` only; SQLite's order is this one already, and it
# has no NULLS LAST in an index (store migration 0012).
sa.Index("ix_runs_project_created_desc", runs.c.project_id, runs.c.created_at.desc().nulls_last(),
         runs.c.run_id.desc()).ddl_if(
    dialect="postgresql")

series = sa.Table(
    "series",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(1024), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # "number", "system" or "system_max" (all pyramids)
    sa.Column("count", sa.BigInteger, nullable=False, default=0),
    sa.Column("first_step", sa.BigInteger, nullable=True),
    sa.Column("last_step", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("run_pk", "kind", "key", name="uq_series_run_kind_key"),
)

blocks = sa.Table(
    "blocks",
    metadata,
    sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("level", sa.SmallInteger, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("first_step", sa.BigInteger, nullable=False),
    sa.Column("last_step", sa.BigInteger, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),  # entries in the block
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Index("ix_blocks_range", "series_id", "level", "last_step"),
)

# A run's console output: one row per line, numbered from 1 in the order the log has them.
console_lines = sa.Table(
    "console_lines",
    metadata,
    sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("stream", sa.String(8), nullable=False),  # "stdout" or "stderr"
    sa.Column("text", sa.Text, nullable=False),  # at most MAX_LINE_CHARS characters (run_data.py)
)

# A run's alerts (run.alert(...)): one row per alert, numbered from 1 in log order.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),  # INFO, WARN, ERROR (or UNSPECIFIED)
    sa.Column("title", sa.Text, nullable=False),  # at most MAX_ALERT_TITLE characters (run_data.py)
    sa.Column("text", sa.Text, nullable=False),  # at most MAX_ALERT_TEXT characters
)

# A shared run's parts (its secondary writers' logs, docs/shared-runs.md): how far each is indexed
# and what changes with every chunk of it, one row per (run, label), so indexing a part's new
# records writes one small row, not the run's whole ``metadata["parts"]`` (store migration 0016).
# What readers show of a part (its state, exit code, host, keys) stays in ``metadata["parts"]``,
# rewritten only when that changes.
run_parts = sa.Table(
    "run_parts",
    metadata,
    sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("label", sa.String(128), primary_key=True),
    sa.Column("log_offset", sa.BigInteger, nullable=False),  # bytes of the part's log indexed
    sa.Column("state", sa.String(16), nullable=False),  # as metadata["parts"][label]["state"]
    sa.Column("last_step", sa.BigInteger, nullable=True),  # the part's last history step
    sa.Column("system_ms", sa.BigInteger, nullable=True),  # its last system metrics sample's time
)

# Artifact lineage (``artifact_edges``) is defined beside its queries, on this ``metadata``.
from tracklet.store import lineage as _lineage  # noqa: E402,F401
# Logged media (``media``) likewise.
from tracklet.store import media as _media  # noqa: E402,F401
# Trace spans (``spans``) likewise.
from tracklet.store import spans as _spans  # noqa: E402,F401
# Sortable config and summary values (``run_sort_values``, store migration 0015) likewise.
from tracklet.store import sort_values as _sort_values  # noqa: E402,F401
