"""Whether a database error says the database is unavailable (transient) or a query is wrong.

PostgreSQL restarted, failed over or out of connections, a SQLite file locked past its timeout:
SQLAlchemy raises one of its operational errors. Those are transient; the server answers them
with 503 (``server/db_unavailable.py``). SQLite reports programming errors ("no such column") as
``OperationalError`` too: only its busy, locked, I/O, full and open failures count as
unavailable there, so a defect still surfaces as one. The store owns this classification: it is
the layer that knows SQLAlchemy and its drivers.
"""

from __future__ import annotations

import sqlalchemy as sa

_SQLITE_TRANSIENT = ("locked", "busy", "disk i/o", "database or disk is full", "unable to open")

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)
"""SQLAlchemy's errors for a database that can't be reached or used right now."""


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database is unavailable (rather than that a query is wrong)."""
    if not isinstance(error, UNAVAILABLE_ERRORS):
        return False
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    origin = getattr(error, "orig", None)
    if origin is not None and type(origin).__module__.startswith("sqlite3"):
        text = str(origin).lower()
        return any(word in text for word in _SQLITE_TRANSIENT)
    return True


__all__ = ["UNAVAILABLE_ERRORS", "is_unavailable"]
