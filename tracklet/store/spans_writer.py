"""One writer thread for spans received over OTLP: the requests of concurrent exporters are queued
and committed together, in one transaction per batch, instead of each request's thread taking the
database's write lock in turn (on SQLite, threads that wait for it sleep in the busy handler's
steps of milliseconds while the CPU idles).

A request's spans are acknowledged only once the transaction that holds them has committed
(``SpanWriter.write`` returns then, or raises), so what an exporter was told is stored is stored.
Memory stays bounded: at most ``max_pending`` spans wait (a request waits for room, and after
``wait_s`` gets ``SpanWriterBusy``, which the route answers with 503 and ``Retry-After``, a status
OTLP exporters retry on).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Iterator

import sqlalchemy as sa

from tracklet.core import threads
from tracklet.errors import SpanWriterBusy
from tracklet.store.spans import received_statements, resource_id

MAX_PENDING = 50_000  # spans queued, not yet committed
MAX_BATCH = 20_000  # spans per transaction (a request is never split)
# The writer waits up to this long for requests being decoded (``arriving``) to join a transaction
# holding fewer than LINGER_SPANS spans: about the decode time of a few 512-span requests.
LINGER_S = 0.05
LINGER_SPANS = 8192


class Arrival:
    """A request announced to the writer (``SpanWriter.arriving``)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


# A request's spans: project, rows, its answer, and what runs in their transaction.
_Item = tuple[str, list[tuple[Any, ...]], "Future[int]", "Callable[[sa.Connection], Any] | None"]


class SpanWriter:
    """Inserts ``received_row`` tuples into ``spans`` from one thread (started on the first write)."""

    def __init__(self, engine: sa.Engine, project_id: Callable[[str], int], *, max_pending: int = MAX_PENDING,
                 max_batch: int = MAX_BATCH, linger_s: float = LINGER_S, linger_spans: int = LINGER_SPANS) -> None:
        self._engine = engine
        self._project_id = project_id  # a project's id, creating it: Store.add_project
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._linger_spans = linger_spans
        self._queue: deque[_Item] = deque()
        self._pending = 0
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._ids: dict[str, int] = {}
        # (project id, a resource's attributes as JSON text) -> its committed ``span_resources`` id.
        self._resources: dict[tuple[int, str], int] = {}
        self._arriving = 0  # requests announced (``arriving``) whose spans are not queued yet

    @contextlib.contextmanager
    def arriving(self) -> Iterator[Arrival]:
        """Announce a request whose spans are being decoded: while any is, the writer waits (up
        to ``linger_s``) for its spans to share the transaction. Pass the ``Arrival`` to
        ``write``; the announcement ends there, or when the block exits."""
        arrival = Arrival()
        with self._lock:
            self._arriving += 1
        try:
            yield arrival
        finally:
            self._arrived(arrival)

    def _arrived(self, arrival: Arrival | None) -> None:
        if arrival is None or arrival.done:
            return
        with self._lock:
            if not arrival.done:
                arrival.done = True
                self._arriving -= 1
                self._lock.notify_all()

    def write(self, project: str, rows: list[tuple[Any, ...]], wait_s: float = 30.0,
              in_transaction: Callable[[sa.Connection], Any] | None = None, arrival: Arrival | None = None) -> int:
        """Store ``rows`` in ``project`` (created if needed); returns how many once committed.
        ``in_transaction(connection)`` runs in the transaction that inserts them (the request's
        audit event: it commits with the spans or not at all). ``SpanWriterBusy`` if the queue had
        no room for ``wait_s`` seconds; the insert's error if it failed."""
        self._arrived(arrival)  # first: a request waiting for room must not hold the writer's linger
        if not rows:
            return 0
        done: Future[int] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the span writer is closed")
            # A request bigger than the whole queue goes in alone once it is empty.
            room = lambda: self._closed or self._pending == 0 or self._pending + len(rows) <= self._max_pending  # noqa: E731
            if not self._lock.wait_for(room, wait_s):
                raise SpanWriterBusy(f"{self._pending} spans are waiting to be stored; retry later")
            if self._closed:
                raise RuntimeError("the span writer is closed")
            self._queue.append((project, rows, done, in_transaction))
            self._pending += len(rows)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tracklet-span-writer", daemon=True)
                threads.start(self._thread)
            self._lock.notify_all()
        return done.result()

    def close(self) -> None:
        """Store what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                batch, size = self._take()
            try:
                self._commit(batch)
            finally:
                with self._lock:
                    self._pending -= size
                    self._lock.notify_all()

    def _take(self) -> tuple[list[_Item], int]:
        """The next transaction's requests (the lock held, the queue not empty): what is queued, up
        to ``max_batch`` spans, and while that is under ``linger_spans`` and other requests are
        being decoded (``arriving``), theirs too, waiting up to ``linger_s`` for them. A lone
        exporter's request is committed at once; concurrent exporters' requests share one
        transaction (its commit) and the writer inserts while their decoding threads wait, not
        against them for the GIL."""
        batch: list[_Item] = []
        size = 0
        deadline = None
        while True:
            queue = self._queue
            while queue and (not batch or size + len(queue[0][1]) <= self._max_batch):
                item = queue.popleft()
                batch.append(item)
                size += len(item[1])
            if queue or size >= self._linger_spans or self._closed or not self._arriving:
                return batch, size
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._linger_s
            if now >= deadline:
                return batch, size
            self._lock.wait(deadline - now)

    def _commit(self, batch: list[_Item]) -> None:
        try:
            self._insert(batch)
        except Exception:
            # One request's failure (its project deleted meanwhile, ...) must not fail the others:
            # each alone, its project's id looked up again.
            self._ids.clear()
            self._resources.clear()
            for item in batch:
                try:
                    self._insert([item])
                except Exception as error:  # noqa: BLE001 - the request's caller gets it
                    item[2].set_exception(error)
                else:
                    item[2].set_result(len(item[1]))
            return
        for _, rows, done, _ in batch:
            done.set_result(len(rows))

    def _insert(self, batch: list[_Item]) -> None:
        for project, _, _, _ in batch:
            if project not in self._ids:
                if len(self._ids) > 1024:
                    self._ids.clear()
                self._ids[project] = self._project_id(project)
        made: dict[tuple[int, str], int] = {}
        with self._engine.begin() as connection:
            dialect = connection.dialect.name
            for project, rows, _, in_transaction in batch:
                project_id = self._ids[project]
                insert, again = received_statements(dialect, project_id)
                ids = _ResourceIds(functools.partial(self._resource, connection, project_id, made=made))
                for start in range(0, len(rows), 1000):
                    # A row's last value: its resource's attributes as JSON text, here their row's id.
                    chunk = [row[:-1] + (ids[row[-1]],) for row in rows[start : start + 1000]]
                    if connection.exec_driver_sql(insert, chunk).rowcount != len(chunk) and again is not None:
                        connection.exec_driver_sql(again, chunk)  # a span stored already: the upsert's rule
                if in_transaction is not None:
                    in_transaction(connection)
        if len(self._resources) + len(made) > 4096:
            self._resources.clear()
        self._resources.update(made)  # committed: only now may later transactions name them

    def _resource(self, connection: sa.Connection, project_id: int, text: str,
                  made: dict[tuple[int, str], int]) -> int | None:
        if not text:
            return None
        key = (project_id, text)
        found = self._resources.get(key) or made.get(key)
        if found is None:
            found = made[key] = resource_id(connection, project_id, text)
        return found


class _ResourceIds(dict[str, "int | None"]):
    """A resource's JSON text -> its ``span_resources`` id, each looked up once per request."""

    __slots__ = ("_find",)

    def __init__(self, find: Callable[[str], int | None]) -> None:
        super().__init__()
        self._find = find

    def __missing__(self, text: str) -> int | None:
        found = self[text] = self._find(text)
        return found
