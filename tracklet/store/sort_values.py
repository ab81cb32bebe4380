"""Sortable config and summary values: a page of runs sorted by ``config.KEY`` or ``summary.KEY``
read in an index's order (store migration 0015).

``run_sort_values`` holds one row per (run, config or summary, path) whose value is a JSON number or
string, found by walking nested objects (never arrays) up to ``MAX_DEPTH`` keys deep: the value as
the sort compares it (``num``: the number as a double, as ``filters.compile_sort`` casts it;
``text``: the string) and its ``rank`` (0 number, 1 string, 2 a string longer than ``MAX_CHARS``,
which is not indexed). ``ix_run_sort_values_order`` (project_id, source, path, rank, num, text,
run_id) lists a project's runs by one key's numbers, then by its strings, ties by run id, both ways
(read backwards for a descending sort): what ``compile_sort`` orders by, so ``Store.runs`` reads a
page of 50 as 50 index entries where it read and sorted every run of the project.

The rows are kept by triggers on ``runs`` (written in the migration, per dialect): inserting a run,
or changing its config or summary, writes what changed (an upsert that leaves equal values alone,
and a delete of the paths gone) in the same transaction, whoever writes the row (the indexer, a
server's appends, ``tracklet index --rebuild``); deleting a run deletes its rows (foreign key). The
values are computed by the database with the same JSON functions and casts the sort used, so the
order is the same on each backend: numbers numerically (an integer past a double's range as
+-infinity, one below its smallest as 0, where PostgreSQL's cast fails), strings by the column's
collation, booleans, nulls (NaN and infinities are stored as null), objects, lists and missing keys
after both, ties by run id.

A path is its keys joined by ``.``, each key with ``\\`` written ``\\\\`` and ``.`` written ``\\.``
(``path_text``): ``config.model.lr`` is ``model.lr``, the single key ``"a.b"`` is ``a\\.b``.
A later migration that changes ``runs`` does it through ``sort_value_triggers.batch_alter_runs``:
SQLite's ``batch_alter_table`` (copy, drop, rename) drops the triggers with the old table, and the
table went stale with no error (a test checks every trigger is there at the head). What the table cannot answer exactly is read as before (``sort_path`` says None): a path deeper
than ``MAX_DEPTH`` keys or longer than ``MAX_CHARS``, a key whose runs hold a string longer than
``MAX_CHARS``, and a dotted path (``summary.eval.acc``) that some runs hold nested and others as
the one key it spells (``filters._json_at`` takes either, per run).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tracklet.store.schema import metadata, runs
from tracklet.store.text import store_text

__all__ = ["MAX_CHARS", "MAX_DEPTH", "SOURCES", "key_ranges", "missing", "path_text", "sort_path", "sort_values"]

#: Keys deep a path is indexed to (``config.a.b.c.d.e.f``); deeper ones are sorted as before.
MAX_DEPTH = 6
#: The longest path and string indexed, in characters (a PostgreSQL index entry holds ~2.7 KB).
MAX_CHARS = 200
#: ``source`` of a row: which JSON column of the run it comes from.
SOURCES = {"config": 0, "summary": 1}
NUMBER, STRING, LONG_STRING = 0, 1, 2

sort_values = sa.Table(
    "run_sort_values",
    metadata,
    sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("source", sa.SmallInteger, primary_key=True, autoincrement=False),  # SOURCES
    sa.Column("path", sa.Text, primary_key=True),  # path_text
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("run_id", sa.String(128), nullable=False),
    sa.Column("rank", sa.SmallInteger, nullable=False),  # NUMBER, STRING or LONG_STRING
    sa.Column("num", sa.Float, nullable=True),
    sa.Column("text", sa.Text, nullable=True),
    sa.Index("ix_run_sort_values_order", "project_id", "source", "path", "rank", "num", "text", "run_id"),
)


def path_text(keys: tuple[str, ...]) -> str:
    """The path of ``keys`` as ``run_sort_values`` holds it: each key (as the store holds it, NUL as
    U+FFFD) with ``\\`` doubled and ``.`` escaped, joined by ``.``; the triggers write the same."""
    return ".".join(store_text(key).replace("\\", "\\\\").replace(".", "\\.") for key in keys)


def sort_path(connection: sa.Connection, project_id: Any, field: Any) -> str | None:
    """The path of ``run_sort_values`` that orders ``project_id``'s runs by ``field`` (a
    ``filters.Field`` of config or summary) exactly as ``filters.compile_sort`` does, or None when
    the table can't (see the module's docstring): two index seeks per candidate path (each the first entry in the index's order)."""
    keys = field.path
    if not keys or len(keys) > MAX_DEPTH:
        return None
    source = SOURCES[field.name]
    candidates = [path_text(keys)] + ([path_text((".".join(keys),))] if len(keys) > 1 else [])
    if any(len(path) > MAX_CHARS for path in candidates):
        return None

    def exists(path: str, *, long: bool) -> sa.ColumnElement[bool]:
        # The first entry in the index's order, not EXISTS: with the key statistics (store
        # migration 0017) PostgreSQL expects a common path's rows all over the table and took a
        # sequential scan for EXISTS, reading rows of every key (and project) before the first of
        # this one's, as many as the table holds where they were written last; ordered, the index
        # gives the first entry.
        found = sa.select(sa.literal(1)).where(
            sort_values.c.project_id == project_id, sort_values.c.source == source, sort_values.c.path == path)
        if long:
            found = found.where(sort_values.c.rank == LONG_STRING)
        return found.order_by(sort_values.c.rank).limit(1).scalar_subquery().is_not(None)

    probes = [exists(path, long=long) for path in candidates for long in (False, True)]
    found = connection.execute(sa.select(*(sa.case((probe, 1), else_=0) for probe in probes))).one()
    if any(found[1::2]):  # a string too long to index: its order is the JSON sort's
        return None
    if len(candidates) == 2 and found[0] and found[2]:  # some runs nest it, some spell it as one key
        return None
    return candidates[1] if len(candidates) == 2 and found[2] else candidates[0]


def missing(source: int, path: str, *, per_run: bool = False) -> sa.ColumnElement[bool]:
    """The runs (of ``runs``) with no number or string at ``path``: they sort last both ways.

    ``per_run`` (PostgreSQL): each run's entry looked up by its primary key (run, source, path),
    as a scalar subquery, which the planner never turns into a join. ``NOT EXISTS`` it planned as
    an anti-join that hashed every entry of the key in the table first (or scanned the whole table:
    140,000 rows for a key ten runs hold, where the page reads its runs' entries only); SQLite
    runs ``NOT EXISTS`` per run already, by the same key."""
    entry = sa.select(sa.literal(1)).where(
        sort_values.c.run_pk == runs.c.id, sort_values.c.source == source, sort_values.c.path == path)
    if per_run:
        return entry.limit(1).scalar_subquery().is_(None)
    return ~entry.exists()


_OPERATORS = {"=": "__eq__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}


def key_ranges(expr: Any, field: Any) -> tuple[int, list[sa.ColumnElement[bool]]] | None:
    """Where a filter compares the sort key (``field``) with numbers (or strings) in its top-level
    conjuncts (``config.lr >= 0.5 and ...``), only runs whose value is a number (a string) can
    match: that part of the index (its rank) and the ranges of ``num`` (``text``) the comparisons
    allow, which hold for every run the filter selects (it is applied too); else None."""
    from tracklet.store.filters import And, Compare

    found: dict[int, list[sa.ColumnElement[bool]]] = {}
    for term in expr.operands if isinstance(expr, And) else (expr,):
        if not (isinstance(term, Compare) and term.field == field and term.op in _OPERATORS):
            continue
        value = term.value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        if isinstance(value, str):
            found.setdefault(STRING, []).append(getattr(sort_values.c.text, _OPERATORS[term.op])(store_text(value)))
        else:
            found.setdefault(NUMBER, []).append(getattr(sort_values.c.num, _OPERATORS[term.op])(float(value)))
    if len(found) != 1:  # none, or a number and a string (no run matches both: the plain reading is fine)
        return None
    ((rank, conditions),) = found.items()
    return rank, conditions
