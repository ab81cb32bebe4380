"""Shared runs' parts on a scaled-out server: two `tracklet server` processes with `--logs` in one
S3 bucket (a real s3rver) and one PostgreSQL store, a run's parts (secondary writers' logs)
uploaded through both. Each part is segments of its own, keyed by run and label, with the rules
a part has on a server that keeps files: resends, offsets, labels and the per-run limit, checked
across the two processes at once; the store shows every writer's data whichever process is asked.
Media retention pruned through one process holds in the other (its retention beside the segments).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import serverproc
from conftest import QUIET, REPO
from s3server import BUCKET, S3_KEY, S3_SECRET, s3_filesystem

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import scan

PROJECT = "ddp"


@pytest.fixture(scope="module")
def two(module_servers, postgres_url, s3rver, tmp_path_factory):
    """Two server processes, each with its own empty --dir, on one PostgreSQL database and one
    bucket prefix, keeping at most 3 parts per run; yields (servers, prefix)."""
    from pgcluster import create_database, drop_database

    name = f"segparts{os.getpid()}"
    url = create_database(postgres_url, name)
    prefix = f"{BUCKET}/{uuid.uuid4().hex}"
    options = ("--files-option", f"endpoint_url={s3rver}", "--files-option", f"key={S3_KEY}",
               "--files-option", f"secret={S3_SECRET}")
    shared = ("--logs", f"s3://{prefix}/logs", "--files", f"s3://{prefix}/files", *options,
              "--heartbeat-lapse", "600", "--max-parts-per-run", "3")
    base = tmp_path_factory.mktemp("segparts")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TRACKLET_ARTIFACT_PACK_SMALL", "0")  # each blob an S3 object of its own (a prune removes them)
        started = [module_servers(base / f"api{index}", store=url,
                                  extra=(*shared, "--artifacts", f"s3://{prefix}/artifacts")) for index in range(2)]
    yield started, prefix, url, options
    module_servers.stop_using(url)
    drop_database(postgres_url, name)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def _joined(prefix: str, endpoint: str, run_id: str, label: str) -> bytes:
    """A part's segments in the bucket, concatenated in offset order."""
    fs = s3_filesystem(endpoint)
    keys = sorted(fs.find(f"{prefix}/logs/{PROJECT}/{run_id}/parts/{label}/"))
    return b"".join(fs.cat_file(key) for key in keys)


WRITER = textwrap.dedent("""
    import sys, tracklet
    root, run_id, label, url, base = sys.argv[1:6]
    settings = {"dir": root, "mode": "online", "base_url": url, "upload_interval": 0.05, "console": "wrap",
                "system_metrics": False, "capture_environment": False}
    if label != "primary":
        settings.update(primary=False, label=label)
    run = tracklet.init(project="ddp", id=run_id, config={label + "_cfg": 1}, settings=settings)
    for step in range(200):
        run.log({"loss": int(base) + step, label + "/grad": step})
        if step % 50 == 49:
            run.flush()
    print("hello from", label, flush=True)
    run.finish()
""")


def _writer(root: Path, run_id: str, label: str, url: str, base: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRITER, str(root), run_id, label, url, str(base)], env=_env(),
                          capture_output=True, text=True, timeout=180)


def test_every_ranks_part_goes_online_to_either_process(tmp_path, two, s3rver):
    """A DDP job online with every rank recording into one run: the secondaries' parts upload
    through either process (one before the primary exists anywhere, one half through each
    process), each part's segments are its log byte for byte, and both processes' API, the
    `tracklet.Api` against the server and the log route show every writer's data."""
    (one, other), prefix, url, options = two
    root = tmp_path / "node"
    early = _writer(root, "job", "rank_1", one.url, 100)  # before the primary: kept until its log arrives
    assert early.returncode == 0 and "refused" not in early.stderr, early.stderr
    results: list[subprocess.CompletedProcess] = []
    threads = [threading.Thread(target=lambda label=label, url=url, base=base: results.append(
        _writer(root, "job", label, url, base))) for label, url, base in (("primary", one.url, 0),
                                                                          ("rank_2", other.url, 200))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [result.returncode for result in results] == [0, 0], [result.stderr for result in results]
    assert not any("refused" in result.stderr or "failed" in result.stderr for result in results), results

    # rank_3 recorded offline, sent half through each process (and once more: a resend of equal bytes)
    quiet = {**QUIET, "dir": str(root)}
    for steps in (range(0, 300), range(300, 600)):
        rank = tracklet.init(project=PROJECT, id="job", resume="allow", reinit="create_new",
                             settings={**quiet, "primary": False, "label": "rank_3"})
        for step in steps:
            rank.log({"rank_3/acc": step}, step=step)
        rank.finish()
        server = one if steps.start == 0 else other
        done = serverproc.cli("sync", "--url", server.url, "-q", "--chunk-mb", "0.01", f"{PROJECT}/job",
                              env={"TRACKLET_DIR": str(root)}, timeout=180)
        assert done.returncode == 0, done.stderr
    again = serverproc.cli("sync", "--url", one.url, "-q", f"{PROJECT}/job", env={"TRACKLET_DIR": str(root)},
                           timeout=180)
    assert again.returncode == 0, again.stderr

    run_paths = RunPaths(root, PROJECT, "job")
    for label in ("rank_1", "rank_2", "rank_3"):
        assert _joined(prefix, s3rver, "job", label) == run_paths.part_paths(label).log_file.read_bytes(), label
    for server in (one, other):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            run = client.get(f"/api/v1/runs/{PROJECT}/job").json()["run"]
            assert run["state"] == "finished"
            parts = run["metadata"]["parts"]
            assert {label: parts[label]["state"] for label in parts} == dict.fromkeys(
                ("rank_1", "rank_2", "rank_3"), "finished")
            summary = run["summary"]
            assert (summary["loss"], summary["loss/l:rank_1"], summary["loss/l:rank_2"]) == (199, 299, 399)
            assert summary["rank_3/acc"] == 599
            history = client.get(f"/api/v1/runs/{PROJECT}/job/history",
                                 params={"keys": "rank_3/acc,loss/l:rank_2", "buckets": 0}).json()
            series = {entry["key"]: entry for entry in history["series"]}
            assert series["rank_3/acc"]["steps"] == list(range(600))  # every step once, across both processes
            assert series["loss/l:rank_2"]["values"] == [float(200 + step) for step in range(200)]
            console = client.get(f"/api/v1/runs/{PROJECT}/job/console").text
            assert "[rank_2] hello from rank_2" in console and "hello from primary" in console
            part = client.get(f"/api/v1/runs/{PROJECT}/job/log", params={"part": "rank_2"})
            assert part.headers["X-Tracklet-Log-Part"] == "rank_2"
            assert part.content == run_paths.part_paths("rank_2").log_file.read_bytes()
    # a run's files on a --logs server: the run is known from its segments (a part's files too)
    for run_id in ("job", "early"):
        if run_id == "early":  # a run that has a part only so far
            assert _put(one, "early", "r1", 0, run_paths.part_paths("rank_1").log_file.read_bytes()).status_code == 200
        put = httpx.put(f"{one.url}/api/v1/runs/{PROJECT}/{run_id}/files/parts/r1/notes.txt", content=b"n", timeout=30)
        assert put.status_code == 200, put.text
        assert httpx.get(f"{other.url}/api/v1/runs/{PROJECT}/{run_id}/files/parts/r1/notes.txt").content == b"n"
    remote = tracklet.Api(base_url=other.url).run(f"{PROJECT}/job")
    assert remote.config["rank_2_cfg"] == 1 and remote.summary["loss/l:rank_1"] == 299
    for server in (one, other):
        assert not (server.root / "projects").exists()  # nothing in a process's own directory
    # the store rebuilt from the segments (`tracklet index --rebuild --logs`) has every writer's again
    rebuilt = serverproc.cli("--dir", str(tmp_path / "index"), "index", "--rebuild", "--store", url,
                             "--logs", f"s3://{prefix}/logs", *options, timeout=180)
    assert rebuilt.returncode == 0, rebuilt.stderr
    again = httpx.get(f"{other.url}/api/v1/runs/{PROJECT}/job", timeout=30).json()["run"]
    assert (again["summary"]["loss/l:rank_2"], again["summary"]["rank_3/acc"]) == (399, 599)
    assert sorted(again["metadata"]["parts"]) == ["rank_1", "rank_2", "rank_3"]


def _part_log(tmp_path: Path, run_id: str, label: str, rows: int = 3) -> bytes:
    root = tmp_path / f"rec-{run_id}-{label}-{rows}"
    run = tracklet.init(project=PROJECT, id=run_id, reinit="create_new",
                        settings={**QUIET, "dir": str(root), "primary": False, "label": label})
    for step in range(rows):
        run.log({"x": step})
    run.finish()
    return RunPaths(root, PROJECT, run_id, label).log_file.read_bytes()


def _put(server, run_id: str, label: str, offset: int, body: bytes) -> httpx.Response:
    return httpx.put(f"{server.url}/api/v1/runs/{PROJECT}/{run_id}/log", params={"offset": offset, "part": label},
                     content=body, timeout=60)


def test_offsets_resends_labels_and_the_limit_hold_across_both_processes(tmp_path, two):
    """The rules of a part's upload, through two processes at once: a resend whose overlap equals
    the stored bytes is taken (nothing stored twice), a gap or other bytes are 409 with the
    stored size, a body that isn't whole frames is 400; labels that differ only in case and the
    part past --max-parts-per-run are refused even when uploaded at the same moment to the two
    processes (exactly one wins), and the refused parts leave nothing behind."""
    (one, other), *_ = two
    log = _part_log(tmp_path, "rules", "w1")
    frames = scan(log).payloads
    middle = frames[len(frames) // 2][0]  # a frame boundary
    assert _put(one, "rules", "w1", 0, log[:middle]).json() == {"offset": middle, "appended": middle, "part": "w1"}
    resend = _put(other, "rules", "w1", 0, log)  # the overlap equals the stored bytes: only the rest is stored
    assert resend.json() == {"offset": len(log), "appended": len(log) - middle, "part": "w1"}
    assert _put(one, "rules", "w1", 0, log).json()["appended"] == 0
    gap = _put(other, "rules", "w1", len(log) + 10, log[middle:])
    assert gap.status_code == 409 and gap.json()["offset"] == len(log)
    other_bytes = _part_log(tmp_path, "rules", "w1", rows=5)
    mismatch = _put(one, "rules", "w1", 0, other_bytes)
    assert mismatch.status_code == 409 and mismatch.json()["offset"] == len(log)
    torn = _put(other, "rules", "w1", len(log), log[middle:-3])
    assert torn.status_code == 400 and "nothing was stored" in torn.text
    for server in (one, other):
        offset = httpx.get(f"{server.url}/api/v1/runs/{PROJECT}/rules/log/offset", params={"part": "w1"}).json()
        assert offset == {"offset": len(log), "part": "w1"}
        assert httpx.get(f"{server.url}/api/v1/runs/{PROJECT}/rules/log", params={"part": "w1"}).content == log

    def race(uploads: list[tuple[object, str, bytes]]) -> list[int]:
        answers: list[int] = [0] * len(uploads)

        def send(index: int, server, label: str, body: bytes) -> None:
            answers[index] = _put(server, "rules", label, 0, body).status_code

        threads = [threading.Thread(target=send, args=(index, *upload)) for index, upload in enumerate(uploads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return answers

    # Two labels differing only in case, each to another process at once: one is stored.
    twins = race([(one, "Rank_9", _part_log(tmp_path, "rules", "Rank_9")),
                  (other, "rank_9", _part_log(tmp_path, "rules", "rank_9"))])
    assert sorted(twins) == [200, 400], twins
    loser = "Rank_9" if twins[0] == 400 else "rank_9"
    for server in (one, other):
        for route in ("log", "log/offset"):
            refused = httpx.get(f"{server.url}/api/v1/runs/{PROJECT}/rules/{route}", params={"part": loser})
            assert refused.status_code == 400 and "differs only in case" in refused.text, refused.text
    # The run has 2 parts of 3: of three new labels sent at once through both processes, one is stored.
    labels = ["n1", "n2", "n3"]
    answers = race([(server, label, _part_log(tmp_path, "rules", label))
                    for server, label in zip((one, other, one), labels)])
    assert sorted(answers) == [200, 400, 400], answers
    refused = _put(other, "rules", "n4", 0, _part_log(tmp_path, "rules", "n4"))
    assert refused.status_code == 400 and "rules has 3 parts" in refused.text and "--max-parts-per-run 3" in refused.text
    stored = [label for label in labels if answers[labels.index(label)] == 200]
    for label in {*labels, "n4"} - set(stored):
        assert httpx.get(f"{one.url}/api/v1/runs/{PROJECT}/rules/log/offset", params={"part": label}).json()[
            "offset"] == 0


def test_a_part_with_the_longest_run_id_and_label_is_kept_and_read_through_either_process(tmp_path, two):
    """A run id and a part label of 128 characters each (the most a name has): a --logs server keys
    the part's segments by both (257 characters, server migration s0024) and takes it as a server
    that keeps files does, its bytes sent half through each process; the other process reads the
    part's log back byte for byte and shows the run as the local reader does. A label over 128
    characters is still refused (422, naming the limit)."""
    (one, other), *_ = two
    run_id, label = "r" + "1" * 127, "rank_" + "9" * 123
    assert len(run_id) == len(label) == 128
    root = tmp_path / "long"
    for writer in ("primary", label):
        settings = {**QUIET, "dir": str(root)} | ({} if writer == "primary" else {"primary": False, "label": label})
        run = tracklet.init(project=PROJECT, id=run_id, reinit="create_new", settings=settings)
        for step in range(4):
            run.log({"loss": float(step)} if writer == "primary" else {"grad": 10.0 + step}, step=step)
        run.finish()
    paths = RunPaths(root, PROJECT, run_id)
    log, part = paths.log_file.read_bytes(), paths.part_paths(label).log_file.read_bytes()
    middle = scan(part).payloads[len(scan(part).payloads) // 2][0]  # a frame boundary
    assert httpx.put(f"{one.url}/api/v1/runs/{PROJECT}/{run_id}/log", params={"offset": 0}, content=log,
                     timeout=60).status_code == 200
    first = _put(one, run_id, label, 0, part[:middle])
    assert first.json() == {"offset": middle, "appended": middle, "part": label}, first.text
    assert _put(other, run_id, label, middle, part[middle:]).json()["offset"] == len(part)
    with httpx.Client(base_url=other.url, timeout=60) as client:
        base = f"/api/v1/runs/{PROJECT}/{run_id}"
        assert client.get(f"{base}/log/offset", params={"part": label}).json() == {"offset": len(part), "part": label}
        read = client.get(f"{base}/log", params={"part": label})
        assert read.headers["X-Tracklet-Log-Part"] == label and read.content == part
        assert sorted(client.get(base).json()["run"]["metadata"]["parts"]) == [label]
    keys = ["_step", "_timestamp", "_runtime", "loss", "grad"]
    local = tracklet.Api(root).run(f"{PROJECT}/{run_id}").history(keys=keys[1:])
    assert local["grad"] == [10.0, 11.0, 12.0, 13.0]  # the part's key, as the local reader names it
    remote = tracklet.Api(base_url=other.url).run(f"{PROJECT}/{run_id}").history(keys=keys[1:])
    assert {key: remote[key] for key in keys} == {key: local[key] for key in keys}
    too_long = _put(one, run_id, label + "0", 0, part)
    assert too_long.status_code == 422 and "at most 128 characters" in too_long.text, too_long.text  # the route's check


def test_a_part_that_started_and_arrived_before_the_primary_keeps_the_primarys_start_and_times(tmp_path, two):
    """A part recorded and uploaded before its primary: the run's start (``created_at``) and each
    step's ``_timestamp`` and ``_runtime`` through the other --logs process are the local
    reader's (the primary's start; a step's time the latest of its writers')."""
    import sharedvalues

    (one, other), *_ = two
    sharedvalues.part_first(tmp_path, PROJECT, "part-first", [one.url, other.url])
    sharedvalues.check_times(other.url, tmp_path, PROJECT, "part-first")


WORKER = textwrap.dedent("""
    import sys, tracklet
    run = tracklet.init(project="ddp", id="pool", settings={"dir": sys.argv[1], "primary": False, "label": "w0",
        "console": "off", "system_metrics": False, "capture_environment": False})
    for step in range(50):
        run.log({"eval/acc": step})
    run.finish()
""")

PARENT = textwrap.dedent("""
    import subprocess, sys, tracklet
    root, url, worker = sys.argv[1:4]
    run = tracklet.init(project="ddp", id="pool", settings={
        "dir": root, "mode": "online", "base_url": url, "upload_interval": 0.05, "console": "off",
        "system_metrics": False, "capture_environment": False})
    run.log({"loss": 1.0})
    subprocess.run([sys.executable, "-c", worker, root], check=True)  # a worker that records its part offline
    run.finish()  # the parent's uploader sends the part, whose writer is gone
""")


def test_a_part_whose_writer_is_gone_is_sent_by_the_parent(tmp_path, two):
    """The parent's online uploader sends the run's parts whose writers are gone (a worker that
    wrote its part without uploading it), to a segment server too: the other process reads it."""
    (one, other), *_ = two
    done = subprocess.run([sys.executable, "-c", PARENT, str(tmp_path), one.url, WORKER], env=_env(), capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0 and "failed" not in done.stderr, done.stderr
    local = RunPaths(tmp_path, PROJECT, "pool", "w0").log_file.read_bytes()
    answer = httpx.get(f"{other.url}/api/v1/runs/{PROJECT}/pool/log", params={"part": "w0"}, timeout=30)
    assert answer.content == local
    history = httpx.get(f"{other.url}/api/v1/runs/{PROJECT}/pool/history",
                        params={"keys": "eval/acc", "buckets": 0}, timeout=30).json()
    assert history["series"][0]["steps"] == list(range(50))


def test_artifact_gc_keeps_what_every_writers_segments_name(tmp_path, two):
    """`tracklet admin artifact-gc` of a --logs server reads every run's logs from the segments
    (with --logs): the media a part names, also a part whose primary never arrived, and the media a
    run's own log names are kept; without --logs it refuses rather than take them for unreferenced."""
    import numpy as np

    (one, other), prefix, url, options = two
    root = tmp_path / "node"
    digests = {}
    for run_id, extra in (("media", {}), ("media", {"primary": False, "label": "r1"}),
                          ("lonely", {"primary": False, "label": "r1"})):
        run = tracklet.init(project=PROJECT, id=run_id, reinit="create_new", settings={**QUIET, "dir": str(root), **extra})
        seed = len(digests)
        run.log({"img": tracklet.Image(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8))})
        run.finish()
        recorded = tracklet.Api(root).run(f"{PROJECT}/{run_id}").media("img")
        digests[(run_id, extra.get("label"))] = {item.digest for item in recorded} - set().union(*digests.values())
    for run_id in ("media", "lonely"):
        done = serverproc.cli("sync", "--url", one.url, "-q", f"{PROJECT}/{run_id}", env={"TRACKLET_DIR": str(root)},
                              timeout=180)
        assert done.returncode == 0, done.stderr
    gc = ("admin", "--store", url, "--dir", str(tmp_path / "admin"), "artifact-gc", "--grace", "0",
          "--artifacts", f"s3://{prefix}/artifacts", *options)
    refused = serverproc.cli(*gc, timeout=180)
    assert refused.returncode != 0 and "pass its --logs" in refused.stderr, refused.stderr
    collected = serverproc.cli(*gc, "--logs", f"s3://{prefix}/logs", timeout=180)
    assert collected.returncode == 0, collected.stderr
    late = tmp_path / "late"  # the lonely part's primary arrives after the collection: its run can be read
    tracklet.init(project=PROJECT, id="lonely", reinit="create_new", settings={**QUIET, "dir": str(late)}).finish()
    done = serverproc.cli("sync", "--url", other.url, "-q", f"{PROJECT}/lonely", env={"TRACKLET_DIR": str(late)},
                          timeout=180)
    assert done.returncode == 0, done.stderr
    for (run_id, label), named in digests.items():
        assert named, (run_id, label)
        for digest in named:
            answer = httpx.get(f"{other.url}/api/v1/runs/{PROJECT}/{run_id}/media/{digest}", timeout=30)
            assert answer.status_code == 200, (run_id, label, answer.text)
    assert not list((tmp_path / "admin").glob(".gc-logs-*"))  # each run's scratch copy removed


def test_histograms_and_values_read_every_writers_segments(tmp_path, two):
    """A shared run's histograms, strings and structured values sent to one --logs process are
    read from the segments by the other: its routes and `tracklet.Api` against it show every
    writer's under the names the local reader gives them (the run's copies listed in one query)."""
    import sharedvalues

    (one, other), *_ = two
    sharedvalues.record(tmp_path, PROJECT, "vals")
    done = serverproc.cli("sync", "--url", one.url, "-q", f"{PROJECT}/vals", env={"TRACKLET_DIR": str(tmp_path)},
                          timeout=180)
    assert done.returncode == 0, done.stderr
    sharedvalues.check(other.url, tmp_path, PROJECT, "vals")


def test_a_parts_label_check_is_kept_per_process_and_a_twin_is_still_refused(tmp_path, postgres_url):
    """On a --logs server a part's label check (every run's part heads, a LIKE query PostgreSQL
    can't serve from the key's index under a non-C collation) is asked once per process for a
    part that holds bytes: its offsets and reads after that ask nothing more; a label that differs
    from it only in case is refused by every process each time, and its first upload still checks
    under the run's head row lock (two SegmentCopies on one database: two server processes). The
    read routes list a run's copies by key too."""
    import fsspec
    import sqlalchemy as sa

    from tracklet.server.logs import BadRequest
    from tracklet.server.segments import SegmentCopies

    from pgcluster import create_database, drop_database

    # A database of its own: these copies' segments are local files, which the module's servers
    # (a prune, a collection: every run's segments) would look for in their bucket.
    from tracklet.store import Store

    name = f"seglabels{os.getpid()}"
    store = Store(create_database(postgres_url, name), root=tmp_path / "store")  # the tables the server's build on
    engine = store.engine
    likes: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: likes.append(statement) if " LIKE " in statement else None)
    base = str(tmp_path / "segments")
    first, second = (SegmentCopies(engine, fsspec.filesystem("file"), base, tmp_path / name, heartbeat_lapse=600)
                     for name in ("a", "b"))
    log = _part_log(tmp_path, "cache", "w1")
    assert first.append(PROJECT, "cache", 0, log, part="w1").offset == len(log)  # checked under the run's lock
    likes.clear()
    for _ in range(3):
        assert first.offset(PROJECT, "cache", "w1") == len(log)  # stored by this process: kept
    assert likes == []
    for _ in range(3):
        assert second.offset(PROJECT, "cache", "w1") == len(log)
        second.check_label(PROJECT, "cache", "w1")  # (the log route's check)
    assert len(likes) == 1  # the other process asks once
    for copies in (first, second):
        for _ in range(2):
            with pytest.raises(BadRequest, match="differs only in case"):
                copies.offset(PROJECT, "cache", "W1")
        with pytest.raises(BadRequest, match="differs only in case"):
            copies.append(PROJECT, "cache", 0, _part_log(tmp_path, "cache", "W1"), part="W1")
    # the read routes find a run's copies by key, given the parts the store indexed: no LIKE either
    likes.clear()
    assert second.copy_sizes(RunPaths(tmp_path, PROJECT, "cache"), ["w1", "W1"]) == {"w1": len(log)}
    assert likes == []
    store.close()
    drop_database(postgres_url, name)


class _HeldReads:
    """A file system whose ``cat_file`` on thread ``held`` waits, once it has read, for ``go``."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.held: threading.Thread | None = None
        self.read, self.go = threading.Event(), threading.Event()
        self.lengths: list[int] = []  # of what each cat_file read

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fs, name)

    def cat_file(self, path: str, *args: Any, **kwargs: Any) -> Any:
        data = self.fs.cat_file(path, *args, **kwargs)
        self.lengths.append(len(data))
        if threading.current_thread() is self.held:
            self.read.set()
            assert self.go.wait(60)
        return data


@pytest.fixture(scope="module")
def local_engine(postgres_url, tmp_path_factory):
    """A PostgreSQL database of this module's own for SegmentCopies on local files (the module's
    servers look for every run's segments in their bucket)."""
    from pgcluster import create_database, drop_database
    from tracklet.store import Store

    name = f"segretain{os.getpid()}"
    store = Store(create_database(postgres_url, name), root=tmp_path_factory.mktemp("segretain"))
    yield store.engine
    store.close()
    drop_database(postgres_url, name)


def _local_copies(engine: Any, tmp_path: Path) -> tuple[Any, _HeldReads]:
    import fsspec

    from tracklet.server.segments import SegmentCopies

    fs = _HeldReads(fsspec.filesystem("file"))
    return SegmentCopies(engine, fs, str(tmp_path / "segments"), tmp_path / "root", heartbeat_lapse=600), fs


def test_a_read_of_the_retention_from_before_a_put_doesnt_replace_it(tmp_path, local_engine, monkeypatch):
    """A process that moved a run's retention forward (PUT .../media/retention) answers the new
    retention from then on, even when a read of the object that began before its write (another
    request's, a prune's plan) ends after it: that read's earlier bytes are not kept over the
    write's (before: the process showed the items its own PUT retired for RETENTION_TTL)."""
    from tracklet.server import segments

    monkeypatch.setattr(segments, "RETENTION_TTL", 3600.0)  # what is kept is what is answered
    copies, fs = _local_copies(local_engine, tmp_path)
    assert copies.merge_media_cutoffs(PROJECT, "kept", {"img": 3}, {}) == {"img": 3}
    reader = threading.Thread(target=lambda: copies.media_cutoffs(PROJECT, "kept", fresh=True))
    fs.held = reader
    reader.start()
    assert fs.read.wait(60)  # it has read {"img": 3}
    assert copies.merge_media_cutoffs(PROJECT, "kept", {"img": 5}, {}) == {"img": 5}
    fs.go.set()
    reader.join(60)
    assert copies.media_cutoffs(PROJECT, "kept") == {"img": 5}


def test_a_retention_object_over_the_limit_is_read_no_further_and_none_is_written(tmp_path, local_engine, monkeypatch):
    """A run's retention object in the bucket is input a process reads on every media request:
    one over MAX_RETENTION_BYTES is read only up to it, refused as damaged (the media routes then
    show every item, the PUT answers 400) and left as it is; a PUT whose merged retention would
    pass it is refused, the stored retention unchanged (every process would refuse to read it)."""
    from tracklet.server import segments

    monkeypatch.setattr(segments, "MAX_RETENTION_BYTES", 4096)
    copies, fs = _local_copies(local_engine, tmp_path)
    big = json.dumps({"keys": {f"k{index}": 1 for index in range(2000)}}).encode()
    key = copies.retention_key(PROJECT, "big")
    fs.makedirs(key.rpartition("/")[0], exist_ok=True)
    fs.pipe_file(key, big)
    for _ in range(2):  # read again each time (fresh), and from what is kept
        with pytest.raises(ValueError, match="over 4,096 bytes"):
            copies.media_cutoffs(PROJECT, "big", fresh=True)
        with pytest.raises(ValueError, match="over 4,096 bytes"):
            copies.media_cutoffs(PROJECT, "big")
    assert max(fs.lengths) <= 4097
    with pytest.raises(ValueError, match="over 4,096 bytes"):
        copies.merge_media_cutoffs(PROJECT, "big", {"img": 1}, {})
    assert fs.cat_file(key) == big  # left as it was
    assert copies.merge_media_cutoffs(PROJECT, "grows", {"a": 1}, {}) == {"a": 1}
    with pytest.raises(ValueError, match="would be over 4,096 bytes"):
        copies.merge_media_cutoffs(PROJECT, "grows", {f"k{index}": 1 for index in range(2000)}, {})
    assert copies.media_cutoffs(PROJECT, "grows", fresh=True) == {"a": 1}


def test_media_retention_pruned_through_one_process_holds_in_the_other(tmp_path, two, s3rver):
    """`tracklet media prune --url` on a --logs server: planned from every writer's segments (a
    part's media too), each run's retention written beside its segments, so the other process's
    media routes leave the retired items out as well (after at most segments.RETENTION_TTL); the
    blobs only retired items name are removed from the bucket, not one another run or a table cell
    names; retention only moves forward, also when both processes change it at once; and `admin
    artifact-gc --logs` keeps every blob retention kept."""
    import time

    import numpy as np

    from tracklet.artifacts.remote import UPLOAD_STATE_DIR
    from tracklet.artifacts.storage import artifact_dir
    from tracklet.client.sync import SyncClient

    (one, other), prefix, url, options = two
    root = tmp_path / "node"

    def image(seed: int) -> tracklet.Image:
        return tracklet.Image(np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8))

    # Run ra: its primary and its part r1 log "img" at steps 0-3. Run rb names ra's step 0 image
    # (a media item) and the part's step 1 image (a table cell).
    by_seed: dict[int, str] = {}  # ra's images' digests
    for run_id, extra, seeds in (("ra", {}, [300, 301, 302, 303]), ("ra", {"primary": False, "label": "r1"},
                                                                    [310, 311, 312, 313]), ("rb", {}, [300])):
        run = tracklet.init(project="vis", id=run_id, reinit="create_new", settings={**QUIET, "dir": str(root), **extra})
        for step, seed in enumerate(seeds):
            run.log({"img": image(seed)}, step=step)
        if run_id == "rb":
            run.log({"cells": tracklet.Table(columns=["im"], data=[[image(311)]])}, step=1)
        run.finish()
        if run_id == "ra":
            new = {item.step: item.digest for item in tracklet.Api(root).run("vis/ra").media("img")
                   if item.digest not in by_seed.values()}
            by_seed.update({seeds[step]: value for step, value in new.items()})
    assert len(set(by_seed.values())) == 8
    with SyncClient(one.url, blob_dir=artifact_dir(root), upload_state_dir=root / "cache" / UPLOAD_STATE_DIR) as client:
        client.sync_run(RunPaths(root, "vis", "ra"))
        client.sync_run(RunPaths(root, "vis", "ra", "r1"))
    with SyncClient(other.url, blob_dir=artifact_dir(root), upload_state_dir=root / "cache" / UPLOAD_STATE_DIR) as client:
        client.sync_run(RunPaths(root, "vis", "rb"))
    s3 = s3_filesystem(s3rver)

    def on_s3(seed: int) -> bool:
        value = by_seed[seed]
        return s3.exists(f"{prefix}/artifacts/blobs/sha256/{value[:2]}/{value}")

    def steps(server, run_id: str) -> list[int]:
        answer = httpx.get(f"{server.url}/api/v1/runs/vis/{run_id}/media", params={"key": "img"}, timeout=30)
        assert answer.status_code == 200, answer.text
        return [entry["step"] for entry in answer.json()["media"]]

    assert all(on_s3(seed) for seed in by_seed)
    assert steps(other, "ra") == [0, 0, 1, 1, 2, 2, 3, 3]  # read (and held) by the other process before the prune

    pruned = serverproc.cli("media", "prune", "vis", "--keep-last", "1", "--url", one.url, "--grace", "0",
                            timeout=180)
    assert pruned.returncode == 0, pruned.stderr
    assert "retired 6 media item(s)" in pruned.stdout and "removed 4 stored blob(s)" in pruned.stdout, pruned.stdout
    # asked for page by page (each reads a bounded number of runs), its progress on stderr
    assert "... 2 runs of the project read" in pruned.stderr and "logs searched" in pruned.stderr, pruned.stderr
    assert steps(one, "ra") == [3, 3] and steps(one, "rb") == [0]
    deadline = time.monotonic() + 60  # the other process reads the retention again within RETENTION_TTL
    while steps(other, "ra") != [3, 3]:
        assert time.monotonic() < deadline, steps(other, "ra")
        time.sleep(0.2)
    assert steps(other, "rb") == [0]
    assert {seed: on_s3(seed) for seed in by_seed} == {300: True, 301: False, 302: False, 303: True,
                                                        310: False, 311: True, 312: False, 313: True}
    for seed, status in ((301, 404), (300, 404), (303, 200), (313, 200)):  # retired items aren't served
        answer = httpx.get(f"{other.url}/api/v1/runs/vis/ra/media/{by_seed[seed]}", timeout=30)
        assert answer.status_code == status, (seed, answer.text)
    keys = httpx.get(f"{other.url}/api/v1/projects/vis/media/keys", params={"runs": "ra"}, timeout=30).json()
    assert [(run["first_step"], run["items"]) for run in keys["keys"][0]["runs"]] == [(3, 2)]
    assert s3.exists(f"{prefix}/logs/vis/ra/media-retention.json")  # beside the run's segments
    assert not any((server.root / "projects").exists() for server in (one, other))

    # Forward only, through either process, also when both change one run at once (none is lost).
    moved = httpx.put(f"{other.url}/api/v1/runs/vis/ra/media/retention", json={"keys": {"img": 0}}, timeout=30)
    assert moved.status_code == 200 and moved.json()["keys"] == {"img": 3}, moved.text
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda server=server, key=key: answers.append(httpx.put(
        f"{server.url}/api/v1/runs/vis/ra/media/retention", json={"keys": {key: 1}}, timeout=30)))
        for index in range(4) for server, key in ((one, f"a{index}"), (other, f"b{index}"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer.status_code for answer in answers] == [200] * 8
    final = httpx.put(f"{one.url}/api/v1/runs/vis/ra/media/retention", json={"keys": {}}, timeout=30).json()
    assert final["keys"] == {"img": 3, **{f"{side}{index}": 1 for side in "ab" for index in range(4)}}

    again = httpx.post(f"{other.url}/api/v1/projects/vis/media/prune", json={"keep_last": 1, "grace_seconds": 0},
                       timeout=180)
    assert again.status_code == 200 and (again.json()["runs"], again.json()["blobs_removed"]) == ([], 0), again.text
    collected = serverproc.cli("admin", "--store", url, "--dir", str(tmp_path / "admin"), "artifact-gc", "--grace",
                               "0", "--artifacts", f"s3://{prefix}/artifacts", "--logs", f"s3://{prefix}/logs",
                               *options, timeout=180)
    assert collected.returncode == 0, collected.stderr
    assert {seed: on_s3(seed) for seed in by_seed} == {300: True, 301: False, 302: False, 303: True,
                                                        310: False, 311: True, 312: False, 313: True}
    for run_id, seed in (("ra", 303), ("ra", 313), ("rb", 300)):
        assert httpx.get(f"{other.url}/api/v1/runs/vis/{run_id}/media/{by_seed[seed]}", timeout=30).status_code == 200


def _counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every parse of a retention object's bytes, by where it was read (``parse_cutoffs``)."""
    from tracklet.media import retention

    parses: list[str] = []
    parse = retention.parse_cutoffs

    def counted(data: bytes, where: str) -> dict[str, int]:
        parses.append(where)
        return parse(data, where)

    monkeypatch.setattr(retention, "parse_cutoffs", counted)
    return parses


def test_a_fresh_copy_of_a_runs_retention_is_parsed_once_however_many_requests_ask(tmp_path, local_engine,
                                                                                      monkeypatch):
    """The media routes ask for a run's retention on every request: within RETENTION_TTL the
    process answers the cutoffs it parsed when it read (or wrote) the object, not the bytes parsed
    again (up to MAX_RETENTION_BYTES each time); a fresh read parses the new bytes once."""
    from tracklet.server import segments

    monkeypatch.setattr(segments, "RETENTION_TTL", 3600.0)
    parses = _counting_parses(monkeypatch)
    copies, fs = _local_copies(local_engine, tmp_path)
    run_id = f"parsed-{uuid.uuid4().hex[:8]}"
    assert copies.merge_media_cutoffs(PROJECT, run_id, {"img": 3}, {}) == {"img": 3}
    for _ in range(5):
        assert copies.media_cutoffs(PROJECT, run_id) == {"img": 3}
    assert parses == []  # what this process wrote is kept parsed
    fs.pipe_file(copies.retention_key(PROJECT, run_id), json.dumps({"keys": {"img": 4, "aud": 1}}).encode())
    assert copies.media_cutoffs(PROJECT, run_id, fresh=True) == {"img": 4, "aud": 1}
    for _ in range(5):
        assert copies.media_cutoffs(PROJECT, run_id) == {"img": 4, "aud": 1}
    assert len(parses) == 1
    monkeypatch.setattr(segments, "RETENTION_TTL", 0.0)  # stale: read and parsed again
    assert copies.media_cutoffs(PROJECT, run_id) == {"img": 4, "aud": 1}
    assert len(parses) == 2


def test_a_damaged_retention_object_is_an_error_naming_the_run_parsed_once_and_left_as_it_is(tmp_path, local_engine,
                                                                                              monkeypatch):
    """A retention object that is not JSON (or not a retention) gives a ValueError naming the run
    and the object, every time it is asked, from one parse per copy read; a change to the run's
    retention is refused with it and the object is left as it is (nothing guessed: no item of the
    run is hidden or shown by a guess)."""
    from tracklet.server import segments

    monkeypatch.setattr(segments, "RETENTION_TTL", 3600.0)
    parses = _counting_parses(monkeypatch)
    copies, fs = _local_copies(local_engine, tmp_path)
    for damage, reason in ((b'{"keys": {"img": 3', "can't be read"), (b'{"keys": ["img"]}', "is not a media retention")):
        run_id = f"damaged-{uuid.uuid4().hex[:8]}"
        key = copies.retention_key(PROJECT, run_id)
        fs.makedirs(key.rpartition("/")[0], exist_ok=True)
        fs.pipe_file(key, damage)
        parses.clear()
        for fresh in (True, False, False, False):
            with pytest.raises(ValueError, match=f"run {PROJECT}/{run_id} .*{reason}") as raised:
                copies.media_cutoffs(PROJECT, run_id, fresh=fresh)
            assert key in str(raised.value)
        assert len(parses) == 1
        with pytest.raises(ValueError, match=f"run {PROJECT}/{run_id} .*{reason}"):
            copies.merge_media_cutoffs(PROJECT, run_id, {"img": 5}, {})
        assert fs.cat_file(key) == damage


def test_a_refused_label_and_a_part_without_bytes_cost_no_scan_per_request(tmp_path, local_engine, monkeypatch):
    """A part's label check outside the run's lock (its offset, its reads) lists the run's part
    heads with a LIKE (a scan of the project's heads under a non-C collation): a process asks it
    once for a label that differs only in case from a stored part's (refused for good: heads are
    never removed), once for a part past --max-parts-per-run (a run's parts only grow), and once
    for a part that holds no bytes yet, until this process creates a part (or segments.LABEL_TTL
    passes: another process may create a twin); each first upload is still checked under the
    run's head row lock, and a twin created meanwhile is refused."""
    import sqlalchemy as sa

    from tracklet.server import segments
    from tracklet.server.logs import BadRequest

    monkeypatch.setattr(segments, "LABEL_TTL", 3600.0, raising=False)  # (raising: fails on the counts without it)
    likes: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if " LIKE " in statement:
            likes.append(statement)

    sa.event.listen(local_engine, "before_cursor_execute", listen)
    try:
        copies, _ = _local_copies(local_engine, tmp_path)
        copies.max_parts = 2
        other, _ = _local_copies(local_engine, tmp_path)  # a second process on the same database
        run_id = f"scan-{uuid.uuid4().hex[:8]}"
        log = _part_log(tmp_path, run_id, "w1")
        assert copies.append(PROJECT, run_id, 0, log, part="w1").offset == len(log)
        likes.clear()
        for _ in range(4):  # no bytes yet: asked once
            assert copies.offset(PROJECT, run_id, "e1") == 0
        assert len(likes) == 1
        likes.clear()
        for _ in range(4):  # a twin: refused, asked once
            with pytest.raises(BadRequest, match="differs only in case"):
                copies.offset(PROJECT, run_id, "W1")
            with pytest.raises(BadRequest, match="differs only in case"):
                copies.append(PROJECT, run_id, 0, _part_log(tmp_path, run_id, "W1"), part="W1")
        assert len(likes) == 1
        # the other process creates e1's twin E1; this one still passes e1 (for LABEL_TTL), but its
        # first upload is checked under the run's lock, and refused
        assert other.append(PROJECT, run_id, 0, _part_log(tmp_path, run_id, "E1"), part="E1").offset > 0
        assert copies.offset(PROJECT, run_id, "e1") == 0
        with pytest.raises(BadRequest, match="differs only in case"):
            copies.append(PROJECT, run_id, 0, _part_log(tmp_path, run_id, "e1"), part="e1")
        with pytest.raises(BadRequest, match="differs only in case"):
            copies.offset(PROJECT, run_id, "e1")  # and kept
        # past the limit (w1 and E1 are 2): refused, and asked no more
        third = _part_log(tmp_path, run_id, "w3")
        likes.clear()
        for _ in range(3):
            with pytest.raises(BadRequest, match="max-parts-per-run 2"):
                copies.append(PROJECT, run_id, 0, third, part="w3")
        assert len(likes) == 2  # the first refusal's: the label check and the parts counted
        for _ in range(3):  # its offset: a part without bytes (asked once)
            assert copies.offset(PROJECT, run_id, "w3") == 0
        assert len(likes) == 3
        # a pass without bytes holds until this process creates a part: then asked again
        fresh = f"scan-{uuid.uuid4().hex[:8]}"
        assert copies.offset(PROJECT, fresh, "x1") == 0
        likes.clear()
        assert copies.offset(PROJECT, fresh, "x1") == 0
        assert likes == []
        assert copies.append(PROJECT, fresh, 0, _part_log(tmp_path, fresh, "X1"), part="X1").offset > 0
        with pytest.raises(BadRequest, match="differs only in case"):
            copies.offset(PROJECT, fresh, "x1")
    finally:
        sa.event.remove(local_engine, "before_cursor_execute", listen)


def _primary_log(tmp_path: Path, project: str, run_id: str) -> bytes:
    root = tmp_path / f"rec-{project}-{run_id}"
    run = tracklet.init(project=project, id=run_id, reinit="create_new", settings={**QUIET, "dir": str(root)})
    run.log({"x": 1})
    run.finish()
    return RunPaths(root, project, run_id).log_file.read_bytes()


def test_every_runs_logs_are_read_a_bounded_page_of_heads_at_a_time(tmp_path, local_engine, monkeypatch):
    """`admin artifact-gc --logs` and a paged `media prune --url` walk the runs' logs through
    SegmentCopies.run_logs: the heads are read RUN_LOGS_BATCH per query (a keyset page), so what is
    held is one page and one run's logs whatever the number of runs; each run comes once, with its
    own log first and then its parts' in label order, also when its heads fall in several pages
    (a run whose primary hasn't arrived included), of one project and after a cursor run if asked."""
    import sqlalchemy as sa

    from tracklet.server import segments

    copies, _ = _local_copies(local_engine, tmp_path)
    project = f"pg{uuid.uuid4().hex[:8]}"
    runs = {"a": ["p1", "p2", "p3"], "b": [], "c": ["q1", "q2"], "d": ["z"]}  # c: parts only
    for run_id, labels in runs.items():
        if run_id != "c":
            log = _primary_log(tmp_path, project, run_id)
            copies.append(project, run_id, 0, log)
        for label in labels:
            root = tmp_path / f"rec-{project}-{run_id}-{label}"
            run = tracklet.init(project=project, id=run_id, reinit="create_new",
                                settings={**QUIET, "dir": str(root), "primary": False, "label": label})
            run.log({"x": 1})
            run.finish()
            copies.append(project, run_id, 0, RunPaths(root, project, run_id, label).log_file.read_bytes(), part=label)
    expected = [(run_id, ([] if run_id == "c" else [None]) + labels) for run_id, labels in runs.items()]
    monkeypatch.setattr(segments, "RUN_LOGS_BATCH", 2, raising=False)  # (raising: fails on what is read without it)
    pages: list[tuple[str, int]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if "FROM log_heads" in statement and "split_part" in statement:
            pages.append((statement, len(pages)))

    sa.event.listen(local_engine, "before_cursor_execute", listen)
    try:
        found = [(run.run_id, [log.part for log in logs]) for run, logs in copies.run_logs(project)]
        after = [run.run_id for run, _ in copies.run_logs(project, (project, "b"))]
    finally:
        sa.event.remove(local_engine, "before_cursor_execute", listen)
    assert found == expected
    assert after == ["c", "d"]
    assert pages and all("LIMIT" in statement for statement, _ in pages)
    assert len(pages) >= 5  # 10 heads, 2 a page: each query reads a page


def test_a_prune_on_a_logs_server_is_answered_in_pages_of_a_bounded_number_of_runs(tmp_path, two, s3rver):
    """`POST .../media/prune` on a --logs server reads at most `max_runs` runs' logs per request:
    its answer is a page (retire: the project's runs; seen: every run's logs searched; remove: the
    candidates removed) with the cursor of the next, until it is null; the prune it adds up to is
    an unpaged one's (what is retired, which blobs go). A cursor sent with other options is
    refused. Every page sent again (its answer lost: the same cursor, the first's the same
    `prune_id`), through the other process, is answered as it was, nothing counted or removed
    twice; so is the last, whose state is kept (its digests removed) until it expires, while an
    older cursor is refused. A damaged retention object of a run is then an error naming the run
    for a prune and a PUT, while the media routes keep every item and the server goes on
    answering."""
    import numpy as np

    from tracklet.artifacts.remote import UPLOAD_STATE_DIR
    from tracklet.artifacts.storage import artifact_dir
    from tracklet.client.sync import SyncClient

    (one, other), prefix, url, options = two
    project = f"pages{uuid.uuid4().hex[:6]}"
    root = tmp_path / "node"
    digests: dict[str, list[str]] = {}
    for index, run_id in enumerate(("r1", "r2", "r3")):
        run = tracklet.init(project=project, id=run_id, reinit="create_new", settings={**QUIET, "dir": str(root)})
        for step in range(3):
            pixels = np.random.default_rng(1000 + 10 * index + step).integers(0, 256, (8, 8, 3), dtype=np.uint8)
            run.log({"img": tracklet.Image(pixels)}, step=step)
        run.finish()
        digests[run_id] = [item.digest for item in tracklet.Api(root).run(f"{project}/{run_id}").media("img")]
    with SyncClient(one.url, blob_dir=artifact_dir(root), upload_state_dir=root / "cache" / UPLOAD_STATE_DIR) as client:
        for run_id in digests:
            client.sync_run(RunPaths(root, project, run_id))
    s3 = s3_filesystem(s3rver)

    def stored(digest: str) -> bool:
        return s3.exists(f"{prefix}/artifacts/blobs/sha256/{digest[:2]}/{digest}")

    assert all(stored(digest) for values in digests.values() for digest in values)
    body: dict[str, Any] = {"keep_last": 1, "grace_seconds": 0, "max_runs": 1, "prune_id": uuid.uuid4().hex}
    answers = []
    while len(answers) < 1000:
        answer = httpx.post(f"{other.url if len(answers) % 2 else one.url}/api/v1/projects/{project}/media/prune",
                            json=body, timeout=120)  # either process takes any page
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
        again = httpx.post(f"{one.url if len(answers) % 2 else other.url}/api/v1/projects/{project}/media/prune",
                           json=body, timeout=120)  # its answer lost: the same page asked for again
        assert again.status_code == 200 and again.json() == answers[-1], (again.text, answers[-1])
        if answers[-1]["next_cursor"] is None:
            break
        if len(answers) == 1:  # the same cursor with other options: refused
            refused = httpx.post(f"{one.url}/api/v1/projects/{project}/media/prune",
                                 json={**body, "keep_last": 0, "cursor": answers[0]["next_cursor"]}, timeout=60)
            assert refused.status_code == 400 and "same project and options" in refused.text, refused.text
        body["cursor"] = answers[-1]["next_cursor"]
    phases = [page["phase"] for page in answers]
    assert phases[:3] == ["retire"] * 3 and "seen" in phases and phases[-1] == "remove", phases
    assert phases == sorted(phases, key=["retire", "seen", "remove"].index)
    assert all(len(page["runs"]) <= 1 for page in answers)
    assert [run["run_id"] for page in answers for run in page["runs"]] == ["r1", "r2", "r3"]
    assert all(run["retired"] == 2 and run["kept_from"] == {"img": 2} for page in answers for run in page["runs"])
    assert answers[-1]["blobs_removed"] == 6 and answers[-1]["note"] == "", answers[-1]
    assert {run_id: [stored(digest) for digest in values] for run_id, values in digests.items()} == {
        run_id: [False, False, True] for run_id in digests}
    import base64

    tokens = {json.loads(base64.urlsafe_b64decode(page["next_cursor"]))["token"] for page in answers[:-1]}
    assert tokens == {body["prune_id"]}  # one prune's state, in the database, named by the client
    import sqlalchemy as sa

    from tracklet.server.schema import media_prune_digests, media_prune_states

    engine = sa.create_engine(url)
    with engine.connect() as connection:  # over: its digests removed, its state kept (with its last answer)
        assert connection.execute(sa.select(sa.func.count()).select_from(media_prune_digests)
                                  .where(media_prune_digests.c.token == body["prune_id"])).scalar_one() == 0
        assert connection.execute(sa.select(media_prune_states.c.phase)
                                  .where(media_prune_states.c.token == body["prune_id"])).scalars().all() == [""]
    engine.dispose()
    assert not s3.exists(f"{prefix}/logs/.media-prune")  # (nothing in the bucket)
    replayed = httpx.post(f"{one.url}/api/v1/projects/{project}/media/prune",
                          json={**body, "cursor": answers[-2]["next_cursor"]}, timeout=60)
    assert replayed.status_code == 200 and replayed.json() == answers[-1], replayed.text
    older = httpx.post(f"{one.url}/api/v1/projects/{project}/media/prune",
                       json={**body, "cursor": answers[-3]["next_cursor"]}, timeout=60)
    assert older.status_code == 400 and "over" in older.text, older.text
    first = httpx.post(f"{other.url}/api/v1/projects/{project}/media/prune", json={**body, "cursor": None}, timeout=60)
    assert first.status_code == 400 and "over" in first.text, first.text  # (its prune_id's first page is not the last)

    # A damaged retention object: named, nothing lost, the server goes on.
    key = f"{prefix}/logs/{project}/r2/media-retention.json"
    s3.pipe_file(key, b'{"keys": {"img": ')
    try:
        for server in (one, other):
            pruned = httpx.post(f"{server.url}/api/v1/projects/{project}/media/prune",
                                json={"keep_last": 0, "grace_seconds": 0}, timeout=120)
            assert pruned.status_code == 400 and f"run {project}/r2" in pruned.json()["detail"], pruned.text
            moved = httpx.put(f"{server.url}/api/v1/runs/{project}/r2/media/retention", json={"keys": {"img": 3}},
                              timeout=30)
            assert moved.status_code == 400 and f"run {project}/r2" in moved.json()["detail"], moved.text
            for _ in range(2):  # every item, as logged (no retention guessed)
                listed = httpx.get(f"{server.url}/api/v1/runs/{project}/r2/media", params={"key": "img"}, timeout=30)
                assert listed.status_code == 200 and len(listed.json()["media"]) == 3, listed.text
            assert httpx.get(f"{server.url}/api/v1/health", timeout=30).status_code == 200
        assert s3.cat_file(key) == b'{"keys": {"img": '  # left as it was
    finally:
        s3.rm(key)


def _paged_prune(url: str, project: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page's answer of a prune through the server at ``url`` (each page asserted 200)."""
    answers: list[dict[str, Any]] = []
    body = dict(body)
    while len(answers) < 1000:
        answer = httpx.post(f"{url}/api/v1/projects/{project}/media/prune", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
        if answers[-1]["next_cursor"] is None:
            return answers
        body["cursor"] = answers[-1]["next_cursor"]
    raise AssertionError("a prune of more than 1,000 pages")


def _synced_images(root: Path, url: str, project: str, runs: dict[str, list[int]]) -> dict[str, list[str]]:
    """Runs of ``project`` each logging "img" at steps 0, 1, ... (an image per seed), synced to the
    server at ``url``; each run's digests in step order."""
    import numpy as np

    from tracklet.artifacts.remote import UPLOAD_STATE_DIR
    from tracklet.artifacts.storage import artifact_dir
    from tracklet.client.sync import SyncClient

    digests: dict[str, list[str]] = {}
    for run_id, seeds in runs.items():
        run = tracklet.init(project=project, id=run_id, reinit="create_new", settings={**QUIET, "dir": str(root)})
        for step, seed in enumerate(seeds):
            pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
            run.log({"img": tracklet.Image(pixels)}, step=step)
        run.finish()
        digests[run_id] = [item.digest for item in tracklet.Api(root).run(f"{project}/{run_id}").media("img")]
    with SyncClient(url, blob_dir=artifact_dir(root), upload_state_dir=root / "cache" / UPLOAD_STATE_DIR) as client:
        for run_id in runs:
            client.sync_run(RunPaths(root, project, run_id))
    return digests


def _lossy_proxy(upstream: str, lose: Any) -> tuple[Any, list[Any]]:
    """A real HTTP proxy in front of the server at ``upstream`` that forwards every request and then
    loses the answers ``lose(number, sent body, server's answer)`` names: "drop" (the connection
    closed with no answer) or "502" (a gateway error instead of it); the server did the work
    either way. Returns the proxy (``server_address``; ``shutdown()``) and the bodies sent."""
    import http.server

    sent: list[Any] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name: value for name, value in self.headers.items()
                       if name.lower() not in ("host", "content-length", "connection", "accept-encoding")}
            answer = httpx.request(self.command, upstream + self.path, content=body, headers=headers, timeout=180)
            sent.append(json.loads(body) if body else None)
            how = lose(len(sent), sent[-1], answer)
            if how == "drop":
                self.close_connection = True
                return
            status, content = (502, b"bad gateway") if how == "502" else (answer.status_code, answer.content)
            self.send_response(status)
            self.send_header("Content-Type", answer.headers.get("content-type", "text/plain"))
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy, sent


def test_the_cli_asks_for_a_page_whose_answer_was_lost_again_and_the_prune_goes_on(tmp_path, two, s3rver):
    """`tracklet media prune --url` through a proxy that loses answers after the server did the
    work (the first page's connection closed unanswered, a "seen" page's answer replaced by a
    502, the last page's closed unanswered): the command asks for each again with the same cursor
    (the first with the same prune_id), the server answers each as it did, and the prune ends as
    one that lost nothing: each run's retired items reported once, the blobs only they named
    removed, the kept ones stored."""
    (one, _), prefix, _, _ = two
    project = f"lossy{uuid.uuid4().hex[:6]}"
    digests = _synced_images(tmp_path / "node", one.url, project, {"r1": [2000, 2001, 2002], "r2": [2010, 2011, 2012]})
    lost: list[tuple[int, str]] = []

    def lose(number: int, body: Any, answer: httpx.Response) -> str | None:
        page = answer.json() if answer.status_code == 200 else {}
        how = None
        if number == 1:
            how = "drop"
        elif page.get("phase") == "seen" and not any(kind == "502" for _, kind in lost):
            how = "502"
        elif page.get("next_cursor", "") is None and not any(kind == "drop" and n > 1 for n, kind in lost):
            how = "drop"
        if how:
            lost.append((number, how))
        return how

    proxy, sent = _lossy_proxy(one.url, lose)
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        pruned = serverproc.cli("media", "prune", project, "--keep-last", "1", "--url", url, "--grace", "0",
                                timeout=300)
    finally:
        proxy.shutdown()
    assert pruned.returncode == 0, pruned.stderr
    assert [kind for _, kind in lost] == ["drop", "502", "drop"], (lost, sent)
    for number, _ in lost:  # each lost page asked for again as it was
        assert sent[number] == sent[number - 1], (number, sent)
    assert sent[0]["prune_id"] and "cursor" not in sent[0]
    retired = [line for line in pruned.stdout.splitlines() if line.startswith("retired")]
    assert [line.split(" of ")[1].split(" ")[0] for line in retired] == [f"{project}/r1", f"{project}/r2"], pruned.stdout
    assert all(line.startswith("retired 2 media item(s)") for line in retired), pruned.stdout
    assert "removed 4 stored blob(s)" in pruned.stdout, pruned.stdout
    s3 = s3_filesystem(s3rver)
    assert {run_id: [s3.exists(f"{prefix}/artifacts/blobs/sha256/{digest[:2]}/{digest}") for digest in values]
            for run_id, values in digests.items()} == {"r1": [False, False, True], "r2": [False, False, True]}


def test_a_blob_a_run_created_during_a_paged_prune_names_is_kept_whatever_the_grace(tmp_path, two, s3rver):
    """A run created while a paged prune goes on, after its "seen" phase read every run's logs
    (so behind its cursor: the prune never reads it), naming a blob only retired items named
    before: its upload asked about the blob (or sent it) after the prune began, and a grant used
    after the prune's start is never dropped by it (the state records the start), so the blob
    stays with a grace period of 0; the other retired blobs go."""
    import base64

    (one, other), prefix, _, _ = two
    project = f"late{uuid.uuid4().hex[:6]}"
    root = tmp_path / "node"
    digests = _synced_images(root, one.url, project, {"r1": [3000, 3001, 3002], "r2": [3010, 3011, 3012]})
    s3 = s3_filesystem(s3rver)

    def stored(digest: str) -> bool:
        return s3.exists(f"{prefix}/artifacts/blobs/sha256/{digest[:2]}/{digest}")

    body: dict[str, Any] = {"keep_last": 1, "grace_seconds": 0, "max_runs": 1}
    answers: list[dict[str, Any]] = []
    late: dict[str, list[str]] = {}
    while len(answers) < 1000:
        answer = httpx.post(f"{one.url}/api/v1/projects/{project}/media/prune", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
        if answers[-1]["next_cursor"] is None:
            break
        body["cursor"] = answers[-1]["next_cursor"]
        if not late and json.loads(base64.urlsafe_b64decode(body["cursor"]))["phase"] == "remove":
            late = _synced_images(root, other.url, project, {"r0": [3000]})  # r1's step 0 image again
    assert late["r0"] == digests["r1"][:1]
    assert answers[-1]["blobs_removed"] == 3 and answers[-1]["note"] == "", answers[-1]
    assert stored(late["r0"][0]) and [stored(digest) for digest in digests["r1"][1:] + digests["r2"]] == [
        False, True, False, False, True]
    served = httpx.get(f"{other.url}/api/v1/runs/{project}/r0/media/{late['r0'][0]}", timeout=30)
    assert served.status_code == 200, served.text


def test_every_page_of_the_runs_logs_is_read_from_an_index_in_its_order(tmp_path, local_engine, postgres_url):
    """Each keyset page of SegmentCopies.run_logs (every run, one project's, after a cursor run)
    is read from ix_log_heads_run_order (server migration s0025: project, the run id before any
    `/`, key), its keyset condition an index condition: no query sorts the heads (before, every
    page's sorted all of them: a walk of 100,000 runs grew with heads x pages). In a database of
    the C collation and in one of a linguistic (ICU) collation, as a deployment's may be: the
    index takes the columns' collation, as the query's order and comparison do. Seq scans and
    sorts priced out, as a planner does at many heads: without the index the plan still sorts."""
    import sqlalchemy as sa
    from pgcluster import drop_database

    from tracklet.server import segments
    from tracklet.store import Store

    name = f"segicu{os.getpid()}"
    admin = sa.create_engine(f"{postgres_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        connection.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' "
                                   "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"))
    admin.dispose()
    icu = Store(f"{postgres_url}/{name}", root=tmp_path / "icu")
    try:
        with icu.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT datlocprovider FROM pg_database WHERE datname = :name"),
                                      {"name": name}).scalar_one() == "i"
        for engine in (local_engine, icu.engine):
            _check_run_logs_plans(tmp_path / engine.url.database, engine, segments)
    finally:
        icu.close()
        drop_database(postgres_url, name)


def _check_run_logs_plans(tmp_path: Path, engine: Any, segments: Any) -> None:
    import sqlalchemy as sa

    copies, _ = _local_copies(engine, tmp_path)
    project = f"ix{uuid.uuid4().hex[:8]}"
    for run_id in ("a", "B", "c"):
        copies.append(project, run_id, 0, _primary_log(tmp_path, project, run_id))
        copies.append(project, run_id, 0, _part_log(tmp_path, run_id, "w1"), part="w1")
    statements: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if "FROM log_heads" in statement and "split_part" in statement:
            statements.append((statement, parameters))

    original = segments.RUN_LOGS_BATCH
    segments.RUN_LOGS_BATCH = 1
    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        found = [(run.run_id, [log.part for log in logs]) for run, logs in copies.run_logs(project)]
        after = [run.run_id for run, _ in copies.run_logs(project, (project, found[0][0]))]
        list(copies.run_logs())
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)
        segments.RUN_LOGS_BATCH = original
    assert sorted(found) == [(run_id, [None, "w1"]) for run_id in ("B", "a", "c")]
    assert after == [run_id for run_id, _ in found[1:]]
    assert any(") > (" in statement and project in str(parameters) for statement, parameters in statements)
    with engine.connect() as connection:
        connection.exec_driver_sql("SET enable_seqscan = off")
        connection.exec_driver_sql("SET enable_sort = off")
        connection.exec_driver_sql("SET enable_bitmapscan = off")
        for statement, parameters in statements:
            plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
            assert "ix_log_heads_run_order" in plan and "Sort" not in plan, (engine.url.database, statement, plan)
            if ") > (" in statement:  # the keyset condition reads from where the page starts
                assert "Index Cond: ((ROW(" in plan or "Index Cond: (ROW(" in plan, plan


def test_an_abandoned_paged_prune_expires_and_its_cursor_is_refused(tmp_path, local_engine):
    """A paged prune's state is rows in the database (media_prune_states, one per digest in
    media_prune_digests), not an object rewritten whole each page; one no page touched for
    PRUNE_STATE_TTL (a client that stopped midway) is removed by the next prune, its cursor then
    refused as expired, while a prune under way is kept. A page asked for again with its cursor (a
    retry: its answer lost) is answered as it was, its counts never added twice, also when the
    retry runs while the first request does (one answer for both); a finished prune's state is kept (so its last page's retry is answered too) until it expires."""
    import sqlalchemy as sa

    from tracklet.errors import BadRequest
    from tracklet.server import media_retention
    from tracklet.server.schema import media_prune_states

    copies, _ = _local_copies(local_engine, tmp_path)
    projects = [f"ab{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for project in projects:
        for run_id in ("r1", "r2", "r3"):
            copies.append(project, run_id, 0, _primary_log(tmp_path, project, run_id))
    options: dict[str, Any] = {"keep_last": 1, "max_bytes": None, "keys": None, "dry_run": True, "keep_blobs": False,
                               "max_runs": 1}

    def page(project: str, cursor: str | None = None) -> Any:
        return media_retention.prune_page(copies, tmp_path / "scratch", None, None, project, cursor=cursor,  # type: ignore[arg-type]
                                          **options)

    def tokens() -> set[str]:
        with local_engine.connect() as connection:
            return set(connection.execute(sa.select(media_prune_states.c.token)).scalars())

    before = tokens()
    left = page(projects[0])  # stopped after its first page
    assert left.next is not None and left.phase == "retire"
    abandoned = tokens() - before
    assert len(abandoned) == 1
    second = page(projects[0], left.next)
    replayed = page(projects[0], left.next)  # (a retry of the second page's cursor)
    assert (replayed.next, replayed.phase, replayed.done, replayed.runs) == (second.next, "retire", 2, [])
    with local_engine.begin() as connection:
        connection.execute(media_prune_states.update().where(media_prune_states.c.token.in_(abandoned))
                           .values(updated_at=media_prune_states.c.updated_at - media_retention.PRUNE_STATE_TTL - 1))
    under_way = page(projects[1])
    assert under_way.next is not None
    assert not abandoned & tokens()  # removed by the next prune
    with pytest.raises(BadRequest, match="expired"):
        page(projects[0], second.next)
    barrier = threading.Barrier(2)
    both: list[Any] = []

    def retried() -> None:  # a retry sent while the first request is still running: one answer for both
        barrier.wait()
        both.append(page(projects[1], under_way.next))

    threads = [threading.Thread(target=retried) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(both) == 2 and len({(answer.next, answer.done) for answer in both}) == 1, both
    answers = [under_way, both[0]]
    while answers[-1].next is not None:  # the prune under way goes on to its end
        answers.append(page(projects[1], answers[-1].next))
    assert [answer.done for answer in answers] == [1, 2, 3]  # (dry run: nothing searched or removed)
    finished = tokens() - (before - abandoned)  # over: kept (with its last answer) until it expires
    assert len(finished) == 1
    with local_engine.connect() as connection:
        assert connection.execute(sa.select(media_prune_states.c.phase)
                                  .where(media_prune_states.c.token.in_(finished))).scalars().all() == [""]
    last = page(projects[1], answers[-2].next)  # (a retry of the last page: answered as it was)
    assert (last.next, last.phase, last.done) == (None, "retire", 3)


def test_a_retry_of_a_prune_page_while_the_first_runs_waits_and_loses_no_retired_blob(tmp_path, local_engine,
                                                                                       monkeypatch):
    """Two requests of one page at once (the client's retry of a page whose answer was slow to come,
    the same `prune_id`): a page moves a run's retention forward as it goes, before its answer's
    transaction, so the second doing the page at once found the run retired already, counted none
    of its blobs, and, its answer written first, was the answer of both: the run's retired blobs
    were never candidates (and no later prune retires them again). The second now waits for the
    first and is answered its answer: the run retired, its blobs counted, once."""
    import time

    import numpy as np
    import sqlalchemy as sa

    from tracklet.server import media_retention
    from tracklet.server.schema import media_prune_digests

    copies, _ = _local_copies(local_engine, tmp_path)
    project = f"rt{uuid.uuid4().hex[:8]}"
    root = tmp_path / "rec"
    run = tracklet.init(project=project, id="r1", reinit="create_new", settings={**QUIET, "dir": str(root)})
    for step in range(3):
        run.log({"img": tracklet.Image(np.random.default_rng(step).integers(0, 256, (8, 8, 3), dtype=np.uint8))},
                step=step)
    run.finish()
    copies.append(project, "r1", 0, RunPaths(root, project, "r1").log_file.read_bytes())
    prune_id = uuid.uuid4().hex
    merged = threading.Event()
    merge = copies.merge_media_cutoffs

    def merging(*args: Any, **kwargs: Any) -> Any:
        done = merge(*args, **kwargs)
        merged.set()
        return done

    monkeypatch.setattr(copies, "merge_media_cutoffs", merging)
    answered: list[str] = []
    answer = media_retention._PruneState._answer

    def answering(self: Any, text: str) -> bool:
        if threading.current_thread().name == "first":  # the second answers first, if it can go on meanwhile
            deadline = time.monotonic() + 120
            while not answered and time.monotonic() < deadline and not _waiting_on_a_lock(local_engine):
                time.sleep(0.02)
        written = answer(self, text)
        answered.append(threading.current_thread().name)
        return written

    monkeypatch.setattr(media_retention._PruneState, "_answer", answering)
    answers: dict[str, Any] = {}

    def page(name: str) -> None:
        if name == "second":
            assert merged.wait(120)
        answers[name] = media_retention.prune_page(
            copies, tmp_path / "scratch", None, None, project, keep_last=1, max_bytes=None, keys=None,  # type: ignore[arg-type]
            dry_run=False, keep_blobs=False, grace=0, max_runs=1, prune_id=prune_id)

    workers = [threading.Thread(target=page, args=(name,), name=name) for name in ("first", "second")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    assert set(answers) == {"first", "second"}
    for name, got in answers.items():
        assert [(item.run_id, item.newly_retired) for item in got.runs] == [("r1", 2)], (name, got.runs)
    with local_engine.connect() as connection:
        counted = connection.execute(sa.select(sa.func.count()).select_from(media_prune_digests)
                                     .where(media_prune_digests.c.token == prune_id)).scalar_one()
    assert counted == 2  # the two retired images' blobs, each once


def _waiting_on_a_lock(engine: Any) -> bool:
    """Whether a session of ``engine``'s database waits for a lock (another request's)."""
    import sqlalchemy as sa

    with engine.connect() as connection:
        return bool(connection.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )).scalar_one())


def test_a_paged_prune_leaves_nothing_behind_a_later_prune_does_not_remove(tmp_path, two, s3rver):
    """Every prune counts every retired item again (those of earlier prunes too), so what a paged
    prune left is removed by the next once the reason is gone: the blobs of the runs retired
    before a damaged retention object stopped it (400 naming the run), by the next prune once the
    object is fixed; those kept because the sync used their grants within --grace, by a later
    prune with grace 0, a blob an earlier prune's retired item shares with a then kept item
    included. (A prune that counted only what it retires itself would leak each of them.)"""
    (one, other), prefix, url, options = two
    project = f"again{uuid.uuid4().hex[:6]}"
    same = 5000  # r1's steps 0 and 2: one blob
    digests = _synced_images(tmp_path / "node", one.url, project, {"r1": [same, 5001, same, 5003],
                                                                   "r2": [5010, 5011, 5012, 5013],
                                                                   "r3": [5020, 5021, 5022, 5023]})
    s3 = s3_filesystem(s3rver)

    def stored(run_id: str) -> list[bool]:
        return [s3.exists(f"{prefix}/artifacts/blobs/sha256/{digest[:2]}/{digest}") for digest in digests[run_id]]

    def retention(run_id: str) -> dict[str, Any]:
        return json.loads(s3.cat_file(f"{prefix}/logs/{project}/{run_id}/media-retention.json"))

    # Stopped part way: r1 and r2 retired (their pages answered), then r3's damaged retention object: 400.
    damaged = f"{prefix}/logs/{project}/r3/media-retention.json"
    s3.pipe_file(damaged, b'{"keys": ')
    body: dict[str, Any] = {"keep_last": 2, "grace_seconds": 0, "max_runs": 1}
    answers = []
    while len(answers) < 100:
        answer = httpx.post(f"{one.url}/api/v1/projects/{project}/media/prune", json=body, timeout=120)
        if answer.status_code != 200:
            break
        answers.append(answer.json())
        body["cursor"] = answers[-1]["next_cursor"]
    assert answer.status_code == 400 and f"run {project}/r3" in answer.text, answer.text
    assert [run["run_id"] for page in answers for run in page["runs"]] == ["r1", "r2"]
    assert retention("r1")["keys"] == retention("r2")["keys"] == {"img": 2}
    assert all(stored(run_id) == [True] * 4 for run_id in digests)  # r1's and r2's retired, their blobs left
    s3.rm(damaged)  # fixed

    # The next prune retires r3 only, and removes r1's and r2's retired blobs with r3's.
    fixed = _paged_prune(other.url, project, {"keep_last": 2, "grace_seconds": 0, "max_runs": 1})
    assert [run["run_id"] for page in fixed for run in page["runs"]] == ["r3"]
    assert fixed[-1]["blobs_removed"] == 5, fixed[-1]
    assert stored("r1") == [True, False, True, True]  # step 0's blob is step 2's (kept)
    assert stored("r2") == stored("r3") == [False, False, True, True]

    # Kept within --grace (the sync just used every grant): step 2 retired, no blob removed.
    recent = _paged_prune(one.url, project, {"keep_last": 1, "grace_seconds": 3600})
    assert [run["run_id"] for page in recent for run in page["runs"]] == ["r1", "r2", "r3"]
    assert recent[-1]["blobs_removed"] == 0, recent[-1]
    assert stored("r1") == [True, False, True, True] and stored("r2") == stored("r3") == [False, False, True, True]
    assert all(retention(run_id)["keys"] == {"img": 3} for run_id in digests)

    # A later prune with grace 0, nothing new to retire, removes them: r1's step 2 blob, which the
    # first prune's step 0 names too, with them.
    later = _paged_prune(other.url, project, {"keep_last": 1, "grace_seconds": 0})
    assert all(page["runs"] == [] for page in later), later
    assert later[-1]["blobs_removed"] == 3, later[-1]
    assert all(stored(run_id) == [False, False, False, True] for run_id in digests)
    nothing = _paged_prune(one.url, project, {"keep_last": 1, "grace_seconds": 0})
    assert nothing[-1]["blobs_removed"] == 0 and all(page["runs"] == [] for page in nothing), nothing
    for run_id in digests:  # the kept items read back, their blobs kept
        listed = httpx.get(f"{one.url}/api/v1/runs/{project}/{run_id}/media", params={"key": "img"}, timeout=30)
        assert listed.status_code == 200 and [item["step"] for item in listed.json()["media"]] == [3], listed.text
        assert stored(run_id)[3]
