"""Incremental versions (W&B's ``wandb.Artifact(name, type, incremental=True)``) against a real
server process, with separate data roots standing in for separate machines: an online run merges its
increment onto the **server's** latest version (its manifest only: no file bytes fetched), an offline
one onto its data root's and, when sent later, onto the server's latest then; two clients committing
onto the same base at once both keep their files (the server re-merges under the collection's lock),
on SQLite and PostgreSQL stores. Before, the base was the local data root's latest, so a job on a
fresh machine logged a version holding only its own shards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QUIET
from serverproc import REPO

import tracklet
from tracklet.artifacts.entries import LocalFile
from tracklet.artifacts.manifest import Manifest
from tracklet.artifacts.remote import upload_version, version_info
from tracklet.artifacts.storage import open_store
from tracklet.client.artifacts import ArtifactClient
from tracklet.client.http import HttpClient

# A job that appends shards to a dataset, as W&B's guides write it; prints the version's files.
SCRIPT = """
    import json, os, sys
    import tracklet.compat.wandb as wandb

    add, remove = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    with wandb.init(project="grow", job_type="shard") as run:
        shard = wandb.Artifact("ds", type="dataset", incremental=True)
        for name in add:
            shard.add_file(name, name=name)
        for name in remove:
            shard.remove(name)
        run.log_artifact(shard)
        shard.wait()
        print(json.dumps({"files": sorted(f.path for f in shard.files()), "error": str(shard.upload_error or "")}))
"""


@pytest.fixture(scope="module")
def server(module_servers, tmp_path_factory) -> Iterator:
    yield module_servers(tmp_path_factory.mktemp("incremental-server"))


def _client(url: str) -> ArtifactClient:
    return ArtifactClient(HttpClient(url))


def _server_files(url: str, project: str, selector: str = "latest") -> dict[str, str]:
    with tracklet.Api(base_url=url) as api:
        version = api.artifact(f"{project}/ds:{selector}")
        return {entry.path: entry.digest for entry in version.files()}


def _job(machine: Path, work: Path, url: str, add: dict[str, bytes], remove: list[str] = ()) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    for name, data in add.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    env = {**os.environ, "TRACKLET_DIR": str(machine), "TRACKLET_MODE": "online", "TRACKLET_BASE_URL": url,
           "TRACKLET_CONSOLE": "off", "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), json.dumps(list(add)), json.dumps(list(remove))],
                          cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _blob_names(machine: Path) -> set[str]:
    return {path.name for path in (machine / "artifacts" / "blobs").rglob("*") if path.is_file()}


def test_a_wandb_job_on_another_machine_builds_on_the_servers_latest_version(server, tmp_path):
    """Two machines (data roots) each run a W&B script logging an incremental version: the second
    version holds the first machine's shards (read from the server's manifest; their bytes never
    reach the second machine nor are sent again), its own, and not the path it removed."""
    shards = {f"shards/{n}.bin": os.urandom(2_000 + n) for n in range(3)}
    first = _job(tmp_path / "a", tmp_path / "work-a", server.url,
                 {"shards/0.bin": shards["shards/0.bin"], "shards/1.bin": shards["shards/1.bin"], "old.txt": b"x"})
    assert first == {"files": ["old.txt", "shards/0.bin", "shards/1.bin"], "error": ""}
    second = _job(tmp_path / "b", tmp_path / "work-b", server.url, {"shards/2.bin": shards["shards/2.bin"]},
                  remove=["old.txt"])
    assert second == {"files": ["shards/0.bin", "shards/1.bin", "shards/2.bin"], "error": ""}
    on_server = _server_files(server.url, "grow")
    assert sorted(on_server) == ["shards/0.bin", "shards/1.bin", "shards/2.bin"]
    assert [sorted(_server_files(server.url, "grow", f"v{n}")) for n in (0, 1)] == [
        ["old.txt", "shards/0.bin", "shards/1.bin"], sorted(on_server)]
    # machine b never held the first machine's bytes: only their digests, from the server's manifest
    held = _blob_names(tmp_path / "b")
    assert on_server["shards/2.bin"] in held
    assert not {on_server["shards/0.bin"], on_server["shards/1.bin"]} & held
    # its local copy names them; read from that data root alone, it says what it lacks
    local = tracklet.Api(tmp_path / "b").artifact("grow/ds:latest")
    assert sorted(entry.path for entry in local.files()) == sorted(on_server)
    with pytest.raises(tracklet.errors.ArtifactError, match="shards/0.bin: missing"):
        local.download(tmp_path / "offline-copy")


def test_an_offline_version_sent_later_and_a_native_draft_merge_onto_the_servers_latest(server, tmp_path,
                                                                                        monkeypatch):
    """An offline run's incremental version builds on its data root's latest (none here); sent to
    the server later (what `tracklet sync` and `tracklet artifact push` call) it is merged onto the
    server's latest then, never replacing it. ``new_draft()`` of the server's version read by an
    online run on a fresh machine stores without fetching the files it keeps."""
    project = "late"
    monkeypatch.chdir(tmp_path)
    for name in ("a.txt", "b.txt", "c.txt"):
        Path(name).write_text(name)
    first = tmp_path / "first"
    run = tracklet.init(project=project, dir=str(first), mode="online", settings={**QUIET, "base_url": server.url})
    base = tracklet.Artifact("ds", type="dataset", incremental=True)
    base.add_file("a.txt")
    assert run.log_artifact(base).wait().upload_error is None
    run.finish()

    offline = tmp_path / "offline"
    run = tracklet.init(project=project, dir=str(offline), mode="offline", settings=QUIET)
    late = tracklet.Artifact("ds", type="dataset", incremental=True)
    late.add_file("b.txt")
    run.log_artifact(late).wait()
    run.finish()
    assert [entry.path for entry in late.files()] == ["b.txt"]  # offline: this root had no version
    assert late._info.incremental_base == ""
    store = open_store(offline)
    answer = upload_version(_client(server.url), store, late._info, [])
    assert answer["version"]["index"] == 1
    assert sorted(_server_files(server.url, project)) == ["a.txt", "b.txt"]
    # sent again (a repeated sync): the same content, no new version
    assert upload_version(_client(server.url), store, late._info, [])["reused"] is True

    fresh = tmp_path / "fresh"
    run = tracklet.init(project=project, dir=str(fresh), mode="online", settings={**QUIET, "base_url": server.url})
    draft = run.use_artifact("ds:latest").new_draft()
    draft.add_file("c.txt")
    assert run.log_artifact(draft).wait().upload_error is None
    run.finish()
    on_server = _server_files(server.url, project)
    assert sorted(on_server) == ["a.txt", "b.txt", "c.txt"]
    assert on_server["a.txt"] not in _blob_names(fresh)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_increments_committed_onto_one_base_keep_both(servers, tmp_path, request, database):
    """Two clients each merged an increment onto the same latest version and commit at once (as two
    jobs logging at the same moment do): the server commits the first as it is and merges the
    second's increment (its file added, the path it removed gone) onto the first, under the
    collection's lock; nothing either sent is lost."""
    store_url = request.getfixturevalue("pg_url") if database == "postgresql" else None
    srv = servers(tmp_path / "server", **({"store": store_url} if store_url else {}))
    project = "race"
    for name in ("a.txt", "drop.txt", "x.txt", "y.txt"):
        (tmp_path / name).write_text(name)
    seed = tmp_path / "seed"
    run = tracklet.init(project=project, dir=str(seed), mode="online", settings={**QUIET, "base_url": srv.url})
    base = tracklet.Artifact("ds", type="dataset")
    base.add_file(tmp_path / "a.txt")
    base.add_file(tmp_path / "drop.txt")
    assert run.log_artifact(base).wait().upload_error is None
    run.finish()
    client = _client(srv.url)
    latest = version_info(client.version(project, "ds", "latest"))
    base_manifest = Manifest.from_bytes(client.read(project, latest.manifest))
    infos = []
    for machine, own, remove in (("x", "x.txt", None), ("y", "y.txt", "drop.txt")):
        store = open_store(tmp_path / machine)
        pending = {entry.path: entry for entry in base_manifest if entry.path != remove}
        pending[own] = LocalFile(str(tmp_path / own))
        infos.append((store, store.commit("ds", "dataset", pending, project=project, aliases=[],
                                          incremental_base=latest.manifest).info))
    answers = [upload_version(client, store, info, []) for store, info in infos]
    assert [answer["version"]["index"] for answer in answers] == [1, 2]
    assert sorted(_server_files(srv.url, project, "v1")) == ["a.txt", "drop.txt", "x.txt"]
    assert sorted(_server_files(srv.url, project, "v2")) == ["a.txt", "x.txt", "y.txt"]


def test_a_server_refusing_at_log_time_leaves_the_local_base_and_a_later_push_merges(servers, tmp_path,
                                                                                     monkeypatch):
    """An online run whose server refuses it (a wrong key) when the version is stored: the version
    builds on the data root's latest, logging never waits on the server, the upload fails with a
    warning; pushed later (the `tracklet sync` path), each version's increment lands on the server's
    latest then, beside what another machine logged meanwhile."""
    from serverproc import keyed_deployment

    server, admin, keys = keyed_deployment(servers, tmp_path / "server", None, ["alice"])
    admin.close()
    monkeypatch.chdir(tmp_path)
    for name in ("a.txt", "b.txt", "s.txt"):
        Path(name).write_text(name)
    root = tmp_path / "machine"
    run = tracklet.init(project="keyed", dir=str(root), mode="offline", settings=QUIET)
    first = tracklet.Artifact("ds", type="dataset", incremental=True)
    first.add_file("a.txt")
    run.log_artifact(first).wait()
    run.finish()
    run = tracklet.init(project="keyed", dir=str(root), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": "not-a-key"})
    second = tracklet.Artifact("ds", type="dataset", incremental=True)
    second.add_file("b.txt")
    with (pytest.warns(tracklet.errors.TrackletWarning, match="latest version on .* could not be read .*HTTP 401"),
          pytest.warns(tracklet.errors.TrackletWarning, match="uploading it to")):
        run.log_artifact(second)
        second.wait()
        run.finish()
    assert second.upload_error is not None
    assert sorted(entry.path for entry in second.files()) == ["a.txt", "b.txt"]  # the data root's latest
    assert second._info.incremental_base == first._info.manifest
    assert second.base_unread == server.url  # marked: the server's files may be missing from this copy

    other = tmp_path / "other"  # meanwhile another machine logs to the server
    run = tracklet.init(project="keyed", dir=str(other), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
    shard = tracklet.Artifact("ds", type="dataset", incremental=True)
    shard.add_file("s.txt")
    assert run.log_artifact(shard).wait().upload_error is None
    run.finish()

    client = ArtifactClient(HttpClient(server.url, api_key=keys["alice"]))
    store = open_store(root)
    for artifact in (first, second):
        upload_version(client, store, artifact._info, [])
    with tracklet.Api(base_url=server.url, api_key=keys["alice"]) as api:
        assert [sorted(entry.path for entry in version.files()) for version in api.artifact_versions("keyed/ds")] \
            == [["s.txt"], ["a.txt", "s.txt"], ["a.txt", "b.txt", "s.txt"]]
