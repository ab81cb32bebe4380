"""W&B public-API calls a user moving over hit as AttributeError: ``Api().viewer``,
``Run.rawconfig``, ``Run.to_html()``, ``Run.console_logs()``, ``Run.update_state()`` and what
``Artifact.add_file()`` returns, written as W&B scripts call them, from the data root and from
one real ``tracklet server`` with API keys (shared by the module)."""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil

import httpx
import pytest
from conftest import run_script

import serverproc
import tracklet
import tracklet.compat.wandb as wandb
from tracklet.client.sync import SyncClient
from tracklet.core.layout import RunPaths


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A data root with run ``p/talky``: config, console lines on stdout and stderr."""
    data = tmp_path_factory.mktemp("recorded") / "data"
    run_script(
        """
        import sys
        import tracklet.compat.wandb as wandb
        wandb.init(project="p", id="talky", config={"lr": 0.1, "opt": {"name": "adam"}},
                   settings={"x_disable_stats": True, "disable_git": True})
        print("epoch 1")
        print("oops", file=sys.stderr)
        print("epoch 2")
        wandb.log({"loss": 0.5})
        wandb.finish()
        """,
        env={"TRACKLET_DIR": str(data), "LOGNAME": "someone-os"},
        check=True,
    )
    return data


@pytest.fixture(scope="module")
def server(recorded, tmp_path_factory):
    """A server with keys: admin ``root``, member ``alice``, who uploaded ``p/talky``."""
    server_root = tmp_path_factory.mktemp("srv")
    created = serverproc.cli("admin", "--dir", str(server_root), "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    started = serverproc.Server(server_root, dev=False).start()
    try:
        keys = {"root": created.stdout.strip()}
        with httpx.Client(base_url=started.url, headers={"Authorization": f"Bearer {keys['root']}"}) as http:
            keys["alice"] = http.post("/api/v1/users", json={"name": "alice"}).json()["key"]
        with SyncClient(started.url, api_key=keys["alice"]) as client:
            client.sync_run(RunPaths(recorded, "p", "talky"))
        started.keys = keys
        yield started
    finally:
        started.stop()
    assert "Exception in ASGI application" not in started.stderr_text()


def _local(recorded, monkeypatch) -> wandb.Api:
    monkeypatch.setenv("TRACKLET_DIR", str(recorded))
    monkeypatch.delenv("TRACKLET_BASE_URL", raising=False)
    return wandb.Api()


def test_viewer_is_the_os_user_on_a_data_root_and_the_keys_user_on_a_server(recorded, server, monkeypatch):
    monkeypatch.setenv("LOGNAME", "someone-os")  # what getpass.getuser() reads first
    viewer = _local(recorded, monkeypatch).viewer
    assert (viewer.username, viewer.name, viewer.entity, viewer.verified, viewer.admin) == (
        "someone-os", "someone-os", "someone-os", False, False)
    assert (viewer.teams, viewer.email, viewer.api_keys) == ([], None, [])
    run = wandb.Api().run("p/talky")
    assert run.user.username == viewer.username  # the run's process ran as this OS user

    alice = wandb.Api(overrides={"base_url": server.url}, api_key=server.keys["alice"]).viewer
    assert (alice.username, alice.entity, alice.verified, alice.admin) == ("alice", "alice", True, False)
    admin = wandb.Api(overrides={"base_url": server.url}, api_key=server.keys["root"]).viewer
    assert (admin.username, admin.admin) == ("root", True)
    remote = wandb.Api(overrides={"base_url": server.url}, api_key=server.keys["root"]).run("p/talky")
    assert remote.user == alice  # the key that uploaded the run


def _apis(recorded, server, monkeypatch) -> list[wandb.Api]:
    return [_local(recorded, monkeypatch), wandb.Api(overrides={"base_url": server.url}, api_key=server.keys["alice"])]


def test_rawconfig_to_html_and_update_state_from_a_data_root_and_a_server(recorded, server, monkeypatch):
    for api, base in zip(_apis(recorded, server, monkeypatch), ["http://127.0.0.1:8765", server.url]):
        run = api.run("someone/p/talky")
        assert run.rawconfig == {"lr": 0.1, "opt": {"name": "adam"}} == run.config
        run.rawconfig["lr"] = 1.0  # a copy: the run's config is not changed by it
        assert run.config["lr"] == 0.1
        assert json.loads(run.json_config) == {"lr": {"value": 0.1, "desc": None},
                                               "opt": {"value": {"name": "adam"}, "desc": None}}
        # W&B's iframe of the run's page: the dashboard's (the server's, else `tracklet ui`'s)
        page = f"{base}/projects/p/runs/talky"
        assert run.to_html() == f'<iframe src="{page}" style="border:none;width:100%;height:420px;"></iframe>'
        hidden = run.to_html(height=200, hidden=True)
        assert hidden.startswith("<button onClick=") and "Display tracklet run</button><iframe" in hidden
        assert 'style="border:none;width:100%;height:200px;display:none;"' in hidden
        assert run._repr_html_() == run.to_html()
        # W&B's requeue / mark-failed: refused, naming the method, as a wandb.Error
        with pytest.raises(wandb.errors.UnsupportedError, match=r"Run.update_state\('failed'\) is not supported"):
            run.update_state("failed")
        assert api.run("p/talky").state == "finished"


def test_console_logs_read_every_line_or_the_last_ones_from_a_data_root_and_a_server(recorded, server, monkeypatch):
    before = datetime.datetime.now(datetime.timezone.utc)
    for api in _apis(recorded, server, monkeypatch):
        run = api.run("p/talky")
        lines = list(run.console_logs())
        assert [(line.number, line.level, line.label, line.content) for line in lines] == [
            (0, "", "", "epoch 1"), (1, "error", "", "oops"), (2, "", "", "epoch 2")]
        assert all(line.timestamp.tzinfo is datetime.timezone.utc and line.timestamp <= before for line in lines)
        assert list(run.console_logs(per_page=1)) == lines  # one line a request from a server
        assert list(run.console_logs(last=2)) == lines[1:]
        assert list(run.console_logs(last=10)) == lines and list(run.console_logs(last=0)) == []
        with pytest.raises(ValueError, match="last"):
            run.console_logs(last=-1)


def test_add_file_returns_wandbs_manifest_entry_and_tracklets_own_add_file_its_name(root, tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 100)
    run = wandb.init(project="p", settings={"x_disable_stats": True, "disable_git": True, "console": "off"})
    artifact = wandb.Artifact("model", "model")
    entry = artifact.add_file(str(weights), name="ckpt/weights.bin")
    assert (entry.path, entry.name, entry.local_path, entry.size, entry.ref) == (
        "ckpt/weights.bin", "ckpt/weights.bin", str(weights), 100, None)
    assert entry.digest == "" and entry.extra == {}  # read when the artifact is stored, not now
    with pytest.raises(ValueError, match="not a reference"):
        entry.ref_target()
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "notes.txt").write_text("n")
    assert artifact.add_dir(str(extra), name="extra") is None  # W&B's add_dir returns None
    (referenced,) = artifact.add_reference((tmp_path / "extra" / "notes.txt").as_uri(), name="ref.txt")
    assert (referenced.path, referenced.ref, referenced.local_path, referenced.size) == (
        "ref.txt", (tmp_path / "extra" / "notes.txt").as_uri(), None, 1)
    run.log_artifact(artifact).wait()
    run.finish()
    assert entry.digest == hashlib.sha256(b"w" * 100).hexdigest() == artifact.get_entry("ckpt/weights.bin").digest
    fetched = entry.download(tmp_path / "out")
    assert open(fetched, "rb").read() == b"w" * 100
    shutil.rmtree(tmp_path / "out")
    assert tracklet.Artifact("plain", "model").add_file(weights) == "weights.bin"  # tracklet's own API: the name
