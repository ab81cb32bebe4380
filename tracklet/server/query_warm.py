"""Warming the table query stack on a thread of its own, once per process (the server's).

Why: a server's first table request imported what queries run on (duckdb, pyarrow and
pyarrow.parquet, this package's query modules: ~300 ms of CPU on an idle machine) and set up
the process's DuckDB database (``query._cursor``: ~20 ms) before its own query, so the first
table a user opened after ``tracklet ui`` or ``tracklet server`` started took 0.5-0.7 s more
than the next. The server's lifespan calls ``start`` as it starts (``app.py``), and the imports begin
``DELAY`` seconds later, once it is listening and has answered what was queued meanwhile: they
happen while the user's browser loads the dashboard, and a table request that comes sooner waits
only for what is left of them (Python's import lock), never for more.

Nothing waits for the warm-up: not start-up, not a health check, not a request (it shares the
interpreter's lock with them, no more). If duckdb or pyarrow is missing or broken, the warm-up
ends quietly: the first table request imports them itself and reports what is missing
(``MissingDependency``), as without the warm-up. Importing this module imports nothing heavy.

A fork while the warm-up imports would leave the child with half-imported modules whose import
locks belong to a thread the child doesn't have: ``os.fork`` first waits for the warm-up, at most
``FORK_WAIT`` seconds once the imports have begun (as ``media.warm`` does for the media worker's encoders).
A process that exits while the warm-up imports waits for it too (``atexit``, at most ``EXIT_WAIT``
seconds): Python ends a daemon thread still running at exit with a forced unwind, which DuckDB's or
pyarrow's C++ import code caught, and the process aborted ("terminate called after throwing an
instance of ''", 1 exit in 6 of a server stopped a second after its start; as ``sweeps.gp_imports``).
"""

from __future__ import annotations

import atexit
import os
import threading
import time

# Seconds the warm-up waits before it imports: the server's start-up, and the requests queued while
# it started (a health check, the dashboard's page), are answered first, not beside ~0.3 s of imports.
DELAY = 0.25
# The longest os.fork() waits for a warm-up under way.
FORK_WAIT = 5.0
# The longest interpreter exit waits for a warm-up under way.
EXIT_WAIT = 30.0

IMPORTING = threading.Event()  # set once the delay is over
DONE = threading.Event()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def start(delay: float = DELAY) -> None:
    """Start the warm-up (a daemon thread) ``delay`` seconds from now, once per process; later calls
    return at once."""
    global _thread
    with _lock:
        if _thread is not None:
            return
        _thread = threading.Thread(target=_warm, args=(delay,), name="tracklet-query-warm", daemon=True)
    _thread.start()


def _warm(delay: float = 0.0) -> None:
    """After ``delay`` seconds, import the query stack, make the process's DuckDB database and run
    one statement on it to Arrow (what a table request's count and page go through)."""
    try:
        time.sleep(delay)
        IMPORTING.set()
        import pyarrow  # noqa: F401  (DuckDB's to_arrow_table imports it; the page is Arrow)
        import pyarrow.parquet  # noqa: F401  (TableQuery._logged_types reads the logged schema)

        from tracklet.media import query, table_read  # noqa: F401  (what the table routes import)

        cursor = query._cursor()  # imports duckdb, makes the database once per process
        try:
            cursor.sql("SELECT 1 AS warm").to_arrow_table()
        finally:
            cursor.close()
    except Exception:  # duckdb or pyarrow missing or broken: the first table request says so
        pass
    finally:
        DONE.set()


def _before_fork() -> None:
    if IMPORTING.is_set():
        DONE.wait(FORK_WAIT)


def _after_fork_in_child() -> None:
    """The child has no warm-up thread: one unfinished may be started again there."""
    global _thread, _lock
    _lock = threading.Lock()
    if not DONE.is_set():
        IMPORTING.clear()
        _thread = None


def _wait_at_exit() -> None:
    """Let a warm-up under way end before the interpreter does: its thread joined, not only its
    imports done (``DONE``): what it made is destroyed as it returns, and a DuckDB cursor's C++
    destructor caught in the forced unwind aborted the process as an import did."""
    thread = _thread
    if thread is not None and thread.is_alive():  # its delay may not be over: it imports next
        thread.join(EXIT_WAIT)


atexit.register(_wait_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
