"""Alerts (`run.alert`) in the store and the read API (issue #13): indexed in log order with their
level, title and text, served by `tracklet server` and `tracklet ui` at
`GET /api/v1/runs/{project}/{run_id}/alerts`, read back by `tracklet.Api(base_url=...)` as the local
Api reads them, and a store migrated from before alerts reindexes its runs to get them."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
import serverproc
import sqlalchemy as sa
from conftest import QUIET, read, store_at_revision

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.store import Store
from tracklet.store import ingest
from tracklet.store.ingest import Indexer
from tracklet.store.query import RunNotIndexed
from tracklet.store.run_data import MAX_ALERT_TEXT, MAX_ALERT_TITLE

ALERTS = [
    ("loss is NaN", "at step 3: check the learning rate", "ERROR"),
    ("slow epoch", "", "WARN"),
    ("naïve ✓ 日本", "multi\nline\ttext", "INFO"),
]


def _alerting_run(root: Path, project: str = "p", run_id: str = "alerting") -> tracklet.Run:
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=QUIET)
    for step, (title, text, level) in enumerate(ALERTS):
        run.log({"loss": float(step)})
        run.alert(title, text, level)
    run.finish()
    return run


def _as_tuples(alerts) -> list[tuple]:
    return [(a.time, a.level, a.title, a.text) for a in alerts]


def test_alerts_are_indexed_in_log_order_and_paged(root, tmp_path):
    run = _alerting_run(root)
    local = read(run).alerts  # the record log, as `tracklet show` reads it
    assert [(a.title, a.text, a.level) for a in local] == ALERTS
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=root)
    store.index()
    stored = store.alerts(run.path)
    assert [a.seq for a in stored] == [1, 2, 3]
    assert _as_tuples(stored) == _as_tuples(local)
    assert [a.seq for a in store.alerts(run.path, after=1, limit=1)] == [2]
    assert store.alerts(run.path, after=3) == []
    with pytest.raises(ValueError, match="limit"):
        store.alerts(run.path, limit=0)
    with pytest.raises(RunNotIndexed):
        store.alerts("p/nope")
    store.close()


def test_a_live_runs_new_alerts_are_numbered_on(root, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=root)
    run = tracklet.init(project="p", id="live", dir=str(root), settings={**QUIET, "flush_interval": 0.05})
    run.alert("first")
    deadline = time.monotonic() + 30
    while True:  # the store sees the first alert while the run is live
        store.index()
        try:
            if store.alerts(run.path):
                break
        except RunNotIndexed:
            pass
        assert time.monotonic() < deadline, "the first alert was never indexed"
        time.sleep(0.05)
    run.alert("second", "more", "WARN")
    run.finish()
    store.index()
    assert [(a.seq, a.title, a.level) for a in store.alerts(run.path)] == [(1, "first", "INFO"), (2, "second", "WARN")]
    store.close()


def test_long_alert_text_is_cut_with_a_note_and_nul_is_replaced(root, tmp_path):
    run = tracklet.init(project="p", id="long", dir=str(root), settings=QUIET)
    run.alert("t" * (MAX_ALERT_TITLE + 10), "x" * (MAX_ALERT_TEXT + 5) + "\x00")
    run.alert("nul\x00title", "ok", "INFO")
    run.finish()
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=root)
    store.index()
    long, nul = store.alerts(run.path)
    assert long.title == "t" * MAX_ALERT_TITLE + " [… 10 more characters in the record log]"
    assert long.text.startswith("x" * MAX_ALERT_TEXT) and long.text.endswith("[… 6 more characters in the record log]")
    assert nul.title == "nul\ufffdtitle"
    assert read(run).alerts[0].title == "t" * (MAX_ALERT_TITLE + 10)  # the log keeps it whole
    store.close()


def test_tracklet_server_serves_alerts_and_the_remote_api_reads_them(servers, tmp_path):
    root = tmp_path / "srv"
    run = _alerting_run(root)
    server = servers(root, dev=True)
    answer = httpx.get(f"{server.url}/api/v1/runs/p/alerting/alerts", timeout=10)
    assert answer.status_code == 200
    alerts = answer.json()["alerts"]
    assert [(a["seq"], a["title"], a["text"], a["level"]) for a in alerts] == [
        (index, title, text, level) for index, (title, text, level) in enumerate(ALERTS, start=1)]
    assert [a["seq"] for a in httpx.get(f"{server.url}/api/v1/runs/p/alerting/alerts?after=2").json()["alerts"]] == [3]
    assert httpx.get(f"{server.url}/api/v1/runs/p/nope/alerts").status_code == 404
    assert httpx.get(f"{server.url}/api/v1/runs/p/alerting/alerts?limit=0").status_code == 422
    assert httpx.get(f"{server.url}/api/v1/runs/p/..%2Fx/alerts").status_code in (400, 404)

    remote = tracklet.Api(base_url=server.url).run("p/alerting")
    assert _as_tuples(remote.alerts) == _as_tuples(read(run).alerts)  # as the local Api reads the log


def test_tracklet_ui_serves_alerts(root):
    _alerting_run(root, project="ui", run_id="withalerts")
    ui = serverproc.cli_process("--dir", str(root), "ui", "--no-open", "--port", "0")  # forked, not a cold start
    try:
        found = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=([\w-]+)", ui.first_line())
        url, auth = found.group(1), {"Authorization": f"Bearer {found.group(2)}"}
        deadline = time.monotonic() + 30
        while (answer := httpx.get(url + "api/v1/runs/ui/withalerts/alerts", headers=auth,
                                   timeout=10)).status_code == 404:
            assert time.monotonic() < deadline, "tracklet ui never indexed the run"
            time.sleep(0.1)
        assert answer.status_code == 200
        assert [(a["title"], a["text"], a["level"]) for a in answer.json()["alerts"]] == ALERTS
    finally:
        ui.terminate()
        ui.wait(timeout=10)
        ui.close()


def test_a_store_migrated_from_0004_reindexes_its_runs_for_alerts(root, tmp_path, monkeypatch):
    run = _alerting_run(root)
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = store_at_revision(url, "0004")
    # What a 0004 indexer left: every run ingested to the end of its log, and no alerts anywhere.
    monkeypatch.setattr(ingest, "RUN_DATA_KINDS", ingest.RUN_DATA_KINDS - {"alert"})
    Indexer(engine, root).index()
    monkeypatch.undo()
    with engine.connect() as connection:
        size = RunPaths(root, "p", run.id).log_file.stat().st_size
        assert connection.execute(sa.text("SELECT log_offset FROM runs")).scalar() == size
    engine.dispose()

    migrated = Store(url, root=root)  # migrates to head
    migrated.index()
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.sqlite'}", root=root)
    fresh.index()
    assert _as_tuples(migrated.alerts(run.path)) == _as_tuples(fresh.alerts(run.path)) == _as_tuples(read(run).alerts)
    (was,), (new,) = migrated.history(run.path, "loss"), fresh.history(run.path, "loss")
    assert was.steps.tolist() == new.steps.tolist() == [0, 1, 2]  # no point ingested twice
    fields = ("metadata", "keys", "state", "summary", "config")
    assert migrated.runs("p", fields=fields) == fresh.runs("p", fields=fields)
    migrated.close()
    fresh.close()
