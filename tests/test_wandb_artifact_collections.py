"""The W&B Artifact and ArtifactCollection calls a W&B script still missed (session 24): W&B's
uppercase ``state`` on ``wandb.Artifact`` while ``tracklet.Artifact.state`` keeps tracklet's,
``commit_hash``, ``finalize()``, ``linked_artifacts`` (tracklet's model registry), and a
collection's ``delete()``, ``change_type()`` and ``save()``. Each on a data root and through a real
``tracklet server`` (SQLite and PostgreSQL) with API keys and roles: deleting a collection or
changing its type needs the project's admin role, and is refused while the registry links one of
its versions. An unmodified W&B-style script runs under ``tracklet run --wandb`` against both.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import QUIET, REPO
from races import race
from serverproc import keyed_deployment

import tracklet
import tracklet.compat.wandb as wandb
from tracklet.errors import ArtifactError, ArtifactFinalized, ArtifactNotFound, RemoteError


def _save(name: str, text: str, *, type: str = "dataset", project: str = "p", aliases: list[str] | None = None,
          root: Path | None = None) -> tracklet.Artifact:
    artifact = tracklet.Artifact(name, type=type)
    with artifact.new_file("data.txt") as handle:
        handle.write(text)
    return artifact.save(project, root=root, aliases=aliases or [])


# ------------------------------------------------------------------ one version's calls, on a data root


def test_state_is_tracklets_on_tracklet_artifact_and_wbs_on_wandb_artifact(root, tmp_path):
    draft, wb_draft = tracklet.Artifact("ds", type="dataset"), wandb.Artifact("ds", type="dataset")
    assert (draft.state, wb_draft.state, wb_draft.is_draft()) == ("draft", "PENDING", True)
    for artifact in (draft, wb_draft):
        with artifact.new_file("data.txt") as handle:
            handle.write("same")
    draft.save("p")
    wb_draft.save("p")  # no run: stored in project p (the same content: the same version)
    assert (draft.state, wb_draft.state, wb_draft.is_draft()) == ("committed", "COMMITTED", False)
    read = wandb.Api().artifact("p/ds:v0")
    assert read.state == "COMMITTED" and tracklet.Api(root).artifact("p/ds:v0").state == "committed"
    read.delete()
    assert read.state == "DELETED"
    with pytest.raises(ArtifactNotFound):
        tracklet.Api(root).artifact("p/ds:v0")
    own = _save("other", "x")
    own.delete()
    assert own.state == "deleted"

    failed = wandb.Artifact("broken", type="dataset")
    (tmp_path / "gone.txt").write_text("x")
    failed.add_file(str(tmp_path / "gone.txt"))
    (tmp_path / "gone.txt").unlink()
    with pytest.raises(ArtifactError):
        failed.save("p")
    assert (failed.state, tracklet.Artifact.state.fget(failed)) == ("PENDING", "failed")  # W&B has no failed state


def test_commit_hash_is_the_stored_manifest_blobs_sha256(root):
    artifact = _save("ds", "one")
    blob = root / "artifacts" / "blobs" / "sha256" / artifact.commit_hash[:2] / artifact.commit_hash
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == artifact.commit_hash != artifact.digest
    assert json.loads(blob.read_bytes())["contents"]["data.txt"]["size"] == 3
    assert wandb.Api().artifact("p/ds:v0").commit_hash == artifact.commit_hash
    assert _save("ds", "two").commit_hash != artifact.commit_hash
    with pytest.raises(ArtifactError, match="has no commit hash yet"):
        _ = tracklet.Artifact("draft", type="dataset").commit_hash


def test_finalize_refuses_more_files_and_logging_still_stores_it(start, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    artifact = wandb.Artifact("ds", type="dataset")
    artifact.add_file(str(tmp_path / "a.txt"))
    artifact.finalize()
    with pytest.raises(ArtifactFinalized, match="was finalized"):
        artifact.add_file(str(tmp_path / "a.txt"), name="b.txt")
    with pytest.raises(ArtifactFinalized):
        artifact.remove("a.txt")
    with pytest.raises(ArtifactFinalized), artifact.new_file("c.txt") as handle:
        handle.write("c")
    assert [entry.path for entry in artifact.files()] == ["a.txt"]
    assert artifact.get_added_local_path_name(str(tmp_path / "a.txt")) == "a.txt"
    run = start(project="fin")
    run.log_artifact(artifact)
    assert artifact.wait().state == "COMMITTED" and [entry.path for entry in artifact.files()] == ["a.txt"]
    artifact.finalize()  # a logged version: nothing to do
    run.finish()


def test_json_encode_and_what_distributed_artifacts_say(root):
    read = (_save("ds", "one"), wandb.Api().artifact("p/ds:v0"))[1]
    assert read.json_encode() == {"_type": "artifactVersion", "_version": "v0", "id": "p/ds:v0", "version": "v0",
                                  "sequenceName": "ds", "usedAs": None}
    assert read.digest_algorithm == "sha256" and read.distributed_id is None
    with pytest.raises(ArtifactError, match="has no JSON reference yet"):
        wandb.Artifact("draft", type="dataset").json_encode()
    draft = wandb.Artifact("shard", type="dataset")
    draft.distributed_id = "job-1"
    assert draft.distributed_id == "job-1"
    run = wandb.init(project="dist", settings=wandb.Settings(x_disable_stats=True))
    for call in (run.upsert_artifact, run.finish_artifact):
        with pytest.raises(ArtifactError, match="distributed artifacts .* are not supported"):
            call(draft, distributed_id="job-1")
    run.finish()


def test_linked_artifacts_lists_the_registry_versions_linking_a_version(root):
    source = _save("model", "weights", type="model")
    assert source.linked_artifacts == [] and source.linked_artifacts() == []
    into_prod = source.link("model/digits", aliases=["production"])
    source.link("eval/digits-eval")
    found = source.linked_artifacts
    assert [(a.qualified_name, a.aliases, a.source_qualified_name) for a in found] == [
        ("eval/digits-eval:v0", ["latest"], "p/model:v0"),
        ("model/digits:v0", ["latest", "production"], "p/model:v0")]
    assert [a.qualified_name for a in source.linked_artifacts()] == ["eval/digits-eval:v0", "model/digits:v0"]
    assert into_prod.linked_artifacts == []  # a link has none, as W&B's
    read = wandb.Api().artifact("p/model:v0")
    assert [a.name for a in read.linked_artifacts] == ["digits-eval:v0", "digits:v0"]
    assert all(isinstance(a, wandb.Artifact) and a.is_link for a in read.linked_artifacts)
    wandb.Api().artifact("wandb-registry-eval/digits-eval:v0").unlink()
    assert [a.qualified_name for a in read.linked_artifacts] == ["model/digits:v0"]
    assert _save("model", "other weights", type="model").linked_artifacts == []


def test_the_names_and_kinds_are_the_real_wandbs(tmp_path):
    """Each name added here exists on the real ``wandb`` (where installed) as the same kind of
    attribute (``linked_artifacts`` a property there too; ours is also callable), and a draft's
    state is W&B's."""
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("the real wandb package is not installed")
    probe = textwrap.dedent("""
        import inspect, json
        import wandb
        from wandb.apis.public import ArtifactCollection
        assert not getattr(wandb, "_tracklet_compat", False)
        kinds = lambda cls, names: {n: type(inspect.getattr_static(cls, n)).__name__ for n in names}
        print(json.dumps({"artifact": kinds(wandb.Artifact, ARTIFACT), "collection": kinds(ArtifactCollection, COLLECTION),
                          "draft_state": wandb.Artifact("x", "dataset").state}))
    """).replace("ARTIFACT", repr(ARTIFACT_NAMES)).replace("COLLECTION", repr(COLLECTION_NAMES))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**env, "WANDB_SILENT": "true", "WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr[-3000:]
    real = json.loads(done.stdout.strip().splitlines()[-1])
    from tracklet.compat.wandb.apis._artifact_lists import ArtifactCollection

    assert real["artifact"] == {name: type(inspect.getattr_static(wandb.Artifact, name)).__name__
                                for name in ARTIFACT_NAMES}
    assert real["collection"] == {name: type(inspect.getattr_static(ArtifactCollection, name)).__name__
                                  for name in COLLECTION_NAMES}
    assert real["draft_state"] == wandb.Artifact("x", "dataset").state == "PENDING"


ARTIFACT_NAMES = ["state", "commit_hash", "finalize", "linked_artifacts", "get_added_local_path_name", "is_draft",
                  "json_encode", "distributed_id", "digest_algorithm"]
COLLECTION_NAMES = ["save", "delete", "change_type", "type", "name", "description", "tags", "updated_at"]


# ------------------------------------------------------------------ a collection, on a data root


def test_a_collection_changes_type_and_is_deleted_unless_the_registry_links_it(root):
    _save("ds", "v0", aliases=["best"])
    _save("ds", "v1")
    api = wandb.Api()
    collection = api.artifact_collection("dataset", "p/ds")
    collection.type = "table-data"
    collection.save()
    assert [v.type for v in api.artifacts("table-data", "p/ds")] == ["table-data", "table-data"]
    assert [v.version for v in api.artifact_versions("table-data", "p/ds")] == ["v1", "v0"]  # W&B's older name
    assert api.artifact_collection_exists("p/ds", "table-data") and not api.artifact_collection_exists("p/ds",
                                                                                                       "dataset")
    with pytest.raises(ArtifactError, match="has type 'table-data'; it can't take a version of type 'dataset'"):
        _save("ds", "v2")
    collection.change_type("dataset")  # W&B's older call
    assert tracklet.Api(root).artifact("p/ds:best").type == "dataset"

    # A rename is refused before anything changes (the collection's description and tags are
    # stored: test_artifact_collection_fields.py).
    renamed = api.artifact_collection("dataset", "p/ds")
    renamed.name = "digits"
    with pytest.raises(ArtifactError, match="can't rename it to 'digits'"):
        renamed.save()

    api.artifact("p/ds:v1").link("wandb-registry-model/ds")
    for call in (collection.delete, lambda: collection.change_type("model")):
        with pytest.raises(ArtifactError, match="the model registry links model/ds:v0 to its versions"):
            call()
    assert [a.version for a in tracklet.Api(root).artifact_versions("p/ds")] == ["v0", "v1"]
    registry_collection = api.artifact("wandb-registry-model/ds:v0").collection
    with pytest.raises(ArtifactError, match="registry collection wandb-registry-model/ds can't be deleted here"):
        registry_collection.delete()
    api.artifact("wandb-registry-model/ds:v0").unlink()

    collection.delete()
    assert api.artifact_collections("p", "dataset") == [] and not api.artifact_exists("p/ds:best")
    assert _save("ds", "again").version == "v2"  # numbers are never given again
    with pytest.raises(ArtifactError, match="needs a collection as 'project/name'"):
        tracklet.Api(root).delete_artifact_collection("p/ds:v2")
    with pytest.raises(ArtifactNotFound):
        tracklet.Api(root).set_artifact_collection_type("p/none", "model")


# ------------------------------------------------------------------ through a tracking server


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request, servers, tmp_path):
    """A server with keys: alice logged p/ds:v0, v1 (alias best) and p/model:v0 online (the project's
    first uploader: its admin); bob may write p; alice linked p/model:v0 into registries model and
    eval, and bob has a role in registry model only."""
    store = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    server, admin, keys = keyed_deployment(servers, tmp_path / "server", store, ["alice", "bob"])
    run = tracklet.init(project="p", dir=str(tmp_path / "alice"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
    for index, (name, type) in enumerate((("ds", "dataset"), ("ds", "dataset"), ("model", "model"))):
        (tmp_path / f"{name}.bin").write_bytes(b"bytes %d" % index)
        logged = run.log_artifact(tmp_path / f"{name}.bin", name=name, type=type, aliases=["best"] if index == 1
                                  else None).wait()
        assert logged.upload_error is None
    run.link_artifact(logged, "model/m")  # on the run's server, as W&B's
    run.link_artifact(logged, "eval/m-eval")
    run.finish()
    assert admin.put("/projects/p/members/bob", json={"role": "write"}).status_code in (200, 204)
    assert admin.put("/registries/model/members/bob", json={"role": "viewer"}).status_code == 200
    admin.close()
    yield server, keys, logged, store or f"sqlite:///{tmp_path / 'server' / 'store.sqlite'}"


def _remote(server, key: str) -> tracklet.Api:
    return tracklet.Api(base_url=server.url, api_key=key)


def test_server_linked_artifacts_and_commit_hash_of_an_online_runs_version(deployment):
    server, keys, logged, _ = deployment
    assert [a.qualified_name for a in logged.linked_artifacts] == ["eval/m-eval:v0", "model/m:v0"]  # its server's
    logged.link("local/m")  # artifact.link() of an online run's version: the data root's registry, listed after
    assert [a.qualified_name for a in logged.linked_artifacts] == ["eval/m-eval:v0", "model/m:v0", "local/m:v0"]
    alice, bob = _remote(server, keys["alice"]), _remote(server, keys["bob"])
    read = alice.artifact("p/model:v0")
    assert read.commit_hash == logged.commit_hash  # the server's copy and the local one: one manifest
    assert [(a.qualified_name, a.aliases) for a in read.linked_artifacts] == [
        ("eval/m-eval:v0", ["latest"]), ("model/m:v0", ["latest"])]
    assert [a.qualified_name for a in bob.artifact("p/model:v0").linked_artifacts] == ["model/m:v0"]  # no eval role
    assert bob.artifact("p/ds:v0").linked_artifacts == []
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['bob']}"}, timeout=60) as http:
        missing = http.get("/api/v1/projects/p/artifacts/model/versions/v9/links")
        assert missing.status_code == 404 and "p/model:v9 does not exist" in missing.json()["detail"]  # not a route's
        assert http.get("/api/v1/projects/p/artifacts/model/versions/latest/links").status_code == 400
    alice.close()
    bob.close()


def test_server_collection_type_and_deletion_need_the_admin_role_and_no_registry_link(deployment):
    server, keys, _, store = deployment
    alice, bob = _remote(server, keys["alice"]), _remote(server, keys["bob"])
    for call in (lambda: bob.set_artifact_collection_type("p/ds", "table-data"),
                 lambda: bob.delete_artifact_collection("p/ds")):
        with pytest.raises(RemoteError, match="403"):
            call()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['bob']}"}, timeout=60) as http:
        refused = http.delete("/api/v1/projects/p/artifacts/ds")
        assert refused.status_code == 403 and "admin" in refused.text
    assert [a.type for a in bob.artifact_versions("p/ds")] == ["dataset", "dataset"]  # nothing changed

    assert alice.set_artifact_collection_type("p/ds", "table-data") == "dataset"
    assert [a.type for a in bob.artifact_versions("p/ds")] == ["table-data", "table-data"]
    with pytest.raises(ArtifactError, match="invalid|control character"):
        alice.set_artifact_collection_type("p/ds", "bad\ntype")
    for call in (lambda: alice.set_artifact_collection_type("p/model", "weights"),
                 lambda: alice.delete_artifact_collection("p/model")):
        with pytest.raises(ArtifactError, match="the model registry links eval/m-eval:v0, model/m:v0"):
            call()
    assert alice.artifact("p/model:v0").type == "model"

    deleted = alice.delete_artifact_collection("p/ds")
    assert [(info.version, info.aliases[1:]) for info in deleted] == [(0, []), (1, ["latest", "best"])]
    with pytest.raises(ArtifactNotFound):
        bob.artifact("p/ds:best")
    assert [c["name"] for c in bob.artifact_collections("p")] == ["model"]
    with pytest.raises(ArtifactNotFound):
        alice.delete_artifact_collection("p/ds")
    engine = sa.create_engine(store)
    with engine.connect() as connection:
        events = connection.execute(sa.text("SELECT kind, subject, actor FROM event_outbox WHERE subject LIKE 'p/ds%' "
                                            "AND kind IN ('artifact.deleted', 'alias.removed')")).all()
    engine.dispose()
    assert sorted(tuple(row) for row in events) == [("alias.removed", "p/ds:best", "alice"),
                                                    ("artifact.deleted", "p/ds:v0", "alice"),
                                                    ("artifact.deleted", "p/ds:v1", "alice")]
    alice.close()
    bob.close()


# ------------------------------------------------------------------ an unmodified W&B-style script

SCRIPT = """
import json, os
import wandb

assert getattr(wandb, "_tracklet_compat", False), "import wandb must be tracklet's here"
with open("weights.bin", "wb") as f:
    f.write(b"weights")
with wandb.init(project="wb", job_type="train") as run:
    model = wandb.Artifact("model", type="model")
    model.add_file("weights.bin")
    states = [model.state]
    model.finalize()
    try:
        model.add_file("weights.bin", name="again.bin")
        finalized = None
    except Exception as error:
        finalized = type(error).__name__
    run.log_artifact(model)
    model.wait()
    states.append(model.state)
    run.link_artifact(model, "wandb-registry-model/digits", aliases=["staging"])
    scratch = wandb.Artifact("scratch", type="dataset")
    scratch.add_file("weights.bin")
    run.log_artifact(scratch)

api = wandb.Api()
read = api.artifact("wb/model:latest")
linked = [[a.name, a.aliases] for a in read.linked_artifacts]
collection = api.artifact_collection("model", "wb/model")
try:
    collection.delete()
    refused = None
except Exception as error:
    refused = str(error)
collection = api.artifact_collection("dataset", "wb/scratch")
collection.type = "tmp"
collection.save()
kept = [v.type for v in api.artifacts("tmp", "wb/scratch")]
api.artifact_collection("tmp", "wb/scratch").delete()
print(json.dumps({"states": states, "finalized": finalized, "commit_hash": read.commit_hash,
                  "same_hash": read.commit_hash == model.commit_hash, "read_state": read.state, "linked": linked,
                  "refused": refused, "kept": kept, "exists": api.artifact_collection_exists("wb/scratch", "tmp")}))
"""


def _run_script(tmp_path: Path, env: dict[str, str]) -> dict:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "train.py").write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run([sys.executable, "-m", "tracklet", "run", "--wandb", "--", sys.executable, "train.py"],
                          capture_output=True, text=True, timeout=300, cwd=work,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_CONSOLE": "off",
                               "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false", **env})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["states"] == ["PENDING", "COMMITTED"] and found["read_state"] == "COMMITTED"
    assert found["finalized"] == "ArtifactFinalized" and found["same_hash"] and len(found["commit_hash"]) == 64
    assert found["linked"] == [["digits:v0", ["latest", "staging"]]]
    assert "the model registry links model/digits:v0" in found["refused"]
    assert found["kept"] == ["tmp"] and found["exists"] is False
    return found


def test_an_unmodified_wandb_script_against_the_data_root(root, tmp_path):
    _run_script(tmp_path, {"TRACKLET_DIR": str(root)})
    assert tracklet.Api(root).artifact_collections("wb") == [
        {"name": "model", "type": "model", "versions": 1, "latest": "v0", "description": "", "tags": []}]


def test_the_same_script_online_against_a_server(tmp_path, servers):
    server, admin, keys = keyed_deployment(servers, tmp_path / "server", None, ["alice"])
    admin.close()
    _run_script(tmp_path, {"TRACKLET_DIR": str(tmp_path / "writer"), "TRACKLET_MODE": "online",
                           "TRACKLET_BASE_URL": server.url, "TRACKLET_API_KEY": keys["alice"]})
    with _remote(server, keys["alice"]) as api:
        assert [c["name"] for c in api.artifact_collections("wb")] == ["model"]


# ------------------------------------------------------------------ a collection's deletion races a link

ROUNDS = 8




@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_collection_is_never_deleted_under_a_registry_link_made_at_the_same_moment(servers, tmp_path, request,
                                                                                    database):
    """Collection ``c<n>`` (one version) is deleted while its version is linked, at once: exactly
    one of the two wins each round (the deletion holds the collection's lock that a link holds),
    and every registry version left links a version that exists."""
    store_url = request.getfixturevalue("pg_url") if database == "postgresql" else None
    server = servers(tmp_path / "server", store=store_url)
    run = tracklet.init(project="race", dir=str(tmp_path / "writer"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    for index in range(ROUNDS):
        (tmp_path / "m.bin").write_bytes(b"content %d" % index)
        assert run.log_artifact(tmp_path / "m.bin", name=f"c{index}", type="model").wait().upload_error is None
    run.finish()
    clients = [httpx.Client(base_url=server.url, timeout=60), httpx.Client(base_url=server.url, timeout=60)]
    outcomes = []
    for index in range(ROUNDS):
        def link(index=index) -> bool:
            response = clients[0].post("/api/v1/registries/model/collections/m/links",
                                       json={"project": "race", "name": f"c{index}", "version": 0})
            assert response.status_code in (200, 404), response.text
            return response.status_code == 200

        def delete(index=index) -> bool:
            response = clients[1].delete(f"/api/v1/projects/race/artifacts/c{index}")
            assert response.status_code in (200, 409), response.text
            assert response.status_code == 200 or "the model registry links model/m:v" in response.json()["detail"]
            return response.status_code == 200

        outcomes.append(race(link, delete))
    assert all(linked != deleted for linked, deleted in outcomes), outcomes
    answer = clients[0].get("/api/v1/registries/model/collections/m/versions")
    for found in answer.json()["links"] if answer.status_code == 200 else []:
        source = f"/api/v1/projects/race/artifacts/{found['source_name']}/versions/v{found['source_version']}"
        assert clients[0].get(source).status_code == 200, found
    for client in clients:
        client.close()
