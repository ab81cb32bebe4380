"""A shared run whose writers log histograms, strings and structured values (the server's ``values``
and ``histograms`` routes read them out of the logs), and the check that a server shows them as the
local reader does: the routes, and ``tracklet.Api`` against the server in a fresh interpreter.
Used by tests/test_shared_runs.py (a server that keeps files) and tests/test_segment_parts.py
(``--logs`` servers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

import tracklet
from conftest import QUIET, REPO

EDGES = [0.0, 1.0, 2.0, 3.0]
# the key each writer's values are under in the run (core/parts.Ownership): the primary owns "text",
# "h" and "loss" (a number of its: rank_2's strings under it are its own, labelled); "mine" is
# rank_1's alone; rank_1 and rank_2 both log "shared", the first label owns it
KEYS = ["text", "h", "loss/l:rank_2", "text/l:rank_1", "h/l:rank_1", "mine", "shared", "shared/l:rank_2",
        "h2"]


def record(root: Path, project: str, run_id: str) -> None:
    """The primary and two parts, one after another in this process."""
    for label in ("primary", "rank_1", "rank_2"):
        settings = {**QUIET, "dir": str(root)}
        if label != "primary":
            settings.update(primary=False, label=label)
        run = tracklet.init(project=project, id=run_id, reinit="create_new", settings=settings)
        base = {"primary": 0, "rank_1": 10, "rank_2": 20}[label]
        for step in range(6):
            row: dict[str, Any] = {}
            if label == "primary":
                row = {"text": f"p{step}", "h": tracklet.Histogram(np_histogram=([step, 1, 2], EDGES)),
                       "loss": 0.5 * step}
            elif label == "rank_1":
                row = {"text": f"r1-{step}", "h": tracklet.Histogram(np_histogram=([1, step, 0], EDGES)),
                       "mine": [step, "x"], "shared": f"one{step}"}
            elif step % 2:  # rank_2: every other step
                row = {"loss": f"bad{step}", "shared": f"two{step}",
                       "h2": tracklet.Histogram(np_histogram=([0, 0, base + step], EDGES))}
            if row:
                run.log(row, step=step)
        run.finish()


PROBE = """
import json, sys, tracklet
url, path, keys = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
history = tracklet.Api(base_url=url).run(path).history()  # every key: the parts' too
def plain(value):
    if isinstance(value, tracklet.Histogram):
        return {"edges": list(value.edges), "counts": list(value.counts)}
    return value
print(json.dumps({"keys": sorted(history), **{key: [plain(value) for value in history[key]] for key in ["_step", "_timestamp", "_runtime", *keys]}}))
"""


def _plain(value: Any) -> Any:
    if isinstance(value, tracklet.Histogram):
        return {"edges": [float(edge) for edge in value.edges], "counts": [float(count) for count in value.counts]}
    return value


def check(url: str, root: Path, project: str, run_id: str) -> None:
    """The server at ``url`` shows the run's histograms and values as the local reader does."""
    local = tracklet.Api(root).run(f"{project}/{run_id}").history()
    assert set(KEYS) <= set(local), sorted(local)  # the naming this test relies on
    # every column the reader gives, _timestamp and _runtime (seconds since the primary's start) too
    expected = {key: [_plain(value) for value in local[key]] for key in ["_step", "_timestamp", "_runtime", *KEYS]}
    with httpx.Client(base_url=url, timeout=60) as client:
        base = f"/api/v1/runs/{project}/{run_id}"
        values = client.get(f"{base}/values", params={"keys": ",".join(KEYS)}).json()["keys"]
        for key in KEYS:
            if key in ("loss/l:rank_2",) or key.startswith(("text", "mine", "shared")):
                logged = [(step, value) for step, value in zip(expected["_step"], expected[key]) if value is not None]
                assert list(zip(values[key]["steps"], values[key]["values"])) == logged, key
        keys = client.get(f"{base}/histograms").json()["keys"]
        assert keys == ["h", "h/l:rank_1", "h2"], keys
        for key in keys:
            series = client.get(f"{base}/histograms/{key}", params={"bins": 3}).json()
            logged = [(step, value["counts"]) for step, value in zip(expected["_step"], expected[key])
                      if value is not None]
            assert list(zip(series["steps"], series["counts"])) == logged, key  # the logged bins: unchanged
    # tracklet.Api against the server, in a fresh interpreter: equal to the local reader
    probe = subprocess.run([sys.executable, "-c", PROBE, url, f"{project}/{run_id}", ",".join(KEYS)],
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    remote = json.loads(probe.stdout)
    assert remote.pop("keys") == sorted(local)  # history() with no keys: every writer's, named as the reader does
    for key in KEYS:
        remote[key] = [{"edges": [float(e) for e in value["edges"]], "counts": [float(c) for c in value["counts"]]}
                       if isinstance(value, dict) else value for value in remote[key]]
    assert sorted(remote) == sorted(expected)
    for key, column in expected.items():
        assert remote[key] == column, (key, remote[key], column)


def part_first(root: Path, project: str, run_id: str, urls: list[str]) -> None:
    """Part ``rank_1`` records, then the primary (a later start), each step twice: ``rank_1``'s row
    after the primary's at the even steps, before it at the odd ones, and a step only ``rank_1``
    logs; the part's log is uploaded first, then the primary's (through each of ``urls`` in turn)."""
    import time

    from tracklet.core.layout import RunPaths

    settings = {**QUIET, "dir": str(root)}
    runs = {}
    for label in ("rank_1", "primary"):
        more = {} if label == "primary" else {"primary": False, "label": label}
        runs[label] = tracklet.init(project=project, id=run_id, reinit="create_new", settings={**settings, **more})
        time.sleep(0.05)  # (the primary's start: later than the part's)
    for step in range(4):
        for label in ("primary", "rank_1") if step % 2 == 0 else ("rank_1", "primary"):
            runs[label].log({"grad" if label == "rank_1" else "loss": float(step)}, step=step)
            runs[label].flush()
    runs["rank_1"].log({"grad": 9.0}, step=9)
    for run in runs.values():
        run.finish()
    paths = RunPaths(root, project, run_id)
    for index, (label, log) in enumerate([("rank_1", paths.part_paths("rank_1").log_file), (None, paths.log_file)]):
        params: dict[str, Any] = {"offset": 0} | ({"part": label} if label else {})
        answer = httpx.put(f"{urls[index % len(urls)]}/api/v1/runs/{project}/{run_id}/log", params=params,
                           content=log.read_bytes(), timeout=60)
        assert answer.status_code == 200, answer.text


def check_times(url: str, root: Path, project: str, run_id: str) -> None:
    """``tracklet.Api`` against the server at ``url`` gives the run's start and every step's
    ``_timestamp`` and ``_runtime`` as the local reader does."""
    local = tracklet.Api(root).run(f"{project}/{run_id}")
    remote = tracklet.Api(base_url=url).run(f"{project}/{run_id}")
    assert remote.created_at == local.created_at
    keys = ["_step", "_timestamp", "_runtime", "loss", "grad"]
    got, want = remote.history(), local.history()
    for key in keys:
        assert got[key] == want[key], (key, got[key], want[key])
