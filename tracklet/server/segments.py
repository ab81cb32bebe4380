"""Record log copies shared by several server processes: segments in object storage, their
index in PostgreSQL.

``LogCopies`` (logs.py) keeps each copy as one local file and serializes appends with an
in-process lock, so one process owns a data root. ``SegmentCopies`` is the scale-out variant:
every accepted append becomes one immutable object ``<location>/<project>/<run_id>/<offset>.seg``
(through fsspec: ``s3://bucket/prefix``, or a directory every process mounts), and a row in
``log_segments``. The commit point is PostgreSQL: an append locks the run's ``log_heads`` row
(``SELECT ... FOR UPDATE``), checks the offset against the stored size, writes the object, then
inserts the segment and moves the head in the same transaction. Any process can take any request;
a process that dies between the object write and the commit leaves an unreferenced object that
the next append at that offset overwrites. There are no torn tails: only whole, checked frames
are ever written, and an object store's PUT is all or nothing.

The class is also the ``LogSource`` the indexer reads (``tracklet/store/logsource.py``): the
runs are the heads, a run's bytes are its segments, and a run is alive while its head moved
within the heartbeat lapse.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import ScanResult, scan, scan_frames
from tracklet.server.logs import AppendResult, BadRequest, KeyCounts, check_frames, check_records, new_tail, run_paths
from tracklet.server.schema import log_heads, log_segments, migrate
from tracklet.store.logsource import read_window


class SegmentCopies:
    """Record log copies as segments under fsspec ``fs`` at ``base`` (a path in that filesystem),
    indexed in the PostgreSQL database behind ``engine``."""

    def __init__(self, engine: sa.Engine, fs: Any, base: str, root: Path, *, heartbeat_lapse: float,
                 key_counts: KeyCounts | None = None) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("log copies in shared storage (--logs) need a PostgreSQL store (--store postgresql://...): "
                             "its row locks are what serializes appends across server processes")
        migrate(engine)
        self.engine = engine
        self.fs = fs
        self.base = base.rstrip("/")
        protocol = getattr(fs, "protocol", ())
        self._local = "file" in ((protocol,) if isinstance(protocol, str) else protocol)
        self.root = Path(root)
        self.heartbeat_lapse = heartbeat_lapse
        self.key_counts = key_counts if key_counts is not None else KeyCounts()

    def _key(self, project: str, run_id: str, offset: int) -> str:
        return f"{self.base}/{project}/{run_id}/{offset:016d}.seg"

    @staticmethod
    def _head(project: str, run_id: str) -> Any:
        return sa.and_(log_heads.c.project == project, log_heads.c.run_id == run_id)

    # ------------------------------------------------------------------ the ingest side

    def offset(self, project: str, run_id: str) -> int:
        """Where the client resumes: the stored size (0 when the run is unknown)."""
        run_paths(self.root, project, run_id)
        with self.engine.connect() as connection:
            size = connection.execute(sa.select(log_heads.c.size).where(self._head(project, run_id))).scalar()
        return size or 0

    def append(self, project: str, run_id: str, offset: int, body: bytes) -> AppendResult:
        """Apply ``body`` (the client's log bytes from ``offset``): append, accept a resend, or
        raise ``OffsetConflict``; the same rules as ``LogCopies.append``."""
        run_paths(self.root, project, run_id)
        if offset < 0:
            raise BadRequest(f"offset must be 0 or more; got {offset}")
        if body:
            check_frames(body, offset)
        # The store's count (needed when this process hasn't counted the run yet), asked before the
        # transaction: asking inside it would hold one pooled connection while waiting for a second.
        indexed = self.key_counts.indexed(project, run_id) if body and not self.key_counts.known(project, run_id) else None
        with self.engine.begin() as connection:
            connection.execute(postgresql.insert(log_heads).values(
                project=project, run_id=run_id, size=0, updated_at=time.time()).on_conflict_do_nothing())
            size = connection.execute(
                sa.select(log_heads.c.size).where(self._head(project, run_id)).with_for_update()).scalar_one()

            def stored(start: int, end: int) -> bytes:
                return self._read(connection, project, run_id, start, end)

            tail = new_tail(body, offset, size, stored)
            if tail:
                keys = check_records(tail, size, self.key_counts.at(project, run_id, size, stored, lambda: indexed),
                                     f"{project}/{run_id}")
                if self._local:  # a mounted directory: a new run's directory must exist (object stores have none)
                    self.fs.makedirs(f"{self.base}/{project}/{run_id}", exist_ok=True)
                self.fs.pipe_file(self._key(project, run_id, size), tail)  # durable before the commit
                connection.execute(log_segments.insert().values(
                    project=project, run_id=run_id, offset=size, length=len(tail)))
                connection.execute(log_heads.update().where(self._head(project, run_id)).values(
                    size=size + len(tail), updated_at=time.time()))
        if tail:  # committed
            self.key_counts.set(project, run_id, size + len(tail), keys)
        return AppendResult(offset=size + len(tail), appended=len(tail))

    def _read(self, connection: sa.Connection, project: str, run_id: str, start: int, end: int) -> bytes:
        """The stored bytes [start, end) of a run's copy."""
        rows = connection.execute(
            sa.select(log_segments.c.offset, log_segments.c.length)
            .where(log_segments.c.project == project, log_segments.c.run_id == run_id,
                   log_segments.c.offset < end, log_segments.c.offset + log_segments.c.length > start)
            .order_by(log_segments.c.offset)
        ).all()
        parts = []
        for row in rows:
            first = max(start, row.offset) - row.offset
            last = min(end, row.offset + row.length) - row.offset
            parts.append(self.fs.cat_file(self._key(project, run_id, row.offset), start=first, end=last))
        data = b"".join(parts)
        if len(data) != end - start:
            raise RuntimeError(f"{project}/{run_id}: the segments of bytes [{start}, {end}) hold {len(data)} bytes; "
                               f"an object under {self.base} is missing or truncated")
        return data

    # ------------------------------------------------------------------ the indexer's LogSource

    def runs(self) -> Iterator[RunPaths]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(log_heads.c.project, log_heads.c.run_id)
                                      .where(log_heads.c.size > 0).order_by(log_heads.c.project, log_heads.c.run_id)).all()
        return iter([RunPaths(self.root, row.project, row.run_id) for row in rows])

    def size(self, paths: RunPaths) -> int:
        return self.offset(paths.project, paths.run_id)

    def read_from(self, paths: RunPaths, offset: int, limit: int | None = None, *,
                  bound: int | None = None) -> ScanResult:
        with self.engine.connect() as connection:
            size = connection.execute(
                sa.select(log_heads.c.size).where(self._head(paths.project, paths.run_id))).scalar() or 0
            if limit is not None:
                return read_window(lambda start, end: self._read(connection, paths.project, paths.run_id,
                                                                 start, min(end, size)), offset, offset + limit, size,
                                   bound=bound)
            data = self._read(connection, paths.project, paths.run_id, offset, size)
        return scan(data) if offset <= 0 else scan_frames(data, 0, base=offset)

    def alive(self, paths: RunPaths) -> bool:
        with self.engine.connect() as connection:
            moved = connection.execute(
                sa.select(log_heads.c.updated_at).where(self._head(paths.project, paths.run_id))).scalar()
        return moved is not None and time.time() - moved < self.heartbeat_lapse

    def location(self, paths: RunPaths) -> str:
        return f"{self.base}/{paths.project}/{paths.run_id}/"
