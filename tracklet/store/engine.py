"""Opening a store: the SQLAlchemy engine for a URL, dialect settings, and migrations to head."""

from __future__ import annotations

import contextlib
import errno
import json
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from tracklet.errors import MissingDriver, StoreUnavailable  # noqa: F401  (defined there; imported from here too)

NUL, REPLACEMENT = "\x00", "\ufffd"  # as tracklet/store/text.py (not imported here: it imports the schema)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_FILE = "store.sqlite"
MIGRATION_LOCK = 0x747261636B6C6574  # "tracklet": the advisory lock a migration holds on PostgreSQL


def store_url(root: str | Path) -> str:
    """The embedded default: SQLite in the data root."""
    return f"sqlite:///{Path(root) / SQLITE_FILE}"


def _sqlite_pragmas(connection: object, record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    # First, so that the pragmas below wait for (rather than fail on) another process's write.
    cursor.execute("PRAGMA busy_timeout=10000")
    # WAL: readers never block the one writer and never see a half-written transaction.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    register_sqlite_functions(connection)


def register_sqlite_functions(connection: object) -> None:
    """The functions run filters call on SQLite (a sqlite3 connection): ``tracklet_regexp`` for
    ``=~`` (store/regex.py; google-re2 is imported only when a pattern first runs)."""
    from tracklet.store.regex import SQLITE_FUNCTION, sqlite_regexp

    connection.create_function(SQLITE_FUNCTION, 2, sqlite_regexp, deterministic=True)  # type: ignore[attr-defined]


def _json_dumps(value: object) -> str:
    """JSON as a store engine writes it: every string and key NUL-free (``store_json``), so that
    PostgreSQL's ``jsonb`` never meets the escape ``\\u0000`` it refuses."""
    from tracklet.store.text import store_json

    return json.dumps(store_json(value))


def _nul_free(value: Any) -> Any:
    """``value`` (a statement's parameters: a dict or sequence of them, or one bound value) with
    every NUL of every string, in lists and tuples too (``ANY(:names)``), replaced by U+FFFD;
    returned as it is, uncopied, when it holds none (the common case: one type check per value)."""
    kind = type(value)
    if kind is str:
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if kind is dict:
        for item in value.values():
            if (type(item) is str and NUL in item) or type(item) in _CONTAINERS:
                return {key: _nul_free(item) for key, item in value.items()}
        return value
    if kind in _CONTAINERS:
        for item in value:
            if (type(item) is str and NUL in item) or type(item) in _CONTAINERS:
                return kind(_nul_free(item) for item in value)
        return value
    return value


_CONTAINERS = (list, tuple, dict)


def _bind_nul_free(connection: object, cursor: object, statement: str, parameters: Any, context: object,
                   executemany: bool) -> tuple[str, Any]:
    """The store's text rule (tracklet/store/text.py) for every parameter any statement of a store
    engine binds: NUL kept as U+FFFD, written and looked up alike, so a NUL that a route, the Python
    API or the CLI passes on (a filter, a search, a name, a path or query parameter, a JSON body)
    finds what the store holds instead of failing on PostgreSQL (``text`` cannot hold NUL: psycopg
    raised and the route answered 500); on SQLite too, so both backends hold and find the same."""
    return statement, _nul_free(parameters)


def _store_engine(url: str, **options: Any) -> sa.Engine:
    engine = sa.create_engine(url, json_serializer=_json_dumps, **options)
    event.listen(engine, "before_cursor_execute", _bind_nul_free, retval=True)
    return engine


#: Engines over a SQLite file this user can't write (``read_only_engine``): ``migrate`` only checks them.
_READ_ONLY: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def is_read_only(engine: sa.Engine) -> bool:
    """Whether ``engine`` reads a SQLite file this process can't write (``create_engine``)."""
    return engine in _READ_ONLY


def create_engine(url: str, *, what: str = "the store") -> sa.Engine:
    """A store's engine for ``url``. A SQLite file that exists but can't be written by this user
    (a read-only mount, another user's data root) is opened read-only (``read_only_engine``); one
    that doesn't exist where nothing can be created is ``ReadOnlyDataRoot`` naming ``what``."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            from tracklet.core.readonly import can_write, read_only_error, sqlite_is_read_only

            path = Path(database)
            if path.exists() and sqlite_is_read_only(path):
                return read_only_engine(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
            if not path.exists() and not can_write(path.parent):
                do = (f"run `tracklet index --dir {path.parent}` as a user who can write it" if what == "the store"
                      else "it can be made only where this user can write (--dir)")
                raise read_only_error(path.parent, f"{what} ({path.name}) isn't there and can't be made", do)
        engine = _store_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    try:
        return _store_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as error:  # SQLAlchemy imports the dialect's driver here
        extra = " (pip install 'tracklet[postgres]')" if url.startswith("postgresql") else ""
        raise MissingDriver(
            f"the store URL {sa.engine.make_url(url).render_as_string(hide_password=True)} needs the database "
            f"driver {error.name!r}, which is not installed{extra}"
        ) from None


def read_only_engine(path: Path) -> sa.Engine:
    """An engine reading SQLite file ``path`` without writing anything beside it
    (``core/readonly.py``: ``mode=ro`` where a writer's ``-shm`` is there, else ``immutable``). A
    connection is opened per use (no pool): each looks again whether a writer has the file open,
    so a reader of another user's live data root sees each index pass that user's process commits."""
    from sqlalchemy.pool import NullPool

    from tracklet.core.readonly import connect_read_only

    def connect() -> Any:
        connection = connect_read_only(path, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=10000")
        register_sqlite_functions(connection)
        return connection

    engine = _store_engine(f"sqlite:///{path}", creator=connect, poolclass=NullPool)
    _READ_ONLY.add(engine)
    return engine


def at_head(engine: sa.Engine, migrations: Path, version_table: str = "alembic_version") -> bool | None:
    """Whether the database's schema is at the newest revision of ``migrations`` (None: it has no
    version table at all), read without writing."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(version_table):
            return None
        context = MigrationContext.configure(connection, opts={"version_table": version_table})
        return set(context.get_current_heads()) == heads


def check_read_only_schema(engine: sa.Engine, migrations: Path, what: str, version_table: str = "alembic_version") -> bool:
    """For an engine that can't write (``is_read_only``): True if the schema is at head, False if
    it has none; ``ReadOnlyDataRoot`` if it is older than this tracklet reads (it can't be migrated here)."""
    state = at_head(engine, migrations, version_table)
    if state is False:
        from tracklet.core.readonly import read_only_error

        path = Path(engine.url.database or "")
        raise read_only_error(path.parent, f"{what} ({path.name}) was written by another version of tracklet and "
                              "must be migrated first", f"run `tracklet index --dir {path.parent}` with this version "
                              "as a user who can write it")
    return bool(state)


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to the newest revision (creating it in an empty database); ``revision``: up
    to that one only (what an older tracklet left: the migrations' tests). A read-only engine's
    schema is only checked (``check_read_only_schema``)."""
    from alembic import command
    from alembic.config import Config

    if is_read_only(engine):
        if not check_read_only_schema(engine, MIGRATIONS, "the store"):
            from tracklet.core.readonly import read_only_error

            path = Path(engine.url.database or "")
            raise read_only_error(path.parent, f"the store ({path.name}) has no tables yet",
                                  f"run `tracklet index --dir {path.parent}` as a user who can write it")
        return
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with sqlite_migration_lock(engine), _opened(engine) as connection:
        if connection.dialect.name == "postgresql":
            # Server processes of one deployment may start at once: one migrates, the others wait.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextlib.contextmanager
def sqlite_migration_lock(engine: sa.Engine) -> Iterator[None]:
    """Hold ``<database>.migrate.lock`` (an exclusive ``flock``) while a SQLite file's schema is
    brought up to date (the store's, and the server's own tables): processes opening a new data root at once (a server and `tracklet ui`,
    distributed ranks) each found no schema and created it, and all but one failed with "table
    projects already exists" (SQLite runs DDL outside the migration's transaction)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def driver_reason(error: BaseException) -> str:
    """The database driver's first line for a SQLAlchemy error (not its statement and link)."""
    origin = getattr(error, "orig", None) or error
    lines = str(origin).strip().splitlines()
    return (lines[0] if lines else type(origin).__name__)[:300]


@contextlib.contextmanager
def _opened(engine: sa.Engine) -> Iterator[sa.Connection]:
    """``engine.begin()``, its first connection failing as :class:`StoreUnavailable` naming the
    store (password hidden) and the driver's reason: every command and the server open a store
    this way first, so a wrong ``--store`` or a database that is down is one line, not a traceback."""
    try:
        connection = engine.connect()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
        where = engine.url.render_as_string(hide_password=True).replace("+psycopg", "")
        raise StoreUnavailable(f"cannot open the store at {where}: {driver_reason(error)} (is the database "
                               "running, and does the URL name it?)") from None
    with connection:
        try:
            with connection.begin():
                yield connection
        finally:
            if connection.dialect.name == "sqlite":
                # A migration that rebuilt runs turned foreign keys off for it (sort_value_triggers
                # .batch_alter_runs): on again, outside the transaction (rolled back too, where the
                # upgrade failed), before the pool has it back.
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
