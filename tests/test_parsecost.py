"""``core/parsecost.py``: a record's parsed objects may cost ~50x its bytes (dense repeated
fields), so every place that parses a frame from outside estimates the cost from the wire format
first and refuses one past ``MAX_PARSE_BYTES``, naming the frame and the run; the run's other
frames are kept, and a large frame of ordinary data still goes through."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tracemalloc

import pytest
from google.protobuf.internal import api_implementation

import tracklet
from tracklet.client.sync import SyncClient
from tracklet.core.layout import RunPaths
from tracklet.core.parsecost import MAX_PARSE_BYTES, MAX_RATIO, json_parse_cost, parse_cost, parse_record, walk_cost
from tracklet.core.recordlog import MAGIC, frame, read_log
from tracklet.core.validate import RecordRejected, decode_record
from tracklet.core.wire import varint
from tracklet.errors import ResumeError
from tracklet.proto import records_pb2 as pb
from tracklet.store import Store

from conftest import QUIET


def _nested(path: tuple[str, ...], body: bytes) -> bytes:
    """``body`` (fields of the last message on ``path``) wrapped in the messages above it."""
    descriptor = pb.Record.DESCRIPTOR
    fields = []
    for name in path:
        field = descriptor.fields_by_name[name]
        fields.append(field)
        descriptor = field.message_type
    for field in reversed(fields):
        body = varint(field.number << 3 | 2) + varint(len(body)) + body
    return body


def _empty_elements(path: tuple[str, ...], count: int) -> bytes:
    """A record whose repeated field at ``path`` holds ``count`` empty elements (2 bytes each)."""
    *outer, last = path
    descriptor = pb.Record.DESCRIPTOR
    for name in outer:
        descriptor = descriptor.fields_by_name[name].message_type
    number = descriptor.fields_by_name[last].number
    return _nested(tuple(outer), (varint(number << 3 | 2) + b"\x00") * count)


def _crafted_values(count: int) -> bytes:
    """A history batch that passes every column check: one step, one key, ``count`` empty
    structured values all at row 0 (3 bytes a value on the wire)."""
    column = b"\x08\x00" + b"\x12" + varint(count) + b"\x00" * count + b"\x4a\x00" * count
    batch = pb.HistoryBatch()
    batch.new_keys.add(id=0, name="crafted")
    batch.steps.append(0)
    batch.times.append(1.0)
    return _nested(("history",), batch.SerializeToString() + b"\x22" + varint(len(column)) + column)


# Empty structured values enough to pass the limit: ~20 MiB on the wire, ~380 MiB parsed.
COSTLY_VALUES = MAX_PARSE_BYTES // 40


def _repeated_message_paths() -> list[tuple[str, ...]]:
    """A path from ``Record`` to every repeated message field a record can hold."""
    paths: list[tuple[str, ...]] = []
    seen: set[str] = set()
    queue: list[tuple[tuple[str, ...], object]] = [((), pb.Record.DESCRIPTOR)]
    while queue:
        path, descriptor = queue.pop(0)
        for field in descriptor.fields:  # type: ignore[attr-defined]
            if field.type != field.TYPE_MESSAGE or field.message_type.GetOptions().map_entry:
                continue
            if field.is_repeated:
                paths.append((*path, field.name))
            if field.message_type.full_name not in seen:
                seen.add(field.message_type.full_name)
                queue.append(((*path, field.name), field.message_type))
    return paths


def test_every_repeated_message_field_is_counted_and_refused_past_the_limit():
    paths = _repeated_message_paths()
    assert {("history", "columns", "values"), ("history", "columns"), ("config", "items")} <= set(paths)
    for path in paths:
        payload = _empty_elements(path, 50_000)  # 100 KB
        assert walk_cost(payload, 1 << 40) >= 50_000 * 40, path  # upb takes 48 bytes or more for each
        with pytest.raises(RecordRejected, match=r"would take more than 1 MiB of memory to parse"):
            parse_record(payload, limit=1 << 20)
        assert parse_record(payload, limit=64 << 20).ByteSize() == len(payload), path


def test_the_shortcut_for_small_payloads_is_an_upper_bound_of_the_walk():
    # a payload of at most limit / MAX_RATIO bytes is parsed unwalked: no field may cost more per byte
    for path in _repeated_message_paths():
        payload = _empty_elements(path, 1000)
        assert walk_cost(payload, 1 << 40) <= parse_cost(payload, 1 << 40) == len(payload) * MAX_RATIO, path


_MEASURE = """
import resource, sys
from tracklet.core.parsecost import walk_cost
from tracklet.proto import records_pb2 as pb
payload = open(sys.argv[1], "rb").read()
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))
before = rss()
record = pb.Record()
record.ParseFromString(payload)
print(rss() - before, walk_cost(payload, 1 << 40))
"""


# The estimate's costs per field are those of protobuf's upb backend (parsecost.py), the one a
# user's protobuf 4+ wheel runs; another (the pure-Python one, or cpp) builds other objects.
_BACKEND = api_implementation.Type()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.skipif(_BACKEND != "upb", reason=f"measures upb's parse memory; protobuf's {_BACKEND} backend is active")
@pytest.mark.parametrize("kind", ["values", "columns", "strings", "steps"])
def test_the_estimate_is_not_below_what_parsing_takes(kind, tmp_path):
    """Measured in a fresh process (the resident memory parsing adds): the estimate is an upper
    bound, so nothing that fits is refused, and within 2x, so the limit means what it says."""
    count = 1_000_000
    payload = {"values": lambda: _crafted_values(count),
               "columns": lambda: _empty_elements(("history", "columns"), count),
               "strings": lambda: _nested(("history", "columns"), (b"\x32\x01a") * count),
               "steps": lambda: _nested(("history",), b"\x12" + varint(count) + b"\x02" * count)}[kind]()
    (tmp_path / "payload").write_bytes(payload)
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path / "payload")],
                            capture_output=True, text=True, check=True)
    parsed, estimate = map(int, result.stdout.split())
    assert parsed <= estimate <= 2 * parsed, (kind, len(payload), parsed, estimate)


def test_a_crafted_frame_is_refused_unparsed_and_a_large_ordinary_one_passes():
    crafted = _crafted_values(COSTLY_VALUES)
    with pytest.raises(RecordRejected, match=r"record whose fields would take more than 256 MiB"):
        decode_record(crafted)
    ordinary = pb.Record()
    batch = ordinary.history
    rows = 2000
    batch.steps.extend(range(rows))
    batch.times.extend([1.5] * rows)
    for key in range(300):  # 300 keys of floats: ~5 MiB, past the unwalked size
        batch.new_keys.add(id=key, name=f"metric/{key}")
        batch.columns.add(key=key).floats.extend([0.25] * rows)
    payload = ordinary.SerializeToString()
    assert len(payload) * MAX_RATIO > MAX_PARSE_BYTES
    assert len(decode_record(payload).history.columns) == 300


def test_the_indexer_skips_a_costly_frame_and_keeps_the_runs_other_frames(root, store_url):
    run = tracklet.init(project="p", id="costly", dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()
    paths = RunPaths(root, "p", "costly")
    frames = read_log(paths.log_file).payloads
    # the crafted frame before the exit record: everything around it must still be read
    data = MAGIC + b"".join(frame(p) for _, p in frames[:-1]) + frame(_crafted_values(COSTLY_VALUES)) + frame(frames[-1][1])
    paths.log_file.write_bytes(data)
    store = Store(store_url, root=root)
    report = store.index()
    assert len(report.damaged) == 1, report.damaged
    assert "p/costly" in report.damaged[0] and "would take more than 256 MiB of memory to parse" in report.damaged[0]
    (row,) = store.runs("p", fields=("state", "last_step"))
    assert row["state"] == "finished" and row["last_step"] == 0
    with pytest.warns(tracklet.TrackletWarning, match="would take more than 256 MiB"):
        history = tracklet.Api(root).run("p/costly").history()
    assert history["loss"] == [1.0]


def test_the_server_refuses_a_costly_frame_and_sync_sends_a_gap_in_its_place(root, servers):
    """The server refuses the frame (400 naming it, the run and the limit; nothing stored); ``tracklet
    sync`` sends a gap record of its length in its place, as for local damage, so the run's later
    frames (here a large ordinary one) still upload at their own offsets. The local log keeps it."""
    import gzip

    import httpx

    server = servers()
    run = tracklet.init(project="p", id="up", dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()
    paths = RunPaths(root, "p", "up")
    with SyncClient(server.url) as client:
        stored = client.sync_run(paths).offset
    known = sum(len(decode_record(p).history.new_keys) for _, p in read_log(paths.log_file).payloads)
    costly = frame(_crafted_values(COSTLY_VALUES))
    refused = httpx.put(f"{server.url}/api/v1/runs/p/up/log", params={"offset": stored}, timeout=60,
                        content=gzip.compress(costly, 1), headers={"Content-Encoding": "gzip"})
    assert refused.status_code == 400
    assert re.fullmatch(rf"the frame at byte {stored} of the log of run p/up is not a valid record: a [\d,]+-byte "
                        r"record whose fields would take more than 256 MiB of memory to parse .*; nothing of this "
                        r"request was stored", refused.json()["detail"]), refused.json()["detail"]
    ordinary = pb.Record()
    ordinary.history.steps.extend(range(1, 2001))
    ordinary.history.times.extend([1.5] * 2000)
    for key in range(known, known + 400):  # ~6.5 MiB of floats: past the size parsed unwalked
        ordinary.history.new_keys.add(id=key, name=f"k{key}")
        ordinary.history.columns.add(key=key).floats.extend([0.5] * 2000)
    with paths.log_file.open("ab") as log:
        log.write(costly + frame(ordinary.SerializeToString()))
    with SyncClient(server.url) as client:
        result = client.sync_run(paths)
    assert result.offset == paths.log_file.stat().st_size
    (gap,) = result.gaps
    assert (gap.offset, gap.end) == (stored, stored + len(costly))
    assert "record too costly to parse: a 20,1" in result.describe_gaps()[0]
    copy = tracklet.Api(base_url=server.url).run("p/up").history()
    assert copy["_step"] == list(range(2001)) and copy["loss"] == [1.0] + [None] * 2000
    assert copy[f"k{known}"] == [None] + [0.5] * 2000


def test_a_resume_download_refuses_a_costly_stored_frame(servers, tmp_path):
    """The server's copy is read back by ``resume=``: a frame too costly to parse that got into it
    (stored before this check, or put there by hand) is refused before parsing, naming the run."""
    from test_online_resume import _first_session, _online, _server_log

    server = servers(tmp_path / "srv")
    _first_session(tmp_path / "a", server.url)
    stored = _server_log(tmp_path / "srv")
    stored.write_bytes(stored.read_bytes() + frame(_crafted_values(COSTLY_VALUES)))
    with pytest.raises(ResumeError, match=r"runabc.*the frame at byte \d+ is not a valid record: a [\d,]+-byte "
                                          r"record whose fields would take more than 256 MiB of memory to parse"):
        _online(tmp_path / "b", server.url, id="runabc", resume="must")
    assert not (tmp_path / "b" / "projects" / "p" / "runs" / "runabc").exists()


def test_an_otlp_request_of_dense_empty_spans_is_refused_unparsed(servers, tmp_path):
    """The OTLP receiver parses another message type through the same estimate: 15 MiB of empty
    ``ResourceSpans`` (~500 MiB parsed) get a 400 naming the limit; an ordinary request passes."""
    import httpx

    from tracklet.proto import otlp_trace_pb2 as otlp

    server = servers(tmp_path / "srv")
    url = f"{server.url}/v1/traces"
    crafted = b"\x0a\x00" * (15 << 19)
    assert walk_cost(crafted, MAX_PARSE_BYTES, otlp.ExportTraceServiceRequest.DESCRIPTOR) > MAX_PARSE_BYTES
    refused = httpx.post(url, content=crafted, headers={"content-type": "application/x-protobuf"}, timeout=60)
    assert refused.status_code == 400, refused.text[:300]
    assert refused.json()["detail"].startswith("the body is refused unparsed: a 15,728,640-byte OTLP request whose "
                                               "fields would take more than 256 MiB of memory to parse")
    empty = otlp.ExportTraceServiceRequest().SerializeToString()
    assert httpx.post(url, content=empty, headers={"content-type": "application/x-protobuf"}).status_code == 200


_SPAN = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "chat gpt-4o", "kind": 3,
         "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
         "attributes": [{"key": "gen_ai.system", "value": {"stringValue": "openai"}},
                        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
                        {"key": "temperature", "value": {"doubleValue": 0.5}}], "status": {}}
_JSON_SHAPES = {
    "empty arrays": b"[" + b",".join([b"[]"] * 100_000) + b"]",
    "empty objects": b"[" + b",".join([b"{}"] * 100_000) + b"]",
    "small objects": b"[" + b",".join([b'{"a":1}'] * 50_000) + b"]",
    "objects of six": b"[" + b",".join([b'{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6}'] * 20_000) + b"]",
    "distinct strings": b"[" + b",".join(b'"%d"' % i for i in range(100_000)) + b"]",
    "floats": b"[" + b",".join(b"%d.5" % i for i in range(100_000)) + b"]",
    "big ints": b"[" + b",".join(b"%d" % (i * 10**30) for i in range(50_000)) + b"]",
    "an astral string": ('["' + "a" * 100_000 + '\U0001f600"]').encode(),
    # ASCII text whose escapes widen (or join) a whole string as json.loads decodes it
    "an astral escape in ascii": b'["' + b"a" * 100_000 + b'\\ud83d\\ude00"]',
    "a bmp escape in ascii": b'["' + b"a" * 100_000 + b'\\u0100"]',
    "a newline escape in ascii": b'["\\n' + b"a" * 100_000 + b'"]',
    "many escaped strings": b"[" + b",".join([b'"a\\nb"'] * 20_000) + b"]",
    "otlp spans": json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [_SPAN] * 2000}]}]}).encode(),
}


@pytest.mark.parametrize("shape", sorted(_JSON_SHAPES))
def test_the_json_estimate_is_never_below_what_json_loads_allocates(shape):
    text = _JSON_SHAPES[shape]
    tracemalloc.start()
    try:
        parsed = json.loads(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del parsed
    assert peak <= json_parse_cost(text) <= max(12 * peak, 16 * len(text))
