"""The Compare tab's media grid on runs of thousands of logged images (docs/dashboard.md):

    python benchmarks/media_compare.py                  # 5 runs x 2,000 steps x 1 image, SQLite and PostgreSQL
    python benchmarks/media_compare.py --runs 5 --steps 2000 --rounds 20 --backend sqlite

Records the runs with tracklet (a 32x32 image a step under `pred`, and `loss`), then serves the
data root in this process (``create_app(..., shared_root=True)``, as `tracklet ui` does, through
Starlette's TestClient: no network) on a SQLite store and a PostgreSQL one (tests/pgcluster.py).
In alternating rounds it times:

- the per-run listing (``GET /runs/{p}/{id}/media?key=pred`` for each run: what a grid built on
  the run page's route would load, every item of every run) against the grid's first load
  (``GET /projects/{p}/media?runs=...&key=pred&step=s``, with each run's steps) and a slider move
  (the same with ``steps=false``);
- the key list (``GET /projects/{p}/media/keys``: counts over the runs' rows, once per selection);
- the blob route's lookup of which item names a digest: every media row of the run read and
  scanned (``Store.media`` + ``_mime_of``, before this session) against the rows the database
  finds (``Store.media_naming``); and ``GET /runs/{p}/{id}/media/{digest}`` whole, for the record.

Reported: medians (ms), the ratios, and the answers' sizes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.report import print_table  # noqa: E402

import tracklet  # noqa: E402

PROJECT = "grid"


def record(root: Path, runs: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(runs):
        # A queue as long as the run: every image is recorded (the default drops what waits past 256).
        settings = {"console": "off", "capture_environment": False, "system_metrics": False, "media_queue": steps + 1}
        run = tracklet.init(project=PROJECT, id=f"r{index}", dir=str(root), settings=settings)
        for step in range(steps):
            run.log({"pred": tracklet.Image(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), caption=f"{step}"),
                     "loss": 1.0 / (step + 1)}, step=step)
        run.finish()


def timed(call, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def bench(root: Path, store_url: str | None, runs: int, steps: int, rounds: int) -> list[list[str]]:
    from starlette.testclient import TestClient

    from tracklet.server.app import create_app
    from tracklet.server.routes_media import _mime_of

    app = create_app(root, store_url=store_url, auth=False, shared_root=True)
    ids = [f"r{i}" for i in range(runs)]
    with TestClient(app) as http:
        deadline = time.monotonic() + 600
        while True:  # indexed on start (a thread): wait for every run's last image
            answer = http.get("/api/v1/projects/grid/media", params={"runs": ",".join(ids), "key": "pred", "steps": "false"})
            if answer.status_code == 200 and all(r["step"] == steps - 1 for r in answer.json()["runs"]):
                break
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.5)
        store = app.state.tracklet.store
        middle = steps // 2

        def per_run() -> int:
            return sum(len(http.get(f"/api/v1/runs/grid/{run_id}/media", params={"key": "pred"}).content) for run_id in ids)

        def first_load() -> int:
            return len(http.get("/api/v1/projects/grid/media", params={"runs": ",".join(ids), "key": "pred",
                                                                        "step": middle}).content)

        def keys() -> int:
            return len(http.get("/api/v1/projects/grid/media/keys", params={"runs": ",".join(ids)}).content)

        def slider_move() -> int:
            return len(http.get("/api/v1/projects/grid/media", params={"runs": ",".join(ids), "key": "pred",
                                                                        "step": middle, "steps": "false"}).content)

        item = http.get("/api/v1/projects/grid/media", params={"runs": "r0", "key": "pred", "step": middle}).json()
        digest = item["runs"][0]["items"][0]["digest"]

        def lookup_before() -> None:
            assert _mime_of(store.media(PROJECT, "r0", None), digest) == "image/png"

        def lookup_now() -> None:
            assert _mime_of(store.media_naming(PROJECT, "r0", digest), digest) == "image/png"

        def blob() -> None:
            assert http.get(f"/api/v1/runs/grid/r0/media/{digest}").status_code == 200

        sizes = {"per-run": per_run(), "first": first_load(), "move": slider_move(), "keys": keys()}
        times: dict[str, list[float]] = {name: [] for name in ("per-run", "keys", "first", "move", "before", "now", "blob")}
        for _ in range(rounds):  # A/B alternated, one call each a round
            times["per-run"].append(timed(per_run, 1))
            times["keys"].append(timed(keys, 1))
            times["first"].append(timed(first_load, 1))
            times["move"].append(timed(slider_move, 1))
            times["before"].append(timed(lookup_before, 1))
            times["now"].append(timed(lookup_now, 1))
            times["blob"].append(timed(blob, 1))
    med = {name: statistics.median(values) for name, values in times.items()}
    kind = "postgresql" if store_url else "sqlite"
    return [
        [kind, f"{runs} runs' lists, per-run route", f"{med['per-run']:.1f}", f"{sizes['per-run'] / 1e6:.2f} MB", "baseline"],
        [kind, "the runs' media keys (GET .../media/keys)", f"{med['keys']:.1f}", f"{sizes['keys'] / 1e3:.1f} kB", ""],
        [kind, "grid first load (items + steps)", f"{med['first']:.1f}", f"{sizes['first'] / 1e3:.1f} kB",
         f"{med['per-run'] / med['first']:.1f}x faster"],
        [kind, "grid slider move (items)", f"{med['move']:.1f}", f"{sizes['move'] / 1e3:.1f} kB",
         f"{med['per-run'] / med['move']:.1f}x faster"],
        [kind, "blob lookup, every row read (before)", f"{med['before']:.2f}", "", "baseline"],
        [kind, "blob lookup, rows found by the database", f"{med['now']:.2f}", "", f"{med['before'] / med['now']:.1f}x faster"],
        [kind, "GET .../media/{digest} whole", f"{med['blob']:.2f}", "", ""],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="media-compare-")))
        root = work / "data"
        started = time.perf_counter()
        record(root, args.runs, args.steps)
        print(f"recorded {args.runs} runs x {args.steps} images in {time.perf_counter() - started:.1f} s", flush=True)
        rows = []
        if args.backend in ("sqlite", "both"):
            rows += bench(root, None, args.runs, args.steps, args.rounds)
        if args.backend in ("postgresql", "both"):
            from pgcluster import create_database, postgres_cluster

            cluster = stack.enter_context(postgres_cluster())
            rows += bench(root, create_database(cluster, "mediabench"), args.runs, args.steps, args.rounds)
        print(f"load: {os.getloadavg()[0]:.1f} (1-min average; {os.cpu_count()} CPUs)")
        print_table(rows, ["store", "request", "median ms", "answer", "vs"])


if __name__ == "__main__":
    main()
