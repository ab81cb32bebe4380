"""Logged media over the read API (docs/media.md): `tracklet ui` lists a run's media from the store
and serves exactly the blobs its media name (files, thumbnails, masks), with their MIME types,
`nosniff` and a sandbox CSP; no other blob of the store, no malformed digest."""

from __future__ import annotations

import hashlib
import re
import time

import httpx
import numpy as np
import serverproc
from conftest import QUIET

import tracklet


def test_tracklet_ui_lists_a_runs_media_and_serves_only_its_blobs(root, tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (300, 260, 3), dtype=np.uint8)
    mask = np.zeros((300, 260), dtype=np.uint8)
    mask[:50] = 1
    run = tracklet.init(project="ui", id="pictures", dir=str(root), settings=QUIET)
    run.log({"pred": tracklet.Image(pixels, caption="first", masks={"truth": {"mask_data": mask}},
                                    boxes={"p": {"box_data": [{"position": {"minX": 0, "maxX": 1, "minY": 0,
                                                                            "maxY": 1}}]}}),
             "page": tracklet.Html("<script>parent.document.title = 'owned'</script>"), "loss": 1.0})
    run.finish()
    other = tmp_path / "secret.txt"
    other.write_text("another project's artifact")
    art = tracklet.Artifact("secret", "dataset")
    art.add_file(str(other))
    art.save("elsewhere")
    secret_digest = hashlib.sha256(other.read_bytes()).hexdigest()
    assert (root / "artifacts" / "blobs" / "sha256" / secret_digest[:2] / secret_digest).is_file()

    ui = serverproc.cli_process("--dir", str(root), "ui", "--no-open", "--port", "0")  # forked, not a cold start
    try:
        found = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=([\w-]+)", ui.first_line())
        url, auth = found.group(1) + "api/v1/runs/ui/pictures/media", {"Authorization": f"Bearer {found.group(2)}"}
        deadline = time.monotonic() + 30
        while (answer := httpx.get(url, headers=auth, timeout=10)).status_code == 404:
            assert time.monotonic() < deadline, "tracklet ui never indexed the run"
            time.sleep(0.1)
        assert answer.status_code == 200
        media = {item["key"]: item for item in answer.json()["media"]}
        image, page = media["pred"], media["page"]
        assert (image["step"], image["kind"], image["caption"], image["width"], image["height"]) == (
            0, "image", "first", 260, 300)
        assert [m["name"] for m in image["masks"]] == ["truth"] and image["masks"][0]["class_labels"] == {}
        (boxes,) = image["boxes"]
        assert (boxes["name"], boxes["count"], boxes["boxes"][0]["max_x"], boxes["boxes"][0]["pixel"]) == ("p", 1, 1.0, False)
        only_images = httpx.get(url, params={"kind": "image"}, headers=auth).json()["media"]
        assert [item["key"] for item in only_images] == ["pred"]

        served = httpx.get(f"{url}/{image['digest']}", headers=auth)
        assert served.status_code == 200 and served.headers["content-type"] == "image/png"
        assert hashlib.sha256(served.content).hexdigest() == image["digest"]
        assert served.headers["x-content-type-options"] == "nosniff"
        for digest in (image["thumbnail"], image["masks"][0]["digest"]):
            extra = httpx.get(f"{url}/{digest}", headers=auth)
            assert extra.status_code == 200 and extra.headers["content-type"] == "image/png"
        html = httpx.get(f"{url}/{page['digest']}", headers=auth)
        assert html.headers["content-type"].startswith("text/html")
        assert html.headers["content-security-policy"] == "sandbox"  # no allow-same-origin: no dashboard access

        assert httpx.get(f"{url}/{secret_digest}", headers=auth).status_code == 404  # a blob, but not this run's
        assert httpx.get(f"{url}/../../x", headers=auth).status_code in (400, 404)
        assert httpx.get(f"{url}/{'A' * 64}", headers=auth).status_code == 400
        assert httpx.get(url.replace("pictures", "nope"), headers=auth).status_code == 404
        assert httpx.get(url).status_code == 401  # the ui's token is needed

        from tracklet.media import retention  # `tracklet media prune` retired pred's step 0: not listed

        retention._write_cutoffs(root / "projects" / "ui" / "runs" / "pictures", {"pred": 1}, {"keep_last": 0})
        assert [item["key"] for item in httpx.get(url, headers=auth).json()["media"]] == ["page"]
    finally:
        ui.terminate()
        ui.wait(timeout=10)
        ui.close()
