"""Reading a data root this user can't write: a read-only mount (a shared NFS export, a container's
read-only volume) or another user's directory.

Every pure read (``tracklet ui``, ``tracklet show``, ``tracklet.Api()``, ``tracklet artifact
ls/show/get/verify``, ``artifact.download()`` from a local store) must work there without creating
or writing anything under the root: SQLite files are opened read-only (:func:`sqlite_read_uri`),
locks taken shared on a read-only descriptor (:func:`open_lock`), and what truly needs writing
(indexing the store, creating a database that isn't there) fails as ``ReadOnlyDataRoot`` naming the
directory and what to do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from tracklet.core import forksafe

if TYPE_CHECKING:
    import sqlite3


def can_write(path: str | os.PathLike[str]) -> bool:
    """Whether this process may create files in directory ``path`` (or write file ``path``): the
    kernel's answer for this user (``access(W_OK)``: a read-only mount says no even to root)."""
    return os.access(path, os.W_OK)


def sqlite_is_read_only(path: str | os.PathLike[str]) -> bool:
    """Whether SQLite file ``path`` (which exists) must be opened read-only here: the file or its
    directory can't be written (SQLite creates its ``-wal`` and ``-shm`` files beside it)."""
    return not can_write(path) or not can_write(Path(path).parent)


def sqlite_read_uri(path: str | os.PathLike[str]) -> str:
    """A URI opening SQLite file ``path`` read-only without creating anything beside it.

    A WAL database is read through its ``-shm`` file (the index of what the ``-wal`` holds): when
    a writer has it open (another user indexing their root while we read it), the ``-shm`` is there
    and ``mode=ro`` reads it, seeing each commit as it lands. Without one (nobody has the database
    open: a read-only mount, a finished root), ``mode=ro`` would have to create it and fails, so
    the file is opened ``immutable=1``: no locks and no change detection, which is right for a file
    nothing writes, and the reason it is chosen only then; a connection opened so doesn't see what
    a writer that starts later commits (the store's read-only engine opens one per use, so the
    next use looks again).

    ``immutable=1`` reads the main file alone: commits still in a ``-wal`` with no ``-shm`` beside
    it (a root copied, synced or mounted without the ``-shm`` its writer left) would be missed,
    silently. Those are read from a private copy of the database and its ``-wal``
    (:func:`_wal_snapshot`), even where the directory can be written: ``mode=ro`` would make a
    ``-shm`` there, this user's, with the database's mode bits, which the owner's next writer may
    not be able to write."""
    absolute = os.path.abspath(os.fspath(path))
    uri = "file:" + quote(absolute, safe="/")
    if os.path.exists(absolute + "-shm"):
        return uri + "?mode=ro"
    if _has_frames(absolute + "-wal"):
        snapshot = _wal_snapshot(absolute)
        if snapshot is not None:
            return "file:" + quote(snapshot, safe="/") + "?mode=ro"
    return uri + "?mode=ro&immutable=1"


#: A WAL file's header; frames (each a page and its commit marker) follow it.
_WAL_HEADER = 32

# (empty in a forked child: its exit handler removed the parent's copies, still in use, when it was inherited)
_snapshots: dict[str, tuple[tuple[int, ...], str]] = forksafe.cache()
_snapshots_lock = forksafe.lock()
_warned: set[str] = set()


def _has_frames(wal: str) -> bool:
    try:
        return os.stat(wal).st_size > _WAL_HEADER
    except OSError:
        return False


def _stamp(absolute: str) -> tuple[int, ...]:
    """What changes when the database or its ``-wal`` is written (inode, size, mtime of each)."""
    stamp: list[int] = []
    for name in (absolute, absolute + "-wal"):
        info = os.stat(name)
        stamp += [info.st_ino, info.st_size, info.st_mtime_ns]
    return tuple(stamp)


def _wal_snapshot(absolute: str) -> str | None:
    """A private copy (under this user's temporary directory, removed at exit, or by the next
    process making one where this one was killed: ``_remove_stale_snapshots``) of database
    ``absolute`` and its ``-wal``, which no writer has open and this user can't give a ``-shm``: the
    copy's own ``-shm`` is made beside it, so every commit the ``-wal`` holds is read. One copy per
    state of the two files (a new one once either changes); None where it can't be made (the
    database is then read ``immutable``, without those commits, and a warning says so)."""
    import shutil
    import tempfile

    with _snapshots_lock:
        try:
            stamp = _stamp(absolute)
        except OSError:
            return None
        known = _snapshots.get(absolute)
        if known is not None and known[0] == stamp:
            return known[1]
        directory = None
        try:
            _remove_stale_snapshots(tempfile.gettempdir())
            directory = tempfile.mkdtemp(prefix=f"{_SNAPSHOT_PREFIX}{os.getpid()}-")
            copy = os.path.join(directory, os.path.basename(absolute))
            shutil.copyfile(absolute, copy)
            shutil.copyfile(absolute + "-wal", copy + "-wal")
            if _stamp(absolute) != stamp:  # a writer started while it was copied: read the file as it is now
                raise OSError(f"{absolute} changed while it was copied")
        except OSError as error:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            _warn_once(absolute, f"tracklet: {absolute}-wal holds commits that aren't in {absolute} yet (its "
                       f"writer's -shm isn't there) and a private copy to read them from couldn't be "
                       f"made ({error}); they are left out until its owner opens the database")
            return None
        if known is not None:
            shutil.rmtree(os.path.dirname(known[1]), ignore_errors=True)  # open connections keep their files
        elif not _snapshots:
            import atexit

            atexit.register(_remove_snapshots)
        _snapshots[absolute] = (stamp, copy)
        _warn_once(absolute, f"tracklet: {absolute}-wal holds commits that aren't in {absolute} yet (its writer's "
                   f"-shm isn't there): they are read from a private copy in {directory} (removed at exit), "
                   f"nothing being made beside it")
        return copy


_SNAPSHOT_PREFIX = "tracklet-readonly-copy-"


def _remove_stale_snapshots(temp_dir: str) -> None:
    """Remove the private copies (``_wal_snapshot``) that processes of this user left in ``temp_dir``
    when they were killed before their exit handler ran: named ``<prefix><pid>-...``, owned by this
    user, their process gone. A copy is the whole database: without this, every ``kill -9`` of a
    reader left one behind."""
    import shutil

    try:
        names = [entry for entry in os.scandir(temp_dir) if entry.name.startswith(_SNAPSHOT_PREFIX)]
    except OSError:
        return
    for entry in names:
        pid = entry.name[len(_SNAPSHOT_PREFIX):].partition("-")[0]
        try:
            if not pid.isdigit() or int(pid) == os.getpid() or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except (OSError, OverflowError):  # alive (another user's process with that pid: EPERM), or gone meanwhile
            continue


def _warn_once(absolute: str, text: str) -> None:
    if absolute not in _warned:
        _warned.add(absolute)
        print(text, file=sys.stderr)


def _remove_snapshots() -> None:
    import shutil

    with _snapshots_lock:
        for _, copy in _snapshots.values():
            shutil.rmtree(os.path.dirname(copy), ignore_errors=True)
        _snapshots.clear()


def read_state(path: str | os.PathLike[str]) -> tuple[Any, ...]:
    """What tells whether a connection of :func:`sqlite_read_uri`'s that doesn't see each commit
    (``immutable``, or a private copy) still reads SQLite file ``path`` as it is: the URI it would
    be given now (a writer's ``-shm`` appeared, its ``-wal`` got commits) and the file's identity,
    size and modification time (a writer changed it and closed). An ``immutable`` connection keeps
    what it read (SQLite treats the file as one nothing changes): kept open, it went on serving
    what the file held when it was opened, after its owner changed it, and forever."""
    absolute = os.path.abspath(os.fspath(path))
    try:
        info = os.stat(absolute)
        stamp: tuple[int, ...] = (info.st_ino, info.st_size, info.st_mtime_ns)
    except OSError:
        stamp = ()
    return (sqlite_read_uri(absolute), *stamp)


def sees_every_commit(path: str | os.PathLike[str], uri: str) -> bool:
    """Whether a connection opened with ``uri`` (:func:`sqlite_read_uri`'s for ``path``) reads
    ``path`` through its writer's ``-shm`` (``mode=ro``), seeing each commit as SQLite does."""
    return uri == "file:" + quote(os.path.abspath(os.fspath(path)), safe="/") + "?mode=ro"


def connect_read_only(path: str | os.PathLike[str], *, uri: str | None = None,
                      **options: Any) -> sqlite3.Connection:
    """``sqlite3.connect`` of ``path`` read-only (``uri``, default :func:`sqlite_read_uri`'s);
    ``query_only`` on, so a statement that would write fails at once as a read-only database's."""
    import sqlite3

    connection = sqlite3.connect(uri or sqlite_read_uri(path), uri=True, **options)
    connection.execute("PRAGMA query_only=ON")
    return connection


def read_only_error(directory: str | os.PathLike[str], needs: str, do: str = "") -> Exception:
    """``ReadOnlyDataRoot`` saying that ``needs`` (what would be written) can't be done in
    ``directory`` by this user, and ``do`` (what to do instead)."""
    from tracklet.errors import ReadOnlyDataRoot

    user = _user()
    text = f"{needs}, but {directory} can't be written{' by ' + user if user else ''}"
    return ReadOnlyDataRoot(text + (f"; {do}" if do else ""))


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return ""


def open_lock(path: str | os.PathLike[str]) -> int | None:
    """A descriptor of lock file ``path`` for ``flock``: opened for writing (created if missing)
    where it can be, else read-only where it exists (a shared ``flock`` needs no write access, so
    a reader of another user's root still keeps that user's garbage collection out); None where it
    neither exists nor can be created (nothing can hold it: nobody can write there)."""
    if not os.path.exists(path) or can_write(path):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError:
            pass
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
