"""Deleting a server's artifact version that the model registry links (a leaked secret in a
dataset, a licence problem): refused without ``break_registry_links`` (409 naming the registry
versions and how to force it), refused with it for a caller who isn't a member of every registry
linking it (403 naming the role and registry: the role that may unlink them, so the way round, unlink
then delete, needs no less), refused for every role while a protected alias names one of them (as
their unlink is), done otherwise: audited and evented naming the registry versions left without
files, which then read back as ``files_deleted`` (HTTP, the Python API, the CLI, the lineage graph)
instead of a 404 or a 500. Real ``tracklet server`` processes on SQLite and PostgreSQL; the data
root's rules too."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
import serverproc
import sqlalchemy as sa
from conftest import QUIET
from serverproc import keyed_deployment

import tracklet
from tracklet.errors import ArtifactDeleted, ArtifactError, RemoteError, TrackletWarning

USERS = {"radmin": ("admin", "admin"), "mixed": ("admin", "viewer"), "member": ("member", "member"),
         "viewer": ("member", "viewer")}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args, env=env)


@pytest.fixture(scope="module")
def keyed(module_store, module_servers, tmp_path_factory):
    """A server with keys the module's tests share; each user of ``USERS`` holds (its role in registry
    model, its role in registry eval)."""
    root_dir = tmp_path_factory.mktemp("server")
    server, root, keys = keyed_deployment(module_servers, root_dir, module_store, USERS)
    for name, (model_role, eval_role) in USERS.items():
        assert root.put(f"/registries/model/members/{name}", json={"role": model_role}).status_code == 200
        assert root.put(f"/registries/eval/members/{name}", json={"role": eval_role}).status_code == 200
    yield server, root, keys, module_store or f"sqlite:///{root_dir / 'store.sqlite'}"
    root.close()


_names = iter(range(1_000_000))


@pytest.fixture
def deployment(keyed, tmp_path):
    """The module's server; root logged PROJECT/m:v0..v2 (a project of the test's own) and linked v0 into
    model/C and eval/C, v1 into model/C (C: a collection of the test's own). Each user of ``USERS`` may
    write PROJECT. The server, root's client, the users' keys, the store's URL, PROJECT and C."""
    server, root, keys, store = keyed
    keys = dict(keys)
    key = keys.pop("root")
    number = next(_names)
    project, collection = f"vision{number}", f"m{number}"
    run = tracklet.init(project=project, dir=str(tmp_path / "client"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": key})
    for index in range(3):
        (tmp_path / "m.bin").write_bytes(b"weights %d" % index)
        assert run.log_artifact(tmp_path / "m.bin", name="m", type="model").wait().upload_error is None
    run.finish()
    for target, version in (("model", 0), ("eval", 0), ("model", 1)):
        linked = root.post(f"/registries/{target}/collections/{collection}/links",
                           json={"project": project, "name": "m", "version": version})
        assert linked.status_code == 200, linked.text
    for name in USERS:
        assert root.put(f"/projects/{project}/members/{name}", json={"role": "write"}).status_code in (200, 204)
    return server, root, keys, store, project, collection


def _delete(server, key: str, project: str, version: str, **params: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        return http.delete(f"/api/v1/projects/{project}/artifacts/m/versions/{version}", params=params)


def _audited(root: httpx.Client, target: str) -> list[tuple[int, str, dict]]:
    events = root.get("/audit", params={"action": "delete_version", "order": "asc", "limit": 1000}).json()["events"]
    return [(event["status"], event["actor"], event["detail"] if isinstance(event["detail"], dict)
             else json.loads(event["detail"] or "{}")) for event in events if event["target"] == target]


def test_a_registered_version_is_deleted_only_when_asked_by_a_member_of_every_registry_linking_it(deployment):
    server, root, keys, store, project, collection = deployment
    model, evals, source = f"model/{collection}", f"eval/{collection}", f"{project}/m"  # qualified names
    refused = _delete(server, keys["radmin"], project, "v0", delete_aliases="true")  # W&B's flag is about aliases only
    assert refused.status_code == 409, refused.text
    assert f"is registered as {model}:v0, {evals}:v0" in refused.json()["detail"]
    assert "--break-registry-links" in refused.json()["detail"]

    for who in ("viewer", "mixed"):  # a viewer in eval (mixed is model's admin): may not unlink eval/m:v0 either
        denied = _delete(server, keys[who], project, "v0", break_registry_links="true")
        assert denied.status_code == 403, denied.text
        assert f"user '{who}' needs the member role in registry 'eval'" in denied.json()["detail"]
        assert f"{evals}:v0" in denied.json()["detail"] and "(has viewer)" in denied.json()["detail"]
    with tracklet.Api(base_url=server.url, api_key=keys["mixed"]) as api:
        with pytest.raises(RemoteError, match="member role in registry 'eval'"):
            api.artifact(f"{source}:v0").delete(break_registry_links=True)
        assert api.artifact(f"{source}:v0").version == "v0"  # every refusal changed nothing
        assert api.artifact(f"{model}:v0").source_qualified_name == f"{source}:v0"

    with tracklet.Api(base_url=server.url, api_key=keys["member"]) as api:  # a member of both: no admin needed
        with pytest.warns(TrackletWarning,
                          match=f"{model}:v0, {evals}:v0 linked: those registry versions have no files"):
            api.artifact(f"{source}:v0").delete(break_registry_links=True)
        with pytest.raises(ArtifactDeleted, match=f"{model}:v0 links {source}:v0, which was deleted"):
            api.artifact(f"{model}:v0")
        with pytest.raises(ArtifactDeleted, match=f"{evals}:v0 links {source}:v0, which was deleted"):
            api.artifact(f"{evals}:latest")
        assert api.artifact(f"{model}:latest").source_qualified_name == f"{source}:v1"  # the other link is whole
        # Listing the collection gives the versions that can be read, naming the one left out.
        with pytest.warns(TrackletWarning, match=f"{model}:v0 left out: the artifact version each links was deleted"):
            assert [version.source_qualified_name for version in api.artifact_versions(model)] == [f"{source}:v1"]
        with pytest.warns(TrackletWarning, match=f"{evals}:v0 left out"):
            assert api.artifact_versions(evals) == []

    # The registry keeps the version: it reads back as files deleted, never a 404 or a 500.
    net = f"/registries/model/collections/{collection}"
    answer = root.get(net + "/versions/v0")
    assert answer.status_code == 200, answer.text
    assert answer.json()["files_deleted"] is True and answer.json()["version"] is None
    assert answer.json()["link"]["source"] == f"{source}:v0"
    assert [link["version"] for link in root.get(net + "/versions").json()["links"]] == [0, 1]
    assert root.get(net + "/versions/v1").json()["files_deleted"] is False
    for path in (net + "/versions/v0/card", net + "/history"):
        assert root.get(path).status_code < 500, path
    # Its lineage is still known: the registry version, its artifact version marked files deleted,
    # and the run that logged it (the store's edges are the runs' records, which the deletion keeps).
    with _as(server, keys["member"]) as member:
        graph = member.get(net + "/versions/v0/lineage")
    assert graph.status_code == 200, graph.text
    nodes = {node["id"]: node for node in graph.json()["nodes"]}
    assert graph.json()["root"] == f"registry:{model}:v0"
    assert nodes[f"artifact:{source}:v0"]["files_deleted"] is True and nodes[f"artifact:{source}:v0"]["type"] == "model"
    assert "files_deleted" not in nodes[f"registry:{model}:v0"]
    (logged_by,) = [node_id for node_id, node in nodes.items() if node["kind"] == "run"]
    assert {(edge["source"], edge["target"], edge["kind"]) for edge in graph.json()["edges"]} == {
        (f"artifact:{source}:v0", f"registry:{model}:v0", "linked"), (logged_by, f"artifact:{source}:v0", "logged"),
        (logged_by, f"artifact:{source}:v1", "logged"), (logged_by, f"artifact:{source}:v2", "logged")}
    assert not nodes[f"artifact:{source}:v1"].get("files_deleted")  # the run's other versions are whole
    # A link whose version is whole: its node isn't marked; v0, which the same run logged and which was
    # deleted since, is (a deleted version is marked at any depth of a graph).
    whole = root.get(net + "/versions/v1/lineage").json()
    assert {node["id"] for node in whole["nodes"] if node.get("files_deleted")} == {f"artifact:{source}:v0"}

    # Audited: each refusal as answered, the deletion naming the registry versions it left without files.
    assert [(status, actor) for status, actor, _ in _audited(root, f"projects/{project}/artifacts/m/versions/v0")] == [
        (409, "radmin"), (403, "viewer"), (403, "mixed"), (403, "mixed"), (200, "member")]
    assert _audited(root, f"projects/{project}/artifacts/m/versions/v0")[-1][2]["registry_links_broken"] == [
        f"{model}:v0", f"{evals}:v0"]
    engine = sa.create_engine(store)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT subject, actor, payload FROM event_outbox "
                                              "WHERE kind = 'artifact.deleted' AND subject LIKE :project"),
                                      {"project": f"{project}/%"}).all()
    finally:
        engine.dispose()
    assert [(subject, actor, json.loads(payload)["registry_links_broken"]) for subject, actor, payload in rows] == [
        (f"{source}:v0", "member", [f"{model}:v0", f"{evals}:v0"])]


def test_artifact_rm_url_breaks_registry_links_only_with_its_own_flag(deployment, tmp_path):
    """``--force`` drops aliases; a registered version on a server needs ``--break-registry-links``."""
    server, root, keys, _, project, collection = deployment
    model, source, model_net = f"model/{collection}", f"{project}/m", f"/registries/model/collections/{collection}"
    env = {"TRACKLET_API_KEY": keys["radmin"]}
    refused = _cli("--dir", str(tmp_path / "cli"), "artifact", "rm", f"{source}:v1", "--url", server.url, "--force",
                   env=env)
    assert refused.returncode != 0 and f"is registered as {model}:v1" in refused.stderr, refused.stderr
    assert "--break-registry-links" in refused.stderr
    done = _cli("--dir", str(tmp_path / "cli"), "artifact", "rm", f"{source}:v1", "--url", server.url,
                "--break-registry-links", env=env)
    assert done.returncode == 0, done.stderr
    assert f"deleted {source}:v1" in done.stdout and f"registry versions left without files: {model}:v1" in done.stdout
    assert root.get(f"{model_net}/versions/v1").json()["files_deleted"] is True
    unlinked = root.get(f"/projects/{project}/artifacts/m/versions/v2")  # not registered: deleted as before
    assert unlinked.status_code == 200
    with pytest.raises(ArtifactError):  # ArtifactNotFound: the deleted version is gone from its project
        tracklet.Api(base_url=server.url, api_key=keys["radmin"]).artifact(f"{source}:v1")


def _as(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_breaking_links_needs_no_less_than_the_way_round_and_a_protected_alias_refuses_both(deployment):
    """The way round the flag: unlink the registry versions (the member role), then delete the
    version no registry links any more (the project's write role). The flag needs exactly that
    role, and what keeps a registry version from its unlink (a protected alias naming it, a pending
    promotion request targeting it) keeps its artifact version from deletion, for every role."""
    server, root, keys, _, project, collection = deployment
    model, evals = f"model/{collection}", f"eval/{collection}"  # qualified names
    model_net, eval_net = (f"/registries/{registry}/collections/{collection}" for registry in ("model", "eval"))
    # The way round, for an unprotected registry version: "viewer" is a member of model, which
    # alone links v1, so it may unlink model/m:v1 and then delete vision/m:v1 without the flag ...
    with _as(server, keys["viewer"]) as viewer:
        assert viewer.delete(f"{model_net}/versions/v1").status_code == 200
        assert viewer.delete(f"/projects/{project}/artifacts/m/versions/v1").status_code == 200
    # ... and the flag asks the same of it: v2, linked into model only, it may delete through its link.
    assert root.post(f"{model_net}/links", json={"project": project, "name": "m",
                                                                     "version": 2}).status_code == 200
    done = _delete(server, keys["viewer"], project, "v2", break_registry_links="true")
    assert done.status_code == 200 and done.json()["registry_links_broken"] == [f"{model}:v2"], done.text

    # eval/m:v0 is the production model, protected: no role may unlink it, nor delete what it links.
    assert root.put(f"{eval_net}/aliases/production", json={"version": "v0"}).status_code == 200
    assert root.put(f"{eval_net}/protections/production", json={"approvals": 1}).status_code == 200
    for who in ("member", "radmin"):
        refused = _delete(server, keys[who], project, "v0", break_registry_links="true")
        assert refused.status_code == 409, refused.text
        assert f"{evals}:v0 (protected alias production)" in refused.json()["detail"]
        with _as(server, keys[who]) as client:
            assert client.delete(f"{eval_net}/versions/v0").status_code == 409  # nor the way round
            assert client.get(f"{eval_net}/versions/v0").json()["files_deleted"] is False
    assert root.get(f"/projects/{project}/artifacts/m/versions/v0").status_code == 200  # nothing changed

    # A pending promotion request targeting a version keeps it the same way: one to move production
    # to model... (another collection's alias): protect model's "staging" and ask to move it to v0.
    assert root.put(f"{model_net}/protections/staging", json={"approvals": 1}).status_code == 200
    requested = root.put(f"{model_net}/aliases/staging", json={"version": "v0"})
    assert requested.status_code == 409, requested.text
    # Lifting production's protection is a registry admin's decision (audited); the request still keeps v0.
    assert root.put(f"{eval_net}/protections/production", json={"approvals": 0}).status_code == 200
    refused = _delete(server, keys["member"], project, "v0", break_registry_links="true")
    assert refused.status_code == 409 and f"{model}:v0 (pending promotion request #" in refused.json()["detail"]
    request_id = root.get("/registry-requests", params={"state": "pending"}).json()["requests"][0]["id"]
    with _as(server, keys["mixed"]) as mixed:  # model's admin, not the requester
        assert mixed.post(f"/registry-requests/{request_id}/reviews",
                          json={"decision": "reject", "comment": "v0 goes"}).status_code == 200
    done = _delete(server, keys["member"], project, "v0", break_registry_links="true")
    assert done.status_code == 200 and done.json()["registry_links_broken"] == [f"{model}:v0", f"{evals}:v0"], done.text


def test_in_a_data_root_a_protected_alias_or_pending_request_keeps_its_version_from_deletion_too(tmp_path):
    """Local mode has no roles (the data root is its user's), but the same guards: ``--force`` /
    ``break_registry_links`` deletes a registered version only when nothing keeps its registry
    versions from an unlink."""
    from tracklet.errors import PromotionRequired

    root = tmp_path / "data"
    run = tracklet.init(project="vision", dir=str(root), settings=QUIET)
    (tmp_path / "m.bin").write_bytes(b"weights")
    artifact = run.log_artifact(tmp_path / "m.bin", name="m", type="model")
    run.link_artifact(artifact, "eval/m", aliases=["production"])
    run.finish()
    api = tracklet.Api(str(root))
    registry = api.registry
    registry.protect("eval", "m", "production", 1)
    with pytest.raises(ArtifactError, match=r"eval/m:v0 \(protected alias production\)"):
        api.artifact("vision/m:v0").delete(break_registry_links=True)
    refused = _cli("--dir", str(root), "artifact", "rm", "vision/m:v0", "--force")
    assert refused.returncode != 0 and "eval/m:v0 (protected alias production)" in refused.stderr, refused.stderr
    with pytest.raises(PromotionRequired):  # the way round is shut the same way
        registry.unlink("eval", "m", 0)
    registry.protect("eval", "m", "staging", 1)
    with pytest.raises(PromotionRequired):
        registry.set_alias("eval", "m", "staging", "v0")  # opens request #1, targeting v0
    registry.protect("eval", "m", "production", 0)
    with pytest.raises(ArtifactError, match=r"eval/m:v0 \(pending promotion request #1\)"):
        api.artifact("vision/m:v0").delete(break_registry_links=True)
    registry.review(1, "reject", reviewer="bob")
    with pytest.warns(TrackletWarning, match="eval/m:v0 linked"):
        api.artifact("vision/m:v0").delete(break_registry_links=True)
    with pytest.raises(ArtifactDeleted):
        api.artifact("eval/m:v0")


def test_artifact_show_presents_a_registry_version_whose_files_were_deleted_with_its_lineage(tmp_path):
    """``tracklet artifact show`` of a data root's registry version whose artifact version was
    deleted: the link, "files: deleted", and the runs that logged and used that version (their
    records keep it), where it raised ``ArtifactDeleted``."""
    root = tmp_path / "data"
    train = tracklet.init(project="vision", dir=str(root), settings=QUIET)
    (tmp_path / "m.bin").write_bytes(b"weights")
    train.link_artifact(train.log_artifact(tmp_path / "m.bin", name="m", type="model"), "eval/m", aliases=["best"])
    train.finish()
    evaluate = tracklet.init(project="scores", dir=str(root), settings=QUIET)
    evaluate.use_artifact("eval/m:best")
    evaluate.finish()
    with pytest.warns(TrackletWarning, match="eval/m:v0 linked"):
        tracklet.Api(str(root)).artifact("vision/m:v0").delete(break_registry_links=True)

    shown = _cli("--dir", str(root), "artifact", "show", "eval/m:best")
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert lines["name:"] == "eval/m:v0" and lines["files:"].startswith("deleted: vision/m:v0 was deleted")
    assert lines["logged_by:"] == f"vision/{train.id}" and lines["used_by:"] == f"scores/{evaluate.id}"
    assert lines["aliases:"] == "v0, latest, best" and lines["type:"] == "model"
    as_json = json.loads(_cli("--dir", str(root), "artifact", "show", "eval/m:v0", "--json").stdout)
    assert as_json["files_deleted"] is True and as_json["files"] == [] and as_json["source"] == "vision/m:v0"
    assert (as_json["logged_by"], as_json["used_by"]) == ([f"vision/{train.id}"], [f"scores/{evaluate.id}"])
    gone = _cli("--dir", str(root), "artifact", "show", "vision/m:v0")  # the artifact version itself: not found
    assert gone.returncode != 0 and "vision/m" in gone.stderr
