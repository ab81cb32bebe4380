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
A fork waits for the warm-up under way, and so does interpreter exit (``core/warmup.py`` says why;
an exit that didn't aborted 1 server in 6 stopped a second after its start).
"""

from __future__ import annotations

from tracklet.core.warmup import WarmUp

# Seconds the warm-up waits before it imports: the server's start-up, and the requests queued while
# it started (a health check, the dashboard's page), are answered first, not beside ~0.3 s of imports.
DELAY = 0.25


def _warm() -> None:
    """Import the query stack, make the process's DuckDB database and run one statement on it to
    Arrow (what a table request's count and page go through)."""
    import pyarrow  # noqa: F401  (DuckDB's to_arrow_table imports it; the page is Arrow)
    import pyarrow.parquet  # noqa: F401  (TableQuery._logged_types reads the logged schema)

    from tracklet.media import query, table_read  # noqa: F401  (what the table routes import)

    cursor = query._cursor()  # imports duckdb, makes the database once per process
    try:
        cursor.sql("SELECT 1 AS warm").to_arrow_table()
    finally:
        cursor.close()


WARM_UP = WarmUp("tracklet-query-warm", _warm, fork_wait=5.0, exit_wait=30.0)


def start(delay: float = DELAY) -> None:
    """Start the warm-up ``delay`` seconds from now, once per process; later calls return at once."""
    WARM_UP.start(delay)
