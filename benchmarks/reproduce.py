"""Reproduce benchmarks (#21): the dry-run plan, and building a torch + transformers environment.

- ``dry-run``: ``tracklet reproduce RUN --dry-run`` of a run recorded in a git repository made here
  (a fresh process per sample, as a user runs it), median of 3. Target: <= 2 s.
- ``environment``: the environment ``tracklet reproduce --env uv`` builds for a run that used torch
  and transformers: the packages are what tracklet records for them in this interpreter (the real
  capture, narrowed to the dependency closure of torch and transformers), turned into requirements
  by the planner and installed by the same code ``reproduce`` runs. uv twice (the second from its
  warm cache: the target, <= 30 s) beside ``python -m venv`` + pip of the same set, in the same run,
  from the same package sources (pip's configuration on this machine).

    python -m benchmarks.reproduce [--only dry-run|environment] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTS = ("torch", "transformers")
SCRIPT = "import tracklet\nrun = tracklet.init(project='bench', config={'lr': 0.1})\nrun.log({'loss': 1.0})\nrun.finish()\n"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: tuple[str, ...]) -> set[str]:
    """The installed distributions ``roots`` need (their requirements for this interpreter, no extras)."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [_normal(root) for root in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_normal(requirement.name))
    return seen


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
                        "GIT_COMMITTER_EMAIL": "b@b"})


def bench_dry_run(work: Path) -> dict[str, float]:
    repo, root = work / "repo", work / "data"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "train.py").write_text(SCRIPT)
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-qm", "train")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(root)}
    subprocess.run([sys.executable, "train.py"], cwd=repo, env=env, check=True, capture_output=True, timeout=300)
    import tracklet

    (run,) = tracklet.Api(root).runs("bench")
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "tracklet", "reproduce", run.path, "--dry-run"], cwd=work,
                              env=env, capture_output=True, text=True, timeout=300)
        samples.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"dry run failed: {done.stdout}{done.stderr}")
    return {"dry-run median s": statistics.median(samples), "dry-run max s": max(samples)}


def _plan(work: Path, env: str, name: str):  # -> tracklet.reproduce.plan.Plan
    from tracklet.core.environment import capture_packages
    from tracklet.proto import records_pb2 as pb
    from tracklet.reproduce.plan import Plan, _requirements

    recorded = pb.Environment()
    files = work / "files"
    files.mkdir(exist_ok=True)
    capture_packages(recorded, files)
    wanted = closure(ROOTS)
    narrowed = pb.Environment()
    narrowed.packages.extend(p for p in recorded.packages if _normal(p.name) in wanted)
    missing = set(wanted) - {_normal(p.name) for p in narrowed.packages}
    if missing or not {"torch", "transformers"} <= {_normal(p.name) for p in narrowed.packages}:
        raise SystemExit(f"torch and transformers must be installed here (missing: {sorted(missing)})")
    plan = Plan(run="bench/x", root=work, env=env, directory=work / name)
    _requirements(plan, narrowed)
    plan.directory.mkdir()
    return plan


def bench_environment(work: Path) -> dict[str, float]:
    from tracklet.reproduce.execute import _environment

    if shutil.which("uv") is None:
        raise SystemExit("uv is not on PATH (pip install uv)")
    figures: dict[str, float] = {}
    for label, env, name in (("uv, first build s", "uv", "uv1"), ("uv, warm cache s", "uv", "uv2"),
                             ("venv + pip s", "venv", "pip")):
        plan = _plan(work, env, name)
        start = time.perf_counter()
        python = _environment(plan)
        figures[label] = time.perf_counter() - start
        check = subprocess.run([python, "-c", "import torch, transformers; print(torch.__version__, "
                                "transformers.__version__)"], capture_output=True, text=True, timeout=300)
        if check.returncode != 0:
            raise SystemExit(f"{label}: the environment does not import torch and transformers: {check.stderr}")
        figures["packages"] = len(plan.requirements)
        shutil.rmtree(plan.directory, ignore_errors=True)  # three copies of torch do not fit everywhere
    figures["pip / uv warm"] = figures["venv + pip s"] / figures["uv, warm cache s"]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("dry-run", "environment"))
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tracklet-bench-reproduce-"))
    try:
        figures: dict[str, float] = {}
        if args.only in (None, "dry-run"):
            figures.update(bench_dry_run(work / "dry"))
        if args.only in (None, "environment"):
            (work / "env").mkdir()
            figures.update(bench_environment(work / "env"))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"reproduce benchmark (load average {load:.1f})")
    for name, value in figures.items():
        print(f"  {name:<22} {value:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
