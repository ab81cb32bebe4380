"""SQLite WAL checkpoints off the request path, as an option (docs/registry.md, "Session 10").

By default SQLite checkpoints inside the COMMIT that takes the write-ahead log past 1,000 pages:
that commit copies the log into the database file and fsyncs both, while its request waits. An
alias move writes about 13-30 pages (the alias row, its history event, the outbox row, the audit
event and their indexes), so about one move in 35-50 pays a checkpoint (traced: 21 fdatasyncs on
the moving thread in 500 moves): 2-3 % of moves, where an idle machine's p99 sits.
``TRACKLET_SERVER_WAL_CHECKPOINT=thread`` makes a server on SQLite turn automatic checkpoints off
on its own connections and run them in a thread of its own (``Checkpointer``; PASSIVE ones beside
the writers, a RESTART past ``RESTART_FRAMES``). It is not the default: on the shared 2-core
machine at load 14-18 it measured slower than SQLite's own (p50 69-87 vs 32-43 ms, p99 271-316
vs 156-172 ms, two A/B rounds of ``benchmarks/registry_move.py --checkpoint``); an idle machine's
A/B decides.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import sqlalchemy as sa

INTERVAL = 0.2  # seconds between checkpoints (a few moves' pages at full speed: each one is small)
# A PASSIVE checkpoint never restarts the log while writes keep coming (a writer restarts it only if
# nothing was committed since the last complete checkpoint), so past this many frames (~16 MiB,
# ~300 moves) the thread asks for a RESTART: it waits for the write lock, copies the few frames
# PASSIVE left, and lets the next writer start the log over; a request then waits that long, once.
RESTART_FRAMES = 4096
JOURNAL_SIZE_LIMIT = RESTART_FRAMES * 4096  # bytes the log file keeps once restarted


def wanted(engine: sa.Engine) -> bool:
    """Whether ``engine`` (a server's store) gets its checkpoints from a ``Checkpointer``."""
    return engine.dialect.name == "sqlite" and os.environ.get("TRACKLET_SERVER_WAL_CHECKPOINT", "commit") == "thread"


def _no_autocheckpoint(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    cursor.close()


class Checkpointer:
    """Turns off ``engine``'s automatic checkpoints (its connections, from now on) and checkpoints
    its log every ``interval`` seconds in a daemon thread, between ``start`` and ``stop``."""

    def __init__(self, engine: sa.Engine, interval: float = INTERVAL) -> None:
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not sa.event.contains(engine, "connect", _no_autocheckpoint):
            sa.event.listen(engine, "connect", _no_autocheckpoint)
        engine.dispose()  # pooled connections made before have automatic checkpoints on

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint, then a RESTART if the log is past ``RESTART_FRAMES``: (busy,
        frames in the log, frames checkpointed) of the last."""
        with self.engine.connect() as connection:
            busy, frames, done = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            if frames > RESTART_FRAMES:
                busy, frames, done = connection.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").one()
            return int(busy), int(frames), int(done)

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
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint()
            except Exception as error:  # e.g. the disk full a moment: the next pass tries again
                print(f"tracklet server: WAL checkpoint failed: {error!r}", file=sys.stderr)
