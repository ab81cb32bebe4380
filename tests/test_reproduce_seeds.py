"""Random seeds the program sets (#21): recorded with the real libraries (numpy, torch, Lightning,
transformers, Keras), listed by ``tracklet diff`` and in ``tracklet reproduce``'s plan, and never
a reason for ``import tracklet`` to import a framework."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklet

from conftest import REPO, killed_once_written
from test_reproduce import _committed_repo, cli, git, record

pytest.importorskip("numpy")
pytest.importorskip("torch")


def run_program(where: Path, source: str, env: dict[str, str] | None = None) -> None:
    (where / "seeded.py").write_text(textwrap.dedent(source))
    done = subprocess.run([sys.executable, "seeded.py"], cwd=where, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert done.returncode == 0, done.stderr


def seeds_of(root: Path, project: str) -> list[list[tuple[str, str]]]:
    runs = sorted(tracklet.Api(root).runs(project), key=lambda r: r.created_at or 0)
    return [[(seed["api"], seed["value"]) for seed in run.metadata.get("seeds", [])] for run in runs]


def test_seeds_set_through_each_api_are_recorded_with_their_values(root, tmp_path):
    """numpy and torch imported before tracklet (patched at import tracklet); Lightning and
    transformers seed through them; a second run in the process records only its own seeds."""
    pytest.importorskip("lightning")
    pytest.importorskip("transformers")
    run_program(tmp_path, """
        import random
        import numpy as np
        import torch
        import tracklet
        run = tracklet.init(project="seeds")
        random.seed(1)
        np.random.seed(2)
        torch.manual_seed(3)
        torch.cuda.manual_seed_all(33)
        import lightning
        lightning.seed_everything(4)
        from transformers import set_seed
        set_seed(5)
        run.finish()
        run = tracklet.init(project="seeds")
        torch.manual_seed(6)
        run.finish()
        tracklet.init(project="seeds").finish()
    """)
    first, second, third = seeds_of(root, "seeds")
    assert first == [("random.seed", "1"), ("numpy.random.seed", "2"), ("torch.manual_seed", "3"),
                     ("torch.cuda.manual_seed_all", "33"), ("lightning.seed_everything", "4"),
                     ("transformers.set_seed", "5")]
    assert second == [("torch.manual_seed", "6")]
    assert third == []


def test_frameworks_imported_after_tracklet_are_hooked_and_keras_seeds_are_recorded(root, tmp_path):
    if importlib.util.find_spec("keras") is None:  # not imported here: its backend is fixed per process
        pytest.skip("keras is not installed")
    run_program(tmp_path, """
        import sys
        import tracklet
        assert not {"numpy", "torch", "keras", "transformers", "jax"} & set(sys.modules), sys.modules.keys()
        import numpy as np
        np.random.seed(7)  # before init: recorded in the run
        run = tracklet.init(project="seeds")
        import torch
        torch.manual_seed(8)
        import keras
        keras.utils.set_random_seed(9)
        np.random.seed(seed=10)
        run.finish()
    """, env={"KERAS_BACKEND": "torch"})
    (seeds,) = seeds_of(root, "seeds")
    assert seeds == [("numpy.random.seed", "7"), ("torch.manual_seed", "8"), ("keras.utils.set_random_seed", "9"),
                     ("numpy.random.seed", "10")]


def test_import_tracklet_imports_no_framework_and_a_run_that_never_seeds_records_none(root, tmp_path):
    run_program(tmp_path, """
        import sys
        import tracklet
        run = tracklet.init(project="seeds")
        run.log({"loss": 1.0})
        run.finish()
        heavy = {"numpy", "torch", "jax", "transformers", "lightning", "keras", "tensorflow"}
        assert not heavy & {name.split(".")[0] for name in sys.modules}, sorted(heavy & set(sys.modules))
    """)
    (run,) = tracklet.Api(root).runs("seeds")
    assert "seeds" not in run.metadata


SEEDED = ("import os, random, torch, tracklet\n"
          "run = tracklet.init(project='repro', config={'lr': 0.1})\n"
          "torch.manual_seed(int(os.environ['SEED']))\n"
          "random.seed(int(os.environ['SEED']) + 1)\n"
          "run.log({'loss': float(torch.rand(1))})\n"
          "run.finish()\n")


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory) -> Path:
    """Three runs of one repository's torch program, recorded once for the tests that compare them:
    seeded with SEED=1, with SEED=2, then (an uncommitted change) never seeding. Their data root."""
    base = tmp_path_factory.mktemp("seeded")
    data = base / "data"
    repo = _committed_repo(base)
    (repo / "train.py").write_text(SEEDED)
    git(repo, "commit", "-qam", "seeded")
    env = {"TRACKLET_DIR": str(data), "TRACKLET_CAPTURE_WAIT": "60"}
    record(repo, env={**env, "SEED": "1"})
    record(repo, env={**env, "SEED": "2"})
    (repo / "train.py").write_text(SEEDED.replace("torch.manual_seed(int(os.environ['SEED']))\n", "")
                                   .replace("random.seed(int(os.environ['SEED']) + 1)\n", ""))
    record(repo, env={**env, "SEED": "1"})
    return data


def _seeded(root: Path, recorded: Path) -> list:
    """The three runs of ``seeded_runs``, copied into this test's data root, oldest first."""
    shutil.copytree(recorded, root)
    return sorted(tracklet.Api(root).runs("repro"), key=lambda r: r.created_at or 0)


def test_diff_lists_different_seeds_and_the_plan_names_them(root, tmp_path, seeded_runs):
    first, second, _ = _seeded(root, seeded_runs)

    done = cli(root, "diff", first.path, second.path)
    assert done.returncode == 0, done.stderr
    assert "seeds:\n  random.seed: '2' -> '3'\n  torch.manual_seed: '1' -> '2'\n" in done.stdout
    data = json.loads(cli(root, "diff", first.path, second.path, "--json").stdout)
    assert {(c["key"], c["a"], c["b"]) for c in data["seeds"]} == {("random.seed", "2", "3"),
                                                                    ("torch.manual_seed", "1", "2")}
    same = json.loads(cli(root, "diff", first.path, first.path, "--json").stdout)
    assert same["seeds"] == []

    plan = cli(root, "reproduce", first.path, "--dry-run", cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "  seeds       torch.manual_seed(1), random.seed(2)" in plan.stdout
    as_json = json.loads(cli(root, "reproduce", first.path, "--dry-run", "--json", cwd=tmp_path).stdout)
    assert as_json["seeds"] == [{"api": "torch.manual_seed", "value": "1"}, {"api": "random.seed", "value": "2"}]


def test_a_run_that_never_seeds_differs_from_a_seeded_one(root, tmp_path, seeded_runs):
    first, _, second = _seeded(root, seeded_runs)
    text = cli(root, "diff", first.path, second.path).stdout
    assert "seeds:\n  random.seed: '2' -> None  (only in a)\n  torch.initial_seed: None -> '" in text
    assert "(only in b)\n  torch.manual_seed: '1' -> None  (only in a)\n" in text
    # the unseeded run's torch seed came from the OS: the plan names it, so it can be replayed
    (initial,) = second.metadata["seeds"]
    assert initial["api"] == "torch.initial_seed" and int(initial["value"]) >= 0
    plan = cli(root, "reproduce", second.path, "--dry-run", cwd=tmp_path).stdout
    assert f"  seeds       torch.initial_seed({initial['value']})" in plan


def test_a_refused_seed_is_not_recorded_and_calls_past_the_cap_are_counted_not_kept():
    import random

    from tracklet.core import seeds

    seeds.RunSeeds(list().append).close()  # whatever this test process seeded before
    queued: list = []
    run = seeds.RunSeeds(queued.append)
    with pytest.raises(TypeError):
        random.seed([1])  # not a seed random accepts
    for value in range(seeds.MAX_CALLS + 5):
        random.seed(value)
    run.tick()
    (record,) = queued
    assert [(seed.api, seed.value) for seed in record.seeds.seeds[:2]] == [("random.seed", "0"), ("random.seed", "1")]
    assert len(record.seeds.seeds) == seeds.MAX_CALLS and record.seeds.dropped == 5
    run.tick()
    assert len(queued) == 1  # nothing new: no record
    random.seed(7)  # the cap is per run: counted, not kept
    run.close()
    closing = queued[1]()  # built on the sender's worker
    assert not closing.seeds.seeds and closing.seeds.dropped == 1
    after = seeds.RunSeeds(queued.append)  # the next run starts with room again
    random.seed(8)
    after.close()
    assert [(seed.api, seed.value) for seed in queued[2]().seeds.seeds] == [("random.seed", "8")]


def test_generators_made_from_a_seed_and_jax_keys_are_recorded(root, tmp_path):
    """numpy imported before tracklet, jax after (hooked at its import); a key made inside jit from
    a traced seed is recorded by its type, not refused."""
    pytest.importorskip("jax")
    run_program(tmp_path, """
        import numpy as np
        import tracklet
        import jax
        run = tracklet.init(project="seeds")
        np.random.default_rng(11)
        np.random.default_rng()
        jax.random.PRNGKey(12)
        jax.random.key(13)
        jax.jit(lambda seed: jax.random.PRNGKey(seed))(14)
        run.finish()
    """, env={"JAX_PLATFORMS": "cpu"})
    ((generators),) = seeds_of(root, "seeds")
    assert generators[:4] == [("numpy.random.default_rng", "11"), ("numpy.random.default_rng", "None"),
                              ("jax.random.PRNGKey", "12"), ("jax.random.key", "13")]
    assert generators[4][0] == "jax.random.PRNGKey" and "Tracer" in generators[4][1]


def test_torch_seeded_before_import_tracklet_is_recorded_as_its_initial_seed(root, tmp_path):
    """torch remembers the seed its generator started from: the process's first run records it
    when it saw no torch seeding call; later runs, and runs that seed torch, don't."""
    run_program(tmp_path, """
        import torch
        torch.manual_seed(21)
        import tracklet
        tracklet.init(project="seeds").finish()
        tracklet.init(project="seeds").finish()
    """)
    run_program(tmp_path, """
        import torch
        torch.manual_seed(21)
        import tracklet
        run = tracklet.init(project="seeds")
        torch.manual_seed(22)
        run.finish()
    """)
    first, second, seeded = seeds_of(root, "seeds")
    assert first == [("torch.initial_seed", "21")] and second == []
    assert seeded == [("torch.manual_seed", "22")]
    # (a process that never seeds torch records the seed torch took from the OS: the seeded_runs tests)


def test_the_store_and_the_server_give_a_runs_seeds(root, tmp_path, servers):
    import httpx

    run_program(tmp_path, """
        import random
        import tracklet
        run = tracklet.init(project="seeds", id="seeded")
        random.seed(5)
        run.finish()
    """)
    run_program(tmp_path, """
        import random, tracklet
        run = tracklet.init(project="seeds", id="reseeded")
        random.seed(6)
        run.finish()
    """)
    server = servers(root)
    data = httpx.get(f"{server.url}/api/v1/runs/seeds/seeded", timeout=60).json()
    assert data["run"]["metadata"]["seeds"] == [{"api": "random.seed", "value": "5"}]
    plan = httpx.get(f"{server.url}/api/v1/runs/seeds/seeded/reproduce-plan", timeout=60).json()
    assert "  seeds       random.seed(5) (set by the program" in plan["plan"]
    assert "  seeds       not known: any given to random before `import tracklet`" in plan["plan"]
    # and as fields, for the dashboard and API clients
    assert plan["seeds"] == [{"api": "random.seed", "value": "5"}]
    assert (plan["seeds_unknown"], plan["seeds_dropped"], plan["rank"]) == (["random"], 0, "")
    diff = httpx.get(f"{server.url}/api/v1/projects/seeds/run-diff", params={"a": "seeded", "b": "reseeded"},
                     timeout=60).json()
    assert [(c["key"], c["a"], c["b"]) for c in diff["seeds"]] == [("random.seed", "5", "6")]


KILLED = """
import os, random, signal, sys, time
import numpy as np
import torch
import tracklet
run = tracklet.init(project="seeds", id="killed")
random.seed(3)
np.random.seed(4)
torch.manual_seed(5)
run.log({"loss": 1.0})
if sys.argv[1] == "flush":
    run.flush()
else:  # the sender's worker records the seeds at its next tick (flush_interval / 2), unasked
    deadline = time.monotonic() + 120  # a bound for a stuck test (the tick is seconds away), not a timing check
    while time.monotonic() < deadline:  # until they are in the run's log (a sleep: too short under load)
        try:
            if len(tracklet.Api(os.environ["TRACKLET_DIR"]).run("seeds/killed").metadata.get("seeds") or ()) == 3:
                break
        except Exception:  # the log's first records not there yet
            pass
        time.sleep(0.05)
os.kill(os.getpid(), signal.SIGKILL)  # killed before finish(): no RunExit
"""


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory) -> Callable[[str], Path]:
    """``KILLED`` run and killed once per way (``flush``, ``tick``), whatever the store backend the
    test then indexes it in: the data root it recorded in."""
    made: dict[str, Path] = {}

    def recorded(how: str) -> Path:
        if how not in made:
            base = tmp_path_factory.mktemp(f"killed-{how}")
            (base / "killed.py").write_text(KILLED)
            done = subprocess.run([sys.executable, "killed.py", how], cwd=base, capture_output=True, text=True,
                                  timeout=300, env={**os.environ, "PYTHONPATH": str(REPO),
                                                    "TRACKLET_DIR": str(base / "data")})
            assert done.returncode == -9, done.stderr
            made[how] = base / "data"
        return made[how]

    return recorded


@pytest.mark.parametrize("how", ["flush", "tick"])
def test_the_seeds_of_a_run_killed_before_it_finishes_are_kept(root, tmp_path, store_url, how, killed_runs):
    """A seed is recorded as it is set (a SeedsSet record), not only in the RunExit a killed run
    never writes: the reader, the store, diff and the plan all have them."""
    from tracklet.store import Store

    shutil.copytree(killed_runs(how), root)
    expected = [{"api": "random.seed", "value": "3"}, {"api": "numpy.random.seed", "value": "4"},
                {"api": "torch.manual_seed", "value": "5"}]
    (run,) = tracklet.Api(root).runs("seeds")
    assert run.exit_code is None  # no RunExit: the run was killed
    assert run.metadata["seeds"] == expected
    # imported before tracklet (numpy imports numpy.random lazily, at np.random.seed: after tracklet)
    assert run.metadata["seeds_unknown"] == ["random", "torch"]

    store = Store(store_url, root=root)
    store.index()
    (row,) = store.runs("seeds", fields=("metadata",))
    assert row["metadata"]["seeds"] == expected

    plan = cli(root, "reproduce", "seeds/killed", "--dry-run", cwd=tmp_path).stdout
    assert "  seeds       random.seed(3), numpy.random.seed(4), torch.manual_seed(5)" in plan
    assert "  seeds       not known: any given to random, torch before `import tracklet`" in plan


EARLY = """
import random, sys, time
import tracklet
if sys.argv[1] == "before-init":
    random.seed(3)
run = tracklet.init(project="seeds", id="early")
if sys.argv[1] == "after-init":
    random.seed(3)
print("seeded", flush=True)
time.sleep(600)  # training, until killed; the sender's next tick is flush_interval / 2 = 600 s away
"""


def _seeds_when_written(root: Path, deadline: float) -> list[dict[str, str]] | None:
    """The seeds in run seeds/early's record log once there (read as the process writes it)."""
    while time.monotonic() < deadline:
        try:
            seeds = tracklet.Api(root).run("seeds/early").metadata.get("seeds")
        except Exception:  # the run's directory or first record not there yet
            seeds = None
        if seeds:
            return seeds
        time.sleep(0.02)
    return None


@pytest.mark.parametrize("when", ["before-init", "after-init"])
def test_seeds_are_written_as_they_are_set_not_at_the_senders_next_tick(root, tmp_path, when):
    """A run killed (SIGKILL) right after seeding keeps its seeds: a seeding call wakes the run's
    sender worker (seeds set before ``init()`` are written with its start record), so they are in
    the record log long before its next tick. With flush_interval = 1200 s the tick never comes
    before the kill: before this, the run's log had no seeds (nor anything else)."""
    (tmp_path / "early.py").write_text(EARLY)
    written, _ = killed_once_written(["early.py", when], cwd=tmp_path, ready="seeded\n",
                                  written=lambda deadline: _seeds_when_written(root, deadline))
    assert written == [{"api": "random.seed", "value": "3"}]
    run = tracklet.Api(root).run("seeds/early")
    assert run.exit_code is None and run.metadata["seeds"] == [{"api": "random.seed", "value": "3"}]


def test_a_log_whose_seeds_are_in_its_run_exit_still_reads(root, store_url):
    """Logs written before SeedsSet records kept a run's seeds in its RunExit."""
    from tracklet.core.layout import RunPaths
    from tracklet.core.recordlog import RecordLogWriter
    from tracklet.proto import records_pb2 as pb
    from tracklet.store import Store

    paths = RunPaths(root, "seeds", "older")
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    writer = RecordLogWriter(paths.log_file)
    record = pb.Record()
    record.run_start.run_id, record.run_start.project, record.run_start.start_time = "older", "seeds", 1.8e9
    writer.write(record.SerializeToString())
    record = pb.Record()
    record.exit.exit_code, record.exit.end_time, record.exit.seeds_dropped = 0, 1.8e9 + 1, 2
    record.exit.seeds.add(api="torch.manual_seed", value="7")
    writer.write(record.SerializeToString())
    writer.close()

    (run,) = tracklet.Api(root).runs("seeds")
    assert run.metadata["seeds"] == [{"api": "torch.manual_seed", "value": "7"}]
    assert run.metadata["seeds_dropped"] == 2 and "seeds_unknown" not in run.metadata
    store = Store(store_url, root=root)
    store.index()
    (row,) = store.runs("seeds", fields=("metadata",))
    assert row["metadata"]["seeds"] == [{"api": "torch.manual_seed", "value": "7"}]
    assert row["metadata"]["seeds_dropped"] == 2


def test_random_generators_made_by_the_program_are_recorded_and_the_standard_librarys_are_not(root, tmp_path):
    run_program(tmp_path, """
        import os, pickle, random, sys, tempfile
        import tracklet
        run = tracklet.init(project="seeds")
        rng = random.Random(15)
        rng.seed(16)
        random.Random()
        random.SystemRandom().random()  # the OS's: no seed
        descriptor, made = tempfile.mkstemp()  # the standard library makes a Random of its own
        os.close(descriptor)
        os.remove(made)  # (not left in the machine's temporary directory by every run)
        class Dice(random.Random):
            pass
        dice = Dice(17)
        assert isinstance(dice, random.Random) and type(rng) is random.Random
        run.finish()
        assert pickle.loads(pickle.dumps(rng)).random() == rng.random()  # (its Random() is the next run's)
        heavy = {"numpy", "torch", "jax"}
        assert not heavy & {name.split(".")[0] for name in sys.modules}, sorted(heavy & set(sys.modules))
    """)
    (made,) = seeds_of(root, "seeds")
    assert made == [("random.Random", "15"), ("random.Random.seed", "16"), ("random.Random", "None"),
                    ("random.Random", "17")]


def test_a_forked_child_records_its_own_seeds_and_the_parent_keeps_its_own(root, tmp_path):
    run_program(tmp_path, """
        import os, random
        import tracklet
        parent = tracklet.init(project="seeds", id="parent")
        random.seed(1)
        pid = os.fork()
        if pid == 0:
            child = tracklet.init(project="seeds", id="child")
            random.seed(2)
            child.finish()
            os._exit(0)
        os.waitpid(pid, 0)
        random.seed(3)
        parent.finish()
    """)
    runs = {run.id: run for run in tracklet.Api(root).runs("seeds")}
    assert [s["value"] for s in runs["parent"].metadata["seeds"]] == ["1", "3"]
    # the child's run starts where its parent's calls stood when no run had finished: random.seed(1) too
    assert [s["value"] for s in runs["child"].metadata["seeds"]] == ["1", "2"]


def test_a_resumed_runs_seeds_are_its_last_sessions(root, tmp_path, store_url):
    from tracklet.store import Store

    run_program(tmp_path, """
        import random, tracklet
        run = tracklet.init(project="seeds", id="again")
        random.seed(1)
        run.finish()
    """)
    store = Store(store_url, root=root)
    store.index()  # the first session indexed on its own, then the second on top of it
    run_program(tmp_path, """
        import random, tracklet
        random.seed(2)
        tracklet.init(project="seeds", id="again", resume="allow").finish()
    """)
    store.index()
    (row,) = store.runs("seeds", fields=("metadata",))
    assert row["metadata"]["seeds"] == [{"api": "random.seed", "value": "2"}]
    (run,) = tracklet.Api(root).runs("seeds")
    assert run.metadata["seeds"] == [{"api": "random.seed", "value": "2"}]
