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

A shared run's part (a secondary writer's log, docs/shared-runs.md) is a copy of its own: its
head and segments are keyed ``<run_id>/<label>`` (no run id holds a ``/``, so the key is never
a run's), its objects are ``<location>/<project>/<run_id>/parts/<label>/<offset>.seg``, and its
appends lock its own head row. Creating a part (its first bytes) also locks the run's head row
(the lock order: a part's, then its run's, as ``LogCopies``), so two labels that differ only in
case, or the parts past ``max_parts``, can't race in through two processes.

A run's media retention (``tracklet media prune``, docs/media.md) is an object beside its
segments, ``<location>/<project>/<run_id>/media-retention.json`` (the file a data root keeps in
the run's directory), so every process reads the same: each process re-reads it when its copy is
older than ``RETENTION_TTL`` seconds (the media routes ask on every request; the parsed cutoffs, or
the error a damaged object gives, are kept with the bytes, so a fresh copy costs no parse), and a change moves
it forward only, under a PostgreSQL advisory lock of the run (two prunes through two processes
can't take a key's first kept step back). An object over ``MAX_RETENTION_BYTES`` (more than a
PUT's keys, and more than any process writes) is read no further and refused as damaged.

The class is also the ``LogSource`` the indexer reads (``tracklet/store/logsource.py``): the
runs are the heads, a run's bytes are its segments, its parts the heads keyed under it, and a
copy is alive while its head moved within the heartbeat lapse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import ScanResult, scan, scan_frames
from tracklet.server.logs import (MAX_PARTS_PER_RUN, AppendResult, BadRequest, KeyCounts, check_frames, check_records,
                                  new_tail, run_paths)
from tracklet.server.schema import log_heads, log_segments, migrate
from tracklet.store.logsource import read_window

RETENTION_TTL = 2.0  # seconds a process answers from its copy of a run's media retention
# Bytes of a run's retention object read at most (a PUT's 10,000 keys of 1,024 characters fit):
# one bigger, which no process writes, is refused as damaged, read no further and not kept.
MAX_RETENTION_BYTES = 16 << 20
_OVERSIZED = b"\0oversized"  # kept in place of such an object's bytes (by identity)
_RETENTION_CACHED = 4096  # runs whose retention a process holds at most


@dataclasses.dataclass
class _Retention:
    """A process's copy of a run's retention object: when it was read (or written), its bytes
    (None: there is none; ``_OVERSIZED``: too big), and what they parse to once asked (the
    cutoffs, or a damaged object's ValueError)."""

    when: float
    data: bytes | None
    parsed: dict[str, int] | ValueError | None = None


VERIFIED_KEPT = 1 << 16  # parts whose label check a process keeps (about 100 bytes each)
RUN_LOGS_BATCH = 1000  # heads ``run_logs`` reads per query (a keyset page)
LABEL_TTL = 2.0  # seconds a process passes a label without bytes without asking again (``_checked``)


class SegmentCopies:
    """Record log copies as segments under fsspec ``fs`` at ``base`` (a path in that filesystem),
    indexed in the PostgreSQL database behind ``engine``."""

    def __init__(self, engine: sa.Engine, fs: Any, base: str, root: Path, *, heartbeat_lapse: float,
                 key_counts: KeyCounts | None = None, max_parts: int = MAX_PARTS_PER_RUN) -> None:
        """``max_parts``: how many parts a shared run may have here (``--max-parts-per-run``)."""
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
        self.max_parts = max_parts
        self._guard = threading.Lock()
        self._listed: dict[tuple[str, str], list[str]] = {}  # runs()'s parts of each run, taken once by parts()
        # Parts seen holding bytes (project, <run_id>/<label>), whose label ``check_label`` passes
        # without a query (as ``LogCopies._verified``): a part's first bytes were stored under its
        # run's head row lock after the label was checked, so while it holds them (heads are never
        # removed) no label that differs from it only in case is ever stored. Bounded: the oldest go.
        self._verified: OrderedDict[tuple[str, str], None] = OrderedDict()
        # The other answers of the label check, so that a client asking again costs no query:
        # (project, <run_id>/<label>) -> (``_created`` and the time then, the refusal: None for a
        # pass). A refusal is for good: heads are never removed, so a twin stays. A pass of a part
        # that holds no bytes yet holds until this process creates a part (of any run: ``_created``
        # moves) or ``LABEL_TTL`` seconds pass (another process may have created a twin: a part's
        # first upload is still checked under its run's lock). ``_over_limit``: the parts whose
        # first upload was refused past ``max_parts`` (for good too: a run's parts only grow), by
        # the refusal: their next upload is refused without counting again (their offsets, reads
        # and labels are a part's without bytes).
        self._checked: OrderedDict[tuple[str, str], tuple[int, float, str | None]] = OrderedDict()
        self._over_limit: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._created = 0  # parts this process created
        # (project, run_id) -> when read, the retention object's bytes or None, and what they parse
        # to (the cutoffs, or a damaged object's ValueError; None until asked): RETENTION_TTL
        self._retention: OrderedDict[tuple[str, str], _Retention] = OrderedDict()
        self._retention_guard = threading.Lock()

    def _key(self, project: str, copy: str, offset: int) -> str:
        """The object of a copy's segment at ``offset`` (``copy``: a run id, or ``<run_id>/<label>``)."""
        return f"{self._dir(project, copy)}/{offset:016d}.seg"

    def _dir(self, project: str, copy: str) -> str:
        run_id, _, label = copy.partition("/")
        return f"{self.base}/{project}/{run_id}" + (f"/parts/{label}" if label else "")

    @staticmethod
    def _head(project: str, run_id: str) -> Any:
        return sa.and_(log_heads.c.project == project, log_heads.c.run_id == run_id)

    @staticmethod
    def copy_key(project: str, run_id: str, part: str | None) -> str:
        """A copy's ``run_id`` in ``log_heads`` and ``log_segments``: the run's, or
        ``<run_id>/<label>`` for its part ``part`` (the column holds any valid pair: s0024)."""
        return run_id if part is None else f"{run_id}/{part}"

    @staticmethod
    def _parts_of(run_id: str) -> Any:
        """The heads of run ``run_id``'s parts (within a project)."""
        return log_heads.c.run_id.startswith(f"{run_id}/", autoescape=True)

    def _labels(self, connection: sa.Connection, project: str, run_id: str, *, grown: bool = True) -> list[str]:
        """The labels of the run's parts (``grown``: those that hold bytes), in name order."""
        query = sa.select(log_heads.c.run_id).where(log_heads.c.project == project, self._parts_of(run_id))
        if grown:
            query = query.where(log_heads.c.size > 0)
        return sorted(key.partition("/")[2] for key in connection.execute(query).scalars())

    def _verify(self, project: str, key: str) -> None:
        """Part ``key`` (``<run_id>/<label>``) holds bytes: its label's check is kept."""
        with self._guard:
            self._verified[(project, key)] = None
            self._verified.move_to_end((project, key))
            while len(self._verified) > VERIFIED_KEPT:
                self._verified.popitem(last=False)

    def check_label(self, project: str, run_id: str, part: str, connection: sa.Connection | None = None) -> None:
        """400 when another part of the run has a label that differs from ``part`` in case only
        (``logs.check_label``'s rule, which a server applies on every file system alike). A part
        this process saw holding bytes passes without a query (``_verified``), except under the
        run's head row lock (``connection``: a part's first upload), which always asks; a refusal
        is kept (``_checked``: asked again, it costs no query), and so is a pass of a part with no
        bytes yet, for a while (outside the lock only)."""
        key = f"{run_id}/{part}"
        with self._guard:
            if connection is None and (project, key) in self._verified:
                return
            checked = self._checked.get((project, key))
        if checked is not None:
            created, when, refusal = checked
            if refusal is not None:
                raise BadRequest(refusal)
            if connection is None and created == self._created and time.monotonic() - when < LABEL_TTL:
                return
        asked = (self._created, time.monotonic())
        folded = part.casefold()
        with self.engine.connect() if connection is None else contextlib.nullcontext(connection) as use:
            rows = use.execute(sa.select(log_heads.c.run_id, log_heads.c.size).where(
                log_heads.c.project == project, self._parts_of(run_id))).all()
        labels = sorted(found.partition("/")[2] for found, _ in rows)
        for label in labels:
            if label != part and label.casefold() == folded:
                refusal = (f"part {part!r} of run {project}/{run_id} differs only in case from its part {label!r}: "
                           "labels of one run must differ in more than case (a case-insensitive file system "
                           "holds one file for both); pick another label")
                self._check(project, key, asked, refusal)
                raise BadRequest(refusal)
        if connection is None and any(found == key and size > 0 for found, size in rows):
            self._verify(project, key)
        elif connection is None:
            self._check(project, key, asked, None)

    def _check(self, project: str, key: str, asked: tuple[int, float], refusal: str | None) -> None:
        """Keep the label check's answer for part ``key`` (``_checked``), asked at ``asked``
        (``_created`` and the time then)."""
        self._keep(self._checked, (project, key), (*asked, refusal))

    def _keep(self, kept: OrderedDict[tuple[str, str], Any], key: tuple[str, str], value: Any) -> None:
        with self._guard:
            kept[key] = value
            kept.move_to_end(key)
            while len(kept) > VERIFIED_KEPT:
                kept.popitem(last=False)

    # ------------------------------------------------------------------ the ingest side

    def offset(self, project: str, run_id: str, part: str | None = None) -> int:
        """Where the client resumes: the stored size of the run's copy (of its part ``part``),
        0 when there is none."""
        run_paths(self.root, project, run_id, part)
        key = self.copy_key(project, run_id, part)
        if part is not None:
            self.check_label(project, run_id, part)
        with self.engine.connect() as connection:
            size = connection.execute(sa.select(log_heads.c.size).where(self._head(project, key))).scalar()
        return size or 0

    def append(self, project: str, run_id: str, offset: int, body: bytes, part: str | None = None) -> AppendResult:
        """Apply ``body`` (the client's log bytes from ``offset``; ``part``: of the run's part
        written by that label): append, accept a resend, or raise ``OffsetConflict``; the same
        rules as ``LogCopies.append``."""
        run_paths(self.root, project, run_id, part)
        key = self.copy_key(project, run_id, part)
        if offset < 0:
            raise BadRequest(f"offset must be 0 or more; got {offset}")
        if not body:  # nothing to store: the offset rules alone, and no head row made for it
            size = self.offset(project, run_id, part)
            new_tail(body, offset, size, lambda start, end: b"")
            return AppendResult(offset=size, appended=0)
        check_frames(body, offset)
        # The store's count (needed when this process hasn't counted the run yet), asked before the
        # transaction: asking inside it would hold one pooled connection while waiting for a second.
        # (A part's keys are its own: the store counts the run's own log's only.)
        indexed = (self.key_counts.indexed(project, run_id)
                   if part is None and not self.key_counts.known(project, key) else None)
        with self.engine.begin() as connection:
            connection.execute(postgresql.insert(log_heads).values(
                project=project, run_id=key, size=0, updated_at=time.time()).on_conflict_do_nothing())
            size = connection.execute(
                sa.select(log_heads.c.size).where(self._head(project, key)).with_for_update()).scalar_one()

            def stored(start: int, end: int) -> bytes:
                return self._read(connection, project, key, start, end)

            tail = new_tail(body, offset, size, stored)
            if tail and size == 0 and part is not None:
                self._check_new_part(connection, project, run_id, part)
            if tail:
                keys = check_records(tail, size, self.key_counts.at(project, key, size, stored, lambda: indexed),
                                     f"{project}/{key}")
                if self._local:  # a mounted directory: a new copy's directory must exist (object stores have none)
                    self.fs.makedirs(self._dir(project, key), exist_ok=True)
                self.fs.pipe_file(self._key(project, key, size), tail)  # durable before the commit
                connection.execute(log_segments.insert().values(
                    project=project, run_id=key, offset=size, length=len(tail)))
                connection.execute(log_heads.update().where(self._head(project, key)).values(
                    size=size + len(tail), updated_at=time.time()))
        if tail:  # committed
            self.key_counts.set(project, key, size + len(tail), keys)
            if part is not None:
                if size == 0:  # a part created: a pass kept for a label without bytes may be a twin's now
                    with self._guard:
                        self._created += 1
                self._verify(project, key)
        return AppendResult(offset=size + len(tail), appended=len(tail))

    def _check_new_part(self, connection: sa.Connection, project: str, run_id: str, part: str) -> None:
        """A part's first bytes: under the run's head row's lock (made if the run has no log yet:
        a part may arrive before its primary's log), refuse a label that differs from another
        part's in case only, and the part past ``max_parts``; the part's own head row is held."""
        connection.execute(postgresql.insert(log_heads).values(
            project=project, run_id=run_id, size=0, updated_at=time.time()).on_conflict_do_nothing())
        connection.execute(sa.select(log_heads.c.size).where(self._head(project, run_id)).with_for_update())
        with self._guard:
            refusal = self._over_limit.get((project, f"{run_id}/{part}"))
        if refusal is not None:
            raise BadRequest(refusal)
        self.check_label(project, run_id, part, connection)
        count = len([label for label in self._labels(connection, project, run_id) if label != part])
        if count >= self.max_parts:  # for good: a run's parts only grow (``_over_limit``)
            refusal = (f"run {project}/{run_id} has {count} parts (secondary writers' logs), the "
                       f"most this server keeps for one run (--max-parts-per-run {self.max_parts}): part "
                       f"{part!r} was not stored; use fewer labels (one per node, not per process) or "
                       "ask the server's operator to raise the limit")
            self._keep(self._over_limit, (project, f"{run_id}/{part}"), refusal)
            raise BadRequest(refusal)

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

    # ------------------------------------------------------------------ media retention

    def has_log(self, project: str, run_id: str) -> bool:
        """Whether the run's own log holds bytes."""
        return self.offset(project, run_id) > 0

    def retention_key(self, project: str, run_id: str) -> str:
        """The object holding the run's media retention (beside its segments)."""
        from tracklet.media.retention import RETENTION_FILE

        run_paths(self.root, project, run_id)  # 400 for a bad name
        return f"{self._dir(project, run_id)}/{RETENTION_FILE}"

    def _retention_copy(self, project: str, run_id: str, *, fresh: bool = False) -> _Retention:
        """This process's copy of the retention object (its bytes: None when there is none), the
        one kept when it is younger than ``RETENTION_TTL`` seconds (``fresh``: read now)."""
        key = (project, run_id)
        now = time.monotonic()
        with self._retention_guard:
            cached = self._retention.get(key)
        if cached is not None and not fresh and now - cached.when < RETENTION_TTL:
            return cached
        try:
            data: bytes | None = bytes(self.fs.cat_file(self.retention_key(project, run_id), start=0,
                                                        end=MAX_RETENTION_BYTES + 1))
        except FileNotFoundError:
            data = None
        if data is not None and len(data) > MAX_RETENTION_BYTES:
            data = _OVERSIZED
        return self._remember(key, now, data)

    def _remember(self, key: tuple[str, str], when: float, data: bytes | None,
                  parsed: dict[str, int] | None = None) -> _Retention:
        """Keep ``data``, read (or written) at ``when``, unless a later read or write is kept: a
        read that began before this process's ``merge_media_cutoffs`` wrote and ends after it
        would otherwise put the object's earlier bytes back, and the process would answer the
        retention from before its own PUT for ``RETENTION_TTL``."""
        copy = _Retention(when, data, parsed)
        with self._retention_guard:
            kept = self._retention.get(key)
            if kept is not None and kept.when > when:
                return copy  # this read's own answer; the later one stays kept
            self._retention[key] = copy
            self._retention.move_to_end(key)
            while len(self._retention) > _RETENTION_CACHED:
                self._retention.popitem(last=False)
        return copy

    def media_cutoffs(self, project: str, run_id: str, *, fresh: bool = False) -> dict[str, int]:
        """Each media key's first kept step in the run (empty without a policy applied), at most
        ``RETENTION_TTL`` seconds old (``fresh``: read now). ValueError for a damaged object (or one
        over ``MAX_RETENTION_BYTES``);
        OSError when the storage can't be read. What the bytes parse to is kept with them: a copy
        is parsed once however many requests it answers (a damaged one's error too); callers
        must not change the dict answered."""
        copy = self._retention_copy(project, run_id, fresh=fresh)
        if copy.data is None:
            return {}
        parsed = copy.parsed
        if parsed is None:  # (two requests at once may both parse it: the same answer)
            try:
                parsed = self._parse(copy.data, project, run_id)
            except ValueError as error:
                parsed = error
            copy.parsed = parsed
        if isinstance(parsed, ValueError):
            raise ValueError(str(parsed))
        return parsed

    def _parse(self, data: bytes, project: str, run_id: str) -> dict[str, int]:
        from tracklet.media.retention import parse_cutoffs

        key = self.retention_key(project, run_id)
        if data is _OVERSIZED:
            raise ValueError(f"the media retention of run {project}/{run_id} ({key}) is over "
                             f"{MAX_RETENTION_BYTES:,} bytes, more than a media retention object tracklet writes: "
                             "fix or remove it")
        return parse_cutoffs(data, f"the media retention of run {project}/{run_id} ({key})")

    def merge_media_cutoffs(self, project: str, run_id: str, cutoffs: dict[str, int],
                            policy: dict[str, Any]) -> dict[str, int]:
        """Move the run's retention forward to ``cutoffs`` (each key's first kept step the later
        of the stored and the given), holding the run's advisory lock so that no other process's
        change is lost; the cutoffs now in force. Written only when one moved: one PUT (an object
        store's is all or nothing; a mounted directory's is a rename)."""
        from tracklet.media.retention import cutoffs_bytes, forward

        name = f"tracklet media retention\0{project}\0{run_id}".encode()
        lock = int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big", signed=True)
        key = self.retention_key(project, run_id)
        with self.engine.begin() as connection:
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
            before = dict(self.media_cutoffs(project, run_id, fresh=True))
            merged = forward(before, cutoffs)
            if merged != before:
                written = cutoffs_bytes(merged, policy)
                if len(written) > MAX_RETENTION_BYTES:  # every process would refuse it
                    raise ValueError(f"run {project}/{run_id}'s media retention would be over {MAX_RETENTION_BYTES:,} "
                                     f"bytes ({len(merged):,} keys); it is left as it was")
                if self._local:
                    self.fs.makedirs(self._dir(project, run_id), exist_ok=True)
                    temporary = f"{key}.{time.time_ns()}.tmp"
                    self.fs.pipe_file(temporary, written)
                    self.fs.mv(temporary, key)
                else:
                    self.fs.pipe_file(key, written)
                self._remember((project, run_id), time.monotonic(), written, dict(merged))
        return merged

    # ------------------------------------------------------------------ the indexer's LogSource

    def runs(self) -> Iterator[RunPaths]:
        """Every run whose own log holds bytes (a part waits for its run's log, as on a server
        that keeps files). One query, which also lists the runs' parts: ``parts()`` takes each
        run's from it once (an index pass asks for every listed run's parts right after)."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(log_heads.c.project, log_heads.c.run_id)
                                      .where(log_heads.c.size > 0).order_by(log_heads.c.project, log_heads.c.run_id)).all()
        found: list[RunPaths] = []
        labels: dict[tuple[str, str], list[str]] = {}
        for row in rows:
            run_id, _, label = row.run_id.partition("/")
            if label:
                labels.setdefault((row.project, run_id), []).append(label)
            else:
                found.append(RunPaths(self.root, row.project, row.run_id))
        self._listed = {(paths.project, paths.run_id): sorted(labels.get((paths.project, paths.run_id), []))
                        for paths in found}
        return iter(found)

    def parts(self, paths: RunPaths) -> list[str]:
        """The labels of the run's parts that hold bytes, in name order (from the last ``runs()``
        listing, once; else one query)."""
        listed = self._listed.pop((paths.project, paths.run_id), None)
        if listed is not None:
            return listed
        with self.engine.connect() as connection:
            return self._labels(connection, paths.project, paths.run_id)

    def run_logs(self, project: str | None = None, after: tuple[str, str] | None = None
                 ) -> Iterator[tuple[RunPaths, list[RunPaths]]]:
        """Every run with a log that holds bytes, its own or a part's (``core/layout.iter_run_logs``
        of these copies: the readers of every log, a part whose primary hasn't arrived included),
        with those logs' paths: its own first, then its parts' in label order; of ``project``
        only, and after run ``after`` (project, run id) in this order (a caller's cursor).

        By project, then run id (the key before any ``/``), read ``RUN_LOGS_BATCH`` heads per
        query (a keyset page): what is held at a time is one page and one run's logs, however many
        runs there are (``tracklet admin artifact-gc --logs``, ``tracklet media prune --url``)."""
        run = sa.func.split_part(log_heads.c.run_id, "/", 1)
        order = (log_heads.c.project, run, log_heads.c.run_id)
        where: list[Any] = [log_heads.c.size > 0]
        if project is not None:
            where.append(log_heads.c.project == project)
        if after is not None:
            where.append(sa.tuple_(log_heads.c.project, run) > sa.tuple_(sa.literal(after[0]), sa.literal(after[1])))
        position: tuple[str, str, str] | None = None
        pending: tuple[str, str] | None = None  # the run the last page ended in: its logs may go on
        logs: list[RunPaths] = []
        while True:
            query = sa.select(log_heads.c.project, log_heads.c.run_id).where(*where)
            if position is not None:
                query = query.where(sa.tuple_(*order) > sa.tuple_(*(sa.literal(value) for value in position)))
            with self.engine.connect() as connection:
                keys = connection.execute(query.order_by(*order).limit(RUN_LOGS_BATCH)).all()
            for found_project, key in keys:
                run_id, _, label = key.partition("/")
                if pending is not None and pending != (found_project, run_id):
                    yield self._run_logs(pending, logs)
                    logs = []
                pending = (found_project, run_id)
                logs.append(RunPaths(self.root, found_project, run_id, label or None))
            if len(keys) < RUN_LOGS_BATCH:
                break
            last_project, last_key = keys[-1]
            position = (last_project, last_key.partition("/")[0], last_key)
        if pending is not None:
            yield self._run_logs(pending, logs)

    def _run_logs(self, run: tuple[str, str], logs: list[RunPaths]) -> tuple[RunPaths, list[RunPaths]]:
        return RunPaths(self.root, *run), sorted(logs, key=lambda log: (log.part is not None, log.part or ""))

    def iter_bytes(self, paths: RunPaths, chunk_bytes: int = 16 << 20) -> Iterator[bytes]:
        """A copy's bytes (a run's, or its part's), ``chunk_bytes`` at a time."""
        copy = self._copy(paths)
        with self.engine.connect() as connection:
            size = connection.execute(sa.select(log_heads.c.size).where(self._head(paths.project, copy))).scalar() or 0
            for start in range(0, size, chunk_bytes):
                yield self._read(connection, paths.project, copy, start, min(size, start + chunk_bytes))

    def size(self, paths: RunPaths) -> int:
        with self.engine.connect() as connection:
            size = connection.execute(sa.select(log_heads.c.size).where(self._head(paths.project, self._copy(paths)))).scalar()
        return size or 0

    def copy_sizes(self, paths: RunPaths, labels: list[str] | None = None) -> dict[str, int]:
        """The run's copies that hold bytes and their sizes in one query: ``""`` for its own log
        (the read routes' ``log_fold.copy_sizes``), each part's by its label. ``labels``: those
        parts only (the store's indexed parts), each head found by its key; without them every
        part's head is found by the run's prefix (a ``LIKE``, which PostgreSQL can't serve from the
        key's index under a non-C collation: a scan of the project's heads)."""
        where: sa.ColumnElement[bool]
        if labels is not None:
            keys = [paths.run_id, *(f"{paths.run_id}/{label}" for label in labels)]
            where = log_heads.c.run_id.in_(keys)
        else:
            where = sa.or_(log_heads.c.run_id == paths.run_id, self._parts_of(paths.run_id))
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(log_heads.c.run_id, log_heads.c.size).where(
                log_heads.c.project == paths.project, log_heads.c.size > 0, where)).all()
        return {key.partition("/")[2]: size for key, size in rows}

    @staticmethod
    def _copy(paths: RunPaths) -> str:
        return paths.run_id if paths.part is None else f"{paths.run_id}/{paths.part}"

    def read_from(self, paths: RunPaths, offset: int, limit: int | None = None, *,
                  bound: int | None = None) -> ScanResult:
        copy = self._copy(paths)
        with self.engine.connect() as connection:
            size = connection.execute(
                sa.select(log_heads.c.size).where(self._head(paths.project, copy))).scalar() or 0
            if limit is not None:
                return read_window(lambda start, end: self._read(connection, paths.project, copy,
                                                                 start, min(end, size)), offset, offset + limit, size,
                                   bound=bound)
            data = self._read(connection, paths.project, copy, offset, size)
        return scan(data) if offset <= 0 else scan_frames(data, 0, base=offset)

    def alive(self, paths: RunPaths) -> bool:
        with self.engine.connect() as connection:
            moved = connection.execute(
                sa.select(log_heads.c.updated_at).where(self._head(paths.project, self._copy(paths)))).scalar()
        return moved is not None and time.time() - moved < self.heartbeat_lapse

    def location(self, paths: RunPaths) -> str:
        return self._dir(paths.project, self._copy(paths)) + "/"
