"""Server mode: an agent's controller that talks HTTP to a ``tracklet server`` (docs/sweeps.md).

:class:`RemoteController` is the :class:`~tracklet.sweeps.controller.SweepController` of a sweep
that lives on a server (``tracklet sweep create --url``, ``wandb.sweep`` online): the study, the
leases and the pruner run in the server (``server/sweeps_db.py``, ``server/routes_sweeps_write.py``);
the agent asks for a trial, heartbeats, and tells the result, through the client package's
``HttpClient`` (the API key header, retries). Every call may be sent again: ``next_trial`` carries
a request id the server answers the same lease to, a heartbeat only renews, ``tell`` told twice
answers what the first did. So an agent rides out a server restart (``kill -9`` and start): its
calls retry until the server answers, and no trial is handed out twice or lost.

The trial's process records its run on the agent's machine (its data root) in online mode, so the
server ingests its history: that is what the server's pruner reads, and a pruned trial is told on
its next heartbeat (``"pruned"``). The objective is read from the run's local record log when the
process ends, as in local mode, and sent with ``tell``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracklet.errors import SweepError, SweepNotFound
from tracklet.sweeps.controller import (
    DEFAULT_LEASE_TTL,
    Finished,
    Lease,
    Next,
    TrialResult,
    Wait,
    parse_sweep_id,
    pruning_enabled,
)
from tracklet.sweeps.spec import SweepSpec, parse, warn_unused

PRUNED = "pruned"  # what heartbeat() returns when the server's pruner stopped the trial


def server_url(url: str | None = None) -> str | None:
    """Where a sweep lives: ``url`` if given, else ``$TRACKLET_BASE_URL`` when ``$TRACKLET_MODE`` is
    ``online`` (server mode, as online runs), else None (local mode: the data root)."""
    if url:
        return url
    if os.environ.get("TRACKLET_MODE") == "online":
        return os.environ.get("TRACKLET_BASE_URL") or None
    return None


def create_remote_sweep(base_url: str, config: Any, *, project: str | None = None, api_key: str | None = None,
                        sweep_id: str | None = None) -> dict[str, Any]:
    """Create a sweep on the server at ``base_url``; returns the server's answer (``id``, ``project``,
    ``method``, ``grid_size``, ``warm_start``). The config is validated here first, so a bad one
    names its fields without a round trip."""
    from tracklet.core.start import DEFAULT_PROJECT

    spec = parse(config)
    project_name = project or spec.project or os.environ.get("TRACKLET_PROJECT") or DEFAULT_PROJECT
    warn_unused(spec)
    with _client(base_url, api_key) as http:
        response = http.request("POST", f"/api/v1/projects/{project_name}/sweeps",
                                json={"config": spec.config, "sweep_id": sweep_id})
        if response.status_code != 200:
            raise http.refusal(response, what=f"creating a sweep in project {project_name!r}")
        answer: dict[str, Any] = response.json()
        return answer


def list_remote_sweeps(base_url: str, *, project: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """The server's sweeps that the key may read (``tracklet sweep ls --url``), newest first:
    ``{"sweeps": [summary, ...], "total": n}``, each summary as the dashboard's listing has it
    (state, method, metric(s), trial counts, the best trial); ``project`` narrows it to one project."""
    with _client(base_url, api_key) as http:
        response = http.request("GET", "/api/v1/sweeps", params={"project": project} if project else None)
        if response.status_code != 200:
            raise http.refusal(response, what="listing the server's sweeps")
        answer: dict[str, Any] = response.json()
        return answer


def _client(base_url: str, api_key: str | None) -> Any:
    from tracklet.client.http import HttpClient

    return HttpClient(base_url, api_key=api_key, timeout=30.0, error=SweepError)


class RemoteController:
    """A server sweep's controller as an agent sees it (see the module docstring). ``root`` is the
    agent's data root: where the trials' runs record (and upload from) and their trial files go."""

    def __init__(self, base_url: str, sweep_id: str, *, root: Path | str, api_key: str | None = None) -> None:
        self.base_url = base_url.strip().rstrip("/")
        self.api_key = api_key
        self.sweep_id = parse_sweep_id(sweep_id)
        self.root = Path(root)
        self.dir = self.root / "sweeps" / self.sweep_id
        self.http = _client(self.base_url, api_key)
        response = self.http.request("GET", f"/api/v1/sweeps/{self.sweep_id}")
        if response.status_code == 404:
            raise SweepNotFound(f"no sweep {self.sweep_id!r} on {self.base_url} (or no read access to its project)")
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"reading sweep {self.sweep_id}")
        info = response.json()
        self.project: str = info["project"]
        self._spec = parse(info["config"])
        self._base = f"/api/v1/projects/{self.project}/sweeps/{self.sweep_id}"

    @property
    def spec(self) -> SweepSpec:
        return self._spec

    @property
    def prunes(self) -> bool:
        """False: the agent doesn't watch the run itself; the server prunes from what it ingested."""
        return False

    @property
    def server_prunes(self) -> bool:
        return pruning_enabled(self._spec)

    def close(self) -> None:
        self.http.close()

    def trial_env(self) -> dict[str, str]:
        """What a trial's process needs to record its run online, to this server."""
        env = {"TRACKLET_MODE": "online", "TRACKLET_BASE_URL": self.base_url}
        if self.api_key:
            env["TRACKLET_API_KEY"] = self.api_key
        return env

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.request("POST", f"{self._base}/{path}", json=body, idempotent=True)
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"sweep {self.sweep_id}: {path}")
        return response.json()

    # ------------------------------------------------------------ the agent's calls

    def next_trial(self, agent: str, *, ttl: float = DEFAULT_LEASE_TTL, resume_trial: int | None = None) -> Next:
        answer = self._post("next", {"agent": agent, "ttl": ttl, "resume_trial": resume_trial,
                                     "request": uuid.uuid4().hex})
        if answer["kind"] == "finished":
            return Finished(answer.get("reason") or "")
        if answer["kind"] != "lease":
            return Wait(answer.get("reason") or "")
        got = answer["lease"]
        lease = Lease(self.sweep_id, int(got["trial"]), got["run_id"], got["project"], got["config"], got["agent"],
                      float(got["ttl"]), resumed=bool(got.get("resumed")))
        self._write_trial(lease)
        return lease

    def _write_trial(self, lease: Lease) -> None:
        """The trial's file, where ``init()`` in its process reads its config and run (``core/sweeptrial.py``)."""
        from tracklet.core.atomicfile import replace_atomically

        (self.dir / "trials").mkdir(parents=True, exist_ok=True)
        replace_atomically(self.dir / "trials" / f"{lease.trial}.json", json.dumps({
            "sweep_id": self.sweep_id, "trial": lease.trial, "run_id": lease.run_id, "project": lease.project,
            "config": lease.config, "server": self.base_url}).encode(), durable=False)

    def _ref(self, lease: Lease) -> dict[str, Any]:
        return {"trial": lease.trial, "agent": lease.agent, "ttl": lease.ttl}

    def heartbeat(self, lease: Lease) -> bool | str:
        """True: renewed; False: the lease lapsed (stop the trial); ``"pruned"``: the server's
        pruner stopped the trial (stop it; it is recorded pruned)."""
        answer = self._post("heartbeat", self._ref(lease))
        if not answer["alive"]:
            return False
        return PRUNED if answer.get("stop") == PRUNED else True

    def report(self, lease: Lease, points: Sequence[tuple[int, float]]) -> int | None:
        return None  # the server reads the run's points from what it ingested

    def finish(self, lease: Lease, exit_code: int, error: str | None = None, *,
               stopped: bool | None = None) -> TrialResult:
        """The trial's process ended: read the objective(s) from its run's local record log and tell the server."""
        from tracklet.sweeps.objective import failed_run_values, read_objectives

        values = None
        if exit_code == 0 and error is None:
            values, error = read_objectives(self.root, self.project, lease.run_id, self._spec.objectives)
        elif error is None:
            error = f"the command exited with status {exit_code}"
        if error is not None:  # the run's own value, for the server's metric.impute
            values = failed_run_values(self._spec, self.root, self.project, lease.run_id)
        return self.tell(lease, values, error, stopped=stopped)

    def tell(self, lease: Lease, value: float | Sequence[float] | None, error: str | None = None, *,
             stopped: bool | None = None) -> TrialResult:
        """How the trial ended; ``stopped``: whether the agent's stop (the server pruned the
        trial) reached the trial's run before it ended (False: told as it ended, not pruned)."""
        values = None if value is None else [float(v) for v in value] if isinstance(value, Sequence) else [float(value)]
        body: dict[str, Any] = {**self._ref(lease), "values": values, "error": error}
        if stopped is not None:
            body["stopped"] = stopped
        answer = self._post("tell", body)
        return TrialResult(int(answer["trial"]), answer["state"], answer.get("value"), answer.get("message", ""),
                           tuple(answer.get("values") or ()))

    def release(self, lease: Lease, reason: str) -> None:
        self._post("release", {**self._ref(lease), "reason": reason})

    def status(self) -> dict[str, Any]:
        """The sweep as ``LocalController.status()`` gives it (``tracklet sweep show --url``), from
        the server's sweep page route: state, counts, the best trial, each trial (its parameters by
        dotted name as ``config``). Lapsed leases are reaped by the agents' next call, not here."""
        response = self.http.request("GET", f"/api/v1/projects/{self.project}/sweeps/{self.sweep_id}")
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"reading sweep {self.sweep_id}")
        sweep = response.json()["sweep"]
        trials = [{"trial": t["number"], "state": t["state"], "value": t["value"], "values": t.get("values"),
                   "config": t["params"], "run": f"{self.project}/{t['run_id']}" if t.get("run_id") else None,
                   "agent": t.get("agent"), "error": t.get("error"), "last_step": t.get("last_step"),
                   "random_while_gp_imports": bool(t.get("random_while_gp_imports")),
                   "start": t.get("start"), "end": t.get("end")} for t in sweep["trials"]]
        best = next((row for row in trials if sweep["best"] and row["trial"] == sweep["best"]["trial"]), None)
        front = sweep.get("pareto")
        pareto = None if front is None else [row for row in trials if row["trial"] in set(front)]
        return {"id": sweep["id"], "project": sweep["project"], "method": sweep["method"], "state": sweep["state"],
                "run_cap": sweep["run_cap"], "metric": sweep["metric"], "metrics": sweep.get("metrics", []),
                "pareto": pareto, "grid_size": sweep["grid_size"], "counts": sweep["counts"], "best": best,
                "trials": trials, "created": sweep["created"], "server": self.base_url}

    def set_state(self, state: str) -> None:
        self._post("control", {"state": state})

    def extend(self, run_cap: int) -> None:
        self._post("control", {"run_cap": run_cap})
