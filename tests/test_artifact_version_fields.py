"""An artifact version's per-version fields work the same in a data root and through a `tracklet
server`: ``history_step`` (the logging run's last history step) survives the trip to a server,
and W&B's way of editing a committed version (mutate ``description``, ``metadata``, ``tags``,
``aliases`` of a logged or fetched version, then ``save()``) applies the edit, with the same
checks everywhere: a bad tag, metadata JSON can't hold, or a change of files is refused with an
error naming the problem, and nothing changes. On a server the edit needs the role moving an
alias needs and is audited; a database from before migration s0017 keeps its versions readable,
and a new client against an older server reads versions and moves aliases as before.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import httpx
import pytest
import serverproc
import sqlalchemy as sa
from conftest import QUIET
from serverproc import REPO, TreeServer, keyed_deployment

import tracklet
from tracklet.errors import ArtifactError, ArtifactNameError, RemoteError

QUIET_ENV = {"TRACKLET_CONSOLE": "off", "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false"}


def _log_version(run, tmp_path: Path, content: bytes, tags: list[str] | None = None, steps: int = 3):
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1)})
    (tmp_path / "m.bin").write_bytes(content)
    artifact = tracklet.Artifact("m", "model", description="first", metadata={"cfg": {"lr": 0.1}})
    if tags is not None:
        artifact.tags = tags
    artifact.add_file(str(tmp_path / "m.bin"))
    return run.log_artifact(artifact).wait()


def _state(artifact) -> dict:
    """Everything a version read back says of itself (to show a refused edit changed nothing)."""
    return {"info": dataclasses.asdict(artifact._info), "files": [(e.path, e.digest) for e in artifact.files()]}


def _refused_edits_change_nothing(read) -> None:
    """``read()``: the version, read again. Each bad edit raises naming the problem; none lands."""
    before = _state(read())
    bad_tag = read()
    bad_tag.description = "must not land"  # a good edit beside the bad one: refused whole
    bad_tag.tags.append("bad/tag")
    with pytest.raises(ArtifactNameError, match="tag 'bad/tag' is not valid"):
        bad_tag.save()
    with pytest.raises(ValueError, match="tag 'a:b' is not valid"):  # W&B raises ValueError when set
        read().tags = ["a:b"]
    for value, named in ((object(), r"metadata\['obj'\] is a builtins.object"),
                         (math.nan, r"metadata\['obj'\] is nan"), ({1: "x"}, r"metadata\['obj'\] has the key 1")):
        bad_metadata = read()
        bad_metadata.tags.append("fine")
        bad_metadata.metadata["obj"] = value
        with pytest.raises(ArtifactError, match=named):
            bad_metadata.save()
    files = read()
    with pytest.raises(ArtifactError, match="is committed: its files can't change"):
        files.add_file(__file__)
    with pytest.raises(ArtifactError, match="is committed: its files can't change"):
        files.remove("m.bin")
    files.save()  # nothing edited: nothing to do
    latest = read()
    latest.aliases.remove("latest")
    with pytest.raises(ArtifactError, match="'latest' always names the newest version"):
        latest.save()
    assert _state(read()) == before


def test_a_data_roots_versions_keep_their_fields_and_take_edits(root, start, tmp_path):
    run = start(project="p")
    logged = _log_version(run, tmp_path, b"v0", tags=["baseline", "fp 16", "baseline"])
    assert logged.history_step == 2 and logged.tags == ["baseline", "fp 16"]  # W&B dedupes, keeping the order
    run.finish()
    manifest = logged._info.manifest

    version = tracklet.Api(root).artifact("p/m:v0")
    assert version.history_step == 2 and version.tags == ["baseline", "fp 16"]
    version.description = "second"
    version.metadata["cfg"]["lr"] = 0.3  # a nested edit lands too
    version.tags.remove("fp 16")
    version.tags.append("best-so far")
    version.aliases.append("prod")
    version.save()
    assert version.tags == ["baseline", "best-so far"] and version.aliases == ["latest", "prod"]
    again = tracklet.Api(root).artifact("p/m:prod")
    assert (again.description, again.metadata, again.tags) == ("second", {"cfg": {"lr": 0.3}}, ["baseline", "best-so far"])
    assert again.history_step == 2 and again._info.manifest == manifest and again.version == "v0"  # files as they were

    # The object log_artifact returned edits the same version. Its view is older: as W&B's save(), it
    # sends what changed in it (tags removed and added), so a tag someone added since stays.
    logged.tags = ["from the run"]
    logged.save()
    assert tracklet.Api(root).artifact("p/m:v0").tags == ["best-so far", "from the run"]
    _refused_edits_change_nothing(lambda: tracklet.Api(root).artifact("p/m:v0"))

    linked = logged.link("model/m")  # a registry collection's version: its aliases are the registry's
    linked.tags.append("registry")
    with pytest.raises(ArtifactError, match="is a registry collection's version: edit the description, metadata "
                                            r"and tags of the version it links \(p/m:v0\)"):
        linked.save()
    assert "registry" not in tracklet.Api(root).artifact("p/m:v0").tags

    shown = serverproc.cli("--dir", str(root), "artifact", "show", "p/m:v0")
    assert shown.returncode == 0, shown.stderr
    assert "tags:        best-so far, from the run\n" in shown.stdout and "history_step: 2\n" in shown.stdout


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_servers_versions_keep_their_fields_and_take_edits_by_writers_only(servers, tmp_path, monkeypatch,
                                                                             request, database):
    store = request.getfixturevalue("pg_url") if database == "postgresql" else None
    server, admin, keys = keyed_deployment(servers, tmp_path / "server", store, ["alice", "bob"])
    writer = tmp_path / "writer"
    run = tracklet.init(project="vision", dir=str(writer), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
    logged = _log_version(run, tmp_path, b"v0", tags=["baseline"])
    assert logged.upload_error is None
    run.finish()
    assert admin.put("/projects/vision/members/bob", json={"role": "read"}).status_code in (200, 204)
    admin.close()
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))  # another machine: nothing local

    with tracklet.Api(base_url=server.url, api_key=keys["alice"]) as api:
        version = api.artifact("vision/m:v0")
        assert version.history_step == 2 and version.tags == ["baseline"]  # kept by the server now
        version.description = "second"
        version.metadata["cfg"] = {"lr": 0.3}
        version.tags.append("best-so far")
        version.aliases.append("prod")
        version.save()
        again = api.artifact("vision/m:prod")
        assert (again.description, again.metadata, again.tags, again.history_step) == (
            "second", {"cfg": {"lr": 0.3}}, ["baseline", "best-so far"], 2)
        _refused_edits_change_nothing(lambda: api.artifact("vision/m:v0"))

    logged.tags.append("online")  # an online run's version: the server's copy, then the local one
    logged.save()
    assert tracklet.Api(writer).artifact("vision/m:v0").tags == ["baseline", "online"]

    with tracklet.Api(base_url=server.url, api_key=keys["bob"]) as api:  # read role: may read, not edit
        read_only = api.artifact("vision/m:v0")
        assert read_only.tags == ["baseline", "best-so far", "online"]
        read_only.tags.append("mine")
        with pytest.raises(RemoteError, match="403"):
            read_only.save()
        read_only = api.artifact("vision/m:v0")
        read_only.aliases.append("mine")
        with pytest.raises(RemoteError, match="403"):
            read_only.save()

    url = "/api/v1/projects/vision/artifacts/m/versions/v0"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['alice']}"}, timeout=60) as http:
        bad = http.patch(url, json={"add_tags": ["ok", "no;semicolons"]})  # the server checks for itself
        assert bad.status_code == 400 and "tag 'no;semicolons' is not valid" in bad.json()["detail"]
        nan = http.patch(url, content=b'{"description": "x", "metadata": {"loss": NaN}}',
                         headers={"Content-Type": "application/json"})
        assert nan.status_code == 400 and "metadata['loss'] is nan" in nan.json()["detail"]
        assert http.patch("/api/v1/projects/vision/artifacts/m/versions/v7", json={"add_tags": ["x"]}).status_code == 404
        state = http.get(url).json()["version"]
        assert state["tags"] == ["baseline", "best-so far", "online"] and state["description"] == "second"
        assert state["history_step"] == 2
        commit = http.post("/api/v1/projects/vision/artifacts/m/versions",  # a new version's tags: checked too
                           json={"type": "model", "manifest": state["manifest"], "tags": ["a", "semi;colon"]})
        assert commit.status_code == 400 and "tag 'semi;colon' is not valid" in commit.json()["detail"]
        assert http.get(url).json()["version"]["tags"] == state["tags"]
        events = http.get("/api/v1/audit", params={"project": "vision", "limit": 1000},
                          headers={"Authorization": f"Bearer {keys['root']}"}).json()["events"]
    edits = [event for event in events if event["action"] == "edit_version"]
    assert [event["status"] for event in edits] == [200, 200, 403, 400, 400, 404], edits
    detail = edits[0]["detail"]
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert detail["add_tags"] == ["best-so far"] and detail["description"] is True
    assert detail["set_metadata_keys"] == ["cfg"] and detail["add_aliases"] == ["prod"]  # the keys the save changed
    assert edits[2]["outcome"] == "denied"


def test_versions_from_before_migration_s0017_read_back_and_take_edits(servers, tmp_path, pg_url, monkeypatch):
    """A PostgreSQL server's versions committed before s0017 (no history_step, no tags columns)
    read back with neither once the server migrated, and take edits."""
    from alembic import command
    from alembic.config import Config

    from tracklet.server import schema as server_schema

    server = servers(tmp_path / "server", store=pg_url)
    writer = tmp_path / "writer"
    run = tracklet.init(project="vision", dir=str(writer), mode="online", settings={**QUIET, "base_url": server.url})
    _log_version(run, tmp_path, b"v0", tags=["t"])
    run.finish()
    server.stop()
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(server_schema.MIGRATIONS))
            config.attributes["connection"] = connection
            command.downgrade(config, "s0016")
        columns = {column["name"] for column in sa.inspect(engine).get_columns("artifact_versions")}
        assert "history_step" not in columns and "tags" not in columns
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM artifact_versions")).scalar() == 1
    finally:
        engine.dispose()

    server.start()  # migrates to s0017
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    with tracklet.Api(base_url=server.url) as api:
        old = api.artifact("vision/m:v0")
        assert old.history_step is None and old.tags == [] and old.description == "first"
        old.tags.append("after")
        old.save()
        assert api.artifact("vision/m:v0").tags == ["after"]
    run = tracklet.init(project="vision", dir=str(writer), mode="online", settings={**QUIET, "base_url": server.url})
    assert _log_version(run, tmp_path, b"v1", tags=["new"], steps=1).upload_error is None
    run.finish()
    with tracklet.Api(base_url=server.url) as api:
        new = api.artifact("vision/m:v1")
        assert (new.history_step, new.tags) == (0, ["new"])  # the new run's one row: step 0


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory) -> Path:
    """This checkout's code as it was before migration s0017 (``git archive`` of the commit before
    the one that added it): a real older server."""
    added = subprocess.run(["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "--",
                            "tracklet/server/migrations/versions/s0017_artifact_version_fields.py"],
                           capture_output=True, text=True)
    if added.returncode != 0 or not added.stdout.strip():
        pytest.skip("not a git checkout with the commit that added s0017")
    tree = tmp_path_factory.mktemp("old-tree")
    archive = tree / "old.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "-C", str(REPO), "archive", f"{added.stdout.split()[-1]}^", "tracklet"],
                       stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    return tree


def test_a_new_client_against_an_older_server(servers, tmp_path, old_tree, monkeypatch):
    """An older server ignores the new commit fields, answers versions without them (None, []),
    moves aliases through its aliases route, and an edit of fields it can't make is refused
    client-side with a clear error, nothing changed."""
    server = TreeServer(tmp_path / "server", old_tree)
    try:
        server.start()
        writer = tmp_path / "writer"
        run = tracklet.init(project="vision", dir=str(writer), mode="online",
                            settings={**QUIET, "base_url": server.url})
        logged = _log_version(run, tmp_path, b"v0", tags=["t"])
        assert logged.upload_error is None
        run.finish()
        monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
        with tracklet.Api(base_url=server.url) as api:
            version = api.artifact("vision/m:v0")
            assert version.history_step is None and version.tags == []
            version.aliases.append("prod")  # aliases alone: the route older servers have
            version.save()
            assert api.artifact("vision/m:prod").version == "v0"
            edited = api.artifact("vision/m:v0")
            edited.description = "second"
            edited.tags.append("new")
            with pytest.raises(ArtifactError, match="an older tracklet server"):
                edited.save()
            assert api.artifact("vision/m:v0").description == "first"
    finally:
        server.stop()


SCRIPT = """
import json, math
import wandb

assert getattr(wandb, "_tracklet_compat", False), "import wandb must be tracklet's here"
with open("model.bin", "wb") as f:
    f.write(b"weights")
with wandb.init(project="fields", job_type="train") as run:
    for step in range(4):
        run.log({"loss": 1.0 / (step + 1)})
    model = wandb.Artifact("model", type="model", description="first", metadata={"epochs": 4})
    model.add_file("model.bin")
    run.log_artifact(model, tags=["logged"])
    model.wait()
    logged_tags = list(model.tags)

api = wandb.Api()
artifact = api.artifact("fields/model:latest")
artifact.description = "tuned"
artifact.metadata["accuracy"] = 0.9
artifact.tags.append("candidate")
artifact.tags += ["fp16"]
artifact.aliases.append("staging")
artifact.save()
errors = []
try:
    artifact.tags.append("no/slash")
    artifact.save()
except ValueError as error:
    errors.append(str(error))
artifact = api.artifact("fields/model:staging")
artifact.metadata["bad"] = math.inf
try:
    artifact.save()
except Exception as error:
    errors.append(str(error))
read = wandb.Api().artifact("fields/model:staging")
print(json.dumps({"logged_tags": logged_tags, "history_step": read.history_step, "description": read.description, "metadata": read.metadata,
                  "tags": read.tags, "aliases": read.aliases, "errors": errors}))
"""


@pytest.mark.parametrize("where", ["data root", "server"])
def test_an_unmodified_wandb_script_edits_a_version_and_saves_it(root, tmp_path, servers, where):
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text(textwrap.dedent(SCRIPT))
    env = {"TRACKLET_DIR": str(root)}
    if where == "server":
        server = servers(tmp_path / "server")
        env.update(TRACKLET_MODE="online", TRACKLET_BASE_URL=server.url)
    done = subprocess.run([sys.executable, "-m", "tracklet", "run", "--wandb", "--", sys.executable, "train.py"],
                          capture_output=True, text=True, timeout=300, cwd=work,
                          env={**os.environ, "PYTHONPATH": str(REPO), **QUIET_ENV, **env})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["history_step"] == 3 and found["description"] == "tuned"
    assert found["logged_tags"] == ["logged"]  # W&B's log_artifact(tags=...)
    assert found["metadata"] == {"epochs": 4, "accuracy": 0.9} and found["tags"] == ["logged", "candidate", "fp16"]
    assert found["aliases"] == ["latest", "staging"]
    assert "tag 'no/slash' is not valid" in found["errors"][0]
    assert "metadata['bad'] is inf" in found["errors"][1]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_clients_tagging_one_version_at_once_lose_no_tag(servers, tmp_path, monkeypatch, request, database):
    """Each save() sends the tags it added (W&B's tagsToAdd), applied under the collection's lock:
    two clients tagging from their own stale views both land, none overwrites the other's."""
    import threading

    store = request.getfixturevalue("pg_url") if database == "postgresql" else None
    server = servers(tmp_path / "server", store=store)
    run = tracklet.init(project="vision", dir=str(tmp_path / "writer"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    _log_version(run, tmp_path, b"v0")
    run.finish()
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    failures: list[BaseException] = []

    def tag(prefix: str) -> None:
        try:
            with tracklet.Api(base_url=server.url) as api:
                for number in range(8):
                    version = api.artifact("vision/m:v0")
                    version.tags.append(f"{prefix}-{number}")
                    version.save()
        except BaseException as error:  # noqa: BLE001 (reported by the test)
            failures.append(error)

    threads = [threading.Thread(target=tag, args=(prefix,)) for prefix in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    with tracklet.Api(base_url=server.url) as api:
        assert sorted(api.artifact("vision/m:v0").tags) == sorted(f"{p}-{n}" for p in "ab" for n in range(8))


def test_wandb_api_artifacts_filters_versions_by_tags(root, start, tmp_path):
    """``wandb.Api().artifacts(type, name, tags=...)``: only the versions with all of the tags (W&B's
    filter; it was accepted and ignored)."""
    import tracklet.compat.wandb as wandb

    run = start(project="p")
    for number, tags in enumerate((["a", "b"], ["a"], [])):
        _log_version(run, tmp_path, f"v{number}".encode(), tags=tags, steps=1)
    run.finish()
    api = wandb.Api(overrides={"root": str(root)})
    assert [v.version for v in api.artifacts("model", "p/m")] == ["v2", "v1", "v0"]
    assert [v.version for v in api.artifacts("model", "p/m", tags=["a"])] == ["v1", "v0"]
    assert [v.version for v in api.artifacts("model", "p/m", tags="b")] == ["v0"]
    assert api.artifacts("model", "p/m", tags=["a", "c"]) == []
