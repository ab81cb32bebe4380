"""What one table request of the server reads and keeps, bounded however many versions a key has
(routes_tables.py, routes_table_views.py; docs/server.md, "Table reads"): a media cell's file
(``table-blobs``) is looked for in the version asked for, else in the key's last logs newest first,
a batch of records at a time; the table index keeps a few dozen bytes an entry (packed columns,
not an object per record); the 503 "ask again" is declared on every route that answers it."""

from __future__ import annotations

import hashlib
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient

import tracklet

pytest.importorskip("duckdb")

VERSIONS = 70


def _cells(start, run_id: str):
    """A run logging table ``cells`` ``VERSIONS`` times (IMMUTABLE, one image cell each, its own
    image), and ``inc`` (INCREMENTAL, one image cell an increment): the digests, oldest first."""
    run = start(project="proj", id=run_id)
    digests = []
    growing = tracklet.Table(columns=["img", "n"], log_mode="INCREMENTAL")
    for n in range(VERSIONS):
        pixels = np.full((4, 4, 3), n, dtype=np.uint8)
        row = {"cells": tracklet.Table(columns=["img", "n"], data=[[tracklet.Image(pixels), n]])}
        if n < 10:
            growing.add_data(tracklet.Image(np.full((4, 4, 3), 200 + n, dtype=np.uint8)), n)
            row["inc"] = growing
        run.log(row, step=n)
    run.finish()
    recorded = tracklet.Api().run(run.path)
    for number in range(VERSIONS):
        digests.append(recorded.table("cells", version=number).to_arrow().to_pylist()[0]["img"]["digest"])
    inc = [row["img"]["digest"] for row in recorded.table("inc").to_arrow().to_pylist()]
    return digests, inc


def test_a_media_cell_is_looked_for_in_the_version_asked_for_or_the_keys_last_logs_a_batch_at_a_time(
        start, root, monkeypatch):
    """Before: every version's record of the key was read back (one ``read_from`` each) and every
    fragment queried at once, per request. Now: the version asked for (``version``/``step``) reads
    its records alone; without one the key's records are read newest first, ``BLOB_BATCH`` at a
    time, up to ``MAX_BLOB_RECORDS`` (an older cell: 404 saying to pass ``version``)."""
    from tracklet.media import table_read
    from tracklet.server import routes_table_views, routes_tables
    from tracklet.server.app import create_app

    digests, inc = _cells(start, "blobs")
    app = create_app(root, auth=False)
    with TestClient(app) as http:
        source = app.state.tracklet.indexer.source
        reads: list[int] = []
        real_read = source.read_from

        def read_from(paths, offset, limit=None, **kwargs):
            reads.append(offset)
            return real_read(paths, offset, limit, **kwargs)

        monkeypatch.setattr(source, "read_from", read_from)
        queried: list[int] = []
        real_open = table_read.open_every_version

        def open_every_version(data_root, records, key, **kwargs):
            queried.append(len(records))
            return real_open(data_root, records, key, **kwargs)

        monkeypatch.setattr(table_read, "open_every_version", open_every_version)
        assert http.get("/api/v1/runs/proj/blobs/tables").status_code == 200  # the run indexed

        def get(digest, key="cells", **params):
            routes_tables._KEPT.records.clear()  # (every record read back from its log, counted)
            routes_tables._KEPT.bytes = 0
            reads.clear()
            queried.clear()
            return http.get(f"/api/v1/runs/proj/blobs/table-blobs/{digest}", params={"key": key, **params})

        latest = get(digests[-1])
        assert latest.status_code == 200 and hashlib.sha256(latest.content).hexdigest() == digests[-1]
        assert len(reads) == 32 and queried == [32]  # the newest batch (before: all 70, queried at once)
        assert routes_table_views.BLOB_BATCH == 32
        assert get(digests[0]).status_code == 200  # every batch searched, one at a time
        assert len(reads) == VERSIONS and queried == [32, 32, VERSIONS - 64]
        for number in (0, VERSIONS // 2, VERSIONS - 1):  # the version asked for: its record alone
            assert get(digests[number], version=number).status_code == 200 and len(reads) == 1
            assert get(digests[number], step=number).status_code == 200 and len(reads) == 1
            other = digests[(number + 1) % VERSIONS]
            assert get(other, version=number).status_code == 404 and len(reads) == 1
        assert get(digests[0], version=VERSIONS).status_code == 404  # no such version

        # an INCREMENTAL table's version is its increments: a cell of its first, in its latest
        assert get(inc[0], key="inc", version=9).status_code == 200 and len(reads) == 10
        assert get(inc[5], key="inc", version=4).status_code == 404  # not yet added at v4

        monkeypatch.setattr(routes_table_views, "MAX_BLOB_RECORDS", 40)
        old = get(digests[0])
        assert old.status_code == 404 and "pass `version`" in old.json()["detail"] and len(reads) == 40
        assert get(digests[0], version=0).status_code == 200
        # the latest version (what the dashboard shows, asking without a version) is searched whole
        # first: an INCREMENTAL table's first increment is a cell of it however many logs came since
        monkeypatch.setattr(routes_table_views, "MAX_BLOB_RECORDS", 3)
        assert get(inc[0], key="inc").status_code == 200 and len(reads) == 10
        assert get(digests[-3]).status_code == 200 and len(reads) == 3  # (an IMMUTABLE one's latest: its newest log)
        assert get(digests[-4]).status_code == 404 and len(reads) == 3
        missing = http.get(f"/api/v1/runs/proj/blobs/table-blobs/{digests[0]}", params={"key": "nope"})
        assert missing.status_code == 404 and "'cells'" in missing.json()["detail"]  # names the keys there are


def _table_record(n: int, key: str):
    from tracklet.proto import records_pb2 as pb

    record = pb.Record()
    table = record.table_logged
    table.key = key
    table.step = n
    table.time = 1.7e9 + n
    table.log_mode = 1
    table.table_id = f"t{n % 7}"
    table.version_plus_one = n + 1
    fragment = table.fragments.add()
    fragment.digest = hashlib.sha256(str(n).encode()).hexdigest()
    fragment.rows = 3
    table.rows = 3
    return record


def test_an_index_entry_is_a_few_dozen_bytes_and_its_bytes_are_accounted_honestly():
    """Before: an entry was an object of 12 slots with its own ints and float (~310 bytes, more
    than a minimal record's 117 serialized). Now: packed columns, ~77 bytes an entry, and what the
    index says it keeps is at least what it holds (tracemalloc)."""
    from tracklet.server import routes_tables

    entries = 20_000
    keys = [f"key/{n}" for n in range(20)]
    made = [(_table_record(n, keys[n % len(keys)]), n * 200) for n in range(entries)]
    payloads = [record.SerializeToString() for record, _ in made]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tables = routes_tables._Tables()
        for (record, offset), payload in zip(made, payloads):
            tables.apply(record, (offset, payload))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_entry = held / entries
    assert per_entry <= 100, per_entry  # before: ~330
    assert held <= tables.bytes <= 1.3 * held + 4096, (held, tables.bytes)
    assert min(len(payload) for payload in payloads) > per_entry  # an entry is smaller than a record
    # and it is the record's: every field read back from the columns
    for place in (0, 1, entries // 2, entries - 1):
        record, offset = made[place]
        ref = tables.ref(place)
        assert ref.matches(record.table_logged) and ref.offset == offset and ref.crc == zlib.crc32(payloads[place])
        assert (ref.key, ref.step, ref.time, ref.table_id) == (record.table_logged.key, place, 1.7e9 + place,
                                                               f"t{place % 7}")
    assert [ref.step for ref in tables.of_key("key/3")] == list(range(3, entries, len(keys)))
    assert [ref.key for ref in tables.firsts()] == keys
    assert sys.getsizeof(tables.strings) < 4096


def test_the_ask_again_503_is_declared_on_every_route_that_answers_it(tmp_path):
    """The table routes that read records back by offset (``routes_tables.scan``) answer 503 when
    a run's logs were rewritten in place twice in one request: the OpenAPI schema says so."""
    from tracklet.server.app import create_app

    schema = create_app(tmp_path / "server", index_on_start=False).openapi()["paths"]
    for path in ("/api/v1/runs/{project}/{run_id}/tables/{key}", "/api/v1/runs/{project}/{run_id}/table-groups/{key}",
                 "/api/v1/projects/{project}/table-join", "/api/v1/runs/{project}/{run_id}/table-blobs/{digest}"):
        declared = schema[path]["get"]["responses"]
        assert "503" in declared and "ask again" in declared["503"]["description"], path
        assert declared["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse"), path


def test_an_index_chooses_the_versions_records_as_the_readers_rule_does():
    """``_Index.version``/``at_step`` (made only for the entries they choose) agree with
    ``records_of_version``/``version_records`` over every entry: writers' numbers, duplicates of a
    number (two machines), entries without one (old logs), INCREMENTAL tables' increments."""
    import random

    from tracklet.core.run_tables import records_of_version
    from tracklet.media.table_read import version_records
    from tracklet.proto import records_pb2 as pb
    from tracklet.server import routes_tables

    rng = random.Random(7)
    writers = []
    for _ in range(3):
        tables = routes_tables._Tables()
        for n in range(60):
            record = pb.Record()
            table = record.table_logged
            table.key = rng.choice(["a", "b"])
            table.step = rng.randrange(20)
            table.log_mode = rng.choice([1, 2, 3, 3])
            table.table_id = rng.choice(["t1", "t2"])
            table.increment = rng.randrange(10)
            table.version_plus_one = rng.choice([0, 0, rng.randrange(1, 40)])
            table.fragments.add(digest="0" * 64, rows=1)
            tables.apply(record, (n * 100, record.SerializeToString()))
        writers.append(tables)
    index = routes_tables._Index(writers)
    every = list(index)

    def where(refs):
        return None if refs is None else [(id(ref.tables), ref.offset) for ref in refs]

    for key in ("a", "b"):
        for number in range(-1, 130):
            if number >= 0:
                assert where(index.version(key, number)) == where(records_of_version(every, key, number)), number
        for step in [None, *range(-1, 21)]:
            try:
                expected = where(version_records(every, key, step))
            except Exception:
                expected = []
            assert where(index.at_step(key, step)) == expected, (key, step)


def test_an_index_a_request_took_is_the_folds_then_while_another_request_folds_on():
    """A request's ``_Index`` is made under the run's lock and read after it is released, while
    another request's fold appends to the same writers' columns and adds keys: it answers what was
    folded when it was taken (before: the live columns and ``by_key``, so a key added meanwhile
    showed up, and iterating ``by_key`` as another thread added a key raised "dictionary changed
    size during iteration": a 500 of ``GET .../tables``)."""
    from tracklet.server.routes_tables import _Index, _Tables

    tables = _Tables()
    for n in range(3):
        tables.apply(_table_record(n, "a"), (100 * n, b"x"))
    index = _Index([tables])
    for n, key in ((3, "b"), (4, "a")):  # another request's fold, after this one's index was taken
        tables.apply(_table_record(n, key), (100 * n, b"x"))
    assert [ref.key for ref in index.firsts()] == ["a"]
    assert [ref.step for ref in index] == [0, 1, 2]
    assert [ref.step for ref in index.of_key("a")] == [0, 1, 2] and index.of_key("b") == []
    assert [ref.step for ref in index.last_of_key("a", 10)] == [2, 1, 0]
    assert [ref.step for ref in index.at_step("a", None)] == [2]
    assert index.version("a", 4) is None and [ref.step for ref in index.version("a", 2)] == [2]
    firsts = [ref.key for ref in _Index([tables]).firsts()]  # a new request's sees them
    assert firsts == ["a", "b"]
