"""``log_fold.run_keys`` (the names a shared run's keys have, its every writer's) on a request that
finds the run unchanged: kept with one signature of every writer's fold (``RunFold.generation``),
so it asks no writer for its keys (before: each writer's key count, every request: O(parts)),
and stays right when a part grows with a new key or a new part appears between others."""

from __future__ import annotations

from pathlib import Path

import tracklet
from conftest import QUIET
from tracklet.core.layout import RunPaths
from tracklet.server.log_fold import run_keys
from tracklet.store.logsource import LocalLogs


def _write(root: Path, label: str, row: dict) -> None:
    run = tracklet.init(project="proj", id="shared", reinit="create_new",
                        settings={**QUIET, "dir": str(root), "primary": False, "label": label})
    run.log(row, step=9)
    run.finish()


def test_run_keys_of_an_unchanged_run_ask_no_writer_and_follow_a_part_that_grows_or_appears(tmp_path):
    import sharedvalues

    from tracklet.server import routes_histograms, routes_values

    sharedvalues.record(tmp_path, "proj", "shared")
    source = LocalLogs(tmp_path)
    paths = RunPaths(tmp_path, "proj", "shared")
    folds = routes_values.LogFolds(routes_values._Texts, routes_values._Texts.apply, shared=routes_values._budgets)
    asked: list[object] = []

    def names(texts):
        asked.append(texts)
        return texts.defined

    def keys(run):
        return set(run_keys(run, names))

    first = folds.get_run(source, paths, keys)
    assert set(sharedvalues.KEYS) <= first and asked
    for _ in range(3):  # nothing logged since: kept, and no writer asked
        asked.clear()
        assert folds.get_run(source, paths, keys) == first and asked == []

    _write(tmp_path, "rank_2", {"late": "x", "shared": "again"})  # a part grows, with a key of its own
    grown = folds.get_run(source, paths, keys)
    assert grown == first | {"late"}
    _write(tmp_path, "rank_1b", {"text": "b", "solo": "y"})  # a part between two others, by label
    appeared = folds.get_run(source, paths, keys)
    assert appeared == grown | {"text/l:rank_1b", "solo"}
    asked.clear()
    assert folds.get_run(source, paths, keys) == appeared and asked == []

    # what the routes answer is the local reader's, after both
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    app = create_app(tmp_path, auth=False, store_url=f"sqlite:///{tmp_path / 'server.sqlite'}")
    with TestClient(app) as http:
        for _ in range(2):
            served = http.get("/api/v1/runs/proj/shared/values", params={"keys": "late,solo,text/l:rank_1b"})
            assert served.status_code == 200, served.text
            body = served.json()["keys"]
            assert body["late"]["values"] == ["x"] and body["solo"]["values"] == ["y"]
            assert body["text/l:rank_1b"]["values"] == ["b"]
        hist = http.get("/api/v1/runs/proj/shared/histograms").json()["keys"]
        assert set(hist) == {"h", "h/l:rank_1", "h2"}
    assert routes_histograms.run_keys is run_keys
