"""The OTLP/HTTP receiver ``/v1/traces``: the real opentelemetry-sdk exporter against a real server
process, JSON and gzip bodies, bad input, keys and roles, ``Api(base_url=...).traces``, ``tracklet ui``."""

from __future__ import annotations

import functools
import gzip
import json
import re

import httpx
import pytest
import serverproc
from conftest import QUIET

import tracklet

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")


def _export(url: str, spans_by_resource: dict, headers: dict | None = None, compression: bool = False) -> list:
    """Record spans with the real SDK (one TracerProvider per resource) and export them over HTTP."""
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    made = []
    for resource_attributes, build in spans_by_resource.items():
        provider = TracerProvider(resource=Resource.create(dict(resource_attributes)))
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=headers or {}, timeout=10,
                                    compression=Compression.Gzip if compression else Compression.NoCompression)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("test-instrumentation", "1.0")
        made.append(build(tracer, Status, StatusCode))
        assert provider.force_flush(30_000)
        provider.shutdown()
    return made


def _chat_trace(tracer, Status, StatusCode):
    with tracer.start_as_current_span("invoke_agent planner") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        with tracer.start_as_current_span("chat gpt-4o") as chat:
            chat.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 21,
                                 "gen_ai.usage.output_tokens": 8, "gen_ai.request.stop_sequences": ["\n", "END"]})
            chat.add_event("gen_ai.choice", {"index": 0})
        with tracer.start_as_current_span("tool lookup") as tool:
            tool.set_attributes({"openinference.span.kind": "TOOL", "input.value": '{"q": "weather"}',
                                 "output.value": "sunny"})
            tool.set_status(Status(StatusCode.ERROR, "tool timed out"))
    return format(root.get_span_context().trace_id, "032x")


def test_sdk_exporter_to_a_real_server_then_api_reads_them(servers, tmp_path):
    server = servers(tmp_path / "srv")
    trace_ids = _export(server.url, {(("service.name", "agent-app"),): _chat_trace})
    trace_ids += _export(server.url, {(("service.name", "ignored"), ("tracklet.project", "bots"),
                                       ("tracklet.run", "run7")): _chat_trace}, compression=True)
    trace_ids += _export(server.url, {(("service.name", "ignored"),): _chat_trace},
                         headers={"X-Tracklet-Project": "by-header", "X-Tracklet-Run": "r1"})
    api = tracklet.Api(base_url=server.url)
    (trace,) = api.traces("agent-app")
    assert trace.trace_id == trace_ids[0]
    assert trace.root.name == "invoke_agent planner" and trace.root.operation == "invoke_agent"
    chat = next(s for s in trace.spans if s.name == "chat gpt-4o")
    tool = next(s for s in trace.spans if s.name == "tool lookup")
    assert chat.parent_span_id == trace.root.span_id and tool.parent_span_id == trace.root.span_id
    assert (chat.operation, chat.provider, chat.model, chat.input_tokens, chat.output_tokens) == \
        ("chat", "openai", "gpt-4o", 21, 8)
    assert chat.attributes["gen_ai.request.stop_sequences"] == ["\n", "END"]  # raw attributes kept
    assert chat.cost == pytest.approx(21 * 2.5e-6 + 8 * 10e-6)  # gpt-4o's price since 2024-10-01, per token
    assert trace.cost == pytest.approx(chat.cost) and trace.input_tokens == 21 and tool.cost is None
    assert chat.attributes["resource.service.name"] == "agent-app"
    assert chat.attributes["otel.scope.name"] == "test-instrumentation"
    assert chat.events[0]["name"] == "gen_ai.choice" and chat.kind == "internal" and chat.source == "otlp"
    assert tool.status == "error" and tool.status_message == "tool timed out" and tool.operation == "tool"
    assert tool.inputs == {"q": "weather"} and tool.output == "sunny"
    assert tool.duration_ms >= 0 and trace.root.start_ns <= chat.start_ns <= chat.end_ns <= trace.root.end_ns

    (bots,) = api.traces("bots")
    assert bots.trace_id == trace_ids[1] and {s.run_id for s in bots.spans} == {"run7"}
    assert [t.trace_id for t in api.traces("by-header", run="r1")] == [trace_ids[2]]
    assert [t.trace_id for t in api.traces("agent-app", filter={"status": "error"})] == [trace_ids[0]]
    assert api.traces("agent-app", filter={"provider": "anthropic"}) == []
    assert api.traces("ignored") == []
    api.close()
    # One audit event per export request (the span writer's transaction carries it), none twice.
    events = httpx.get(f"{server.url}/api/v1/audit", params={"action": "receive_traces"}).json()["events"]
    assert len(events) == 3 and {(e["status"], e["method"], e["target"]) for e in events} == {(200, "POST", "/v1/traces")}


def _json_body(trace_id: str = "5b8efff798038103d269b633813fc60c", span_id: str = "eee19b7ec3c1b174") -> dict:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-app"}}]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": [
            {"traceId": trace_id, "spanId": span_id, "name": "embeddings", "kind": 3,
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000",
             "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "embeddings"}},
                            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
                            {"key": "nested", "value": {"kvlistValue": {"values": [
                                {"key": "a", "value": {"arrayValue": {"values": [{"doubleValue": 1.5}]}}}]}}}],
             "status": {"code": 1}},
            {"traceId": trace_id, "spanId": "00", "name": "bad id"},
        ]}]}]}


def test_json_and_gzip_bodies_partial_success_and_bad_input(servers, tmp_path):
    server = servers(tmp_path / "srv")
    url = f"{server.url}/v1/traces"
    body = json.dumps(_json_body()).encode()
    response = httpx.post(url, content=gzip.compress(body),
                          headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert response.status_code == 200
    assert response.json() == {"partialSuccess": {"rejectedSpans": "1",
                                                  "errorMessage": "a span's span_id is not 8 bytes (or is all zero)"}}
    api = tracklet.Api(base_url=server.url)
    (trace,) = api.traces("json-app")
    (span,) = trace.spans
    assert span.trace_id == "5b8efff798038103d269b633813fc60c" and span.span_id == "eee19b7ec3c1b174"
    assert span.kind == "client" and span.duration_ms == 500.0 and span.status == "ok"
    assert span.operation == "embeddings" and span.input_tokens == 42
    assert span.attributes["nested"] == {"a": [1.5]}

    assert httpx.post(url, content=b"\x0a\xff\xff", headers={"content-type": "application/x-protobuf"}).status_code == 400
    assert httpx.post(url, content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert httpx.post(url, content=b"[]", headers={"content-type": "application/json"}).status_code == 400
    refused = httpx.post(url, content=b"", headers={"content-type": "text/plain"})
    assert refused.status_code == 415 and "application/x-protobuf" in refused.json()["detail"]
    bad_name = httpx.post(url, content=body, headers={"content-type": "application/json",
                                                       "x-tracklet-project": "../etc"})
    assert bad_name.status_code == 400 and "project" in bad_name.json()["detail"]
    bomb = gzip.compress(b"{" + b" " * (17 << 20) + b"}")  # 17 MiB of JSON in a few KiB of gzip
    assert httpx.post(url, content=bomb, headers={"content-type": "application/json",
                                                  "content-encoding": "gzip"}).status_code == 413
    assert api.traces("json-app")[0].trace_id == trace.trace_id  # nothing else was stored
    api.close()


def test_a_keyed_server_needs_a_key_with_write_access(servers, tmp_path):
    server_root = tmp_path / "srv"

    def user(name, admin=False):
        made = serverproc.cli("admin", "--dir", str(server_root), "create-user", name, *(["--admin"] if admin else []),
                              timeout=60)
        made.check_returncode()
        return made.stdout.strip()

    owner, other = user("owner", admin=False), user("other")
    server = servers(server_root, dev=False)
    body = json.dumps(_json_body()).encode()
    url = f"{server.url}/v1/traces"
    headers = {"content-type": "application/json"}
    assert httpx.post(url, content=body, headers=headers).status_code == 401
    assert httpx.post(url, content=body, headers={**headers, "authorization": f"Bearer {owner}"}).status_code == 200
    denied = httpx.post(url, content=body, headers={**headers, "authorization": f"Bearer {other}"})
    assert denied.status_code == 403  # json-app is owner's project now
    assert len(tracklet.Api(base_url=server.url, api_key=owner).traces("json-app")) == 1
    _export(server.url, {(("service.name", "json-app"),): _chat_trace}, headers={"Authorization": f"Bearer {owner}"})
    assert len(tracklet.Api(base_url=server.url, api_key=owner).traces("json-app")) == 2


def test_spans_and_their_audit_event_commit_together_no_intent_first(servers, tmp_path, monkeypatch):
    """``/v1/traces`` changes only rows, its audit event in their transaction (``audit.DATABASE_ONLY``):
    a server killed just before that commit (the test hook) stored neither the spans nor the event,
    and committed no intent before (what a file-changing route pays per request)."""
    import signal
    import sqlite3

    monkeypatch.setenv("TRACKLET_TEST_AUDIT_KILL", "receive_traces")
    server = servers(tmp_path / "srv")
    with pytest.raises(httpx.TransportError):  # the server died before it answered
        httpx.post(f"{server.url}/v1/traces", content=json.dumps(_json_body()).encode(),
                   headers={"content-type": "application/json"}, timeout=60)
    assert server.proc is not None and server.proc.wait(timeout=60) == -signal.SIGKILL
    with sqlite3.connect(tmp_path / "srv" / "store.sqlite") as db:
        counts = [db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("spans", "span_resources", "audit_events", "audit_intents")]
    assert counts == [0, 0, 0, 0]


def test_tracklet_ui_takes_spans_with_its_token_and_serves_op_traces(root, tmp_path):
    run = tracklet.init(project="local", dir=str(root), id="r1", settings=QUIET)
    tracklet.op(name="local-op")(lambda: 1)()
    run.finish()
    from test_ui_access import Ui  # the ui access tests' launcher

    ui = Ui(root)
    try:
        body = json.dumps(_json_body()).encode()
        headers = {"content-type": "application/json", "authorization": f"Bearer {ui.token}"}
        assert ui.client.post("/v1/traces", content=body, headers={"content-type": "application/json"}).status_code == 401
        assert ui.client.post("/v1/traces", content=body, headers=headers).status_code == 200
        assert ui.client.post("/api/v1/keys", content=b"{}", headers=headers).status_code == 405  # still read-only
        listed = ui.client.get("/api/v1/projects/local/traces", headers=headers).json()["traces"]
        assert [t["spans"][0]["name"] for t in listed] == ["local-op"]
    finally:
        ui.stop()
    api = tracklet.Api(root)
    assert [t.root.name for t in api.traces("json-app")] == ["embeddings"]  # in the data root's store
    api.close()


def test_tracklets_otlp_schema_matches_opentelemetry_proto():
    """Field numbers, types and JSON names of every message the receiver reads are OTLP's own."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as theirs

    from tracklet.proto import otlp_trace_pb2 as ours

    def fields(descriptor, seen):
        if descriptor.name in seen:
            return {}
        seen.add(descriptor.name)
        found = {}
        for field in descriptor.fields:
            found[(descriptor.name, field.name)] = (field.number, field.type, field.json_name,
                                                   field.message_type.name if field.message_type else None,
                                                   field.enum_type.name if field.enum_type else None)
            if field.message_type is not None:
                found.update(fields(field.message_type, seen))
        return found

    for name in ("ExportTraceServiceRequest", "ExportTraceServiceResponse"):
        mine = fields(getattr(ours, name).DESCRIPTOR, set())
        official = fields(getattr(theirs, name).DESCRIPTOR, set())
        assert {k: v for k, v in official.items() if k in mine} == mine
        missing = set(official) - set(mine)
        # Not read: entity references and the string-table indexes OTLP's profiles signal uses.
        unread = {("Resource", "entity_refs"), ("KeyValue", "key_strindex"), ("AnyValue", "string_value_strindex")}
        assert {k for k in missing if k[0] != "EntityRef"} <= unread, missing


def _set_any_value(target, value) -> None:
    """Set an OTLP AnyValue from a Python value (bool, int, float, bytes, a list of ints/strings, str)."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list):
        for part in value:
            _set_any_value(target.array_value.values.add(), part)
    else:
        target.string_value = value


def test_the_decoders_rows_are_span_rows_of_the_same_span_odd_values_included():
    """The OTLP decoder builds the insert's tuples without coercing each field (``received_row``,
    ``stored_attributes``, the scope's and resource's attributes serialized once, stored apart and
    merged by a read: ``with_resource``): the same rows as the general ``span_row`` of the span's
    plain data, for
    plain spans and for the values that need capping (NUL, a string over 256 KiB, a long key,
    doubles, arrays, maps, bytes, NaN), events, links, an open span and GenAI/OpenInference keys."""
    from tracklet.proto import otlp_trace_pb2 as otlp
    from tracklet.store.spans import span_row
    from tracklet.tracing.otlp import attributes, decode

    request = otlp.ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    entry = resource.resource.attributes.add()
    entry.key, entry.value.string_value = "service.name", "svc\x00x"
    scope_spans = resource.scope_spans.add()
    scope_spans.scope.name = "scope\x00"
    values = [("gen_ai.request.model", "gpt-4o"), ("llm.model_name", "other"), ("gen_ai.usage.input_tokens", 7),
              ("llm.token_count.completion", "9"), ("input.value", '{"q": 1}'), ("output.value", "plain text"),
              ("nul", "a\x00b"), ("big", "y" * 300_000), ("k" * 2000, "long key"), ("ratio", 0.5),
              ("nan", float("nan")), ("flag", True), ("list", [1, "two"]), ("raw", b"\x01\x02"), ("empty", "")]
    for number, (end, extra) in enumerate([(2_000, values), (0, values[:3]), (5_000, [])]):
        span = scope_spans.spans.add()
        span.trace_id, span.span_id = bytes([number + 1]) * 16, bytes([number + 1]) * 8
        span.parent_span_id = b"\x09" * 8 if number else b""
        span.name, span.kind = f"span\x00{number}", 3
        span.start_time_unix_nano, span.end_time_unix_nano = 1_000, end
        span.status.code, span.status.message = 2, "bad\x00"
        for key, value in extra:
            item = span.attributes.add()
            item.key = key
            _set_any_value(item.value, value)
        if number == 0:
            event = span.events.add()
            event.name, event.time_unix_nano = "exception\x00", 1_500
            item = event.attributes.add()
            item.key, item.value.double_value = "x", float("inf")
            link = span.links.add()
            link.trace_id, link.span_id = b"\x07" * 16, b"\x07" * 8
    decoded = decode(request.SerializeToString(), "application/x-protobuf", project="p", run="r1")
    rows = [_as_read(row) for row in decoded.by_project["p"]]
    resource_attributes = {f"resource.{k}": v for k, v in attributes(resource.resource.attributes).items()}
    shared = {"otel.scope.name": "scope\x00", **resource_attributes}
    expected = []
    for span in scope_spans.spans:
        own = attributes(span.attributes)
        expected.append(span_row({
            "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(), "parent_span_id": span.parent_span_id.hex(),
            "name": span.name, "kind": "client", "start_ns": span.start_time_unix_nano,
            "end_ns": span.end_time_unix_nano, "status": "error", "status_message": span.status.message,
            "attributes": {**own, **shared, **own},
            "events": [{"name": e.name, "time_ns": e.time_unix_nano, "attributes": attributes(e.attributes)}
                       for e in span.events],
            "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                       "attributes": attributes(link.attributes)} for link in span.links]}) | {"run_id": "r1"})
    assert json.dumps(rows, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert rows[0]["model"] == "gpt-4o" and rows[0]["input_tokens"] == 7 and rows[0]["output_tokens"] == 9
    assert rows[0]["attributes"]["nul"] == "a\ufffdb" and len(rows[0]["attributes"]["big"]) == 256 * 1024
    assert rows[1]["status"] == "open" and rows[2]["model"] == ""


def _as_read(row: tuple) -> dict:
    """A decoded row as a read returns it: JSON columns parsed, the resource's attributes merged."""
    from tracklet.store.spans import RECEIVED_COLUMNS, with_resource

    out = dict(zip(RECEIVED_COLUMNS, row))
    for column in ("attributes", "events", "links"):
        out[column] = json.loads(out[column])
    resource = out.pop("resource_id")
    out["attributes"] = with_resource(out["attributes"], json.loads(resource) if resource else {})
    return out


def test_a_span_whose_attribute_entry_is_not_a_keyvalue_is_rejected_alone():
    """Spans' attributes are decoded entry by entry after the body parsed (repeated entries once
    per request), so a malformed entry, which a full parse would have refused with the whole body,
    costs only its span (partial success); an entry repeated in another span decodes the same."""
    from tracklet.proto import otlp_trace_pb2 as otlp
    from tracklet.tracing.otlp import decode

    request = otlp.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for number in range(3):
        span = spans.add()
        span.trace_id, span.span_id = b"\x01" * 16, bytes([number + 1]) * 8
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
        entry = span.attributes.add()
        entry.key, entry.value.string_value = "gen_ai.provider.name", "openai"
    body = request.SerializeToString()
    good = otlp.KeyValue(key="gen_ai.provider.name")
    good.value.string_value = "openai"
    bad = good.SerializeToString()[:-2] + b"\xff\xff"  # the value: not UTF-8
    body = body.replace(good.SerializeToString(), bad, 1)  # the same length: the framing still holds
    decoded = decode(body, "application/x-protobuf", project="p")
    assert decoded.rejected == 1 and decoded.errors == ["a span's attribute is not an OTLP KeyValue"]
    rows = decoded.by_project["p"]
    assert [row[2] for row in rows] == ["0202020202020202", "0303030303030303"]
    assert all(_as_read(row)["attributes"] == {"gen_ai.provider.name": "openai"} and row[13] == "openai" for row in rows)


def test_spans_sharing_attribute_entries_decode_as_each_alone():
    """Within a request, entries, names and typed columns are decoded once and reused (the
    decoder's per-request caches): each span's row is still what it would be alone, for a value
    that hashes like another of a different type (``1`` and ``True``) or is equal to another of
    the same type with another text (``0.0`` and ``-0.0``), a key repeated in a span
    (its last value, at its first place), a span key that the scope's attributes also have (the
    span's value kept), and
    unicode, quotes and escapes in keys and values."""
    from tracklet.proto import otlp_trace_pb2 as otlp
    from tracklet.store.spans import RECEIVED_COLUMNS
    from tracklet.tracing.otlp import decode

    cases = [
        [("gen_ai.usage.input_tokens", 1), ("gen_ai.provider.name", "OpenAI")],
        [("gen_ai.usage.input_tokens", True), ("gen_ai.provider.name", "OpenAI")],
        [("gen_ai.usage.input_tokens", 1.0), ("gen_ai.provider.name", "OpenAI")],
        [("k", "x"), ("gen_ai.request.model", "m1"), ("k", "y")],
        [("otel.scope.name", "mine"), ("gen_ai.request.model", "m2")],
        [('q"\\é\u2028', 'v"\\\n😀'), ("n", 12345678901234), ("f", False), ("d", 2.5)],
        [("gen_ai.request.model", 0.0), ("input.value", 0.0)],
        [("gen_ai.request.model", -0.0), ("input.value", -0.0)],  # equal to 0.0 (and hashes alike), not the same text
    ]

    def body(spans_cases: list[list[tuple[str, object]]]) -> bytes:
        request = otlp.ExportTraceServiceRequest()
        scope_spans = request.resource_spans.add().scope_spans.add()
        scope_spans.scope.name = "lib"
        for number, attributes in enumerate(spans_cases):
            span = scope_spans.spans.add()
            span.trace_id, span.span_id = b"\x01" * 16, bytes([number + 1]) * 8
            span.name, span.start_time_unix_nano, span.end_time_unix_nano = "chat", 1, 2
            for key, value in attributes:
                entry = span.attributes.add()
                entry.key = key
                _set_any_value(entry.value, value)
        return request.SerializeToString()

    def rows(data: bytes) -> list[dict[str, object]]:
        return [dict(zip(RECEIVED_COLUMNS, row)) for row in decode(data, "application/x-protobuf", project="p")
                .by_project["p"]]

    together = rows(body(cases))
    alone = [rows(body([[]] * number + [case]))[number] for number, case in enumerate(cases)]
    assert together == alone
    assert [row["input_tokens"] for row in together[:3]] == [1, None, 1]
    read = [_as_read(tuple(row.values())) for row in together]
    assert read[3]["attributes"] == {"k": "y", "gen_ai.request.model": "m1", "otel.scope.name": "lib"}
    assert list(read[3]["attributes"]) == ["k", "gen_ai.request.model", "otel.scope.name"]
    assert read[4]["attributes"]["otel.scope.name"] == "mine"  # the span's own key wins
    assert read[5]["attributes"] == {'q"\\é\u2028': 'v"\\\n😀', "n": 12345678901234, "f": False,
                                     "d": 2.5, "otel.scope.name": "lib"}
    assert [(row["model"], row["input"]) for row in together[6:]] == [("0.0", "0.0"), ("-0.0", "-0.0")]


def test_an_attribute_entry_read_from_its_bytes_is_as_parsed():
    """The decoder reads a short string entry from its bytes (``_short_string_pair``): each entry
    here, in every encoding a sender may use (lengths at the one-byte edges, NULs, invalid UTF-8,
    fields repeated or out of order, other kinds), stores as protobuf's own parse of it does, or
    is refused as that is."""
    from google.protobuf.message import DecodeError

    from tracklet.proto import otlp_trace_pb2 as otlp
    from tracklet.tracing.otlp import _Entries, _member, _stored_pair

    def entry(key: str, value: object) -> bytes:
        message = otlp.KeyValue(key=key)
        _set_any_value(message.value, value)
        return message.SerializeToString()

    raws = [entry(key, value) for key in ("", "k", "é" * 63, "k" * 127, "k" * 128, "nul\x00key")
            for value in ("", "v", "x" * 123, "x" * 124, "x" * 125, "x" * 126, "😀", "nul\x00", 7, True, 2.5)]
    raws += [b"\x0a\x01k\x12\x03\x0a\x01v\x0a\x01j",  # the key again, after the value: the last one counts
             b"\x12\x03\x0a\x01v\x0a\x01k",  # value first
             b"\x0a\x01k\x12\x06\x0a\x01v\x0a\x01w"]  # the string twice
    for raw in raws:
        expected = _stored_pair(otlp.KeyValue.FromString(raw))
        entries = _Entries()
        assert (entries[raw], entries.members[raw]) == (expected, _member(*expected)), raw
    for bad in (b"\x0a\x01k\x12\x03\x0a\x01\xff", b"\x0a\x01\xff\x12\x03\x0a\x01v"):  # not UTF-8
        with pytest.raises(DecodeError):
            _Entries()[bad]


def test_an_openinference_instrumented_openai_client_exports_to_the_receiver(servers, tmp_path):
    """The real OpenInference instrumentor of the ``openai`` client (``openinference-instrumentation-
    openai``), exporting with the real SDK exporter: its LLM spans land with typed columns read from
    OpenInference's keys (span kind, provider, model, token counts, input/output), against the fake
    OpenAI server (tests/fake_llm.py), no network."""
    openai = pytest.importorskip("openai")
    instrumentation = pytest.importorskip("openinference.instrumentation.openai")
    from fake_llm import FakeLlmServer
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    server = servers(tmp_path / "srv")
    provider = TracerProvider(resource=Resource.create({"service.name": "oi-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", timeout=10)))
    instrumentor = instrumentation.OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with FakeLlmServer() as llm:
            client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key="sk-test", max_retries=0)
            answer = client.chat.completions.create(model="gpt-4o-mini", messages=[
                {"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello world"}])
            stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                    stream=True, stream_options={"include_usage": True})
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: hi"
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    assert answer.choices[0].message.content == "echo: say hello world"
    api = tracklet.Api(base_url=server.url)
    spans = sorted((s for t in api.traces("oi-app") for s in t.spans), key=lambda s: s.start_ns)
    api.close()
    assert [(s.operation, s.provider, s.model.rsplit("-2024", 1)[0], s.source) for s in spans] == [
        ("llm", "openai", "gpt-4o-mini", "otlp"), ("llm", "openai", "gpt-4o", "otlp")]  # the answer's model
    plain, streamed = spans
    assert (plain.input_tokens, plain.output_tokens) == (5, 4)  # the fake's word counts
    assert (streamed.input_tokens, streamed.output_tokens) == (1, 2)
    assert plain.inputs["messages"][1]["content"] == "say hello world"
    assert "echo: say hello world" in json.dumps(plain.output)
    assert plain.attributes["resource.service.name"] == "oi-app" and plain.cost is not None


def _peak_growth(server, send):
    """``send()``'s result and how much the server's peak RSS (VmHWM) grew over its settled RSS meanwhile."""
    import re
    from pathlib import Path

    import psutil
    from serverproc import settled_rss

    process = psutil.Process(server.proc.pid)
    before = settled_rss(process)
    try:
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # the peak RSS starts again from the current RSS
    except OSError:
        pytest.skip("this kernel doesn't let the test reset the server's peak RSS")
    result = send()
    status = Path(f"/proc/{process.pid}/status").read_text()
    return result, (int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) << 10) - before


def _sdk_spans(count: int) -> list:
    """``count`` spans made by the real SDK (chat spans: gen_ai attributes, an event, a status), 50 to a trace."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "big-batch"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test-instrumentation", "1.0")
    for index in range(count):
        if index % 50 == 0:
            root = tracer.start_span("invoke_agent")
        with tracer.start_as_current_span(f"chat gpt-4o {index % 7}", context=trace.set_span_in_context(root)) as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                                 "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 12 + index,
                                 "gen_ai.usage.output_tokens": 3, "gen_ai.request.temperature": 0.2,
                                 "http.url": "https://api.openai.com/v1/chat/completions", "stream": False})
            span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "say hello"})
            span.set_status(Status(StatusCode.OK))
        if index % 50 == 49 or index == count - 1:
            root.end()
    provider.shutdown()
    return list(memory.get_finished_spans())


def _otlp_json(spans: list) -> dict:
    """The SDK's spans as OTLP/JSON (what a JSON exporter sends: protobuf's JSON mapping, ids in hex)."""
    import base64

    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    data = json_format.MessageToDict(encode_spans(spans))
    for resource_spans in data["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return data


def test_a_json_body_at_the_route_limit_is_taken_in_memory_a_small_multiple_of_its_size(servers, tmp_path):
    """Real-exporter OTLP/JSON (the SDK's spans in protobuf's JSON mapping, compact) filling the route's
    16 MiB is stored whole, the server's peak RSS growing by at most 6x the body (json.loads and
    ParseDict of the whole body took ~14-22x, and such a body was refused with a 400)."""
    server = servers(tmp_path / "srv")
    data = _otlp_json(_sdk_spans(200))
    (resource_spans,) = data["resourceSpans"]
    (scope_spans,) = resource_spans["scopeSpans"]
    model, scope_spans["spans"] = scope_spans["spans"], []
    one = max(len(json.dumps(span, separators=(",", ":"))) for span in model)
    count = ((16 << 20) - len(json.dumps(data, separators=(",", ":")))) // (one + 1)
    spans = []
    for index in range(count):
        span = dict(model[index % len(model)], traceId=f"{index // 100 + 1:032x}", spanId=f"{index + 1:016x}")
        span.pop("parentSpanId", None)
        spans.append(span)
    scope_spans["spans"] = spans
    body = json.dumps(data, separators=(",", ":")).encode()
    assert (15 << 20) < len(body) <= 16 << 20
    response, growth = _peak_growth(server, lambda: httpx.post(
        f"{server.url}/v1/traces", content=body, headers={"content-type": "application/json"}, timeout=600))
    assert response.status_code == 200, response.text[:300]
    assert response.json() == {}
    assert growth <= 6 * len(body), f"peak RSS grew by {growth / len(body):.1f}x the body"
    api = tracklet.Api(base_url=server.url)
    traces = api.traces("big-batch", limit=10_000)
    api.close()
    assert sum(len(trace.spans) for trace in traces) == count
    span = next(span for span in traces[-1].spans if span.name.startswith("chat"))
    assert span.operation == "chat" and span.model == "gpt-4o" and span.status == "ok" and span.events


@pytest.mark.parametrize("compression", [False, True])
def test_the_sdk_exporter_sends_a_large_protobuf_batch_in_one_request(servers, tmp_path, compression):
    """The SDK's protobuf exporter, handed 20,400 spans at once (one request of several MiB), is answered
    with success and every span is stored."""
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    server = servers(tmp_path / "srv")
    spans = _sdk_spans(20_000)
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", timeout=120,
                                compression=Compression.Gzip if compression else Compression.NoCompression)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    api = tracklet.Api(base_url=server.url)
    assert sum(len(trace.spans) for trace in api.traces("big-batch", limit=10_000)) == 20_000 + 20_000 // 50
    api.close()


def _frame(spans: bytes) -> bytes:
    return b'{"resourceSpans":[{"scopeSpans":[{"spans":[' + spans + b"]}]}]}"


def test_costly_json_bodies_are_refused_in_memory_bounded_by_their_size(servers, tmp_path):
    """Bodies whose parse would cost far more than their bytes (the review's 3 MiB of empty spans grew
    the server by ~445 MiB): more spans than a request may hold, one span of millions of empty arrays,
    nesting past any limit. Each is refused (413 for too much to parse, 400 for what isn't OTLP/JSON),
    naming the problem, the server's peak RSS growing by at most the body twice over (its bytes and
    text) and the memory one value may take; an ordinary request is taken afterwards."""
    from tracklet.tracing.otlp_json import MAX_UNITS, MAX_VALUE_PARSE_BYTES

    server = servers(tmp_path / "srv")
    url = f"{server.url}/v1/traces"
    cases = [
        (_frame(b",".join([b"{}"] * ((3 << 20) // 3))), 413, f"more than {MAX_UNITS:,} spans"),
        (_frame(b",".join([b"{}"] * (5 << 20))), 413, f"more than {MAX_UNITS:,} spans"),
        (_frame(b'{"attributes":[' + b",".join([b"[]"] * (5 << 20)) + b"]}"), 413,
         f"would take more than {MAX_VALUE_PARSE_BYTES >> 20} MiB of memory to parse"),
        (_frame(b"[" * (15 << 20)), 400, "nests too deeply"),
    ]
    for body, status, problem in cases:
        response, growth = _peak_growth(server, functools.partial(
            httpx.post, url, content=body, headers={"content-type": "application/json"}, timeout=600))
        assert response.status_code == status, response.text[:300]
        assert problem in response.json()["detail"]
        assert growth <= 2 * len(body) + MAX_VALUE_PARSE_BYTES, \
            f"{len(body):,} bytes: peak RSS grew by {growth >> 20} MiB"
    ordinary = json.dumps(_json_body()).encode()
    assert httpx.post(url, content=ordinary, headers={"content-type": "application/json"}).status_code == 200


_SPAN_JSON = b'{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"a"}'


@pytest.mark.parametrize("body, problem", [
    (b"\xff{}", "not UTF-8"),
    (b'{"resourceSpans":[', "not JSON"),
    (b'{"resourceSpans":[{"resource":{},"resource":{}}]}', "the key 'resource' twice"),
    (b'{"resourceSpans":[],"resource_spans":[]}', "the key 'resource_spans' twice"),
    (b'{"resourceSpans":{}}', "resourceSpans must be a JSON array"),
    (_frame(b"[" * 100_000), "nests too deeply"),  # never closed: the body ends inside the span
    (_frame(_SPAN_JSON) + b" x", "extra data"),
    (_frame(_SPAN_JSON[:-1] + b',"name":}'), "not JSON"),
    (b"[]", "must be an object"),
])
def test_bad_json_bodies_are_refused_naming_the_problem(body, problem):
    from tracklet.errors import OtlpError
    from tracklet.tracing.otlp import decode

    with pytest.raises(OtlpError, match=re.escape(problem)):
        decode(body, "application/json")


def _nested_attribute(levels: int) -> bytes:
    return (b'"attributes":[{"key":"deep","value":' + b'{"kvlistValue":{"values":[{"key":"a","value":' * levels
            + b'{"stringValue":"x"}' + b"}]}}" * levels + b"}]")


_SPAN_FAULTS = [
    (_SPAN_JSON[:-1] + b',"name":"b"}', "the key 'name' twice"),
    (_SPAN_JSON[:-1] + b',"startTimeUnixNano":' + b"9" * 5000 + b"}", "number that can't be read"),
    (_SPAN_JSON[:-1] + b',"startTimeUnixNano":1e999}', "startTimeUnixNano"),
    (_SPAN_JSON[:-1] + b',"startTimeUnixNano":"99999999999999999999"}', "startTimeUnixNano"),
    (_SPAN_JSON.replace(b'"name":"a"', b'"name":5'), "name"),
    (b"[1]", "a span must be an object"),
    (b"null", "a span must be an object"),
    (_SPAN_JSON.replace(b"5b8e", b"zz8e"), "traceId 'zz8e"),
    (_SPAN_JSON[:-1] + b',"links":5}', "links"),
    (_SPAN_JSON[:-1] + b',"links":[{"traceId":"xx"}]}', "link's traceId 'xx'"),
    (_SPAN_JSON[:-1] + b"," + _nested_attribute(60) + b"}", "nest too deeply"),  # past json_format's depth
    (_SPAN_JSON[:-1] + b"," + _nested_attribute(2000) + b"}", "nests too deeply"),  # past the JSON parser's
]


@pytest.mark.parametrize("span, problem", _SPAN_FAULTS)
@pytest.mark.parametrize("order", ["usual", "scope and resource after the spans", "no scope nor resource"])
def test_a_span_that_isnt_one_is_rejected_alone_the_others_taken(span, problem, order):
    """What is wrong inside one span of a JSON body (a key twice, a field of the wrong type, an id
    not hex, nesting past a parser's depth) costs that span only (OTLP's partial success naming it),
    as the protobuf path rejects a span alone, wherever the body puts the spans' scope and resource."""
    from tracklet.tracing.otlp import decode

    spans = b",".join([_SPAN_JSON.replace(b"eee1", b"aaa1"), span, _SPAN_JSON.replace(b"eee1", b"bbb1")])
    resource = b'"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]}'
    body = {
        "usual": b'{"resourceSpans":[{%s,"scopeSpans":[{"scope":{"name":"s"},"spans":[%s]}]}]}' % (resource, spans),
        "scope and resource after the spans":
            b'{"resourceSpans":[{"scopeSpans":[{"spans":[%s],"scope":{"name":"s"}}],%s}]}' % (spans, resource),
        "no scope nor resource": b'{"resourceSpans":[{"scopeSpans":[{"spans":[%s]}]}]}' % spans,
    }[order]
    decoded = decode(body, "application/json")
    assert decoded.rejected == 1 and len(decoded.errors) == 1 and problem in decoded.errors[0], decoded.errors
    [rows] = decoded.by_project.values()
    assert [row[2] for row in rows] == ["aaa19b7ec3c1b174", "bbb19b7ec3c1b174"]


def test_a_json_bodys_keys_in_any_order_and_spelling_decode_alike():
    """A resource after its scopes, a scope after its spans, proto field names in place of JSON names,
    whitespace between tokens: the same rows as the usual order (spans read again once the resource
    or scope is known)."""
    from tracklet.tracing.otlp import decode

    resource = b'"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]}'
    usual = b'{"resourceSpans":[{%s,"scopeSpans":[{"scope":{"name":"s"},"spans":[%s,%s]}]}]}' % (
        resource, _SPAN_JSON, _SPAN_JSON.replace(b"eee1", b"fff1"))
    expected = decode(usual, "application/json").by_project
    assert [len(rows) for rows in expected.values()] == [2]
    reordered = (b' { "resource_spans" : [ { "scope_spans" : [ { "spans" : [ %s , %s ] , "scope" : {"name":"s"} } ] ,'
                 b" %s } ] } " % (_SPAN_JSON.replace(b"traceId", b"trace_id"), _SPAN_JSON.replace(b"eee1", b"fff1"),
                                  resource))
    assert decode(reordered, "application/json").by_project == expected


def test_lone_surrogates_in_a_json_body_are_replaced_not_the_request_refused():
    """JSON's "\\ud83d" alone is what a JavaScript exporter writes for a string cut inside a
    character (OTel JS cuts attribute values at a length limit by UTF-16 units): the character is
    U+FFFD in the span's name, attributes, scope and resource, and the request's spans are all taken
    (it was a 400 for the whole request, which exporters drop)."""
    from tracklet.tracing.otlp import decode

    cut = _SPAN_JSON[:-1] + rb',"attributes":[{"key":"k\udc80","value":{"stringValue":"v\ud83d"}}]}'
    body = (b'{"resourceSpans":[{"resource":{"attributes":[{"key":"host","value":{"stringValue":"h\\ud800"}}]},'
            b'"scopeSpans":[{"scope":{"name":"sc\\udfff"},"spans":[%s,%s]}]}]}'
            % (cut.replace(b'"name":"a"', b'"name":"a\\ud83d \\ud83d\\ude00"'), _SPAN_JSON.replace(b"eee1", b"fff1")))
    [rows] = decode(body, "application/json").by_project.values()
    assert [row[4] for row in rows] == ["a\ufffd \U0001f600", "a"]
    assert json.loads(rows[0][-4]) == {"k\ufffd": "v\ufffd"}
    assert json.loads(rows[0][-1]) == {"otel.scope.name": "sc\ufffd", "resource.host": "h\ufffd"}


def _deep_value(levels: int) -> dict:
    value: dict = {"stringValue": "x"}
    for _ in range(levels):
        value = {"kvlistValue": {"values": [{"key": "a", "value": value}]}}
    return value


def test_a_deeply_nested_span_costs_only_itself_over_json_and_protobuf_alike(servers, tmp_path):
    """The SDK's spans, one given an attribute nested 60 levels deep (past protobuf's depth of 100
    messages), sent to a real server as the exporter's protobuf and as its OTLP/JSON: both answer 200
    with OTLP's partial success rejecting that one span, and store the others (the JSON body was a 400
    for all of them)."""
    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    server = servers(tmp_path / "srv")
    url = f"{server.url}/v1/traces"
    spans = _sdk_spans(6)
    proto = encode_spans(spans)
    deep = proto.resource_spans[0].scope_spans[0].spans[2].attributes.add(key="deep")
    json_format.ParseDict(_deep_value(60), deep.value, max_recursion_depth=1000)
    answers = {}
    for project, content_type in (("as-protobuf", "application/x-protobuf"), ("as-json", "application/json")):
        if content_type == "application/json":
            data = _otlp_json(spans)
            data["resourceSpans"][0]["scopeSpans"][0]["spans"][2]["attributes"].append(
                {"key": "deep", "value": _deep_value(60)})
            body = json.dumps(data).encode()
        else:
            body = proto.SerializeToString()
        response = httpx.post(url, content=body, headers={"content-type": content_type, "x-tracklet-project": project})
        assert response.status_code == 200, response.text[:300]
        answers[content_type] = response
    partial = answers["application/json"].json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "nest too deeply" in partial["errorMessage"]
    from tracklet.proto import otlp_trace_pb2 as otlp

    reply = otlp.ExportTraceServiceResponse.FromString(answers["application/x-protobuf"].content)
    assert reply.partial_success.rejected_spans == 1
    api = tracklet.Api(base_url=server.url)
    stored = {project: sorted(span.span_id for trace in api.traces(project) for span in trace.spans)
              for project in ("as-protobuf", "as-json")}
    api.close()
    rejected = proto.resource_spans[0].scope_spans[0].spans[2].span_id.hex()
    assert stored["as-json"] == stored["as-protobuf"] and len(stored["as-json"]) == 6 + 1 - 1
    assert rejected not in stored["as-json"]


def test_spans_read_once_without_a_resource_key_still_take_a_later_resource_however_written():
    """Spans are read once where no ``resource``/``scope`` key can follow them; a later item's
    resource, or one written with a JSON escape (``"r\\u0065source"``), still names the project of
    the spans before it (read a second time then)."""
    from tracklet.tracing.otlp import decode

    resource = b'{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]}'
    bare = b'{"scopeSpans":[{"spans":[%s]}]}' % _SPAN_JSON
    later = b'{"scopeSpans":[{"spans":[%s],"sc\\u006fpe":{"name":"s"}}],"r\\u0065source":%s}' % (
        _SPAN_JSON.replace(b"eee1", b"fff1"), resource)
    decoded = decode(b'{"resourceSpans":[%s,%s]}' % (bare, later), "application/json")
    assert decoded.rejected == 0 and sorted(decoded.by_project) == ["default", "svc"]
    [[bare_row], [later_row]] = decoded.by_project["default"], decoded.by_project["svc"]
    assert bare_row[2] == "eee19b7ec3c1b174" and json.loads(bare_row[-1] or "{}") == {}
    assert later_row[2] == "fff19b7ec3c1b174"
    assert json.loads(later_row[-1]) == {"otel.scope.name": "s", "resource.service.name": "svc"}
