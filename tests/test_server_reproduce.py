"""The dashboard's reproduce plan and run comparison routes (#21) on a real `tracklet server` over
a data root whose runs were recorded in a real git repository made in the test, and outside git."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

import tracklet

from test_reproduce import SIMPLE, _committed_repo, git, record


def test_plan_names_the_commit_and_the_command_and_writes_nothing(root, tmp_path, servers):
    repo = _committed_repo(tmp_path)
    (repo / "train.py").write_text(SIMPLE.replace("'lr': 0.1", "'lr': 0.3"))  # uncommitted
    record(repo)
    (run,) = tracklet.Api(root).runs("repro")
    commit = git(repo, "rev-parse", "HEAD").strip()
    before = sorted(str(p) for p in root.rglob("*") if "store" not in p.name)
    server = servers(root)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        plan = http.get(f"/api/v1/runs/repro/{run.id}/reproduce-plan")
        assert plan.status_code == 200, plan.text
        data = plan.json()
        assert data["ok"] and data["problems"] == [] and data["commit"] == commit
        assert data["command"] == f"tracklet reproduce repro/{run.id}"
        assert data["program"] == "train.py" and data["config"] == {"lr": 0.3}
        assert f"check out   {repo} at {commit[:12]}" in data["plan"] and "diff.patch" in data["plan"]
        assert data["diff"].endswith("diff.patch")
        uv = http.get(f"/api/v1/runs/repro/{run.id}/reproduce-plan", params={"env": "uv"}).json()
        assert uv["command"] == f"tracklet reproduce repro/{run.id} --env uv" and uv["requirements"]
        assert http.get(f"/api/v1/runs/repro/{run.id}/reproduce-plan", params={"env": "conda"}).status_code == 422
        assert http.get("/api/v1/runs/repro/nope/reproduce-plan").status_code == 404
        assert http.get("/api/v1/runs/repro/..%2Fx/reproduce-plan").status_code in (400, 404)
    after = sorted(str(p) for p in root.rglob("*") if "store" not in p.name)
    assert after == before  # nothing written in the data root (the store aside)
    assert not (tmp_path / f"reproduce-{run.id}").exists()


def test_a_run_outside_git_names_the_code_as_what_cannot_be_restored(root, tmp_path, servers):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text(SIMPLE)
    record(plain, env={"GIT_CEILING_DIRECTORIES": str(tmp_path)})
    (run,) = tracklet.Api(root).runs("repro")
    server = servers(root)
    data = httpx.get(f"{server.url}/api/v1/runs/repro/{run.id}/reproduce-plan", timeout=60).json()
    assert not data["ok"] and data["commit"] == ""
    assert any(f"was recorded outside a git repository (in {plain})" in problem for problem in data["problems"])
    assert "cannot be restored" in data["plan"]


def test_run_diff_answers_what_tracklet_diff_computes(root, tmp_path, servers):
    repo = _committed_repo(tmp_path)
    record(repo)
    seeded = SIMPLE.replace("import tracklet\n", "import random\nimport tracklet\nrandom.seed(7)\n")  # only b seeds
    (repo / "train.py").write_text(seeded.replace("'lr': 0.1", "'lr': 0.2").replace("1.0", "0.5"))
    record(repo)
    first, second = sorted(tracklet.Api(root).runs("repro"), key=lambda r: r.created_at or 0)
    server = servers(root)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        data = http.get("/api/v1/projects/repro/run-diff", params={"a": first.id, "b": second.id}).json()
        assert (data["a"], data["b"]) == (first.path, second.path)
        assert data["config"] == [{"key": "lr", "a": 0.1, "b": 0.2, "only": None}]
        assert [(c["key"], c["a"], c["b"]) for c in data["seeds"]] == [("random.seed", None, "7")]
        (loss,) = [entry for entry in data["summary"] if entry["key"] == "loss"]
        assert (loss["a"], loss["b"], loss["difference"], loss["relative"]) == (1.0, 0.5, -0.5, -0.5)
        assert "-run = tracklet.init(project='repro', config={'lr': 0.1})" in data["code"]["diff"]
        assert "+run = tracklet.init(project='repro', config={'lr': 0.2})" in data["code"]["diff"]
        missing = http.get("/api/v1/projects/repro/run-diff", params={"a": first.id, "b": "nope"})
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
        assert http.get("/api/v1/projects/repro/run-diff", params={"a": first.id}).status_code == 422


def test_at_most_two_plans_or_comparisons_run_at_once(tmp_path):
    """A third request while two are being made is a 503 naming why, and the slot comes back."""
    from fastapi.testclient import TestClient

    from conftest import QUIET
    from tracklet.server import routes_reproduce
    from tracklet.server.app import create_app

    root = tmp_path / "srv"
    run = tracklet.init(project="p", id="r", dir=str(root), settings=QUIET)
    run.finish()
    with TestClient(create_app(root, auth=False, sweep_interval=3600)) as client:
        held = [routes_reproduce._slots.acquire(blocking=False) for _ in range(routes_reproduce.MAX_AT_ONCE)]
        try:
            assert all(held)
            busy = client.get("/api/v1/runs/p/r/reproduce-plan")
            assert busy.status_code == 503 and "try again" in busy.json()["detail"]
            assert client.get("/api/v1/projects/p/run-diff", params={"a": "r", "b": "r"}).status_code == 503
        finally:
            for _ in held:
                routes_reproduce._slots.release()
        assert client.get("/api/v1/runs/p/r/reproduce-plan").status_code == 200
        assert client.get("/api/v1/projects/p/run-diff", params={"a": "r", "b": "r"}).status_code == 200


def test_a_synced_runs_plan_and_diff_read_its_files_from_the_servers_file_store(root, tmp_path, servers):
    """A run synced to a server keeps diff.patch in the server's file store (`<server>/files/...`),
    not beside its log, and its code snapshot is a `code` artifact `tracklet sync` pushed to the
    server: the plan finds both there (no "is gone" problem) and the comparison shows the
    uncommitted change and the untracked module."""
    import serverproc

    repo = _committed_repo(tmp_path)
    record(repo)
    (repo / "helper.py").write_text("FACTOR = 2\n")  # untracked, imported: in the code snapshot
    changed = SIMPLE.replace("import tracklet\n", "import tracklet\nimport helper\n").replace("'lr': 0.1", "'lr': 0.4")
    (repo / "train.py").write_text(changed)  # uncommitted: diff.patch
    record(repo)
    first, second = sorted(tracklet.Api(root).runs("repro"), key=lambda r: r.created_at or 0)
    server = servers(tmp_path / "server-root")  # its own data root: the runs arrive only by sync
    synced = serverproc.cli("sync", "--url", server.url, "-q", "--all", env={"TRACKLET_DIR": str(root)})
    assert synced.returncode == 0, synced.stderr
    assert not (tmp_path / "server-root" / "projects" / "repro" / "runs" / second.id / "files").exists()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        data = http.get(f"/api/v1/runs/repro/{second.id}/reproduce-plan").json()
        assert data["problems"] == [] and data["ok"], data["problems"]
        assert data["code_files"] == ["helper.py"]
        assert "untracked files the program imported (from artifact repro/code-train.py:v0): helper.py" in data["plan"]
        assert data["diff"] == f"<server files of repro/{second.id}>/diff.patch"
        assert f"apply       <server files of repro/{second.id}>/diff.patch" in data["plan"]
        diff = http.get("/api/v1/projects/repro/run-diff", params={"a": first.id, "b": second.id}).json()
        assert "+import helper" in diff["code"]["diff"] and "+FACTOR = 2" in diff["code"]["diff"]
    # nothing copied for the plan is left behind on the server
    assert not list(Path(tempfile.gettempdir()).glob("tracklet-plan-*"))
