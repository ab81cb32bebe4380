"""Server-mode sweeps (server/sweeps_db.py, server/routes_sweeps_write.py, sweeps/remote.py): a real
`tracklet server` process on a real PostgreSQL holds the study; agents talk only HTTP.

- an agent of another "machine" (its own data root) runs function trials whose runs record online
  to the server; the trials complete with the runs' metric, the runs are on the server;
- keys and project roles guard every sweep call;
- 64 agents (threads doing the HTTP protocol) on one grid sweep: every point leased once;
- an agent process killed with `kill -9` mid-trial: its lease lapses, its point is run again;
- agent processes killed at five points of a trial's life (lease, start, heartbeat, before and
  after the tell): what the server was told stays, the rest lapses, each point completes once;
- the server killed with `kill -9` mid-sweep and started again: agents carry on, no trial lost
  or run twice;
- pruning from the metric the server ingested: the agent learns it on a heartbeat, stops the
  trial, and the trial is recorded pruned.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
import serverproc
from conftest import QUIET
from serverproc import REPO

import tracklet
from tracklet.sweeps.agent import Agent
from tracklet.sweeps.remote import RemoteController, create_remote_sweep

pytest.importorskip("optuna", reason="pip install 'tracklet[sweeps]'")


def _cli(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args, env=env, **kwargs)


def _cold_cli(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` started cold: for the commands that launch the user's program (an agent's
    trials, ``tracklet run``), whose start and children the tests check as a user's are."""
    return subprocess.run([sys.executable, "-m", "tracklet", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=120, **kwargs)


def _keyed(servers, root, store: str):
    """A keyed server on PostgreSQL with an admin key (`admin_key`)."""
    created = _cli("admin", "--dir", str(root), "--store", store, "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    started = servers(root, store=store, dev=False)
    started.admin_key = created.stdout.strip()
    return started


@pytest.fixture(scope="module")
def module_pg_url(postgres_url):
    """A PostgreSQL database of the module's own, dropped after its tests."""
    from pgcluster import create_database, drop_database

    yield create_database(postgres_url, "sweepsserver")
    drop_database(postgres_url, "sweepsserver")


@pytest.fixture(scope="module")
def server(module_pg_url, module_servers, tmp_path_factory):
    """One keyed server on PostgreSQL for the module's tests (each in projects and with users of its own);
    `store_url`: its database's URL."""
    started = _keyed(module_servers, tmp_path_factory.mktemp("srv"), module_pg_url)
    started.store_url = module_pg_url
    return started


@pytest.fixture
def own_server(tmp_path, servers, pg_url):
    """A keyed server of the test's own, on a database of its own: for a test that kills and restarts it."""
    return _keyed(servers, tmp_path / "srv", pg_url)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _user(server, name: str, project: str | None = None, role: str | None = None) -> str:
    with httpx.Client(base_url=server.url, headers=_bearer(server.admin_key)) as http:
        made = http.post("/api/v1/users", json={"name": name})
        assert made.status_code in (200, 201), made.text
        if project is not None:
            assert http.put(f"/api/v1/projects/{project}/members/{name}", json={"role": role}).status_code == 204
        return made.json()["key"]


def _trials(server, project: str, sweep_id: str) -> list[dict]:
    got = httpx.get(f"{server.url}/api/v1/projects/{project}/sweeps/{sweep_id}", headers=_bearer(server.admin_key))
    assert got.status_code == 200, got.text
    return got.json()["sweep"]["trials"]


def objective() -> None:
    run = tracklet.init(settings=QUIET)
    for step in range(3):
        run.log({"f": (run.config["x"] - 1) ** 2 + step})


def test_remote_agents_run_trials_recorded_online_to_the_server(server, tmp_path, monkeypatch):
    config = {"method": "grid", "metric": {"name": "f", "goal": "minimize"},
              "parameters": {"x": {"values": [0, 1, 2]}, "tag": {"value": "a"}}}
    made = create_remote_sweep(server.url, config, project="remote", api_key=server.admin_key)
    assert made["grid_size"] == 3 and made["method"] == "grid"
    assert not (server.root / "sweeps").exists()  # the study is in the database, not the server's files
    machine = tmp_path / "machine-b"  # another machine's data root
    monkeypatch.setenv("TRACKLET_API_KEY", server.admin_key)
    controller = RemoteController(server.url, made["id"], root=machine)
    report = Agent(controller, log=lambda line: None).run_function(objective)
    assert sorted(r.value for r in report.results) == [0.0, 1.0, 1.0]  # the best (min) over the steps: (x-1)^2
    assert report.stopped_because == "every grid point is done"
    trials = _trials(server, "remote", made["id"])
    assert [t["state"] for t in trials] == ["complete"] * 3
    assert sorted(t["params"]["x"] for t in trials) == [0, 1, 2]
    # each trial's run was recorded online: the server has it, with the trial's config
    for trial in trials:
        run = httpx.get(f"{server.url}/api/v1/runs/remote/{trial['run_id']}", headers=_bearer(server.admin_key))
        assert run.status_code == 200, run.text
        assert run.json()["run"]["config"]["x"] == trial["params"]["x"]
        assert trial["run_state"] == "finished"


def test_keys_and_roles_guard_server_sweeps(server):
    config = {"method": "random", "metric": {"name": "f", "goal": "minimize"}, "parameters": {"x": {"min": 0, "max": 1}}}
    owner = _user(server, "owner")
    made = create_remote_sweep(server.url, config, project="guarded", api_key=owner)  # creates the project for its owner
    reader = _user(server, "reader", "guarded", "read")
    outsider = _user(server, "outsider")
    base = f"{server.url}/api/v1/projects/guarded/sweeps/{made['id']}"
    ask = {"agent": "a", "ttl": 30}
    with httpx.Client() as http:
        assert http.post(f"{base}/next", json=ask).status_code == 401  # no key
        assert http.post(f"{base}/next", json=ask, headers=_bearer(reader)).status_code == 403  # read only
        assert http.post(f"{base}/next", json=ask, headers=_bearer(outsider)).status_code == 403
        assert http.get(f"{server.url}/api/v1/sweeps/{made['id']}", headers=_bearer(outsider)).status_code == 404
        assert http.get(f"{server.url}/api/v1/sweeps/{made['id']}", headers=_bearer(reader)).status_code == 200
        leased = http.post(f"{base}/next", json=ask, headers=_bearer(owner))
        assert leased.status_code == 200 and leased.json()["kind"] == "lease"
        # a sweep is found only through its own project
        other = create_remote_sweep(server.url, config, project="elsewhere", api_key=owner)["id"]
        assert http.post(f"{server.url}/api/v1/projects/guarded/sweeps/{other}/next", json=ask,
                         headers=_bearer(owner)).status_code == 404
        # a warm start from a project the sender may not read is refused (it would read its runs)
        secret = _user(server, "secret")
        create_remote_sweep(server.url, config, project="private", api_key=secret)
        peek = http.post(f"{server.url}/api/v1/projects/guarded/sweeps", headers=_bearer(owner),
                         json={"config": {**config, "warm_start": {"project": "private"}}})
        assert peek.status_code == 403 and "private" in peek.json()["detail"]
        bad = http.post(f"{server.url}/api/v1/projects/guarded/sweeps", headers=_bearer(owner),
                        json={"config": {"method": "grid", "parameters": {"x": {"min": 0.0, "max": 1.0}}}})
        assert bad.status_code == 400 and "parameters.x" in bad.json()["detail"]


TTL = 300


class ProtocolAgent(threading.Thread):
    """An agent as a thread doing the HTTP protocol itself (no process per trial): ask, heartbeat
    while "running", tell, until the sweep is finished. It rides out a server restart by asking
    again with the same request id (as RemoteController does)."""

    def __init__(self, url: str, key: str, project: str, sweep_id: str, name: str, hold: float,
                 leased: list, told: list, errors: list) -> None:
        super().__init__(daemon=True, name=name)
        self.base = f"{url}/api/v1/projects/{project}/sweeps/{sweep_id}"
        self.key, self.agent, self.hold = key, name, hold
        self.leased, self.told, self.errors = leased, told, errors
        self.retries = 0

    def _post(self, http: httpx.Client, path: str, body: dict) -> dict:
        deadline = time.monotonic() + 120
        while True:
            try:
                response = http.post(f"{self.base}/{path}", json=body)
                if response.status_code == 200:
                    return response.json()
                problem = response.text
            except httpx.TransportError as error:  # the server is down: ask again, as the client's retries do
                problem = repr(error)
                self.retries += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.agent}: {path} kept failing: {problem}")
            time.sleep(0.2)

    def run(self) -> None:
        try:
            with httpx.Client(headers=_bearer(self.key), timeout=60) as http:
                while True:
                    # ttl: longer than the server's restart can take on a loaded CI machine (a lease
                    # lapsed while the server was down is not what this test is about)
                    answer = self._post(http, "next", {"agent": self.agent, "ttl": TTL, "request": uuid.uuid4().hex})
                    if answer["kind"] == "finished":
                        return
                    if answer["kind"] == "wait":
                        time.sleep(0.5)
                        continue
                    lease = answer["lease"]
                    self.leased.append((lease["trial"], lease["config"]["a"], lease["config"]["b"], self.agent))
                    ref = {"trial": lease["trial"], "agent": self.agent, "ttl": TTL}
                    time.sleep(self.hold)
                    assert self._post(http, "heartbeat", ref)["alive"]
                    value = float(lease["config"]["a"] * 10 + lease["config"]["b"])
                    result = self._post(http, "tell", {**ref, "values": [value]})
                    self.told.append((lease["trial"], result["state"]))
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.errors.append(error)


def test_64_agents_lease_every_grid_point_once_and_a_server_kill_loses_nothing(own_server):
    """64 agents on a 8x16 grid; the server is killed (-9) once trials are under way and started
    again on the same database: every point is leased exactly once and completes once."""
    server = own_server
    config = {"method": "grid", "metric": {"name": "f", "goal": "minimize"},
              "parameters": {"a": {"values": list(range(8))}, "b": {"values": list(range(16))}}}
    made = create_remote_sweep(server.url, config, project="many", api_key=server.admin_key)
    leased: list = []
    told: list = []
    errors: list = []
    agents = [ProtocolAgent(server.url, server.admin_key, "many", made["id"], f"agent-{i}", 0.2, leased, told, errors)
              for i in range(64)]
    for agent in agents:
        agent.start()
    while len(told) < 40 and not errors and any(a.is_alive() for a in agents):
        time.sleep(0.05)
    running = len(leased) - len(told)
    server.kill()  # kill -9 mid-sweep: operations in flight are lost whole, nothing handed out is
    server.start()
    for agent in agents:
        agent.join(300)
    assert not errors, errors[0]
    assert not any(agent.is_alive() for agent in agents)
    assert running > 0 and sum(agent.retries for agent in agents) > 0  # the kill came mid-trial, agents felt it
    points = [(a, b) for _, a, b, _ in leased]
    assert len(points) == len(set(points)) == 128  # no point leased twice, none missed
    assert len({trial for trial, *_ in leased}) == 128
    assert sorted(state for _, state in told) == ["complete"] * 128
    trials = _trials(server, "many", made["id"])
    assert [t["state"] for t in trials] == ["complete"] * 128
    assert sorted((t["params"]["a"], t["params"]["b"]) for t in trials) == sorted(points)


def test_an_agent_killed_mid_trial_lapses_and_its_point_runs_again(server, tmp_path):
    """`tracklet agent --url` as a process, killed with kill -9 while its trial runs: the lease
    lapses, the trial is failed (lapsed) and its grid point is run by the next agent."""
    program = tmp_path / "train.py"
    program.write_text(
        "import os, time, tracklet\n"
        "run = tracklet.init()\n"
        "if os.path.exists('slow'):\n"
        "    open('started', 'w').close()\n"
        "    time.sleep(600)\n"
        "run.log({'f': float(run.config['x'])})\n")
    (tmp_path / "slow").touch()
    config = {"method": "grid", "program": "train.py", "metric": {"name": "f", "goal": "minimize"},
              "parameters": {"x": {"values": [0]}}}
    made = create_remote_sweep(server.url, config, project="killed", api_key=server.admin_key)
    env = {"TRACKLET_API_KEY": server.admin_key, "TRACKLET_CONSOLE": "off"}
    machine = tmp_path / "machine"
    first = subprocess.Popen([sys.executable, "-m", "tracklet", "--dir", str(machine / "a"), "agent", made["id"],
                              "--url", server.url, "--lease-ttl", "2"], cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(REPO), **env}, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert first.poll() is None, first.stderr.read().decode()
        assert time.monotonic() < deadline, "the first trial never started"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    (tmp_path / "slow").unlink()  # the rerun doesn't sleep (the first trial's process died with its agent)
    # The rerun's program logs and exits at once: its online upload still finishes before it exits
    # (it once lost a race with interpreter shutdown and waited out the whole upload timeout).
    second = _cold_cli("--dir", str(machine / "b"), "agent", made["id"], "--url", server.url, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "did not finish" not in second.stderr and "uploading failed" not in second.stderr, second.stderr
    trials = _trials(server, "killed", made["id"])
    assert [t["state"] for t in trials] == ["lapsed", "complete"]
    assert "lease lapsed" in trials[0]["error"]
    assert [t["params"]["x"] for t in trials] == [0, 0]
    rerun = httpx.get(f"{server.url}/api/v1/runs/killed/{trials[1]['run_id']}", headers=_bearer(server.admin_key))
    assert rerun.status_code == 200 and rerun.json()["run"]["summary"]["f"] == 0, rerun.text
    shown = _cli("--dir", str(machine / "b"), "sweep", "show", made["id"], "--url", server.url, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "trials: 1 complete, 1 lapsed of 1 grid points" in shown.stdout and "lease lapsed" in shown.stdout
    stopped = _cli("sweep", "stop", made["id"], "--url", server.url, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert httpx.get(f"{server.url}/api/v1/sweeps/{made['id']}", headers=_bearer(server.admin_key)).json()[
        "state"] == "stopped"


def test_the_server_prunes_from_the_metric_it_ingested_and_the_trial_is_recorded_pruned(server, tmp_path,
                                                                                          monkeypatch):
    """Hyperband (successive halving) in the server: the first trial's curve is low, the second's
    high; the server reads the second run's points as its upload is ingested, the pruner stops it,
    the agent learns it on a heartbeat and stops the function; the trial is pruned, not failed.

    Passing rests on no clock: the second trial logs its 5 points, then waits until a heartbeat
    says pruned, or until a heartbeat begun after the server had indexed all 5 said otherwise (a
    thread here polls the server's history; it gives up after 120 s, only so a failure can't
    hang); then until the heartbeat thread ends (it raised TrialPruned in the function's thread
    before it did), and what was raised lands at the next bytecode. A function that got past all
    that was not stopped (it once logged for up to 15 s and had to be stopped before step 299)."""
    config = {"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
              "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 3},
              "parameters": {"x": {"values": [0, 1]}}}
    made = create_remote_sweep(server.url, config, project="pruning", api_key=server.admin_key)
    monkeypatch.setenv("TRACKLET_API_KEY", server.admin_key)
    monkeypatch.setenv("TRACKLET_UPLOAD_INTERVAL", "0.2")
    answers: list[object] = []  # each heartbeat's answer, as it came back
    told, indexed = threading.Event(), threading.Event()
    beats_before_indexed: list[int] = []
    ran_on: list[int] = []

    class Controller(RemoteController):
        def heartbeat(self, lease):  # the agent's heartbeat thread stops the trial right after a "pruned"
            answer = super().heartbeat(lease)
            answers.append(answer)
            if answer == "pruned":
                told.set()
            return answer

    def watch_index(run_id: str) -> None:  # until the server's store holds the run's 5 points
        give_up = time.monotonic() + 120  # a guard against hanging only: it takes ~1 s
        while time.monotonic() < give_up:
            got = httpx.get(f"{server.url}/api/v1/runs/pruning/{run_id}/history",
                            params={"keys": "loss", "buckets": 0}, headers=_bearer(server.admin_key))
            if got.status_code == 200 and any(s["x"] and max(s["x"]) >= 4 for s in got.json()["series"]):
                beats_before_indexed.append(len(answers))
                indexed.set()
                return
            time.sleep(0.05)

    def train() -> None:
        run = tracklet.init(settings=QUIET)
        first = not ran_on
        ran_on.append(0)
        for step in range(5):
            run.log({"loss": 0.1 if first else 10.0}, step=step)
        if first:
            return
        watcher = threading.Thread(target=watch_index, args=(run.id,), daemon=True)
        watcher.start()
        while not told.is_set():
            if indexed.is_set() and len(answers) >= beats_before_indexed[0] + 2:
                break  # a heartbeat that began once the points were indexed did not prune
            if not indexed.is_set() and not watcher.is_alive():
                break  # the points were never indexed
            time.sleep(0.01)
        if told.is_set():  # the heartbeat thread ends once it has raised TrialPruned here
            for heart in [t for t in threading.enumerate() if t.name.startswith("tracklet-heartbeat-")]:
                heart.join()
        for _ in range(1000):  # a pending TrialPruned lands at the loop's first jump back
            pass
        ran_on[-1] = 1

    controller = Controller(server.url, made["id"], root=tmp_path / "machine")
    report = Agent(controller, log=lambda line: None, prune_interval=0.2).run_function(train)
    assert [r.state for r in report.results] == ["complete", "pruned"], answers
    assert ran_on == [0, 0] and answers[-1] == "pruned", (ran_on, answers)  # stopped while it waited
    trials = _trials(server, "pruning", made["id"])
    assert [t["state"] for t in trials] == ["complete", "pruned"]
    run = httpx.get(f"{server.url}/api/v1/runs/pruning/{trials[1]['run_id']}", headers=_bearer(server.admin_key))
    assert "pruned" in run.json()["run"]["tags"]
    # The heartbeats (every 0.2 s) are routine calls: the one that stopped the trial is the only one
    # in the audit log (server/audit.py's ROUTINE), written with the prune.
    audit = httpx.get(f"{server.url}/api/v1/audit", params={"action": "heartbeat", "limit": 1000,
                                                             "target": f"projects/pruning/sweeps/{made['id']}/"},
                      headers=_bearer(server.admin_key)).json()["events"]
    assert [(e["target"].rsplit("/", 1)[-1], e["detail"]) for e in audit] == [
        ("heartbeat", {"change": "trial pruned", "trial": trials[1]["number"]})]


def test_the_unmodified_wandb_sweep_script_in_online_mode_uses_the_server(server, tmp_path):
    """`wandb.sweep` + `wandb.agent` under `tracklet run --wandb` with TRACKLET_MODE=online: the sweep
    is created on the server, its trials' runs are recorded online to it, nothing sweep-related is
    left in the machine's data root but the trial files."""
    script = tmp_path / "sweep_script.py"
    script.write_text(
        "import wandb\n"
        "config = {'method': 'grid', 'metric': {'name': 'val_loss', 'goal': 'minimize'},\n"
        "          'parameters': {'lr': {'values': [0.1, 0.01]}}}\n"
        "sweep_id = wandb.sweep(config, project='wb-online')\n"
        "def train():\n"
        "    with wandb.init(config={'lr': 1.0}) as run:\n"
        "        wandb.log({'val_loss': wandb.config.lr})\n"
        "wandb.agent(sweep_id, function=train, count=5)\n"
        "print('SWEEP', sweep_id)\n")
    machine = tmp_path / "machine"
    result = _cold_cli("run", "--wandb", "--", sys.executable, str(script), cwd=tmp_path, env={
        "TRACKLET_DIR": str(machine), "TRACKLET_MODE": "online", "TRACKLET_BASE_URL": server.url,
        "TRACKLET_API_KEY": server.admin_key, "TRACKLET_CONSOLE": "off", "TRACKLET_SYSTEM_METRICS": "false"})
    assert result.returncode == 0, result.stderr
    sweep_id = result.stdout.split("SWEEP ")[-1].strip()
    trials = _trials(server, "wb-online", sweep_id)
    assert sorted((t["params"]["lr"], t["value"], t["state"]) for t in trials) == [
        (0.01, 0.01, "complete"), (0.1, 0.1, "complete")]
    assert all(t["run_state"] == "finished" for t in trials)  # the runs were uploaded to the server
    assert not (machine / "sweeps" / sweep_id / "journal.log").exists()


def test_every_agent_call_may_be_repeated(server):
    """What an agent does when an answer was lost (the server died after committing): the same ask
    (its request id) gets the same lease, not a second trial; a tell repeated answers the same."""
    config = {"method": "grid", "metric": {"name": "f", "goal": "minimize"}, "parameters": {"x": {"values": [1, 2]}}}
    made = create_remote_sweep(server.url, config, project="again", api_key=server.admin_key)
    base = f"/api/v1/projects/again/sweeps/{made['id']}"
    with httpx.Client(base_url=server.url, headers=_bearer(server.admin_key)) as http:
        ask = {"agent": "a", "ttl": 60, "request": "r1"}
        first, again = (http.post(f"{base}/next", json=ask).json() for _ in range(2))
        assert first == again and first["kind"] == "lease"
        other = http.post(f"{base}/next", json={**ask, "request": "r2"}).json()["lease"]
        assert other["trial"] != first["lease"]["trial"]
        ref = {"trial": first["lease"]["trial"], "agent": "a", "ttl": 60}
        told, retold = (http.post(f"{base}/tell", json={**ref, "values": [3.0]}).json() for _ in range(2))
        assert told == retold and told["state"] == "complete" and told["values"] == [3.0]
        # another agent's tell of that trial is not taken for a repeat: its lease isn't theirs
        assert http.post(f"{base}/tell", json={**ref, "agent": "b", "values": [9.0]}).json()["state"] == "lapsed"
    trials = _trials(server, "again", made["id"])
    assert [(t["state"], t["value"]) for t in trials] == [("complete", 3.0), ("running", None)]


def test_a_heartbeat_does_not_wait_for_an_operation_holding_the_sweep(server):
    """While another operation holds the sweep's row lock (an ask fitting a GP can take a while),
    heartbeats still renew their leases: they don't queue behind it and lapse."""
    import sqlalchemy as sa

    config = {"method": "random", "metric": {"name": "f", "goal": "minimize"}, "parameters": {"x": {"min": 0, "max": 1}}}
    made = create_remote_sweep(server.url, config, project="beats", api_key=server.admin_key)
    base = f"/api/v1/projects/beats/sweeps/{made['id']}"
    engine = sa.create_engine(server.store_url)
    try:
        with httpx.Client(base_url=server.url, headers=_bearer(server.admin_key), timeout=20) as http:
            lease = http.post(f"{base}/next", json={"agent": "a", "ttl": 60}).json()["lease"]
            with engine.begin() as connection:  # what an operation in progress holds
                connection.execute(sa.text("SELECT id FROM sweep_studies WHERE id = :id FOR UPDATE"), {"id": made["id"]})
                beat = http.post(f"{base}/heartbeat", json={"trial": lease["trial"], "agent": "a", "ttl": 60})
                assert beat.status_code == 200 and beat.json() == {"alive": True, "stop": None}
            # a lease that isn't the agent's is not renewed
            other = http.post(f"{base}/heartbeat", json={"trial": lease["trial"], "agent": "b", "ttl": 60}).json()
            assert other == {"alive": False, "stop": "lost"}
    finally:
        engine.dispose()


def test_a_server_sweeps_warm_start_reads_the_runs_the_server_ingested_into_logs_segments(tmp_path, pg_url):
    """A server with `--logs` keeps run logs as segments, not under its data root: a warm start of
    one of its sweeps reads the project's runs from its store (every run it ingested), not from
    the data root, where it found none."""
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    local = tmp_path / "machine"

    def record(config, logged, fail=False):
        run = tracklet.init(dir=str(local), project="warm", config=config, settings=QUIET)
        for row in logged:
            run.log(row)
        run.finish(1 if fail else 0)
        return run.id

    fits = [record({"x": 0.25, "epochs": 3}, [{"loss": 0.9, "acc": 0.5}, {"loss": 0.4, "acc": 0.7}]),
            record({"x": 0.75, "epochs": 3}, [{"loss": 0.6, "acc": 0.9}])]
    others = [record({"x": 1.5, "epochs": 3}, [{"loss": 0.1}]),  # outside [0, 1]
              record({"x": 0.5, "epochs": 3}, [{"acc": 0.1}]),  # no loss logged
              record({"x": 0.5, "epochs": 3}, [{"loss": 0.01}], fail=True)]  # failed
    server_root, segments = tmp_path / "server", tmp_path / "segments"
    app = create_app(server_root, store_url=pg_url, logs_url=str(segments), auth=False)
    with TestClient(app) as client:
        for run_id in fits + others:
            log = (local / "projects" / "warm" / "runs" / run_id / "run.tlog").read_bytes()
            put = client.put(f"/api/v1/runs/warm/{run_id}/log", params={"offset": 0}, content=log,
                             headers={"Content-Type": "application/octet-stream"})
            assert put.status_code == 200, put.text
        assert not (server_root / "projects").exists()  # the logs are segments only
        config = {"method": "optuna", "metric": {"name": "loss"}, "warm_start": True,
                  "parameters": {"x": {"min": 0.0, "max": 1.0}, "epochs": {"value": 3}}}
        made = client.post("/api/v1/projects/warm/sweeps", json={"config": config})
        assert made.status_code == 200, made.text
        warm = made.json()["warm_start"]
        assert warm["added"] == 2 and sorted(warm["runs"]) == sorted(f"warm/{run_id}" for run_id in fits)
        assert warm["skipped"] == {"config outside the space (x)": 1, "objective not logged": 1,
                                   "not finished (failed)": 1}
        sweep = client.get(f"/api/v1/projects/warm/sweeps/{made.json()['id']}").json()["sweep"]
        assert sorted(t["value"] for t in sweep["trials"]) == [0.4, 0.6]  # the best loss of each run
        assert sweep["counts"] == {"warm_start": 2}
        # several objectives: each metric's final value, as a trial is told
        both = {**config, "metric": None, "metrics": [{"name": "loss", "goal": "minimize"},
                                                        {"name": "acc", "goal": "maximize"}]}
        del both["metric"]
        made = client.post("/api/v1/projects/warm/sweeps", json={"config": both})
        assert made.status_code == 200, made.text
        sweep = client.get(f"/api/v1/projects/warm/sweeps/{made.json()['id']}").json()["sweep"]
        assert sorted(t["values"] for t in sweep["trials"]) == [[0.4, 0.7], [0.6, 0.9]]


def test_a_heartbeat_renews_its_lease_without_the_databases_write_lock(tmp_path):
    """Beats of agents beating every second are reads: while another writer holds SQLite's write
    lock a beat of a lease renewed recently still answers at once (it used to wait for the lock:
    64 agents' beats queued behind each other). A lease whose expiry is due is moved on; a lapsed
    lease, or another agent's, is lost."""
    import sqlalchemy as sa

    from tracklet.server.schema import migrate, sweep_leases
    from tracklet.server.sweeps_db import create_server_sweep, controller
    from tracklet.store.store import Store

    engine = Store(root=tmp_path).engine
    migrate(engine)
    config = {"method": "random", "metric": {"name": "f", "goal": "minimize"}, "parameters": {"x": {"min": 0, "max": 1}}}
    ctl = controller(engine, create_server_sweep(engine, tmp_path, config, project="beats"), tmp_path)
    lease = ctl.next_trial("a", ttl=60)
    row = (sweep_leases.c.sweep_id == ctl.sweep_id) & (sweep_leases.c.trial == lease.trial)

    def expires() -> float:
        with engine.connect() as connection:
            return connection.execute(sa.select(sweep_leases.c.expires).where(row)).scalar_one()

    holder = sqlite3.connect(tmp_path / "store.sqlite", timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        assert ctl.heartbeat(lease)
    finally:
        holder.rollback()
        holder.close()
    with engine.begin() as connection:  # 20 s left of a 60 s lease: due
        connection.execute(sweep_leases.update().where(row).values(expires=time.time() + 20))
    before = time.time()
    assert ctl.heartbeat(lease)
    assert before + 60 <= expires() <= time.time() + 60
    assert not ctl.heartbeat(dataclasses.replace(lease, agent="b"))  # not b's lease
    with engine.begin() as connection:
        connection.execute(sweep_leases.update().where(row).values(expires=time.time() - 1))
    assert not ctl.heartbeat(lease)  # lapsed: the agent must stop the trial


AGENT_KILL = """
import os, signal, sys, time
import tracklet
from tracklet.sweeps.agent import Agent
from tracklet.sweeps.remote import RemoteController

url, sweep_id, machine = sys.argv[1:4]
SETTINGS = {"console": "off", "capture_environment": False, "system_metrics": False}
real_post, armed = RemoteController._post, {}


def post(self, path, body):
    # kill -9 just before a call leaves (`path:before`) or just after the server answered it,
    # the answer unread (`path:after`): what the server did stays done, the agent knows nothing
    if armed.get(path) == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    answer = real_post(self, path, body)
    if armed.get(path) == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return answer


def train():
    if armed.get("start"):  # leased, its trial file written, killed before the run starts
        os.kill(os.getpid(), signal.SIGKILL)
    run = tracklet.init(settings=SETTINGS)
    run.log({"f": 10.0 * run.config["a"] + (1.0 if run.config["b"] == "y" else 0.0)})
    deadline = time.monotonic() + 120
    while armed.get("heartbeat") and time.monotonic() < deadline:  # running until a heartbeat's kill
        time.sleep(0.02)
    run.finish()


RemoteController._post = post
for point in sys.argv[4:]:  # each in a child process killed at that point
    pid = os.fork()
    if pid == 0:
        what, _, when = point.partition(":")
        armed[what] = when or True
        # a short lease, as the survivor below waits for the killed agents' leases to lapse; not
        # so short that a live agent's lapses while a loaded machine delays its heartbeat (4 s did
        # at load 26 on 2 cores: the trial told after its kill point came back lapsed)
        Agent(RemoteController(url, sweep_id, root=machine), ttl=8.0, log=lambda line: None).run_function(train)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(point, "killed" if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL else status, flush=True)
report = Agent(RemoteController(url, sweep_id, root=machine), ttl=60.0, poll_interval=0.2,
               log=lambda line: None).run_function(train)
print("survivor", report.stopped_because, flush=True)
"""


def test_kill_9_of_a_server_agent_mid_operation_lapses_its_trial_and_runs_each_point_once(server, tmp_path):
    """Server-mode agent processes SIGKILLed at each point of a trial's life: the lease granted
    but its answer never read; leased, before the run starts; a heartbeat renewed on the server,
    its answer never read; the run finished but before the tell; the tell recorded on the server,
    its answer never read. Then an agent that finishes the sweep. Every grid point completes
    exactly once with its own value; each trial the agent never told is lapsed (its point ran
    again), the one it told stays complete (its point did not run again); nothing is left leased."""
    config = {"method": "grid", "metric": {"name": "f", "goal": "minimize"},
              "parameters": {"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}}}
    made = create_remote_sweep(server.url, config, project="agentkill", api_key=server.admin_key)
    points = ["next:after", "start", "heartbeat:after", "tell:before", "tell:after"]
    script = tmp_path / "kill.py"
    script.write_text(AGENT_KILL)
    done = subprocess.run([sys.executable, str(script), server.url, made["id"], str(tmp_path / "machine"), *points],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_API_KEY": server.admin_key,
                               "TRACKLET_CONSOLE": "off"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{point} killed" for point in points] + [
        "survivor every grid point is done"], done.stderr
    trials = _trials(server, "agentkill", made["id"])
    complete = [t for t in trials if t["state"] == "complete"]
    expected = sorted((a, b) for a in (1, 2, 3) for b in ("x", "y"))
    assert sorted((t["params"]["a"], t["params"]["b"]) for t in complete) == expected  # each point exactly once
    assert all(t["value"] == 10.0 * t["params"]["a"] + (t["params"]["b"] == "y") for t in complete)
    lapsed = [t for t in trials if t["state"] == "lapsed"]
    shown = [(t["number"], t["state"], t["params"], t.get("agent"), t["error"]) for t in trials]
    assert len(lapsed) == 4 and len(trials) == len(complete) + 4, shown  # the four never told; no other
    assert all("lease lapsed" in t["error"] for t in lapsed)
    page = httpx.get(f"{server.url}/api/v1/projects/agentkill/sweeps/{made['id']}", headers=_bearer(server.admin_key))
    assert page.json()["sweep"]["state"] == "finished"
    assert not any(t["state"] == "running" for t in trials)
    for trial in complete:  # each completed trial's run reached the server, finished, with its value
        run = httpx.get(f"{server.url}/api/v1/runs/agentkill/{trial['run_id']}", headers=_bearer(server.admin_key))
        assert run.status_code == 200 and run.json()["run"]["summary"]["f"] == trial["value"], run.text
        assert trial["run_state"] == "finished"


def test_a_server_bayes_ask_never_waits_for_the_gp_imports_it_is_random_until_they_end(tmp_path, monkeypatch,
                                                                                       servers):
    """The server imports a GP sweep's modules (torch, SciPy: seconds) in the background from the
    sweep's creation (``gp_imports``); its first ask past the start-up trials imported them inside
    the request before (seconds between an agent's trial exit and its next trial's start: issue
    #17, <= 1 s). While they import, an ask past the start-up trials is answered at random and
    its trial marked ``random_while_gp_imports``, as the local agent's is; the first ask after
    they end is the GP's. One of the imports here blocks until the test releases it: a request
    that waited for it would hang. Users see the mark in the sweep route's trials, hence
    ``tracklet.Api(base_url=...).sweep`` and ``tracklet sweep show --url`` (a server process over
    the same tables)."""
    from fastapi.testclient import TestClient
    from gp_gate import block_gp_imports, trials_while_blocked, watch_gp_asks

    from tracklet.server.app import create_app
    from tracklet.server.sweeps_db import controller
    from tracklet.sweeps import gp_imports

    release = block_gp_imports(tmp_path, monkeypatch)
    asked_gp = watch_gp_asks(monkeypatch)
    config = {"method": "bayes", "seed": 0, "metric": {"name": "f"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}}}
    root = tmp_path / "srv"
    app = create_app(root, auth=False, index_on_start=False)
    with TestClient(app) as client:
        made = client.post("/api/v1/projects/gp/sweeps", json={"config": config})
        assert made.status_code == 200, made.text
        sweep_id = made.json()["id"]
        loading = gp_imports.running()
        assert loading is not None  # started by the sweep's creation

        def run_trial() -> None:
            answer = client.post(f"/api/v1/projects/gp/sweeps/{sweep_id}/next", json={"agent": "a", "ttl": 60})
            assert answer.status_code == 200, answer.text
            lease = answer.json()["lease"]
            told = client.post(f"/api/v1/projects/gp/sweeps/{sweep_id}/tell", json={
                "trial": lease["trial"], "agent": "a", "values": [(lease["config"]["x"] - 0.3) ** 2]})
            assert told.status_code == 200 and told.json()["state"] == "complete", told.text

        trials_while_blocked(run_trial, 12, release, loading)  # 10 start-up trials, then 2 the GP would fit
        rows = controller(app.state.tracklet.store.engine, sweep_id, root).status()["trials"]
    marks = [False] * 10 + [True] * 2 + [False]
    assert [row["random_while_gp_imports"] for row in rows] == marks
    assert asked_gp == [*range(10), 12]  # the GP's once the imports ended
    server = servers(root)
    with tracklet.Api(base_url=server.url) as api:
        trials = api.sweep(f"gp/{sweep_id}")["trials"]
    assert [trial["random_while_gp_imports"] for trial in trials] == marks
    shown = _cli("sweep", "show", sweep_id, "--url", server.url)
    assert shown.returncode == 0, shown.stderr
    marked = [int(line.split()[0]) for line in shown.stdout.splitlines() if line.endswith("(random: GP importing)")]
    assert marked == [10, 11]


@pytest.mark.parametrize("state", ["running", "paused", "stopped", "finished"])
def test_a_restarted_server_starts_its_gp_sweeps_imports_before_any_sweep_call(tmp_path, monkeypatch, state):
    """A server started over tables holding a bayes sweep that may still ask (running or paused)
    starts the GP's imports on its own, a moment after start (``sweeps_warm``): before, only a
    call naming the sweep started them, so a restarted server answered its agents' first asks
    past the start-up trials at random for the seconds they took. A stopped sweep, or one whose
    run cap is reached (finished), asks no more: no imports. No sweep call is made to the restarted server here; one import blocks until the
    test releases it, so the thread is seen running."""
    from fastapi.testclient import TestClient
    from gp_gate import block_gp_imports

    from tracklet.server.app import create_app
    from tracklet.sweeps import gp_imports

    config = {"method": "bayes", "seed": 0, "metric": {"name": "f"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}}}
    root = tmp_path / "srv"
    first = create_app(root, auth=False, index_on_start=False)
    with TestClient(first) as client:
        made = client.post("/api/v1/projects/gp/sweeps",
                           json={"config": {**config, "run_cap": 1} if state == "finished" else config})
        assert made.status_code == 200, made.text
        sweep_id = made.json()["id"]
        if state == "finished":
            lease = client.post(f"/api/v1/projects/gp/sweeps/{sweep_id}/next", json={"agent": "a"}).json()["lease"]
            told = client.post(f"/api/v1/projects/gp/sweeps/{sweep_id}/tell",
                               json={"trial": lease["trial"], "agent": "a", "values": [0.5]})
            assert told.status_code == 200, told.text
            assert client.get(f"/api/v1/projects/gp/sweeps/{sweep_id}").json()["sweep"]["state"] == "finished"
        elif state != "running":
            control = client.post(f"/api/v1/projects/gp/sweeps/{sweep_id}/control", json={"state": state})
            assert control.status_code == 200, control.text
        first.state.sweeps_warm.join()
    release = block_gp_imports(tmp_path, monkeypatch)  # waits for the imports the creation started
    assert gp_imports.running() is None
    again = create_app(root, auth=False, index_on_start=False)
    try:
        with TestClient(again):
            again.state.sweeps_warm.join()  # it has looked for GP sweeps (no request made)
            loading = gp_imports.running()
            assert (loading is not None) == (state in ("running", "paused"))
    finally:
        release.set()
    if loading is not None:
        loading.join()


def test_a_server_without_sweeps_does_not_import_optuna_to_look_for_gp_sweeps(tmp_path):
    """The look for GP sweeps at start (``sweeps_warm``) imports the sweeps' modules (Optuna) only
    when the server's tables hold a sweep: a server that never ran one doesn't pay for them. In a
    fresh interpreter (this one imported Optuna already)."""
    script = f"""
import sys
from fastapi.testclient import TestClient
from tracklet.server.app import create_app

app = create_app({str(tmp_path / "srv")!r}, auth=False, index_on_start=False)
with TestClient(app) as client:
    app.state.sweeps_warm.join()
    print("health", client.get("/api/v1/health").status_code, "optuna", "optuna" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "health 200 optuna False"
