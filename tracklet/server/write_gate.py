"""SQLite writers that queue instead of polling: the write gate of a server's database.

SQLite lets one connection write at a time. A connection that finds the write lock taken asks
its busy handler, which *sleeps* 1, 2, 5, 10, 15, 20, 25 ... ms between tries: a move that meets a
lock held for 1.5 ms waits 3 ms, one held for 4 ms waits 8 ms, one held for 9 ms waits 18 ms. An
alias move's p99 was those sleeps, between the server's requests and its webhook delivery
process, two writers of one database (traced: docs/registry.md, sessions 10-11).

``install(engine)`` makes every writing transaction of ``engine`` take the database's *gate*
before its first write statement and hand it back right after its COMMIT or ROLLBACK: a thread
lock for the writers of this process, then an exclusive ``flock`` on ``<database>-writer`` for the
writers of other processes that installed it too (the server and its delivery process). A waiter
is woken the moment the holder lets go (the kernel's or the lock's wake-up, no polling), and
SQLite's own lock is then free: its busy handler never sleeps between two gated writers. The gate
is held exactly while SQLite's write lock is (pysqlite begins a transaction at its first write
statement and SQLAlchemy commits through ``dialect.do_commit``), so it changes who waits how, never
what commits.

``tracklet admin`` installs it too on the server's database (its users, keys, members, artifact
collection). What the gate does not cover, SQLite's busy handler still does, as before: a writer
that did not install it (another program on the database), a thread writing on a second
connection while its first one holds the gate (it doesn't wait for itself: SQLite decides), and a
thread that waited ``WAIT`` seconds for another of its process (it goes on to SQLite's handler).
A process that dies holding the gate releases it with its ``flock``.

A COMMIT that checkpoints the log (SQLite's default past 1,000 pages) would do so holding the
gate: a server with a gate checkpoints in a thread of its own instead (``wal_checkpoint.py``).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

WAIT = 10.0  # seconds a writer waits for another thread of its process (SQLite's busy_timeout)
SUFFIX = "-writer"  # beside the database's -wal and -shm files
_HELD = "tracklet_write_gate"  # the pool record's info: this connection holds the gate
# Statements after which pysqlite has begun a transaction holding SQLite's write lock (the first
# word; a read-only ``WITH`` is gated too, harmlessly, until its transaction ends).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "CREATE", "DROP", "ALTER")


class WriteGate:
    """The gate of one SQLite database file, in this process (one per file: ``gate_of``)."""

    def __init__(self, path: Path, *, wait: float = WAIT) -> None:
        self.path = path
        self.wait = wait
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread holding it
        self._file: tuple[int, int] | None = None  # (pid, descriptor): a child process opens its own
        self.waits = 0  # takes that found the gate held (by a thread of this process or another process)

    def acquire(self) -> bool:
        """Take the gate for this thread; False when it went on without it (see the module
        docstring: this thread holds it already, or another thread did for ``wait`` seconds)."""
        me = threading.get_ident()
        if self._owner == me:
            return False
        if not self._lock.acquire(blocking=False):
            self.waits += 1
            if not self._lock.acquire(timeout=self.wait):
                return False
        try:
            descriptor = self._descriptor()
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process writes: wait for it (releasing the GIL)
                self.waits += 1
                fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:  # e.g. the directory gone: SQLite's own locking still decides
            self._lock.release()
            return False
        self._owner = me
        return True

    def release(self) -> None:
        self._owner = None
        try:
            if self._file is not None:
                fcntl.flock(self._file[1], fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _descriptor(self) -> int:
        if self._file is None or self._file[0] != os.getpid():
            self._file = (os.getpid(), os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        return self._file[1]


_gates: dict[Path, WriteGate] = {}
_gates_guard = threading.Lock()


def gate_of(database: str | Path) -> WriteGate:
    """This process's gate of the SQLite database file ``database``."""
    path = Path(str(database) + SUFFIX).resolve()
    with _gates_guard:
        gate = _gates.get(path)
        if gate is None:
            gate = _gates[path] = WriteGate(path)
        return gate


def install(engine: sa.Engine) -> WriteGate | None:
    """Gate ``engine``'s writing transactions (a SQLite file; anything else: None, nothing done).
    Idempotent."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    gate = gate_of(database)
    dialect = engine.dialect
    if getattr(dialect, "_tracklet_write_gate", None) is gate:
        return gate
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def take(connection: sa.Connection, cursor: Any, statement: str, parameters: Any, context: Any,
             executemany: bool) -> None:
        info = connection.info
        if _HELD not in info and statement.lstrip()[:7].upper().startswith(_WRITES):
            info[_HELD] = gate.acquire()

    def let_go(info: dict[Any, Any]) -> None:
        if info.pop(_HELD, False):
            gate.release()

    def info_of(dbapi_connection: Any) -> dict[Any, Any]:
        """The pool record's info of a connection SQLAlchemy commits (a first connect's has none)."""
        try:
            return dbapi_connection.info
        except (AttributeError, NotImplementedError):
            return {}

    def do_commit(dbapi_connection: Any) -> None:
        try:
            commit(dbapi_connection)
        finally:
            let_go(info_of(dbapi_connection))

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            let_go(info_of(dbapi_connection))

    def closed(dbapi_connection: Any, record: Any, *rest: Any) -> None:  # invalidated or closed mid-transaction
        if record is not None:
            let_go(record.info)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]
    dialect._tracklet_write_gate = gate  # type: ignore[attr-defined]
    sa.event.listen(engine, "before_cursor_execute", take)
    sa.event.listen(engine.pool, "invalidate", closed)
    sa.event.listen(engine.pool, "close", closed)
    return gate
