"""API keys and project roles on a real `tracklet server` process (not --dev): 401 for missing,
malformed, wrong, revoked and disabled keys; 403 for other users' projects and too small a role;
keys shown once and hashed at rest; `tracklet admin`, `tracklet login`, online runs with a key;
SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import QUIET, REPO
import serverproc
from serverproc import Server

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.client.sync import SyncClient, SyncError


def _cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return serverproc.cli(*args, env=env, input=input)


def _admin(server_root: Path, *args: str, store: str | None = None) -> subprocess.CompletedProcess:
    return _cli("admin", "--dir", str(server_root), *(["--store", store] if store else []), *args)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _record(root: Path, project: str, run_id: str, steps: int = 50) -> None:
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=QUIET, config={"lr": 0.1})
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()


@pytest.fixture(params=["sqlite", "postgresql"])
def keyed_server(request, tmp_path, servers):
    """A server that needs keys, with an admin made by `tracklet admin create-user` beforehand."""
    store = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    root = tmp_path / "srv"
    created = _admin(root, "create-user", "root", "--admin", store=store)
    assert created.returncode == 0, created.stderr
    assert "shown only now" in created.stderr
    server = servers(root, store=store, dev=False)
    server.admin_key = created.stdout.strip()
    return server


def test_keys_and_roles_guard_every_project(keyed_server, root):
    server = keyed_server
    url = server.url
    with httpx.Client(base_url=url) as http:
        assert http.get("/api/v1/health").status_code == 200  # the only thing open without a key
        missing = http.get("/api/v1/projects")
        assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
        assert missing.headers["www-authenticate"] == "Bearer"
        assert http.get("/api/v1/projects", headers={"Authorization": "Basic abc"}).status_code == 401
        malformed = http.get("/api/v1/projects", headers=_bearer("not-a-key"))
        assert malformed.status_code == 401 and "malformed" in malformed.json()["detail"]
        key_id = server.admin_key.split("_")[1]
        wrong = http.get("/api/v1/projects", headers=_bearer(f"tlk_{key_id}_{'x' * 43}"))
        assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"

        admin = _bearer(server.admin_key)
        assert http.get("/api/v1/me", headers=admin).json() == {"user": "root", "is_admin": True, "auth": True,
                                                                "key_id": key_id}
        alice = http.post("/api/v1/users", json={"name": "alice"}, headers=admin).json()
        bob = http.post("/api/v1/users", json={"name": "bob"}, headers=admin).json()
        assert alice["key"].startswith("tlk_") and alice["user"] == "alice"
        # Only server admins manage users.
        assert http.post("/api/v1/users", json={"name": "eve"}, headers=_bearer(bob["key"])).status_code == 403
        assert http.get("/api/v1/users", headers=_bearer(bob["key"])).status_code == 403

    # Alice's first upload creates project vision, with her as its admin.
    _record(root, "vision", "r1")
    with SyncClient(url, api_key=alice["key"]) as client:
        client.sync_run(RunPaths(root, "vision", "r1"))
    # Bob can neither read nor write it: the upload says it needs write access...
    with SyncClient(url, api_key=bob["key"], give_up_after=5) as client:
        with pytest.raises(SyncError, match="403.*needs write access to project 'vision'"):
            client.sync_run(RunPaths(root, "vision", "r1"))
    # ...and without a key there is no upload at all.
    with SyncClient(url, api_key=None, give_up_after=5) as client:
        with pytest.raises(SyncError, match="401.*tracklet login"):
            client.sync_run(RunPaths(root, "vision", "r1"))

    with httpx.Client(base_url=url) as http:
        as_alice, as_bob = _bearer(alice["key"]), _bearer(bob["key"])
        assert [p["name"] for p in http.get("/api/v1/projects", headers=as_alice).json()["projects"]] == ["vision"]
        assert http.get("/api/v1/projects", headers=as_bob).json()["projects"] == []
        assert [r["run_id"] for r in http.get("/api/v1/projects/vision/runs", headers=as_alice).json()["runs"]] == ["r1"]
        for path in ("/api/v1/projects/vision/runs", "/api/v1/runs/vision/r1", "/api/v1/runs/vision/r1/log/offset",
                     "/api/v1/runs/vision/r1/history?keys=loss", "/api/v1/runs/vision/r1/reproduce-plan",
                     "/api/v1/projects/vision/run-diff?a=r1&b=r1"):
            denied = http.get(path, headers=as_bob)
            assert denied.status_code == 403 and "not a member" in denied.json()["detail"], path
            assert http.get(path, headers=_bearer(server.admin_key)).status_code == 200, path
        # Alice (project admin) lets Bob read: reads work, writes still don't.
        assert http.put("/api/v1/projects/vision/members/bob", json={"role": "read"}, headers=as_alice).status_code == 204
        assert http.get("/api/v1/runs/vision/r1", headers=as_bob).json()["run"]["config"] == {"lr": 0.1}
        write = http.put("/api/v1/runs/vision/r2/log", params={"offset": 0}, content=b"", headers=as_bob)
        assert write.status_code == 403 and "(has read)" in write.json()["detail"]
        # A reader can't manage members; an unknown role is refused.
        assert http.put("/api/v1/projects/vision/members/bob", json={"role": "admin"}, headers=as_bob).status_code == 403
        assert http.put("/api/v1/projects/vision/members/bob", json={"role": "owner"}, headers=as_alice).status_code == 422
        assert http.get("/api/v1/projects/vision/members", headers=as_bob).json()["members"] == [
            {"user": "alice", "role": "admin"}, {"user": "bob", "role": "read"}]

        # Keys: listed without secrets; a revoked key is refused from the next request on.
        second = http.post("/api/v1/keys", json={"label": "ci"}, headers=as_alice).json()
        listed = http.get("/api/v1/keys", headers=as_alice)
        assert [k["label"] for k in listed.json()["keys"]] == ["initial", "ci"]
        assert alice["key"].split("_", 2)[2] not in listed.text and second["key"].split("_", 2)[2] not in listed.text
        assert http.delete(f"/api/v1/keys/{alice['key_id']}", headers=as_bob).status_code == 404  # not Bob's
        assert http.delete(f"/api/v1/keys/{alice['key_id']}", headers=as_alice).status_code == 204
        revoked = http.get("/api/v1/projects", headers=as_alice)
        assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
        assert http.get("/api/v1/projects", headers=_bearer(second["key"])).status_code == 200
        # A disabled user's every key stops working.
        assert http.delete("/api/v1/users/bob", headers=_bearer(server.admin_key)).status_code == 204
        disabled = http.get("/api/v1/runs/vision/r1", headers=as_bob)
        assert disabled.status_code == 401 and "revoked" in disabled.json()["detail"]

    if server.store is None:  # secrets are stored hashed: no key appears in the database file
        database = sqlite3.connect(server.root / "store.sqlite")
        hashes = {row[0] for row in database.execute("select secret_hash from api_keys")}
        database.close()
        assert len(hashes) == 4 and all(len(h) == 64 for h in hashes)
        raw = b"".join(p.read_bytes() for p in server.root.glob("store.sqlite*"))
        for key in (server.admin_key, alice["key"], bob["key"], second["key"]):
            assert key.split("_", 2)[2].encode() not in raw


def test_every_refusal_names_the_role_its_route_needs(keyed_server, root):
    """A read-only member's writes are refused naming `write` (uploads, files, artifact writes, the
    upload's offset probe, a sweep) or `admin` (members, media prune), never the `read` they hold;
    reads still work. The upload through SyncClient says the same."""
    server = keyed_server
    admin = _bearer(server.admin_key)
    _record(root, "vision", "r1")
    with SyncClient(server.url, api_key=server.admin_key) as client:
        client.sync_run(RunPaths(root, "vision", "r1"))
    with httpx.Client(base_url=server.url) as http:
        reader = http.post("/api/v1/users", json={"name": "rita"}, headers=admin).json()
        assert http.put("/api/v1/projects/vision/members/rita", json={"role": "read"}, headers=admin).status_code == 204
        as_reader = _bearer(reader["key"])
        assert http.get("/api/v1/runs/vision/r1", headers=as_reader).status_code == 200
        log = RunPaths(root, "vision", "r1").log_file.read_bytes()
        needs_write = [
            ("GET", "/api/v1/runs/vision/r1/log/offset", None),
            ("PUT", "/api/v1/runs/vision/r1/log?offset=0", {"content": log[:64]}),
            ("POST", "/api/v1/runs/vision/r1/primary", {"json": {"token": "t" * 20}}),
            ("PUT", "/api/v1/runs/vision/r1/files/notes.txt", {"content": b"hi"}),
            ("POST", "/api/v1/projects/vision/artifacts/_blobs/missing", {"json": {"digests": []}}),
            ("PUT", f"/api/v1/projects/vision/artifacts/_blobs/{'0' * 64}", {"content": b"x"}),
            ("POST", "/api/v1/projects/vision/artifacts/data/versions", {"json": {}}),
            ("POST", "/api/v1/projects/vision/sweeps", {"json": {"config": {"method": "random"}}}),
            ("POST", "/api/v1/projects/vision/artifacts/data/versions/v0/aliases", {"json": {"add": ["best"]}}),
            ("DELETE", "/api/v1/projects/vision/artifacts/data/versions/v0", None),
        ]
        needs_admin = [
            ("PUT", "/api/v1/projects/vision/members/rita", {"json": {"role": "write"}}),
            ("DELETE", "/api/v1/projects/vision/members/rita", None),
            ("POST", "/api/v1/projects/vision/media/prune", {"json": {"keep_last": 1}}),
        ]
        for role, calls in (("write", needs_write), ("admin", needs_admin)):
            for method, path, body in calls:
                refused = http.request(method, path, headers=as_reader, **(body or {}))
                assert refused.status_code == 403, (method, path, refused.text)
                assert refused.json()["detail"] == f"user 'rita' needs {role} access to project 'vision' (has read)", \
                    (method, path)
        # A project that doesn't exist yet: the upload's probe answers 0 (the upload creates it); moving
        # an alias or deleting a version there is refused (no member of it) and creates no project.
        assert http.get("/api/v1/runs/fresh/r/log/offset", headers=as_reader).json() == {"offset": 0}
        for method, path, body in (("DELETE", "/api/v1/projects/fresh/artifacts/m/versions/v0", None),
                                   ("POST", "/api/v1/projects/fresh/artifacts/m/versions/v0/aliases",
                                    {"json": {"add": ["best"]}})):
            missing = http.request(method, path, headers=as_reader, **(body or {}))
            assert missing.status_code == 403, (method, path, missing.text)
            assert "needs write access to project 'fresh' (not a member" in missing.json()["detail"]
        listed = http.get("/api/v1/projects", headers=admin).json()["projects"]
        assert "fresh" not in [project["name"] for project in listed]
    with SyncClient(server.url, api_key=reader["key"], give_up_after=5) as client:
        with pytest.raises(SyncError, match=r"403.*needs write access to project 'vision' \(has read\)"):
            client.sync_run(RunPaths(root, "vision", "r1"))


# The routes that create a project that doesn't exist yet for their sender: a run's and an artifact's
# uploads, and a server sweep (``requires(..., creates=True)``). Every other write is refused there.
_CREATING_ROUTES = {
    ("PUT", "/api/v1/runs/{project}/{run_id}/log"),
    ("PUT", "/api/v1/runs/{project}/{run_id}/files/{name:path}"),
    ("POST", "/api/v1/runs/{project}/{run_id}/primary"),  # a shared run's primary claim: the run's first request
    ("POST", "/api/v1/projects/{project}/artifacts/_blobs/missing"),
    ("PUT", "/api/v1/projects/{project}/artifacts/_blobs/{digest}"),
    ("POST", "/api/v1/projects/{project}/artifacts/_blobs/batch"),
    ("POST", "/api/v1/projects/{project}/artifacts/_uploads"),
    ("PUT", "/api/v1/projects/{project}/artifacts/_uploads/{upload_id}/parts/{number}"),
    ("POST", "/api/v1/projects/{project}/artifacts/_uploads/{upload_id}/complete"),
    ("POST", "/api/v1/projects/{project}/artifacts/_chunks/missing"),
    ("PUT", "/api/v1/projects/{project}/artifacts/_packs/{pack_id}"),
    ("POST", "/api/v1/projects/{project}/artifacts/_files"),
    ("POST", "/api/v1/projects/{project}/artifacts/{name}/versions"),
    ("POST", "/api/v1/projects/{project}/sweeps"),
}
# A POST that only reads (a report's preview parses markdown): open on a project not there, as a GET.
_READING_POSTS = {("POST", "/api/v1/projects/{project}/reports/preview")}
_PATH_VALUES = {"run_id": "r1", "name:path": "notes.txt", "name": "data", "digest": "0" * 64, "upload_id": "u1",
                "number": "1", "pack_id": "p1", "version": "v0", "sweep_id": "s1", "user": "nina", "report_id": "1",
                "token_id": "1"}


def _project_writes(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, path template) of every route of the server that writes under a ``{project}``."""
    from tracklet.server.app import create_app

    def walk(routes):
        for route in routes:
            if type(route).__name__ == "_IncludedRouter":  # FastAPI's included router: its own routes
                yield from walk(route.original_router.routes)
            elif getattr(route, "methods", None):
                yield route

    app = create_app(tmp_path / "routes", index_on_start=False)
    return sorted((method, route.path) for route in walk(app.routes) if "{project}" in route.path
                  for method in route.methods if method not in ("GET", "HEAD"))


def test_only_an_upload_creates_a_project_that_does_not_exist(keyed_server, tmp_path):
    """A user's write to a project nobody made yet: an upload (a run's log or file, an artifact's
    blobs, packs and commit) or a server sweep creates it with them as its admin; any other write
    (members, reports, media retention and prune, aliases, a version's deletion, a sweep's trials)
    answers 403 naming the user as no member, and leaves no project behind, whatever its path."""
    server = keyed_server
    writes = _project_writes(tmp_path)
    assert _CREATING_ROUTES <= set(writes)
    admin = _bearer(server.admin_key)
    with httpx.Client(base_url=server.url) as http:
        nina = _bearer(http.post("/api/v1/users", json={"name": "nina"}, headers=admin).json()["key"])
        created = set()
        for number, (method, template) in enumerate(writes):
            project = f"fresh{number}"
            path = template.replace("{project}", project)
            for name, value in _PATH_VALUES.items():
                path = path.replace("{" + name + "}", value)
            answer = http.request(method, path, params={"offset": 0}, json={}, headers=nina)
            if (method, template) in _CREATING_ROUTES:
                created.add(project)
                assert answer.status_code != 403, (method, template, answer.text)
                assert http.get(f"/api/v1/projects/{project}/members", headers=admin).json()["members"] == [
                    {"user": "nina", "role": "admin"}], (method, template)
            elif (method, template) in _READING_POSTS:
                assert answer.status_code == 422, (method, template, answer.text)  # its empty body, checked
            else:
                assert answer.status_code == 403, (method, template, answer.text)
                assert f"access to project {project!r} (not a member" in answer.json()["detail"], (method, template)
        listed = {entry["name"] for entry in http.get("/api/v1/projects", headers=admin).json()["projects"]}
        assert {name for name in listed if name.startswith("fresh")} == created


def test_admin_cli_manages_users_keys_and_members(tmp_path):
    root = tmp_path / "srv"
    assert _admin(root, "create-user", "carol").returncode == 0
    again = _admin(root, "create-user", "carol")
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = _admin(root, "create-user", "../x")
    assert bad.returncode == 2 and "is not valid" in bad.stderr
    key = _admin(root, "create-key", "carol", "--label", "laptop")
    assert key.returncode == 0 and key.stdout.startswith("tlk_")
    listed = _admin(root, "keys", "carol").stdout
    assert "laptop" in listed and key.stdout.strip().split("_", 2)[2] not in listed
    key_id = key.stdout.split("_")[1]
    assert _admin(root, "revoke-key", key_id).returncode == 0
    assert "revoked" in next(line for line in _admin(root, "keys").stdout.splitlines() if line.startswith(key_id))
    missing = _admin(root, "revoke-key", "nope")
    assert missing.returncode == 2 and "no key 'nope'" in missing.stderr
    assert _admin(root, "add-member", "vision", "carol", "write").returncode == 0
    assert _admin(root, "add-member", "vision", "dave", "write").stderr.strip().endswith("no user 'dave'")
    assert _admin(root, "remove-member", "vision", "carol").returncode == 0
    assert _admin(root, "disable-user", "carol").returncode == 0
    assert "carol\tdisabled" in _admin(root, "users").stdout


def test_login_saves_the_key_for_sync_and_online_runs(keyed_server, root, tmp_path):
    server = keyed_server
    config_home = tmp_path / "config"
    env = {"XDG_CONFIG_HOME": str(config_home), "TRACKLET_DIR": str(root)}
    refused = _cli("login", "--url", server.url, "--key", "tlk_abc_def", env=env)
    assert refused.returncode == 2 and "refused the key (HTTP 401)" in refused.stderr
    assert not (config_home / "tracklet" / "credentials.json").exists()
    prompted = _cli("login", "--url", server.url, env=env, input=server.admin_key + "\n")
    assert prompted.returncode == 0, prompted.stderr
    assert "Logged in to" in prompted.stdout and "as root, server admin" in prompted.stdout
    saved = config_home / "tracklet" / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert server.admin_key not in prompted.stdout + prompted.stderr

    _record(root, "saved", "viakey")
    synced = _cli("sync", "saved/viakey", "--url", server.url, "-q", env=env)
    assert synced.returncode == 0, synced.stderr
    without = _cli("sync", "saved/viakey", "--url", server.url, "-q", env={"XDG_CONFIG_HOME": str(tmp_path / "none"),
                                                                            "TRACKLET_DIR": str(root)})
    assert without.returncode == 2 and "401" in without.stderr

    # An online run in a process that logged in uploads with the saved key.
    script = f"""
import tracklet
run = tracklet.init(project="saved", id="online", mode="online", settings={{
    "base_url": {server.url!r}, "console": "off", "system_metrics": False, "capture_environment": False}})
for step in range(20):
    run.log({{"loss": step}})
run.finish()
"""
    online = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO), **env},
                            capture_output=True, text=True, timeout=120, check=False)
    assert online.returncode == 0 and "refused" not in online.stderr, online.stderr
    row = httpx.get(f"{server.url}/api/v1/runs/saved/online", headers=_bearer(server.admin_key)).json()["run"]
    assert row["state"] == "finished" and row["last_step"] == 19


def test_an_online_run_with_a_wrong_key_trains_on_and_says_why(keyed_server, root, monkeypatch):
    monkeypatch.setenv("TRACKLET_API_KEY", "tlk_0000_wrong")
    run = tracklet.init(project="p", id="denied", dir=str(root), mode="online",
                        settings={**QUIET, "base_url": keyed_server.url, "upload_interval": 0.05})
    with pytest.warns(tracklet.TrackletWarning, match="refused.*401"):
        for step in range(200):
            run.log({"loss": step})
        run.finish()
    assert tracklet.Api(root).run("p/denied").history(["loss"])["loss"] == list(range(200))


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_dev_mode_is_loopback_only(tmp_path, host):
    result = _cli("server", "--dir", str(tmp_path), "--host", host, "--dev")
    assert result.returncode == 2 and "loopback" in result.stderr and "drop --dev" in result.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_first_run_hint_is_a_command_that_works(backend, request, tmp_path):
    """An empty keyed server prints how to make its first admin; running exactly that line works."""
    import shlex

    store = None if backend == "sqlite" else request.getfixturevalue("pg_url")
    server = Server(tmp_path / "fresh", store=store, dev=False)
    server.spawn()
    try:
        hint = None
        deadline = time.monotonic() + 180
        while hint is None and time.monotonic() < deadline and server.proc.poll() is None:
            hint = next((line for line in server.stderr_text().splitlines() if "No users yet" in line), None)
            time.sleep(0.05)  # polling the server's stderr file for the hint
        assert hint and "`" in hint, hint
        command = shlex.split(hint.split("`")[1].replace("NAME", "first"))
        assert command[:2] == ["tracklet", "admin"]
        made = _cli(*command[1:])
        assert made.returncode == 0, made.stderr
        server.wait_ready()
        key = made.stdout.strip()
        me = httpx.get(f"{server.url}/api/v1/me", headers=_bearer(key), timeout=10)
        assert me.status_code == 200 and me.json()["user"] == "first" and me.json()["is_admin"] is True
    finally:
        server.stop()


def test_store_url_without_its_driver_is_one_line_naming_the_extra(tmp_path):
    """psycopg missing (blocked in this process): a one-line error naming the extra, no traceback."""
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "from tracklet.cli.main import main\n"
            "main(['admin', '--dir', sys.argv[1], '--store', 'postgresql://u:secret@127.0.0.1:1/db', 'users'])")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "psycopg" in lines[0] and "pip install 'tracklet[postgres]'" in lines[0]
    assert "secret" not in lines[0]
