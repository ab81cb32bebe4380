"""Where a data root keeps its reports: ``<root>/reports.sqlite`` (``tables.py``), created on the
first save; one ``ReportStore`` per file and process. A server keeps the same tables in its own
database (``server/routes_reports.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tracklet.core import forksafe
from tracklet.reports.sql import ReportStore

REPORTS_FILE = "reports.sqlite"

# The last few roots' stores stay open; an older one goes once nothing holds it, its engine disposed
# (forksafe.Recent: a dict kept every root's connections for the process's life).
_opened = forksafe.recent()
_opened_lock = forksafe.lock()


def reports_file(root: str | os.PathLike) -> Path:
    return Path(root).expanduser() / REPORTS_FILE


def open_local(root: str | os.PathLike, *, create: bool = True) -> ReportStore | None:
    """The reports of data root ``root``; None if it has none and not ``create``."""
    from tracklet.store.engine import create_engine, is_read_only

    path = reports_file(root)
    key = str(path.resolve() if path.exists() else path)
    with _opened_lock:
        found = _opened.get(key)
        if found is not None:
            return found
        if not create and not path.is_file():
            return None
        engine = create_engine(f"sqlite:///{path}", what="the reports")  # the store's SQLite settings (WAL, busy timeout)
        if not is_read_only(engine):  # one this user can't write is read as its writer left it
            _create_tables(engine)
        found = _opened[key] = ReportStore(engine)
        forksafe.release_with(found, engine.dispose)
        return found


def _create_tables(engine: Any) -> None:
    """The tables, if missing; a concurrent creator's "already exists" is their winner's work."""
    import sqlalchemy as sa

    from tracklet.reports.tables import metadata, sqlite_append_only_triggers

    for attempt in range(10):
        try:
            metadata.create_all(engine, checkfirst=True)
            with engine.begin() as connection:
                for statement in sqlite_append_only_triggers():
                    connection.exec_driver_sql(statement)
            return
        except sa.exc.OperationalError as error:
            if "already exists" not in str(error) or attempt == 9:
                raise


def default_actor() -> str:
    """Who saves in local mode: ``$TRACKLET_ACTOR``, else the OS user (as the registry's)."""
    from tracklet.registry.service import default_actor as actor

    return actor()
