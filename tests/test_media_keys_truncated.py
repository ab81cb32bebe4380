"""The media grid's key list (`GET /api/v1/projects/{p}/media/keys`) says `truncated` exactly when
keys were left out, also when a retention policy retired some keys whole: the store read a run's
first page of keys, dropped the retired ones, and answered "not truncated" with fewer keys than
the page held, never reading the keys after it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import QUIET

import tracklet

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tracklet.server import routes_media_compare  # noqa: E402
from tracklet.server.app import create_app  # noqa: E402


@pytest.mark.parametrize("retired_whole", [0, 6, 25])
def test_retired_keys_never_hide_that_more_keys_exist(tmp_path, store_url, monkeypatch, retired_whole):
    monkeypatch.setattr(routes_media_compare, "MAX_KEYS", 10)  # the route's cap (2,000) made small
    root = tmp_path / "server"
    keys = [f"k{i:02d}" for i in range(30)]
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    run = tracklet.init(project="p", id="r", dir=str(root), settings=QUIET)
    for step in range(2):
        run.log({key: tracklet.Image(pixels) for key in keys}, step=step)
    run.finish()
    with TestClient(create_app(root, store_url=store_url, auth=False)) as client:
        retention = {key: 2 for key in keys[:retired_whole]}  # first kept step 2: past their last
        retention[keys[-1]] = 1  # and one key cut, not retired
        answer = client.put("/api/v1/runs/p/r/media/retention", json={"keys": retention})
        assert answer.status_code == 200, answer.text
        listed = client.get("/api/v1/projects/p/media/keys", params={"runs": "r"})
        assert listed.status_code == 200, listed.text
        body = listed.json()
        left = keys[retired_whole:]
        assert [entry["key"] for entry in body["keys"]] == left[:10]
        assert body["truncated"] is (len(left) > 10)
        # the whole list once the cap is past it: every kept key, the cut one from its first kept step
        monkeypatch.setattr(routes_media_compare, "MAX_KEYS", 100)
        everything = client.get("/api/v1/projects/p/media/keys", params={"runs": "r"}).json()
        assert [entry["key"] for entry in everything["keys"]] == left and everything["truncated"] is False
        assert everything["keys"][-1]["runs"][0]["first_step"] == 1
