"""``server/copy_watch.py``: whether a run's copies on local disk changed since a listing, told by
the kernel (inotify) rather than a ``stat`` per copy per request. Every kind of change a log copy
sees (a write, a truncation, a rename over it, a new part, the parts' directory made later, the
run's directory replaced) is reported by the next ``unchanged``; an overflowed queue reports every
run; a filesystem the kernel can't see every write to (NFS, FUSE) is never watched."""

from __future__ import annotations

import os

import pytest

from tracklet.server import copy_watch as module


@pytest.fixture
def watch():
    made = module.CopyWatch()
    if made._fd < 0:
        pytest.skip("no inotify here")
    yield made
    made.close()


def _run(tmp_path, parts: bool = True):
    run_dir = tmp_path / "projects" / "p" / "runs" / "r"
    (run_dir / "parts" if parts else run_dir).mkdir(parents=True)
    (run_dir / "run.tlog").write_bytes(b"TLOG")
    if parts:
        (run_dir / "parts" / "a.tlog").write_bytes(b"TLOG")
    return run_dir


def test_every_change_to_a_runs_copies_is_reported_once_after_the_listing(watch, tmp_path):
    run_dir = _run(tmp_path)
    if not watch._local(run_dir):
        pytest.skip("this filesystem isn't one the kernel sees every write to")
    changes = [
        lambda: open(run_dir / "parts" / "a.tlog", "ab").write(b"x"),  # a part grows
        lambda: open(run_dir / "run.tlog", "ab").write(b"x"),  # the run's own log grows
        lambda: os.truncate(run_dir / "parts" / "a.tlog", 4),  # one shrinks
        lambda: (run_dir / "parts" / "b.tlog").write_bytes(b"TLOG"),  # a new part
        lambda: ((run_dir / "new").write_bytes(b"TLOG"), os.replace(run_dir / "new", run_dir / "parts" / "a.tlog")),
        lambda: (run_dir / "parts" / "b.tlog").unlink(),  # a part goes
    ]
    for change in changes:
        token = watch.since(run_dir)
        assert token is not None and watch.unchanged(run_dir, token) and watch.unchanged(run_dir, token)
        change()
        assert not watch.unchanged(run_dir, token)


def test_a_parts_directory_made_later_is_watched_once_the_run_changed(watch, tmp_path):
    run_dir = _run(tmp_path, parts=False)
    if not watch._local(run_dir):
        pytest.skip("this filesystem isn't one the kernel sees every write to")
    token = watch.since(run_dir)
    (run_dir / "parts").mkdir()
    assert not watch.unchanged(run_dir, token)
    token = watch.since(run_dir)  # (the listing made again: now its parts/ is watched too)
    (run_dir / "parts" / "a.tlog").write_bytes(b"TLOG")
    assert not watch.unchanged(run_dir, token)
    token = watch.since(run_dir)
    with open(run_dir / "parts" / "a.tlog", "ab") as handle:
        handle.write(b"x")
    assert not watch.unchanged(run_dir, token)


def test_an_overflow_and_a_dropped_watch_each_report_a_change(watch, tmp_path, monkeypatch):
    """(A replaced run directory: ``test_a_run_directory_or_parts_replaced_by_a_rename_is_watched_afresh``.)"""
    run_dir = _run(tmp_path)
    if not watch._local(run_dir):
        pytest.skip("this filesystem isn't one the kernel sees every write to")
    token = watch.since(run_dir)
    assert watch.unchanged(run_dir, token)
    overflow = module._EVENT.pack(-1, module._IN_Q_OVERFLOW, 0, 0)
    reads = iter([overflow])
    real_read = os.read

    def read(fd, size):
        if fd == watch._fd:
            try:
                return next(reads)
            except StopIteration:
                pass
        return real_read(fd, size)

    monkeypatch.setattr(module.os, "read", read)
    assert not watch.unchanged(run_dir, token)  # an overflow: every run changed
    monkeypatch.undo()
    token = watch.since(run_dir)
    monkeypatch.setattr(module, "MAX_RUNS", 1)
    other = tmp_path / "projects" / "p" / "runs" / "other"
    other.mkdir()
    watch.since(other)  # past MAX_RUNS: the least recently asked for is no longer watched
    assert not watch.unchanged(run_dir, token)


def test_a_filesystem_the_kernel_cant_see_every_write_to_is_never_watched(watch, tmp_path, monkeypatch):
    assert module._filesystem("/proc") in ("proc", "")  # (read from /proc/self/mountinfo)
    run_dir = _run(tmp_path)
    monkeypatch.setattr(module, "_filesystem", lambda path: "nfs4")
    assert watch.since(run_dir) is None and not watch.unchanged(run_dir, None)


def test_a_forked_child_makes_a_watch_of_its_own(tmp_path):
    """Two processes reading one inotify queue would each miss what the other read: a child forked
    after the process's watch was made (in a fresh interpreter, never pytest's) gets a new one,
    and the parent's still reports a change the child made."""
    import subprocess
    import sys

    script = f"""
import os, sys
from pathlib import Path
from tracklet.server import copy_watch
run_dir = Path({str(tmp_path)!r}) / "projects" / "p" / "runs" / "r"
(run_dir / "parts").mkdir(parents=True)
(run_dir / "run.tlog").write_bytes(b"TLOG")
watch = copy_watch.copy_watch()
if watch._fd < 0 or not watch._local(run_dir):
    print("skip"); sys.exit(0)
token = watch.since(run_dir)
pid = os.fork()
if pid == 0:
    child = copy_watch.copy_watch()
    ok = child is not watch and child.since(run_dir) is not None
    open(run_dir / "run.tlog", "ab").write(b"x")
    child.unchanged(run_dir, None)  # (reads its own queue, not the parent's)
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
assert status == 0, status
assert not watch.unchanged(run_dir, token)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "skip":
        pytest.skip("no inotify here")
    assert done.stdout.strip() == "ok"


def test_a_run_directory_or_parts_replaced_by_a_rename_is_watched_afresh(watch, tmp_path):
    """A rename puts another directory at the run's path (or its ``parts/``'s): the watch on the
    directory moved away says nothing of the new one, so the next listing watches the new one and
    a write there is reported (it was not: the moved directory stayed watched)."""
    run_dir = _run(tmp_path)
    if not watch._local(run_dir):
        pytest.skip("this filesystem isn't one the kernel sees every write to")
    token = watch.since(run_dir)
    os.rename(run_dir, tmp_path / "moved")
    _run(tmp_path)
    assert not watch.unchanged(run_dir, token)
    token = watch.since(run_dir)
    assert watch.unchanged(run_dir, token)
    with open(run_dir / "run.tlog", "ab") as handle:
        handle.write(b"x")
    assert not watch.unchanged(run_dir, token)
    token = watch.since(run_dir)
    os.rename(run_dir / "parts", run_dir / "parts.old")
    (run_dir / "parts").mkdir()
    (run_dir / "parts" / "a.tlog").write_bytes(b"TLOG")
    assert not watch.unchanged(run_dir, token)
    token = watch.since(run_dir)
    assert watch.unchanged(run_dir, token)
    with open(run_dir / "parts" / "a.tlog", "ab") as handle:
        handle.write(b"x")
    assert not watch.unchanged(run_dir, token)


def test_one_run_directory_reached_by_two_names_reports_a_change_under_each(watch, tmp_path):
    """Both names get the kernel's one watch (one wd): an event moves on the runs under both
    names, and neither name's run dropped (here: past MAX_RUNS) unwatches the other's."""
    run_dir = _run(tmp_path)
    if not watch._local(run_dir):
        pytest.skip("this filesystem isn't one the kernel sees every write to")
    alias = tmp_path / "projects" / "p" / "runs" / "alias"
    alias.symlink_to(run_dir)
    first = watch.since(run_dir)
    second = watch.since(alias)
    first = watch.since(run_dir)  # (a listing under the first name made again)
    assert watch.unchanged(run_dir, first) and watch.unchanged(alias, second)
    with open(run_dir / "parts" / "a.tlog", "ab") as handle:
        handle.write(b"x")
    assert not watch.unchanged(run_dir, first) and not watch.unchanged(alias, second)
    first, second = watch.since(run_dir), watch.since(alias)
    watch._drop(str(alias))  # (as MAX_RUNS drops the least recently asked for)
    with open(run_dir / "run.tlog", "ab") as handle:
        handle.write(b"x")
    assert not watch.unchanged(run_dir, first)


def test_a_watch_lost_in_an_overflowed_queue_is_made_again(watch, tmp_path, monkeypatch):
    """The queue overflowed while the run's ``parts/`` was replaced (its IN_IGNORED lost with the
    rest): the next listing watches the new ``parts/``, so a write there is reported."""
    run_dir = _run(tmp_path)
    if not watch._local(run_dir):
        pytest.skip("this filesystem isn't one the kernel sees every write to")
    token = watch.since(run_dir)
    (run_dir / "parts" / "a.tlog").unlink()
    (run_dir / "parts").rmdir()
    (run_dir / "parts").mkdir()
    (run_dir / "parts" / "a.tlog").write_bytes(b"TLOG")
    real_read = os.read
    overflowed = []

    def read(fd, size):
        if fd == watch._fd and not overflowed:
            while True:  # (what the kernel queued is lost: an overflow instead)
                try:
                    real_read(fd, size)
                except BlockingIOError:
                    break
            overflowed.append(True)
            return module._EVENT.pack(-1, module._IN_Q_OVERFLOW, 0, 0)
        return real_read(fd, size)

    monkeypatch.setattr(module.os, "read", read)
    assert not watch.unchanged(run_dir, token)
    monkeypatch.undo()
    token = watch.since(run_dir)
    with open(run_dir / "parts" / "a.tlog", "ab") as handle:
        handle.write(b"x")
    assert not watch.unchanged(run_dir, token)


def test_a_mount_point_the_kernel_escapes_is_found_in_mountinfo(tmp_path):
    """``/proc/self/mountinfo`` writes a space, tab, newline or backslash in a mount point as an
    octal escape (``\\134`` for a backslash): a filesystem mounted at such a path is found as the
    one its runs are on (before only ``\\040`` was read, so the mount above it was taken: an NFS
    mount there would have been watched as the local disk above it). In a mount namespace of its
    own (``unshare``, a fresh interpreter), a ramfs mounted at a path with a backslash and a space."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("no unshare here")
    where = tmp_path / "odd\\name here"
    (where / "projects" / "p" / "runs").mkdir(parents=True)
    script = f"""
import subprocess, sys
from tracklet.server.copy_watch import _filesystem
where = {str(where)!r}
subprocess.run(["mount", "-t", "ramfs", "none", where], check=True)
subprocess.run(["mkdir", "-p", where + "/projects/p/runs"], check=True)
print(_filesystem(where + "/projects/p/runs"), _filesystem({str(tmp_path)!r}))
"""
    done = subprocess.run(["unshare", "-rm", sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    if done.returncode != 0 and ("Operation not permitted" in done.stderr or "unshare failed" in done.stderr):
        pytest.skip(f"no mount namespace here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    inner, outer = done.stdout.split()
    if outer == "ramfs":
        pytest.skip("the temporary directory is a ramfs already")
    assert inner == "ramfs"


def test_a_run_directory_linked_to_another_filesystem_is_watched_as_that_one(tmp_path):
    """A run's directory (or its ``parts/``) may be a link to, or a mount of, another filesystem
    than its project's runs directory (a big run moved to other storage): it is watched only if
    that filesystem is one the kernel sees every write to (before, only the runs directory's was
    asked: an NFS run directory linked from local disk was watched, and a write from another
    machine never reported). In a mount namespace of its own (``unshare``, a fresh interpreter):
    a ramfs, taken out of ``LOCAL_FILESYSTEMS`` to stand for NFS, under a run linked there."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("no unshare here")
    script = f"""
import os, subprocess
from pathlib import Path
from tracklet.server import copy_watch
tmp = Path({str(tmp_path)!r})
runs = tmp / "projects" / "p" / "runs"
(runs / "here" / "parts").mkdir(parents=True)
(tmp / "remote").mkdir()
subprocess.run(["mount", "-t", "ramfs", "none", str(tmp / "remote")], check=True)
(tmp / "remote" / "away" / "parts").mkdir(parents=True)
(runs / "away").symlink_to(tmp / "remote" / "away")
(runs / "here" / "parts").rmdir()
(tmp / "remote" / "parts").mkdir()
(runs / "here" / "parts").symlink_to(tmp / "remote" / "parts")
(runs / "plain" / "parts").mkdir(parents=True)
copy_watch.LOCAL_FILESYSTEMS = copy_watch.LOCAL_FILESYSTEMS - {{"ramfs"}}
watch = copy_watch.CopyWatch()
if watch._fd < 0 or copy_watch._filesystem(str(runs)) not in copy_watch.LOCAL_FILESYSTEMS:
    print("skip")
else:
    print(watch.since(runs / "plain") is not None, watch.since(runs / "away") is None, watch.since(runs / "here") is None)
"""
    done = subprocess.run(["unshare", "-rm", sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    if done.returncode != 0 and ("Operation not permitted" in done.stderr or "unshare failed" in done.stderr):
        pytest.skip(f"no mount namespace here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "skip":
        pytest.skip("no inotify here, or the temporary directory's filesystem isn't local")
    assert done.stdout.split() == ["True", "True", "True"]


def test_a_run_asked_for_while_unchanged_keeps_its_watch_over_runs_asked_for_before(watch, tmp_path, monkeypatch):
    """Past ``MAX_RUNS`` the run asked for least recently loses its watch (its next request lists
    it again): a run whose requests find it unchanged is asked for too, so it is not the one to go
    (the most-read runs were listed again on every request once more runs than that were read)."""
    monkeypatch.setattr(module, "MAX_RUNS", 2)
    runs = tmp_path / "projects" / "p" / "runs"
    busy, idle, newest = (runs / name for name in ("busy", "idle", "newest"))
    for run_dir in (busy, idle, newest):
        (run_dir / "parts").mkdir(parents=True)
    token = watch.since(busy)
    idle_token = watch.since(idle)
    assert watch.unchanged(busy, token)  # busy is asked for again (unchanged) after idle was watched
    watch.since(newest)  # a third run: the least recently asked for (idle) loses its watch
    assert watch.unchanged(busy, token)
    assert not watch.unchanged(idle, idle_token)
