"""``tracklet artifact ls|show|get --url URL`` read a tracking server's artifacts (they read only
the data root's before: a team member had to write a script to look at the server's versions)."""

from __future__ import annotations

import json

from conftest import QUIET
from serverproc import cli

import tracklet


def test_ls_show_and_get_read_a_servers_artifacts_not_the_data_roots(servers, root, tmp_path):
    server = servers(tmp_path / "server")
    run = tracklet.init(project="vision", dir=str(tmp_path / "writer"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    for content in (b"weights v0", b"weights v1"):
        (tmp_path / "m.bin").write_bytes(content)
        assert run.log_artifact(tmp_path / "m.bin", name="m", type="model",
                                aliases=["best"]).wait().upload_error is None
    run.finish()
    local = cli("artifact", "ls")  # the test's data root (TRACKLET_DIR) has none of them
    assert local.returncode == 0 and "vision/m" not in local.stdout, local.stderr

    listed = cli("artifact", "ls", "--url", server.url)
    assert listed.returncode == 0, listed.stderr
    assert "vision/m  type=model  versions=2  latest=v1" in listed.stdout
    versions = cli("artifact", "ls", "vision/m", "--json", "--url", server.url)
    assert [json.loads(line)["version"] for line in versions.stdout.splitlines()] == ["v0", "v1"], versions.stderr

    shown = cli("artifact", "show", "vision/m:best", "--json", "--url", server.url)
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)
    assert row["version"] == "v1" and "best" in row["aliases"] and [f["path"] for f in row["files"]] == ["m.bin"]
    missing = cli("artifact", "show", "vision/m:v7", "--url", server.url)
    assert missing.returncode != 0 and "vision/m:v7 does not exist" in missing.stderr

    fetched = cli("artifact", "get", "vision/m:v0", "--root", str(tmp_path / "got"), "-q", "--url", server.url)
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "got" / "m.bin").read_bytes() == b"weights v0"
