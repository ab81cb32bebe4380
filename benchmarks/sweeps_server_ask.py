"""A server's asks past a bayes sweep's start-up trials: does the first one import the GP's modules?

    python benchmarks/sweeps_server_ask.py                       # this checkout's server
    python benchmarks/sweeps_server_ask.py --old DIR --rounds 2  # and an older checkout's, alternating
    (DIR: e.g. `git archive main | tar -x -C DIR`)

Starts a ``tracklet server --dev`` process (SQLite) from a checkout, creates a bayes sweep (two
floats, seed 0) and plays one agent asking and telling back to back (trials of no length: the
start-up trials end as fast as they can, the worst case for imports still running). Prints, per
server, each ``next`` past the 10 start-up trials: its wall time as the agent sees it and the
server process's CPU during it (user + system, ``/proc``: the background import thread's CPU
included), the slowest start-up ask, and the server's CPU from the sweep's creation to the end.
``--pause S`` sleeps S seconds after the 13th ask, so the later asks are the GP's once its imports
ended. Issue #17: an agent's run exit -> next run start <= 1 s; before the GP's imports moved to a
background thread (``tracklet/sweeps/gp_imports.py``) the server's first GP ask imported torch and
SciPy inside the request. Wall times on a shared machine include other jobs' turns: the load
average is printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.server import free_port, wait_ready  # noqa: E402
from benchmarks.sweeps import _process_cpu  # noqa: E402

STARTUP = 10  # a bayes sweep's random start-up trials with one agent


def asks(code: Path, trials: int, pause: float) -> dict[str, object]:
    """One server from ``code`` (its own working directory, so ``-m tracklet`` is that checkout's)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="tracklet-bench-server-ask-") as directory:
        server = subprocess.Popen([sys.executable, "-m", "tracklet", "server", "--dev", "--dir", directory,
                                   "--port", str(port)], cwd=code, env={**os.environ, "PYTHONPATH": str(code)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(url, server)
            time.sleep(1.0)  # the server's own warm-ups (query_warm, the routes) are over
            config = {"method": "bayes", "seed": 0, "metric": {"name": "f"},
                      "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}}}
            cpu_start = _process_cpu(server.pid)
            measured: list[tuple[float, float]] = []
            with httpx.Client(base_url=url, timeout=120) as http:
                sweep = http.post("/api/v1/projects/bench/sweeps", json={"config": config}).json()["id"]
                base = f"/api/v1/projects/bench/sweeps/{sweep}"
                for n in range(trials):
                    if n == STARTUP + 3 and pause:
                        time.sleep(pause)
                    started, cpu = time.perf_counter(), _process_cpu(server.pid)
                    lease = http.post(f"{base}/next", json={"agent": "a", "ttl": 60}).json()["lease"]
                    measured.append((time.perf_counter() - started, _process_cpu(server.pid) - cpu))
                    x, y = lease["config"]["x"], lease["config"]["y"]
                    http.post(f"{base}/tell", json={"trial": lease["trial"], "agent": "a",
                                                    "values": [(x - 0.3) ** 2 + y]})
            total = _process_cpu(server.pid) - cpu_start
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"asks": measured, "server_cpu": total, "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, default=None, help="also an older checkout's server, alternating")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--pause", type=float, default=8.0, help="seconds after the 13th ask (0: none)")
    args = parser.parse_args()
    arms = [("this checkout", ROOT)] + ([(f"old: {args.old}", args.old.resolve())] if args.old else [])
    print(f"{os.cpu_count()} cores; asks past the {STARTUP} start-up trials, wall / server CPU in ms"
          f" (a {args.pause:g} s pause after the 13th)")
    for round_ in range(args.rounds):
        for name, code in arms:
            got = asks(code, args.trials, args.pause)
            measured = got["asks"]
            assert isinstance(measured, list)
            past = " ".join(f"{wall * 1e3:.0f}/{cpu * 1e3:.0f}" for wall, cpu in measured[STARTUP:])
            slowest = max(wall for wall, _ in measured[:STARTUP]) * 1e3
            print(f"round {round_} {name}: {past}; slowest start-up ask {slowest:.0f} ms; "
                  f"server CPU {got['server_cpu']:.2f} s; load {got['load']:.1f}")


if __name__ == "__main__":
    main()
