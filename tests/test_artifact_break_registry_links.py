"""Deleting a server's artifact version that the model registry links (a leaked secret in a
dataset, a licence problem): refused without ``break_registry_links`` (409 naming the registry
versions and how to force it), refused with it for a caller who isn't an admin of every registry
linking it (403 naming the role and registry), done for one who is: audited and evented naming the
registry versions left without files, which then read back as ``files_deleted`` (HTTP, the Python
API, the CLI) instead of a 404 or a 500. Real ``tracklet server`` processes on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
import sqlalchemy as sa
from conftest import QUIET, REPO
from serverproc import keyed_deployment

import tracklet
from tracklet.errors import ArtifactDeleted, ArtifactError, RemoteError, TrackletWarning

USERS = {"radmin": ("admin", "admin"), "mixed": ("admin", "member"), "member": ("member", "member")}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracklet", *args],
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request, servers, tmp_path):
    """A server with keys; root logged vision/m:v0..v2 and linked v0 into model/m and eval/m, v1
    into model/m. Each user of ``USERS`` may write project vision and holds (its role in
    registry model, its role in registry eval)."""
    store = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    root_dir = tmp_path / "server"
    server, root, keys = keyed_deployment(servers, root_dir, store, USERS)
    key = keys.pop("root")
    run = tracklet.init(project="vision", dir=str(tmp_path / "client"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": key})
    for index in range(3):
        (tmp_path / "m.bin").write_bytes(b"weights %d" % index)
        assert run.log_artifact(tmp_path / "m.bin", name="m", type="model").wait().upload_error is None
    run.finish()
    for target, version in (("model", 0), ("eval", 0), ("model", 1)):
        linked = root.post(f"/registries/{target}/collections/m/links", json={"project": "vision", "name": "m",
                                                                               "version": version})
        assert linked.status_code == 200, linked.text
    for name, (model_role, eval_role) in USERS.items():
        assert root.put(f"/projects/vision/members/{name}", json={"role": "write"}).status_code in (200, 204)
        assert root.put(f"/registries/model/members/{name}", json={"role": model_role}).status_code == 200
        assert root.put(f"/registries/eval/members/{name}", json={"role": eval_role}).status_code == 200
    yield server, root, keys, store or f"sqlite:///{root_dir / 'store.sqlite'}"
    root.close()


def _delete(server, key: str, version: str, **params: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        return http.delete(f"/api/v1/projects/vision/artifacts/m/versions/{version}", params=params)


def _audited(root: httpx.Client, target_tail: str) -> list[tuple[int, str, dict]]:
    events = root.get("/audit", params={"action": "delete_version", "order": "asc", "limit": 1000}).json()["events"]
    return [(event["status"], event["actor"], event["detail"] if isinstance(event["detail"], dict)
             else json.loads(event["detail"] or "{}")) for event in events if event["target"].endswith(target_tail)]


def test_a_registered_version_is_deleted_only_when_asked_by_an_admin_of_every_registry_linking_it(deployment):
    server, root, keys, store = deployment
    refused = _delete(server, keys["radmin"], "v0", delete_aliases="true")  # W&B's flag is about aliases only
    assert refused.status_code == 409, refused.text
    assert "is registered as model/m:v0, eval/m:v0" in refused.json()["detail"]
    assert "--break-registry-links" in refused.json()["detail"]

    for who, registry in (("member", "eval"), ("mixed", "eval")):  # eval sorts first; mixed is model's admin
        denied = _delete(server, keys[who], "v0", break_registry_links="true")
        assert denied.status_code == 403, denied.text
        assert f"user '{who}' needs the admin role in registry '{registry}'" in denied.json()["detail"]
        assert "eval/m:v0" in denied.json()["detail"]
    with tracklet.Api(base_url=server.url, api_key=keys["mixed"]) as api:
        with pytest.raises(RemoteError, match="admin role in registry 'eval'"):
            api.artifact("vision/m:v0").delete(break_registry_links=True)
        assert api.artifact("vision/m:v0").version == "v0"  # every refusal changed nothing
        assert api.artifact("model/m:v0").source_qualified_name == "vision/m:v0"

    with tracklet.Api(base_url=server.url, api_key=keys["radmin"]) as api:
        with pytest.warns(TrackletWarning, match="model/m:v0, eval/m:v0 linked: those registry versions have no files"):
            api.artifact("vision/m:v0").delete(break_registry_links=True)
        with pytest.raises(ArtifactDeleted, match="model/m:v0 links vision/m:v0, which was deleted"):
            api.artifact("model/m:v0")
        with pytest.raises(ArtifactDeleted, match="eval/m:v0 links vision/m:v0, which was deleted"):
            api.artifact("eval/m:latest")
        assert api.artifact("model/m:latest").source_qualified_name == "vision/m:v1"  # the other link is whole
        # Listing the collection gives the versions that can be read, naming the one left out.
        with pytest.warns(TrackletWarning, match="model/m:v0 left out: the artifact version each links was deleted"):
            assert [version.source_qualified_name for version in api.artifact_versions("model/m")] == ["vision/m:v1"]
        with pytest.warns(TrackletWarning, match="eval/m:v0 left out"):
            assert api.artifact_versions("eval/m") == []

    # The registry keeps the version: it reads back as files deleted, never a 404 or a 500.
    net = "/registries/model/collections/m"
    answer = root.get(net + "/versions/v0")
    assert answer.status_code == 200, answer.text
    assert answer.json()["files_deleted"] is True and answer.json()["version"] is None
    assert answer.json()["link"]["source"] == "vision/m:v0"
    assert [link["version"] for link in root.get(net + "/versions").json()["links"]] == [0, 1]
    assert root.get(net + "/versions/v1").json()["files_deleted"] is False
    for path in (net + "/versions/v0/card", net + "/history", net + "/versions/v0/lineage"):
        assert root.get(path).status_code < 500, path

    # Audited: each refusal as answered, the deletion naming the registry versions it left without files.
    assert [(status, actor) for status, actor, _ in _audited(root, "/m/versions/v0")] == [
        (409, "radmin"), (403, "member"), (403, "mixed"), (403, "mixed"), (200, "radmin")]
    assert _audited(root, "/m/versions/v0")[-1][2]["registry_links_broken"] == ["model/m:v0", "eval/m:v0"]
    engine = sa.create_engine(store)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT subject, actor, payload FROM event_outbox "
                                              "WHERE kind = 'artifact.deleted'")).all()
    finally:
        engine.dispose()
    assert [(subject, actor, json.loads(payload)["registry_links_broken"]) for subject, actor, payload in rows] == [
        ("vision/m:v0", "radmin", ["model/m:v0", "eval/m:v0"])]


def test_artifact_rm_url_breaks_registry_links_only_with_its_own_flag(deployment, tmp_path):
    """``--force`` drops aliases; a registered version on a server needs ``--break-registry-links``."""
    server, root, keys, _ = deployment
    env = {"TRACKLET_API_KEY": keys["radmin"]}
    refused = _cli("--dir", str(tmp_path / "cli"), "artifact", "rm", "vision/m:v1", "--url", server.url, "--force",
                   env=env)
    assert refused.returncode != 0 and "is registered as model/m:v1" in refused.stderr, refused.stderr
    assert "--break-registry-links" in refused.stderr
    done = _cli("--dir", str(tmp_path / "cli"), "artifact", "rm", "vision/m:v1", "--url", server.url,
                "--break-registry-links", env=env)
    assert done.returncode == 0, done.stderr
    assert "deleted vision/m:v1" in done.stdout and "registry versions left without files: model/m:v1" in done.stdout
    assert root.get("/registries/model/collections/m/versions/v1").json()["files_deleted"] is True
    unlinked = root.get("/projects/vision/artifacts/m/versions/v2")  # not registered: deleted as before
    assert unlinked.status_code == 200
    with pytest.raises(ArtifactError):  # ArtifactNotFound: the deleted version is gone from its project
        tracklet.Api(base_url=server.url, api_key=keys["radmin"]).artifact("vision/m:v1")
