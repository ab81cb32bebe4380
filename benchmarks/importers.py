"""How fast `tracklet import` reads other trackers' logs: a 1M-point history from each.

    python benchmarks/importers.py [--rows 100000] [--keys 10] [--sources wandb,tensorboard,...] [--json PATH]

Writes the sources with the real writers (wandb offline: ROWS rows of KEYS float metrics;
torch's SummaryWriter: ROWS steps of KEYS scalars; MLflow's client, into a file store
(``mlflow-file``) and a SQLite database (``mlflow-sqlite``): ROWS steps of KEYS metrics), then times
the import alone (reading, checking, converting and writing the tracklet record log), in points per
second. MLflow writes slowly (a SQLite database ~2,500 points/s): ``--rows 20000 --keys 5`` for it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import print_table, write_json  # noqa: E402

WANDB_SCRIPT = textwrap.dedent(
    """
    import sys, wandb
    rows, keys = int(sys.argv[1]), int(sys.argv[2])
    names = [f"metric_{k}" for k in range(keys)]
    run = wandb.init(project="bench")
    for i in range(rows):
        run.log({name: i * 0.001 + k for k, name in enumerate(names)})
    run.finish()
    """
)


def write_wandb(where: Path, rows: int, keys: int) -> Path:
    script = where / "log_wandb.py"
    script.write_text(WANDB_SCRIPT)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(where), "WANDB_SILENT": "true",
           "WANDB_DISABLE_GIT": "true"}
    subprocess.run([sys.executable, str(script), str(rows), str(keys)], env=env, cwd=where, check=True)
    return where / "wandb"


def write_tensorboard(where: Path, rows: int, keys: int) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(where / "tb" / "run"), max_queue=100_000)
    for step in range(rows):
        for k in range(keys):
            writer.add_scalar(f"metric_{k}", step * 0.001 + k, step, walltime=1.8e9 + step)
    writer.close()
    return where / "tb"


def write_mlflow(where: Path, rows: int, keys: int, database: bool) -> Path:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    source = where / ("mlflow.db" if database else "mlruns")
    client = MlflowClient(f"sqlite:///{source}" if database else source.as_uri())
    experiment = client.create_experiment("bench", artifact_location=(where / "mlflow-artifacts").as_uri())
    run = client.create_run(experiment, start_time=1_800_000_000_000)
    points = [Metric(f"metric_{k}", step * 0.001 + k, 1_800_000_000_000 + step, step)
              for step in range(rows) for k in range(keys)]
    for start in range(0, len(points), 1000):  # MLflow's most per call
        client.log_batch(run.info.run_id, metrics=points[start:start + 1000])
    client.set_terminated(run.info.run_id, "FINISHED", end_time=1_800_000_000_000 + rows)
    return source


def timed(function, *args, **kwargs) -> tuple[float, list]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--sources", default="wandb,tensorboard",
                        help="comma-separated: wandb, tensorboard, mlflow-file, mlflow-sqlite")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from tracklet.importers import import_mlflow, import_tensorboard, import_wandb

    sources = {
        "wandb": (write_wandb, import_wandb),
        "tensorboard": (write_tensorboard, import_tensorboard),
        "mlflow-file": (lambda where, rows, keys: write_mlflow(where, rows, keys, False), import_mlflow),
        "mlflow-sqlite": (lambda where, rows, keys: write_mlflow(where, rows, keys, True), import_mlflow),
    }
    table, results = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(scratch)
        for label in args.sources.split(","):
            write, load = sources[label]
            source = write(where, args.rows, args.keys)
            files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
            size = sum(p.stat().st_size for p in files)
            seconds, imported = timed(load, source, root=where / f"root-{label}")
            points = sum(r.points for r in imported)
            again, _ = timed(load, source, root=where / f"root-{label}")
            results[label] = {"points": points, "seconds": seconds, "points_per_s": points / seconds,
                              "source_bytes": size, "reimport_seconds": again}
            table.append([label, f"{points:,}", f"{size / 1e6:.1f} MB", f"{seconds:.2f} s",
                          f"{points / seconds / 1e6:.2f} M/s", f"{again:.2f} s"])
    print_table(table, ["source", "points", "source size", "import", "rate", "again (no-op)"])
    write_json(args.json, results)


if __name__ == "__main__":
    main()
