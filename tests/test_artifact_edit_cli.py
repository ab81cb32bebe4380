"""``tracklet artifact edit REF``: a version's description, metadata, tags and aliases, or (REF
without a version) the collection's own description and tags, from the shell: in the data root by
default, on a server with ``--url`` (never from ``$TRACKLET_BASE_URL``). Every option is checked
before anything is saved: a bad tag, metadata that isn't JSON, a tag or alias to remove that isn't
there is one line naming it (exit 2) and nothing changes. A collection edit on a server is audited
(``update_collection``, with what it changed; a refused one too)."""

from __future__ import annotations

import json

import pytest
from conftest import QUIET
from serverproc import cli, keyed_deployment

import tracklet


def _store(project: str = "p", name: str = "ds", text: str = "v0", aliases: tuple[str, ...] = ()) -> None:
    artifact = tracklet.Artifact(name, type="dataset", description="first")
    artifact.tags = ["raw"]
    artifact.metadata = {"rows": 10}
    with artifact.new_file("data.txt") as handle:
        handle.write(text)
    artifact.save(project, aliases=list(aliases))


def _version(*args: str, env: dict | None = None) -> dict:
    shown = cli("artifact", "show", *args, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def _collection(*args: str, project: str = "p", env: dict | None = None) -> dict:
    listed = cli("artifact", "ls", project, "--json", *args, env=env)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout.splitlines()[0])


def _fields(row: dict) -> tuple:
    return row["description"], row["metadata"], row["tags"], row["aliases"]


def test_edit_a_data_roots_version_and_collection(root):
    _store(aliases=("best",))
    _store(text="v1")
    edited = cli("artifact", "edit", "p/ds:v1", "-d", "cleaned", "--set-metadata", "acc=0.93",
                 "--set-metadata", 'split="test"', "--unset-metadata", "rows", "--tag", "vision", "--untag", "raw",
                 "--alias", "best")
    assert edited.returncode == 0, edited.stderr
    assert edited.stdout.strip() == "edited p/ds:v1: description; metadata; tags +vision -raw; aliases +best"
    assert _fields(_version("p/ds:v1")) == ("cleaned", {"acc": 0.93, "split": "test"}, ["vision"], ["latest", "best"])
    assert "best" not in _version("p/ds:v0")["aliases"]  # the alias moved, as Artifact.save() moves it
    again = cli("artifact", "edit", "p/ds:v1", "-d", "cleaned", "--tag", "vision", "--alias", "best",
                "--set-metadata", "acc=0.93")
    assert again.stdout.strip() == "edited p/ds:v1: nothing changed", again.stderr  # said as it is
    replaced = cli("artifact", "edit", "p/ds:best", "--metadata", '{"a": [1, 2]}', "--unalias", "best")
    assert replaced.returncode == 0, replaced.stderr
    assert _fields(_version("p/ds:v1")) == ("cleaned", {"a": [1, 2]}, ["vision"], ["latest"])

    # Each refusal names its problem and changes nothing, not the fields given beside it.
    before = _fields(_version("p/ds:v1"))
    for args, message in [
        (["--tag", "bad/tag"], "tag 'bad/tag' is not valid"),
        (["--set-metadata", "acc=high"], "--set-metadata acc: not JSON"),
        (["--set-metadata", "acc"], "--set-metadata 'acc': use KEY=JSON"),
        (["--metadata", "[1]"], "--metadata must be a JSON object; got list"),
        (["--metadata", "{"], "--metadata: not JSON"),
        (["--set-metadata", "x=NaN"], "metadata['x'] is nan, which JSON can't hold"),
        (["--untag", "raw"], "--remove-tag 'raw': p/ds:v1 has no such tag"),
        (["--unalias", "prod"], "--unalias 'prod': p/ds:v1 has no such alias"),
        (["--unset-metadata", "rows"], "--unset-metadata 'rows': p/ds:v1 has no such metadata key"),
        (["--unalias", "latest"], "'latest' always names the newest version"),
        (["--alias", "v0"], "v0"),
    ]:
        refused = cli("artifact", "edit", "p/ds:v1", "-d", "must not land", *args)
        assert refused.returncode == 2, (args, refused.stdout)
        assert message in refused.stderr and "Traceback" not in refused.stderr, (args, refused.stderr)
        assert _fields(_version("p/ds:v1")) == before, args

    # No version in REF: the collection's own description and tags (its versions keep theirs).
    assert _collection()["tags"] == []
    collection = cli("artifact", "edit", "p/ds", "-d", "digits", "--tag", "vision", "--tag", "hand written")
    assert collection.returncode == 0, collection.stderr
    assert collection.stdout.strip() == "edited collection p/ds: description; tags +vision +hand written"
    assert (_collection()["description"], _collection()["tags"]) == ("digits", ["vision", "hand written"])
    again = cli("artifact", "edit", "p/ds", "-d", "digits", "--tag", "vision", "--tag", "new")
    assert again.stdout.strip() == "edited collection p/ds: tags +new", again.stderr
    assert _collection()["tags"] == ["vision", "hand written", "new"]
    assert cli("artifact", "edit", "p/ds", "--untag", "new").returncode == 0
    assert cli("artifact", "edit", "p/ds", "--untag", "vision").returncode == 0
    assert _collection()["tags"] == ["hand written"]
    assert _version("p/ds:v0")["description"] == "first"
    for args, message in [
        (["--tag", "a:b"], "tag 'a:b' is not valid"),
        (["--untag", "vision"], "--remove-tag 'vision': collection p/ds has no such tag"),
        (["--alias", "x", "--set-metadata", "a=1"], "--set-metadata, --alias edit one version"),
    ]:
        refused = cli("artifact", "edit", "p/ds", "-d", "must not land", *args)
        assert refused.returncode == 2 and message in refused.stderr, (args, refused.stderr)
    assert (_collection()["description"], _collection()["tags"]) == ("digits", ["hand written"])
    nothing = cli("artifact", "edit", "p/ds")
    assert nothing.returncode == 2 and "nothing to edit: give --description" in nothing.stderr
    missing = cli("artifact", "edit", "p/none", "--tag", "x")
    assert missing.returncode == 2 and "no artifact collection p/none" in missing.stderr
    no_project = cli("artifact", "edit", "ds:v0", "--tag", "x")
    assert no_project.returncode == 2 and "needs a project" in no_project.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request, servers, tmp_path):
    """A server with keys: alice logged p/ds:v0 and v1 online; bob may write p, carol only read it."""
    store = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    server, admin, keys = keyed_deployment(servers, tmp_path / "server", store, ["alice", "bob", "carol"])
    run = tracklet.init(project="p", dir=str(tmp_path / "alice"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
    for text in (b"v0", b"v1"):
        (tmp_path / "ds.bin").write_bytes(text)
        artifact = tracklet.Artifact("ds", type="dataset", description="logged")
        artifact.add_file(str(tmp_path / "ds.bin"))
        assert run.log_artifact(artifact).wait().upload_error is None
    run.finish()
    for user, role in (("bob", "write"), ("carol", "read")):
        assert admin.put(f"/projects/p/members/{user}", json={"role": role}).status_code in (200, 204)
    yield server, admin, keys
    admin.close()


def test_edit_with_url_edits_a_servers_version_and_collection_and_is_audited(deployment, root, tmp_path):
    server, admin, keys = deployment
    bob = {"TRACKLET_API_KEY": keys["bob"]}
    _store()  # the data root's own p/ds:v0, which an edit without --url changes

    # $TRACKLET_BASE_URL never sends an edit to a server: without --url the data root's version is edited.
    local = cli("artifact", "edit", "p/ds:v0", "-d", "local", env={**bob, "TRACKLET_BASE_URL": server.url})
    assert local.returncode == 0 and local.stdout.strip() == "edited p/ds:v0: description", local.stderr
    assert _version("p/ds:v0")["description"] == "local"
    assert _version("p/ds:v0", "--url", server.url, env=bob)["description"] == "logged"

    url = ("--url", server.url)
    edited = cli("artifact", "edit", "p/ds:v0", "-d", "by bob", "--set-metadata", "acc=0.5", "--tag", "checked",
                 "--alias", "best", *url, env=bob)
    assert edited.returncode == 0, edited.stderr
    assert edited.stdout.strip() == f"edited p/ds:v0 on {server.url}: description; metadata; tags +checked; aliases +best"
    shown = _version("p/ds:v0", *url, env=bob)
    assert _fields(shown) == ("by bob", {"acc": 0.5}, ["checked"], ["best"])
    bad = cli("artifact", "edit", "p/ds:best", "-d", "no", "--tag", "bad/tag", *url, env=bob)
    assert bad.returncode == 2 and "tag 'bad/tag' is not valid" in bad.stderr
    assert _fields(_version("p/ds:v0", *url, env=bob)) == _fields(shown)

    collection = cli("artifact", "edit", "p/ds", "-d", "digits", "--tag", "vision", *url, env=bob)
    assert collection.returncode == 0, collection.stderr
    row = _collection(*url, env=bob)
    assert (row["description"], row["tags"]) == ("digits", ["vision"])
    assert _collection()["tags"] == []  # the data root's collection is another one
    denied = cli("artifact", "edit", "p/ds", "--tag", "mine", *url, env={"TRACKLET_API_KEY": keys["carol"]})
    assert denied.returncode == 2 and "403" in denied.stderr, denied.stderr
    untagged = cli("artifact", "edit", "p/ds", "--untag", "vision", *url, env=bob)
    assert untagged.returncode == 0, untagged.stderr
    row = _collection(*url, env=bob)
    assert (row["description"], row["tags"]) == ("digits", [])

    # The route's audit note: who edited the collection, what changed, and the refused edits.
    bad_body = admin.patch("/projects/p/artifacts/ds", json={"description": "no", "tags": ["bad/tag"]})
    assert bad_body.status_code == 400
    assert admin.patch("/projects/p/artifacts/ds", json={"type": "table-data"}).status_code == 200
    events = admin.get("/audit", params={"project": "p", "limit": 1000}).json()["events"]
    edits = [event for event in events if event["action"] == "update_collection"]
    assert [(event["status"], event["outcome"]) for event in edits] == [
        (200, "ok"), (403, "denied"), (200, "ok"), (400, "rejected"), (200, "ok")], edits
    details = [json.loads(event["detail"]) if isinstance(event["detail"], str) else event["detail"]
               for event in edits]
    # The CLI sends the tags it adds and removes, not the list it read: a concurrent edit's tags stay.
    assert details[0] == {"description": True, "add_tags": ["vision"]} and details[2] == {"remove_tags": ["vision"]}
    assert details[4] == {"type": "table-data"}
    assert {(event["method"], event["target"], event["project"]) for event in edits} == {
        ("PATCH", "projects/p/artifacts/ds", "p")}
    assert [event["actor"] for event in edits] == ["bob", "carol", "bob", "root", "root"]
