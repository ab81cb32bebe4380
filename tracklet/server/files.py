"""Run files on the server (``diff.patch``, ``requirements.txt``, ...) through fsspec.

One location holds every run's files, keyed ``<project>/<run_id>/<name>``: a local directory
(``<server --dir>/files`` by default) or any fsspec URL, e.g. ``s3://bucket/prefix`` with s3fs.
Every name is checked before it becomes part of a key (``check_file_name``). Writes are atomic:
on a local directory the body goes to a hidden temporary file that is renamed into place; on an
object store one PUT of the whole body creates the object at once. A reader never sees half a
file, and a re-upload of identical content writes nothing.

Listings report each file's sha256. Object stores don't keep one, so it is computed on first
sight and cached per object version (size + ETag, or size + mtime + inode on a local disk);
an upload caches the digest of the bytes it wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import mimetypes
import os
import posixpath
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import fsspec.core
from fsspec.implementations.local import LocalFileSystem

from tracklet.artifacts.fsbuild import made
from tracklet.core.layout import PARTS_DIR, is_valid_name, part_file_name
from tracklet.server.logs import BadRequest, run_paths
from tracklet.errors import DigestMismatch
from tracklet.errors import NameConflict  # noqa: F401  (defined there; imported from here too)

MAX_NAME_CHARS = 512
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_READ_CHUNK = 1 << 20
_MAX_CACHED_DIGESTS = 100_000
_CLOCK_TICK = 2.0  # seconds: the coarsest mtime resolution a files location is taken to have (FAT's)


@dataclasses.dataclass(frozen=True)
class FileInfo:
    name: str  # relative to the run, '/'-separated
    size: int
    sha256: str
    updated_at: str | None  # ISO 8601 UTC, when the backend says

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_file_name(name: str) -> str:
    """Return ``name`` if it is a safe relative file name, else raise ``BadRequest`` saying why:
    '/'-separated parts of 1-128 letters, digits, '.', '_' or '-', each starting with a letter or
    digit (so no '..', no hidden or empty parts), at most ``MAX_NAME_CHARS`` in all."""
    problem = None
    if not isinstance(name, str) or not name:
        problem = "it is empty"
    elif len(name) > MAX_NAME_CHARS:
        problem = f"it is longer than {MAX_NAME_CHARS} characters"
    elif "\x00" in name:
        problem = "it contains a NUL character"
    elif "\\" in name:
        problem = "it contains a backslash (use '/' between parts)"
    elif name.startswith("/"):
        problem = "it is absolute (names are relative to the run)"
    else:
        for part in name.split("/"):
            if part in ("", ".", ".."):
                problem = f"it has a {part!r} part" if part else "it has an empty part ('//' or a trailing '/')"
                break
            if not _PART.match(part):
                problem = (f"part {part!r} must be 1-128 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit")
                break
    if problem:
        raise BadRequest(f"file name {name!r} is not valid: {problem}")
    return name


_TYPES = mimetypes.MimeTypes()  # Python's built-in table only: the same answer on every host
for _extension in (".log", ".patch", ".diff", ".out", ".err", ".cfg", ".ini", ".toml", ".yaml", ".yml", ".md"):
    _TYPES.add_type("text/plain", _extension)


def content_type(name: str) -> str:
    """The media type to serve ``name`` with (text as UTF-8; unknown: application/octet-stream)."""
    guessed, encoding = _TYPES.guess_type(name, strict=False)
    if guessed is None or encoding is not None:  # .gz and friends: the bytes as stored
        return "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def _updated_at(info: Mapping[str, Any]) -> str | None:
    stamp = info.get("LastModified") or info.get("mtime")
    if isinstance(stamp, (int, float)):
        stamp = dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
    if isinstance(stamp, dt.datetime):
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.timezone.utc)
        return stamp.astimezone(dt.timezone.utc).isoformat()
    return None


def _version(info: Mapping[str, Any]) -> tuple[Any, ...]:
    """What changes whenever the object's content may have: the key of the digest cache."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return (info.get("size"), etag)
    return (info.get("size"), info.get("mtime"), info.get("ino"))


def _racy(info: Mapping[str, Any], started: float) -> bool:
    """Whether a digest of the file ``info`` describes, hashed from ``started`` on, may not be kept
    by its version: a file without an ETag whose mtime is within ``_CLOCK_TICK`` of the hashing (or
    ahead of it). A file system stamps mtimes from a clock of its own resolution (a few ms on ext4
    without fine-grained timestamps, 2 s on FAT), so a rewrite in place with the same size within
    one tick keeps size, mtime and inode: the kept digest would name other bytes (a stale ETag, a
    304 for new bytes). Such a file is hashed again each time until its mtime is older (as git's
    index treats a "racily clean" entry)."""
    if info.get("ETag") or info.get("etag"):
        return False
    mtime = info.get("mtime")
    return not isinstance(mtime, (int, float)) or mtime >= started - _CLOCK_TICK


SERVER_LAYOUT = "{project}/{run_id}"  # a server's files location
DATA_ROOT_LAYOUT = "projects/{project}/runs/{run_id}/files"  # a client's data root (``tracklet ui``)
PARTS_LAYOUT = "projects/{project}/runs/{run_id}/parts"  # a data root's run's secondary writers' (their <label>.files/)


class RunFiles:
    """Every run's files in one fsspec location (``url`` plus fsspec ``options``); ``layout``
    places a run's files under it (a server's own location, or a client's data root)."""

    def __init__(self, url: str | os.PathLike[str], options: Mapping[str, Any] | None = None,
                 layout: str = SERVER_LAYOUT) -> None:
        self.url = str(url)
        self.layout = layout
        # a fork-safe section (artifacts/fsbuild.py): `tracklet index --logs s3://...` makes one client-side
        self.fs, base = made(lambda: fsspec.core.url_to_fs(self.url, **dict(options or {})))
        self.local = isinstance(self.fs, LocalFileSystem)
        if self.local:  # created by the first upload, not before
            base = str(Path(base).expanduser().resolve())
        self.base = base.rstrip("/")
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._digests: dict[tuple[str, tuple[Any, ...]], str] = {}

    @classmethod
    def connect(cls, url: str | os.PathLike[str], options: Mapping[str, Any] | None = None,
                layout: str = SERVER_LAYOUT) -> RunFiles:
        """``RunFiles(url, options)``, checked at server start rather than at the first upload:
        ``ValueError`` naming the location when its backend is missing or it can't be listed
        (wrong endpoint, credentials or bucket)."""
        try:
            files = cls(url, options, layout)
        except ImportError as error:
            raise ValueError(f"the files location {url} needs a package that is not installed: {error} "
                             "(for s3://: pip install 'tracklet[s3]')") from None
        if files.local and Path(files.base).exists() and not Path(files.base).is_dir():
            raise ValueError(f"the files location {url} is not a directory")
        try:
            try:
                files.fs.ls(files.base, detail=False)
            except FileNotFoundError:  # an empty prefix is fine, a missing bucket is not
                bucket = files.base.split("/", 1)[0]
                if not files.local and not files.fs.exists(bucket):
                    raise ValueError(f"bucket {bucket!r} does not exist (create it first)") from None
        except Exception as error:
            raise ValueError(f"cannot use the files location {url}: {type(error).__name__}: {error}") from None
        return files

    # ------------------------------------------------------------------ keys

    def _run_prefix(self, project: str, run_id: str) -> str:
        run_paths(Path(), project, run_id)  # BadRequest unless both are valid names
        return f"{self.base}/{self.layout.format(project=project, run_id=run_id)}"

    def _key(self, project: str, run_id: str, name: str) -> str:
        checked = check_file_name(name)
        part = part_file_name(checked) if self.layout == DATA_ROOT_LAYOUT else None
        if part is not None:  # a data root keeps a secondary writer's files in its parts/<label>.files/
            return f"{self._parts_prefix(project, run_id)}/{part[0]}.files/{part[1]}"
        return f"{self._run_prefix(project, run_id)}/{checked}"

    def _parts_prefix(self, project: str, run_id: str) -> str:
        """A data root's run's ``parts/`` folder (its secondary writers' logs and files)."""
        run_paths(Path(), project, run_id)
        return f"{self.base}/{PARTS_LAYOUT.format(project=project, run_id=run_id)}"

    def _sources(self, project: str, run_id: str, under: str | None) -> list[tuple[str, str, str]]:
        """Where ``list`` looks: ``(name prefix, folder, where)`` for the run's files, and in a
        data root each secondary writer's ``parts/<label>.files/`` listed as ``parts/<label>/``
        (the names a server keeps them by); ``where`` is the folder, or its part under ``under``."""
        prefix = self._run_prefix(project, run_id)
        if self.layout != DATA_ROOT_LAYOUT:
            return [("", prefix, prefix if under is None else f"{prefix}/{check_file_name(under)}")]
        if under is not None and check_file_name(under) == PARTS_DIR:  # every writer's files but the primary's
            return self._sources(project, run_id, None)[1:]
        if under is not None:
            checked = check_file_name(under)
            pieces = checked.split("/", 2)
            if pieces[0] == PARTS_DIR and len(pieces) >= 2 and is_valid_name(pieces[1]):
                folder = f"{self._parts_prefix(project, run_id)}/{pieces[1]}.files"
                return [(f"{PARTS_DIR}/{pieces[1]}/", folder, folder if len(pieces) == 2 else f"{folder}/{pieces[2]}")]
            return [("", prefix, f"{prefix}/{checked}")]
        sources = [("", prefix, prefix)]
        parts = self._parts_prefix(project, run_id)
        self.fs.invalidate_cache(parts)
        try:
            entries = self.fs.ls(parts, detail=False) if self.fs.isdir(parts) else []
        except FileNotFoundError:
            entries = []
        for entry in sorted(entries):
            label = posixpath.basename(str(entry).rstrip("/"))[: -len(".files")]
            if str(entry).endswith(".files") and is_valid_name(label):
                folder = f"{parts}/{label}.files"
                sources.append((f"{PARTS_DIR}/{label}/", folder, folder))
        return sources

    def _lock(self, project: str, run_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((project, run_id), threading.Lock())

    # ------------------------------------------------------------------ digests

    def _digest(self, key: str, info: Mapping[str, Any]) -> str | None:
        """The sha256 of the object ``info`` describes; None if it changed while being read."""
        version = _version(info)
        cached = self._digests.get((key, version))
        if cached is not None:
            return cached
        started = time.time()
        digest = hashlib.sha256()
        with self.fs.open(key, "rb") as handle:
            while chunk := handle.read(_READ_CHUNK):
                digest.update(chunk)
        self.fs.invalidate_cache(key)
        if _version(self.fs.info(key)) != version:
            return None
        if not _racy(info, started):
            self._remember(key, version, digest.hexdigest())
        return digest.hexdigest()

    def _remember(self, key: str, version: tuple[Any, ...], sha256: str) -> None:
        if len(self._digests) >= _MAX_CACHED_DIGESTS:
            self._digests.clear()
        self._digests[(key, version)] = sha256

    def _file_info(self, name: str, key: str, info: Mapping[str, Any]) -> FileInfo | None:
        for _ in range(3):  # rewritten while we hashed it: describe the newer version
            sha256 = self._digest(key, info)
            if sha256 is not None:
                return FileInfo(name=name, size=int(info["size"]), sha256=sha256, updated_at=_updated_at(info))
            info = self.fs.info(key)
        return None

    # ------------------------------------------------------------------ operations

    def list(self, project: str, run_id: str, under: str | None = None) -> list[FileInfo]:
        """The run's files (those under folder ``under`` only, when given: a shared run's part's
        ``parts/<label>``), sorted by name (empty when it has none). Anything under the run's
        prefix that isn't a valid name (a temporary file of a write in progress) is left out."""
        found: dict[str, FileInfo] = {}
        for name_prefix, folder, where in self._sources(project, run_id, under):
            self.fs.invalidate_cache(where)
            try:
                listed = self.fs.find(where, detail=True) if (under is None and not name_prefix) \
                    or self.fs.isdir(where) else {}
            except FileNotFoundError:
                listed = {}
            for path, info in sorted(listed.items()):
                name = name_prefix + path[len(folder) + 1:] if path.startswith(folder + "/") else None
                if not name or info.get("type", "file") != "file":
                    continue
                try:
                    check_file_name(name)
                except BadRequest:
                    continue
                if self._key(project, run_id, name) != path:  # a name another writer's file takes
                    continue
                try:
                    described = self._file_info(name, path, info)
                except FileNotFoundError:  # deleted since the listing
                    continue
                if described is not None:
                    found[name] = described
        return [found[name] for name in sorted(found)]

    def info(self, project: str, run_id: str, name: str) -> FileInfo:
        """One file's description; ``FileNotFoundError`` when there is none."""
        key = self._key(project, run_id, name)
        self.fs.invalidate_cache(key)
        info = self.fs.info(key)
        if info.get("type") != "file":
            raise FileNotFoundError(name)
        described = self._file_info(name, key, info)
        if described is None:
            raise FileNotFoundError(f"{name} keeps changing")
        return described

    def head(self, project: str, run_id: str, name: str) -> tuple[int, str | None]:
        """The file's size and its sha256 where already known for this version of it (the digest
        cache: a GET, the listing or an upload hashed it), else None: from its metadata alone (a
        ``stat``, an object's HEAD), never reading it. ``FileNotFoundError`` when there is none,
        ``IsADirectoryError`` for a directory."""
        key = self._key(project, run_id, name)
        self.fs.invalidate_cache(key)
        info = self.fs.info(key)
        if info.get("type", "file") != "file":
            raise IsADirectoryError(name)
        return int(info["size"]), self._digests.get((key, _version(info)))

    def open(self, project: str, run_id: str, name: str) -> tuple[IO[bytes], int]:
        """The file opened for reading and its size; ``FileNotFoundError`` when there is none."""
        key = self._key(project, run_id, name)
        self.fs.invalidate_cache(key)
        handle = self.fs.open(key, "rb")  # a directory: IsADirectoryError or FileNotFoundError
        try:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        return handle, size

    def open_with_digest(self, project: str, run_id: str, name: str) -> tuple[IO[bytes], int, str | None]:
        """The file opened for reading, its size and the sha256 of what was opened (the digest
        cache's, else hashed once): None where the file changed around the opening (its version
        before and after differs), so no digest is claimed for bytes it may not describe.
        ``FileNotFoundError`` when there is none."""
        key = self._key(project, run_id, name)
        self.fs.invalidate_cache(key)
        before = self.fs.info(key)
        if before.get("type", "file") != "file":
            raise IsADirectoryError(name)
        handle, size = self.open(project, run_id, name)
        try:
            self.fs.invalidate_cache(key)
            same = size == before.get("size") and _version(self.fs.info(key)) == _version(before)
            return handle, size, self._digest(key, before) if same else None
        except FileNotFoundError:  # removed since it was opened: the handle still reads what was opened
            return handle, size, None
        except BaseException:
            handle.close()
            raise

    def put(self, project: str, run_id: str, name: str, data: bytes, *,
            expected_sha256: str | None = None) -> tuple[FileInfo, bool]:
        """Store ``data`` as the run's file ``name`` atomically; ``(info, written)``, where
        ``written`` is False when the same bytes were already stored. With ``expected_sha256``
        (what the client hashed), a body that hashes to something else is refused
        (``DigestMismatch``) and nothing is written: the file changed while it was sent, or the
        bytes were damaged."""
        key = self._key(project, run_id, name)
        sha256 = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and expected_sha256.lower() != sha256:
            raise DigestMismatch(f"file {name!r}: the body ({len(data):,} bytes) has sha256 {sha256}, not "
                             f"{expected_sha256[:64]!r} as sent: nothing was stored (send it again)")
        with self._lock(project, run_id):
            try:
                current = self.info(project, run_id, name)
            except (FileNotFoundError, NotADirectoryError):
                current = None
            if current is not None and current.size == len(data) and current.sha256 == sha256:
                return current, False
            try:
                version = self._write_local(key, data) if self.local else self._write_object(key, data)
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise NameConflict(
                    f"file name {name!r} conflicts with a stored file: one name can't be both a file "
                    "and a directory"
                ) from None
            if version is not None:
                self._remember(key, version, sha256)
            return self.info(project, run_id, name), True

    def _write_local(self, key: str, data: bytes) -> tuple[Any, ...]:
        """Write a hidden temporary file beside ``key``, fsync it and ``os.replace`` it into place
        (atomic on one file system), then fsync the directory."""
        parent, base = posixpath.split(key)
        os.makedirs(parent, exist_ok=True)
        temp = f"{parent}/.{base}.{uuid.uuid4().hex}.tmp"  # never a valid name: never listed
        try:
            with open(temp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            version = _version(self.fs.info(temp))  # a rename keeps size, mtime and inode
            os.replace(temp, key)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return version

    def _write_object(self, key: str, data: bytes) -> tuple[Any, ...] | None:
        """One PUT of the whole body: the object appears complete or not at all."""
        response = self.fs.pipe_file(key, data)
        etag = response.get("ETag") if isinstance(response, Mapping) else None
        return (len(data), etag) if etag else None


def iter_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    """Read ``handle`` to the end in chunks, closing it at the end (a streamed download)."""
    try:
        while chunk := handle.read(_READ_CHUNK):
            yield chunk
    finally:
        handle.close()
