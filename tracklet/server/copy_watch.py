"""Whether a run's log copies on local disk may have changed since a request last ``stat``ed them,
told by the kernel (Linux ``inotify``) instead of a ``stat`` per copy per request.

The server's log-reading routes (tables, histograms, values: ``log_fold.LogFolds.get_run``) list
a run's copies, its own log and each part's (up to 2,048), with each one's size and identity, on
every request: a part's log can grow between two requests and, on a plain server, only its
``stat`` said so (a directory's mtime doesn't move when a file in it grows). Here a watch on the
run's directory and its ``parts/`` sees every write, truncation, rename, creation and removal
there, by any process on this machine, as the kernel makes it (the event is queued before the
``write`` returns): while none came since a request's listing, the next request reuses it. The
order makes it sound: the events so far are read, the run marked unchanged, then the copies
listed, so a change the listing missed is an event the next request reads.

Only where the kernel sees every write: Linux, on a data root whose filesystem is local
(``LOCAL_FILESYSTEMS``: ext4, xfs, btrfs, tmpfs, overlay, ...); on NFS, SMB or FUSE another
machine's writes raise no event, so those roots are ``stat``ed per request as before, as is a run
whose directory or ``parts/`` is on such a filesystem (a link to, or a mount of, other storage), or
whose directory can't be watched (none yet, no watches left: ``fs.inotify.max_user_watches``).
A queue that overflowed (``IN_Q_OVERFLOW``) marks every run changed. At most ``MAX_RUNS`` runs
are watched (the least recently asked for lose theirs first: their next request lists them again).
``TRACKLET_SERVER_COPY_WATCH=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import struct
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

MAX_RUNS = 256  # runs watched at once, two watches each (of the user's fs.inotify.max_user_watches: 8,192 on older kernels)
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "overlay", "jfs",
                               "reiserfs", "bcachefs", "ramfs"})

_IN_MODIFY, _IN_ATTRIB, _IN_MOVED_FROM, _IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
_IN_CREATE, _IN_DELETE, _IN_DELETE_SELF, _IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
_IN_Q_OVERFLOW, _IN_IGNORED, _IN_ONLYDIR = 0x4000, 0x8000, 0x1000000
_MASK = (_IN_MODIFY | _IN_ATTRIB | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF
         | _IN_MOVE_SELF | _IN_ONLYDIR)
_ESCAPED = re.compile(rb"\\([0-7]{3})")  # an octal escape in /proc/self/mountinfo
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class _Run:
    """A watched run: its watch descriptors and a count moved on by each event for it."""

    __slots__ = ("key", "descriptors", "changes")

    def __init__(self, key: str) -> None:
        self.key = key
        self.descriptors: list[int] = []
        self.changes = 0


class CopyWatch:
    """One inotify instance for the process: ``since(run_dir)`` is a token to keep with a listing
    of the run's copies made after it, ``unchanged(run_dir, token)`` whether no event for the run
    came since (so the listing still holds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        # wd -> the runs watching it (one directory reached by two names: both runs' watch; the
        # kernel gives the same wd for the same directory, so an event moves on every such run)
        self._by_descriptor: dict[int, list[_Run]] = {}
        self._roots: dict[str, bool] = {}  # a data root's directory -> whether its filesystem is local
        self._devices: dict[int, bool] = {}  # a run directory's device (st_dev) -> whether its filesystem is local
        self._libc: Any = None
        self._fd = -1
        if sys.platform.startswith("linux") and os.environ.get("TRACKLET_SERVER_COPY_WATCH", "1") != "0":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
                fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            except (OSError, AttributeError):
                fd = -1
            if fd >= 0:
                self._libc, self._fd = libc, fd

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._runs.clear()
            self._by_descriptor.clear()

    def _local(self, run_dir: Path) -> bool:
        """Whether ``run_dir``'s filesystem is one the kernel sees every write to (its mount's
        type in ``/proc/self/mountinfo``; the answer kept per project's runs directory), and so
        are those the run's directory and its ``parts/`` are on (a link to, or a mount of, another
        filesystem: the answer kept per device; one ``stat`` each)."""
        parent = str(run_dir.parent)
        known = self._roots.get(parent)
        if known is None:
            known = self._roots[parent] = _filesystem(parent) in LOCAL_FILESYSTEMS
        if not known:
            return False
        for path in (run_dir, run_dir / "parts"):
            try:
                device = os.stat(path).st_dev
            except OSError:  # (none yet: its watch, or the run's, sees it come)
                continue
            here = self._devices.get(device)
            if here is None:
                here = self._devices[device] = _filesystem(str(path)) in LOCAL_FILESYSTEMS
            if not here:
                return False
        return True

    def since(self, run_dir: Path) -> Any:
        """A token for a listing of ``run_dir``'s copies made after this call (None: the run
        can't be watched: list it on every request). Reads the events so far first, then watches
        the run's directory and ``parts/`` by their names again: where either is no longer the
        directory watched (replaced by a rename, made since, or its watch lost in an overflowed
        queue) the run is watched afresh, else the run (and the tokens other listings keep) stays."""
        key = str(run_dir)
        with self._lock:
            if self._fd < 0 or not self._local(run_dir):
                return None
            self._drain()
            fresh = self._watch(key, run_dir)
            run = self._runs.get(key)
            if run is not None and fresh is not None and run.descriptors == fresh.descriptors:
                self._release(fresh)  # (the same directories: the kernel gave the same wds)
            else:
                if run is not None:
                    self._drop(key)
                if fresh is None:
                    return None
                run = self._runs[key] = fresh
                while len(self._runs) > MAX_RUNS:
                    self._drop(next(iter(self._runs)))
            self._runs.move_to_end(key)
            return run, run.changes

    def unchanged(self, run_dir: Path, token: Any) -> bool:
        """Whether no event for the run came since ``token`` (``since``) was taken."""
        if token is None:
            return False
        with self._lock:
            if self._fd < 0:
                return False
            self._drain()
            run, changes = token
            key = str(run_dir)
            kept: _Run | None = self._runs.get(key)
            if kept is not run or kept is None or kept.changes != changes:
                return False
            self._runs.move_to_end(key)  # asked for: the last to lose its watch (MAX_RUNS)
            return True

    def _watch(self, key: str, run_dir: Path) -> _Run | None:
        run = _Run(key)
        if not self._add(run, run_dir, "run") or not self._add(run, run_dir / "parts", "parts"):
            self._release(run)
            return None
        return run

    def _add(self, run: _Run, path: Path, what: str) -> bool:
        """Watch ``path`` for ``run``; False where it can't be (a run's ``parts/`` that isn't there
        yet is True: the run's own watch sees it come)."""
        descriptor = self._libc.inotify_add_watch(self._fd, os.fsencode(path), _MASK)
        if descriptor < 0:
            return what == "parts" and ctypes.get_errno() == 2  # ENOENT
        watching = self._by_descriptor.setdefault(descriptor, [])
        if run not in watching:
            watching.append(run)
        if descriptor not in run.descriptors:
            run.descriptors.append(descriptor)
        return True

    def _release(self, run: _Run) -> None:
        """``run`` no longer watches its descriptors (a wd no run watches is removed)."""
        for descriptor in run.descriptors:
            watching = self._by_descriptor.get(descriptor)
            if watching is None or run not in watching:
                continue
            watching.remove(run)
            if not watching:
                del self._by_descriptor[descriptor]
                self._libc.inotify_rm_watch(self._fd, descriptor)

    def _drop(self, key: str) -> None:
        run = self._runs.pop(key)
        run.changes += 1
        self._release(run)

    def _drain(self) -> None:
        """Read every queued event: each moves its runs' counts on (an overflow: every run's)."""
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            at = 0
            while at + _EVENT.size <= len(data):
                descriptor, mask, _, length = _EVENT.unpack_from(data, at)
                at += _EVENT.size + length
                if mask & _IN_Q_OVERFLOW:
                    for run in self._runs.values():
                        run.changes += 1
                    continue
                watching = self._by_descriptor.get(descriptor)
                if watching is None:
                    continue
                for run in watching:
                    run.changes += 1
                if mask & _IN_IGNORED:  # the directory went (or was unwatched): watched again when asked
                    del self._by_descriptor[descriptor]
                    for run in watching:
                        if self._runs.get(run.key) is run:
                            self._drop(run.key)


def _filesystem(path: str) -> str:
    """The type of the filesystem ``path`` is on (its longest mount point prefix in
    ``/proc/self/mountinfo``); "" when unknown."""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mountinfo", "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return ""
    best, kind = -1, ""
    for line in lines:
        fields = line.split(b" ")
        try:
            # (the kernel writes a space, tab, newline or backslash in a mount point as \ooo, octal;
            # other bytes as they are: the path's bytes, as os.fsdecode gives ``real``'s)
            point = os.fsdecode(_ESCAPED.sub(lambda found: bytes([int(found.group(1), 8)]), fields[4]))
            kind_here = fields[fields.index(b"-") + 1].decode("utf-8", "replace")
        except (IndexError, ValueError):
            continue
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), kind_here
    return kind


_WATCH: CopyWatch | None = None
_WATCH_LOCK = threading.Lock()


def copy_watch() -> CopyWatch:
    """The process's ``CopyWatch`` (made on first use)."""
    global _WATCH
    with _WATCH_LOCK:
        if _WATCH is None:
            _WATCH = CopyWatch()
        return _WATCH


def _after_fork_in_child() -> None:
    """A forked child makes a watch of its own: two processes reading one inotify queue would each
    miss the events the other read."""
    global _WATCH, _WATCH_LOCK
    watch, _WATCH, _WATCH_LOCK = _WATCH, None, threading.Lock()
    if watch is not None and watch._fd >= 0:
        try:
            os.close(watch._fd)  # (the child's descriptor: the parent's queue is untouched)
        except OSError:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
