"""Project names and run ids become directory names: every entry point that takes one refuses a
bad one with an error naming the problem, and writes nothing (one check: ``core/layout.py``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import serverproc

import tracklet
from tracklet.core.layout import RunPaths, check_name, iter_runs
from tracklet.core.recordlog import MAGIC
from tracklet.errors import InvalidName, TrackletError

REPO = Path(__file__).resolve().parents[1]
QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}

# (name, the problem the error names)
BAD_NAMES = [
    ("..", "starts with '.'"),
    (".", "starts with '.'"),
    (".hidden", "starts with '.'"),
    ("a/b", "contains '/'"),
    ("/etc", "starts with '/'"),
    ("a\\b", "contains '\\\\'"),
    ("C:\\x", "contains ':'"),
    ("a\x00b", "contains '\\x00'"),
    ("run\n", "contains '\\n'"),  # a regex ``$`` would let a trailing newline through
    ("", "it is empty"),
    ("x" * 129, "129 characters long (at most 128)"),
    ("a b", "contains ' '"),
    ("-x", "starts with '-'"),
    ("é", "starts with 'é'"),
]
IDS = [repr(name)[:20] for name, _ in BAD_NAMES]


@pytest.mark.parametrize(("name", "problem"), BAD_NAMES, ids=IDS)
def test_the_check_names_the_problem(name, problem):
    for kind in ("project", "run id"):
        with pytest.raises(InvalidName) as caught:
            check_name(kind, name)
        message = str(caught.value)
        assert message.startswith(f"{kind} {name!r} is not valid: ") and problem in message, message
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, TrackletError)
    with pytest.raises(InvalidName):
        RunPaths(Path("/data"), name, "r")  # the one constructor of run paths checks both names
    with pytest.raises(InvalidName):
        RunPaths(Path("/data"), "p", name)


def test_good_names_pass_unchanged():
    for name in ("a", "A1", "run-1.2_x", "0" * 128, "x..y"):
        assert check_name("run id", name) == name
        assert RunPaths(Path("/r"), name, name).log_file == Path("/r/projects", name, "runs", name, "run.tlog")


@pytest.mark.parametrize(("name", "problem"), BAD_NAMES, ids=IDS)
def test_init_refuses_a_bad_project_or_id_and_writes_nothing(root, name, problem):
    current = tracklet.init(project="ok", id="current", dir=str(root), settings=QUIET)
    for arguments in ({"project": name}, {"project": "p", "id": name}):
        with pytest.raises(InvalidName, match="is not valid") as caught:
            tracklet.init(dir=str(root), settings=QUIET, **arguments)
        assert problem in str(caught.value)
    assert not current.finished  # refused before the current run was finished
    current.finish()
    assert [p.name for p in (root / "projects").iterdir()] == ["ok"]
    assert [p.name for p in (root / "projects" / "ok" / "runs").iterdir()] == ["current"]


@pytest.mark.parametrize(("name", "problem"), BAD_NAMES, ids=IDS)
def test_importers_refuse_a_bad_target_project_before_reading(tmp_path, name, problem):
    from tracklet.importers import import_tensorboard, import_wandb

    for importer in (import_wandb, import_tensorboard):
        with pytest.raises(InvalidName) as caught:
            importer(tmp_path / "no-such-source", root=tmp_path / "data", project=name)
        assert problem in str(caught.value)
    assert not (tmp_path / "data").exists()


def test_the_import_command_refuses_a_bad_target_project(tmp_path):
    for source in ("wandb", "tensorboard"):
        result = serverproc.cli("import", source, str(tmp_path), "--project", "..",
                                env={"TRACKLET_DIR": str(tmp_path / "data")})
        assert result.returncode == 2 and "project '..' is not valid: it starts with '.'" in result.stderr, result
    assert not (tmp_path / "data").exists()


def _escaped(name: str) -> str:
    """Every byte percent-encoded, so no client normalizes ``..`` away before the server sees it."""
    return "".join(f"%{byte:02X}" for byte in name.encode())


def test_the_ingest_route_refuses_every_bad_name_a_url_can_carry(servers):
    server = servers()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for name, problem in BAD_NAMES:
            for project, run_id in ((name, "r"), ("p", name)):
                url = f"/api/v1/runs/{_escaped(project)}/{_escaped(run_id)}/log"
                put = http.put(url, params={"offset": 0}, content=MAGIC)
                if "/" in name or not name:  # never reaches a handler as a name
                    assert put.status_code in (404, 405), (name, put.text)
                    continue
                assert put.status_code == 400, (name, put.text)
                detail = put.json()["detail"]
                assert "is not valid" in detail and problem in detail, detail
    assert not (server.root / "projects").exists()
    assert sorted(p.name for p in server.root.parent.iterdir()) == [server.root.name]


def test_sync_refuses_a_run_directory_with_a_bad_name_and_skips_it_in_all(root, servers, tmp_path):
    run = tracklet.init(project="p", id="good", dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()
    # A directory that is not a valid run id (made by hand, or by an older version): not a run.
    bad = root / "projects" / "p" / "runs" / "bad name"
    shutil.copytree(root / "projects" / "p" / "runs" / "good", bad)
    assert [paths.run_id for paths in iter_runs(root)] == ["good"]
    assert [r.id for r in tracklet.Api(root).runs("p")] == ["good"]

    server = servers()

    def sync(*args: str) -> subprocess.CompletedProcess:
        return serverproc.cli("sync", "--url", server.url, "-q", *args, env={"TRACKLET_DIR": str(root)})

    refused = sync(str(bad))
    assert refused.returncode == 2 and "run id 'bad name' is not valid: it contains ' '" in refused.stderr, refused
    assert not (server.root / "projects").exists()
    synced = sync("--all")
    assert synced.returncode == 0, synced.stderr
    assert [p.name for p in (server.root / "projects" / "p" / "runs").iterdir()] == ["good"]
