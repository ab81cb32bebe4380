"""``tracklet sync`` sends a run's whole artifact lineage (#21): the versions it logged, the
version it logged again (content another run logged first: a sweep's runs of the same code share
one ``code`` version) and the versions it used, so that a server holding only this run can show
and reproduce it; and a repeated sync adds nothing."""

from __future__ import annotations

import os

from click.testing import CliRunner
from conftest import QUIET
from test_artifacts_server import _client

import tracklet
import tracklet.compat.wandb as wandb
from tracklet.cli.main import main


def _sync(root, url: str, run: str) -> None:
    result = CliRunner().invoke(main, ["--dir", str(root), "sync", run, "--url", url, "--quiet"])
    assert result.exit_code == 0, result.output


def test_sync_sends_the_versions_a_run_relogged_or_used_once(servers, tmp_path):
    server = servers(tmp_path / "server")
    root = tmp_path / "offline"
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(20_000))
    first = tracklet.init(project="p", id="first", dir=str(root), settings=QUIET)
    first.log_artifact(str(weights), name="weights", type="model").wait()
    first.finish()
    data = tmp_path / "data.txt"
    data.write_text("1 2\n3 4\n")
    dataset = tracklet.Artifact("dataset", type="dataset")  # logged outside any run
    dataset.add_file(str(data))
    dataset.save("p", root=root)

    second = tracklet.init(project="p", id="second", dir=str(root), settings=QUIET)
    second.use_artifact("dataset:latest").download(str(tmp_path / "read"))
    second.log_artifact(str(weights), name="weights", type="model").wait()  # the same content: first's v0
    second.finish()
    assert [a["version"] for a in tracklet.Api(root).run("p/second").logged_artifacts] == [0]

    for _ in range(2):  # the second sync adds nothing
        _sync(root, server.url, "p/second")
    client = _client(server.url)
    (model,) = client.versions("p", "weights")
    assert model["logged_by"] == "p/first" and model["digest"] == first_digest(root, "weights")
    (used,) = client.versions("p", "dataset")
    assert used["logged_by"] is None and used["digest"] == first_digest(root, "dataset")
    _sync(root, server.url, "p/first")  # the run that logged it first, synced later: still one version
    assert [v["version"] for v in client.versions("p", "weights")] == ["v0"]
    with tracklet.Api(base_url=server.url) as api:
        on_server = api.run("p/second")
        assert [(a["name"], a["version"]) for a in on_server.used_artifacts] == [("dataset", 0)]
        assert [(a["name"], a["version"]) for a in on_server.logged_artifacts] == [("weights", 0)]
        wandb_run = wandb.Api(overrides={"base_url": server.url}).run("p/second")  # W&B's names, same answer
        assert [a.qualified_name for a in wandb_run.used_artifacts()] == ["p/dataset:v0"]
        assert [a.qualified_name for a in wandb_run.logged_artifacts()] == ["p/weights:v0"]
        downloaded = api.artifact("p/dataset:v0").download(str(tmp_path / "from-server"))
        assert (tmp_path / "from-server" / "data.txt").read_text() == "1 2\n3 4\n" and downloaded


def first_digest(root, name: str) -> str:
    return tracklet.Api(root).artifact(f"p/{name}:v0").digest
