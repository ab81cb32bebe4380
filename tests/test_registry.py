"""The model registry (tracklet/registry/, docs/registry.md): linking versions into collections
without copying, loading them by every name a user writes, and the alias history; in local mode
and against a real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import QUIET, REPO

import tracklet
from tracklet.core.recordlog import read_log
from tracklet.errors import AliasMoved, ArtifactNameError, ArtifactNotFound, RegistryError
from tracklet.proto import records_pb2 as pb


def _blob_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "artifacts").rglob("*") if p.is_file() and "blobs" in p.parts)


def _model(tmp_path: Path, content: bytes, name: str = "model.pt") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_link_model_then_load_it_by_every_registry_name(start, root, tmp_path):
    run = start(project="train")
    first = run.link_model(_model(tmp_path, b"weights one"), registered_model_name="mnist-cnn", aliases=["staging"])
    second = run.link_model(_model(tmp_path, b"weights two"), registered_model_name="mnist-cnn", aliases=["staging"])
    run.finish()
    assert (first.qualified_name, second.qualified_name) == ("model/mnist-cnn:v0", "model/mnist-cnn:v1")
    # The run's log says what it linked (proto field 23), for lineage.
    records = [pb.Record.FromString(payload) for _, payload in read_log(Path(run.dir) / "run.tlog").payloads]
    linked = [r.artifact_linked for r in records if r.WhichOneof("kind") == "artifact_linked"]
    assert [(m.registry, m.collection, m.version, m.artifact.name, m.artifact.version, list(m.aliases))
            for m in linked] == [("model", "mnist-cnn", 0, "model.pt", 0, ["latest", "staging"]),
                                 ("model", "mnist-cnn", 1, "model.pt", 1, ["latest", "staging"])]
    assert second.is_link and second.source_qualified_name == "train/model.pt:v1"

    api = tracklet.Api()
    names = {"model/mnist-cnn:staging": b"weights two", "models:/mnist-cnn@staging": b"weights two",
             "models:/mnist-cnn/0": b"weights one", "models:/mnist-cnn": b"weights two",
             "wandb-registry-model/mnist-cnn:v0": b"weights one",
             "my-team/wandb-registry-model/mnist-cnn:latest": b"weights two",
             "model-registry/mnist-cnn:v1": b"weights two"}
    for name, content in names.items():
        found = api.artifact(name)
        assert found.type == "model", name
        assert Path(found.download(tmp_path / "dl" / name.replace("/", "_").replace(":", "_")),
                    "model.pt").read_bytes() == content, name
    staged = api.artifact("models:/mnist-cnn@staging")
    assert (staged.version, staged.aliases, staged.name) == ("v1", ["latest", "staging"], "mnist-cnn")

    # A run loading a registered model records the artifact version itself as its input (lineage).
    evaluator = start(project="eval")
    used = evaluator.use_artifact("models:/mnist-cnn@staging")
    assert used.source_qualified_name == "train/model.pt:v1"
    evaluator.finish()
    api.index()
    assert [r.id for r in api.artifact("train/model.pt:v1").used_by()] == [evaluator.id]


def test_linking_copies_no_bytes_and_a_second_link_is_the_same_version(start, root, tmp_path):
    run = start(project="train")
    artifact = tracklet.Artifact("classifier", type="model")
    artifact.add_file(_model(tmp_path, os.urandom(200_000)))
    run.log_artifact(artifact)
    artifact.wait()
    blobs = _blob_files(root)
    linked = run.link_artifact(artifact, "vision/classifier", aliases=["candidate"])
    again = artifact.link("vision/classifier", aliases=["reviewed"])
    run.finish()
    assert _blob_files(root) == blobs  # the registry holds links: no blob was added
    assert (linked.version, again.version) == ("v0", "v0")
    assert tracklet.Api().artifact("vision/classifier:reviewed").aliases == ["latest", "candidate", "reviewed"]


def test_a_project_artifact_keeps_its_name_until_a_registry_collection_takes_it(start, root, tmp_path):
    run = start(project="vision")
    artifact = run.log_artifact(_model(tmp_path, b"data"), name="mnist", type="dataset")
    artifact.wait()
    run.finish()
    api = tracklet.Api()
    assert api.registry_collections() == []
    with pytest.raises(ArtifactNotFound, match="no registry collection model/x"):
        api.alias_history("model/x")
    assert not (root / "artifacts" / "registry.sqlite").exists()  # reading made no registry
    assert api.artifact("vision/mnist:latest").qualified_name == "vision/mnist:v0"  # no registry: the project's
    with pytest.raises(ArtifactNotFound, match="no registry collection vision/other"):
        api.artifact("wandb-registry-vision/other")  # W&B's prefix always names a registry
    assert api.artifact("vision/mnist").link("datasets/mnist").qualified_name == "datasets/mnist:v0"
    assert api.artifact("datasets/mnist").source_qualified_name == "vision/mnist:v0"


def test_bad_registry_names_and_types_are_refused_naming_the_problem(start, root, tmp_path):
    run = start(project="p")
    model = run.link_model(_model(tmp_path, b"w"), registered_model_name="net")
    data = run.log_artifact(_model(tmp_path, b"d", "data.csv"), type="dataset")
    with pytest.raises(RegistryError, match="holds versions of type 'model'"):
        run.link_artifact(data, "model/net")
    for target in ("model/net:v1", "net", "a/b/c/d", "model/../x"):
        with pytest.raises(ArtifactNameError):
            run.link_artifact(model, target)
    run.finish()
    api = tracklet.Api()
    for reference in ("models:/net@", "models:/net/x", "models:net"):
        with pytest.raises(ArtifactNameError, match="model URI"):
            api.artifact(reference)
    with pytest.raises(ArtifactNotFound, match="has no alias 'production'"):
        api.artifact("models:/net@production")
    with pytest.raises(ArtifactNotFound, match="is of type 'model', not 'dataset'"):
        api.artifact("model/net:latest", type="dataset")


def test_latest_is_not_an_alias_anyone_points_or_protects(start, root, tmp_path):
    # 'latest' always names the highest version: set by hand it became a second 'latest' row that
    # stayed on v0 once v1 was linked (v0 then read ['latest', ...] and `registry ls` showed both).
    run = start(project="p")
    run.link_model(_model(tmp_path, b"w0"), registered_model_name="net")
    registry = tracklet.Api().registry
    with pytest.raises(ArtifactNameError, match="'latest' is not allowed: it always names the newest version"):
        registry.set_alias("model", "net", "latest", "v0")
    with pytest.raises(ArtifactNameError, match="'latest' is not allowed"):
        registry.protect("model", "net", "latest", 1)
    cli = subprocess.run([sys.executable, "-m", "tracklet", "registry", "alias", "model/net", "latest", "v0"],
                         capture_output=True, text=True, env={**os.environ, "TRACKLET_DIR": str(root)})
    assert cli.returncode != 0 and "Traceback" not in cli.stderr and "'latest' is not allowed" in cli.stderr
    run.link_model(_model(tmp_path, b"w1"), registered_model_name="net")
    run.finish()
    assert "latest" not in tracklet.Api().artifact("model/net:v0").aliases
    assert tracklet.Api().artifact("model/net:latest").version == "v1"


def test_every_alias_move_is_kept_with_who_when_and_why(start, root, tmp_path):
    run = start(project="p")
    for n in range(3):
        run.link_model(_model(tmp_path, f"w{n}".encode()), registered_model_name="net")
    run.finish()
    api = tracklet.Api()
    registry = api.registry
    first = registry.set_alias("model", "net", "production", "v0", actor="alice", reason="first release")
    assert registry.set_alias("model", "net", "production", "v0", actor="bob") is None  # no move, no event
    registry.set_alias("model", "net", "production", "v2", actor="bob", reason="better accuracy")
    registry.set_alias("model", "net", "staging", "latest", actor="carol")
    registry.set_alias("model", "net", "production", "v1", actor="alice", reason="rollback: v2 regressed")
    with pytest.raises(RegistryError, match="name the version you read it on"):
        registry.remove_alias("model", "net", "staging", actor="carol")
    with pytest.raises(AliasMoved, match=r"'staging' of model/net names v2 now, not v0 as read"):
        registry.remove_alias("model", "net", "staging", expected=0, actor="carol")  # a stale caller: nothing removed
    assert registry.resolve("model", "net", "staging").version == 2
    registry.remove_alias("model", "net", "staging", expected=2, actor="carol", reason="cleanup")
    assert api.artifact("models:/net@production").version == "v1"

    moves = [(e.alias, e.from_version, e.to_version, e.actor, e.reason) for e in api.alias_history("model/net")]
    assert moves == [("production", None, 0, "alice", "first release"),
                     ("production", 0, 2, "bob", "better accuracy"),
                     ("staging", None, 2, "carol", ""),
                     ("production", 2, 1, "alice", "rollback: v2 regressed"),
                     ("staging", 2, None, "carol", "cleanup")]
    production = api.alias_history("model/net", alias="production")
    assert [e.to_version for e in production] == [0, 2, 1]
    assert [e.to_version for e in api.alias_history("model/net:production")] == [0, 2, 1]
    assert production[0].id == first.id and production[0].at <= production[-1].at
    with pytest.raises(ArtifactNotFound, match="no registry collection model/other"):
        api.alias_history("model/other")


# ---------------------------------------------------------------- a server


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_server_mode_links_resolves_and_keeps_history(servers, tmp_path, monkeypatch, request, database):
    store = request.getfixturevalue("pg_url") if database == "postgresql" else None
    server = servers(tmp_path / "server", store=store)
    run = tracklet.init(project="train", id="t1", dir=str(tmp_path / "writer"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    run.link_model(_model(tmp_path, b"weights one"), registered_model_name="mnist", aliases=["production"])
    linked = run.link_model(_model(tmp_path, b"weights two"), registered_model_name="mnist", aliases=["staging"])
    run.finish()
    assert linked.qualified_name == "model/mnist:v1"

    # Another machine: a fresh data root, the server's registry.
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    with tracklet.Api(base_url=server.url) as api:
        production = api.artifact("models:/mnist@production")
        assert (production.version, production.source_qualified_name) == ("v0", "train/model.pt:v0")
        assert Path(production.download(tmp_path / "prod"), "model.pt").read_bytes() == b"weights one"
        assert api.artifact("wandb-registry-model/mnist:staging").version == "v1"
        api.registry.set_alias("model", "mnist", "production", "v1", reason="promote after eval")
        assert Path(api.artifact("model/mnist:production").download(tmp_path / "prod2"),
                    "model.pt").read_bytes() == b"weights two"
        history = api.alias_history("model/mnist", alias="production")
        assert [(e.from_version, e.to_version, e.actor, e.reason) for e in history] == [
            (None, 0, "dev", "linked by run train/t1"), (0, 1, "dev", "promote after eval")]
        assert api.registry_collections("model")[0]["aliases"] == {"production": "v1", "staging": "v1"}
    if store is not None:  # each registry change is a server event (for automations), made in its transaction
        engine = sa.create_engine(store)
        with engine.connect() as connection:
            events = connection.execute(sa.text("SELECT kind, subject FROM event_outbox WHERE subject LIKE 'model/%' "
                                                "ORDER BY id")).all()
        engine.dispose()
        assert [tuple(event) for event in events] == [
            ("version.linked", "model/mnist:v0"), ("alias.moved", "model/mnist:production"),
            ("version.linked", "model/mnist:v1"), ("alias.moved", "model/mnist:staging"),
            ("alias.moved", "model/mnist:production")]
    # An online run loads a registered model from the server.
    evaluator = tracklet.init(project="eval", dir=str(tmp_path / "evaluator"), mode="online",
                              settings={**QUIET, "base_url": server.url})
    assert Path(evaluator.use_artifact("models:/mnist@production").download(tmp_path / "e"),
                "model.pt").read_bytes() == b"weights two"
    evaluator.finish()


def test_a_servers_registry_version_moves_aliases_with_append_and_save(servers, tmp_path, monkeypatch):
    """``artifact.aliases.append(...)`` + ``save()`` on a version read from a server's registry
    moves the alias there (W&B's way), recorded in the server's alias history."""
    server = servers(tmp_path / "server")
    run = tracklet.init(project="train", id="t1", dir=str(tmp_path / "writer"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    run.link_model(_model(tmp_path, b"weights one"), registered_model_name="mnist", aliases=["staging"])
    run.finish()
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    with tracklet.Api(base_url=server.url) as api:
        version = api.artifact("model/mnist:v0")
        version.aliases.append("canary")
        version.aliases.remove("staging")
        version.save()
        assert api.artifact("model/mnist:canary").version == "v0"
        with pytest.raises(ArtifactNotFound, match="no alias 'staging'"):
            api.artifact("model/mnist:staging")
        history = api.alias_history("model/mnist")
        assert [(e.alias, e.from_version, e.to_version, e.reason) for e in history[-2:]] == [
            ("staging", 0, None, "artifact.save()"), ("canary", None, 0, "artifact.save()")]

def test_the_local_dashboard_server_reads_the_data_roots_registry(start, root, tmp_path):
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    app = create_app(root, auth=False, shared_root=True, index_on_start=False)
    with TestClient(app) as http:
        assert http.get("/api/v1/registries").json() == {"collections": []}  # nothing linked yet: no file made
        assert http.get("/api/v1/registries/model/collections/net/history").status_code == 404
        assert not (root / "artifacts" / "registry.sqlite").exists()
        run = start(project="p")
        run.link_model(_model(tmp_path, b"w"), registered_model_name="net", aliases=["production"])
        run.finish()
        assert [c["collection"] for c in http.get("/api/v1/registries").json()["collections"]] == ["net"]
        version = http.get("/api/v1/registries/model/collections/net/versions/production").json()
        assert (version["link"]["path"], version["version"]["name"]) == ("model/net:v0", "model.pt")
        events = http.get("/api/v1/registries/model/collections/net/history").json()["events"]
        assert [(e["alias"], e["to_version"]) for e in events] == [("production", 0)]


def test_an_online_run_whose_server_is_down_loads_from_the_local_registry(start, root, tmp_path):
    from conftest import _free_port

    offline = start(project="p")
    offline.link_model(_model(tmp_path, b"local weights"), registered_model_name="net", aliases=["production"])
    offline.finish()
    # upload_timeout: finish() would otherwise wait its default 30 s for an upload to the server that is down.
    run = start(project="p", mode="online", settings={"base_url": f"http://127.0.0.1:{_free_port()}",
                                                      "upload_timeout": 1})
    found = run.use_artifact("models:/net@production")
    assert found.source_qualified_name == "p/model.pt:v0"
    assert Path(found.download(tmp_path / "dl"), "model.pt").read_bytes() == b"local weights"
    assert run.use_artifact("p/model.pt:latest").version == "v0"  # an artifact's two-part name too
    with pytest.raises(tracklet.TrackletError, match="cannot reach"):
        run.use_artifact("models:/other@production")  # in neither: the server's error is the one to see
    run.finish()


def test_processes_linking_into_one_collection_at_once_get_distinct_versions(root):
    from tracklet.artifacts.registry import VersionInfo
    from tracklet.artifacts.storage import open_store

    versions = open_store(root).registry  # a link holds its source version: they must exist
    for project in "abc":
        for n in range(15):
            versions.commit(VersionInfo(project=project, name="ckpt", version=-1, type="model", digest=f"{n:064x}",
                                        manifest="a" * 64, size=1, file_count=1), [])
    script = """
import sys
from tracklet.artifacts.registry import VersionInfo
from tracklet.registry.service import open_local

registry = open_local(sys.argv[1])
for n in range(15):
    source = VersionInfo(project=sys.argv[2], name="ckpt", version=n, type="model", digest=f"{n:064x}",
                         manifest="a" * 64, size=1, file_count=1)
    registry.link("model", "shared", source, ["newest"], actor=sys.argv[2])
"""
    procs = [subprocess.Popen([sys.executable, "-c", script, str(root), name], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}) for name in ("a", "b", "c")]
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read() if proc.stderr else ""
    links = tracklet.Api(root).registry.versions("model", "shared")
    assert [link.version for link in links] == list(range(45))
    assert sorted(link.source for link in links) == sorted(f"{p}/ckpt:v{n}" for p in "abc" for n in range(15))
    moves = tracklet.Api(root).alias_history("model/shared", alias="newest")
    assert len(moves) == 45 and [m.from_version for m in moves[1:]] == [m.to_version for m in moves[:-1]]
