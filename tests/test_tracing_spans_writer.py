"""The span writer (``tracklet/store/spans_writer.py``) behind ``/v1/traces``: concurrent requests'
spans are committed by one thread, each request answered only once its spans are readable, the
queue bounded, and one bad request failing alone."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from tracklet.store.spans import received_row
from tracklet.errors import SpanWriterBusy
from tracklet.store.spans_writer import SpanWriter
from tracklet.store.store import Store


def _rows(trace: int, count: int) -> list[tuple]:
    return [received_row("", f"{trace:032x}", f"{number + 1:016x}", "", "chat", "client", 1_000, 2_000, "ok", "",
                         {"gen_ai.operation.name": "chat"}, '{"gen_ai.operation.name":"chat"}')
            for number in range(count)]


def _count(store: Store) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM spans")).scalar_one()


def test_concurrent_requests_are_all_stored_and_acknowledged_only_once_readable(root, store_url):
    store = Store(store_url, root=root)
    seen_at_ack: list[int] = []
    errors: list[BaseException] = []

    def request(number: int) -> None:
        try:
            assert store.add_received_spans("p", _rows(number + 1, 300)) == 300
            with store.engine.connect() as connection:  # what the answer promises: committed
                seen_at_ack.append(connection.execute(sa.text(
                    "SELECT count(*) FROM spans WHERE trace_id = :t"), {"t": f"{number + 1:032x}"}).scalar_one())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=request, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and seen_at_ack == [300] * 8
    assert _count(store) == 2_400
    (trace,) = store.traces("p", filters={"trace_id": f"{3:032x}"})
    assert len(trace["spans"]) == 300 and trace["spans"][0]["operation"] == "chat"
    store.close()


def _held_writer(store: Store, **limits: int) -> tuple[SpanWriter, threading.Event]:
    """A writer whose first project lookup waits for the returned event: what it took stays queued."""
    release = threading.Event()

    def project_id(name: str) -> int:
        release.wait(30)
        return store.add_project(name)[0]

    return SpanWriter(store.engine, project_id, **limits), release


def test_the_queue_is_bounded_a_request_past_it_is_refused_as_busy(root):
    store = Store(root=root)
    writer, release = _held_writer(store, max_pending=500)
    first = threading.Thread(target=writer.write, args=("p", _rows(1, 400)))
    first.start()
    with pytest.raises(SpanWriterBusy, match="400 spans are waiting"):
        writer.write("p", _rows(2, 200), wait_s=0.3)
    release.set()
    first.join(30)
    assert writer.write("p", _rows(2, 200)) == 200  # room again once the first committed
    assert _count(store) == 600
    writer.close()
    store.close()


def test_a_request_that_fails_fails_alone_the_others_in_its_batch_are_stored(root):
    store = Store(root=root)
    writer, release = _held_writer(store)
    results: dict[str, object] = {}

    def request(name: str, rows: list[tuple]) -> None:
        try:
            results[name] = writer.write("p", rows)
        except Exception as error:  # noqa: BLE001 - asserted below
            results[name] = error

    blocker = threading.Thread(target=request, args=("first", _rows(1, 10)))
    blocker.start()
    while not writer._pending:  # the writer took the first request and waits in the project lookup
        threading.Event().wait(0.01)
    bad = [row[:5] for row in _rows(2, 3)]  # too few values for the statement
    others = [threading.Thread(target=request, args=(name, rows)) for name, rows in (("bad", bad),
                                                                                     ("good", _rows(3, 20)))]
    for thread in others:
        thread.start()
    while writer._pending < 33:
        threading.Event().wait(0.01)
    release.set()
    for thread in [blocker, *others]:
        thread.join(30)
    assert results["first"] == 10 and results["good"] == 20
    assert isinstance(results["bad"], Exception)
    assert _count(store) == 30
    writer.close()
    store.close()
