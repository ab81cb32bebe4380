"""Sortable config and summary values: a page of runs sorted by ``config.KEY`` or ``summary.KEY``
reads the page's rows in an index's order (``tracklet/store/sort_values.py``), where both planners
read every run of the project and sorted them (SQLite ~1.15M VM instructions, PostgreSQL a full
read of the project's runs, for a page of 50 at 50,000 runs: docs/performance.md, session 27).

``run_sort_values`` (run_pk, source, path, project_id, run_id, rank, num, text): one row per number
or string in a run's config (source 0) or summary (1), found through nested objects (not arrays) up
to 6 keys deep, a path of at most 200 characters (keys joined by ``.``, ``\\`` and ``.`` in a key
escaped with ``\\``); ``rank`` 0 a number (``num``: as the sort casts it to a double), 1 a string of
at most 200 characters (``text``), 2 a longer one (not indexed: such a key is sorted as before).
``ix_run_sort_values_order`` (project_id, source, path, rank, num, text, run_id).

Triggers on ``runs`` keep it, in the writing transaction, whoever writes a run: on INSERT every
value; on UPDATE OF config (or summary), when it changed, an upsert that writes only the values
that changed and a delete of the paths gone; on UPDATE OF project_id or run_id, the copies; a
deleted run's rows go by the foreign key (ON DELETE CASCADE; SQLite's ``foreign_keys`` is on in
every store connection). The values come from the database's own JSON functions, as the sort's
expressions do (``filters.compile_sort``): SQLite's ``json_each`` and ``CAST(... AS REAL)``;
PostgreSQL's ``jsonb_each`` and ``float8`` (an integer past a double's range is +-infinity and one
below its smallest 0, as SQLite has them, where PostgreSQL's cast raises). SQLite allows no WITH
in a trigger, so each depth is its own join of ``json_each``; PostgreSQL walks with a recursive
query in the function ``tracklet_sort_leaves(jsonb)``.

The upgrade fills the table from every run already stored, 2,000 runs per statement (the database
walks each run's JSON; nothing is held in Python). The downgrade drops the triggers, the function
and the table.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

MAX_DEPTH = 6
MAX_CHARS = 200
BATCH = 2000
SOURCES = (("config", 0), ("summary", 1))
COLUMNS = "run_pk, source, path, project_id, run_id, rank, num, text"
# PostgreSQL's float8 refuses a number that rounds to infinity or, non-zero, to 0: taken as SQLite
# has them (exact bounds: 2**1024 - 2**970 rounds to infinity, 2**-1075 to 0).
_OVER = str(2**1024 - 2**970)
_UNDER = "0." + str(5**1075).rjust(1075, "0")


def _escaped(key: str) -> str:
    return f"replace(replace({key}, '\\', '\\\\'), '.', '\\.')"


def _sqlite_leaves(document: str, run: str = "NEW", runs: str = "") -> str:
    """(run_pk, project_id, run_id, path, rank, num, text) of each number and string in ``document``
    (a JSON text) on SQLite: each depth a join of ``json_each`` (``runs``: a FROM item before them)."""
    levels = []
    for depth in range(1, MAX_DEPTH + 1):
        froms, conditions = [runs] if runs else [], []
        for level in range(1, depth + 1):
            source = (f"CASE WHEN json_type({document}) = 'object' THEN {document} ELSE '{{}}' END" if level == 1
                      else f"CASE WHEN e{level - 1}.type = 'object' THEN e{level - 1}.value ELSE '{{}}' END")
            froms.append(f"json_each({source}) AS e{level}")
            if level < depth:
                conditions.append(f"e{level}.type = 'object'")
        conditions.append(f"e{depth}.type IN ('integer', 'real', 'text')")
        path = " || '.' || ".join(_escaped(f"e{level}.key") for level in range(1, depth + 1))
        levels.append(f"SELECT {run}.id AS run_pk, {run}.project_id AS project_id, {run}.run_id AS run_id, "
                      f"{path} AS path, e{depth}.type AS type, e{depth}.value AS value "
                      f"FROM {', '.join(froms)} WHERE {' AND '.join(conditions)}")
    return (
        "SELECT run_pk, project_id, run_id, path, "
        "CASE WHEN type != 'text' THEN 0 WHEN length(value) <= {chars} THEN 1 ELSE 2 END AS rank, "
        "CASE WHEN type != 'text' THEN CAST(value AS REAL) END AS num, "
        "CASE WHEN type = 'text' AND length(value) <= {chars} THEN value END AS text "
        "FROM ({levels}) WHERE length(path) <= {chars}"
    ).format(chars=MAX_CHARS, levels=" UNION ALL ".join(levels))


_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tracklet_sort_leaves(document jsonb)
RETURNS TABLE (path text, rank smallint, num double precision, text text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $body$
WITH RECURSIVE walk (depth, path, value) AS (
    SELECT 1, {_escaped("e.key")}, e.value
    FROM jsonb_each(CASE WHEN jsonb_typeof(document) = 'object' THEN document ELSE '{{}}'::jsonb END) AS e
    UNION ALL
    SELECT walk.depth + 1, walk.path || '.' || {_escaped("e.key")}, e.value
    FROM walk, jsonb_each(CASE WHEN jsonb_typeof(walk.value) = 'object' THEN walk.value ELSE '{{}}'::jsonb END) AS e
    WHERE jsonb_typeof(walk.value) = 'object' AND walk.depth < {MAX_DEPTH}
)
SELECT path,
       (CASE WHEN jsonb_typeof(value) = 'number' THEN 0 WHEN length(value #>> '{{}}') <= {MAX_CHARS} THEN 1
             ELSE 2 END)::smallint,
       CASE WHEN jsonb_typeof(value) != 'number' THEN NULL
            WHEN value::numeric >= {_OVER} THEN 'Infinity'::double precision
            WHEN value::numeric <= -{_OVER} THEN '-Infinity'::double precision
            WHEN abs(value::numeric) <= {_UNDER} THEN 0::double precision
            ELSE (value #>> '{{}}')::double precision END,
       CASE WHEN jsonb_typeof(value) = 'string' AND length(value #>> '{{}}') <= {MAX_CHARS} THEN value #>> '{{}}' END
FROM walk
WHERE jsonb_typeof(value) IN ('number', 'string') AND length(path) <= {MAX_CHARS}
$body$
"""


def _pg_leaves(document: str, run: str = "NEW") -> str:
    return (f"SELECT {run}.id AS run_pk, {run}.project_id AS project_id, {run}.run_id AS run_id, path, rank, num, "
            f"text FROM tracklet_sort_leaves({document})")


def _upsert(leaves: str, source: int) -> str:
    """Write the values of ``source`` that ``leaves`` finds and the table holds otherwise."""
    return (
        f"INSERT INTO run_sort_values ({COLUMNS}) "
        f"SELECT leaf.run_pk, {source}, leaf.path, leaf.project_id, leaf.run_id, leaf.rank, leaf.num, leaf.text "
        f"FROM ({leaves}) AS leaf WHERE true "
        "ON CONFLICT (run_pk, source, path) DO UPDATE SET rank = excluded.rank, num = excluded.num, "
        "text = excluded.text WHERE run_sort_values.rank IS DISTINCT FROM excluded.rank "
        "OR run_sort_values.num IS DISTINCT FROM excluded.num OR run_sort_values.text IS DISTINCT FROM excluded.text")


def _insert(leaves: str, source: int) -> str:
    return (f"INSERT INTO run_sort_values ({COLUMNS}) SELECT leaf.run_pk, {source}, leaf.path, leaf.project_id, "
            f"leaf.run_id, leaf.rank, leaf.num, leaf.text FROM ({leaves}) AS leaf")


def _delete_gone(leaves: str, source: int) -> str:
    return (f"DELETE FROM run_sort_values WHERE run_pk = NEW.id AND source = {source} "
            f"AND path NOT IN (SELECT leaf.path FROM ({leaves}) AS leaf)")


_COPIES = ("UPDATE run_sort_values SET project_id = NEW.project_id, run_id = NEW.run_id "
           "WHERE run_pk = NEW.id")


def _sqlite(sql: str) -> str:
    return sql.replace("IS DISTINCT FROM", "IS NOT")


def _create_sqlite() -> None:
    inserts = "; ".join(_sqlite(_upsert(_sqlite_leaves(f"NEW.{name}"), source)) for name, source in SOURCES)
    op.execute(f"CREATE TRIGGER tr_runs_sort_values_insert AFTER INSERT ON runs BEGIN {inserts}; END")
    for name, source in SOURCES:
        leaves = _sqlite_leaves(f"NEW.{name}")
        op.execute(f"CREATE TRIGGER tr_runs_sort_values_{name} AFTER UPDATE OF {name} ON runs "
                   f"WHEN OLD.{name} IS NOT NEW.{name} BEGIN {_delete_gone(leaves, source)}; "
                   f"{_sqlite(_upsert(leaves, source))}; END")
    op.execute("CREATE TRIGGER tr_runs_sort_values_copies AFTER UPDATE OF project_id, run_id ON runs "
               f"WHEN OLD.project_id IS NOT NEW.project_id OR OLD.run_id IS NOT NEW.run_id BEGIN {_COPIES}; END")


def _create_postgresql() -> None:
    op.execute(_PG_FUNCTION)
    inserts = "; ".join(_upsert(_pg_leaves(f"NEW.{name}"), source) for name, source in SOURCES)
    op.execute("CREATE OR REPLACE FUNCTION tracklet_runs_sort_values_insert() RETURNS trigger LANGUAGE plpgsql "
               f"AS $body$ BEGIN {inserts}; RETURN NULL; END $body$")
    op.execute("CREATE TRIGGER tr_runs_sort_values_insert AFTER INSERT ON runs FOR EACH ROW "
               "EXECUTE FUNCTION tracklet_runs_sort_values_insert()")
    for name, source in SOURCES:
        leaves = _pg_leaves(f"NEW.{name}")
        op.execute(f"CREATE OR REPLACE FUNCTION tracklet_runs_sort_values_{name}() RETURNS trigger "
                   f"LANGUAGE plpgsql AS $body$ BEGIN {_delete_gone(leaves, source)}; "
                   f"{_upsert(leaves, source)}; RETURN NULL; END $body$")
        op.execute(f"CREATE TRIGGER tr_runs_sort_values_{name} AFTER UPDATE OF {name} ON runs FOR EACH ROW "
                   f"WHEN (OLD.{name} IS DISTINCT FROM NEW.{name}) "
                   f"EXECUTE FUNCTION tracklet_runs_sort_values_{name}()")
    op.execute("CREATE OR REPLACE FUNCTION tracklet_runs_sort_values_copies() RETURNS trigger "
               f"LANGUAGE plpgsql AS $body$ BEGIN {_COPIES}; RETURN NULL; END $body$")
    op.execute("CREATE TRIGGER tr_runs_sort_values_copies AFTER UPDATE OF project_id, run_id ON runs FOR EACH ROW "
               "WHEN (OLD.project_id IS DISTINCT FROM NEW.project_id OR OLD.run_id IS DISTINCT FROM NEW.run_id) "
               "EXECUTE FUNCTION tracklet_runs_sort_values_copies()")


def upgrade() -> None:
    op.create_table(
        "run_sort_values",
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("source", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("rank", sa.SmallInteger, nullable=False),
        sa.Column("num", sa.Float, nullable=True),
        sa.Column("text", sa.Text, nullable=True),
    )
    op.create_index("ix_run_sort_values_order", "run_sort_values",
                    ["project_id", "source", "path", "rank", "num", "text", "run_id"])
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    if postgresql:
        _create_postgresql()
    else:
        _create_sqlite()
    # The runs stored already, BATCH per statement, by id.
    last = bind.execute(sa.text("SELECT max(id) FROM runs")).scalar()
    for low in range(0, (last or 0) + 1, BATCH):
        for name, source in SOURCES:
            if postgresql:
                leaves = (f"SELECT runs.id AS run_pk, runs.project_id, runs.run_id, leaf.path, leaf.rank, leaf.num, "
                          f"leaf.text FROM runs CROSS JOIN LATERAL tracklet_sort_leaves(runs.{name}) AS leaf "
                          "WHERE runs.id >= :low AND runs.id < :high")
            else:
                leaves = _sqlite_leaves(f"runs.{name}", "runs", "runs").replace(
                    "WHERE e1.", "WHERE runs.id >= :low AND runs.id < :high AND e1.")
            bind.execute(sa.text(_insert(leaves, source)), {"low": low, "high": low + BATCH})


def downgrade() -> None:
    for name in ("insert", "config", "summary", "copies"):
        op.execute(f"DROP TRIGGER IF EXISTS tr_runs_sort_values_{name}" +
                   (" ON runs" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        for name in ("insert", "config", "summary", "copies"):
            op.execute(f"DROP FUNCTION IF EXISTS tracklet_runs_sort_values_{name}()")
        op.execute("DROP FUNCTION IF EXISTS tracklet_sort_leaves(jsonb)")
    op.drop_index("ix_run_sort_values_order", table_name="run_sort_values")
    op.drop_table("run_sort_values")
