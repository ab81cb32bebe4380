"""The server's table routes on a shared run of many writers' logs (docs/server.md, "Table reads"):
what they keep of a run's table records is an index bounded in bytes, per run and for every run
together; past either bound a run's index is dropped and read again, and the records a version
needs are read back from their logs by offset. Every answer equals the local reader's, however
small the bounds. One run (a primary and ``PARTS`` parts, each logging immutable tables, its own
key and an incremental table) is recorded per module by real writers in this process and served by
the real app (``create_app``) in process, so the bounds can be set small."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import tracklet

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}
PARTS = 12
STEPS = 3


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tables-many-parts")
    for label in [None, *(f"rank_{n:02d}" for n in range(PARTS))]:
        settings = {**QUIET, "dir": str(root)}
        if label is not None:
            settings.update(primary=False, label=label)
        name = label or "primary"
        run = tracklet.init(project="p", id="big", settings=settings)
        growing = tracklet.Table(columns=["writer", "i"], log_mode="INCREMENTAL")
        for step in range(STEPS):
            growing.add_data(name, step)
            run.log({"shared": tracklet.Table(columns=["writer", "i"], data=[[name, step]]),
                     f"own/{name}": tracklet.Table(columns=["i"], data=[[step]] * (step + 1)),
                     "inc": growing}, step=step)
        run.finish()
    run = tracklet.init(project="p", id="small", settings={**QUIET, "dir": str(root)})
    run.log({"shared": tracklet.Table(columns=["writer", "i"], data=[["small", 0]])}, step=0)
    run.finish()
    return root


@pytest.fixture(scope="module")
def client(recorded):
    from tracklet.server.app import create_app

    app = create_app(recorded, auth=False, store_url=f"sqlite:///{recorded / 'server.sqlite'}")
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _local(root: Path):
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths

    return RecordedRun(RunPaths(root, "p", "big"))


def _expected(run, key: str, **at) -> list[list]:
    return [list(row.values()) for row in run.table(key, **at).page(0, 1000).to_arrow().to_pylist()]


def _served(client, key: str, **at) -> list[list]:
    response = client.get(f"/api/v1/runs/p/big/tables/{key}", params={**at, "limit": 1000})
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def _answers(client, run) -> None:
    """Every table route's answers on the run equal the local reader's."""
    from tracklet.core.run_tables import numbered_versions

    keys = client.get("/api/v1/runs/p/big/tables").json()["keys"]
    assert keys == run.table_keys()
    records = run._read.tables
    for key in ("shared", "inc", "own/primary", f"own/rank_{PARTS - 1:02d}"):
        if key not in keys:
            continue
        assert _served(client, key) == _expected(run, key)
        if key == "inc":  # (the increments up to a step)
            assert _served(client, key, step=1) == _expected(run, key, step=1)
        versions = client.get(f"/api/v1/runs/p/big/table-versions/{key}")
        assert versions.status_code == 200, versions.text
        numbers = [number for number, record in numbered_versions(records) if record.key == key]
        assert sorted(version["version"] for version in versions.json()["versions"]) == numbers
        for number in numbers[:: max(1, len(numbers) // 4)]:
            assert _served(client, key, version=number) == _expected(run, key, version=number)


def test_a_run_of_many_writers_logs_reads_as_the_local_reader(recorded, client):
    from tracklet.server import routes_tables

    run = _local(recorded)
    assert len(run.table_keys()) == PARTS + 3
    _answers(client, run)
    _answers(client, run)  # again from the kept index and records
    assert 0 < routes_tables._FOLDS.kept_bytes() <= routes_tables.INDEX_BYTES
    assert routes_tables._KEPT.bytes <= routes_tables.RECORDS_KEPT_BYTES


def test_the_index_and_the_records_kept_stay_under_their_bounds_and_answers_stay_right(recorded, client,
                                                                                    monkeypatch):
    """Bounds smaller than the run's index and records: every answer is still the local reader's,
    and what is kept stays under the bounds after every request (a run over the per-run bound is
    answered and not kept; the records kept are dropped oldest first)."""
    from tracklet.server import routes_tables

    folds = routes_tables._FOLDS
    monkeypatch.setattr(folds, "_runs", OrderedDict())  # (runs other tests in this process read)
    run = _local(recorded)
    whole = len(run._read.tables) * routes_tables._REF_BYTES
    checked = []

    def bounded(*args, **kwargs):
        answer = original(*args, **kwargs)
        checked.append((folds.kept_bytes(), routes_tables._KEPT.bytes))
        return answer

    original = routes_tables.run_fold
    monkeypatch.setattr(routes_tables, "run_fold", bounded)
    monkeypatch.setattr(routes_tables, "RECORDS_KEPT_BYTES", 600)  # a few records
    monkeypatch.setattr(routes_tables, "_KEPT", routes_tables._Kept())  # (the last test's, under the default)
    for run_bytes, total in ((whole // 3, None), (None, whole // 3)):
        monkeypatch.setattr(folds, "_run_bytes", run_bytes)
        monkeypatch.setattr(folds, "_total_bytes", total)
        folds.forget(str(recorded / "projects/p/runs/big"))
        _answers(client, run)
        limit = run_bytes if run_bytes is not None else total
        assert checked and all(kept <= limit and records <= 600 for kept, records in checked), checked
        assert folds.kept_bytes() == 0 and not folds._runs  # the run alone is over the bound: never kept
        checked.clear()

    # The process's bound: room for the big run, not for both: reading the small one drops the big
    # one (asked for least recently), reading the big one drops the small one; answers stay right.
    monkeypatch.setattr(folds, "_run_bytes", None)
    monkeypatch.setattr(folds, "_total_bytes", None)
    _answers(client, run)
    assert folds.kept_bytes() >= whole  # within the bounds, kept
    monkeypatch.setattr(folds, "_total_bytes", folds.kept_bytes() + 100)
    checked.clear()
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths

    small = RecordedRun(RunPaths(recorded, "p", "small"))
    for _ in range(2):
        served = client.get("/api/v1/runs/p/small/tables/shared").json()["rows"]
        assert served == _expected(small, "shared")
        assert 0 < folds.kept_bytes() <= folds._total_bytes and len(folds._runs) == 1
        _answers(client, run)
        assert checked and all(kept <= folds._total_bytes for kept, _ in checked), checked
        assert folds.kept_bytes() >= whole and len(folds._runs) == 1


def test_a_log_replaced_under_a_kept_index_is_never_read_at_stale_offsets(recorded, client, tmp_path, monkeypatch):
    """A part's log rewritten in place with another writer's (same inode, same size: the index is
    kept and its offsets now hold other records): the record read back by offset is not the one
    its entry was made of (its payload's crc32), so the run is indexed again and the answer is the
    new logs', never another record's rows."""
    import shutil

    run = _local(recorded)
    _answers(client, run)
    part = recorded / "projects/p/runs/big/parts"
    logs = sorted(part.glob("*.tlog"))
    # Two parts' logs of one size (their records' varints, a duration's, can differ by a byte between
    # writers): a log of another size is read on from its offset or started over, not this case.
    sizes: dict[int, list[Path]] = {}
    for log in logs:
        sizes.setdefault(log.stat().st_size, []).append(log)
    pair = next((same for same in sizes.values() if len(same) >= 2), None)
    assert pair is not None, f"no two parts' logs of one size: {sorted(sizes)}"
    replaced, other = pair[0], pair[1]
    first = logs.index(replaced)
    saved = tmp_path / "saved.tlog"
    shutil.copyfile(replaced, saved)
    try:
        from tracklet.server import routes_tables

        routes_tables._KEPT.records.clear()
        routes_tables._KEPT.bytes = 0
        replaced.write_bytes(other.read_bytes())  # same inode, same size: only the offsets' records differ
        forgotten = []
        forget = routes_tables._FOLDS.forget
        monkeypatch.setattr(routes_tables._FOLDS, "forget", lambda key: (forgotten.append(key), forget(key)))
        numbers = range((first + 1) * STEPS, (first + 3) * STEPS)  # that part's and the next (the primary's come first)
        answers = [client.get("/api/v1/runs/p/big/tables/shared", params={"version": n}) for n in numbers]
        assert [response.status_code for response in answers] == [200] * len(answers), [r.text for r in answers]
        assert forgotten == [str(recorded / "projects/p/runs/big")]  # a stale entry found, the run indexed again
        fresh = _local(recorded)
        for number, response in zip(numbers, answers):
            assert response.json()["rows"] == _expected(fresh, "shared", version=number)
        _answers(client, fresh)
    finally:
        shutil.copyfile(saved, replaced)
        from tracklet.server import routes_tables

        routes_tables._FOLDS.forget(str(recorded / "projects/p/runs/big"))


def test_parts_that_grow_or_appear_between_others_read_as_the_local_reader(tmp_path, monkeypatch):
    """Between two requests a part's log grows and a new part appears between two others (by
    label): the kept index reads on from each copy's offset, and keeps the writers in the readers'
    order, which numbers the versions of logs written without a number (as before session 32)."""
    from tracklet.media import table_versions
    from tracklet.server.app import create_app

    monkeypatch.setattr(table_versions.VersionCounter, "take", lambda self, key: 0)  # numbered by order

    def write(label: str | None, steps: range) -> None:
        settings = {**QUIET, "dir": str(tmp_path)}
        if label is not None:
            settings.update(primary=False, label=label)
        run = tracklet.init(project="p", id="big", settings=settings, resume="allow" if label is None else None)
        for step in steps:
            run.log({"shared": tracklet.Table(columns=["writer", "i"], data=[[label or "primary", step]])}, step=step)
        run.finish()

    for label in (None, "rank_00", "rank_02"):
        write(label, range(2))
    app = create_app(tmp_path, auth=False, store_url=f"sqlite:///{tmp_path / 'server.sqlite'}")
    with TestClient(app, raise_server_exceptions=False) as client:
        _answers(client, _local(tmp_path))
        write(None, range(2, 4))  # the primary's log grows
        write("rank_01", range(2))  # a part between the others
        run = _local(tmp_path)
        assert len(run._read.tables) == 10
        _answers(client, run)
        served = [v["version"] for v in client.get("/api/v1/runs/p/big/table-versions/shared").json()["versions"]]
        assert len(served) == 10
        for number in served:
            assert _served(client, "shared", version=number) == _expected(run, "shared", version=number)


def _versions(url: str, run_id: str, total: int) -> list[tuple[int, int]]:
    """(step, version) of each version of ``preds``, once the server lists ``total`` of them."""
    import time

    import httpx

    deadline = time.monotonic() + 60
    while True:  # (the server indexes a run recorded into its root at its next sweep)
        response = httpx.get(f"{url}/api/v1/runs/p/{run_id}/table-versions/preds", timeout=30)
        if response.status_code == 200 and response.json()["total"] == total:
            return [(item["step"], item["version"]) for item in response.json()["versions"]]
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def test_a_part_that_grows_on_disk_after_its_listing_was_kept_is_read_by_a_server_process(module_servers, tmp_path):
    """A real ``tracklet server`` process over a shared run recorded into its own data root by
    real writers (fresh interpreters): its table routes keep the listing of the run's copies while
    the kernel reports no change there (``copy_watch``); a part that grows on disk, and one that
    appears between two others, after requests that reused the listing, are read (every version
    listed, numbered as the local reader numbers them)."""
    from test_table_versions import _read, _writers

    root = tmp_path / "server"
    _writers(root, "grow", ["primary", "rank_1", "rank_2"], 2)
    # The server starts on the recorded run and indexes it as it starts (started first, it found the run
    # only at its next sweep, 30 s later: 24 s of polls that were each a request on both sides).
    server = module_servers(root)
    local = [(step, n) for key, _, step, n in _read(root, "grow") if key == "preds"]
    assert _versions(server.url, "grow", 6) == local
    assert _versions(server.url, "grow", 6) == local  # (again: the listing kept)
    _writers(root, "grow", ["rank_1"], 2, first=2)  # the part grows on disk
    local = [(step, n) for key, _, step, n in _read(root, "grow") if key == "preds"]
    assert len(local) == 8 and _versions(server.url, "grow", 8) == local
    _writers(root, "grow", ["rank_0"], 1)  # a part between the others
    local = [(step, n) for key, _, step, n in _read(root, "grow") if key == "preds"]
    assert len(local) == 9 and _versions(server.url, "grow", 9) == local


def test_an_unchanged_runs_request_stats_none_of_its_parts_and_a_changed_one_is_listed_again(tmp_path):
    """A shared run of 64 parts on local disk, served in process: once read, a request on the
    unchanged run lists none of its copies (no ``os.stat``/``scandir`` of them: the kernel reported
    no change, ``copy_watch``; before, one ``stat`` per copy per request); a part's log appended to
    in place, and replaced by a rename, are each seen by the next request (its rows answered)."""
    import os
    import shutil

    from tracklet.core.layout import RunPaths
    from tracklet.server.app import create_app
    from tracklet.server.copy_watch import copy_watch

    if copy_watch()._fd < 0 or not copy_watch()._local(tmp_path / "projects/p/runs/x"):
        pytest.skip("no inotify on this machine or filesystem: every request lists the copies")
    for label in (None, "rank_00"):
        settings = {**QUIET, "dir": str(tmp_path)}
        if label is not None:
            settings.update(primary=False, label=label)
        run = tracklet.init(project="p", id="many", settings=settings)
        run.log({"shared": tracklet.Table(columns=["writer"], data=[[label or "primary"]])}, step=0)
        run.finish()
    paths = RunPaths(tmp_path, "p", "many")
    source = paths.part_paths("rank_00").log_file
    for n in range(1, 64):
        shutil.copyfile(source, paths.part_paths(f"rank_{n:02d}").log_file)
    app = create_app(tmp_path, auth=False, store_url=f"sqlite:///{tmp_path / 'server.sqlite'}")
    counted: list[str] = []
    stat, scandir = os.stat, os.scandir

    def counting_stat(path, *args, **kwargs):
        counted.append(str(path))
        return stat(path, *args, **kwargs)

    def counting_scandir(path=".", *args, **kwargs):
        counted.append(str(path))
        return scandir(path, *args, **kwargs)

    def versions() -> int:
        response = client.get("/api/v1/runs/p/many/table-versions/shared")
        assert response.status_code == 200, response.text
        return response.json()["total"]

    with TestClient(app, raise_server_exceptions=False) as client:
        assert versions() == 65
        os.stat, os.scandir = counting_stat, counting_scandir
        try:
            counted.clear()
            assert versions() == 65
            touched = [path for path in counted if str(paths.run_dir) in path]
        finally:
            os.stat, os.scandir = stat, scandir
        assert touched == [], touched  # before: the parts' directory and each of the 65 logs
        from tracklet.core.recordlog import MAGIC

        grown = paths.part_paths("rank_07").log_file
        with open(grown, "ab") as handle:  # appended in place (the same inode): another writer's records after its own
            handle.write(source.read_bytes()[len(MAGIC):])
        assert versions() > 65
        replaced = paths.part_paths("rank_10").log_file
        shutil.copyfile(paths.log_file, tmp_path / "new.tlog")
        os.replace(tmp_path / "new.tlog", replaced)  # renamed over: another inode
        total = versions()
        from tracklet.core.api import RecordedRun

        assert total == len([r for r in RecordedRun(paths)._read.tables if r.key == "shared"])


def test_a_runs_index_is_charged_for_the_key_maps_and_views_it_keeps_and_dropped_past_the_bound(
        recorded, client, monkeypatch):
    """A run's index keeps, beyond its writers' folds, a copy of each writer's key map and the
    views made of it (a key's step-sorted view, its numbering): they count in the run's bytes with
    the folds, charged as they are made (a view made while the request reads the index, after the
    request's accounting), so a run whose views take it past the per-run bound is dropped (before:
    only the folds were counted, and the run was kept holding more than its bound)."""
    import sys

    from tracklet.server import routes_tables

    folds = routes_tables._FOLDS
    monkeypatch.setattr(folds, "_runs", OrderedDict())  # (runs other tests in this process read)
    monkeypatch.setattr(folds, "_run_bytes", None)
    monkeypatch.setattr(folds, "_total_bytes", None)
    key = str(recorded / "projects/p/runs/big")
    assert client.get("/api/v1/runs/p/big/tables/shared").status_code == 200  # the latest: no view made
    run = folds._runs[key]
    index = run.memo["index"][1]
    folded = sum(entry.state.bytes for entry in run.entries.values())
    copies = sum(sys.getsizeof(keys) for keys in index._keys)
    assert len(index._keys) == PARTS + 1 and index.bytes >= copies > 0
    assert run.kept == folded + index.bytes == folds.kept_bytes()
    before = run.kept

    # every writer logs "shared": a lookup by step makes its step view, charged as it is made
    monkeypatch.setattr(folds, "_run_bytes", before)  # room for the folds and key maps, no more
    monkeypatch.setattr(routes_tables, "_VIEW_AFTER", 0)  # (the view made at the first lookup)
    response = client.get("/api/v1/runs/p/big/tables/shared", params={"step": 1})
    assert response.status_code == 200 and response.json()["rows"] == _expected(_local(recorded), "shared", step=1)
    assert "shared" in index._steps and index.bytes >= copies + index._steps["shared"].bytes
    assert run.kept == folded + index.bytes > before
    assert key not in folds._runs and folds.kept_bytes() == 0  # past the bound: dropped

    # within the bound, kept with what it holds; and answers stay right when read again
    monkeypatch.setattr(folds, "_run_bytes", None)
    _answers(client, _local(recorded))
    assert folds.kept_bytes() == folds._runs[key].kept >= folded + copies
