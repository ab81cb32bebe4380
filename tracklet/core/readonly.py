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
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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
    next use looks again)."""
    absolute = os.path.abspath(os.fspath(path))
    uri = "file:" + quote(absolute, safe="/")
    if os.path.exists(absolute + "-shm"):
        return uri + "?mode=ro"
    return uri + "?mode=ro&immutable=1"


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
