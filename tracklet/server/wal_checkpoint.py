"""SQLite WAL checkpoints off the request path (docs/registry.md, sessions 10-12).

By default SQLite checkpoints inside the COMMIT that takes the write-ahead log past 1,000 pages:
that commit copies the log into the database file and fsyncs both, while its request waits. An
alias move writes about 13-30 pages (the alias row, its history event, the outbox row, the audit
event and their indexes), so about one move in 35-50 pays a checkpoint (traced: 21 fdatasyncs on
the moving thread in 500 moves): 2-3 % of moves, where an idle machine's p99 sits. And a server
whose writers queue on a write gate (``write_gate.py``) would hold the gate through such a
checkpoint, making every other writer wait for its fsync too.

So a server on SQLite (``TRACKLET_SERVER_WAL_CHECKPOINT=thread``, the default since session 12)
turns automatic checkpoints off on its connections and its delivery process's
(``no_autocheckpoint``) and runs them in a thread of its own (``Checkpointer``): a PASSIVE one
beside the writers (it never blocks a writer) once ``CHECKPOINT_FRAMES`` are waiting. A PASSIVE
checkpoint can't copy what is committed while it runs, and the log only starts over once it was
copied whole, so past ``RESTART_FRAMES`` the thread checkpoints once more holding the write gate
(no writer can commit then: the few frames left are copied and the next writer starts the log
over); without a gate, a RESTART.
``TRACKLET_SERVER_WAL_CHECKPOINT=commit`` keeps SQLite's own checkpoints (and no write gate).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import sqlalchemy as sa

from tracklet.server.write_gate import WriteGate

INTERVAL = 0.2  # seconds between looks at the log
# The thread checkpoints once this many frames (pages) of the log are not in the database file yet
# (~16 MiB, 140-300 moves). Each complete checkpoint lets the next writer start the log over, and
# that writer syncs the log's new header (SQLite does, with synchronous=NORMAL too): a request pays
# one fdatasync per checkpoint, so checkpoints are rare enough for that to stay out of a p99
# (traced: a checkpoint every 0.2 s had 1 move in 20 pay it).
CHECKPOINT_FRAMES = 4096
# A PASSIVE checkpoint can't copy what is committed while it runs, and the log only starts over once
# copied whole: past this many frames the thread finishes the copy holding the write gate (or, with
# no gate, a RESTART, which makes writers wait for it in SQLite's busy handler).
RESTART_FRAMES = 2 * CHECKPOINT_FRAMES
JOURNAL_SIZE_LIMIT = RESTART_FRAMES * 4096  # bytes the log file keeps once restarted
THREAD_NAME = "tracklet-ckpt"  # also the thread's name in the kernel (top -H, /proc/<pid>/task/*/comm, strace)


def wanted(engine: sa.Engine) -> bool:
    """Whether ``engine`` (a server's store) gets its checkpoints from a ``Checkpointer``."""
    return engine.dialect.name == "sqlite" and os.environ.get("TRACKLET_SERVER_WAL_CHECKPOINT", "thread") == "thread"


def _name_thread(name: str) -> None:
    """Name the calling thread for the kernel too (Linux; elsewhere nothing): a trace tells the
    checkpoints' fsyncs from a request's (benchmarks/registry_trace.py)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def no_autocheckpoint(engine: sa.Engine) -> None:
    """Turn off SQLite's checkpoints in ``engine``'s COMMITs (its connections from now on):
    a ``Checkpointer`` of the server makes them."""
    if not sa.event.contains(engine, "connect", _no_autocheckpoint):
        sa.event.listen(engine, "connect", _no_autocheckpoint)
    engine.dispose()  # pooled connections made before have automatic checkpoints on


def _no_autocheckpoint(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    cursor.close()


class Checkpointer:
    """Turns off ``engine``'s automatic checkpoints (its connections, from now on) and checkpoints
    its log every ``interval`` seconds in a daemon thread, between ``start`` and ``stop``;
    ``gate``: the engine's write gate (``write_gate.install``), held to finish a long log."""

    def __init__(self, engine: sa.Engine, interval: float = INTERVAL, *, gate: WriteGate | None = None) -> None:
        self.engine = engine
        self.interval = interval
        self.gate = gate
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shm: int | None = None
        # Descriptors of removed -shm files: closing one is safe (no lock on them), but they are
        # kept with the rest until the process ends, so no close can ever meet a live lock.
        self._retired: list[int] = []
        no_autocheckpoint(engine)

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint; if it left frames of a log past ``RESTART_FRAMES``, one more
        holding the write gate (a RESTART without one): (busy, frames in the log, frames
        checkpointed) of the last."""
        with self.engine.connect() as connection:
            busy, frames, done = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            if frames > RESTART_FRAMES and done < frames:
                if self.gate is None:
                    busy, frames, done = connection.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").one()
                elif self.gate.acquire():
                    try:
                        busy, frames, done = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
                    finally:
                        self.gate.release()
            return int(busy), int(frames), int(done)

    def pending(self) -> int:
        """Frames of the log not yet copied into the database file, read from the WAL index
        (the ``-shm`` file: ``mxFrame`` at byte 16, ``nBackfill`` at 96, SQLite's file format)
        without taking a lock or asking SQLite (which would checkpoint); 0 when there is none.

        The file is read through one descriptor kept open (``_shm_descriptor``): closing any descriptor
        of a file drops every POSIX lock this process holds on it, SQLite's included, and without its
        lock on the index another process opening the database believes it is the first, truncates
        the index, and this process's SQLite dies of SIGBUS reading its mapping (seen in
        benchmarks/registry_move.py when a descriptor was opened and closed for each look)."""
        descriptor = self._shm_descriptor()
        if descriptor is None:
            return 0
        header = os.pread(descriptor, 100, 0)
        if len(header) < 100:
            return 0
        frames, copied = (int.from_bytes(header[at:at + 4], sys.byteorder) for at in (16, 96))
        return max(0, frames - copied)

    def _shm_descriptor(self) -> int | None:
        """A descriptor of the database's current ``-shm`` file, opened once and never closed while
        the file exists (``os.stat`` tells a new file from the one open without opening it)."""
        path = str(self.engine.url.database) + "-shm"
        try:
            current = os.stat(path)
        except OSError:
            return None
        if self._shm is not None:
            held = os.fstat(self._shm)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                return self._shm
            # A file SQLite removed and made anew: no lock of SQLite's is on the old one.
            self._retired.append(self._shm)
            self._shm = None
        try:
            self._shm = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        return self._shm

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tracklet-wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.checkpoint()
        except Exception:  # the database closed under us: SQLite checkpoints when it next opens it
            pass

    def _run(self) -> None:
        _name_thread(THREAD_NAME)
        while not self._stop.wait(self.interval):
            try:
                if self.pending() >= CHECKPOINT_FRAMES:
                    self.checkpoint()
            except Exception as error:  # e.g. the disk full a moment: the next pass tries again
                print(f"tracklet server: WAL checkpoint failed: {error!r}", file=sys.stderr)
