"""Who ran a run (``run.user``): a real ``tracklet server`` with API keys records the user behind the
key that started each run's upload, on SQLite and on a real PostgreSQL, whatever the client sends;
the Python API, wandb.Api and the run routes read it back; a database from before migration s0016
keeps its runs readable, with no user."""

from __future__ import annotations

import re

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from click.testing import CliRunner
from conftest import QUIET
import serverproc

import tracklet
from tracklet.api.remote import RemoteApi
from tracklet.cli.main import main
from tracklet.client.sync import SyncClient
from tracklet.core.layout import RunPaths
from tracklet.core.runuser import RunUser
from tracklet.server import schema as server_schema
from tracklet.store.engine import create_engine


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _record(root, project: str, run_id: str) -> None:
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()


@pytest.fixture(params=["sqlite", "postgresql"])
def keyed_server(request, tmp_path, servers):
    """A server that needs keys, with an admin ``root`` and members ``alice`` (who makes project
    ``team``) and ``bob`` (a writer there)."""
    store = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    server_root = tmp_path / "srv"
    created = serverproc.cli("admin", "--dir", str(server_root), *(["--store", store] if store else []),
                             "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    server = servers(server_root, store=store, dev=False)
    admin = _bearer(created.stdout.strip())
    with httpx.Client(base_url=server.url, headers=admin) as http:
        server.keys = {name: http.post("/api/v1/users", json={"name": name}).json()["key"] for name in ("alice", "bob")}
        server.keys["root"] = created.stdout.strip()
    return server


def _users(server, project: str, key: str) -> dict[str, dict | None]:
    with httpx.Client(base_url=server.url, headers=_bearer(key)) as http:
        listed = http.get(f"/api/v1/projects/{project}/runs").json()["runs"]
    return {row["run_id"]: row["user"] for row in listed}


def test_each_run_reads_back_the_user_whose_key_created_it_whatever_the_client_claims(keyed_server, root,
                                                                                       monkeypatch):
    import tracklet.compat.wandb as wandb

    server, keys = keyed_server, keyed_server.keys
    _record(root, "team", "by-alice")
    with SyncClient(server.url, api_key=keys["alice"]) as client:
        client.sync_run(RunPaths(root, "team", "by-alice"))  # creates project team, Alice its admin
    with httpx.Client(base_url=server.url, headers=_bearer(keys["alice"])) as http:
        assert http.put("/api/v1/projects/team/members/bob", json={"role": "write"}).status_code == 204

    # Bob's upload claims to be Alice's every way a client could: the OS user its run recorded, a
    # query parameter, headers; the server takes the user from the key alone.
    with monkeypatch.context() as claimed:
        claimed.setenv("LOGNAME", "alice")  # what getpass.getuser() reads first
        _record(root, "team", "by-bob")
    assert tracklet.Api().run("team/by-bob").user == RunUser("alice", verified=False)
    log = RunPaths(root, "team", "by-bob").log_file.read_bytes()
    with httpx.Client(base_url=server.url, headers=_bearer(keys["bob"])) as http:
        put = http.put("/api/v1/runs/team/by-bob/log", params={"offset": 0, "user": "alice", "username": "alice"},
                       content=log, headers={"Content-Type": "application/octet-stream", "X-Tracklet-User": "alice",
                                             "X-User": "alice"})
        assert put.status_code == 200, put.text

    # Bob resumes Alice's run (an upload from a later offset, a resend from 0): she stays its creator.
    run = tracklet.init(project="team", id="by-alice", dir=str(root), settings=QUIET, resume="must")
    run.log({"loss": 0.5})
    run.finish()
    with SyncClient(server.url, api_key=keys["bob"]) as client:
        client.sync_run(RunPaths(root, "team", "by-alice"))
    with httpx.Client(base_url=server.url, headers=_bearer(keys["bob"])) as http:
        whole = RunPaths(root, "team", "by-alice").log_file.read_bytes()
        assert http.put("/api/v1/runs/team/by-alice/log", params={"offset": 0}, content=whole,
                        headers={"Content-Type": "application/octet-stream"}).status_code == 200

    expected = {"by-alice": {"name": "alice", "verified": True}, "by-bob": {"name": "bob", "verified": True}}
    assert _users(server, "team", keys["bob"]) == expected  # every reader sees the same creators
    assert _users(server, "team", keys["root"]) == expected
    with httpx.Client(base_url=server.url, headers=_bearer(keys["alice"])) as http:
        for run_id, user in expected.items():
            assert http.get(f"/api/v1/runs/team/{run_id}").json()["run"]["user"] == user
        # The filter language's `user` field is the verified creator on a server with keys.
        def listed(**params: str) -> list[str]:
            return [row["run_id"] for row in http.get("/api/v1/projects/team/runs", params=params).json()["runs"]]

        assert listed(filter="user = bob") == ["by-bob"]
        assert listed(filter='user in [alice, "nobody"]') == ["by-alice"]
        assert listed(filter="not user exists") == []
        assert listed(order_by="-user") == ["by-bob", "by-alice"]
        # What the client recorded stays in its metadata, for what it is worth.
        assert http.get("/api/v1/runs/team/by-bob").json()["run"]["metadata"]["username"] == "alice"
        # Every query of runs means the same `user`: a report's run set too (not the claimed name).
        panel = "```tracklet-panel\nkeys: [loss]\nruns:\n  filter: 'user = \"alice\"'\n```\n"
        report = http.post("/api/v1/projects/team/reports", json={"title": "mine", "markdown": panel})
        assert report.status_code in (200, 201), report.text
        data = http.get(f"/api/v1/projects/team/reports/{report.json()['id']}/panels/0/data").json()
        assert [row.get("run_id") or row.get("id") for row in data["runs"]] == ["by-alice"]

    api = RemoteApi(server.url, api_key=keys["alice"])
    try:
        assert {run.id: run.user for run in api.runs("team")} == {
            "by-alice": RunUser("alice", verified=True), "by-bob": RunUser("bob", verified=True)}
        assert api.run("team/by-bob").user == RunUser("bob", verified=True)
    finally:
        api.close()
    public = wandb.Api(overrides={"base_url": server.url}, api_key=keys["alice"])
    by_bob = public.run("team/by-bob")
    assert (by_bob.user.username, by_bob.user.name, by_bob.user.verified) == ("bob", "bob", True)
    assert [run.user.username for run in public.runs("team", order="+created_at")] == ["alice", "bob"]
    assert [run.id for run in public.runs("team", filters={"username": "bob"})] == ["by-bob"]  # W&B's filter field


_CREATOR = {f"r{i:02d}": ("", "u0", "u1", "u2")[i % 4] for i in range(30)}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def creators_store(request, tmp_path_factory):
    """A server's store of 30 runs in each of two projects and their creators (none for every fourth),
    on each backend: made once for the module's tests of it, which only read it (made for each of its
    60 tests, its database and migrations were most of each one's CPU)."""
    from tracklet.server import run_creators
    from tracklet.store import Store
    from tracklet.store.schema import projects, runs

    root = tmp_path_factory.mktemp("creators")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'store.sqlite'}"
    else:
        from pgcluster import create_database

        url = create_database(request.getfixturevalue("postgres_url"), "run_user_creators")
    store = Store(url, root=root / "root")
    server_schema.migrate(store.engine)
    creator = _CREATOR
    with store.engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name="p")).inserted_primary_key[0]
        other = connection.execute(projects.insert().values(name="other")).inserted_primary_key[0]
        connection.execute(runs.insert(), [
            dict(project_id=pid, run_id=run_id, log_path=f"{pid}/{run_id}", created_at=float(i % 7), name=f"n{(i * 7) % 30:02d}",
                 host=f"h{i % 3}", metadata={"username": "u1"}, tags=[], config={}, summary={}, keys=[])
            for pid in (project_id, other) for i, run_id in enumerate(creator)])
        ids = {name: connection.execute(server_schema.users.insert().values(name=name, created_at=0.0)).inserted_primary_key[0]
               for name in ("u0", "u1", "u2")}
        connection.execute(server_schema.run_creators.insert(), [
            dict(project=project, run_id=run_id, user_id=ids[name if project == "p" else "u2"],
                 user_name=name if project == "p" else "u2", created_at=0.0)
            for project in ("p", "other") for run_id, name in creator.items() if name])
    store.project_joined_fields = run_creators.joined_fields
    yield store
    store.close()
    if request.param == "postgresql":
        from pgcluster import drop_database

        drop_database(request.getfixturevalue("postgres_url"), "run_user_creators")


@pytest.mark.parametrize("order_by", [None, "name", "-name", "user,run_id", "-user,run_id", "-host,user,run_id"])
@pytest.mark.parametrize("filter", [None, 'user = "u1"', "not user exists", 'user ~ "U" and host = h1', 'host = h0'])
def test_every_page_of_runs_reads_each_runs_own_creator_whatever_the_filter_sort_and_page(creators_store, order_by,
                                                                                           filter):
    """The store joins a server's creators once per query (run_creators.joined_fields): listing
    ``user`` with a page changes neither the page nor its order, each row has its own run's creator
    ("" for none), and ``user`` filters and sorts as a text field of the run (runs without one last,
    both ways: session 26)."""
    store, creator = creators_store, _CREATOR
    everything = store.runs("p", filter=filter, order_by=order_by, fields=("name", "host", "user"))
    assert all(row["user"] == creator[row["run_id"]] for row in everything)
    if order_by == "user,run_id":
        assert [row["run_id"] for row in everything] == sorted((row["run_id"] for row in everything),
                                                               key=lambda run_id: (not creator[run_id], creator[run_id], run_id))
    for limit, offset in ((None, 0), (7, 0), (7, 5), (5, 28)):
        with_user = store.runs("p", filter=filter, order_by=order_by, limit=limit, offset=offset, fields=("name", "user"))
        without = store.runs("p", filter=filter, order_by=order_by, limit=limit, offset=offset, fields=("name",))
        assert [row["run_id"] for row in with_user] == [row["run_id"] for row in without]
        assert [row["user"] for row in with_user] == [creator[row["run_id"]] for row in with_user]
    assert store.run("p", "r01", fields=("user",)) == {"run_id": "r01", "user": "u0", "path": "p/r01"}
    assert store.run("p", "r00", fields=("user",))["user"] == ""


def _server_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(server_schema.MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def test_runs_of_a_database_from_before_s0016_stay_readable_with_no_user(keyed_server, root):
    server, keys = keyed_server, keyed_server.keys
    _record(root, "old", "before")
    with SyncClient(server.url, api_key=keys["alice"]) as client:
        client.sync_run(RunPaths(root, "old", "before"))
    server.stop()
    # The database as s0015 left it: no run_creators table, the run and its project in it.
    engine = create_engine(server.store or f"sqlite:///{server.root / 'store.sqlite'}")
    try:
        with engine.begin() as connection:
            command.downgrade(_server_config(connection), "s0015")
        assert "run_creators" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()

    server.start()  # migrates to s0016 on start
    _record(root, "old", "after")
    # The old run goes on (an upload from a later offset): who started it is still unknown, not
    # whoever uploaded next.
    resumed = tracklet.init(project="old", id="before", dir=str(root), settings=QUIET, resume="must")
    resumed.log({"loss": 0.5})
    resumed.finish()
    with SyncClient(server.url, api_key=keys["alice"]) as client:
        client.sync_run(RunPaths(root, "old", "after"))
        client.sync_run(RunPaths(root, "old", "before"))
    assert _users(server, "old", keys["alice"]) == {"before": None, "after": {"name": "alice", "verified": True}}
    with httpx.Client(base_url=server.url, headers=_bearer(keys["alice"])) as http:
        unknown = http.get("/api/v1/projects/old/runs", params={"filter": "not user exists"}).json()["runs"]
        assert [row["run_id"] for row in unknown] == ["before"]
    with httpx.Client(base_url=server.url, headers=_bearer(keys["alice"])) as http:
        before = http.get("/api/v1/runs/old/before").json()["run"]
        assert before["user"] is None and before["summary"]["loss"] == 0.5
    api = RemoteApi(server.url, api_key=keys["alice"])
    try:
        assert api.run("old/before").user is None
    finally:
        api.close()


def test_a_data_root_and_a_server_without_keys_give_the_os_user_the_run_recorded_unverified(root, servers,
                                                                                            monkeypatch):
    import tracklet.compat.wandb as wandb

    for run_id, user in (("mine", "carol"), ("theirs", "dave")):
        monkeypatch.setenv("LOGNAME", user)
        _record(root, "lab", run_id)
    def no_user() -> str:
        raise OSError("No username set in the environment")  # getpass's answer for a uid with no passwd entry

    monkeypatch.setattr("getpass.getuser", no_user)
    _record(root, "lab", "nobody")  # the OS says no user: the run starts all the same, with none

    local = tracklet.Api()
    assert local.run("lab/mine").user == RunUser("carol", verified=False)
    assert local.run("lab/mine").metadata["username"] == "carol"  # W&B's metadata name
    assert local.run("lab/nobody").user is None
    assert [run.id for run in local.runs("lab", filter="user = dave")] == ["theirs"]
    assert [run.id for run in local.runs("lab", filter="not user exists")] == ["nobody"]
    assert wandb.Api().run("lab/theirs").user.username == "dave"
    shown = CliRunner().invoke(main, ["--dir", str(root), "show", "lab/theirs"], catch_exceptions=False)
    assert shown.exit_code == 0 and re.search(r"^User +dave \(unverified\) *$", shown.stdout, re.MULTILINE), shown.output

    server = servers()  # --dev: no keys, so nobody is verified
    with SyncClient(server.url) as client:
        for run_id in ("mine", "theirs", "nobody"):
            client.sync_run(RunPaths(root, "lab", run_id))
    assert _users(server, "lab", "unused") == {"mine": {"name": "carol", "verified": False},
                                                "theirs": {"name": "dave", "verified": False}, "nobody": None}
    remote = RemoteApi(server.url)
    try:
        assert [run.id for run in remote.runs("lab", filter="user = carol")] == ["mine"]
        assert remote.run("lab/theirs").user == RunUser("dave", verified=False)
    finally:
        remote.close()


def test_a_run_whose_user_name_cwd_and_arguments_are_not_utf8_keeps_its_whole_start_record(root, tmp_path):
    """The OS hands back undecodable bytes as lone surrogates, which a record's string can't hold:
    they read back as U+FFFD, and the run keeps its name and every other start field."""
    import os
    import subprocess
    import sys

    cwd = os.path.join(os.fsencode(tmp_path), b"dir-\xff")
    os.mkdir(cwd)
    env = dict(os.environb)
    env.update({b"LOGNAME": b"jos\xe9", b"TRACKLET_DIR": os.fsencode(root), b"PYTHONPATH": os.fsencode(os.getcwd())})
    script = ("import tracklet; run = tracklet.init(project='p', id='odd', name='named', settings={'console': 'off', 'system_metrics': False}); "
              "run.log({'x': 1}); run.finish()")
    done = subprocess.run([sys.executable, "-c", script, b"arg-\xfe"], cwd=cwd, env=env, capture_output=True,
                          timeout=120)
    assert done.returncode == 0 and b"failed" not in done.stderr, done.stderr.decode(errors="replace")
    run = tracklet.Api(str(root)).run("p/odd")
    assert run.name == "named"
    assert run.user == RunUser("jos\ufffd", verified=False)
    assert run.metadata["cwd"].endswith("dir-\ufffd")
    assert run.metadata["command"][-1] == "arg-\ufffd"


@pytest.mark.parametrize("filter", [
    '(state = "running" and user = "u0") or created > 5',
    'state = "finished" and user = "u2" or state = "running" and not user exists',
    '(created < 2 and user in [u1, u2]) or (state = "crashed" and user ~ "0")',
])
def test_an_or_of_indexed_conditions_beside_a_user_condition_lists_what_the_plain_filter_lists(store_url, tmp_path,
                                                                                              filter):
    """The store answers an ``or`` of indexed conditions as the union of each part's runs
    (``filters.indexed_alternatives``); a part that also names ``user`` means the server's verified
    creator there too, not the name the client recorded (``metadata.username``)."""
    from tracklet.server import run_creators
    from tracklet.store import Store
    from tracklet.store.schema import projects, runs

    store = Store(store_url, root=tmp_path / "root")
    server_schema.migrate(store.engine)
    creator = {f"r{i:02d}": ("", "u0", "u1", "u2")[i % 4] for i in range(30)}
    with store.engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name="p")).inserted_primary_key[0]
        connection.execute(runs.insert(), [
            dict(project_id=project_id, run_id=run_id, log_path=f"p/{run_id}", created_at=float(i % 7), name=f"n{i:02d}",
                 state=("running", "finished", "crashed")[i % 3], metadata={"username": "u1"}, tags=[], config={},
                 summary={}, keys=[])
            for i, run_id in enumerate(creator)])
        ids = {name: connection.execute(server_schema.users.insert().values(name=name, created_at=0.0)).inserted_primary_key[0]
               for name in ("u0", "u1", "u2")}
        connection.execute(server_schema.run_creators.insert(), [
            dict(project="p", run_id=run_id, user_id=ids[name], user_name=name, created_at=0.0)
            for run_id, name in creator.items() if name])
    store.project_joined_fields = run_creators.joined_fields
    try:
        for kwargs in ({}, dict(limit=4, offset=2), dict(order_by="name")):
            listed = store.runs("p", filter=filter, fields=("name", "user"), **kwargs)
            assert listed == store.runs("p", filter=f"not not ({filter})", fields=("name", "user"), **kwargs), kwargs
            assert listed or kwargs
    finally:
        store.close()
