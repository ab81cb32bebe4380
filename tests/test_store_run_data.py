"""Console output, system metrics and run metadata in the store (SQLite and a real PostgreSQL),
and their read API on a real server process: exact round trips against the record log, paging a
live run's new lines only, search, spikes visible at coarse buckets, and the migration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
import serverproc
from conftest import QUIET, REPO, read, run_script, store_at_revision, wait_for_system_sample

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import RecordLogWriter
from tracklet.proto import records_pb2 as pb
from tracklet.store import Store
from tracklet.store.query import RunNotIndexed
from tracklet.store.run_data import MAX_LINE_CHARS
from tracklet.store.schema import metadata

LOUD = {**QUIET, "console": "wrap"}
# capture_wait: these runs are short, and their tests read the monitor's records: finish() waits for it to start.
MONITORED = {**QUIET, "system_metrics": True, "system_interval": 0.02, "system_window": 0.05, "capture_wait": 60}
GiB = 2**30

CONSOLE_LINES = [
    ("stdout", "epoch 1: loss=0.5"),
    ("stderr", "WARNING: learning rate is high"),
    ("stdout", "naïve ✓ unicode 日本"),
    ("stdout", "progress 100%_done"),
    ("stdout", "progress 100 x_done"),
    ("stderr", "Error: something failed"),
    ("stdout", "  indented\ttabbed  "),
    ("stdout", ""),
    ("stdout", "a/slash/path and a \\ backslash"),
]


def _print(lines) -> None:
    for stream, text in lines:
        print(text, file=sys.stderr if stream == "stderr" else sys.stdout)


def _console_run(root: Path, lines=CONSOLE_LINES, **init) -> tracklet.Run:
    run = tracklet.init(project="p", dir=str(root), settings=LOUD, **init)
    _print(lines)
    run.log({"loss": 0.5})
    run.finish()
    return run


def _all_lines(store: Store, run: str, **kwargs):
    after, found = 0, []
    while True:
        page = store.console(run, after=after, limit=3, **kwargs)
        found.extend(page.lines)
        if page.next_after == after:
            return found
        after = page.next_after


# ---------------------------------------------------------------------------------------- schema


def test_the_migrated_schema_equals_the_tables_in_schema_py(store_url, tmp_path):
    store = Store(store_url, root=tmp_path)
    with store.engine.connect() as connection:
        def on_this_dialect(item, name, type_, reflected, compare_to) -> bool:  # ddl_if(dialect=...)'s
            only = getattr(getattr(item, "_ddl_if", None), "dialect", None)
            return only is None or only == connection.dialect.name

        context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                               "include_object": on_this_dialect})
        assert compare_metadata(context, metadata) == []
    store.close()


def test_a_store_migrated_from_0002_reindexes_its_runs_and_equals_a_fresh_one(root, store_url, tmp_path):
    run = _console_run(root)
    engine = store_at_revision(store_url, "0002")
    with engine.begin() as connection:
        # What a 0002 indexer left: the run ingested to the end of its log, its series filled.
        size = RunPaths(root, "p", run.id).log_file.stat().st_size
        project = connection.execute(sa.text("INSERT INTO projects (name) VALUES ('p') RETURNING id")).scalar()
        run_pk = connection.execute(sa.text(
            "INSERT INTO runs (project_id, run_id, name, state, tags, group_name, job_type, notes, host, config, "
            "summary, keys, log_path, log_offset, deleted) VALUES (:p, :r, 'x', 'finished', '[]', '', '', '', '', "
            "'{}', '{}', '[\"loss\"]', :path, :size, false) RETURNING id"
        ), {"p": project, "r": run.id, "path": str(RunPaths(root, "p", run.id).log_file), "size": size}).scalar()
        series_id = connection.execute(sa.text(
            "INSERT INTO series (run_pk, key, kind, count, first_step, last_step) "
            "VALUES (:r, 'loss', 'number', 1, 0, 0) RETURNING id"), {"r": run_pk}).scalar()
        connection.execute(sa.text(
            "INSERT INTO blocks (series_id, level, seq, first_step, last_step, count, data) "
            "VALUES (:s, 0, 0, 0, 0, 1, :d)"), {"s": series_id, "d": b"old"})
    engine.dispose()

    migrated = Store(store_url, root=root)  # migrates to head
    migrated.index()
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.sqlite'}", root=root)
    fresh.index()
    assert migrated.console(run.path).lines == fresh.console(run.path).lines != []
    fields = ("metadata", "keys", "state")
    assert migrated.runs("p", fields=fields) == fresh.runs("p", fields=fields)
    (old,), (new,) = migrated.history(run.path, "loss"), fresh.history(run.path, "loss")
    assert old.steps.tolist() == new.steps.tolist() == [0] and old.values.tolist() == [0.5]


# --------------------------------------------------------------------------------------- console


def test_console_lines_round_trip_exactly_and_page_by_number(root, store_url):
    long_line = "x" * (MAX_LINE_CHARS + 5000)
    run = _console_run(root, [*CONSOLE_LINES, ("stdout", long_line), ("stdout", "after the long one")])
    store = Store(store_url, root=root)
    store.index()
    logged = read(run).console  # the record log: the source of truth
    assert [(line.stream, line.text) for line in logged][: len(CONSOLE_LINES)] == CONSOLE_LINES

    lines = _all_lines(store, run.path)
    assert [line.seq for line in lines] == list(range(1, len(logged) + 1))
    for stored, original in zip(lines, logged):
        assert (stored.time, stored.stream) == (original.time, original.stream)
        if original.text != long_line:
            assert stored.text == original.text
    cut = lines[len(CONSOLE_LINES)].text
    assert cut.startswith("x" * MAX_LINE_CHARS) and cut.endswith("[… 5000 more characters in the record log]")

    first = store.console(run.path, limit=4)
    assert [line.seq for line in first.lines] == [1, 2, 3, 4] and first.next_after == 4
    assert first.last_seq == len(logged)
    rest = store.console(run.path, after=first.next_after)
    assert rest.lines[0].seq == 5 and rest.next_after == len(logged)
    assert store.console(run.path, after=rest.next_after).lines == []
    tail = store.console(run.path, limit=2, tail=True)
    assert [line.text for line in tail.lines] == [cut, "after the long one"] and tail.next_after == len(logged)
    before = store.console(run.path, before=4, limit=2, tail=True)
    assert [line.seq for line in before.lines] == [2, 3]


def test_console_search_ignores_case_and_treats_wildcards_as_text(root, store_url):
    run = _console_run(root)
    store = Store(store_url, root=root)
    store.index()

    def texts(**kwargs):
        return [line.text for line in _all_lines(store, run.path, **kwargs)]

    assert texts(search="error") == ["Error: something failed"]
    assert texts(search="WARNING: LEARNING") == ["WARNING: learning rate is high"]
    assert texts(search="100%_") == ["progress 100%_done"]  # not "100 x_done": % and _ are literal
    assert texts(search="%") == ["progress 100%_done"]
    assert texts(search="_") == ["progress 100%_done", "progress 100 x_done"]
    assert texts(search="/slash/") == ["a/slash/path and a \\ backslash"]
    assert texts(search="\\") == ["a/slash/path and a \\ backslash"]
    assert texts(search="日本") == ["naïve ✓ unicode 日本"]
    assert texts(stream="stderr") == ["WARNING: learning rate is high", "Error: something failed"]
    assert texts(stream="stderr", search="fail") == ["Error: something failed"]
    assert texts(search="no such text") == []
    # A search page that found nothing still moves next_after past what it looked at.
    page = store.console(run.path, search="no such text")
    assert page.lines == [] and page.next_after == page.last_seq == len(read(run).console)


def test_a_live_runs_new_lines_are_fetched_after_the_last_seen(root, store_url):
    run = tracklet.init(project="p", dir=str(root), settings=LOUD)
    store = Store(store_url, root=root)
    seen, after = [], 0
    for batch in range(4):
        _print([("stdout", f"batch {batch} line {i}") for i in range(5)])
        run.log({"loss": float(batch)})
        run.flush()
        store.index()
        page = store.console(run.path, after=after)
        assert [line.text for line in page.lines] == [f"batch {batch} line {i}" for i in range(5)]
        assert [line.seq for line in page.lines] == list(range(after + 1, after + 6))
        seen.extend(page.lines)
        after = page.next_after
        # searching from the same place finds only the new lines too
        (hit,) = store.console(run.path, after=after - 5, search=f"BATCH {batch} LINE 3").lines
        assert hit.seq == after - 1
    run.finish()
    store.index()
    assert [line.text for line in store.console(run.path, limit=10_000).lines] == [line.text for line in seen]
    assert store.console(run.path, after=after).lines == []


def test_console_errors_are_clear(root, store_url):
    run = _console_run(root)
    store = Store(store_url, root=root)
    store.index()
    with pytest.raises(ValueError, match="stream must be stdout or stderr"):
        store.console(run.path, stream="stdin")
    with pytest.raises(ValueError, match="limit must be between 1 and"):
        store.console(run.path, limit=0)
    with pytest.raises(RunNotIndexed, match="p/nope is not in the store"):
        store.console("p/nope")


# -------------------------------------------------------------------------------- system metrics


def _write_stats_log(root: Path, run_id: str, windows: list[tuple[float, dict[str, tuple[float, float]]]],
                     start: float = 1.8e9) -> RunPaths:
    """A finished run's record log written with the real writer: one SystemStats per window."""
    paths = RunPaths(root, "p", run_id)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    writer = RecordLogWriter(paths.log_file)
    record = pb.Record()
    record.run_start.run_id, record.run_start.project, record.run_start.start_time = run_id, "p", start
    writer.write(record.SerializeToString())
    for end, values in windows:
        record = pb.Record()
        record.stats.time, record.stats.window_start = end, end - 10
        for name, (mean, peak) in values.items():
            entry = record.stats.values.add()
            entry.name, entry.value, entry.max, entry.samples = name, mean, peak, 5
        writer.write(record.SerializeToString())
    record = pb.Record()
    record.exit.exit_code, record.exit.end_time = 0, windows[-1][0] + 1
    writer.write(record.SerializeToString())
    writer.close()
    return paths


def test_a_one_sample_gpu_memory_spike_is_visible_at_every_zoom(root, store_url):
    start, count, spike = 1.8e9, 20_000, 13_337
    rng = np.random.default_rng(0)
    base = (GiB * (10 + rng.random(count))).round()
    windows = []
    for i in range(count):
        peak = 79.5 * GiB if i == spike else base[i] + GiB
        windows.append((start + 10.0 * (i + 1), {
            "gpu.0.memory_used_bytes": (base[i] + (69 * GiB / 5 if i == spike else 0), peak),
            "cpu.percent": (50.0, 100.0),
        }))
    _write_stats_log(root, "spiky", windows, start=start)
    store = Store(store_url, root=root)
    store.index()
    name = "gpu.0.memory_used_bytes"
    assert store.system_names("p/spiky") == ["cpu.percent", name]

    mean, peak = store.system_history("p/spiky", name, buckets=None)
    assert (mean.stat, peak.stat) == ("mean", "max") and mean.exact and len(mean) == count
    times = np.array([end for end, _ in windows])
    assert mean.x.tolist() == (np.round(times * 1000) / 1000).tolist()
    assert mean.values.tolist() == [values[name][0] for _, values in windows]
    assert peak.values.tolist() == [values[name][1] for _, values in windows]

    for buckets in (1, 10, 100, 1000):
        mean, peak = store.system_history("p/spiky", [name], buckets=buckets)
        assert not peak.exact and len(peak) <= buckets and peak.count.sum() == count
        (holder,) = np.flatnonzero(peak.max == 79.5 * GiB)
        assert peak.first_steps[holder] <= round(times[spike] * 1000) <= peak.steps[holder]
        assert mean.max.max() < 30 * GiB  # the window's mean alone would have hidden it
        assert peak.x.tolist() == (peak.steps / 1000).tolist()

    # time windows, absolute and relative to the run's start, at coarse buckets
    around = times[spike]
    (zoom,) = store.system_history("p/spiky", name, start=around - 5000, end=around + 5000, buckets=10, stats=["max"])
    assert zoom.max.max() == 79.5 * GiB and zoom.count.sum() == 1001  # both ends included
    (away,) = store.system_history("p/spiky", name, start=around + 100, buckets=10, stats=["max"])
    assert away.max.max() < 12 * GiB
    (relative,) = store.system_history("p/spiky", name, x="relative_time", start=10.0 * (spike + 1),
                                       end=10.0 * (spike + 1), stats=["max"])
    assert relative.exact and relative.values.tolist() == [79.5 * GiB] and relative.x.tolist() == [10.0 * (spike + 1)]


def test_system_windows_keep_their_order_when_the_clock_steps_back(root, store_url):
    times = [100.0, 110.0, 105.0, 105.0, 120.0]  # NTP stepped the clock back, twice
    windows = [(t, {"cpu.percent": (float(i), float(i))}) for i, t in enumerate(times)]
    _write_stats_log(root, "clock", windows, start=90.0)
    store = Store(store_url, root=root)
    store.index()
    (mean,) = store.system_history("p/clock", "cpu.percent", stats=["mean"])
    assert mean.values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # every window kept, in log order
    assert mean.steps.tolist() == [100_000, 110_000, 110_001, 110_002, 120_000]


def test_a_real_runs_system_metrics_match_its_record_log(root, store_url):
    run = tracklet.init(project="p", dir=str(root), settings=MONITORED)
    store = Store(store_url, root=root)
    for step in range(40):
        run.log({"loss": 1.0 / (step + 1)})
        if step % 10 == 9:
            run.flush()
            store.index()  # a live run, ingested several times
        time.sleep(0.01)  # let the monitor close a few windows while the run is live
    wait_for_system_sample(run)
    run.finish()
    store.index()
    recorded = read(run)
    means, peaks = recorded.system_metrics(), recorded.system_metrics(stat="max")
    names = sorted(set(means) - {"_timestamp", "_runtime"})
    assert names and "cpu.percent" in names and "process.rss_bytes" in names
    assert store.system_names(run.path) == names
    (row,) = store.runs("p", fields=("keys",))
    assert row["keys"] == ["loss"]  # system metrics are not the run's metric keys
    for history in store.system_history(run.path, buckets=None):
        column = (means if history.stat == "mean" else peaks)[history.key]
        present = [i for i, value in enumerate(column) if value is not None]
        assert history.values.tolist() == [column[i] for i in present]
        # Window ends in milliseconds; finish()'s partial window can end within a millisecond of the
        # one before it, and is then moved one millisecond on so every window keeps its own step.
        ends = np.array([round(means["_timestamp"][i] * 1000) for i in present])
        assert np.all(np.diff(history.steps) > 0) and np.all((history.steps - ends >= 0) & (history.steps - ends <= 2))


def test_a_metric_named_like_a_system_metric_stays_apart(root, store_url):
    run = tracklet.init(project="p", dir=str(root), settings=MONITORED)
    for step in range(5):
        run.log({"cpu.percent": 1000.0 + step})
    wait_for_system_sample(run)
    run.finish()
    store = Store(store_url, root=root)
    store.index()
    (user,) = store.history(run.path, "cpu.percent")
    assert user.values.tolist() == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
    system = store.system_history(run.path, "cpu.percent", buckets=None)
    assert [h.stat for h in system] == ["mean", "max"] and all(np.all(h.values <= 100.0) for h in system)
    assert store.runs("p", fields=("keys",))[0]["keys"] == ["cpu.percent"]


def test_system_history_errors_are_clear(root, store_url):
    _write_stats_log(root, "r", [(100.0, {"cpu.percent": (1.0, 2.0)})])
    store = Store(store_url, root=root)
    store.index()
    with pytest.raises(ValueError, match="x must be time or relative_time"):
        store.system_history("p/r", "cpu.percent", x="step")
    with pytest.raises(ValueError, match="stats must be mean and/or max"):
        store.system_history("p/r", "cpu.percent", stats=["median"])
    with pytest.raises(ValueError, match="start must be a finite number"):
        store.system_history("p/r", "cpu.percent", start=float("nan"))
    assert store.system_history("p/r", "no.such.metric") == []


# -------------------------------------------------------------------------------------- metadata


def test_run_metadata_has_command_git_python_and_gpus(root, store_url, tmp_path):
    pytest.importorskip("pynvml")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "train.py").write_text("print('hi')\n")
    subprocess.run([*git, "add", "train.py"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], cwd=repo, check=True)
    (repo / "train.py").write_text("print('changed')\n")  # dirty
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    # The GPUs come from tests/fake_nvml.py, installed in the training process before init().
    result = run_script(f"""
        import os, sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        import pytest, tracklet
        from fake_nvml import fake_nvml, h100_sxm, rtx_4090
        fake_nvml(pytest.MonkeyPatch(), [h100_sxm(0), rtx_4090(1)])
        run = tracklet.init(project="p", id="meta", dir={str(root)!r},
                            settings={{"console": "off", "system_interval": 0.02, "system_window": 0.05,
                                       "capture_wait": 60}})
        run.log({{"loss": 1.0}})
        import time
        while not run._monitor.sampled:  # a run that ends before its first system sample records none
            time.sleep(0.005)
        run.finish()
        print(os.getpid())
    """, cwd=repo, check=True)
    pid = int(result.stdout.split()[-1])
    store = Store(store_url, root=root)
    store.index()
    (row,) = store.runs("p", fields=("metadata",))
    meta = row["metadata"]
    assert meta["command"] == [sys.executable, "-c"] and meta["cwd"] == str(repo) and meta["pid"] == pid
    assert meta["python"] == f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert meta["platform"] and meta["sessions"] == 1
    assert meta["git"]["commit"] == commit and meta["git"]["branch"] == "main" and meta["git"]["dirty"] is True
    assert meta["gpu"]["count"] == 2 and meta["gpu"]["driver_version"] == "550.54.15"
    assert meta["gpu"]["names"] == ["NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"]
    assert [d["index"] for d in meta["gpu"]["devices"]] == [0, 1]
    assert "gpu.0.utilization_percent" in store.system_names("p/meta")
    assert "metadata" not in store.runs("p")[0]  # listings leave it out


# ------------------------------------------------------------------------------------ the server


def _sync(url: str, root: Path) -> None:
    result = serverproc.cli("sync", "--all", "--url", url, "-q", env={"TRACKLET_DIR": str(root)})
    assert result.returncode == 0, result.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def server_store(request):
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_the_server_serves_console_system_metrics_and_metadata(root, servers, server_store):
    server = servers(store=server_store)
    run = tracklet.init(project="vision", id="live", dir=str(root), settings={**MONITORED, "console": "wrap"})
    _print(CONSOLE_LINES)
    run.log({"loss": 1.0})
    wait_for_system_sample(run)
    run.flush()
    _sync(server.url, root)
    with httpx.Client(base_url=server.url) as http:
        first = http.get("/api/v1/runs/vision/live/console", params={"limit": 4})
        assert first.status_code == 200, first.text
        page = first.json()
        assert [line["text"] for line in page["lines"]] == [text for _, text in CONSOLE_LINES[:4]]
        assert [line["seq"] for line in page["lines"]] == [1, 2, 3, 4] and page["next_after"] == 4
        rest = http.get("/api/v1/runs/vision/live/console", params={"after": page["next_after"]}).json()
        assert [(line["stream"], line["text"]) for line in rest["lines"]] == CONSOLE_LINES[4:]
        after = rest["next_after"]

        # the live run prints more; a sync later only the new lines come back
        _print([("stdout", "late line 1"), ("stderr", "late LINE 2")])
        run.finish()
        _sync(server.url, root)
        new = http.get("/api/v1/runs/vision/live/console", params={"after": after}).json()
        assert [line["text"] for line in new["lines"]] == ["late line 1", "late LINE 2"]
        assert [line["seq"] for line in new["lines"]] == [after + 1, after + 2]
        found = http.get("/api/v1/runs/vision/live/console", params={"q": "line 2", "stream": "stderr"}).json()
        assert [line["text"] for line in found["lines"]] == ["late LINE 2"]
        wild = http.get("/api/v1/runs/vision/live/console", params={"q": "100%_"}).json()
        assert [line["text"] for line in wild["lines"]] == ["progress 100%_done"]

        recorded = read(run)
        names = http.get("/api/v1/runs/vision/live/system/names").json()["names"]
        assert names == sorted(set(recorded.system_metrics()) - {"_timestamp", "_runtime"})
        system = http.get("/api/v1/runs/vision/live/system",
                          params={"names": "cpu.percent,process.rss_bytes", "buckets": 0}).json()
        assert system["names"] == names
        assert [(s["key"], s["stat"]) for s in system["series"]] == [
            ("cpu.percent", "mean"), ("cpu.percent", "max"),
            ("process.rss_bytes", "mean"), ("process.rss_bytes", "max"),
        ]
        rss = system["series"][3]
        column = recorded.system_metrics(stat="max")["process.rss_bytes"]
        assert rss["values"] == [value for value in column if value is not None]
        relative = http.get("/api/v1/runs/vision/live/system",
                            params={"names": "cpu.percent", "x": "relative_time", "buckets": 1, "stats": "max"}).json()
        (bucket,) = relative["series"]
        assert bucket["stat"] == "max" and 0 <= bucket["x"][0] < 60

        detail = http.get("/api/v1/runs/vision/live").json()["run"]
        assert detail["metadata"]["command"] and detail["metadata"]["pid"] == os.getpid()
        assert detail["keys"] == ["loss"]

        # errors: unknown run 404, unsafe names and bad parameters 400/422, never 5xx
        assert http.get("/api/v1/runs/vision/nope/console").status_code == 404
        assert http.get("/api/v1/runs/vision/nope/system").status_code == 404
        assert http.get("/api/v1/runs/vision/nope/system/names").status_code == 404
        assert http.get("/api/v1/runs/bad%20name/live/console").status_code == 400
        bad = http.get("/api/v1/runs/vision/live/system", params={"stats": "median"})
        assert bad.status_code == 400 and "stats must be mean and/or max" in bad.json()["detail"]
        assert http.get("/api/v1/runs/vision/live/system", params={"start": "nan"}).status_code == 400
        assert http.get("/api/v1/runs/vision/live/console", params={"stream": "stdin"}).status_code == 422


def test_lines_with_nul_characters_are_stored(root, store_url):
    run = _console_run(root, [("stdout", "before\x00after")])
    store = Store(store_url, root=root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.index()
    (line,) = store.console(run.path).lines
    assert line.text == "before\ufffdafter"


def test_a_keyed_server_guards_console_and_system_like_every_read(tmp_path, servers):
    server_root = tmp_path / "srv"
    run = tracklet.init(project="p", id="r", dir=str(server_root), settings={**MONITORED, "console": "wrap"})
    _print(CONSOLE_LINES[:2])
    wait_for_system_sample(run)
    run.finish()  # recorded straight into the server's root: indexed when it starts
    created = serverproc.cli("admin", "--dir", str(server_root), "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    server = servers(server_root, dev=False)
    admin = {"Authorization": f"Bearer {created.stdout.strip()}"}
    with httpx.Client(base_url=server.url) as http:
        for path in ("console", "system", "system/names"):
            assert http.get(f"/api/v1/runs/p/r/{path}").status_code == 401
            assert http.get(f"/api/v1/runs/p/r/{path}", headers=admin).status_code == 200
        lines = http.get("/api/v1/runs/p/r/console", headers=admin).json()["lines"]
        assert [line["text"] for line in lines] == [text for _, text in CONSOLE_LINES[:2]]
