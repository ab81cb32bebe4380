"""An artifact collection's own description and tags (W&B's ``ArtifactCollection.description`` and
``.tags``, apart from each version's), set by ``collection.save()``: stored in a data root (the
collection's ``collection.json``) and on a ``tracklet server`` (SQLite: the same file; PostgreSQL:
the ``artifact_collections`` table of migration s0018). The same checks everywhere: a bad tag is
refused naming it and nothing changes (not the type saved with it either). On a server the edit
needs the write role (a type change still needs admin); listings show the fields; deleting the
collection drops them; a PostgreSQL database from before s0018 keeps its versions and takes edits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import httpx
import pytest
import serverproc
import sqlalchemy as sa
from conftest import QUIET, REPO
from serverproc import keyed_deployment

import tracklet
import tracklet.compat.wandb as wandb
from tracklet.errors import ArtifactError, ArtifactNameError, ArtifactNotFound, RemoteError


def _save(name: str, text: str, *, type: str = "dataset", project: str = "p") -> tracklet.Artifact:
    artifact = tracklet.Artifact(name, type=type, description="a version's own")
    artifact.tags = ["version-tag"]
    with artifact.new_file("data.txt") as handle:
        handle.write(text)
    return artifact.save(project)


def _fields(api, name: str = "ds", project: str = "p") -> tuple[str, list[str], str]:
    row = next(row for row in api.artifact_collections(project) if row["name"] == name)
    return row["description"], row["tags"], row["type"]


def _check_collection(api, wb_api, before_delete, relog) -> None:
    """The W&B calls against ``api`` (data root or server) and ``wb_api`` (``wandb.Api`` on it);
    ``before_delete()`` checks where the fields are stored, ``relog()`` logs p/ds again."""
    collection = wb_api.artifact_collection("dataset", "p/ds")
    assert (collection.description, collection.tags) == ("", [])  # none until edited (not the version's)
    collection.description = "MNIST digits, 28x28"
    collection.tags.append("vision")
    collection.tags.append("hand written")
    collection.save()
    assert _fields(api) == ("MNIST digits, 28x28", ["vision", "hand written"], "dataset")
    again = wb_api.artifact_collection("dataset", "p/ds")
    assert (again.description, again.tags) == ("MNIST digits, 28x28", ["vision", "hand written"])
    read = wb_api.artifact("p/ds:v0")
    assert (read.description, read.tags) == ("a version's own", ["version-tag"])  # the versions keep theirs
    assert read.collection.description == "MNIST digits, 28x28"  # read lazily from the listing

    # A bad tag is refused naming it, with nothing changed: neither the description nor the type beside it.
    again.description, again.type = "must not land", "table-data"
    again.tags.append("bad/tag")
    with pytest.raises(ArtifactNameError, match="tag 'bad/tag' is not valid"):
        again.save()
    with pytest.raises(ValueError, match="tag 'a:b' is not valid"):  # W&B raises ValueError when set
        again.tags = ["a:b"]
    with pytest.raises(ValueError, match="tag 'x;y' is not valid"):
        api.edit_artifact_collection("p/ds", tags=["ok", "x;y"])
    assert _fields(api) == ("MNIST digits, 28x28", ["vision", "hand written"], "dataset")

    # A type change and a field edit in one save(); tags replaced whole; change_type alone keeps them.
    fresh = wb_api.artifact_collection("dataset", "p/ds")
    fresh.type, fresh.tags = "table-data", ["tables"]
    fresh.save()
    assert _fields(api) == ("MNIST digits, 28x28", ["tables"], "table-data")
    fresh.change_type("dataset")
    assert _fields(api) == ("MNIST digits, 28x28", ["tables"], "dataset")
    assert api.edit_artifact_collection("p/ds", description="") == {"description": "", "tags": ["tables"]}
    with pytest.raises(ArtifactNotFound):
        api.edit_artifact_collection("p/none", tags=["x"])

    before_delete()
    wb_api.artifact_collection("dataset", "p/ds").delete()  # its description and tags go with it
    relog()
    assert _fields(api)[:2] == ("", [])


def test_a_data_roots_collection_keeps_its_own_description_and_tags(root):
    _save("ds", "v0")
    api = tracklet.Api(root)
    directory = root / "artifacts" / "projects" / "p" / "ds"

    def before_delete() -> None:
        assert json.loads((directory / "collection.json").read_text())["tags"] == ["tables"]

    _check_collection(api, wandb.Api(), before_delete, lambda: _save("ds", "logged again"))
    assert not (directory / "collection.json").exists()  # deleted with the collection, not edited since
    api.edit_artifact_collection("p/ds", tags=["cli"])
    listed = serverproc.cli("artifact", "ls", "p", "--json", env={"TRACKLET_DIR": str(root)})
    assert listed.returncode == 0, listed.stderr
    row = json.loads(listed.stdout.strip().splitlines()[0])
    assert (row["name"], row["description"], row["tags"]) == ("ds", "", ["cli"])


def test_a_damaged_collection_file_is_named(root):
    _save("ds", "v0")
    (root / "artifacts" / "projects" / "p" / "ds" / "collection.json").write_text('{"tags": ["bad/tag"]}')
    with pytest.raises(ArtifactError, match="collection.json is damaged: .*tag 'bad/tag'"):
        tracklet.Api(root).artifact_collections("p")
    assert tracklet.Api(root).artifact("p/ds:v0").version == "v0"  # its versions still read


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request, servers, tmp_path):
    """A server with keys: alice logged p/ds:v0 online (the project's admin); bob may write p."""
    store = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    server, admin, keys = keyed_deployment(servers, tmp_path / "server", store, ["alice", "bob"])
    run = tracklet.init(project="p", dir=str(tmp_path / "alice"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
    (tmp_path / "ds.bin").write_bytes(b"bytes")
    artifact = tracklet.Artifact("ds", type="dataset", description="a version's own")
    artifact.tags = ["version-tag"]
    artifact.add_file(str(tmp_path / "ds.bin"))
    assert run.log_artifact(artifact).wait().upload_error is None
    run.finish()
    assert admin.put("/projects/p/members/bob", json={"role": "write"}).status_code in (200, 204)
    admin.close()
    yield server, keys, request.param, store, tmp_path / "server"


def test_a_servers_collection_keeps_its_own_description_and_tags(deployment, tmp_path, monkeypatch):
    server, keys, database, store, server_dir = deployment
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    alice = tracklet.Api(base_url=server.url, api_key=keys["alice"])
    bob = tracklet.Api(base_url=server.url, api_key=keys["bob"])

    # Write may edit the collection's own fields; a type change needs admin, and refused changes nothing.
    assert bob.edit_artifact_collection("p/ds", description="by bob") == {"description": "by bob", "tags": []}
    with pytest.raises(RemoteError, match="403"):
        bob.set_artifact_collection_type("p/ds", "table-data")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['bob']}"}, timeout=60) as http:
        refused = http.patch("/api/v1/projects/p/artifacts/ds", json={"type": "model", "tags": ["x"]})
        assert refused.status_code == 403 and "admin" in refused.text
        bad = http.patch("/api/v1/projects/p/artifacts/ds", json={"description": "no", "tags": ["ok", "bad/tag"]})
        assert bad.status_code == 400 and "tag 'bad/tag' is not valid" in bad.json()["detail"]
        listed = http.get("/api/v1/projects/p/artifacts").json()["collections"]
        assert [(c["name"], c["type"], c["description"], c["tags"]) for c in listed] == [
            ("ds", "dataset", "by bob", [])]

    def before_delete() -> None:
        if database == "postgresql":
            engine = sa.create_engine(store)
            with engine.connect() as connection:
                rows = connection.execute(sa.text("SELECT name, tags FROM artifact_collections")).all()
            engine.dispose()
            assert [tuple(row) for row in rows] == [("ds", '["tables"]')]
        else:
            path = server_dir / "artifacts" / "projects" / "p" / "ds" / "collection.json"
            assert json.loads(path.read_text())["tags"] == ["tables"]

    wb_api = wandb.Api(overrides={"base_url": server.url}, api_key=keys["alice"])
    alice.edit_artifact_collection("p/ds", description="")
    def relog() -> None:
        run = tracklet.init(project="p", dir=str(tmp_path / "alice"), mode="online",
                            settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
        (tmp_path / "again.bin").write_bytes(b"again")
        assert run.log_artifact(tmp_path / "again.bin", name="ds", type="dataset").wait().upload_error is None
        run.finish()

    _check_collection(alice, wb_api, before_delete, relog)
    if database == "postgresql":
        engine = sa.create_engine(store)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM artifact_collections")).scalar() == 0
        engine.dispose()
    alice.close()
    bob.close()


def test_a_database_from_before_s0018_keeps_its_versions_and_takes_edits(servers, tmp_path, pg_url, monkeypatch):
    from alembic import command
    from alembic.config import Config

    from tracklet.server import schema as server_schema

    server = servers(tmp_path / "server", store=pg_url)
    run = tracklet.init(project="p", dir=str(tmp_path / "writer"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    (tmp_path / "ds.bin").write_bytes(b"bytes")
    assert run.log_artifact(tmp_path / "ds.bin", name="ds", type="dataset").wait().upload_error is None
    run.finish()
    server.stop()
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(server_schema.MIGRATIONS))
            config.attributes["connection"] = connection
            command.downgrade(config, "s0017")
        assert "artifact_collections" not in sa.inspect(engine).get_table_names()
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM artifact_versions")).scalar() == 1
    finally:
        engine.dispose()

    server.start()  # migrates to s0018
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    with tracklet.Api(base_url=server.url) as api:
        assert _fields(api) == ("", [], "dataset") and api.artifact("p/ds:v0").version == "v0"
        api.edit_artifact_collection("p/ds", description="after", tags=["migrated"])
        assert _fields(api) == ("after", ["migrated"], "dataset")


SCRIPT = """
import json
import wandb

with open("data.bin", "wb") as f:
    f.write(b"data")
with wandb.init(project="wb") as run:
    artifact = wandb.Artifact("digits", type="dataset")
    artifact.add_file("data.bin")
    run.log_artifact(artifact)
    artifact.wait()

api = wandb.Api()
collection = api.artifact_collection("dataset", "wb/digits")
collection.description = "handwritten digits"
collection.tags = ["mnist", "vision"]
collection.save()
try:
    collection.tags = ["no/slash"]
    refused = None
except ValueError as error:
    refused = str(error)
read = api.artifact_collection("dataset", "wb/digits")
print(json.dumps({"description": read.description, "tags": read.tags, "refused": refused}))
"""


def test_an_unmodified_wandb_script_sets_a_collections_description_and_tags(root, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run([sys.executable, "-m", "tracklet", "run", "--wandb", "--", sys.executable, "train.py"],
                          capture_output=True, text=True, timeout=300, cwd=work,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_CONSOLE": "off",
                               "TRACKLET_DIR": str(root), "TRACKLET_CAPTURE_ENVIRONMENT": "false",
                               "TRACKLET_SYSTEM_METRICS": "false"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert (found["description"], found["tags"]) == ("handwritten digits", ["mnist", "vision"])
    assert "tag 'no/slash' is not valid" in found["refused"]
    assert _fields(tracklet.Api(root), "digits", "wb") == ("handwritten digits", ["mnist", "vision"], "dataset")
