"""Concurrent edits of an artifact collection's and a version's tags, aliases and metadata keys
keep every writer's change: W&B scripts in separate processes each read the collection and the
version, wait for the others at a barrier, then each append their own tag (and alias and metadata
key) and ``save()``. A save sends what changed since it read (tags and aliases added and removed,
metadata keys set and unset), applied under the collection's lock against what is stored then, so
no writer's edit is lost: on a data root, a SQLite server and a PostgreSQL server. Also: two
``tracklet artifact edit --add-tag`` at once, a collection's type and fields saved as one request
(a type change still needs the admin role, and a refused one changes nothing), and the bounds on
tags at the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from conftest import QUIET, REPO
from serverproc import cli_process, keyed_deployment

import tracklet
import tracklet.compat.wandb as wandb
from tracklet.errors import ArtifactError, RemoteError

WRITERS = 4

WRITER = """
import sys, time
from pathlib import Path

import tracklet.compat.wandb as wandb

index, sync, project = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
api = wandb.Api()
collection = api.artifact_collection("dataset", f"{project}/ds")
version = api.artifact(f"{project}/ds:v0")
collection.tags, version.tags  # read before anyone writes
(sync / f"ready{index}").touch()
while not (sync / "go").exists():  # the barrier: every writer has read the same state
    time.sleep(0.005)
collection.tags.append(f"writer {index}")
collection.save()
version.tags.append(f"writer-{index}")
version.aliases.append(f"by-{index}")
version.metadata[f"key{index}"] = index
version.save()
"""


def _writers(tmp_path: Path, env: dict[str, str], project: str = "p") -> None:
    """``WRITERS`` W&B scripts at once (released together once all have read) on ``project``/ds; each must
    succeed."""
    sync = tmp_path / "sync"
    sync.mkdir()
    (tmp_path / "writer.py").write_text(textwrap.dedent(WRITER))
    full = {**os.environ, "PYTHONPATH": str(REPO), **env}
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(index), str(sync), project],
                              env=full,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for index in range(WRITERS)]
    try:
        while len(list(sync.glob("ready*"))) < WRITERS:
            assert all(proc.poll() is None for proc in procs), [proc.communicate() for proc in procs]
            time.sleep(0.01)
        (sync / "go").touch()
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-4000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def _check_everyones_edit_landed(api: tracklet.Api, project: str = "p") -> None:
    row = next(row for row in api.artifact_collections(project) if row["name"] == "ds")
    assert sorted(row["tags"]) == ["base", *(f"writer {index}" for index in range(WRITERS))]
    version = api.artifact(f"{project}/ds:v0")
    assert sorted(version.tags) == sorted(["version-tag", *(f"writer-{index}" for index in range(WRITERS))])
    assert {f"by-{index}" for index in range(WRITERS)} <= set(version.aliases)
    assert version.metadata == {"rows": 10, **{f"key{index}": index for index in range(WRITERS)}}


def _first_version(project_dir: Path) -> tracklet.Artifact:
    artifact = tracklet.Artifact("ds", type="dataset", metadata={"rows": 10})
    artifact.tags = ["version-tag"]
    with artifact.new_file("data.txt") as handle:
        handle.write("v0")
    return artifact


def test_concurrent_saves_on_a_data_root_keep_every_writers_tags(root, tmp_path):
    _first_version(tmp_path).save("p")
    api = tracklet.Api(root)
    api.edit_artifact_collection("p/ds", tags=["base"])
    _writers(tmp_path, {"TRACKLET_DIR": str(root)})
    _check_everyones_edit_landed(api)

    # Two CLI edits at once, each adding its tag and one removing another: all land.
    cli = ["artifact", "edit", "p/ds"]
    with cli_process(*cli, "--add-tag", "cli one", "--remove-tag", "base") as one, \
            cli_process(*cli, "--add-tag", "cli two") as two:
        for proc in (one, two):
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    row = next(row for row in api.artifact_collections("p") if row["name"] == "ds")
    assert sorted(row["tags"]) == sorted(["cli one", "cli two", *(f"writer {index}" for index in range(WRITERS))])


@pytest.fixture(scope="module")
def keyed(module_store, module_servers, tmp_path_factory):
    """A server with keys, users alice and bob: the module's tests share it, each in a project of its own."""
    server, admin, keys = keyed_deployment(module_servers, tmp_path_factory.mktemp("server"), module_store,
                                           ["alice", "bob"])
    yield server, admin, keys
    admin.close()


_projects = iter(range(1_000_000))


@pytest.fixture
def deployment(keyed, tmp_path):
    """The module's server; alice logged ``PROJECT``/ds:v0 online (the project's admin: the test's own
    project); bob may write it."""
    server, admin, keys = keyed
    project = f"p{next(_projects)}"
    run = tracklet.init(project=project, dir=str(tmp_path / "alice"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
    assert run.log_artifact(_first_version(tmp_path)).wait().upload_error is None
    run.finish()
    assert admin.put(f"/projects/{project}/members/bob", json={"role": "write"}).status_code in (200, 204)
    return server, keys, admin, project


def test_concurrent_saves_on_a_server_keep_every_writers_tags(deployment, tmp_path, monkeypatch):
    server, keys, _, project = deployment
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    bob = tracklet.Api(base_url=server.url, api_key=keys["bob"])
    bob.edit_artifact_collection(f"{project}/ds", tags=["base"])
    _writers(tmp_path, {"TRACKLET_DIR": str(tmp_path / "writers"), "TRACKLET_BASE_URL": server.url,
                        "TRACKLET_API_KEY": keys["bob"]}, project)
    _check_everyones_edit_landed(bob, project)


def test_a_collections_type_and_fields_are_one_request_all_or_nothing(deployment, tmp_path, monkeypatch):
    server, keys, admin, project = deployment
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))

    def listed() -> tuple[str, str, list[str]]:
        row = admin.get(f"/projects/{project}/artifacts").json()["collections"][0]
        return row["type"], row["description"], row["tags"]

    # A write-role user's save with a type change: 403, and the description sent with it isn't stored.
    as_bob = wandb.Api(overrides={"base_url": server.url}, api_key=keys["bob"]).artifact_collection("dataset", f"{project}/ds")
    as_bob.type, as_bob.description = "model", "by bob"
    as_bob.tags.append("bob")
    with pytest.raises(RemoteError, match="403"):
        as_bob.save()
    assert listed() == ("dataset", "", [])

    # The admin's save: one request, both changed.
    as_alice = wandb.Api(overrides={"base_url": server.url},
                         api_key=keys["alice"]).artifact_collection("dataset", f"{project}/ds")
    as_alice.type, as_alice.description = "model", "by alice"
    as_alice.tags.append("alice")
    as_alice.save()
    assert listed() == ("model", "by alice", ["alice"])
    events = admin.get("/audit", params={"project": project, "limit": 1000}).json()["events"]
    edits = [event for event in events if event["action"] == "update_collection"]
    details = [json.loads(event["detail"]) if isinstance(event["detail"], str) else event["detail"]
               for event in edits]
    assert [(event["status"], detail) for event, detail in zip(edits, details)] == [
        (403, {"type": "model", "description": True, "add_tags": ["bob"]}),
        (200, {"type": "model", "description": True, "add_tags": ["alice"]})]


def test_the_server_bounds_tags(deployment):
    server, keys, admin, project = deployment
    with httpx.Client(base_url=f"{server.url}/api/v1/projects/{project}/artifacts",
                      headers={"Authorization": f"Bearer {keys['bob']}"}, timeout=60) as http:
        for body, problem in [
                ({"add_tags": ["x" * 129]}, "is not valid: use at most 128"),
                ({"add_tags": ["a/b"]}, "tag 'a/b' is not valid"),
                ({"remove_tags": ["bad\nline"]}, "is not valid"),
                ({"add_tags": [f"t{index}" for index in range(257)]}, "256"),
                ({"add_tags": "one"}, "list")]:
            refused = http.patch("/ds", json=body)
            assert refused.status_code in (400, 422) and problem in refused.text, (body, refused.text)
            versioned = http.patch("/ds/versions/v0", json=body)
            assert versioned.status_code in (400, 422) and problem in versioned.text, (body, versioned.text)
        # At most 256 a collection after the edit too: 200 stored, 57 more refused, nothing changed.
        assert http.patch("/ds", json={"tags": [f"t{index}" for index in range(200)]}).status_code == 200
        over = http.patch("/ds", json={"add_tags": [f"u{index}" for index in range(57)], "description": "no"})
        assert over.status_code == 400 and "would have 257 tags; at most 256" in over.text
        row = admin.get(f"/projects/{project}/artifacts").json()["collections"][0]
        assert (len(row["tags"]), row["description"]) == (200, "")
        # A replacement then adds and removals, in one edit; a removal of a tag that isn't there is no error.
        both = http.patch("/ds", json={"tags": ["a", "b"], "add_tags": ["c"], "remove_tags": ["a", "zz"]})
        assert both.status_code == 200 and both.json()["tags"] == ["b", "c"]
        # A version's metadata keys set and unset; the keys not named stay.
        keyed = http.patch("/ds/versions/v0", json={"set_metadata": {"acc": 0.9}, "unset_metadata": ["nope"]})
        assert keyed.status_code == 200 and keyed.json()["version"]["metadata"] == {"rows": 10, "acc": 0.9}
        keyed = http.patch("/ds/versions/v0", json={"unset_metadata": ["rows"]})
        assert keyed.json()["version"]["metadata"] == {"acc": 0.9}
        nan = http.patch("/ds/versions/v0", content=b'{"set_metadata": {"loss": NaN}}',
                         headers={"Content-Type": "application/json"})
        assert nan.status_code in (400, 422), nan.text
        assert http.get("/ds/versions/v0").json()["version"]["metadata"] == {"acc": 0.9}


def test_a_refused_type_change_on_a_data_root_changes_nothing(root, tmp_path):
    _first_version(tmp_path).save("p")
    tracklet.Api(root).artifact("p/ds:v0").link("model/ds")
    collection = wandb.Api().artifact_collection("dataset", "p/ds")
    collection.type, collection.description = "model", "must not land"
    collection.tags.append("nor this")
    with pytest.raises(ArtifactError, match="the model registry links model/ds:v0"):
        collection.save()
    row = next(row for row in tracklet.Api(root).artifact_collections("p") if row["name"] == "ds")
    assert (row["type"], row["description"], row["tags"]) == ("dataset", "", [])
