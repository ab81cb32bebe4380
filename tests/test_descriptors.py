"""What a long-lived process (a notebook, a sweep agent, a test process) keeps open as it goes through
many data roots: the per-root stores tracklet caches (artifact store: stat cache and chunk index;
model registry; reports) stay open for the last few roots only (``forksafe.Recent``), and an older
root's go once nothing holds them. Each was kept for the process's life before: 12 descriptors per
root (four SQLite databases with their ``-wal`` and ``-shm``), and ci54's test workers ended holding
750-820 descriptors."""

from __future__ import annotations

import json

from conftest import run_script

ROOTS_KEPT = 4

ROOTS = 10

SCRIPT = """
import gc, json, os, sys
from pathlib import Path

import tracklet
from fdreport import open_targets

base, count = Path(sys.argv[1]), int(sys.argv[2])
QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}


def holding():
    \"\"\"The roots this process holds a descriptor under: root -> the files' names.\"\"\"
    found = {}
    for target in map(Path, open_targets(str(base) + os.sep)):
        found.setdefault(target.relative_to(base).parts[0], []).append(target.name)
    return {root: sorted(names) for root, names in found.items()}


files = base / "files"
files.mkdir()
(files / "small.txt").write_text("hello")
(files / "large.bin").write_bytes(os.urandom(300_000))  # over the threshold below: chunked, in the chunk index
for i in range(count):
    root = base / f"root{i}"
    run = tracklet.init(project="p", dir=str(root), settings=QUIET)
    artifact = tracklet.Artifact("data", type="dataset")
    artifact.add_dir(files)
    run.log_artifact(artifact)
    artifact.wait()
    run.link_artifact(artifact, "registry/data")
    run.finish()
    tracklet.Report("p", title="notes", dir=str(root)).save()
    with tracklet.Api(root) as api:
        api.artifact("p/data:latest").download(base / f"out{i}")
        api.runs("p")
        api.reports("p")
    del run, artifact, api
    gc.collect()  # what reference cycles hold (an Artifact and its worker's job) is not at issue here
    print(json.dumps(holding()), flush=True)
"""


def test_a_process_going_through_many_data_roots_keeps_only_the_last_few_open(tmp_path):
    done = run_script(SCRIPT, args=(str(tmp_path), str(ROOTS)), timeout=300,
                      env={"TRACKLET_ARTIFACT_CHUNK_THRESHOLD": "100000"})
    assert done.returncode == 0, done.stderr
    after = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(after) == ROOTS
    databases = ["artifact-digests.sqlite", "chunk-index.sqlite", "registry.sqlite", "reports.sqlite"]
    every = sorted(name + suffix for name in databases for suffix in ("", "-shm", "-wal"))
    # the root just used holds its four databases (so this counts what the stores hold) ...
    assert after[0] == {"root0": every}
    for i, holding in enumerate(after):
        # ... and no root older than the last few holds anything once its run finished and its Api closed
        assert sorted(holding, key=lambda root: int(root[4:])) == [f"root{n}" for n in
                                                                  range(max(0, i + 1 - ROOTS_KEPT), i + 1)], i


def test_a_store_no_longer_kept_closes_its_databases_as_it_goes_without_waiting_for_a_collection(tmp_path):
    """An SQLite connection is in a reference cycle (with its statement cache): a store that went
    held its databases open until the cyclic collector next ran, in a process with it disabled
    (or between collections) for ever. The stat cache, chunk index and blob cache close theirs when they go."""
    code = """
    import gc, json, os, sys
    from pathlib import Path

    from fdreport import open_targets
    from tracklet.artifacts.cache import BlobCache
    from tracklet.artifacts.storage import open_store

    gc.disable()
    base, count = Path(sys.argv[1]), int(sys.argv[2])
    (base / "file").write_bytes(b"x" * 1000)
    os.utime(base / "file", (1, 1))  # not racily new: its digest is kept in the stat cache
    for i in range(count):
        store = open_store(base / f"root{i}")
        store.hasher.digest_files([str(base / "file")])
        store.chunks()
        cache = BlobCache(base / f"cache{i}")  # a remote Api's or artifact's, kept by nothing here
        del store, cache
    print(json.dumps(sorted({Path(target).relative_to(base).parts[0] for target in open_targets(str(base))})))
    """
    done = run_script(code, args=(str(tmp_path), str(ROOTS)), timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [f"root{n}" for n in range(ROOTS - ROOTS_KEPT, ROOTS)]
