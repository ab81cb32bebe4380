"""The sweep commands against a server (`--url`): `tracklet sweep ls --url` lists the server's sweeps
a key may read; `tracklet sweep show --url` prints a multi-objective sweep's Pareto front as the
local `sweep show` does. A real `tracklet server` process on SQLite with keys."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
import serverproc

from tracklet.sweeps.remote import RemoteController, create_remote_sweep

pytest.importorskip("optuna", reason="pip install 'tracklet[sweeps]'")


def _cli(*args: str, key: str | None = None, root=None) -> subprocess.CompletedProcess:
    """``python -m tracklet [--dir ROOT] ARGS`` without TRACKLET_MODE (forked from the server template where it
    may be: serverproc.cli)."""
    return serverproc.cli(*(["--dir", str(root)] if root else []), *args,
                          env=None if key is None else {"TRACKLET_API_KEY": key}, unset=("TRACKLET_MODE",))


@pytest.fixture
def server(tmp_path, servers):
    """A keyed server on SQLite; `admin_key`, and `reader_key` (read on project `a` only)."""
    root = tmp_path / "srv"
    created = _cli("admin", "--dir", str(root), "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    started = servers(root, dev=False)
    started.admin_key = created.stdout.strip()
    with httpx.Client(base_url=started.url, headers={"Authorization": f"Bearer {started.admin_key}"}) as http:
        made = http.post("/api/v1/users", json={"name": "reader"})
        assert made.status_code in (200, 201), made.text
        started.reader_key = made.json()["key"]
        # project a exists once it has a sweep; the membership is set after (below)
    return started


def _member(server, project: str, name: str, role: str) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}) as http:
        assert http.put(f"/api/v1/projects/{project}/members/{name}", json={"role": role}).status_code == 204


GRID = {"method": "grid", "parameters": {"x": {"values": [1, 2, 3]}}}
TWO = {"method": "random", "seed": 3, "parameters": {"x": {"min": 0.0, "max": 1.0}},
       "metrics": [{"name": "err", "goal": "minimize"}, {"name": "size", "goal": "minimize"}]}


def test_sweep_ls_url_lists_the_servers_sweeps_the_key_may_read(server, tmp_path):
    first = create_remote_sweep(server.url, GRID, project="a", api_key=server.admin_key)["id"]
    second = create_remote_sweep(server.url, TWO, project="b", api_key=server.admin_key)["id"]
    _member(server, "a", "reader", "read")
    listed = _cli("sweep", "ls", "--url", server.url, "--json", key=server.admin_key, root=tmp_path / "local")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [row["id"] for row in rows] == [second, first]  # newest first
    assert rows[0]["project"] == "b" and rows[0]["method"] == "random" and rows[0]["state"] == "running"
    assert rows[0]["metrics"] == TWO["metrics"] and rows[1]["counts"] == {}
    # the reader sees only the project it may read; --project narrows the list
    mine = _cli("sweep", "ls", "--url", server.url, "--json", key=server.reader_key)
    assert [row["id"] for row in json.loads(mine.stdout)] == [first]
    assert json.loads(_cli("sweep", "ls", "--url", server.url, "--json", "--project", "b",
                           key=server.reader_key).stdout) == []
    only_b = _cli("sweep", "ls", "--url", server.url, "--json", "--project", "b", key=server.admin_key)
    assert [row["id"] for row in json.loads(only_b.stdout)] == [second]
    text = _cli("sweep", "ls", "--url", server.url, key=server.admin_key)
    assert text.returncode == 0 and first in text.stdout and "grid" in text.stdout
    assert "minimize err, minimize size" in text.stdout
    # the server's sweeps are not the local data root's
    assert "No sweeps" in _cli("sweep", "ls", root=tmp_path / "local").stdout
    refused = _cli("sweep", "ls", "--url", server.url, key="not-a-key")
    assert refused.returncode == 2 and "401" in refused.stderr


def _dominated(values: list[float], others: list[list[float]]) -> bool:
    return any(all(o <= v for o, v in zip(other, values)) and other != values for other in others)


def test_sweep_show_url_prints_a_multi_objective_sweeps_pareto_front(server, tmp_path):
    sweep_id = create_remote_sweep(server.url, TWO, project="b", api_key=server.admin_key)["id"]
    controller = RemoteController(server.url, sweep_id, root=tmp_path / "agent", api_key=server.admin_key)
    told = {}
    for _ in range(8):
        lease = controller.next_trial("agent-1")
        x = lease.config["x"]
        told[lease.trial] = [x, (x - 0.5) ** 2]  # x > 0.5 is beaten by 1 - x in both objectives
        assert controller.tell(lease, told[lease.trial]).state == "complete"
    controller.close()
    front = sorted(n for n, v in told.items() if not _dominated(v, list(told.values())))
    assert 0 < len(front) < len(told)
    shown = _cli("sweep", "show", sweep_id, "--url", server.url, "--json", key=server.admin_key,
                 root=tmp_path / "agent")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert [row["trial"] for row in status["pareto"]] == front
    assert all(row["values"] == pytest.approx(told[row["trial"]]) for row in status["pareto"])
    text = _cli("sweep", "show", sweep_id, "--url", server.url, key=server.admin_key, root=tmp_path / "agent").stdout
    assert f"Pareto front ({len(front)} trials; err, size):" in text
    # a single-objective server sweep has no front
    one = create_remote_sweep(server.url, GRID, project="a", api_key=server.admin_key)["id"]
    single = json.loads(_cli("sweep", "show", one, "--url", server.url, "--json", key=server.admin_key,
                             root=tmp_path / "agent").stdout)
    assert single["pareto"] is None
