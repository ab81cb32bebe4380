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

import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

import sqlalchemy as sa

from tracklet.errors import SpanWriterBusy
from tracklet.store.spans import received_sql

MAX_PENDING = 50_000  # spans queued, not yet committed
MAX_BATCH = 20_000  # spans per transaction (a request is never split)


# A request's spans: project, rows, its answer, and what runs in their transaction.
_Item = tuple[str, list[tuple[Any, ...]], "Future[int]", "Callable[[sa.Connection], Any] | None"]


class SpanWriter:
    """Inserts ``received_row`` tuples into ``spans`` from one thread (started on the first write)."""

    def __init__(self, engine: sa.Engine, project_id: Callable[[str], int], *, max_pending: int = MAX_PENDING,
                 max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._project_id = project_id  # a project's id, creating it: Store.add_project
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._queue: deque[_Item] = deque()
        self._pending = 0
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._ids: dict[str, int] = {}

    def write(self, project: str, rows: list[tuple[Any, ...]], wait_s: float = 30.0,
              in_transaction: Callable[[sa.Connection], Any] | None = None) -> int:
        """Store ``rows`` in ``project`` (created if needed); returns how many once committed.
        ``in_transaction(connection)`` runs in the transaction that inserts them (the request's
        audit event: it commits with the spans or not at all). ``SpanWriterBusy`` if the queue had
        no room for ``wait_s`` seconds; the insert's error if it failed."""
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
                self._thread.start()
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
                batch = [self._queue.popleft()]
                size = len(batch[0][1])
                while self._queue and size + len(self._queue[0][1]) <= self._max_batch:
                    batch.append(self._queue.popleft())
                    size += len(batch[-1][1])
            try:
                self._commit(batch)
            finally:
                with self._lock:
                    self._pending -= size
                    self._lock.notify_all()

    def _commit(self, batch: list[_Item]) -> None:
        try:
            self._insert(batch)
        except Exception:
            # One request's failure (its project deleted meanwhile, ...) must not fail the others:
            # each alone, its project's id looked up again.
            self._ids.clear()
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
        with self._engine.begin() as connection:
            dialect = connection.dialect.name
            for project, rows, _, in_transaction in batch:
                sql = received_sql(dialect, self._ids[project])
                for start in range(0, len(rows), 1000):
                    connection.exec_driver_sql(sql, rows[start : start + 1000])
                if in_transaction is not None:
                    in_transaction(connection)
