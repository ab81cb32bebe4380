"""The store on SQLite and a real PostgreSQL: incremental ingest, spike-preserving buckets, exact
points for small windows, NaN/inf handling, rebuilds, deletion and concurrent reads."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest

import tracklet
from tracklet.store import Store
from tracklet.store import blocks as B
from tracklet.store.query import RunNotIndexed

from conftest import QUIET, REPO


def _record(root, project="p", steps=1000, spike_at=None, name=None, **extra):
    run = tracklet.init(project=project, dir=str(root), name=name, settings=QUIET, **extra)
    for step in range(steps):
        loss = 1.0 / (step + 1)
        if step == spike_at:
            loss = 1e6
        run.log({"loss": loss, "acc": step / steps})
    run.finish()
    return run


def test_ingest_is_incremental_and_matches_the_record_log(root, store_url):
    run = tracklet.init(project="p", dir=str(root), config={"lr": 0.1}, settings=QUIET)
    store = Store(store_url, root=root)
    for step in range(3000):
        run.log({"loss": float(step)})
        if step in (999, 2047, 2500):
            run.flush()
            store.index()
            (live,) = store.runs("p")
            assert live["state"] == "running" and live["last_step"] == step
    run.summary["best"] = 3
    run.finish()
    report = store.index()
    assert report.runs_updated == 1
    assert store.index().runs_updated == 0  # nothing new: nothing read
    (row,) = store.runs("p", fields=("state", "config", "summary", "keys"))
    assert row["state"] == "finished" and row["config"] == {"lr": 0.1} and row["summary"]["best"] == 3
    assert row["summary"]["loss"] == 2999.0 and row["keys"] == ["loss"]
    (history,) = store.history(run.path, "loss", buckets=None)
    assert history.exact
    assert history.steps.tolist() == list(range(3000)) and history.values.tolist() == [float(s) for s in range(3000)]


def test_a_single_spike_is_the_max_of_its_bucket_at_every_zoom(root, store_url):
    run = _record(root, steps=50_000, spike_at=31_337)
    store = Store(store_url, root=root)
    store.index()
    for buckets in (1, 7, 100, 1000, 3000):
        (history,) = store.history(run.path, "loss", buckets=buckets)
        assert not history.exact and len(history) <= buckets
        assert history.count.sum() == 50_000
        holder = np.flatnonzero(history.max == 1e6)
        assert len(holder) == 1
        assert history.first_steps[holder[0]] <= 31_337 <= history.steps[holder[0]]
    # zoomed windows around and away from the spike
    (zoom,) = store.history(run.path, "loss", start=30_000, end=33_000, buckets=50)
    assert zoom.max.max() == 1e6 and zoom.count.sum() == 3001
    (away,) = store.history(run.path, "loss", start=40_000, end=49_999, buckets=50)
    assert away.max.max() < 1


def test_small_windows_return_exact_points(root, store_url):
    run = _record(root, steps=20_000)
    store = Store(store_url, root=root)
    store.index()
    (window,) = store.history(run.path, "loss", start=12_345, end=12_844, buckets=1000)
    assert window.exact and window.steps.tolist() == list(range(12_345, 12_845))
    assert window.values.tolist() == [1.0 / (s + 1) for s in range(12_345, 12_845)]


def test_nan_and_inf_are_counted_not_poisoning_min_max(root, store_url):
    run = tracklet.init(project="p", dir=str(root), settings=QUIET)
    for step in range(4096):
        value = float(step)
        if step % 10 == 0:
            value = math.nan
        elif step % 10 == 1:
            value = math.inf if step % 20 == 1 else -math.inf
        run.log({"x": value})
    run.log({"x": math.nan}, step=5000)
    run.finish()
    store = Store(store_url, root=root)
    store.index()
    (history,) = store.history(run.path, "x", buckets=8)
    assert history.count.sum() == 4097
    assert history.nonfinite.sum() == 2 * 410 + 1
    assert np.all(np.isfinite(history.min[:-1])) and np.all(np.isfinite(history.max[:-1]))
    assert history.max[-2] == 4095.0
    assert math.isnan(history.min[-1]) and math.isnan(history.max[-1]) and math.isnan(history.last[-1])


def test_many_runs_and_time_axes(root, store_url):
    made = [_record(root, steps=2000, name=f"r{i}") for i in range(5)]
    store = Store(store_url, root=root)
    store.index()
    results = store.history([r.path for r in made], ["loss", "acc"], buckets=100)
    assert len(results) == 10 and {h.run for h in results} == {r.path for r in made}
    (relative,) = store.history(made[0].path, "acc", x="relative_time", buckets=None)
    assert np.all(np.diff(relative.x) >= 0) and 0 <= relative.x[0] < relative.x[-1] < 60
    (absolute,) = store.history(made[0].path, "acc", x="time", buckets=10)
    assert absolute.x[0] > 1.7e9
    with pytest.raises(ValueError, match="x must be step, time, relative_time or a metric"):
        store.history(made[0].path, "acc", x="")
    with pytest.raises(RunNotIndexed, match="tracklet index"):
        store.history("p/nope", "acc")


def test_a_store_rebuilt_from_the_logs_equals_the_incremental_one(root, tmp_path, store_url):
    run = tracklet.init(project="p", dir=str(root), settings=QUIET)
    incremental = Store(store_url, root=root)
    for step in range(5000):
        run.log({"loss": math.sin(step / 100)})
        if step % 777 == 0:
            run.flush()
            incremental.index()
    run.finish()
    incremental.index()
    rebuilt = Store(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}", root=root)
    rebuilt.index()
    for buckets in (None, 10, 300):
        (a,) = incremental.history(run.path, "loss", buckets=buckets)
        (b,) = rebuilt.history(run.path, "loss", buckets=buckets)
        assert a.exact == b.exact
        for field in ("steps", "values", "min", "max", "last", "count", "nonfinite"):
            left, right = getattr(a, field), getattr(b, field)
            assert (left is None and right is None) or np.array_equal(left, right, equal_nan=True), field


def test_a_deleted_run_disappears_and_a_replaced_log_is_reingested(root, store_url):
    first = _record(root, steps=300, name="keep")
    gone = _record(root, steps=300, name="gone")
    store = Store(store_url, root=root)
    store.index()
    assert {r["name"] for r in store.runs("p")} == {"keep", "gone"}
    shutil.rmtree(gone.dir)
    store.gc()
    assert [r["name"] for r in store.runs("p")] == ["keep"]
    # the same run id recorded again from scratch (a shorter log): re-ingested, not appended
    shutil.rmtree(first.dir)
    again = tracklet.init(project="p", dir=str(root), id=first.id, name="again", settings=QUIET)
    again.log({"loss": 42.0})
    again.finish()
    store.index()
    (row,) = store.runs("p")
    assert row["name"] == "again" and row["last_step"] == 0
    (history,) = store.history(again.path, "loss", buckets=None)
    assert history.values.tolist() == [42.0]


def test_queries_while_ingest_runs(root, store_url):
    run = _record(root, steps=20_000)
    store = Store(store_url, root=root)
    store.index()
    live = tracklet.init(project="p", dir=str(root), settings=QUIET)
    errors: list[BaseException] = []
    done = threading.Event()

    def read_forever():
        try:
            while not done.is_set():
                (h,) = store.history(run.path, "loss", buckets=100)
                assert h.count.sum() == 20_000
                rows = store.runs("p")
                assert all(r["state"] in ("running", "finished") for r in rows)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        for _ in range(5):
            for step in range(2000):
                live.log({"loss": float(step)})
            live.flush()
            store.index()
    finally:
        done.set()
        reader.join(30)
    live.finish()
    assert errors == []
    store.index()
    (history,) = store.history(live.path, "loss", buckets=None)
    assert len(history) == 10_000


def test_the_pyramid_levels_merge_correctly():
    steps = np.arange(10_000, dtype=np.int64)
    values = np.random.default_rng(1).standard_normal(10_000)
    entries = B.point_entries(steps, values)
    level = entries
    while len(level) > 1:
        level = B.summarize(level)
    (top,) = level
    assert top["count"] == 10_000 and top["min"] == values.min() and top["max"] == values.max()
    assert top["last"] == values[-1] and top["first_step"] == 0 and top["last_step"] == 9999
    decoded_steps, decoded_values = B.decode_points(B.encode_points(steps, values))
    assert np.array_equal(decoded_steps, steps) and np.array_equal(decoded_values, values)


def test_api_queries_go_through_the_store(root):
    made = []
    for index, lr in enumerate([1e-2, 1e-3, 1e-4]):
        run = tracklet.init(project="q", dir=str(root), name=f"lr{index}", config={"lr": lr}, settings=QUIET)
        for step in range(100):
            run.log({"val/loss": lr * 100 + 1.0 / (step + 1)})
        run.finish()
        made.append(run)
    api = tracklet.Api(root)
    best = api.runs("q", filter="config.lr < 5e-3", order_by="summary.val/loss")
    assert [r.name for r in best] == ["lr2", "lr1"]
    assert [r.name for r in api.runs("q", order_by="-config.lr", limit=2)] == ["lr0", "lr1"]
    curves = api.history(best, "val/loss", buckets=10)
    assert [c.run for c in curves] == [best[0].path, best[1].path] and all(c.count.sum() == 100 for c in curves)
    late = tracklet.init(project="q", dir=str(root), name="late", config={"lr": 1e-5}, settings=QUIET)
    late.finish()
    assert "late" not in [r.name for r in api.runs("q", filter="config.lr < 5e-3")]  # indexed once per Api...
    api.index()
    assert "late" in [r.name for r in api.runs("q", filter="config.lr < 5e-3")]  # ...until index()
    with pytest.raises(ValueError, match="column"):
        api.runs("q", filter="config.lr >> 1")


def test_cli_filter_sort_index_and_gc(root):
    from click.testing import CliRunner

    from tracklet.cli.main import main

    for index in range(3):
        run = tracklet.init(project="c", dir=str(root), name=f"run{index}", config={"depth": index}, settings=QUIET)
        run.log({"acc": index / 10})
        run.finish()
    runner = CliRunner()
    indexed = runner.invoke(main, ["--dir", str(root), "index"])
    assert indexed.exit_code == 0 and "Indexed 3 of 3 runs" in indexed.output
    listed = runner.invoke(main, ["--dir", str(root), "runs", "c", "--filter", "config.depth >= 1", "--sort",
                                  "-summary.acc", "--json"])
    assert listed.exit_code == 0, listed.output
    import json

    assert [r["name"] for r in json.loads(listed.output)] == ["run2", "run1"]
    bad = runner.invoke(main, ["--dir", str(root), "runs", "c", "--filter", "config.depth >> 1"])
    assert bad.exit_code == 2 and "column" in bad.output
    shutil.rmtree(run.dir)
    collected = runner.invoke(main, ["--dir", str(root), "gc"])
    assert collected.exit_code == 0 and "Removed 1" in collected.output


def test_another_metric_as_the_x_axis(root, store_url):
    run = tracklet.init(project="p", dir=str(root), settings=QUIET)
    for step in range(1000):
        row = {"loss": 1000.0 - step, "tokens": step * 512.0}
        if step % 100 == 99:
            row["epoch"] = (step + 1) // 100
        run.log(row)
    run.finish()
    store = Store(store_url, root=root)
    store.index()
    (by_tokens,) = store.history(run.path, "loss", x="tokens", buckets=None)
    assert np.array_equal(by_tokens.x, by_tokens.steps * 512.0)
    (window,) = store.history(run.path, "loss", x="tokens", start=512 * 100, end=512 * 199, buckets=None)
    assert window.steps[0] == 100 and window.steps[-1] == 199
    (by_epoch,) = store.history(run.path, "loss", x="epoch", start=2, end=3, buckets=None)
    assert by_epoch.steps[0] == 199 and by_epoch.steps[-1] == 299  # epochs 2..3 were logged at steps 199..299
    assert by_epoch.x[0] == 2.0 and by_epoch.x[-1] == 3.0
    (missing,) = store.history(run.path, "loss", x="no_such_metric", buckets=10)
    assert np.all(np.isnan(missing.x))


def test_points_logged_with_changing_key_sets_stay_in_row_order(root, store_url):
    run = tracklet.init(project="p", dir=str(root), settings=QUIET)
    for step in range(300):
        if step % 10 == 9:
            run.log({"loss": float(step), "eval/acc": step / 300})
        else:
            run.log({"loss": float(step)})
    run.log({"loss": -1.0}, step=300)
    run.log({"loss": -2.0, "extra": 1}, step=300)  # the same key twice at one step: the later value wins
    run.finish()
    store = Store(store_url, root=root)
    store.index()
    (loss,) = store.history(run.path, "loss", buckets=None)
    assert loss.steps.tolist() == list(range(301)) and loss.values[:300].tolist() == [float(s) for s in range(300)]
    assert loss.values[-1] == -2.0


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_processes_starting_at_once_migrate_an_empty_store_once(request, database, tmp_path):
    """Several processes opening one empty store at the same moment (servers of a deployment, a
    server and `tracklet ui` on a new data root, distributed ranks): one migrates, the rest wait for
    it; none fails on a table another is creating (SQLite: "table projects already exists")."""
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{tmp_path / 'store.sqlite'}"
    code = ("import sys; from tracklet.store import Store; from tracklet.server.schema import migrate; "
            "store = Store(sys.argv[1], root=sys.argv[2]); migrate(store.engine); store.close()")  # a server's too
    with tempfile.TemporaryDirectory() as scratch:
        procs = [subprocess.Popen([sys.executable, "-c", code, url, scratch], stderr=subprocess.PIPE,
                                  env={**os.environ, "PYTHONPATH": str(REPO)}) for _ in range(4)]
        errors = [proc.communicate(timeout=120)[1].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], errors
