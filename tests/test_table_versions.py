"""Run-table version numbers across a shared run's writers (docs/tables.md#lineage): each writer
takes ``v<n>`` of ``run-<id>-<key>`` from the run directory's per-key counter, so the writers of
one run on one machine number a key uniquely and without gaps, and every reader (the log reader,
``use_artifact``, W&B's ``Api().artifact``, ``tracklet artifact show``, the store on SQLite and
PostgreSQL, however late a part is indexed) gives the same numbers. Logs written without a number
read as they always did. Writers are real processes (fresh interpreters) logging concurrently."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracklet
from tracklet.errors import TableNotFound

REPO = Path(__file__).resolve().parents[1]
QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}

WRITER = """
import os, sys, time
root, run_id, label, count, first = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if os.environ.get("OLD_WRITER"):  # as a writer before the field: its records carry no number
    from tracklet.media import table_versions
    table_versions.VersionCounter.take = lambda self, key: 0
import tracklet
settings = {"dir": root, "console": "off", "capture_environment": False, "system_metrics": False}
if label != "primary":
    settings.update(primary=False, label=label)
if os.environ.get("SERVER_URL"):  # online: the server gets the log and each part
    settings.update(base_url=os.environ["SERVER_URL"], mode="online")
run = tracklet.init(project="p", id=run_id, settings=settings, resume="allow" if label == "primary" else None)
go = os.path.join(root, "go")
open(os.path.join(root, label + ".ready"), "w").close()
while not os.path.exists(go):  # every writer logs at the same moment
    time.sleep(0.005)
growing = tracklet.Table(columns=["label", "i"], log_mode="INCREMENTAL")
for i in range(first, first + count):
    run.log({"preds": tracklet.Table(columns=["label", "i"], data=[[label, i]])}, step=i)
    growing.add_data(label, i)
    run.log({"inc": growing}, step=i)
run.finish()
"""


def _writers(root: Path, run_id: str, labels: list[str], count: int, old: bool = False, first: int = 0,
             server: str | None = None) -> None:
    """Run one fresh interpreter per label, released together, and wait for them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "go").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("OLD_WRITER", "SERVER_URL", "TRACKLET_BASE_URL", "TRACKLET_MODE"):
        env.pop(name, None)
    if old:
        env["OLD_WRITER"] = "1"
    if server:
        env["SERVER_URL"] = server
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), run_id, label, str(count), str(first)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for label in labels]
    try:
        deadline = time.monotonic() + 120
        while not all((root / f"{label}.ready").exists() for label in labels):
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes), \
                [p.communicate() for p in processes if p.poll() is not None]
            time.sleep(0.02)
        (root / "go").touch()
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for label in labels:
            (root / f"{label}.ready").unlink(missing_ok=True)


def _read(root: Path, run_id: str) -> list[tuple[str, str, int, int]]:
    """(key, writer label, step, n) of each of the run's table logs, in the readers' order (the
    writer: the log it is in), numbered as the readers number them."""
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths
    from tracklet.core.run_tables import logged_tables, run_logged_tables, version_numbers

    paths = RunPaths(root, "p", run_id)
    records = run_logged_tables(paths)
    assert [r.SerializeToString() for r in records] == [r.SerializeToString() for r in RecordedRun(paths)._read.tables]
    writers = [("primary", paths)] * len(logged_tables(paths.log_file))
    for label in paths.parts():
        writers += [(label, paths.part_paths(label))] * len(logged_tables(paths.part_paths(label).log_file))
    assert len(writers) == len(records)
    return [(record.key, label, int(record.step), number)
            for record, (label, _), number in zip(records, writers, version_numbers(records))]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The runs the tests read, each recorded once per module (writers are processes: each backend's
    test copies them): ``sh``, three concurrent writers; ``old``, two writers before the field;
    ``mn``, a primary and a part written on two machines."""
    base = tmp_path_factory.mktemp("recorded")
    _writers(base / "sh", "sh", ["primary", "rank_1", "rank_2"], 6)
    _writers(base / "old", "old", ["primary", "rank_1"], 2, old=True)
    _writers(base / "mn-a", "mn", ["primary"], 3)
    _writers(base / "mn-b", "mn", ["rank_1"], 2)
    return base


def _copy(recorded: Path, name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(recorded / name, root)
    return root


def _store_versions(api, run_id: str) -> dict[str, list[int]]:
    """The store's ``logged`` edge versions of the run's tables, by name."""
    from tracklet.store.lineage import edges_of_run

    found: dict[str, list[int]] = {}
    for edge in edges_of_run(api.store.engine, "p", run_id, "logged"):
        found.setdefault(edge["name"], []).append(int(edge["version"]))
    return {name: sorted(numbers) for name, numbers in found.items()}


def test_concurrent_writers_of_a_shared_run_number_a_key_uniquely_and_gaplessly(recorded, tmp_path, store_url):
    """Three processes of one run log ``preds`` (IMMUTABLE) and ``inc`` (INCREMENTAL: each
    increment is a version) 6 times each at the same moment: each key's numbers are 0..17, each
    writer's ascending in its log order, the writer's own (recorded in the log), and the same in
    every reader; the store, indexing the primary's log before the parts exist and the parts
    later, gives every version the number it had, and a rebuilt store too."""
    from tracklet.core.layout import RunPaths
    from tracklet.core.run_tables import run_logged_tables

    root = _copy(recorded, "sh", tmp_path)
    read = _read(root, "sh")
    for key in ("preds", "inc"):
        assert sorted(n for k, _, _, n in read if k == key) == list(range(18))
        for label in ("primary", "rank_1", "rank_2"):
            mine = [(step, n) for k, lab, step, n in read if k == key and lab == label]
            assert [step for step, _ in mine] == list(range(6))
            assert [n for _, n in mine] == sorted(n for _, n in mine)  # in the order it logged
    records = run_logged_tables(RunPaths(root, "p", "sh"))
    assert [r.version_plus_one - 1 for r in records] == [n for *_, n in read]  # the writers' numbers, as given
    assert json.loads((root / "projects/p/runs/sh/table-versions.json").read_text()) == {"preds": 18, "inc": 18}

    # Every lookup names the same table by vN (and latest is v17).
    preds = {n: (label, step) for key, label, step, n in read if key == "preds"}
    consumer = tracklet.init(project="p", id="consumer", dir=str(root), settings=QUIET)
    for n in (0, 7, 17):
        found = consumer.use_artifact(f"run-sh-preds:v{n}")
        assert (found.version, found.step) == (n, preds[n][1])
        assert found.table().to_pandas()["label"].tolist() == [preds[n][0]]
    assert consumer.use_artifact("run-sh-preds:latest").version == 17
    consumer.finish()
    reader = tracklet.Api(root).run("p/sh")
    assert [reader.table("preds", version=n).to_pandas()["label"].tolist() for n in (0, 7, 17)] == [
        [preds[n][0]] for n in (0, 7, 17)]
    with pytest.raises(TableNotFound):
        reader.table("preds", version=18)
    import tracklet.compat.wandb as wandb

    assert wandb.Api(overrides={"root": str(root)}).artifact("p/run-sh-preds:v7").get("preds").data == [
        [preds[7][0], preds[7][1]]]
    shown = CliRunner().invoke(_cli(), ["--dir", str(root), "artifact", "show", "p/run-sh-preds:v7", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["step"] == preds[7][1]

    # The store: the primary's log first (its parts set aside), the parts later.
    parts = root / "projects/p/runs/sh/parts"
    aside = tmp_path / "parts-aside"
    shutil.move(parts, aside)
    store = tracklet.Api(root, store_url=store_url)
    try:
        store.index()
        first = _store_versions(store, "sh")
        shutil.move(aside, parts)
        store.index()
        every = _store_versions(store, "sh")
        assert every["run-sh-preds"] == every["run-sh-inc"] == list(range(18))
        assert set(first["run-sh-preds"]) == {n for k, lab, _, n in read if k == "preds" and lab == "primary"}
        assert set(first["run-sh-preds"]) <= set(every["run-sh-preds"])
        assert store.store.run_table_last("p", "run-sh-preds") == 17
        store.store.index(rebuild=True)
        assert _store_versions(store, "sh") == every
    finally:
        store.close()


def _cli():
    from tracklet.cli.main import main

    return main


def test_logs_without_the_field_read_as_before_and_a_resumed_run_numbers_on(recorded, tmp_path, store_url):
    """Writers before the field (their records carry no number): the readers number each key's
    logs in their order (the primary's log, then each part's by label), the store in its indexing
    order, as before. The primary resumed by this version takes its numbers from a counter made
    from those logs, so its new versions follow them."""
    root = _copy(recorded, "old", tmp_path)
    read = _read(root, "old")
    assert [(k, lab, n) for k, lab, _, n in read if k == "preds"] == [
        ("preds", "primary", 0), ("preds", "primary", 1), ("preds", "rank_1", 2), ("preds", "rank_1", 3)]
    assert not (root / "projects/p/runs/old/table-versions.json").exists()
    store = tracklet.Api(root, store_url=store_url)
    try:
        store.index()
        assert _store_versions(store, "old")["run-old-preds"] == [0, 1, 2, 3]
        _writers(root, "old", ["primary"], 2, first=2)  # resumed: numbers on from v3
        read = _read(root, "old")
        assert [(lab, step, n) for k, lab, step, n in read if k == "preds"] == [
            ("primary", 0, 0), ("primary", 1, 1), ("primary", 2, 4), ("primary", 3, 5), ("rank_1", 0, 2),
            ("rank_1", 1, 3)]
        store.index()
        assert _store_versions(store, "old")["run-old-preds"] == list(range(6))
    finally:
        store.close()


def test_writers_on_two_machines_get_unique_numbers_by_the_log_rule(recorded, tmp_path, store_url):
    """A part written on another machine (its own data root, so its own counter) synced into the
    run later: the numbers it took clash with the primary's, so readers give its logs the lowest
    numbers the key doesn't have (the log rule); each number is still unique, and the store
    (indexing the part after the primary) and a rebuilt store agree."""
    from tracklet.core.layout import RunPaths

    machine_a, machine_b = _copy(recorded, "mn-a", tmp_path), recorded / "mn-b"
    part = RunPaths(machine_b, "p", "mn", "rank_1").log_file
    target = RunPaths(machine_a, "p", "mn", "rank_1").log_file
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(part, target)  # synced: its log and the blobs its tables name
    shutil.copytree(machine_b / "artifacts", machine_a / "artifacts", dirs_exist_ok=True)
    read = _read(machine_a, "mn")
    assert [(lab, step, n) for k, lab, step, n in read if k == "preds"] == [
        ("primary", 0, 0), ("primary", 1, 1), ("primary", 2, 2), ("rank_1", 0, 3), ("rank_1", 1, 4)]
    store = tracklet.Api(machine_a, store_url=store_url)
    try:
        store.index()
        assert _store_versions(store, "mn")["run-mn-preds"] == list(range(5))
        store.store.index(rebuild=True)
        assert _store_versions(store, "mn")["run-mn-preds"] == list(range(5))
    finally:
        store.close()


HOLDER = """
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], "table-versions.json"), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def test_a_writer_killed_holding_the_lock_or_one_stopped_with_it_never_stalls_another(tmp_path, monkeypatch):
    """A writer killed while it holds the counter's lock releases it (the kernel drops a dead
    process's flock): the next number is taken at once. One that holds it and doesn't go on (a
    stopped process) costs a writer at most ``LOCK_WAIT``: that log has no number (one warning),
    the next one has. A run directory it can't write: no numbers, one warning, the run goes on."""
    from tracklet.core.layout import RunPaths
    from tracklet.media import table_versions

    paths = RunPaths(tmp_path, "p", "r")
    paths.run_dir.mkdir(parents=True)
    warnings: list[str] = []
    counter = table_versions.VersionCounter(paths, lambda token, message: warnings.append(message))
    assert counter.take("k") == 1
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(paths.run_dir)], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(table_versions, "LOCK_WAIT", 0.2)
        assert counter.take("k") == 0 and len(warnings) == 1 and "held this run's table version lock" in warnings[0]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert counter.take("k") == 2 and len(warnings) == 1
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    gone = table_versions.VersionCounter(RunPaths(tmp_path, "p", "missing"), lambda token, message: warnings.append(message))
    assert gone.take("k") == 0 and gone.take("k") == 0 and len(warnings) == 2 and "could not be used" in warnings[1]
    (paths.run_dir / table_versions.COUNTER).write_text("{not json")  # damaged: made again from the logs (none)
    assert counter.take("k") == 1


def test_the_numbering_rule_keeps_writers_numbers_and_numbers_the_rest_by_the_logs():
    """``version_numbers`` over records in the readers' order: a writer's number is kept where no
    earlier record of the key has it; the records without one, or with a clash, get the lowest
    numbers the key doesn't have, in order (for logs without numbers: the n-th log of the key, as
    before)."""
    from types import SimpleNamespace

    from tracklet.core.run_tables import version_numbers

    def records(*pairs):
        return [SimpleNamespace(key=key, version_plus_one=given) for key, given in pairs]

    assert version_numbers(records(("a", 0), ("b", 0), ("a", 0), ("a", 0))) == [0, 0, 1, 2]
    assert version_numbers(records(("a", 1), ("a", 3), ("a", 2))) == [0, 2, 1]  # the primary's, then a part's
    assert version_numbers(records(("a", 1), ("a", 2), ("a", 1), ("a", 2))) == [0, 1, 2, 3]  # two counters
    assert version_numbers(records(("a", 0), ("a", 0), ("a", 3))) == [0, 1, 2]  # a resumed old run
    # ... with an old part read after the resumed primary's new logs: the old ones keep 0..3
    assert version_numbers(records(("a", 0), ("a", 0), ("a", 5), ("a", 6), ("a", 0), ("a", 0))) == [0, 1, 4, 5, 2, 3]
    taken, start = {"a": {7}}, {"a": 5}  # the store: v0..v4 and v7 indexed
    assert version_numbers(records(("a", 8), ("a", 6), ("a", 3), ("a", 0), ("a", 0)), taken, start) == [6, 5, 8, 9, 10]
    assert version_numbers(records(("a", 2**63), ("a", 0))) == [0, 1]  # out of range: the log rule
