"""The table panel's and histogram panel's read routes (routes_table_views.py, routes_histograms.py)
over runs logged by tracklet: versions, group-by, join of two runs' tables, media-cell blobs and
histograms over steps, checked against what was logged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.store.logsource import LocalLogs

pytest.importorskip("duckdb")


@pytest.fixture
def client(root):
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    def _client():
        return TestClient(create_app(root, auth=False))

    return _client


def _preds(start, run_id: str, shift: int) -> tracklet.Run:
    run = start(project="proj", id=run_id)
    table = tracklet.Table(columns=["id", "label", "score"], log_mode="INCREMENTAL")
    for i in range(30):
        table.add_data(i + shift, "cat" if i % 3 else "dog", (i + shift) / 100)
        if i % 10 == 9:
            run.log({"preds": table})
    return run


def test_versions_list_each_log_with_the_rows_it_reads(start, client):
    run = _preds(start, "a", 0)
    mutable = tracklet.Table(columns=["x"], log_mode="MUTABLE")
    for n in range(3):
        mutable.add_data(n)
        run.log({"m": mutable})
    run.finish()
    with client() as http:
        versions = http.get("/api/v1/runs/proj/a/table-versions/preds").json()
        assert [(v["step"], v["log_mode"], v["rows"]) for v in versions["versions"]] == [
            (0, "INCREMENTAL", 10), (1, "INCREMENTAL", 20), (2, "INCREMENTAL", 30)]
        assert [v["rows"] for v in http.get("/api/v1/runs/proj/a/table-versions/m").json()["versions"]] == [1, 2, 3]
        # each listed step reads the version of that many rows
        for version in versions["versions"]:
            page = http.get("/api/v1/runs/proj/a/tables/preds", params={"step": version["step"]}).json()
            assert page["total"] == version["rows"]
        assert http.get("/api/v1/runs/proj/a/table-versions/nope").status_code == 404


def test_group_by_counts_and_means_match_pandas(start, client):
    run = _preds(start, "a", 0)
    run.finish()
    frame = tracklet.Api().run(run.path).table("preds").to_pandas()
    with client() as http:
        body = http.get("/api/v1/runs/proj/a/table-groups/preds", params={"by": "label"}).json()
        assert body["means_of"] == ["id", "score"] and body["total_groups"] == 2 and body["rows"] == 30
        expected = frame.groupby("label").agg(n=("id", "size"), id=("id", "mean"), score=("score", "mean"))
        for group in body["groups"]:
            want = expected.loc[group["value"]]
            assert group["count"] == want["n"]
            assert group["means"]["id"] == pytest.approx(want["id"]) and group["means"]["score"] == pytest.approx(
                want["score"])
        assert [g["value"] for g in body["groups"]] == ["cat", "dog"]  # the largest group first
        filtered = http.get("/api/v1/runs/proj/a/table-groups/preds", params={"by": "label", "filter": "id < 3"}).json()
        assert {g["value"]: g["count"] for g in filtered["groups"]} == {"dog": 1, "cat": 2}
        bad = http.get("/api/v1/runs/proj/a/table-groups/preds", params={"by": "nope"})
        assert bad.status_code == 400 and "unknown column 'nope'" in bad.json()["detail"]
        bad = http.get("/api/v1/runs/proj/a/table-groups/preds", params={"by": "label", "filter": "score >"})
        assert bad.status_code == 400
        assert http.get("/api/v1/runs/proj/a/table-groups/preds", params={"by": "label", "limit": 5000}).status_code == 422


def test_join_puts_two_runs_predictions_side_by_side(start, client):
    _preds(start, "a", 0).finish()
    _preds(start, "b", 20).finish()  # ids 20..49: 10 shared with run a (20..29)
    params = {"a_run": "a", "a_key": "preds", "b_run": "b", "b_key": "preds", "on": "id"}
    with client() as http:
        body = http.get("/api/v1/projects/proj/table-join", params={**params, "limit": 1000}).json()
        assert [c["name"] for c in body["columns"]] == ["id", "a.label", "a.score", "b.label", "b.score"]
        assert body["total"] == 50  # 0..49: a full outer join
        rows = {row[0]: row for row in body["rows"]}
        assert rows[5] == [5, "dog" if 5 % 3 == 0 else "cat", 0.05, None, None]
        assert rows[25][1:3] == ["cat", 0.25] and rows[25][3:] == ["dog" if (25 - 20) % 3 == 0 else "cat", 0.25]
        assert rows[45][1:3] == [None, None]
        assert [row[0] for row in body["rows"]][:30] == list(range(30))  # the left table's order first
        both = http.get("/api/v1/projects/proj/table-join",
                        params={**params, "filter": "a.score is not null and b.score is not null",
                                "sort": "id", "descending": True, "limit": 3}).json()
        assert both["total"] == 10 and [row[0] for row in both["rows"]] == [29, 28, 27]
        bad = http.get("/api/v1/projects/proj/table-join", params={**params, "on": "label"})
        assert bad.status_code == 400 and "repeats values in both tables" in bad.json()["detail"]
        bad = http.get("/api/v1/projects/proj/table-join", params={**params, "on": "nope"})
        assert bad.status_code == 400 and "no column 'nope'" in bad.json()["detail"]
        bad = http.get("/api/v1/projects/proj/table-join", params={**params, "filter": "c.score > 1"})
        assert bad.status_code == 400 and "unknown column" in bad.json()["detail"]
        assert http.get("/api/v1/projects/proj/table-join", params={**params, "b_run": "zz"}).status_code == 404


def test_media_cells_serve_only_blobs_the_table_names(start, client, root):
    run = start(project="proj", id="m")
    small = np.zeros((8, 8, 3), dtype=np.uint8)
    small[:, :, 1] = 200
    big = np.full((300, 300, 3), 90, dtype=np.uint8)
    run.log({"cells": tracklet.Table(columns=["img", "n"], data=[[tracklet.Image(small), 1], [tracklet.Image(big), 2]]),
             "alone": tracklet.Image(np.full((4, 4, 3), 7, dtype=np.uint8))})
    run.finish()
    rows = tracklet.Api().run(run.path).table("cells").to_arrow().to_pylist()
    small_cell, big_cell = rows[0]["img"], rows[1]["img"]
    assert big_cell["thumbnail"] and not small_cell["thumbnail"]
    other = tracklet.Api().run(run.path).images("alone")[0].digest
    with client() as http:
        for digest, mime in ((small_cell["digest"], "image/png"), (big_cell["thumbnail"], "image/png")):
            response = http.get(f"/api/v1/runs/proj/m/table-blobs/{digest}", params={"key": "cells"})
            assert response.status_code == 200 and response.headers["content-type"] == mime
            assert hashlib.sha256(response.content).hexdigest() == digest
            assert response.headers["content-security-policy"] == "sandbox"
        # a blob of the store that this table doesn't name is not served through it
        assert http.get(f"/api/v1/runs/proj/m/table-blobs/{other}", params={"key": "cells"}).status_code == 404
        assert http.get("/api/v1/runs/proj/m/table-blobs/xyz", params={"key": "cells"}).status_code == 400
        page = http.get("/api/v1/runs/proj/m/tables/cells").json()
        assert page["rows"][0][0]["digest"] == small_cell["digest"] and page["rows"][0][0]["kind"] == "image"


def test_a_large_cell_file_is_served_from_a_checked_file_not_from_memory(start, client, root, monkeypatch):
    """A table file may name any blob its project holds, a huge one too: past ``IN_MEMORY_BYTES``
    the file is checked on disk in pieces and streamed from it (a file response: it takes
    ranges), never read whole into memory; a damaged one is still refused, not served."""
    import os

    from tracklet.server import media_blobs

    run = start(project="proj", id="lg")
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)  # a PNG of ~12 kB
    run.log({"cells": tracklet.Table(columns=["img"], data=[[tracklet.Image(pixels)]])})
    run.finish()
    digest = tracklet.Api().run(run.path).table("cells").to_arrow().to_pylist()[0]["img"]["digest"]
    blob = root / "artifacts" / "blobs" / "sha256" / digest[:2] / digest
    monkeypatch.setattr(media_blobs, "IN_MEMORY_BYTES", blob.stat().st_size - 1)
    with client() as http:
        response = http.get(f"/api/v1/runs/proj/lg/table-blobs/{digest}", params={"key": "cells"})
        assert response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == digest
        assert response.headers["content-type"] == "image/png" and response.headers["accept-ranges"] == "bytes"
        assert response.headers["content-security-policy"] == "sandbox"
        ranged = http.get(f"/api/v1/runs/proj/lg/table-blobs/{digest}", params={"key": "cells"},
                          headers={"Range": "bytes=0-7"})
        assert ranged.status_code == 206 and ranged.content == blob.read_bytes()[:8]
        os.chmod(blob, 0o644)
        damaged = bytearray(blob.read_bytes())
        damaged[-1] ^= 1
        blob.write_bytes(bytes(damaged))
        refused = http.get(f"/api/v1/runs/proj/lg/table-blobs/{digest}", params={"key": "cells"})
        assert refused.status_code == 404 and "missing or damaged" in refused.json()["detail"]


def test_histograms_over_steps_come_back_as_logged(start, client):
    run = start(project="proj", id="h")
    edges = [float(e) for e in np.linspace(0, 1, 9)]
    logged = []
    for step in range(12):
        counts = [0] * 8
        counts[step % 8] = 10 + step
        counts[(step + 3) % 8] = 1
        logged.append(counts)
        run.log({"w": tracklet.Histogram(np_histogram=(counts, edges)), "loss": 1.0 / (step + 1)})
    run.log({"other": tracklet.Histogram([0.5, 2.5, float("nan")], bins=4)})
    run.finish()
    with client() as http:
        assert http.get("/api/v1/runs/proj/h/histograms").json()["keys"] == ["w", "other"]
        body = http.get("/api/v1/runs/proj/h/histograms/w", params={"bins": 8}).json()
        assert body["steps"] == list(range(12)) and body["total_steps"] == 12
        assert body["edges"] == pytest.approx(edges)
        assert body["counts"] == [pytest.approx([float(c) for c in row]) for row in logged]
        # fewer bins: counts add up per step, half-open spreading by overlap
        coarse = http.get("/api/v1/runs/proj/h/histograms/w", params={"bins": 4, "max_steps": 4}).json()
        assert coarse["steps"] == [0, 4, 7, 11] and coarse["total_steps"] == 12
        for step, row in zip(coarse["steps"], coarse["counts"]):
            assert row == pytest.approx([logged[step][2 * i] + logged[step][2 * i + 1] for i in range(4)])
        assert http.get("/api/v1/runs/proj/h/histograms/other").json()["nan"] == [1]
        assert http.get("/api/v1/runs/proj/h/histograms/loss").status_code == 404
        assert http.get("/api/v1/runs/proj/h/histograms/w", params={"bins": 100000}).status_code == 422


def test_histograms_of_a_growing_log_are_read_on_from_where_the_last_request_stopped(start, client, monkeypatch):
    from tracklet.server import log_fold, routes_histograms

    run = start(project="proj", id="live")
    edges = [0.0, 1.0, 2.0]
    for step in range(3):
        run.log({"w": tracklet.Histogram(np_histogram=([step, 1], edges))})
    run.flush()
    offsets: list[int] = []
    real = LocalLogs.read_from
    monkeypatch.setattr(log_fold, "WINDOW_BYTES", 7_654_321)  # told apart from the app's indexer's reads

    def read_from(self, paths, offset, limit=None):
        if limit == log_fold.WINDOW_BYTES:
            offsets.append(offset)
        return real(self, paths, offset, limit)

    monkeypatch.setattr(LocalLogs, "read_from", read_from)
    with client() as http:
        first = http.get("/api/v1/runs/proj/live/histograms/w", params={"bins": 2}).json()
        assert first["steps"] == [0, 1, 2] and first["counts"][2] == [2.0, 1.0]
        for step in range(3, 5):
            run.log({"w": tracklet.Histogram(np_histogram=([step, 1], edges))})
        run.flush()
        second = http.get("/api/v1/runs/proj/live/histograms/w", params={"bins": 2}).json()
        assert second["steps"] == [0, 1, 2, 3, 4] and second["counts"][4] == [4.0, 1.0]
        assert len(offsets) == 2 and offsets[0] == 0 and offsets[1] > 0  # the second read began where the first ended
    run.finish()
    assert routes_histograms.KEPT >= 200


def test_a_long_histogram_series_is_thinned_evenly_and_counted_whole():
    from tracklet.server.routes_histograms import KEPT, _Series

    series = _Series()
    for step in range(10 * KEPT + 3):
        series.add(step, (np.array([0.0, 1.0]), np.array([float(step)]), 0, 0))
    assert series.total == 10 * KEPT + 3 and len(series.steps) <= 2 * KEPT + 1
    assert series.steps[0] == 0 and series.steps[-1] == 10 * KEPT + 2
    gaps = np.diff(series.steps[:-1])
    assert gaps.max() <= 2 * gaps.min()  # spread over the run, not bunched at its start or end


def test_a_runs_histogram_series_share_one_budget_and_keep_their_first_and_newest():
    """Every writer's histogram series of a run count against one budget: past it a series thins
    as it is added to, so what is kept stays within the budget (plus a histogram per series)."""
    from tracklet.server.routes_histograms import _Budget, _Series, _size

    one = (np.zeros(65), np.zeros(64), 0, 0)
    budget = _Budget(limit=40 * _size(one))
    series = [_Series(budget) for _ in range(4)]  # four writers' keys of one run
    for step in range(500):
        for each in series:
            each.add(step, (np.zeros(65), np.full(64, float(step)), 0, 0))
        assert budget.used <= budget.limit + len(series) * _size(one)
    assert budget.used == sum(len(each._histograms) for each in series) * _size(one)
    for each in series:
        assert each.total == 500 and each.steps[0] == 0 and each.steps[-1] == 499
        assert each.histograms[-1][1][0] == 499.0


def test_a_log_fold_starts_again_when_the_log_shrinks_or_is_replaced(start, tmp_path):
    import shutil

    from tracklet.server.log_fold import LogFolds

    def run_with(run_id: str, keys: list[str]) -> Path:
        run = start(project="proj", id=run_id)
        for key in keys:
            run.log({key: tracklet.Table(columns=["x"], data=[[1]])})
        run.finish()
        return Path(run.dir) / "run.tlog"

    long_log, short_log = run_with("long", ["a", "b", "c"]), run_with("short", ["z"])
    folds = LogFolds(list, lambda state, record: state.append(record.table_logged.key)
                     if record.WhichOneof("kind") == "table_logged" else None)
    source = LocalLogs(tmp_path / "served-root")
    paths = RunPaths(tmp_path / "served-root", "proj", "served")
    paths.log_file.parent.mkdir(parents=True)
    served = paths.log_file
    shutil.copyfile(long_log, served)
    # (sorted: tables of different keys are stored by parallel workers, their records in any order)
    assert sorted(folds.get(source, paths, list)) == ["a", "b", "c"]
    assert sorted(folds.get(source, paths, list)) == ["a", "b", "c"]  # nothing new: nothing folded twice
    with open(served, "r+b") as file:  # cut in place (as resume cuts an unreadable tail): shorter, same file
        file.truncate(short_log.stat().st_size)
        file.seek(0)
        file.write(short_log.read_bytes())
    assert folds.get(source, paths, list) == ["z"]
    replaced = tmp_path / "new.tlog"
    shutil.copyfile(long_log, replaced)
    replaced.replace(served)  # another file under the name, longer than what was read
    assert sorted(folds.get(source, paths, list)) == ["a", "b", "c"]


def test_a_log_fold_reads_a_log_a_window_at_a_time_and_folds_every_record_once(start, root, monkeypatch):
    """A log many times the read window is folded window by window (a request never holds the
    whole log in memory): every record once, in order, also across a live log that grew."""
    import tracklet.server.log_fold as log_fold

    run = start(project="proj", id="windows")
    for step in range(300):
        run.log({"text": f"row {step} " + "x" * 200})
    run.flush()
    paths = RunPaths(root, "proj", "windows")
    reads: list[int] = []
    source = LocalLogs(paths.root)
    real_read = source.read_from

    def read_from(paths, offset, limit=None):
        reads.append(limit)
        return real_read(paths, offset, limit)

    source.read_from = read_from  # type: ignore[method-assign]
    monkeypatch.setattr(log_fold, "WINDOW_BYTES", 4096)
    folds = log_fold.LogFolds(list, lambda state, record: state.extend(record.history.steps)
                              if record.WhichOneof("kind") == "history" else None)
    first = folds.get(source, paths, list)
    for step in range(300, 320):
        run.log({"text": f"row {step}"})
    run.finish()
    steps = folds.get(source, paths, list)
    assert steps[:len(first)] == first and steps == list(range(320))
    assert len(reads) > 3 and set(reads) == {4096}


def test_a_shared_runs_fold_reads_each_writers_log_on_and_keeps_within_one_budget(tmp_path, monkeypatch):
    """A shared run's folds (``LogFolds.get_run``): each writer's log is read once, a request after
    a part grew reads only that part from where it stopped, and what the run keeps, every
    writer's together, stays within one budget (a run may have thousands of parts)."""
    import sharedvalues

    from tracklet.server import routes_values

    sharedvalues.record(tmp_path, "proj", "shared")
    source = LocalLogs(tmp_path)
    reads: list[tuple[str | None, int]] = []
    real_read = source.read_from

    def read_from(paths, offset, limit=None):
        reads.append((paths.part, offset))
        return real_read(paths, offset, limit)

    source.read_from = read_from  # type: ignore[method-assign]
    monkeypatch.setattr(routes_values, "KEPT_BYTES", 8 * (routes_values.ENTRY_BYTES + 6))  # 8 short strings a run
    folds = routes_values.LogFolds(routes_values._Texts, routes_values._Texts.apply, shared=routes_values._budgets)
    paths = RunPaths(tmp_path, "proj", "shared")

    def kept(run):
        return {name: list(zip(found.steps, found.values)) for name in ("text", "text/l:rank_1", "shared")
                for found in [routes_values._merged(run, name)] if found is not None}

    first = folds.get_run(source, paths, kept)
    assert sorted(part or "" for part, offset in reads if offset == 0) == ["", "rank_1", "rank_2"]  # each once
    assert sum(len(values) for values in first.values()) == 8  # every writer's, within the run's one budget
    assert first["text"] == [(step, f"p{step}") for step in range(6)] and len(first["text/l:rank_1"]) == 2
    reads.clear()
    assert folds.get_run(source, paths, kept) == first and reads == []  # nothing grew: nothing read
    size = paths.part_paths("rank_2").log_file.stat().st_size
    grown = tracklet.init(project="proj", id="shared", resume="allow", reinit="create_new",
                          settings={"dir": str(tmp_path), "primary": False, "label": "rank_2", "console": "off",
                                    "system_metrics": False, "capture_environment": False})
    grown.log({"shared": "late"}, step=9)
    grown.finish()
    folds.get_run(source, paths, kept)
    assert reads and {part for part, _ in reads} == {"rank_2"} and min(offset for _, offset in reads) == size


def test_an_unsorted_page_reads_rows_by_place_and_matches_the_whole_table(start):
    """Pages of an unfiltered, unsorted table are read by row place (only the fragments and row
    groups holding them): every window, across increment boundaries and past the end, is the
    whole table's rows at those places."""
    run = start(project="proj", id="w")
    table = tracklet.Table(columns=["i", "s"], log_mode="INCREMENTAL")
    sizes = [7, 1, 12, 5]
    added = 0
    for size in sizes:
        for _ in range(size):
            table.add_data(added, f"r{added}")
            added += 1
        run.log({"t": table})
    run.finish()
    query = tracklet.Api().run(run.path).table("t")
    whole = query.to_arrow().to_pylist()
    assert [row["i"] for row in whole] == list(range(added))
    for offset in range(0, added + 3):
        for limit in (1, 3, 8, 30):
            assert query.page(offset, limit).to_arrow().to_pylist() == whole[offset:offset + limit], (offset, limit)
    assert len(query.page(5, 4)) == 4 and query.page(0, 0).to_arrow().num_rows == 0
    # with a filter or a sort, pages are the filtered/sorted table's
    assert [r["i"] for r in query.sort("i", descending=True).page(2, 3).to_arrow().to_pylist()] == [22, 21, 20]
    assert [r["i"] for r in query.filter("i > 5").page(1, 2).to_arrow().to_pylist()] == [7, 8]


def test_masks_and_boxes_of_image_cells_are_stored_served_and_listed_for_sync(start, client, root):
    """An image with masks and boxes in a table cell keeps them, as one logged under a key does:
    the cell holds each mask's blob and class labels and each box group; the table route serves
    them; the mask PNG is served through table-blobs (class ids as logged) and is among the blobs
    `tracklet sync` sends for the fragment."""
    import io

    from PIL import Image as PILImage

    from tracklet.artifacts.storage import artifact_dir
    from tracklet.client.media_sync import blob_path, cell_digests

    run = start(project="proj", id="mb")
    pixels = np.zeros((30, 40, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:15, 10:30] = 2
    image = tracklet.Image(pixels, masks={"truth": {"mask_data": mask, "class_labels": {0: "bg", 2: "cat"}}},
                           boxes={"pred": {"box_data": [{"position": {"minX": 0.25, "maxX": 0.75, "minY": 0.1, "maxY": 0.5},
                                                         "class_id": 2, "box_caption": "cat", "scores": {"p": 0.9}}],
                                           "class_labels": {2: "cat"}}})
    run.log({"cells": tracklet.Table(columns=["img", "n"], data=[[image, 1], [tracklet.Image(pixels), 2]])})
    run.finish()
    recorded = tracklet.Api().run(run.path).table("cells")
    cell, plain = (row["img"] for row in recorded.to_arrow().to_pylist())
    (mask_cell,) = cell["masks"]
    assert (mask_cell["name"], mask_cell["width"], mask_cell["height"]) == ("truth", 40, 30)
    assert mask_cell["class_labels"] == [{"id": 0, "label": "bg"}, {"id": 2, "label": "cat"}]
    (group,) = cell["boxes"]
    assert group["name"] == "pred" and group["class_labels"] == [{"id": 2, "label": "cat"}]
    assert group["boxes"] == [{"min_x": 0.25, "max_x": 0.75, "min_y": 0.1, "max_y": 0.5, "pixel": False,
                               "class_id": 2, "caption": "cat", "scores": [{"name": "p", "value": 0.9}]}]
    assert plain["masks"] == [] and plain["boxes"] == []
    with client() as http:
        response = http.get(f"/api/v1/runs/proj/mb/table-blobs/{mask_cell['digest']}", params={"key": "cells"})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(response.content))), mask)
        page = http.get("/api/v1/runs/proj/mb/tables/cells").json()
        served = page["rows"][0][0]
        assert served["masks"][0]["digest"] == mask_cell["digest"]
        assert served["boxes"][0]["boxes"][0]["min_x"] == 0.25 and served["boxes"][0]["boxes"][0]["class_id"] == 2
    fragments = [fragment.digest for record in _table_records(run) for fragment in record.fragments]
    blob_dir = artifact_dir(root)
    named = {digest for fragment in fragments for digest in cell_digests(blob_path(blob_dir, fragment))}
    assert mask_cell["digest"] in named and cell["digest"] in named


def _table_records(run):
    from tracklet.core.recordlog import read_log
    from tracklet.proto import records_pb2 as pb

    found = []
    for _, payload in read_log(Path(run.dir) / "run.tlog", resync=True).payloads:
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("kind") == "table_logged":
            found.append(record.table_logged)
    return found
