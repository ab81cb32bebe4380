"""Claiming a shared run's primary on a tracking server (docs/shared-runs.md, "Claiming the primary").

W&B's shared mode without ``x_primary`` makes a process the run's primary if the run doesn't exist
yet: two nodes starting together both found no log and both started as primary, and one node's
primary data never reached the server. Online, each asks the server first
(``POST /api/v1/runs/{project}/{run_id}/primary``): exactly one holds the primary, across server
processes sharing one store (SQLite or PostgreSQL), and the others start as secondary writers.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

import tracklet
from conftest import REPO

PATH = "/api/v1/runs/p/{run}/primary"


@pytest.fixture(scope="module")
def nodes(module_store, module_servers, tmp_path_factory):
    """Two server processes sharing one store, as two nodes of one deployment: a PostgreSQL
    database, or one SQLite file. The second one never sweeps (it holds none of the first's logs,
    which its index pass would read as silent runs)."""
    base = tmp_path_factory.mktemp("claims")
    store = module_store or f"sqlite:///{base / 'shared.sqlite'}"
    first = module_servers(base / "a", store=store)
    second = module_servers(base / "b", store=store, extra=("--sweep-interval", "86400"))
    return first, second


def _claim(server, run: str, token: str, **fields) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        return client.post(PATH.format(run=run), json={"token": token, **fields})


def test_racing_claims_on_two_server_processes_grant_exactly_one(nodes):
    """Eight writers claim one run at once through two server processes sharing the store: one is
    granted, the other seven are refused naming it; its retry (through either process) is granted
    again, the same claim; nobody's token is ever answered."""
    barrier = threading.Barrier(8)
    answers: dict[int, httpx.Response] = {}

    def claim(number: int) -> None:
        with httpx.Client(base_url=nodes[number % 2].url, timeout=60) as client:
            barrier.wait()
            answers[number] = client.post(PATH.format(run="race"),
                                          json={"token": f"token-of-writer-{number}", "host": f"node{number}",
                                                "pid": 100 + number})

    threads = [threading.Thread(target=claim, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    granted = [number for number, answer in answers.items() if answer.status_code == 200]
    assert len(granted) == 1, {number: answer.text for number, answer in answers.items()}
    winner = answers[granted[0]].json()
    assert winner["primary"] is True and winner["holder"]["host"] == f"node{granted[0]}" and winner["offset"] == 0
    for number, answer in answers.items():
        assert "token-of-writer" not in answer.text
        if number != granted[0]:
            assert answer.status_code == 409, answer.text
            body = answer.json()
            assert body["primary"] is False and body["live"] is True and body["holder"] == winner["holder"]
            assert f"held by node{granted[0]} (pid {100 + granted[0]}), a live writer" in body["detail"]
    for server in nodes:  # a retried request (its answer lost) is granted again: the same claim
        again = _claim(server, "race", f"token-of-writer-{granted[0]}", host=f"node{granted[0]}", pid=100 + granted[0])
        assert again.status_code == 200 and again.json() == winner


def test_a_finished_runs_primary_passes_only_to_a_writer_that_resumes(nodes, tmp_path, monkeypatch):
    """Once the holder's run finished, a writer that doesn't resume it is refused (it joins as a
    secondary: W&B's late evaluator), one that resumes takes the primary (W&B continues a finished
    shared run as its primary only with ``resume=``), and holds it against the others from then on."""
    import tracklet.compat.wandb as wandb

    server = nodes[0]
    _online_env(monkeypatch, server.url, tmp_path / "a")
    run = wandb.init(project="p", id="done", reinit="create_new", settings=wandb.Settings(mode="shared"))
    run.log({"loss": 1.0})
    run.finish()
    held = _claim(server, "done", "late-evaluator-token", host="eval", pid=7)
    assert held.status_code == 409, held.text
    body = held.json()
    assert body["live"] is False and body["state"] == "finished" and body["offset"] > 0
    assert body["holder"]["pid"] == os.getpid() and "pass resume to continue it" in body["detail"]
    took = _claim(server, "done", "resuming-writer-token", host="node-c", pid=8, resume=True)
    assert took.status_code == 200, took.text
    assert took.json()["holder"]["host"] == "node-c" and took.json()["offset"] == body["offset"]
    again = _claim(server, "done", "late-evaluator-token", host="eval", pid=7, resume=True)
    assert again.status_code == 409 and again.json()["live"] is True  # the new holder's claim is fresh
    events = httpx.get(server.url + "/api/v1/audit", params={"action": "claim_primary", "project": "p"},
                       timeout=60).json()["events"]
    took_over = [event for event in events if event["target"] == "runs/p/done/primary" and event["status"] == 200]
    assert [event["detail"] for event in took_over][-1:] == [{"replaces": {"host": body["holder"]["host"],
                                                                          "pid": os.getpid()}}]


@pytest.fixture(scope="module")
def server(module_servers, tmp_path_factory):
    """One server (SQLite) for the tests whose behaviour doesn't depend on the store."""
    return module_servers(tmp_path_factory.mktemp("server"))


def test_a_bad_claim_is_refused_naming_its_field(server):
    """Every field is bounded: a token of 16-64 letters, digits, ``_``, ``-``; a host of at most 255
    characters, none a control character; a pid that fits 32 bits; a boolean ``resume``; a valid run
    id; a JSON body. Nothing is claimed by a bad one."""
    bad = [({"token": "short"}, "token"), ({"token": "has spaces in it here"}, "token"), ({"token": "t" * 65}, "token"),
           ({"token": "t" * 20, "host": "a\nb"}, "host"), ({"token": "t" * 20, "host": "h" * 256}, "host"),
           ({"token": "t" * 20, "pid": -1}, "pid"), ({"token": "t" * 20, "pid": 2**31}, "pid"),
           ({"token": "t" * 20, "resume": "maybe"}, "resume"), ({"host": "no-token"}, "token")]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for fields, problem in bad:
            answer = client.post(PATH.format(run="bad"), json=fields)
            assert answer.status_code == 422, (fields, answer.text)
            assert [error["loc"][-1] for error in answer.json()["detail"]] == [problem], fields
        named = client.post("/api/v1/runs/p/a%20b/primary", json={"token": "t" * 20})
        assert named.status_code == 400 and "run id" in named.json()["detail"]
        assert client.post(PATH.format(run="bad"), json={"token": "u" * 20}).status_code == 200  # none claimed it
        assert client.post(PATH.format(run="x"), content=b"{not json", headers={"Content-Type": "application/json"}
                           ).status_code == 422
        assert client.post(PATH.format(run="x"), content=b"[" * 100_000,
                           headers={"Content-Type": "application/json"}).status_code in (400, 413, 422)


# ---------------------------------------------------------------------------- the W&B client


def _online_env(monkeypatch, url: str, root: Path) -> None:
    for name, value in _env(url, root).items():
        monkeypatch.setenv(name, value)


def _env(url: str, root: Path) -> dict[str, str]:
    return {f"TRACKLET_{name}": value for name, value in {
        "MODE": "online", "BASE_URL": url, "CONSOLE": "off", "SYSTEM_METRICS": "false",
        "CAPTURE_ENVIRONMENT": "false", "UPLOAD_INTERVAL": "0.1", "DIR": str(root)}.items()}


NODE = """
import sys, time, warnings
from pathlib import Path
from typing import ClassVar
import tracklet.compat.wandb as wandb

go, value = Path(sys.argv[1]), float(sys.argv[2])
Path(sys.argv[3]).touch()
while not go.exists():
    time.sleep(0.002)
warnings.simplefilter("always")
run = wandb.init(project="p", id="together", settings=wandb.Settings(mode="shared"))
run.log({"loss": value})
run.log({"loss": value / 2})
run.finish()
"""


def test_two_nodes_starting_one_shared_run_at_once_make_one_primary(tmp_path, server):
    """Two processes on two nodes (data roots) start ``wandb.init(mode="shared", id=...)`` at the
    same moment, with no run anywhere yet: one is the primary, the other a secondary writer (one
    warning naming the primary's host and pid), and the server holds both as one run: the primary's
    log byte for byte, the secondary's part, its ``loss`` as ``loss/l:<label>``."""
    go = tmp_path / "go"
    roots = [tmp_path / "node1", tmp_path / "node2"]
    processes = [subprocess.Popen([sys.executable, "-c", NODE, str(go), str(number + 1.0),
                                   str(tmp_path / f"ready{number}")],
                                  env={**os.environ, "PYTHONPATH": str(REPO), **_env(server.url, root)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for number, root in enumerate(roots)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{number}").exists() for number in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.01)
    go.touch()
    outcomes = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outcomes
    run_dirs = [root / "projects/p/runs/together" for root in roots]
    primaries = [number for number, run_dir in enumerate(run_dirs) if (run_dir / "run.tlog").exists()]
    assert len(primaries) == 1, outcomes
    primary, secondary = primaries[0], 1 - primaries[0]
    parts = sorted((run_dirs[secondary] / "parts").glob("*.tlog"))
    assert len(parts) == 1 and not (run_dirs[primary] / "parts").exists()
    label = parts[0].stem
    warnings = [line for line in outcomes[secondary][1].splitlines() if "joins run together" in line]
    assert len(warnings) == 1 and "the server names its primary: " in warnings[0], outcomes[secondary][1]
    assert f"pid {processes[primary].pid})" in warnings[0]
    assert "joins run" not in outcomes[primary][1]
    on_server = server.root / "projects/p/runs/together"
    assert (on_server / "run.tlog").read_bytes() == (run_dirs[primary] / "run.tlog").read_bytes()
    assert (on_server / "parts" / f"{label}.tlog").read_bytes() == parts[0].read_bytes()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        run = client.get("/api/v1/runs/p/together").json()["run"]
        assert run["state"] == "finished" and run["metadata"]["parts"][label]["state"] == "finished"
        values = {}
        for key in ("loss", f"loss/l:{label}"):
            history = client.get("/api/v1/runs/p/together/history", params={"keys": key, "buckets": 0}).json()
            values[key] = history["series"][0]["values"]
    assert values == {"loss": [primary + 1.0, (primary + 1.0) / 2],
                      f"loss/l:{label}": [secondary + 1.0, (secondary + 1.0) / 2]}


class _OlderServer(http.server.BaseHTTPRequestHandler):
    """A tracking server from before the claim's route: 404 for it (FastAPI's body), and the
    upload's offset probe, as it answers."""

    offset = 0
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:  # noqa: N802  (http.server's name)
        self.seen.append(f"POST {self.path}")
        self._answer(404, {"detail": "Not Found"})

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(f"GET {self.path}")
        if self.path.endswith("/log/offset"):
            self._answer(200, {"offset": self.offset})
        else:
            self._answer(404, {"detail": "Not Found"})

    def do_PUT(self) -> None:  # noqa: N802  (uploads: refused, the run's log stays local)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(404, {"detail": "Not Found"})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("offset", [0, 420])
def test_an_older_server_is_asked_as_before(tmp_path, monkeypatch, offset):
    """A server without the route (404) is asked once whether it holds the run's log, as before
    the claim: it does (another node started the run): this process joins as a secondary writer;
    it doesn't: this one starts the run. One request each, never retried."""
    import tracklet.compat.wandb as wandb

    _OlderServer.offset, _OlderServer.seen = offset, []
    older = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OlderServer)
    thread = threading.Thread(target=older.serve_forever, daemon=True)
    thread.start()
    try:
        _online_env(monkeypatch, f"http://127.0.0.1:{older.server_address[1]}", tmp_path)
        monkeypatch.setenv("TRACKLET_UPLOAD_TIMEOUT", "0")
        with warnings_if(offset, "joins run old"):
            run = wandb.init(project="p", id="old", reinit="create_new", settings=wandb.Settings(mode="shared"))
        asked = list(_OlderServer.seen)
        run.log({"loss": 1.0})
        run.finish()
    finally:
        older.shutdown()
        older.server_close()
    assert asked == ["POST /api/v1/runs/p/old/primary", "GET /api/v1/runs/p/old/log/offset"]
    recorded = tracklet.Api(tmp_path).run("p/old") if not offset else None
    if offset:
        assert not (tmp_path / "projects/p/runs/old/run.tlog").exists()
        assert list((tmp_path / "projects/p/runs/old/parts").glob("*.tlog"))
    else:
        assert recorded is not None and recorded.parts == {} and recorded.history()["loss"] == [1.0]


def warnings_if(expected: int, match: str):
    import contextlib

    return pytest.warns(Warning, match=match) if expected else contextlib.nullcontext()


def test_a_claim_lapses_only_as_its_holder_goes_silent(tmp_path):
    """The rules on the store itself, the clock given: a claim whose holder never uploaded lapses
    after the heartbeat lapse; a run whose log is running and fresh keeps its primary (also when
    nobody claimed it: an older client's primary); a silent or ended one passes to a writer that
    resumes it, by compare-and-set, so the one that lost the race sees the new holder."""
    from tracklet.server import primaries, schema
    from tracklet.store import Store

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=tmp_path)
    schema.migrate(store.engine)
    clock = [1000.0]
    log = [primaries.RunLog(0, None, None)]

    def claim(token: str, resume: bool = False) -> primaries.Claim:
        return primaries.claim(store.engine, "p", "r", token=token, host=token, pid=1, resume=resume,
                               run_log=lambda: log[0], lapse=120.0, now=lambda: clock[0])

    assert claim("first-writer-token").granted
    clock[0] += 119
    assert not claim("second-writer-token").granted  # the holder may not have uploaded yet
    clock[0] += 2
    taken = claim("second-writer-token")  # it never did: the run doesn't exist, the claim lapsed
    assert taken.granted and taken.previous is not None and taken.previous.host == "first-writer-token"
    log[0] = primaries.RunLog(500, "running", clock[0] + 200)
    clock[0] += 300  # the run's log grew 100 s ago: its primary is live, whatever the claim's age
    assert not claim("third-writer-token", resume=True).granted
    clock[0] += 30  # silent for 130 s: the server reads it crashed
    refused = claim("third-writer-token")
    assert not refused.granted and not refused.live  # the run exists: only a writer that resumes it
    assert claim("third-writer-token", resume=True).granted
    assert claim("third-writer-token").granted  # asked again: its claim
    clock[0] += 1  # it may not have uploaded yet: its claim, made after the log last grew, holds
    assert not claim("fourth-writer-token", resume=True).granted
    store.close()


def test_a_takeover_that_loses_the_race_takes_back_its_note(tmp_path):
    """Two writers resume a run whose holder went silent, at once (two server processes): one
    compare-and-set wins; the other, refused as the winner is live now, tells ``taking`` it replaces
    nobody after all, so its refusal's audit event (the route notes ``replaces`` from ``taking``)
    doesn't name a holder it never replaced."""
    from tracklet.server import primaries, schema
    from tracklet.store import Store

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=tmp_path)
    schema.migrate(store.engine)
    clock = [1000.0]
    log = primaries.RunLog(500, "crashed", 900.0)

    def claim(token: str, taking=None) -> primaries.Claim:
        return primaries.claim(store.engine, "p", "r", token=token, host=token, pid=1, resume=True,
                               run_log=lambda: log, lapse=120.0, now=lambda: clock[0], taking=taking)

    assert claim("first-writer-token").granted
    clock[0] += 200  # its claim lapsed, the run crashed: open to a writer that resumes it
    told: list[object] = []

    def taking(previous):  # the other server process's takeover commits first
        told.append(previous)
        if len(told) == 1:
            assert claim("racing-writer-token").granted

    lost = claim("losing-writer-token", taking)
    assert not lost.granted and lost.live and lost.holder is not None and lost.holder.host == "racing-writer-token"
    assert [getattr(previous, "host", None) for previous in told] == ["first-writer-token", None]
    store.close()
