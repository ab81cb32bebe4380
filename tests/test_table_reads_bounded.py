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


def _random_writers(rng, kind: str, writers: int = 3, entries: int = 60):
    """Writers' ``_Tables`` of random entries of keys ``a`` and ``b``. ``kind``: ``"any"`` (steps
    in any order, numbers of any writer or none: the general way), ``"one machine"`` (steps never
    going down in a log, every entry numbered by one counter the writers share: the bisections),
    ``"old"`` (steps in order, no numbers: logs before session 32), ``"mixed"`` (steps in order,
    some numbered, numbers two machines' counters may repeat)."""
    from tracklet.proto import records_pb2 as pb
    from tracklet.server import routes_tables

    made, counter = [], 0
    for _ in range(writers):
        tables = routes_tables._Tables()
        step = 0
        for n in range(entries):
            record = pb.Record()
            table = record.table_logged
            table.key = rng.choice(["a", "b"])
            step = rng.randrange(20) if kind == "any" else step + rng.choice([0, 0, 1, 3])
            table.step = step
            table.log_mode = rng.choice([1, 2, 3, 3])
            table.table_id = rng.choice(["t1", "t2"])
            table.increment = rng.randrange(10) if kind == "any" else n
            if kind == "one machine":
                counter += rng.choice([1, 1, 2])
                table.version_plus_one = counter
            elif kind == "old":
                table.version_plus_one = 0
            else:
                table.version_plus_one = rng.choice([0, 0, rng.randrange(1, 40)])
            table.time = 1.7e9 + n
            table.fragments.add(digest="0" * 64, rows=rng.randrange(1, 4))
            tables.apply(record, (n * 100, record.SerializeToString()))
        made.append(tables)
    return made


def _listed(every, key: str) -> list[tuple[int, int, int, int]]:
    """(offset, step, number, rows) of each version of ``key`` as the route always listed them:
    every entry numbered by the readers' rule, an INCREMENTAL one's rows its table's so far."""
    from tracklet.core.run_tables import version_numbers

    records = [ref for ref in every if ref.key == key]
    added: dict[str, int] = {}
    listed = []
    for ref, number in zip(records, version_numbers(records)):
        rows = ref.fragment_rows
        if ref.log_mode == 3:
            rows = added[ref.table_id] = added.get(ref.table_id, 0) + rows
        listed.append((id(ref.tables), ref.offset, number, rows))
    return listed


@pytest.mark.parametrize("kind", ["any", "one machine", "old", "mixed"])
def test_an_index_chooses_and_pages_versions_as_the_readers_rule_does_however_the_writers_numbered(kind, monkeypatch):
    """Every way writers' entries come (steps in order or not; numbered by one machine's counter,
    by two, or not at all): ``_Index.version``/``at_step`` choose what ``records_of_version``/
    ``version_records`` choose over every entry (the bisections where the facts allow them, the
    general way otherwise), on the whole index and on a snapshot taken part way; and the pages of
    ``versions_page``, followed by their cursors at any page size, list every version exactly
    once, in the readers' order, numbered and counted as the route always did; without a limit,
    the last ``MAX_VERSIONS``."""
    import random

    from tracklet.core.run_tables import records_of_version
    from tracklet.media.table_read import version_records
    from tracklet.server import routes_tables

    rng = random.Random(f"pages {kind}")

    def where(refs):
        return None if refs is None else [(id(ref.tables), ref.offset) for ref in refs]

    for trial in range(4):
        writers = _random_writers(rng, kind)
        snapshot = routes_tables._Index(writers) if trial % 2 else None
        extra = _random_writers(rng, kind, writers=1, entries=10)[0]
        if snapshot is not None:  # folded on after the snapshot was taken: it answers what it held
            for place in range(len(extra)):
                ref = extra.ref(place)
                writers[-1].apply(_record_of(ref), (10_000 + ref.offset, b"x"))
        for index in [routes_tables._Index(writers), *([snapshot] if snapshot is not None else [])]:
            every = list(index)
            for key in ("a", "b"):
                for number in range(0, 200):
                    assert where(index.version(key, number)) == where(records_of_version(every, key, number)), \
                        (kind, key, number)
                for step in [None, *range(-1, 80)]:
                    try:
                        expected = where(version_records(every, key, step))
                    except Exception:
                        expected = []
                    assert where(index.at_step(key, step)) == expected, (kind, key, step)
                listed = _listed(every, key)
                for limit in (1, 7, 1000):
                    pages, cursor = [], None
                    while True:
                        page, total, following = index.versions_page(key, cursor, limit)
                        assert total == len(listed) and len(page) <= limit
                        pages += [(id(tables), tables.offsets[place], number, rows) for tables, place, number, rows in page]
                        assert following is not None
                        cursor = following
                        if len(page) < limit:
                            break
                    assert index.versions_page(key, cursor, limit)[0] == []  # the end: nothing after it
                    assert pages == listed, (kind, key, limit)
                monkeypatch.setattr(routes_tables, "MAX_VERSIONS", 5)
                page, total, following = index.versions_page(key, None, None)
                assert [(id(tables), tables.offsets[place], number, rows) for tables, place, number, rows in page] == listed[-5:]
                assert following is not None and index.versions_page(key, following, 1)[0] == []  # later ones start there
                monkeypatch.undo()


def _record_of(ref):
    from tracklet.proto import records_pb2 as pb

    record = pb.Record()
    table = record.table_logged
    table.key, table.step, table.time, table.log_mode = ref.key, ref.step, ref.time, ref.log_mode
    table.table_id, table.increment, table.version_plus_one = ref.table_id, ref.increment, ref.version_plus_one
    table.fragments.add(digest="0" * 64, rows=ref.fragment_rows)
    return record


class _Counted:
    """Reads of a column (``array.__getitem__``) counted."""

    def __init__(self, column) -> None:
        self.column, self.reads = column, 0

    def __getitem__(self, place):
        self.reads += 1
        return self.column[place]

    def __len__(self):
        return len(self.column)


def test_a_version_or_step_lookup_and_a_page_of_versions_read_a_few_entries_of_thousands():
    """10,000 versions of one key (one writer's counter numbering them, steps never going down):
    choosing the version at a step, or run-table version n, reads O(log) of the key's entries'
    steps/numbers (a bisection), and a page of versions reads its own entries, not every one (before:
    each lookup read the steps or numbers of every entry up to the one chosen, and table-versions
    numbered every entry per request). The answers are the readers' rule's."""
    from tracklet.core.run_tables import records_of_version
    from tracklet.media.table_read import version_records
    from tracklet.server import routes_tables

    count = 10_000
    tables = routes_tables._Tables()
    for n in range(count):
        tables.apply(_table_record(n, "k"), (n * 100, b"x"))
    index = routes_tables._Index([tables])
    every = list(index)
    steps, versions = _Counted(tables.steps), _Counted(tables.versions)
    tables.steps, tables.versions = steps, versions  # type: ignore[assignment]
    try:
        for step in (0, 17, 5_000, count - 2):
            chosen = index.at_step("k", step)
            assert [ref.offset for ref in chosen] == [ref.offset for ref in version_records(every, "k", step)]
        for number in (0, 4_321, count - 1):
            chosen = index.version("k", number)
            assert [ref.offset for ref in chosen] == [ref.offset for ref in records_of_version(every, "k", number)]
        assert index.version("k", count) is None
        assert steps.reads + versions.reads <= 8 * 40, (steps.reads, versions.reads)  # ~log2(10,000) = 14 each
        steps.reads = versions.reads = 0
        page, total, following = index.versions_page("k", ("", 9_000), 100)
        assert total == count and following == ("", 9_100)
        assert [number for _, _, number, _ in page] == list(range(9_000, 9_100))
        assert versions.reads <= 100 + 40, versions.reads  # (each entry's number)
    finally:
        tables.steps, tables.versions = steps.column, versions.column


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


def test_a_version_past_the_writers_numbers_is_never_a_records_number_it_isnt():
    """A record whose ``version_plus_one`` is past what a writer's number may be (2**62 and over:
    no number, by the readers' rule) is numbered as one without, so ``v<2**62>`` (the most
    ``?version=`` takes) names no record: the index, as ``records_of_version``, finds none (before,
    where the entries must all be numbered, it answered that record)."""
    from tracklet.core.run_tables import records_of_version
    from tracklet.server import routes_tables

    tables = routes_tables._Tables()
    numbered, odd = _table_record(0, "k"), _table_record(1, "k")
    odd.table_logged.version_plus_one = (1 << 62) + 1
    for n, record in enumerate((numbered, odd)):
        tables.apply(record, (n * 100, b"x"))
    index = routes_tables._Index([tables])
    every = list(index)
    for number in (0, 1, 1 << 62):
        expected = records_of_version(every, "k", number)
        got = index.version("k", number)
        assert (None if got is None else [ref.offset for ref in got]) == \
            (None if expected is None else [ref.offset for ref in expected]), number
    assert index.version("k", 1 << 62) is None


def test_pages_of_versions_numbered_one_by_one_number_the_key_once_per_index(monkeypatch):
    """Writers of one machine log at once, so their counter's numbers interleave between logs: no
    bisection holds and every entry of the key is numbered (``version_numbers``). Paging through
    them numbers the key once for the index, not once per page (a listing at a small page size
    was quadratic in the key's versions); the pages still list every version once, in order."""
    from tracklet.core import run_tables
    from tracklet.proto import records_pb2 as pb
    from tracklet.server import routes_tables

    writers = [routes_tables._Tables() for _ in range(3)]
    for n in range(90):  # the shared counter: 1, 2, 3, ... handed round the writers
        record = pb.Record()
        table = record.table_logged
        table.key, table.step, table.log_mode, table.table_id = "k", n, 1, "t"
        table.version_plus_one, table.time = n + 1, 1.7e9 + n
        table.fragments.add(digest="0" * 64, rows=1)
        writers[n % 3].apply(record, (n * 100, record.SerializeToString()))
    index = routes_tables._Index(writers)
    numbered: list[int] = []
    original = run_tables.version_numbers

    def counting(records, *args, **kwargs):
        numbered.append(1)
        return original(records, *args, **kwargs)

    monkeypatch.setattr(run_tables, "version_numbers", counting)
    listed, cursor = [], None
    while True:
        page, total, cursor = index.versions_page("k", cursor, 4)
        listed += [number for _, _, number, _ in page]
        if len(page) < 4:
            break
    assert total == 90 and sorted(listed) == list(range(90)) and len(set(listed)) == 90
    assert listed == original(index.of_key("k"))  # the readers' order, the readers' numbers
    assert len(numbered) == 1


def _entries_strategy():
    from hypothesis import strategies as st

    entry = st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 12), st.sampled_from([1, 2, 3]),
                      st.sampled_from(["t1", "t2"]), st.integers(0, 5))
    return st.lists(st.lists(entry, max_size=25), min_size=1, max_size=5)


def _tables_of(writers):
    from tracklet.proto import records_pb2 as pb
    from tracklet.server import routes_tables

    made = []
    for entries in writers:
        tables = routes_tables._Tables()
        for n, (key, step, mode, table_id, increment) in enumerate(entries):
            record = pb.Record()
            table = record.table_logged
            table.key, table.step, table.log_mode, table.table_id, table.increment = key, step, mode, table_id, increment
            table.time = 1.7e9 + n
            table.fragments.add(digest="0" * 64, rows=1)
            tables.apply(record, (n * 100, record.SerializeToString()))
        made.append(tables)
    return made


def test_a_lookup_by_step_chooses_the_readers_rules_entry_however_steps_and_writers_come():
    """Property (Hypothesis): writers' entries at random steps, in any order, with repeated steps
    (in one log and across logs) and INCREMENTAL tables: ``_Index.at_step`` (a bisection of the
    key's step-sorted view where the steps go down in a log or several writers hold the key, a
    bisection of the one writer's steps otherwise) chooses exactly the records ``version_records``
    (the readers' rule: of those at or before the step, the last in the readers' order) chooses,
    for every step asked, asked again (views made at once, as by default, or never), on the whole index and on a snapshot taken
    before more entries were folded."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tracklet.media.table_read import version_records
    from tracklet.server import routes_tables

    def where(refs):
        return [(id(ref.tables), ref.offset) for ref in refs]

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_entries_strategy(), st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["a", "b"]),
                                                   st.integers(0, 12)), max_size=6), st.sampled_from([0, 2, 10**9]))
    def check(writers, later, view_after):
        routes_tables._VIEW_AFTER = view_after  # (the view from the first lookup, as by default, never)
        tables = _tables_of(writers)
        snapshot = routes_tables._Index(tables)
        held = list(snapshot)
        for writer, key, step in later:  # folded after the snapshot was taken
            extra = _tables_of([[(key, step, 1, "t1", 0)]])[0]
            target = tables[writer % len(tables)]
            target.apply(_record_of(extra.ref(0)), (50_000 + len(target) * 100, b"x"))
        for index, every in ((routes_tables._Index(tables), None), (snapshot, held)):
            every = list(index) if every is None else every
            for _ in range(2):  # the second time from the views the first made
                for key in ("a", "b", "c"):
                    for step in [None, -1, *range(0, 14)]:
                        try:
                            expected = where(version_records(every, key, step))
                        except Exception:
                            expected = []
                        assert where(index.at_step(key, step)) == expected, (key, step)
            if view_after == 0:
                assert all(key in index._steps for key in ("a", "b") if len({id(ref.tables) for ref in every
                                                                            if ref.key == key}) > 1)

    try:
        check()
    finally:
        routes_tables._VIEW_AFTER = 2


def test_a_lookup_by_step_of_steps_logged_out_of_order_is_a_bisection_of_a_view_made_once():
    """10,000 versions of one key whose steps went down in the log (one step logged late), and
    8 interleaved writers whose steps go down in each log: once lookups passed over twice the key's entries (the
    index then sorts the key's steps once) a lookup by step reads no entry's step and O(log) of the view's (before:
    each lookup passed over the entries from the last one back, ~10,000 steps read for an early
    step). The answers are the readers' rule's."""
    from tracklet.media.table_read import version_records
    from tracklet.server import routes_tables

    count = 10_000
    for writers in (1, 8):
        made = [routes_tables._Tables() for _ in range(writers)]
        for n in range(count):
            record = _table_record(n, "k")
            if writers == 1:
                record.table_logged.step = {0: 1, 1: 0}.get(n, n)  # steps 1, 0, 2, 3, ...
            else:  # each writer's steps go down: 1, 0, 3, 2, ... handed round two at a time
                record.table_logged.step = n ^ 1
            made[(n // 2) % writers].apply(record, (n * 100, b"x"))
        index = routes_tables._Index(made)
        every = list(index)
        counted = [_Counted(tables.steps) for tables in made]
        for tables, column in zip(made, counted):
            tables.steps = column  # type: ignore[assignment]
        try:
            for _ in range(3):  # passes over every entry: twice the key's entries read, the view made
                index.at_step("k", 0)
            views = getattr(index, "_steps", {}).get("k")
            sorted_steps = _Counted(views.steps if views is not None else [])
            if views is not None:
                views.steps = sorted_steps  # type: ignore[assignment]
            for column in counted:
                column.reads = 0
            for step in (0, 1, 2, 17, 5_000, count - 2):
                chosen = index.at_step("k", step)
                assert [(id(ref.tables), ref.offset) for ref in chosen] == \
                    [(id(ref.tables), ref.offset) for ref in version_records(every, "k", step)], (writers, step)
            assert sum(column.reads for column in counted) <= 6 * 2, [column.reads for column in counted]
            assert sorted_steps.reads <= 6 * 20, sorted_steps.reads  # ~log2(10,000) = 14 each
        finally:
            for tables, column in zip(made, counted):
                tables.steps = column.column


def test_lookups_by_step_of_keys_no_writer_holds_keep_nothing_in_the_index():
    """``_Index.at_step`` counts what a key's lookups by step read (``_passed``, charged to the run's
    bytes) only for a key some writer holds: a request naming any other key (a 404, each name a
    client's) kept one count per name for the index's life, charged 100 bytes whatever the name's
    length."""
    from tracklet.server import routes_tables

    index = routes_tables._Index(_tables_of([[("a", 1, 1, "t1", 0), ("a", 0, 1, "t1", 0)]]))
    before = index.bytes
    for n in range(50):
        assert index.at_step(f"missing-{n}" * 20, 3) == []
    assert index._passed == {} and index.bytes == before
    assert index.at_step("a", 0) and "a" in index._passed and index.bytes > before


def test_views_two_requests_make_at_once_are_charged_once(monkeypatch):
    """Requests of one run share its index and read it outside the run's lock: two that make a
    key's step view (or numbering) at once keep one, and the index's bytes count it once (each
    added its own: charged twice, for a view dropped)."""
    import threading

    from tracklet.server import routes_tables

    index = routes_tables._Index(_tables_of([[("a", 3, 1, "t1", 0), ("a", 1, 1, "t1", 0)],
                                             [("a", 2, 1, "t1", 0)]]))
    monkeypatch.setattr(routes_tables, "_VIEW_AFTER", 0)
    both = threading.Barrier(2, timeout=30)
    made = routes_tables._StepView.__init__

    def together(self, *args):  # the two requests' views made at the same time
        made(self, *args)
        both.wait()

    monkeypatch.setattr(routes_tables._StepView, "__init__", together)
    before = index.bytes
    answers = []
    lookups = [threading.Thread(target=lambda: answers.append(index.at_step("a", 2))) for _ in range(2)]
    for lookup in lookups:
        lookup.start()
    for lookup in lookups:
        lookup.join(60)
    view = index._steps["a"]
    assert len(answers) == 2 and index.bytes == before + view.bytes + routes_tables._VIEW_BYTES
