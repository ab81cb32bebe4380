"""Media across runs (the dashboard's media grid, docs/dashboard.md): `GET /api/v1/projects/{p}/media/keys`
and `GET /api/v1/projects/{p}/media` against real `tracklet server` processes (SQLite and
PostgreSQL stores) over runs recorded by tracklet and synced: the grid answers, per run, the items
the per-run route lists at the latest step at or before the one asked, pages a logged list, leaves
retired (pruned) items out, refuses too many runs or items, and asks the per-run routes' roles."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import serverproc
from conftest import QUIET

import tracklet
from tracklet.artifacts.remote import UPLOAD_STATE_DIR
from tracklet.artifacts.storage import artifact_dir
from tracklet.client.sync import SyncClient
from tracklet.core.layout import RunPaths
from tracklet.server import routes_media_compare


def _pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8)


def _record(root: Path) -> None:
    """Run a: `img` at steps 0-9 (step 4 with a mask), `samples` (a list of 3) at steps 0 and 5;
    run b: `img` at steps 3, 6, 9; run c: only `speech`."""
    run = tracklet.init(project="grid", id="a", name="first", dir=str(root), settings=QUIET)
    for step in range(10):
        mask = {"truth": {"mask_data": np.eye(12, 10, dtype=np.uint8)}} if step == 4 else None
        row = {"img": tracklet.Image(_pixels(step), caption=f"a{step}", masks=mask)}
        if step in (0, 5):
            row["samples"] = [tracklet.Image(_pixels(100 + step * 10 + i)) for i in range(3)]
        run.log(row, step=step)
    run.finish()
    run = tracklet.init(project="grid", id="b", dir=str(root), settings=QUIET)
    for step in (3, 6, 9):
        run.log({"img": tracklet.Image(_pixels(50 + step), caption=f"b{step}")}, step=step)
    run.finish()
    run = tracklet.init(project="grid", id="c", dir=str(root), settings=QUIET)
    run.log({"speech": tracklet.Audio(np.zeros(800, dtype=np.float32), sample_rate=8000)}, step=2)
    run.finish()


def _sync(url: str, root: Path, api_key: str | None = None) -> None:
    with SyncClient(url, blob_dir=artifact_dir(root), upload_state_dir=root / "cache" / UPLOAD_STATE_DIR,
                    api_key=api_key) as client:
        for run_id in ("a", "b", "c"):
            client.sync_run(RunPaths(root, "grid", run_id))


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, servers, tmp_path):
    store = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    return servers(tmp_path / "server", store=store)


def _grid(http: httpx.Client, **params) -> dict:
    answer = http.get("/api/v1/projects/grid/media", params={"runs": "a,b,c", "key": "img", **params})
    assert answer.status_code == 200, answer.text
    return {run["run_id"]: run for run in answer.json()["runs"]}


def test_the_grid_answers_each_runs_items_at_the_latest_step_at_or_before(server, root):
    _record(root)
    _sync(server.url, root)
    with httpx.Client(base_url=server.url) as http:
        keys = http.get("/api/v1/projects/grid/media/keys", params={"runs": "a,b,c"}).json()
        assert not keys["truncated"]
        by_key = {entry["key"]: entry for entry in keys["keys"]}
        assert sorted(by_key) == ["img", "samples", "speech"]
        assert [(r["run_id"], r["kind"], r["items"], r["steps"], r["first_step"], r["last_step"])
                for r in by_key["img"]["runs"]] == [("a", "image", 10, 10, 0, 9), ("b", "image", 3, 3, 3, 9)]
        assert [(r["run_id"], r["items"], r["steps"]) for r in by_key["samples"]["runs"]] == [("a", 6, 2)]
        assert by_key["speech"]["kinds"] == ["audio"] and [r["run_id"] for r in by_key["speech"]["runs"]] == ["c"]

        at7 = _grid(http, step=7)
        assert list(at7) == ["a", "b", "c"]  # the order asked
        assert (at7["a"]["step"], at7["b"]["step"], at7["c"]["step"]) == (7, 6, None)
        assert at7["a"]["steps"] == list(range(10)) and at7["b"]["steps"] == [3, 6, 9]
        assert (at7["c"]["steps"], at7["c"]["items"], at7["c"]["count"], at7["c"]["first_step"]) == ([], [], 0, None)
        # The same entries the per-run route lists for that step (the contract the run page uses).
        for run_id, step in (("a", 7), ("b", 6)):
            listed = http.get(f"/api/v1/runs/grid/{run_id}/media", params={"key": "img"}).json()["media"]
            assert at7[run_id]["items"] == [item for item in listed if item["step"] == step]
            assert at7[run_id]["items"][0]["caption"] == f"{run_id}{step}"
        # Nothing at or before step 2 in b: no item, and where its key starts.
        at2 = _grid(http, step=2, steps="false")
        assert (at2["b"]["step"], at2["b"]["items"], at2["b"]["first_step"], at2["b"]["steps"]) == (None, [], 3, None)
        assert at2["a"]["items"][0]["caption"] == "a2"
        latest = _grid(http)  # no step: each run's last
        assert (latest["a"]["step"], latest["b"]["step"]) == (9, 9)

        # Every file of a shown item comes from the per-run blob route, byte for byte (the mask too).
        item = _grid(http, step=4)["a"]["items"][0]
        for digest in (item["digest"], item["masks"][0]["digest"]):
            served = http.get(f"/api/v1/runs/grid/a/media/{digest}")
            assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == digest
        assert served.headers["content-type"] == "image/png"
        assert http.get(f"/api/v1/runs/grid/b/media/{item['digest']}").status_code == 404  # not b's

        # A logged list: the count, and pages of it by place.
        page = http.get("/api/v1/projects/grid/media", params={"runs": "a", "key": "samples", "step": 8,
                                                                "limit": 2}).json()["runs"][0]
        assert (page["step"], page["count"], [i["index"] for i in page["items"]]) == (5, 3, [0, 1])
        rest = http.get("/api/v1/projects/grid/media", params={"runs": "a", "key": "samples", "step": 8,
                                                                "limit": 2, "offset": 2}).json()["runs"][0]
        assert ([i["index"] for i in rest["items"]], rest["offset"], rest["count"]) == ([2], 2, 3)

        # Pruned on the server (keep the last 3 steps of every key): retired items leave the grid,
        # the key list and the blob route; a step asked before what is kept shows nothing.
        pruned = http.post("/api/v1/projects/grid/media/prune", json={"keep_last": 3, "keys": ["img"]})
        assert pruned.status_code == 200, pruned.text
        gone = _grid(http, step=5)
        assert (gone["a"]["step"], gone["a"]["first_step"], gone["a"]["steps"]) == (None, 7, [7, 8, 9])
        assert gone["b"]["step"] == 3  # b logged only 3 steps: all kept
        assert http.get(f"/api/v1/runs/grid/a/media/{item['digest']}").status_code == 404
        keys = http.get("/api/v1/projects/grid/media/keys", params={"runs": "a"}).json()["keys"]
        assert [(r["items"], r["first_step"]) for e in keys if e["key"] == "img" for r in e["runs"]] == [(3, 7)]


def test_the_grid_is_bounded_and_validated(servers, root, tmp_path):
    _record(root)
    server = servers(tmp_path / "server")
    _sync(server.url, root)
    with httpx.Client(base_url=server.url) as http:
        def status(path: str = "/api/v1/projects/grid/media", **params) -> int:
            return http.get(path, params=params).status_code

        many = ",".join(f"r{i}" for i in range(routes_media_compare.MAX_RUNS + 1))
        too_many = http.get("/api/v1/projects/grid/media", params={"runs": many, "key": "img"})
        assert too_many.status_code == 400 and "at most 20 runs" in too_many.json()["detail"]
        assert status("/api/v1/projects/grid/media/keys", runs=many) == 400
        assert status(runs="a", key="img", limit=routes_media_compare.MAX_ITEMS + 1) == 422
        assert status(runs="a", key="img", limit=0) == 422
        assert status(runs="a", key="img", step=-1) == 422
        assert status(runs="a", key="img", step=2**63 - 1) == 200  # past every step: each run's last
        assert status(runs="a", key="img", step=2**63) == 422  # not a 500 from the store's integer
        assert status(runs="a") == 422  # no key
        assert status(runs="", key="img") == 400
        assert status(runs="../x", key="img") == 400
        unknown = http.get("/api/v1/projects/grid/media", params={"runs": "a,nope", "key": "img"})
        assert unknown.status_code == 404 and "grid/nope" in unknown.json()["detail"]
        assert status("/api/v1/projects/grid/media/keys", runs="nope") == 404
        assert status("/api/v1/projects/elsewhere/media", runs="a", key="img") == 404  # a's project is grid
        # The openapi schema describes both (the dashboard's types are generated from it).
        paths = http.get("/openapi.json").json()["paths"]
        assert "/api/v1/projects/{project}/media" in paths and "/api/v1/projects/{project}/media/keys" in paths


def test_thinning_keeps_the_first_and_last_step():
    steps = list(range(0, 3 * routes_media_compare.MAX_STEPS, 3))
    thinned = routes_media_compare._thinned(steps)
    assert len(thinned) == routes_media_compare.MAX_STEPS and thinned[0] == 0 and thinned[-1] == steps[-1]
    assert thinned == sorted(set(thinned)) and set(thinned) <= set(steps)
    assert routes_media_compare._thinned([1, 2]) == [1, 2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args, timeout=180)


def test_the_grid_needs_read_on_the_project(servers, root, tmp_path):
    server_root = tmp_path / "server"
    created = _cli("admin", "--dir", str(server_root), "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    server = servers(server_root, dev=False)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {created.stdout.strip()}"}) as http:
        alice, reader, carol = (http.post("/api/v1/users", json={"name": name}).json()["key"]
                                for name in ("alice", "reader", "carol"))
    _record(root)
    _sync(server.url, root, api_key=alice)  # creates the project: alice its admin
    answer = httpx.put(f"{server.url}/api/v1/projects/grid/members/reader", json={"role": "read"},
                       headers={"Authorization": f"Bearer {alice}"})
    assert answer.status_code in (200, 204), answer.text
    for path, params in (("media", {"runs": "a,b", "key": "img"}), ("media/keys", {"runs": "a,b"})):
        url = f"{server.url}/api/v1/projects/grid/{path}"
        for key, expected in ((alice, 200), (reader, 200), (carol, 403), (None, 401)):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            assert httpx.get(url, params=params, headers=headers).status_code == expected, (path, key)


def test_the_key_list_takes_a_retention_of_thousands_of_keys(server, root):
    # A run's retention names every key a prune went over (thousands for a run that logs a media
    # key per class or per sample); a condition per retired key, for every run at once, made SQLite
    # refuse the key list ("Expression tree is too large": a 500) past about a thousand of them.
    _record(root)
    _sync(server.url, root)
    with httpx.Client(base_url=server.url) as http:
        for run_id, keys in (("a", {"img": 7, "samples": 6, **{f"gone/{i}": 5 for i in range(3000)}}),
                             ("b", {"img": 4, **{f"other/{i}": 1 for i in range(3000)}})):
            answer = http.put(f"/api/v1/runs/grid/{run_id}/media/retention", json={"keys": keys})
            assert answer.status_code == 200, answer.text
        listed = http.get("/api/v1/projects/grid/media/keys", params={"runs": "a,b,c"})
        assert listed.status_code == 200, listed.text
        by_key = {entry["key"]: entry for entry in listed.json()["keys"]}
        assert sorted(by_key) == ["img", "speech"]  # samples: retired whole (last logged at step 5)
        assert [(r["run_id"], r["items"], r["steps"], r["first_step"], r["last_step"]) for r in by_key["img"]["runs"]] \
            == [("a", 3, 3, 7, 9), ("b", 2, 2, 6, 9)]
        assert _grid(http, step=5)["a"]["first_step"] == 7


def test_a_media_key_with_a_nul_character_is_found_on_either_store(server, root):
    # The store keeps a NUL in a key as U+FFFD (PostgreSQL's text can't hold NUL), and a query
    # asking for the key with its NUL finds it: the media routes passed the key as asked, a 500 on
    # PostgreSQL (the driver refuses NUL in a parameter), and nothing found on SQLite.
    run = tracklet.init(project="grid", id="nul", dir=str(root), settings=QUIET)
    for step in (0, 1):
        run.log({"im\x00g": tracklet.Image(_pixels(step), caption=f"n{step}")}, step=step)
    run.finish()
    with SyncClient(server.url, blob_dir=artifact_dir(root), upload_state_dir=root / "cache" / UPLOAD_STATE_DIR) as client:
        client.sync_run(RunPaths(root, "grid", "nul"))
    with httpx.Client(base_url=server.url) as http:
        retention = http.put("/api/v1/runs/grid/nul/media/retention", json={"keys": {"im\x00g": 1}})
        assert retention.status_code == 200, retention.text
        grid = http.get("/api/v1/projects/grid/media", params={"runs": "nul", "key": "im\x00g"})
        assert grid.status_code == 200, grid.text
        (column,) = grid.json()["runs"]
        assert (column["step"], column["first_step"], [item["caption"] for item in column["items"]]) == (1, 1, ["n1"])
        listed = http.get("/api/v1/runs/grid/nul/media", params={"key": "im\x00g"})
        assert listed.status_code == 200, listed.text
        assert [item["caption"] for item in listed.json()["media"]] == ["n1"]
        keys = http.get("/api/v1/projects/grid/media/keys", params={"runs": "nul"}).json()["keys"]
        assert [(entry["key"], entry["runs"][0]["first_step"]) for entry in keys] == [("im\ufffdg", 1)]
        absent = http.get("/api/v1/projects/grid/media", params={"runs": "nul", "key": "\x00"})
        assert absent.status_code == 200 and absent.json()["runs"][0]["items"] == []


def test_a_retention_past_every_step_retires_the_key_and_never_breaks_the_grid(server, root):
    # A retention's first kept step is past int64 where a prune retired a key logged at step
    # 2**63 - 1 (its last step + 1), and any int in a hand-edited retention file: it reached the
    # store's queries as a bound parameter, a 500 for every reader of the project's key list and
    # grid, for good (retention only moves forward). Past 2**63 the route refuses it.
    _record(root)
    _sync(server.url, root)
    with httpx.Client(base_url=server.url) as http:
        refused = http.put("/api/v1/runs/grid/b/media/retention", json={"keys": {"img": 2**63 + 1}})
        assert refused.status_code == 400 and "2**63" in refused.json()["detail"], refused.text
        taken = http.put("/api/v1/runs/grid/b/media/retention", json={"keys": {"img": 2**63}})
        assert taken.status_code == 200, taken.text
        RunPaths(Path(server.root), "grid", "a").run_dir.joinpath("media-retention.json").write_text(
            json.dumps({"keys": {"img": 2**70, "samples": 2**63 - 1}}))
        listed = http.get("/api/v1/projects/grid/media/keys", params={"runs": "a,b,c"})
        assert listed.status_code == 200, listed.text
        assert [(e["key"], [r["run_id"] for r in e["runs"]]) for e in listed.json()["keys"]] == [("speech", ["c"])]
        grid = http.get("/api/v1/projects/grid/media", params={"runs": "a,b", "key": "img", "step": 5})
        assert grid.status_code == 200, grid.text
        assert [(run["items"], run["first_step"], run["steps"]) for run in grid.json()["runs"]] == [([], None, [])] * 2
        assert http.get("/api/v1/runs/grid/a/media", params={"key": "img"}).json()["media"] == []
