"""The triggers on ``runs`` that keep ``run_sort_values`` (store migration 0015), and what keeps
them there when a later migration changes ``runs``.

SQLite's ``ALTER TABLE`` can't change most of a table, so Alembic's ``batch_alter_table`` copies
``runs`` into a new table, drops the old one and renames the copy: the old table's triggers go
with it, silently, and ``run_sort_values`` goes stale (pages sorted by a config or summary key
list new and changed runs wrongly, with no error); and with foreign keys on (every store connection),
dropping the old table first deletes every run's series, blocks, console lines, alerts, media and
sort values (``ON DELETE CASCADE``). A migration that changes ``runs`` does it through
``batch_alter_runs(op)``, which turns foreign keys off for the rebuild (or refuses, naming why,
where it can't: inside a transaction that has written already) and creates the triggers SQLite
dropped again, as they were (``engine.migrate`` turns foreign keys on again once it committed);
``missing(connection)`` names the ones a database lacks (``tests/test_store_sort_values.py`` checks
none is missing after ``upgrade head`` on both backends, and that a rebuild keeps them).
PostgreSQL's ``ALTER TABLE`` changes the table in place and keeps its triggers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

__all__ = ["TRIGGERS", "batch_alter_runs", "missing"]

#: The triggers on ``runs`` that write ``run_sort_values`` (0015), on both backends.
TRIGGERS = tuple(f"tr_runs_sort_values_{name}" for name in ("insert", "config", "summary", "copies"))


def _sqlite_triggers(connection: sa.Connection) -> dict[str, str]:
    rows = connection.execute(sa.text(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'runs'"))
    return {name: sql for name, sql in rows}


def missing(connection: sa.Connection) -> list[str]:
    """The triggers of ``TRIGGERS`` that ``runs`` lacks in this database (none at store head)."""
    if connection.dialect.name == "sqlite":
        present = set(_sqlite_triggers(connection))
    else:
        present = set(connection.execute(sa.text(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'runs'::regclass AND NOT tgisinternal")).scalars())
    return [name for name in TRIGGERS if name not in present]


@contextlib.contextmanager
def batch_alter_runs(op: Any, **kwargs: Any) -> Iterator[Any]:
    """``op.batch_alter_table("runs", **kwargs)`` for a migration, keeping every trigger ``runs``
    has: on SQLite, where the batch rebuilds the table, each is created again afterwards from the
    SQL it was created with (a trigger naming a column the batch dropped fails there, loudly)."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        with op.batch_alter_table("runs", **kwargs) as batch:
            yield batch
        return
    kept = _sqlite_triggers(bind)
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "batch_alter_runs: foreign keys are on and can't be turned off inside a transaction that has "
            "written already; rebuilding runs now would delete every run's series, blocks, console lines, "
            "alerts, media and sort values (ON DELETE CASCADE): change runs before any data in this upgrade")
    with op.batch_alter_table("runs", **kwargs) as batch:
        yield batch
    if kept:
        present = _sqlite_triggers(bind)
        for name, sql in kept.items():
            if name not in present:
                op.execute(sql)
