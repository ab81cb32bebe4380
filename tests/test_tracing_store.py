"""Spans in the store: indexed from record logs and received rows, typed columns, ``Api().traces``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import QUIET, REPO

import tracklet
from tracklet.store import Store
from tracklet.store.spans import span_row


@tracklet.op
def tool(x):
    return {"x": x}


@tracklet.op(name="agent")
def agent(n):
    return [tool(i) for i in range(n)]


def _record(root, project="p", run_id="r1", steps=3):
    run = tracklet.init(project=project, dir=str(root), id=run_id, settings=QUIET)
    for step in range(steps):
        agent(2)
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()
    return run


def test_log_spans_are_indexed_and_read_as_traces(root, store_url):
    _record(root)
    store = Store(store_url, root=root)
    report = store.index()
    assert not report.failed
    traces = store.traces("p")
    assert len(traces) == 3
    assert [t["spans"][0]["step"] for t in traces] == [2, 1, 0]  # newest first
    for trace in traces:
        names = [s["name"] for s in trace["spans"]]
        assert names == ["agent", "tool", "tool"]
        root_span = trace["spans"][0]
        assert root_span["parent_span_id"] == "" and root_span["source"] == "log" and trace["run_id"] == "r1"
        assert all(s["parent_span_id"] == root_span["span_id"] for s in trace["spans"][1:])
        assert root_span["status"] == "ok" and root_span["duration_ms"] >= 0
    assert len(store.traces("p", limit=2)) == 2
    assert store.traces("p", run_id="nope") == []
    assert store.traces("other") == []
    store.close()


RECEIVED = [
    {"trace_id": "a" * 32, "span_id": "1" * 16, "name": "chat gpt-4o", "kind": "client", "start_ns": 10**18,
     "end_ns": 10**18 + 2_500_000, "status": "ok",
     "attributes": {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 30}},
    {"trace_id": "b" * 32, "span_id": "2" * 16, "name": "ChatCompletion", "start_ns": 2 * 10**18,
     "end_ns": 2 * 10**18 + 1, "status": "error", "run_id": "r9",
     "attributes": {"openinference.span.kind": "LLM", "llm.provider": "anthropic", "llm.model_name": "claude-x",
                    "llm.token_count.prompt": 5, "llm.token_count.completion": 7,
                    "input.value": '{"messages": ["hi"]}', "output.value": "hello"}},
    {"trace_id": "c" * 32, "span_id": "3" * 16, "name": "mlflow", "start_ns": 3 * 10**18, "end_ns": 3 * 10**18,
     "attributes": {"mlflow.spanType": "CHAT_MODEL", "mlflow.chat.tokenUsage": '{"input_tokens": 3, "output_tokens": 4}',
                    "mlflow.spanInputs": '{"q": 1}', "big": "x" * 300_000, "nan": float("nan"),
                    "nul\x00key": "a\x00b"}},
]


def test_received_spans_get_typed_columns_and_survive_a_rebuild(root, store_url):
    _record(root, steps=1)
    store = Store(store_url, root=root)
    store.index()
    assert store.add_spans("p", [span_row(s) | {"run_id": s.get("run_id", "")} for s in RECEIVED]) == 3
    by_name = {t["spans"][0]["name"]: t["spans"][0] for t in store.traces("p")}
    chat = by_name["chat gpt-4o"]
    assert (chat["operation"], chat["provider"], chat["model"], chat["input_tokens"], chat["output_tokens"]) == \
        ("chat", "openai", "gpt-4o-2024-08-06", 12, 30)
    assert chat["duration_ms"] == 2.5 and chat["source"] == "otlp" and chat["kind"] == "client"
    llm = by_name["ChatCompletion"]
    assert (llm["operation"], llm["provider"], llm["model"], llm["input_tokens"], llm["output_tokens"]) == \
        ("llm", "anthropic", "claude-x", 5, 7)
    assert llm["input"] == '{"messages": ["hi"]}' and llm["output"] == '"hello"' and llm["run_id"] == "r9"
    mlflow = by_name["mlflow"]
    assert (mlflow["operation"], mlflow["input_tokens"], mlflow["output_tokens"]) == ("chat_model", 3, 4)
    assert len(mlflow["attributes"]["big"]) == 256 * 1024 and mlflow["attributes"]["nan"] is None
    assert mlflow["attributes"]["nul\ufffdkey"] == "a\ufffdb"
    assert [t["trace_id"] for t in store.traces("p", filters={"status": "error"})] == ["b" * 32]
    assert [t["trace_id"] for t in store.traces("p", filters={"provider": "openai"})] == ["a" * 32]
    assert [t["trace_id"] for t in store.traces("p", run_id="r9")] == ["b" * 32]
    with pytest.raises(tracklet.TrackletError, match="cannot filter traces on input"):
        store.traces("p", filters={"input": "x"})

    again = [span_row(s) | {"run_id": s.get("run_id", "")} for s in RECEIVED[:2]]
    store.add_spans("p", again)  # an exporter's retry of a batch already taken: stored once
    before = store.traces("p", limit=1000)
    assert len(before) == 4 and all(len(t["spans"]) == (3 if t["run_id"] == "r1" else 1) for t in before)
    store.index(rebuild=True)
    assert store.traces("p", limit=1000) == before  # log spans re-derived, received ones kept
    store.close()


def test_api_traces_reads_payloads_and_filters(root):
    run = tracklet.init(project="p", dir=str(root), settings=QUIET)
    tool("y" * 10_000)

    @tracklet.op
    def fails():
        raise KeyError("missing")

    with pytest.raises(KeyError):
        fails()
    run.finish()
    api = tracklet.Api(root)
    traces = api.traces("p")
    assert len(traces) == 2
    failed, big = traces
    assert failed.root.status == "error" and "missing" in failed.root.status_message
    assert big.root.input_json == "" and len(big.root.input_blob) == 64
    assert big.root.inputs == {"x": "y" * 10_000} and big.root.output == {"x": "y" * 10_000}
    assert [t.trace_id for t in api.traces("p", filter={"status": "error"})] == [failed.trace_id]
    assert [t.trace_id for t in api.traces("p", run=run)] == [failed.trace_id, big.trace_id]
    with pytest.raises(TypeError, match="dict of column"):
        api.traces("p", filter="status = 'error'")
    api.close()


KILLED = """
import sys, time, tracklet
run = tracklet.init(project="p", id="killed", settings={"console": "off", "capture_environment": False,
                                                         "system_metrics": False})

@tracklet.op
def step_op(i):
    return i

@tracklet.op
def hangs(question):
    print("open", flush=True)
    time.sleep(600)

@tracklet.op
def agent():
    step_op(99)
    hangs("why?")

for i in range(5):
    step_op(i)
time.sleep(1.5)
agent()
"""


def _wait_for_span(log: Path, name: str, timeout: float = 60) -> None:
    """Until the live run's log holds a span named ``name`` (the worker drains every half flush
    interval): what a kill after that must keep."""
    from tracklet.core.reader import replay

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and any(span.name == name for span in replay(log).spans):
            return
        time.sleep(0.05)
    raise AssertionError(f"no span {name!r} in {log} after {timeout} s")


def test_kill_9_mid_trace_keeps_spans_that_ended_before_and_open_ones_as_unfinished(root):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", KILLED], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "open"
        _wait_for_span(root / "projects" / "p" / "runs" / "killed" / "run.tlog", "hangs")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    api = tracklet.Api(root)
    traces = api.traces("p", limit=100)
    finished = [t for t in traces if t.root.name == "step_op"]
    assert sorted(t.root.inputs["i"] for t in finished) == [0, 1, 2, 3, 4]
    assert all(not s.unfinished and s.status == "ok" for t in finished for s in t.spans)
    (killed,) = [t for t in traces if t.root.name == "agent"]
    spans = {s.name: s for s in killed.spans}
    assert set(spans) == {"agent", "step_op", "hangs"}
    assert spans["step_op"].status == "ok" and spans["step_op"].inputs == {"i": 99}  # ended before the kill
    for name in ("agent", "hangs"):  # open at the kill: unfinished, no end, no payloads
        span = spans[name]
        assert span.unfinished and span.status == "open" and span.end_ns == 0 and span.inputs is None
        assert span.run_id == "killed" and span.step == 0
    assert spans["hangs"].parent_span_id == spans["agent"].span_id == spans["step_op"].parent_span_id
    assert api.run("p/killed").state == "crashed"
    api.close()


def test_a_bad_value_in_an_event_or_a_link_fails_no_span(root, store_url):
    """Event and link attributes are capped like a span's: a NaN (which PostgreSQL's JSONB refuses),
    a NUL or an oversized string in one span's event never fails the batch it came in."""
    store = Store(store_url, root=root)
    bad = dict(RECEIVED[0], span_id="4" * 16,
               events=[{"name": "e\x00", "time_ns": 1, "attributes": {"x": float("nan"), "s": "a\x00b", "big": "y" * 300_000}}],
               links=[{"trace_id": "d" * 32, "span_id": "5" * 16, "attributes": {"inf": float("inf")}}])
    good = dict(RECEIVED[0], trace_id="e" * 32)
    assert store.add_spans("p", [span_row(bad) | {"run_id": ""}, span_row(good) | {"run_id": ""}]) == 2
    spans = {t["trace_id"]: t["spans"][0] for t in store.traces("p")}
    assert set(spans) == {"a" * 32, "e" * 32}
    (event,) = spans["a" * 32]["events"]
    assert event["name"] == "e\ufffd" and event["attributes"]["x"] is None and event["attributes"]["s"] == "a\ufffdb"
    assert len(event["attributes"]["big"]) == 256 * 1024
    assert spans["a" * 32]["links"][0]["attributes"] == {"inf": None}
    store.close()


def test_received_rows_round_trip_every_column(root, store_url):
    """The driver-level insert (one executemany per 1,000 rows, JSON serialized by the store) keeps
    every column as span_row made it, on both backends."""
    store = Store(store_url, root=root)
    attributes = {"max": 2**63 - 1, "min": -2**63, "text": "é \u2028 \"quoted\" 'single' \\ back %s ?",
                  "nested": {"a": [1, 2.5, None, True, {"b": "c"}]}, "gen_ai.request.model": "m", "flag": False}
    span = {"trace_id": "f" * 32, "span_id": "6" * 16, "parent_span_id": "7" * 16, "name": "n'%s?", "kind": "server",
            "start_ns": 5, "end_ns": 2**63 - 1, "status": "ok", "status_message": "fine", "step": -3,
            "attributes": attributes, "events": [{"name": "e", "time_ns": 7, "attributes": {"k": [1, "v"]}}],
            "links": [{"trace_id": "1" * 32, "span_id": "2" * 16, "attributes": {}}],
            "input": '{"x": 1}', "output": "", "input_blob": "", "output_blob": "a" * 64}
    row = span_row(span) | {"run_id": "r%s"}
    expected = dict(row)
    assert store.add_spans("p", [row]) == 1
    ((stored,),) = [t["spans"] for t in store.traces("p")]
    for column, value in expected.items():
        assert stored[column] == value, column
    assert stored["source"] == "otlp" and stored["model"] == "m" and stored["input_tokens"] is None
    store.close()


def test_a_span_open_at_a_flush_is_stored_open_then_replaced_by_its_end(start, root):
    """A long op seen by the worker while it runs writes its start; the store shows it open (an
    index pass meanwhile) and, once it ends, the one finished row with its payloads."""
    run = start(project="live")
    seen: dict[str, list] = {}

    @tracklet.op(name="long_call")
    def long_call(question):
        run.flush()  # the worker drains while this span is open
        api = tracklet.Api(root)
        seen["during"] = [(s.name, s.status, s.unfinished) for t in api.traces("live") for s in t.spans]
        api.close()
        return "answer"

    @tracklet.op(name="quick")
    def quick(x):
        return x

    assert long_call("why?") == "answer"
    quick(1)
    run.finish()
    assert seen["during"] == [("long_call", "open", True)]
    api = tracklet.Api(root)
    traces = api.traces("live")
    spans = sorted((s for t in traces for s in t.spans), key=lambda s: s.start_ns)
    assert [(s.name, s.status, s.unfinished) for s in spans] == [("long_call", "ok", False), ("quick", "ok", False)]
    assert spans[0].inputs == {"question": "why?"} and spans[0].output == "answer" and spans[0].end_ns > 0
    api.close()
    from tracklet.core.reader import replay

    records = replay(run._paths.log_file).spans  # the reader keeps the finished record in the start's place
    assert [(s.name, s.end_time_unix_nano > 0) for s in records] == [("long_call", True), ("quick", True)]


def test_an_open_span_is_replaced_by_its_end_and_a_finished_one_never(root, store_url):
    """On both backends: a stored span without an end takes the same span's finished row; a
    finished span stays as first stored (an exporter's retry, or a late start record)."""
    store = Store(store_url, root=root)
    finished = dict(RECEIVED[0])
    opened = dict(finished, end_ns=0, status="unset", attributes={})
    assert store.add_spans("p", [span_row(opened) | {"run_id": ""}]) == 1
    (span,) = store.traces("p")[0]["spans"]
    assert (span["status"], span["end_ns"], span["model"]) == ("open", 0, "")
    store.add_spans("p", [span_row(finished) | {"run_id": ""}])
    (span,) = store.traces("p")[0]["spans"]
    assert (span["status"], span["end_ns"], span["model"]) == ("ok", finished["end_ns"], "gpt-4o-2024-08-06")
    store.add_spans("p", [span_row(opened) | {"run_id": ""}, span_row(dict(finished, name="retry")) | {"run_id": ""}])
    (span,) = store.traces("p")[0]["spans"]
    assert (span["status"], span["name"]) == ("ok", "chat gpt-4o")


def test_traces_export_writes_one_row_per_span_as_parquet_and_jsonl(start, root):
    """``tracklet traces export``: every span of the project (ops, a big payload from the blob store,
    an OTLP span with tokens and cost), typed, readable without tracklet."""
    import json as _json

    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from tracklet.cli.main import main

    run = start(project="ex")

    @tracklet.op(name="outer")
    def outer(text):
        return inner(text) + "!"

    @tracklet.op(name="inner")
    def inner(text):
        return text.upper()

    outer("x" * 20_000)  # over 8 KiB: stored as a blob, exported as its JSON
    run.finish()
    store = Store(root=root)
    recent = 1_750_000_000 * 10**9  # 2025-06: gpt-4o at $2.50 / $10 per million tokens
    store.add_spans("ex", [span_row(dict(RECEIVED[0], start_ns=recent, end_ns=recent + 2_500_000)) | {"run_id": ""}])
    store.close()
    runner = CliRunner()
    result = runner.invoke(main, ["--dir", str(root), "traces", "export", "ex", "-o", str(root / "spans.parquet")],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pq.read_table(root / "spans.parquet").to_pylist()
    assert sorted(row["name"] for row in table) == ["chat gpt-4o", "inner", "outer"]
    rows = {row["name"]: row for row in table}
    assert _json.loads(rows["outer"]["inputs"]) == {"text": "x" * 20_000}
    assert _json.loads(rows["outer"]["output"]) == "X" * 20_000 + "!"
    assert rows["inner"]["parent_span_id"] == rows["outer"]["span_id"] and rows["inner"]["run_id"] == run.id
    assert rows["inner"]["step"] == 0 and rows["outer"]["status"] == "ok"
    chat = rows["chat gpt-4o"]
    assert (chat["provider"], chat["model"], chat["input_tokens"], chat["output_tokens"]) == (
        "openai", "gpt-4o-2024-08-06", 12, 30)
    assert chat["cost"] == pytest.approx(12 * 2.5e-6 + 30 * 10e-6) and chat["step"] is None
    assert _json.loads(chat["attributes"])["gen_ai.request.model"] == "gpt-4o"
    result = runner.invoke(main, ["--dir", str(root), "traces", "export", "ex", "--run", run.id,
                                  "-o", str(root / "spans.jsonl")], catch_exceptions=False)
    assert result.exit_code == 0
    lines = [_json.loads(line) for line in (root / "spans.jsonl").read_text().splitlines()]
    assert sorted(line["name"] for line in lines) == ["inner", "outer"]
    # Written as `tracklet export` writes: with the umask's permissions (mkstemp made them 0600),
    # and a missing directory named as such (the error named a hidden temporary file).
    umask = os.umask(0)
    os.umask(umask)
    assert (root / "spans.parquet").stat().st_mode & 0o777 == 0o666 & ~umask
    result = runner.invoke(main, ["--dir", str(root), "traces", "export", "ex", "-o", str(root / "nodir" / "s.jsonl")])
    assert result.exit_code != 0 and f"No such directory: {root / 'nodir'}" in result.output, result.output
    assert not (root / "nodir").exists()
