"""Reproduce benchmarks (#21): the dry-run plan, and building a torch + transformers environment.

- ``dry-run``: ``tracklet reproduce RUN --dry-run`` of a run recorded in a git repository made here,
  with an untracked helper module (read back from the run's ``code`` artifact) (a fresh process per sample, as a user runs it, bytecode cached), median of 5. Target: <= 2 s.
  The same with ``--env uv`` (its plan also asks uv whether every pinned package still installs;
  with this interpreter's packages, uv's cache answers).
- ``environment``: the environment ``tracklet reproduce --env uv`` builds for a run that used torch
  and transformers: the packages are what tracklet records for them in this interpreter (the real
  capture, narrowed to the dependency closure of torch and transformers), turned into requirements
  by the planner and installed by the same code ``reproduce`` runs. uv twice (the second from its
  warm cache: the target, <= 30 s) beside ``python -m venv`` + pip of the same set, in the same run,
  from the same package sources (pip's configuration on this machine).
- ``seeds``: what recording a seed costs the program's thread: each wrapped seeding call beside
  the original function (``__wrapped__``), alternating blocks in this process; per call, the
  fastest block of each (the one least disturbed by other processes on a shared machine).

    python -m benchmarks.reproduce [--only dry-run|environment|seeds] [--keep]
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
    (repo / "train.py").write_text("import helper\n" + SCRIPT)
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-qm", "train")
    (repo / "helper.py").write_text("FACTOR = 2\n")  # untracked: the plan reads it from the run's code artifact
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(root)}
    # A script this short finishes before its git state is captured on a loaded machine: let it wait.
    subprocess.run([sys.executable, "train.py"], cwd=repo, env={**env, "TRACKLET_CAPTURE_WAIT": "60"}, check=True,
                   capture_output=True, timeout=300)
    import tracklet

    (run,) = tracklet.Api(root).runs("bench")
    assert run.metadata["code"]["artifact"], "the run logged no code snapshot"
    # tracklet's bytecode cached, as an installed package has it (pip compiles it at install; a
    # PYTHONDONTWRITEBYTECODE=1 checkout compiles some 90 modules at every start): one untimed run writes it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    figures: dict[str, float] = {}
    # the default (--env current), and --env uv, whose plan also asks uv whether the packages install
    for label, extra in (("dry-run", []), ("dry-run --env uv", ["--env", "uv"])):
        samples = []
        for sample in range(6):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "tracklet", "reproduce", run.path, "--dry-run", *extra],
                                  cwd=work, env=env, capture_output=True, text=True, timeout=300)
            if sample:
                samples.append(time.perf_counter() - start)
            if done.returncode != 0 and not extra:
                raise SystemExit(f"dry run failed: {done.stdout}{done.stderr}")
        figures[f"{label} median s"] = statistics.median(samples)
        figures[f"{label} max s"] = max(samples)
    return figures


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


def _per_call(function, argument, calls: int = 2000) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function(argument)
    return (time.perf_counter() - start) / calls


def bench_seed_calls(work: Path, blocks: int = 25) -> dict[str, float]:
    """µs per call, wrapped and original, of the seeding calls tracklet records, with a run open
    (the first call after each of its sender's ticks wakes the sender); the records are made by
    the run's sender worker (not timed here: it runs on another thread)."""
    import random

    import tracklet  # (installs the wrappers)
    from tracklet.core import seeds

    run = tracklet.init(project="bench-seeds", dir=str(work),
                        settings={"capture_environment": False, "system_metrics": False})

    cases: list[tuple[str, object, object, object]] = [
        ("random.seed", random.seed, random.seed.__wrapped__, 1),  # type: ignore[attr-defined]
        ("random.Random", random.Random, None, 1),
    ]
    try:
        import numpy as np

        cases += [("numpy.random.seed", np.random.seed, np.random.seed.__wrapped__, 1),  # type: ignore[attr-defined]
                  ("numpy default_rng", np.random.default_rng, np.random.default_rng.__wrapped__, 1)]  # type: ignore[attr-defined]
    except ImportError:
        pass
    try:
        import torch

        cases.append(("torch.manual_seed", torch.manual_seed, torch.manual_seed.__wrapped__, 1))  # type: ignore[attr-defined]
    except ImportError:
        pass
    figures: dict[str, float] = {}
    original_init = random.Random.__init__.__wrapped__  # type: ignore[attr-defined]
    wrapped_init = random.Random.__init__
    for name, wrapped, original, argument in cases:
        timings: dict[str, list[float]] = {"wrapped": [], "original": []}
        for _ in range(blocks):
            for kind in ("wrapped", "original"):
                if name == "random.Random":
                    random.Random.__init__ = wrapped_init if kind == "wrapped" else original_init  # type: ignore[method-assign]
                    function = random.Random
                else:
                    function = wrapped if kind == "wrapped" else original
                del seeds._calls[:]  # every timed call is recorded, none past the cap
                timings[kind].append(_per_call(function, argument, calls=200))
        random.Random.__init__ = wrapped_init  # type: ignore[method-assign]
        wrapped_us = min(timings["wrapped"]) * 1e6
        original_us = min(timings["original"]) * 1e6
        figures[f"{name} us (orig)"] = original_us
        figures[f"{name} +us"] = wrapped_us - original_us
    del seeds._calls[:]
    run.finish()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("dry-run", "environment", "seeds"))
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tracklet-bench-reproduce-"))
    try:
        figures: dict[str, float] = {}
        if args.only in (None, "dry-run"):
            figures.update(bench_dry_run(work / "dry"))
        if args.only in (None, "seeds"):
            figures.update(bench_seed_calls(work / "seeds"))
        if args.only in (None, "environment"):
            (work / "env").mkdir()
            figures.update(bench_environment(work / "env"))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"reproduce benchmark (load average {load:.1f})")
    for name, value in figures.items():
        print(f"  {name:<28} {value:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
