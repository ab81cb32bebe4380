"""The dashboard's server side: many runs' histories in one request, the keys to chart, and the
single-page app served at / beside an untouched JSON API (a real `tracklet server --dev`)."""

from __future__ import annotations

import httpx
from conftest import QUIET

import tracklet


def _record(root):
    for index in range(3):
        run = tracklet.init(project="cmp", id=f"r{index}", dir=str(root), settings=QUIET)
        for step in range(3000):
            run.log({"loss": 100.0 if (index, step) == (1, 1234) else 1.0 + index, "note": "text"})
        run.log({"late": 1.0})
        run.finish()


def test_batch_history_equals_each_runs_history(servers, tmp_path):
    root = tmp_path / "srv"
    _record(root)
    server = servers(root, dev=True)
    with httpx.Client(base_url=server.url) as http:
        batch = http.get("/api/v1/projects/cmp/history", params={"runs": "r0,r1,r2", "keys": "loss", "buckets": 100,
                                                                "start": 0, "end": 2999}).json()["series"]
        assert [s["run"] for s in batch] == ["r0", "r1", "r2"]
        for series in batch:
            single = http.get(f"/api/v1/runs/cmp/{series['run']}/history",
                              params={"keys": "loss", "buckets": 100, "start": 0, "end": 2999}).json()["series"][0]
            assert not series["exact"] and "steps" not in series  # x is the step
            fields = ("x", "min", "max", "last")
            assert {k: series[k] for k in fields} == {k: single[k] for k in fields}
        assert max(batch[1]["max"]) == 100.0  # a one-step spike survives 100 buckets
        exact = http.get("/api/v1/projects/cmp/history", params={"runs": "r2", "keys": "loss", "start": 10,
                                                                "end": 12}).json()["series"][0]
        assert exact == {"run": "r2", "key": "loss", "exact": True, "x": [10, 11, 12], "values": [3.0, 3.0, 3.0]}
        timed = http.get("/api/v1/projects/cmp/history", params={"runs": "r2", "keys": "loss", "x": "relative_time",
                                                                "buckets": 0}).json()["series"][0]
        assert timed["steps"] == list(range(3000)) and timed["x"] == sorted(timed["x"])

        assert http.get("/api/v1/projects/cmp/keys").json() == {"keys": ["late", "loss"]}  # numbers only
        assert http.get("/api/v1/projects/cmp/keys", params={"runs": "r0"}).json() == {"keys": ["late", "loss"]}
        unknown = http.get("/api/v1/projects/cmp/history", params={"runs": "r0,nope", "keys": "loss"})
        assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
        assert http.get("/api/v1/projects/cmp/history", params={"runs": "../x", "keys": "loss"}).status_code == 400
        assert http.get("/api/v1/projects/cmp/history", params={"runs": "", "keys": "loss"}).status_code == 400


def test_the_dashboard_is_served_beside_the_api(servers, tmp_path):
    server = servers(tmp_path / "srv", dev=True)
    with httpx.Client(base_url=server.url) as http:
        for path in ("/", "/projects/cmp", "/projects/cmp/runs/r0"):
            page = http.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
            assert '<script type="module"' in page.text
        asset = page.text.split('src="', 1)[1].split('"', 1)[0]
        script = http.get(asset)
        assert script.status_code == 200 and "immutable" in script.headers["cache-control"]
        missing = http.get("/api/v1/no-such-route")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
        assert http.get("/api/v1/projects").json() == {"projects": []}
        assert http.get("/openapi.json").json()["paths"]["/api/v1/projects/{project}/history"]
