"""The artifact read routes (server/routes_artifacts_read.py) over a data root where real runs
logged and used real artifacts (tests/artifact_chain.py), through the real app: collections,
versions, the file browser, a run's artifacts, the lineage graph, and project roles."""

from __future__ import annotations

import json
import shutil

import pytest
from artifact_chain import MNIST_FILES, record_chain
from fastapi.testclient import TestClient

from tracklet.server.app import create_app
from tracklet.store import Store
from tracklet.server.models import (
    ArtifactCollectionsResponse,
    ArtifactFilesResponse,
    ArtifactVersionResponse,
    ArtifactVersionsResponse,
    LineageResponse,
    RunArtifactsResponse,
)


@pytest.fixture(scope="module")
def chain_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("chain")
    record_chain(base / "data", base / "scratch")
    return base / "data"


@pytest.fixture
def client(chain_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(chain_root, root)
    with TestClient(create_app(root, auth=False, shared_root=True)) as http:
        yield http


def _ok(response, model):
    assert response.status_code == 200, response.text
    body = response.json()
    # The body is exactly what its model describes (no stray or missing field).
    assert json.loads(model.model_validate(body).model_dump_json(exclude_unset=True)) == body
    return body


def test_collections_list_types_versions_and_aliases(client):
    body = _ok(client.get("/api/v1/projects/chain/artifacts"), ArtifactCollectionsResponse)
    listed = {c["name"]: c for c in body["collections"]}
    assert sorted(listed) == ["mnist", "model", "report"]
    assert listed["mnist"]["type"] == "dataset" and listed["mnist"]["versions"] == 2
    assert listed["mnist"]["latest"] == "v1" and listed["mnist"]["aliases"] == ["latest-refresh"]
    assert listed["model"]["aliases"] == ["best"] and listed["model"]["updated_at"] > 0
    only = _ok(client.get("/api/v1/projects/chain/artifacts", params={"type": "model"}), ArtifactCollectionsResponse)
    assert [c["name"] for c in only["collections"]] == ["model"]
    assert client.get("/api/v1/projects/nothing/artifacts").json() == {"collections": []}
    assert client.get("/api/v1/projects/-bad/artifacts").status_code == 400


def test_versions_newest_first_with_aliases_metadata_and_logging_run(client):
    body = _ok(client.get("/api/v1/projects/chain/artifacts/mnist/versions"), ArtifactVersionsResponse)
    assert body["total"] == 2 and body["type"] == "dataset" and body["damaged"] == []
    v1, v0 = body["versions"]
    assert (v1["version"], v0["version"]) == ("v1", "v0")
    assert v1["aliases"] == ["v1", "latest", "latest-refresh"] and v0["aliases"] == ["v0", "raw"]
    assert v0["file_count"] == len(MNIST_FILES) and v0["size"] == sum(map(len, MNIST_FILES.values()))
    assert v0["metadata"] == {"rows": 3, "split": [2, 1]} and v0["description"] == "28x28 digits"
    assert v0["logged_by"] == "chain/prep" and len(v0["digest"]) == 64
    page = _ok(client.get("/api/v1/projects/chain/artifacts/mnist/versions", params={"offset": 1, "limit": 1}),
               ArtifactVersionsResponse)
    assert [v["version"] for v in page["versions"]] == ["v0"] and page["total"] == 2
    assert client.get("/api/v1/projects/chain/artifacts/nope/versions").status_code == 404
    assert client.get("/api/v1/projects/chain/artifacts/a..b/versions").status_code == 400


def test_one_version_by_alias_with_the_runs_that_logged_and_used_it(client):
    body = _ok(client.get("/api/v1/projects/chain/artifacts/mnist/versions/raw"), ArtifactVersionResponse)
    assert body["version"]["version"] == "v0"
    assert [(r["project"], r["run_id"], r["name"]) for r in body["logged_by"]] == [("chain", "prep", "prepare-data")]
    assert [(r["project"], r["run_id"]) for r in body["used_by"]] == [("chain", "train"), ("secret", "spy")]
    latest = _ok(client.get("/api/v1/projects/chain/artifacts/mnist/versions/latest"), ArtifactVersionResponse)
    assert latest["version"]["version"] == "v1" and latest["used_by"] == []
    missing = client.get("/api/v1/projects/chain/artifacts/mnist/versions/v7")
    assert missing.status_code == 404 and "v7" in missing.json()["detail"]
    assert client.get("/api/v1/projects/chain/artifacts/mnist/versions/nosuchalias").status_code == 404


def test_file_browser_lists_a_directory_at_a_time_with_sizes_and_digests(client):
    url = "/api/v1/projects/chain/artifacts/mnist/versions/v0/files"
    top = _ok(client.get(url), ArtifactFilesResponse)
    assert [(d["name"], d["files"], d["size"]) for d in top["dirs"]] == [("images", 3, 1024 + 2048 + 100)]
    assert [(f["path"], f["size"]) for f in top["files"]] == [("README.md", 9), ("labels.csv", 21)]
    assert all(len(f["digest"]) == 64 and f["ref"] is None for f in top["files"])
    assert top["total"] == 3 and top["next_offset"] is None
    images = _ok(client.get(url, params={"dir": "images"}), ArtifactFilesResponse)
    assert [d["path"] for d in images["dirs"]] == ["images/test", "images/train"] and images["files"] == []
    train = _ok(client.get(url, params={"dir": "images/train"}), ArtifactFilesResponse)
    assert [(f["name"], f["size"]) for f in train["files"]] == [("0.bin", 1024), ("1.bin", 2048)]
    import hashlib

    assert train["files"][0]["digest"] == hashlib.sha256(MNIST_FILES["images/train/0.bin"]).hexdigest()
    # Pages: directories first, then files; next_offset until the end.
    first = _ok(client.get(url, params={"limit": 2}), ArtifactFilesResponse)
    assert [d["name"] for d in first["dirs"]] == ["images"] and [f["name"] for f in first["files"]] == ["README.md"]
    assert first["next_offset"] == 2
    second = _ok(client.get(url, params={"limit": 2, "offset": 2}), ArtifactFilesResponse)
    assert second["dirs"] == [] and [f["name"] for f in second["files"]] == ["labels.csv"]
    assert second["next_offset"] is None
    # A filter matches paths at any depth, flat.
    found = _ok(client.get(url, params={"q": "0.BIN"}), ArtifactFilesResponse)
    assert [f["path"] for f in found["files"]] == ["images/test/0.bin", "images/train/0.bin"]
    assert found["total"] == 2 and found["dirs"] == []
    assert client.get(url, params={"dir": "nothere"}).status_code == 404
    assert client.get(url, params={"limit": 5000}).status_code == 422  # pages are bounded


def test_a_damaged_manifest_is_a_clear_error_and_other_collections_still_list(client, tmp_path):
    root = tmp_path / "data"
    (root / "artifacts" / "projects" / "chain" / "report" / "versions" / "v0.json").write_text("{not json")
    body = _ok(client.get("/api/v1/projects/chain/artifacts"), ArtifactCollectionsResponse)
    listed = {c["name"]: c for c in body["collections"]}
    assert "damaged" in listed["report"]["error"] and listed["mnist"]["versions"] == 2
    # One damaged version file: its row says so, the collection's other versions are listed.
    (root / "artifacts" / "projects" / "chain" / "mnist" / "versions" / "v0.json").write_text("[]")
    versions = _ok(client.get("/api/v1/projects/chain/artifacts/mnist/versions"), ArtifactVersionsResponse)
    assert [v["version"] for v in versions["versions"]] == ["v1"] and versions["total"] == 2
    assert [(d["version"], d["index"]) for d in versions["damaged"]] == [("v0", 0)]
    assert "v0.json is damaged" in versions["damaged"][0]["detail"]
    manifest = json.loads((root / "artifacts" / "projects" / "chain" / "model" / "versions" / "v0.json").read_text())
    path = root / "artifacts" / "blobs" / "sha256" / manifest["manifest"][:2] / manifest["manifest"]
    path.chmod(0o644)
    path.write_bytes(b"garbage")
    damaged = client.get("/api/v1/projects/chain/artifacts/model/versions/v0/files")
    assert damaged.status_code == 500 and "damaged" in damaged.json()["detail"]


def test_stray_files_and_foreign_directories_in_the_registry_are_not_collections(client, tmp_path):
    project = tmp_path / "data" / "artifacts" / "projects" / "chain"
    (project / ".DS_Store").write_bytes(b"\0\1")  # a file where collections are directories
    (project / "notes.txt").write_text("mine")
    (project / "bad name" / "versions").mkdir(parents=True)  # not an artifact name
    (project / "bad name" / "versions" / "v0.json").write_text("{}")
    (project / ".git").mkdir()
    body = _ok(client.get("/api/v1/projects/chain/artifacts"), ArtifactCollectionsResponse)
    assert [c["name"] for c in body["collections"]] == ["mnist", "model", "report"]
    from tracklet.artifacts.registry import LocalRegistry

    assert LocalRegistry(project.parent.parent).collections("chain") == ["mnist", "model", "report"]


def test_run_artifacts_lists_logged_and_used_versions(client):
    body = _ok(client.get("/api/v1/runs/chain/train/artifacts"), RunArtifactsResponse)
    assert [(a["name"], a["version"], a["type"]) for a in body["used"]] == [("mnist", "v0", "dataset")]
    assert [(a["name"], a["version"], a["aliases"]) for a in body["logged"]] == [("model", "v0", ["v0", "latest", "best"])]
    assert _ok(client.get("/api/v1/runs/chain/other/artifacts"), RunArtifactsResponse) == {"logged": [], "used": []}
    assert client.get("/api/v1/runs/chain/ghost/artifacts").status_code == 404


def _graph(body: dict) -> tuple[dict[str, int], set[tuple[str, str, str]]]:
    return {n["id"]: n["depth"] for n in body["nodes"]}, {(e["source"], e["target"], e["kind"]) for e in body["edges"]}


CHAIN_EDGES = {
    ("run:chain/prep", "artifact:chain/mnist:v0", "logged"),
    ("artifact:chain/mnist:v0", "run:chain/train", "used"),
    ("run:chain/train", "artifact:chain/model:v0", "logged"),
    ("artifact:chain/model:v0", "run:chain/evaluate", "used"),
    ("run:chain/evaluate", "artifact:chain/report:v0", "logged"),
    ("artifact:chain/report:v0", "run:chain/evaluate", "used"),  # it used what it logged
}


def test_lineage_from_a_run_follows_the_chain_several_hops_both_ways(client):
    body = _ok(client.get("/api/v1/projects/chain/lineage", params={"run": "evaluate", "hops": 5}), LineageResponse)
    nodes, edges = _graph(body)
    assert body["root"] == "run:chain/evaluate" and not body["truncated"]
    assert nodes == {"run:chain/evaluate": 0, "artifact:chain/model:v0": 1, "artifact:chain/report:v0": 1,
                     "run:chain/train": 2, "artifact:chain/mnist:v0": 3, "run:chain/prep": 4, "run:secret/spy": 4}
    assert edges == CHAIN_EDGES | {("artifact:chain/mnist:v0", "run:secret/spy", "used")}
    runs = {n["id"]: n for n in body["nodes"] if n["kind"] == "run"}
    assert runs["run:chain/train"]["name"] == "train-cnn" and runs["run:chain/train"]["state"] == "finished"
    model = next(n for n in body["nodes"] if n["id"] == "artifact:chain/model:v0")
    assert model["type"] == "model" and model["aliases"] == ["v0", "latest", "best"] and "run_id" not in model
    # Fewer hops: only what is that close.
    near = _ok(client.get("/api/v1/projects/chain/lineage", params={"run": "evaluate", "hops": 2}), LineageResponse)
    assert set(_graph(near)[0]) == {"run:chain/evaluate", "artifact:chain/model:v0", "artifact:chain/report:v0",
                                     "run:chain/train"}
    # A node limit cuts the graph and says so.
    small = _ok(client.get("/api/v1/projects/chain/lineage", params={"run": "evaluate", "hops": 5, "max_nodes": 3}),
                LineageResponse)
    assert len(small["nodes"]) == 3 and small["truncated"]
    assert all(e["source"] in _graph(small)[0] and e["target"] in _graph(small)[0] for e in small["edges"])


def test_lineage_from_a_version_and_bad_requests(client):
    body = _ok(client.get("/api/v1/projects/chain/lineage", params={"artifact": "mnist:raw", "hops": 1}),
               LineageResponse)
    nodes, edges = _graph(body)
    assert body["root"] == "artifact:chain/mnist:v0"
    assert nodes == {"artifact:chain/mnist:v0": 0, "run:chain/prep": 1, "run:chain/train": 1, "run:secret/spy": 1}
    alone = _ok(client.get("/api/v1/projects/chain/lineage", params={"artifact": "mnist:v1"}), LineageResponse)
    assert _graph(alone) == ({"artifact:chain/mnist:v1": 0, "run:chain/refresh": 1},
                             {("run:chain/refresh", "artifact:chain/mnist:v1", "logged")})  # used by nobody
    lone_run = _ok(client.get("/api/v1/projects/chain/lineage", params={"run": "other"}), LineageResponse)
    assert [n["id"] for n in lone_run["nodes"]] == ["run:chain/other"]
    assert client.get("/api/v1/projects/chain/lineage").status_code == 400
    assert client.get("/api/v1/projects/chain/lineage", params={"run": "a", "artifact": "b"}).status_code == 400
    assert client.get("/api/v1/projects/chain/lineage", params={"run": "ghost"}).status_code == 404
    assert client.get("/api/v1/projects/chain/lineage", params={"artifact": "ghost"}).status_code == 404
    assert client.get("/api/v1/projects/chain/lineage", params={"artifact": "x/../y"}).status_code == 400
    assert client.get("/api/v1/projects/chain/lineage", params={"run": "t", "hops": 11}).status_code == 422


def test_project_roles_apply_to_artifacts_and_lineage(chain_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(chain_root, root)
    app = create_app(root, shared_root=True)  # keys needed
    accounts = app.state.tracklet.authorizer.accounts
    reader = accounts.create_user("reader")
    outsider = accounts.create_user("outsider")
    accounts.set_member("chain", "reader", "read")
    as_reader = {"Authorization": f"Bearer {reader.key}"}
    as_outsider = {"Authorization": f"Bearer {outsider.key}"}
    routes = ["/api/v1/projects/chain/artifacts", "/api/v1/projects/chain/artifacts/mnist/versions",
              "/api/v1/projects/chain/artifacts/mnist/versions/v0", "/api/v1/projects/chain/artifacts/mnist/versions/v0/files",
              "/api/v1/projects/chain/artifacts/mnist/versions/v0/files/labels.csv",
              "/api/v1/runs/chain/train/artifacts", "/api/v1/projects/chain/lineage?run=train"]
    with TestClient(app) as http:
        for route in routes:
            assert http.get(route).status_code == 401, route
            refused = http.get(route, headers=as_outsider)
            assert refused.status_code == 403 and "read access" in refused.json()["detail"], route
            assert http.get(route, headers=as_reader).status_code == 200, route
        # The reader can't read project "secret": its run is left out of the graph and the version's users.
        graph = http.get("/api/v1/projects/chain/lineage", params={"artifact": "mnist:v0"}, headers=as_reader).json()
        assert "run:secret/spy" not in {n["id"] for n in graph["nodes"]}
        used = http.get("/api/v1/projects/chain/artifacts/mnist/versions/v0", headers=as_reader).json()["used_by"]
        assert [r["run_id"] for r in used] == ["train"]
        assert http.get("/api/v1/projects/secret/lineage", params={"run": "spy"}, headers=as_reader).status_code == 403


def test_store_artifact_edges_in_batches_on_both_backends(chain_root, tmp_path, store_url):
    root = tmp_path / "data"
    shutil.copytree(chain_root, root)
    (root / "store.sqlite").unlink(missing_ok=True)  # the store under test is store_url
    store = Store(store_url, root=root)
    try:
        store.index()
        strangers = [("chain", f"nobody-{n}") for n in range(450)]  # more than one statement's worth
        edges, more = store.artifact_edges(runs=[*strangers, ("chain", "train")])
        assert [(e["direction"], e["name"], e["version"], e["run_name"]) for e in edges] == [
            ("used", "mnist", 0, "train-cnn"), ("logged", "model", 0, "train-cnn")] and not more
        edges, more = store.artifact_edges(versions=[("chain", "mnist", 0), ("chain", "report", 0)])
        assert [(e["run_project"], e["run_id"], e["direction"]) for e in edges] == [
            ("chain", "prep", "logged"), ("chain", "train", "used"), ("chain", "evaluate", "logged"),
            ("chain", "evaluate", "used"), ("secret", "spy", "used")] and not more
        assert edges[0]["type"] == "dataset" and edges[0]["aliases"] == ["latest", "raw"] and len(edges[0]["digest"]) == 64
        few, more = store.artifact_edges(versions=[("chain", "mnist", 0)], limit=2)
        assert len(few) == 2 and more
    finally:
        store.close()


def test_a_version_deleted_since_the_runs_recorded_it_stays_in_the_graph_marked_deleted(client, tmp_path):
    """``tracklet artifact rm`` of a version runs logged and used: the lineage graph keeps its node
    (the runs' edges are their records), marked ``files_deleted`` without aliases, at any depth; the
    version's own route says it was deleted."""
    import tracklet

    tracklet.Api(tmp_path / "data").artifact("chain/mnist:v0").delete(delete_aliases=True)
    body = _ok(client.get("/api/v1/projects/chain/lineage", params={"run": "evaluate", "hops": 5}), LineageResponse)
    nodes, edges = _graph(body)
    assert nodes["artifact:chain/mnist:v0"] == 3 and edges == CHAIN_EDGES | {
        ("artifact:chain/mnist:v0", "run:secret/spy", "used")}
    listed = {n["id"]: n for n in body["nodes"]}
    assert listed["artifact:chain/mnist:v0"]["files_deleted"] is True
    assert listed["artifact:chain/mnist:v0"]["aliases"] == []
    assert "files_deleted" not in listed["artifact:chain/model:v0"]  # the others as before
    gone = client.get("/api/v1/projects/chain/artifacts/mnist/versions/v0")
    assert gone.status_code == 404 and "chain/mnist:v0 was deleted" in gone.json()["detail"]
