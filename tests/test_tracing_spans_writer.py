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


def _transactions(store: Store) -> tuple[list[object], object]:
    """The transaction each request's ``in_transaction`` ran in, and a maker of such callbacks."""
    seen: list[object] = []

    def hook(connection: sa.Connection) -> None:
        seen.append(connection.get_transaction())  # held: ids of dropped objects could repeat

    return seen, hook


def test_a_request_being_decoded_joins_the_transaction_of_one_already_queued(root):
    """While another request is announced (``arriving``: its spans being decoded), the writer waits
    for it (up to ``linger_s``) so both commit in one transaction; a lone request is committed at
    once (a linger of 600 s would hang it: joined with a bound below)."""
    store = Store(root=root)
    writer = SpanWriter(store.engine, lambda name: store.add_project(name)[0], linger_s=600)
    seen, hook = _transactions(store)
    lone = threading.Thread(target=writer.write, args=("p", _rows(1, 10)), kwargs={"in_transaction": hook})
    lone.start()
    lone.join(60)
    assert not lone.is_alive() and _count(store) == 10

    with writer.arriving() as arrival:
        first = threading.Thread(target=writer.write, args=("p", _rows(2, 30)), kwargs={"in_transaction": hook})
        first.start()
        while writer._pending < 30:  # queued; the writer waits for the announced request
            threading.Event().wait(0.01)
        first.join(0.5)
        assert first.is_alive() and _count(store) == 10  # not answered: not committed alone
        assert writer.write("p", _rows(3, 20), in_transaction=hook, arrival=arrival) == 20
    first.join(60)
    assert not first.is_alive() and _count(store) == 60
    assert len(seen) == 3 and seen[1] is seen[2] and seen[0] is not seen[1]
    writer.close()
    store.close()


def test_an_announced_request_that_never_writes_releases_the_writer(root):
    """A request whose decoding failed (the block exits without ``write``) must not hold back the
    requests queued meanwhile until the linger ends (600 s here: joined with a bound)."""
    store = Store(root=root)
    writer = SpanWriter(store.engine, lambda name: store.add_project(name)[0], linger_s=600)
    first = threading.Thread(target=writer.write, args=("p", _rows(1, 10)))
    with pytest.raises(ValueError, match="not OTLP"):
        with writer.arriving():
            first.start()
            while writer._pending < 10:
                threading.Event().wait(0.01)
            raise ValueError("not OTLP")
    first.join(60)
    assert not first.is_alive() and _count(store) == 10
    writer.close()
    store.close()


def test_a_resources_attributes_are_stored_once_and_read_back_into_each_span(root, store_url):
    """Spans received over OTLP keep their resource's and scope's attributes in one
    ``span_resources`` row per distinct set and project (not in every span: migration 0009); a read
    gives each span its own attributes, then those (its own value kept for a key both have)."""
    from tracklet.proto import otlp_trace_pb2 as otlp
    from tracklet.tracing.otlp import decode

    def body(service: str, first: int) -> bytes:
        request = otlp.ExportTraceServiceRequest()
        resource = request.resource_spans.add()
        entry = resource.resource.attributes.add()
        entry.key, entry.value.string_value = "service.name", service
        scope_spans = resource.scope_spans.add()
        scope_spans.scope.name = "lib"
        for number in range(first, first + 3):
            span = scope_spans.spans.add()
            span.trace_id, span.span_id = bytes([first]) * 16, bytes([number]) * 8
            span.name, span.start_time_unix_nano, span.end_time_unix_nano = "chat", number, number + 1
            entry = span.attributes.add()
            entry.key, entry.value.string_value = ("otel.scope.name", "mine") if number == first else ("k", "v")
        return request.SerializeToString()

    store = Store(store_url, root=root)
    for service, first in (("a", 1), ("a", 4), ("b", 7)):  # the second request's resource is the first's
        for project, rows in decode(body(service, first), "application/x-protobuf", project="p").by_project.items():
            assert store.add_received_spans(project, rows) == 3
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM span_resources")).scalar_one() == 2
    spans = sorted((s for t in store.traces("p") for s in t["spans"]), key=lambda s: s["start_ns"])
    assert [s["attributes"] for s in spans[:2]] == [
        {"otel.scope.name": "mine", "resource.service.name": "a"},
        {"k": "v", "otel.scope.name": "lib", "resource.service.name": "a"}]
    assert {s["attributes"]["resource.service.name"] for s in spans} == {"a", "b"} and len(spans) == 9
    store.close()


def test_a_big_request_with_spans_stored_already_keeps_the_upserts_rule_and_every_column(root, store_url):
    """A request of 100 spans, some of them stored already: the open ones take their end, a
    finished one is kept as first stored, the rest are new; each is stored column for column as
    the same span stored alone, and the request counts all it gave."""
    store = Store(store_url, root=root)
    rows = [received_row("r", "a" * 32, f"{number + 1:016x}", "", f"final {number}", "client", 1_000 + number,
                         2_000 + number, "ok", "", {"gen_ai.request.model": f"m{number}", "n": number},
                         f'{{"gen_ai.request.model":"m{number}","n":{number}}}') for number in range(100)]
    earlier = [row[:6] + (row[6], 0, 0.0, "open") + row[10:] for row in (rows[10], rows[60])]
    earlier.append(rows[20][:4] + ("first",) + rows[20][5:])
    assert store.add_received_spans("p", earlier) == 3
    assert store.add_received_spans("p", rows) == 100
    assert store.add_received_spans("alone", [rows[0]]) == 1
    (alone,) = store.traces("alone")[0]["spans"]
    spans = {span["span_id"]: span for span in store.traces("p")[0]["spans"]}
    assert len(spans) == 100
    for number, row in enumerate(rows):
        span = spans[row[2]]
        assert (span["name"], span["status"], span["end_ns"], span["model"]) == (
            "first" if number == 20 else f"final {number}", "ok", 2_000 + number, f"m{number}"), number
        assert span["attributes"] == {"gen_ai.request.model": f"m{number}", "n": number}
        same = {key: (value if key not in ("name", "model", "attributes", "start_ns", "end_ns", "span_id")
                      else alone[key]) for key, value in span.items()}
        assert same == alone or number == 20, number
    store.close()
