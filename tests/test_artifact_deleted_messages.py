"""Reading a deleted artifact version says it was deleted (locally, through a server, and from the
CLI), instead of "does not exist" or, once every version is deleted, "no version of it has been
logged", which sent users looking for a run that never logged it."""

from __future__ import annotations

import httpx
import pytest
from conftest import QUIET
from serverproc import cli

import tracklet
from tracklet.errors import ArtifactNotFound


def _two_versions(run: tracklet.Run, tmp_path) -> None:
    for content in (b"v0", b"v1"):
        (tmp_path / "m.bin").write_bytes(content)
        assert run.log_artifact(tmp_path / "m.bin", name="m", type="model").wait().upload_error is None
    run.finish()


def test_a_deleted_version_reads_as_deleted_locally_and_in_the_cli(root, start, tmp_path):
    _two_versions(start(project="vision"), tmp_path)
    api = tracklet.Api(root)
    api.artifact("vision/m:v0").delete()
    with pytest.raises(ArtifactNotFound, match=r"vision/m:v0 was deleted \(`tracklet artifact rm`"):
        api.artifact("vision/m:v0")
    with pytest.raises(ArtifactNotFound, match="vision/m:v5 does not exist"):
        api.artifact("vision/m:v5")
    assert api.artifact("vision/m:latest").version == "v1"
    assert cli("artifact", "rm", "vision/m:v1").returncode == 0
    shown = cli("artifact", "show", "vision/m:v1")
    assert shown.returncode != 0 and "vision/m:v1 was deleted" in shown.stderr, shown.stderr
    shown = cli("artifact", "show", "vision/m")
    assert shown.returncode != 0 and "vision/m has no version left: every version of it was deleted" in shown.stderr
    with pytest.raises(ArtifactNotFound, match="no artifact vision/never"):
        api.artifact("vision/never:latest")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_servers_deleted_version_reads_as_deleted(servers, tmp_path, request, database):
    store_url = request.getfixturevalue("pg_url") if database == "postgresql" else None
    server = servers(tmp_path / "server", store=store_url)
    _two_versions(tracklet.init(project="vision", dir=str(tmp_path / "writer"), mode="online",
                                settings={**QUIET, "base_url": server.url}), tmp_path)
    with tracklet.Api(base_url=server.url) as api:
        api.artifact("vision/m:v0").delete()
        with pytest.raises(ArtifactNotFound, match="vision/m:v0 was deleted"):
            api.artifact("vision/m:v0")
        api.artifact("vision/m:v1").delete()
        with pytest.raises(ArtifactNotFound, match="vision/m has no version left"):
            api.artifact("vision/m:latest")
    with httpx.Client(base_url=server.url) as http:
        listed = http.get("/api/v1/projects/vision/artifacts/m/versions")
        assert listed.status_code == 404 and "every version of it was deleted" in listed.json()["detail"]
        listed = http.get("/api/v1/projects/vision/artifacts/never/versions")
        assert listed.status_code == 404 and "no version of it has been logged" in listed.json()["detail"]
