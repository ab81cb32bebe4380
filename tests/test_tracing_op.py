"""``@tracklet.op``: spans recorded through the run's queue, read back from the record log."""

from __future__ import annotations

import asyncio
import json
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracklet
from conftest import QUIET, run_script
from tracklet.core.reader import replay
from tracklet.core import lifecycle
from tracklet.tracing import set_redaction_hook


def _spans(run: tracklet.Run) -> list:
    run.finish()
    return replay(run._paths.log_file).spans


def _by_name(spans: list) -> dict:
    return {s.name: s for s in spans}


def _inputs(span) -> dict:
    return json.loads(span.input.json)


def _output(span):
    return json.loads(span.output.json)


@tracklet.op
def add(a, b=1):
    return a + b


@tracklet.op(name="pipeline")
def pipeline(x):
    return add(add(x), b=10)


def test_disabled_op_is_the_plain_call_and_records_nothing(start):
    assert lifecycle.trace_target is None
    assert add(1, 2) == 3  # no run: the plain call
    run = start(settings={"tracing": False})
    assert lifecycle.trace_target is None
    assert add(2) == 3
    assert _spans(run) == []


def test_nested_ops_share_a_trace_and_name_their_parent(start):
    run = start()
    run.log({"loss": 1.0})  # step 0 -> 1
    assert pipeline(1) == 12
    spans = _spans(run)
    assert [s.name for s in spans] == ["pipeline", "add", "add"]  # queued as they start
    root = spans[0]
    assert root.parent_span_id == b"" and len(root.trace_id) == 16 and len(root.span_id) == 8
    for child in spans[1:]:
        assert child.trace_id == root.trace_id and child.parent_span_id == root.span_id
    assert root.start_time_unix_nano <= spans[1].start_time_unix_nano <= spans[2].end_time_unix_nano \
        <= root.end_time_unix_nano
    assert all(s.run_id == run.id and s.step == 1 for s in spans)
    assert _inputs(spans[2]) == {"a": 2, "b": 10} and _output(spans[2]) == 12
    assert _inputs(root) == {"x": 1} and _output(root) == 12
    assert root.status_code == root.STATUS_OK


def test_separate_calls_are_separate_traces(start):
    run = start()
    add(1)
    add(2)
    first, second = _spans(run)
    assert first.trace_id != second.trace_id and first.span_id != second.span_id


def test_user_exception_is_recorded_and_reraised_unchanged(start):
    class Custom(Exception):
        pass

    error = Custom("model refused")

    @tracklet.op
    def fails():
        raise error

    run = start()
    with pytest.raises(Custom) as caught:
        fails()
    assert caught.value is error
    (span,) = _spans(run)
    assert span.status_code == span.STATUS_ERROR
    assert span.status_message == "Custom: model refused"
    (event,) = span.events
    assert event.name == "exception"
    attributes = {e.key: e.value for e in event.attributes}
    assert "model refused" in attributes["exception.stacktrace"].string_value
    assert not span.output.json


def test_async_ops_nest_per_task(start):
    @tracklet.op
    async def leaf(i):
        await asyncio.sleep(0)
        return i * 2

    @tracklet.op
    async def branch(i):
        return await leaf(i) + await leaf(i + 1)

    async def main():
        return await asyncio.gather(branch(1), branch(10))

    run = start()
    assert asyncio.run(main()) == [2 + 4, 20 + 22]
    spans = _spans(run)
    branches = [s for s in spans if s.name.endswith("branch")]
    leaves = [s for s in spans if s.name.endswith("leaf")]
    assert len(branches) == 2 and len(leaves) == 4
    assert branches[0].trace_id != branches[1].trace_id  # concurrent tasks: separate roots
    for leaf_span in leaves:
        parent = next(b for b in branches if b.span_id == leaf_span.parent_span_id)
        assert parent.trace_id == leaf_span.trace_id
        assert _inputs(leaf_span)["i"] in ((1, 2) if _inputs(parent)["i"] == 1 else (10, 11))


def test_generator_span_covers_iteration_and_children_nest(start):
    @tracklet.op
    def numbers(n):
        for i in range(n):
            yield add(i)

    run = start()
    outside = []
    for item in numbers(3):
        outside.append(add(100))  # the consumer's op is not the generator's child
        assert item >= 1
    spans = _spans(run)
    generator = next(s for s in spans if s.name.endswith("numbers"))
    children = [s for s in spans if s.parent_span_id == generator.span_id]
    assert len(children) == 3
    assert _output(generator) == [1, 2, 3]
    consumer_ops = [s for s in spans if s.name == "add" and _inputs(s) == {"a": 100}]
    assert len(consumer_ops) == 3 and all(s.parent_span_id == b"" for s in consumer_ops)
    attributes = {e.key: e.value for e in generator.attributes}
    assert attributes["tracklet.op.items"].int_value == 3


def test_generator_send_throw_and_early_close(start):
    @tracklet.op
    def echo():
        received = []
        try:
            while True:
                value = yield len(received)
                received.append(value)
        except KeyError:
            yield "caught"
        return received

    run = start()
    g = echo()
    assert next(g) == 0
    assert g.send("a") == 1
    assert g.throw(KeyError("k")) == "caught"
    g.close()
    (span,) = _spans(run)
    assert span.status_code == span.STATUS_OK
    assert _output(span) == [0, 1, "caught"]


def test_async_generator(start):
    @tracklet.op
    async def stream(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield add(i)

    async def main():
        return [x async for x in stream(2)]

    run = start()
    assert asyncio.run(main()) == [1, 2]
    spans = _spans(run)
    parent = next(s for s in spans if s.name.endswith("stream"))
    assert [s.parent_span_id for s in spans if s.name == "add"] == [parent.span_id] * 2
    assert _output(parent) == [1, 2]


class Model:
    def __init__(self, scale):
        self.scale = scale

    @tracklet.op
    def predict(self, x):
        return x * self.scale

    @tracklet.op
    @staticmethod
    def helper(x):
        return -x

    @tracklet.op
    @classmethod
    def build(cls, scale):
        return cls(scale)


def test_methods_static_and_class_methods(start):
    run = start()
    model = Model.build(3)
    assert model.predict(2) == 6 and Model.helper(1) == -1 and model.helper(2) == -2
    spans = _by_name(_spans(run))
    assert _inputs(spans["Model.predict"]) == {"x": 2}  # self is left out
    assert _inputs(spans["Model.build"]) == {"scale": 3}
    assert _inputs(spans["Model.helper"]) == {"x": 2}


def test_secrets_are_redacted_by_default_and_the_hook_runs_after(start):
    @tracklet.op
    def call_llm(prompt, api_key, headers):
        return {"text": "ok", "authorization": "Bearer abcdefghijklmnop123456"}

    run = start()
    call_llm("say hi; my key is sk-ant-abcdefghijklmnopqrstuvwx", "plain-looking-value",
             {"Authorization": "Bearer abcdefghijklmnop123456", "x-request-id": "r1"})
    try:
        set_redaction_hook(lambda value, part, op: {**value, "prompt": "[pii removed]"} if part == "input" else value)
        call_llm("email me at a@b.c", "k", {})
        run.flush()  # the hook runs on the worker, as the span is written
    finally:
        set_redaction_hook(None)
    first, second = _spans(run)
    text = first.input.json + first.output.json
    assert "sk-ant-" not in text and "abcdefghijklmnop123456" not in text and "plain-looking-value" not in text
    assert _inputs(first)["headers"]["x-request-id"] == "r1"
    assert _inputs(first)["api_key"] == "[redacted]"
    assert _inputs(second)["prompt"] == "[pii removed]"


def test_failing_redaction_hook_records_no_unredacted_payload(start):
    run = start()
    try:
        set_redaction_hook(lambda value, part, op: 1 / 0)
        add("secret stuff", "!")
        run.flush()
    finally:
        set_redaction_hook(None)
    (span,) = _spans(run)
    assert _inputs(span) == "[redaction failed]"


def test_capture_modes(start):
    @tracklet.op(capture="metadata")
    def meta(x, y):
        return [x]

    @tracklet.op(capture="none")
    def nothing(x):
        return x

    run = start()
    meta(1, "s")
    nothing("hidden")
    first, second = _spans(run)
    assert _inputs(first) == {"x": "int", "y": "str"} and _output(first) == "list"
    assert second.input.json == "" and second.output.json == "" and "hidden" not in str(second)
    with pytest.raises(ValueError, match="capture must be one of"):
        tracklet.op(capture="everything")


def test_large_payload_goes_to_the_blob_store(start, root):
    run = start()
    big = "x" * 20_000
    add(big, "y")
    (span,) = _spans(run)
    assert span.input.json == "" and len(span.input.blob_digest) == 64
    assert span.input.size_bytes > 20_000
    blob = next((root / "artifacts" / "blobs").rglob(span.input.blob_digest))
    assert json.loads(blob.read_text()) == {"a": big, "b": "y"}
    assert span.output.blob_digest  # the result is big too


def test_unserializable_values_never_fail_the_call(start):
    class Odd:
        def __repr__(self):
            raise RuntimeError("no repr")

    run = start()
    odd = Odd()
    assert add([odd], b=[odd]) == [odd, odd]
    (span,) = _spans(run)
    assert "repr failed" in span.input.json


def test_tracklets_own_failure_is_contained(start, monkeypatch):
    from tracklet.tracing import ops as op_module

    run = start()

    class Broken(list):
        def append(self, item):
            raise OSError("queue exploded")

    monkeypatch.setattr(run, "_queue", Broken())
    monkeypatch.setattr(op_module, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert add(1) == 2
        assert add(2) == 3
    assert len([w for w in caught if "recording an op's span failed" in str(w.message)]) == 1


def test_finished_run_stops_tracing(start):
    run = start()
    run.finish()
    assert lifecycle.trace_target is None
    assert add(1) == 2


def test_a_forked_child_calls_ops_plainly(root):
    # The process that forks is a fresh interpreter (tests never fork pytest's own process).
    done = run_script("""
        import json, os, sys, warnings
        import forkprobe
        import tracklet
        from tracklet.core import lifecycle
        from tracklet.core.reader import replay

        @tracklet.op
        def add(a, b=1):
            return a + b

        run = tracklet.init(project="test", dir=sys.argv[1], settings=json.loads(sys.argv[2]))
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: no warning, no error, the plain call
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                try:
                    ok = add(1) == 2 and lifecycle.trace_target is None
                except BaseException:
                    ok = False
            os.write(write_end, b"1" if ok else b"0")
            os._exit(0)
        os.close(write_end)
        said = os.read(read_end, 1).decode()
        code = forkprobe.reap(pid)
        os.close(read_end)
        parent_adds = add(2) == 3
        run.finish()
        print(json.dumps({"child": said, "code": code, "parent_adds": parent_adds,
                          "spans": len(replay(run._paths.log_file).spans)}))
    """, args=(str(root), json.dumps(QUIET)), env={"TRACKLET_DIR": str(root)}, timeout=120)
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout.strip().splitlines()[-1])
    assert told["child"] == "1" and told["code"] == 0, done.stderr
    assert told["parent_adds"] is True
    assert told["spans"] == 1  # the parent's call only


# ------------------------------------------------------------------ the worker's payload fast path

_plain = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30) | st.sampled_from(["sk-" + "a1B2c3D4e5F6g7H8i9J0k", "password=hunter2", "Bearer x1y2z3w4v5u6"]),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=10) | st.sampled_from(["api_key", "token", "max_tokens", "apiKey"])
                      | st.integers(-5, 5) | st.booleans() | st.none(), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_plain)
def test_payload_fast_path_records_what_the_walk_records(value):
    from tracklet.tracing.record import _ENCODER, payload_json, to_json

    assert payload_json(value) == _ENCODER.encode(to_json(value))


def test_plain_payloads_skip_the_per_value_walk(start, monkeypatch):
    """Binding, serializing and redacting a plain payload is one C-level encode and a few substring
    checks on the worker, not a Python call per value (issue #19: the worker's cost per span)."""
    from tracklet.tracing import record

    walked = []
    real = record.to_json
    monkeypatch.setattr(record, "to_json", lambda value, *a: real(value, *a) if a else walked.append(value) or real(value))  # top-level walks
    @tracklet.op
    def echo(a, b):
        return {"a": a, "b": b}

    run = start()
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "What is 6 x 7?"}]
    echo({"messages": messages, "max_tokens": 64, "temperature": 0.2}, b=[1.5, None, True])
    echo({"api_key": "abc"}, b="see https://u:pw@host.example")  # these need redaction: the walk
    plain, secret = _spans(run)
    assert _inputs(plain) == {"a": {"messages": messages, "max_tokens": 64, "temperature": 0.2}, "b": [1.5, None, True]}
    assert _output(plain) == _inputs(plain)
    assert _inputs(secret) == _output(secret) == {"a": {"api_key": "[redacted]"}, "b": "see https://host.example"}
    assert len(walked) == 2  # the second span's input and output, none for the first


def test_enums_and_non_string_keys_record_as_json_writes_them(start):
    import enum

    class Color(enum.IntEnum):
        RED = 1

    class Mode(str, enum.Enum):
        FAST = "fast"

    @tracklet.op
    def keep(a, b):
        return None

    run = start()
    keep({Color.RED: Mode.FAST, False: None, None: 1.5, 3: "x"}, b={float("nan"): {1, 2}})  # the walk (a set)
    keep({Color.RED: Mode.FAST, False: None, None: 1.5, 3: "x"}, b={})  # the fast path
    walked, fast = _spans(run)
    assert _inputs(fast)["a"] == _inputs(walked)["a"] == {"1": "fast", "false": None, "null": 1.5, "3": "x"}
    assert _inputs(walked)["b"] == {"NaN": [1, 2]}


def _call_pair(capture, args, result, parent, step, run_id, root, trace_id=(7 << 64) | 5, span_id=5):
    """Two identical finished OpCalls (the record path clears a call's references)."""
    from types import SimpleNamespace

    from tracklet.tracing.ops import OpCall, OpInfo

    def target(a, b=1):
        return None

    op = OpInfo(target, None, capture, "function")
    run = SimpleNamespace(id=run_id, _paths=SimpleNamespace(root=root))
    calls = []
    for _ in range(2):
        call = OpCall(op, run, trace_id, span_id, parent, 1_700_000_000_123_456_789, step)
        call.end, call.args, call.kwargs, call.result = call.start + 99, args, {}, result
        calls.append(call)
    return calls


@settings(max_examples=200, deadline=None)
@given(capture=st.sampled_from(["full", "metadata", "none"]), a=_plain | st.sampled_from(["\ud800 lone", "y" * 9000]),
       result=_plain, parent=st.sampled_from([0, 1, 2**64 - 1]), step=st.integers(-2**63, 2**63 - 1),
       run_id=st.sampled_from(["", "abc123", "ü-run"]), trace_id=st.integers(1, 2**128 - 1),
       span_id=st.integers(1, 2**64 - 1))
def test_batched_span_bytes_are_the_span_record(tmp_path_factory, capture, a, result, parent, step, run_id, trace_id,
                                                span_id):
    """The sender's batch path writes the bytes of the record span_record builds with protobuf."""
    from tracklet.proto import records_pb2 as pb
    from tracklet.tracing.record import batch_records, span_record

    root = tmp_path_factory.getbasetemp() / "blobs"
    fast, reference = _call_pair(capture, (a,), result, parent, step, run_id, root, trace_id, span_id)
    (payload,) = batch_records([fast])
    assert pb.Record.FromString(payload) == span_record(reference)


def test_a_failing_call_in_a_batch_is_reported_and_the_others_written(start, monkeypatch):
    from tracklet.tracing import record

    @tracklet.op
    def one(x):
        return x

    real = record.bind_inputs
    monkeypatch.setattr(record, "bind_inputs", lambda call: real(call) if call.args != (2,) else 1 / 0)
    run = start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for x in (1, 2, 3):
            one(x)
        spans = _spans(run)
    assert [_inputs(s) for s in spans] == [{"x": 1}, {"x": 3}]
    assert any("ZeroDivisionError" in str(w.message) for w in caught)


def test_big_plain_payloads_skip_the_walk_and_oversized_ones_are_cut(monkeypatch):
    """Up to 1 MiB of JSON with fewer than 10,000 items a container is recorded whole in one
    encode; a container past 10,000 items takes the walk, which cuts it."""
    from tracklet.tracing import record

    walked = []
    real = record.to_json
    monkeypatch.setattr(record, "to_json", lambda value, *a: real(value, *a) if a else walked.append(1) or real(value))
    history = [{"role": "user", "content": f"message {i} " + "words " * 40} for i in range(1_000)]  # ~260 KB
    assert json.loads(record.payload_json({"messages": history})) == {"messages": history}
    assert walked == []
    long = list(range(10_001))
    assert json.loads(record.payload_json(long))[-1] == "... 1 more items" and walked == [1]


def test_root_sampling_keeps_whole_traces_chosen_by_trace_id(start):
    """``sample_rate`` on the op that starts a trace: kept traces are whole (every child, async and
    generator ones too), left-out ones record nothing, the share is about the rate, and the choice
    is ``sampled(trace_id, rate)``."""
    from tracklet.tracing import current_span_ids, sampled

    seen_inside: list = []

    @tracklet.op(name="child")
    def child(x):
        seen_inside.append(current_span_ids())
        return x

    @tracklet.op(name="numbers")
    def numbers():
        yield child(1)

    @tracklet.op(name="later")
    async def later(x):
        return child(x)

    @tracklet.op(name="step", sample_rate=0.25)
    def step(i):
        child(i)
        list(numbers())
        asyncio.run(later(i))
        return i

    run = start()
    steps = 400
    for i in range(steps):
        step(i)
    assert current_span_ids() is None  # the context is restored after left-out traces too
    spans = _spans(run)
    traces: dict = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    kept = len(traces)
    assert 0.15 * steps < kept < 0.35 * steps
    for trace_id, members in traces.items():
        assert sorted(s.name for s in members) == sorted(["step", "child", "numbers", "child", "later", "child"])
        assert sampled(trace_id.hex(), 0.25)
    # left-out steps ran their children as plain calls, outside any span
    assert seen_inside.count(None) == 3 * (steps - kept)


def test_sample_rate_bounds_and_extremes(start):
    with pytest.raises(ValueError, match="sample_rate"):
        tracklet.op(sample_rate=1.5)
    with pytest.raises(ValueError, match="sample_rate"):
        tracklet.op(sample_rate=True)
    never = tracklet.op(name="never", sample_rate=0)(lambda: add(1))
    always = tracklet.op(name="always", sample_rate=1)(lambda: add(1))
    run = start()
    for _ in range(20):
        assert never() == 2
        assert always() == 2
    names = [s.name for s in _spans(run)]
    assert names.count("always") == 20 and names.count("add") == 20 and "never" not in names


def test_sampled_is_a_function_of_the_trace_id():
    from tracklet.tracing import sampled

    ids = [(0xABCDEF << 64) | n for n in range(1, 20_001)]  # consecutive ids, as one process makes them
    for rate in (0.01, 0.1, 0.5):
        kept = sum(sampled(trace_id, rate) for trace_id in ids)
        assert abs(kept / len(ids) - rate) < 0.2 * rate + 0.002
        assert [sampled(t, rate) for t in ids[:50]] == [sampled(f"{t:032x}", rate) for t in ids[:50]]
    assert all(sampled(t, 1.0) for t in ids[:100]) and not any(sampled(t, 0.0) for t in ids[:100])


_DEFAULT: list = []


def test_an_op_with_plain_parameters_takes_calls_exactly_as_its_function(start):
    """An op over a function of positional-or-keyword parameters has the function's own parameters
    (its calls that record nothing skip the generic wrapper's packing): every way of calling it
    gives the function's result (a default left out is the default object itself) or its
    TypeError, with no run, inside a trace sampling left out, and recording, where a parameter
    left at its default is not recorded as passed."""
    import inspect

    def plain(a, b=_DEFAULT, c=None):
        return a, b, c

    traced = tracklet.op(name="f")(plain)
    assert inspect.signature(traced) == inspect.signature(plain) and traced.__name__ == "plain"
    calls = [((1,), {}), ((1, 2), {}), ((1,), {"c": 3}), ((), {"a": 1, "b": 2, "c": 3}), ((1, 2, 3), {})]
    wrong = [((), {}), ((1,), {"z": 1}), ((1,), {"a": 2}), ((1, 2, 3, 4), {})]

    def check() -> None:
        for args, kwargs in calls:
            result = traced(*args, **kwargs)
            assert result == plain(*args, **kwargs) and result[1] is plain(*args, **kwargs)[1]
        for args, kwargs in wrong:
            with pytest.raises(TypeError) as expected:
                plain(*args, **kwargs)
            with pytest.raises(TypeError, match=str(expected.value).replace("plain()", ".*")):
                traced(*args, **kwargs)

    check()  # no run
    run = start()
    tracklet.op(name="left out", sample_rate=0.0)(check)()
    check()  # recorded
    spans = [span for span in _spans(run) if span.name == "f"]
    assert [_inputs(span) for span in spans[: len(calls)]] == [
        {"a": 1}, {"a": 1, "b": 2}, {"a": 1, "c": 3}, {"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2, "c": 3}]
    assert [_output(span) for span in spans[: len(calls)]] == [[1, [], None], [1, 2, None], [1, [], 3], [1, 2, 3],
                                                              [1, 2, 3]]


def test_over_its_tracing_budget_a_run_leaves_out_whole_traces_of_ops_without_a_sample_rate(start, monkeypatch):
    """``Settings.tracing_budget``: once the worker has charged a run more than its share of time,
    traces started by ops without a ``sample_rate`` of their own are left out whole (their ops are
    plain calls), counted, with one warning, until the credit is back; an op with an explicit
    ``sample_rate`` keeps its own."""
    from tracklet.tracing.ops import budget_left_out, current_span_ids

    seen_inside: list = []

    @tracklet.op
    def leaf(i):
        seen_inside.append(current_span_ids())
        return i

    @tracklet.op
    def root(i):
        return [leaf(i) for _ in range(3)]

    @tracklet.op
    def spanning(i):
        first = leaf(i)
        run.flush()  # the worker charges the run mid-trace: over budget from here
        return [first, leaf(i)]

    explicit = tracklet.op(name="explicit", sample_rate=1.0)(lambda: leaf(0))
    run = start(settings={"tracing_budget": 1e-9})
    with pytest.warns(tracklet.TrackletWarning, match="tracing_budget"):
        assert spanning(0) == [0, 0]  # a trace begun within budget is kept whole
    assert seen_inside[0] is not None and seen_inside[1] is not None
    seen_inside.clear()
    for i in range(5):
        assert root(i) == [i, i, i]
    assert seen_inside == [None] * 15  # the left-out traces' ops ran as plain calls
    explicit()
    assert budget_left_out(run) == 5
    from tracklet.tracing import ops

    monkeypatch.setattr(ops, "_monotonic_ns", lambda: ops._reopen_at)  # time passes: the credit is back
    assert root(9) == [9, 9, 9]  # traced again (no op call reached the worker meanwhile to say so)
    assert seen_inside[-1] is not None and budget_left_out(run) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per run
        spans = _spans(run)
    assert sorted(s.name.rsplit(".", 1)[-1] for s in spans) == sorted(
        ["spanning", "leaf", "leaf", "explicit", "leaf", "root", "leaf", "leaf", "leaf"])


def test_the_tracing_budget_is_charged_the_worker_time_spent_delivering_spans(start):
    """Writing a span's record to the run's sinks (the record log, a remote sender) is work tracing
    costs the process: it counts against the budget as much as building the record. A sink that
    spends 80 ms of the worker's thread CPU time on one span puts a run allowed 30 ms (0.1 % of
    30 s) over its budget, so the next trace is left out."""
    import time

    from tracklet.tracing.ops import budget_left_out

    class SlowSink:
        """A sink whose writes take ``cost_ns`` of thread CPU time each while ``armed``."""

        armed = False
        cost_ns = 80_000_000

        def write(self, payload: bytes) -> None:
            if self.armed:
                until = time.thread_time_ns() + self.cost_ns
                while time.thread_time_ns() < until:
                    pass

        def flush(self, fsync: bool = False) -> None:
            pass

        def close(self) -> None:
            pass

    run = start(settings={"tracing_budget": 0.001})
    run.flush()  # the run's own start records, before the slow sink joins
    sink = SlowSink()
    run._sender.sinks.append(sink)
    sink.armed = True
    assert add(1) == 2  # within budget: traced, its one span costs the worker 80 ms to deliver
    with pytest.warns(tracklet.TrackletWarning, match="tracing_budget"):
        run.flush()
    sink.armed = False
    assert budget_left_out(run) == 0
    add(2)
    assert budget_left_out(run) == 1  # over budget now: this trace was left out
    assert [s.name for s in _spans(run)] == ["add"]


def test_the_tracing_budget_charges_what_a_traced_op_costs_its_caller_here(start, monkeypatch):
    """What a traced op costs the training thread (its bookkeeping, cache misses, trading the GIL
    with a worker on another core) differs between machines, so the budget measures it rather
    than trusting a fixed estimate: a kept trace of a budgeted root op, on the caller's thread
    clock, less the mean of the root's calls the budget left out, per span the trace began. With
    the thread clock injected: a 1 ms step whose 9 traced ops cost it 50 us each more than plain
    calls is charged ~45 us a call for the callers' side, not the 6 us estimate."""
    from tracklet.tracing import ops
    from tracklet.tracing.ops import budget_left_out, current_span_ids

    clock = [0]
    monkeypatch.setattr(ops, "_thread_time_ns", lambda: clock[0])

    @tracklet.op
    def leaf(i):
        if current_span_ids() is not None:
            clock[0] += 50_000  # traced: 50 us of the caller's time more than the plain call
        return i

    @tracklet.op
    def step(n):
        clock[0] += 1_000_000  # the step's own work
        return [leaf(i) for i in range(n)]

    run = start(settings={"tracing_budget": 1e-9})
    with pytest.warns(tracklet.TrackletWarning, match="tracing_budget"):
        step(9)
        run.flush()  # charged: over budget from here
    for _ in range(ops.LEFT_OUT_TIMED_EVERY):
        assert step(9) == list(range(9))
    assert budget_left_out(run) == ops.LEFT_OUT_TIMED_EVERY
    state = ops._budgets[run.id]
    assert state.caller_ns == ops.UNTIMED_NS  # nothing measured yet: the estimate
    monkeypatch.setattr(ops, "_monotonic_ns", lambda: ops._reopen_at)  # the credit is back at each root
    for _ in range(12):
        step(9)  # kept, measured: 1.45 ms against 1 ms left out, over 10 spans
        run.flush()
    assert budget_left_out(run) == ops.LEFT_OUT_TIMED_EVERY
    assert 40_000 < state.caller_ns <= 45_000
    before = state.credit
    ops.charge(run, 1000, 0)  # 1,000 calls that cost the worker nothing
    assert before - state.credit > 1000 * 40_000


def test_within_the_default_budget_and_at_budget_1_every_trace_is_kept(start):
    from tracklet.tracing import ops
    from tracklet.tracing.ops import budget_left_out, charge

    run = start()
    assert run.settings.tracing_budget == 0.01
    for i in range(200):
        add(i)
    run.flush()
    assert budget_left_out(run) == 0
    assert len(_spans(run)) == 200
    everything = start(settings={"tracing_budget": 1})
    charge(everything, 10**6, 10**12)  # a million calls that cost the worker 1,000 s: still kept
    assert ops._over_budget is not everything.id
    add(1)
    assert [s.name for s in _spans(everything)] == ["add"]


def test_tracing_budget_is_a_share_of_time(start, monkeypatch):
    for wrong in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="tracing_budget"):
            start(settings={"tracing_budget": wrong})
    monkeypatch.setenv("TRACKLET_TRACING_BUDGET", "0.05")
    run = start()
    assert run.settings.tracing_budget == 0.05
    run.finish()
