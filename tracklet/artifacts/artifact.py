"""``tracklet.Artifact``: a versioned set of files (a dataset, a model), with W&B's names.

A draft collects files (``add_file``, ``add_dir``, ``new_file``, ``add_reference``, ``remove``);
nothing is read then but a ``stat``. ``run.log_artifact(artifact)`` freezes the draft and a
background worker hashes and stores it (``tracklet.artifacts.worker``); ``wait()`` blocks until
it is a committed version (``version``, ``digest``, ``manifest``, ``aliases``), or raises what
went wrong. A committed version is immutable: ``new_draft()`` starts the next version from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tracklet.artifacts.entries import InMemoryFile, LocalFile, Pending
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.artifacts.registry import new_commit_id
from tracklet.artifacts.names import (check_alias, check_artifact_name, check_artifact_type, check_entry_path,
                                      check_new_entry_path)
from tracklet.core import forksafe, threads
from tracklet.core.filehash import HashedBytes
from tracklet.errors import ArtifactDeleted, ArtifactError, ArtifactFinalized

if TYPE_CHECKING:
    from tracklet.artifacts.hashing import StatKey
    from tracklet.artifacts.storage import ArtifactStore, CommitResult

DRAFT, PENDING, COMMITTED, FAILED = "draft", "pending", "committed", "failed"
DELETED = "deleted"  # what ``state`` says of a committed version once its delete() succeeded
LOCAL_UI_URL = "http://127.0.0.1:8765"  # where `tracklet ui` serves by default (cli/ui.py)


class VersionStore(Protocol):
    """What a committed ``Artifact`` reads its version through: the local ``ArtifactStore`` or,
    for a version read from a server, ``remote.ServerVersionStore``. mypy checks both against it."""

    @property
    def data_root(self) -> Path: ...  # lineage (logged_by, used_by) is read from this root's store

    def manifest(self, info: Any) -> Manifest: ...

    def download(self, info: Any, manifest: Manifest, root: Path, *, link: bool = True, progress: Any = None,
                 allow_missing_references: bool = False) -> Path: ...

    def reopened(self) -> VersionStore: ...  # the same store opened by this process (a forked child)


def _regular_file(path: str) -> StatKey | None:
    """``path``'s stat key (``hashing.stat_key``: path, size, mtime, inode) if it is a regular file
    (links followed), else None: what ``LocalFile.added`` keeps, from the one ``stat`` that checks
    it is a file."""
    import stat

    from tracklet.artifacts.hashing import stat_key

    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    return stat_key(path, found) if stat.S_ISREG(found.st_mode) else None


class Artifact:
    """A dataset, model or any set of files, stored content-addressed and versioned.

    ``Artifact("mnist", type="dataset", description=..., metadata={...})``; then ``add_file``,
    ``add_dir``, ``new_file``, ``add_reference``; then ``run.log_artifact(artifact)``.
    """

    # What a version read here is read through: its own in a forked child (a Pool worker given the
    # artifact the parent fetched), opened again there; the parent's holds its SQLite connections,
    # locks and HTTP connections (core/forksafe.own). (The registry a link came from opens its own
    # connections there by itself: registry/sql.py.)
    _store: Any = forksafe.own(lambda artifact, parents: parents.reopened())

    def __init__(self, name: str, type: str, description: str | None = None,
                 metadata: dict[str, Any] | None = None, *, incremental: bool = False, **_ignored: Any) -> None:
        self._name = check_artifact_name(name)
        # W&B's incremental=True: stored as the collection's latest version with this draft's files
        # added and the paths remove() named taken away (``artifacts/incremental.py``).
        self._incremental = bool(incremental)
        self._removed: list[str] = []  # an incremental draft's remove()d paths, taken from its base
        # The draft's commit id (VersionInfo.commit_id), drawn when it is stored: what its server
        # commit is known by when sent again (the client's retry, ``tracklet sync``).
        self._commit_id: str | None = None
        self.type = check_artifact_type(type)
        self.description = description or ""
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._metadata_read: str | None = None  # the stored version's metadata as read (save() tells an edit)
        self._pending: dict[str, Pending] = {}
        self._dirs: set[str] | None = None
        self._dirs_for: dict[str, Pending] | None = None
        self._state = DRAFT
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._store = None
        self._info: Any = None  # a VersionInfo once committed
        self._manifest: Manifest | None = None
        self._requested_aliases: list[str] = []
        self._alias_edit: list[str] | None = None  # a committed version's aliases as the caller edits them
        self._link: Any = None  # a tracklet.registry.sql.Link when read through a registry collection
        self._registry: Any = None  # the registry (local or a server's) that link was read from
        self._staging: str | None = None
        self.project: str | None = None
        self.reused = False  # True when logging found identical content and returned that version
        self.bytes_written = 0
        self.upload_error: Exception | None = None  # online runs: why the upload to the server failed
        self._server_version: int | None = None  # online runs: N of the server's vN, once uploaded
        self._server_remote: tuple[str, str | None, str] | None = None  # online runs: (URL, key, data root)
        self._history_step: int | None = None  # set by Run.log_artifact: the run's last step then
        self._tags: list[str] = []  # a draft's tags (W&B's per-version tags)
        self._tag_edit: list[str] | None = None  # a committed version's tags as the caller edits them
        self._final = False  # finalize(): a draft that takes no more files (log_artifact still stores it)
        self._deleted = False  # delete() succeeded: ``state`` says "deleted"

    # ------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        """The collection's name (a registry collection's, for a version read through one)."""
        return self._link.collection if self._link is not None else self._name

    @property
    def state(self) -> str:
        """``draft``, ``pending`` (being stored), ``committed``, ``failed``, or ``deleted`` once this
        object's ``delete()`` succeeded (W&B's ``wandb.Artifact.state`` gives W&B's uppercase
        ``PENDING``/``COMMITTED``/``DELETED`` instead)."""
        return DELETED if self._deleted else self._state

    def _committed_info(self, what: str) -> Any:
        if self._state != COMMITTED:
            hint = {DRAFT: "log it first (run.log_artifact)", PENDING: "call wait() first",
                    FAILED: f"storing it failed: {self._error}"}[self._state]
            raise ArtifactError(f"artifact {self._name!r} has no {what} yet: {hint}")
        return self._info

    @property
    def version(self) -> str:
        """``"v3"``: assigned when the version is committed (read through a registry collection:
        the collection's version; ``source_version`` is the artifact's)."""
        info = self._committed_info("version")
        return f"v{self._link.version}" if self._link is not None else f"v{info.version}"

    @property
    def digest(self) -> str:
        """The manifest digest (sha256 over sorted ``path:digest`` lines)."""
        if self._state == COMMITTED:
            return self._info.digest
        raise ArtifactError(f"artifact {self._name!r} has no digest until it is committed (log it, then wait())")

    @property
    def qualified_name(self) -> str:
        """``project/name:vN`` (``registry/collection:vN`` for a version read through a registry)."""
        info = self._committed_info("qualified name")
        return self._link.path if self._link is not None else info.qualified_name

    @property
    def is_link(self) -> bool:
        """Whether this version was read through a registry collection (a link: no copy of it)."""
        return self._link is not None

    @property
    def source_qualified_name(self) -> str:
        """``project/name:vN`` of the artifact version itself (for a link, what it points at)."""
        return self._committed_info("qualified name").qualified_name

    @property
    def source_name(self) -> str:
        return self._name

    @property
    def source_version(self) -> str:
        return f"v{self._committed_info('version').version}"

    @property
    def aliases(self) -> list[str]:
        """The version's aliases (``latest`` and custom ones); on a draft, the ones it will get.

        The list itself, as in W&B: ``artifact.aliases.append("best")`` (or assigning a list)
        and then ``artifact.save()`` gives a committed version the aliases added and takes away
        those removed (``save``)."""
        if self._state == COMMITTED:
            if self._alias_edit is None:
                self._alias_edit = self._stored_aliases()
            return self._alias_edit
        if self._state == DRAFT:
            return self._requested_aliases
        return _StoringAliases(self._requested_aliases, self._name)  # being stored with these: edits raise

    @aliases.setter
    def aliases(self, value: list[str]) -> None:
        if isinstance(value, str) or not all(isinstance(alias, str) for alias in value):
            raise ArtifactError(f"artifact {self._name!r}: aliases must be a list of strings; got {value!r}")
        if self._state == COMMITTED:
            self._alias_edit = list(value)
        elif self._state == DRAFT:
            self._requested_aliases = list(value)
        else:
            raise ArtifactError(f"artifact {self._name!r} is {self._state}: set its aliases once it is committed "
                                "(wait()), then save()")

    @property
    def tags(self) -> list[str]:
        """W&B's per-version tags: labels many versions may share (an alias names one version).
        The list itself, as ``aliases``: on a draft, the tags it will be logged with; on a
        committed version, edit it (or assign a list) and ``save()``. Tags are W&B's names:
        letters, digits, ``_`` and ``-``, words separated by spaces (``tracklet.artifacts.fields``)."""
        if self._state == COMMITTED:
            if self._tag_edit is None:
                self._tag_edit = list(getattr(self._info, "tags", None) or [])
            return self._tag_edit
        if self._state == DRAFT:
            return self._tags
        return _StoringAliases(self._tags, self._name, "tags")  # being stored with these: edits raise

    @tags.setter
    def tags(self, value: list[str]) -> None:
        from tracklet.artifacts.fields import check_tags

        tags = check_tags(value, f"artifact {self._name!r}")  # ArtifactNameError (a ValueError), as W&B
        if self._state == COMMITTED:
            self._tag_edit = tags
        elif self._state == DRAFT:
            self._tags = tags
        else:
            raise ArtifactError(f"artifact {self._name!r} is {self._state}: set its tags once it is committed "
                                "(wait()), then save()")

    def _stored_aliases(self) -> list[str]:
        names = self._link.aliases if self._link is not None else self._info.aliases
        return [alias for alias in names if alias != self.version]

    @property
    def manifest(self) -> Manifest:
        self._committed_info("manifest")
        if self._manifest is None:
            assert self._store is not None
            self._manifest = self._store.manifest(self._info)
        return self._manifest

    @property
    def size(self) -> int:
        return self._committed_info("size").size

    @property
    def commit_hash(self) -> str:
        """W&B's ``commit_hash``: what identifies the committed version's stored content, the sha256
        of its manifest blob (64 hex digits; the same for a version's local and server copies).
        ``digest`` is the hash over its files' paths and digests."""
        return self._committed_info("commit hash").manifest

    @property
    def created_at(self) -> float:
        return self._committed_info("creation time").created_at

    @property
    def history_step(self) -> int | None:
        """W&B's ``history_step``: the last history step of the run that logged this version, when
        it logged it (the run's step then, less one, as W&B counts: 0 before any row), so
        ``logged_by().history(...)`` around it shows the metrics of that moment. None for a
        version logged outside a run (``save()``, ``tracklet artifact put``), before this was
        recorded, or read from a tracking server that doesn't keep it (one from before session 24,
        or a version committed to it before its migration s0017)."""
        return self._committed_info("history step").history_step

    @property
    def url(self) -> str:
        """The version's dashboard page: on the tracking server it was read from (an online run's:
        the server it was uploaded to), else under ``tracklet ui`` at its default address
        (``http://127.0.0.1:8765``); ``/projects/<project>/artifacts/<name>/vN``, or
        ``/registry/<registry>/<collection>/vN`` for a registry collection's version."""
        from urllib.parse import quote

        info = self._committed_info("URL")
        base, version = LOCAL_UI_URL, info.version
        server = getattr(getattr(self._store, "client", None), "http", None)  # read from a server
        if self._link is not None:
            server = getattr(getattr(self._registry, "client", None), "http", None)
        elif server is None and self._server_remote is not None and self._server_version is not None:
            base, version = self._server_remote[0], self._server_version
        if server is not None:
            base = server.base_url
        if self._link is not None:
            path = f"registry/{quote(self._link.registry, safe='')}/{quote(self._link.collection, safe='')}/" \
                   f"v{self._link.version}"
        else:
            path = f"projects/{quote(info.project, safe='')}/artifacts/{quote(info.name, safe='')}/v{version}"
        return f"{base.rstrip('/')}/{path}"

    def files(self) -> list[ManifestEntry]:
        """The files: manifest entries (path, digest, size, ref) of a committed version; of a
        draft, its files with their current sizes and an empty digest."""
        if self._state == COMMITTED:
            return list(self.manifest)
        listed = []
        for path, item in sorted(self._pending.items()):
            if isinstance(item, ManifestEntry):
                listed.append(item)
            elif isinstance(item, InMemoryFile):
                listed.append(ManifestEntry(path, "", len(item.data)))
            else:
                try:
                    size = os.stat(item.path).st_size
                except OSError:
                    size = -1
                listed.append(ManifestEntry(path, "", size, ref=getattr(item, "uri", None)))
        return listed

    def get_entry(self, name: str) -> ManifestEntry:
        for entry in self.files():
            if entry.path == name:
                return entry
        raise KeyError(f"artifact {self._name!r} has no file {name!r}")

    def __repr__(self) -> str:
        if self._state == COMMITTED:
            return f"<tracklet.Artifact {self.qualified_name} type={self.type!r} files={self._info.file_count}>"
        return f"<tracklet.Artifact {self._name} type={self.type!r} {self._state} files={len(self._pending)}>"

    # ------------------------------------------------------------ building a draft

    def _check_draft(self) -> None:
        if self._state == COMMITTED:
            raise ArtifactError(f"artifact {self._info.qualified_name} is committed: its files can't change (a "
                                "version's content is immutable; its description, metadata, tags and aliases can "
                                "be edited, then save()); log changed files as a new version: new_draft()")
        if self._state != DRAFT:
            raise ArtifactError(f"artifact {self._name!r} is {self._state}: it can't change any more "
                                "(start the next version with new_draft())")
        if self._final:
            raise ArtifactFinalized(f"artifact {self._name!r} was finalized (finalize()): it takes no more files; "
                                    "log it as it is, or start another draft")

    def finalize(self) -> None:
        """W&B's ``finalize``: this draft takes no more files (adding or removing one raises
        ``ArtifactFinalized``); ``log_artifact`` or ``save()`` still stores it, and does this
        itself. Nothing to do on a version already logged."""
        self._final = True

    def _add(self, name: str, item: Pending) -> None:
        path = check_new_entry_path(name)
        parts = path.split("/")
        parents = ["/".join(parts[:depth]) for depth in range(1, len(parts))]
        directories = self._directories()
        clash = path if path in directories else next((p for p in parents if p in self._pending), None)
        if clash is not None:
            raise ArtifactError(f"artifact {self._name!r}: {path!r} would be both a file and a directory "
                                f"(it clashes with {clash!r})")
        self._pending[path] = item
        directories.update(parents)

    def _directories(self) -> set[str]:
        """Every directory the draft's files are in (built once, then kept up to date by ``_add``):
        what makes adding n files O(n), not O(n^2)."""
        if self._dirs is None or self._dirs_for is not self._pending:
            self._dirs_for = self._pending
            self._dirs = {path.rsplit("/", 1)[0] for path in self._pending if "/" in path}
            for path in list(self._dirs):
                while "/" in path:
                    path = path.rsplit("/", 1)[0]
                    self._dirs.add(path)
        return self._dirs

    def add_file(self, local_path: str | os.PathLike, name: str | None = None, *, policy: str = "immutable",
                 **_ignored: Any) -> str:
        """Add a file, as ``name`` (default: its base name); returns the name. The file is read
        when the artifact is stored, after ``log_artifact`` returns (``policy="immutable"``, the
        default: don't change or delete it before ``wait()``); ``policy="mutable"`` snapshots it
        now (a reflink where the file system has them, else a copy), for a file about to be
        overwritten, such as a checkpoint saved under one name every epoch."""
        self._check_draft()
        mutable = _check_policy(self._name, policy)
        path = os.path.abspath(os.fspath(local_path))
        found = _regular_file(path)
        if found is None:
            what = "is a directory (use add_dir)" if os.path.isdir(path) else "does not exist"
            raise ArtifactError(f"artifact {self._name!r}: can't add {path}: it {what}")
        entry_name = check_new_entry_path(name if name is not None else os.path.basename(path))
        self._add(entry_name, LocalFile(self._snapshot(path, entry_name)) if mutable else LocalFile(path, found))
        return entry_name

    def add_dir(self, local_path: str | os.PathLike, name: str | None = None, *, policy: str = "immutable",
                **_ignored: Any) -> None:
        """Add every file under a directory, as ``name/<relative path>`` (default: at the top);
        ``policy`` as for ``add_file``."""
        self._check_draft()
        mutable = _check_policy(self._name, policy)
        root = os.path.abspath(os.fspath(local_path))
        if not os.path.isdir(root):
            raise ArtifactError(f"artifact {self._name!r}: can't add directory {root}: it does not exist "
                                "or is not a directory")
        prefix = check_new_entry_path(name) + "/" if name else ""
        for base, directories, file_names in os.walk(root):
            directories.sort()
            for file_name in sorted(file_names):
                path = os.path.join(base, file_name)
                found = _regular_file(path)
                if found is not None:
                    entry_name = prefix + Path(path).relative_to(root).as_posix()
                    self._add(entry_name, LocalFile(self._snapshot(path, entry_name)) if mutable else
                              LocalFile(path, found))

    def _staging_dir(self) -> str:
        # tempfile and shutil are imported by the first draft that stages a file, not by
        # ``import tracklet.artifacts``: a run's code snapshot (``_add_bytes``) needs neither.
        import tempfile

        if self._staging is None:
            self._staging = tempfile.mkdtemp(prefix="tracklet-artifact-")
            # A draft dropped without being logged doesn't leave its staged files behind.
            # (by this process only: a child forked meanwhile holds a copy of the draft)
            forksafe.remove_with(self, self._staging)
        return self._staging

    def _snapshot(self, path: str, entry_name: str) -> str:
        """A private copy of ``path`` in the draft's staging directory (reflink, else copy)."""
        from tracklet.artifacts.blobs import _reflink

        try:
            target = os.path.join(self._staging_dir(), "snapshots", *check_entry_path(entry_name).split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.exists(target):
                os.unlink(target)
            if not _reflink(Path(path), Path(target)):
                import shutil

                shutil.copyfile(path, target)
        except OSError as error:
            raise ArtifactError(f"artifact {self._name!r}: can't snapshot {path}: {error.strerror or error}") from None
        return target

    @contextlib.contextmanager
    def new_file(self, name: str, mode: str = "x", encoding: str | None = None) -> Iterator[Any]:
        """``with artifact.new_file("labels.json") as f: f.write(...)``: a file written straight
        into the artifact (staged in a temporary directory until the artifact is stored)."""
        self._check_draft()
        entry_name = check_new_entry_path(name)
        if entry_name in self._pending:
            raise ArtifactError(f"artifact {self._name!r} already has a file {entry_name!r}")
        path = os.path.join(self._staging_dir(), "new", *entry_name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        binary = "b" in mode
        with open(path, mode, encoding=None if binary else (encoding or "utf-8")) as handle:
            yield handle
        self._add(entry_name, LocalFile(path))

    def _add_bytes(self, name: str, data: bytes | HashedBytes) -> None:
        """A file holding ``data``, kept in memory until the artifact is stored (``InMemoryFile``):
        what a run's code snapshot is made of (``HashedBytes`` where the caller hashed the bytes
        already, so they aren't hashed again). Nothing is staged on disk, so logging it imports
        neither ``tempfile`` nor ``shutil`` and opens no stat cache (inside ``finish()``)."""
        self._check_draft()
        entry_name = check_entry_path(name)
        if entry_name in self._pending:
            raise ArtifactError(f"artifact {self._name!r} already has a file {entry_name!r}")
        self._add(entry_name, InMemoryFile(data if isinstance(data, HashedBytes) else bytes(data)))

    def add_reference(self, uri: str, name: str | None = None, checksum: bool = True,
                      max_objects: int | None = None) -> list[str]:
        """Record files that stay where they are; returns the names added. ``file://`` (a file,
        or every file under a directory), ``s3://`` and ``gs://`` (an object, or every object
        under a prefix), ``http(s)://`` (one URL). What each records (ETag, version id, size,
        mtime, sha256 for files with ``checksum``), and how ``download()`` checks it:
        ``tracklet.artifacts.references``. A directory or prefix holding more than
        ``max_objects`` files is refused. ``checksum=False`` records the URI alone."""
        from tracklet.artifacts.references import expand

        self._check_draft()
        items = expand(self._name, uri, name, bool(checksum), max_objects)
        for entry_name, _ in items:  # every name checked before any is added
            check_new_entry_path(entry_name)
        added: list[str] = []
        try:
            for entry_name, item in items:
                path = check_entry_path(entry_name)
                if isinstance(item, ManifestEntry) and item.path != path:
                    item = dataclasses.replace(item, path=path)
                self._add(path, item)
                added.append(path)
        except ArtifactError:  # all or nothing: a clash leaves the draft as it was
            for path in added:
                del self._pending[path]
            self._dirs = None
            raise
        return added

    @property
    def incremental(self) -> bool:
        """W&B's ``incremental``: a draft made with ``incremental=True`` holds only what changes; it
        is stored as the collection's latest version (an online run's: its server's) with the
        draft's files added (over the base's of the same name) and the paths ``remove`` named
        taken away. docs/artifacts.md, "Incremental versions"."""
        return self._incremental

    @property
    def base_unread(self) -> str | None:
        """The server (its URL) whose latest version this incremental version could not be built
        on when it was stored (an online run's server refusing, unreachable or not answering in
        time); None otherwise. Such a version was built on the data root's latest instead: its
        local copy (``files()``, ``manifest``, ``download()``) may lack files only the server's
        latest holds; the server merges its increment onto that when it is sent (the run's upload,
        ``tracklet sync``). docs/artifacts.md, "Incremental versions"."""
        return self._info.base_unread if self._info is not None else None

    def remove(self, item: str) -> None:
        """Remove a file, or every file under a directory name. In an incremental draft, also
        from the version it is stored onto (no error if the draft lacks it)."""
        self._check_draft()
        path = check_entry_path(item)
        removed = [name for name in self._pending if name == path or name.startswith(path + "/")]
        if self._incremental:
            self._removed.append(path)
        elif not removed:
            raise ArtifactError(f"artifact {self._name!r} has no file or directory {path!r} to remove")
        for name in removed:
            del self._pending[name]
        self._dirs = None

    def new_draft(self) -> Artifact:
        """A draft of the next version, holding this version's files (stored already: only what
        is added or changed is read when it is logged). Of this artifact's class (W&B's
        ``wandb.Artifact`` drafts one, named as W&B names it)."""
        self._committed_info("files to start a draft from")
        draft = type(self)(self._name, self.type, self.description, dict(self._info.metadata))
        draft._pending = {entry.path: entry for entry in self.manifest}
        return draft

    # ------------------------------------------------------------ committing

    def _freeze(self, project: str, aliases: list[str]) -> dict[str, Pending]:
        """Called by ``log_artifact`` on the caller's thread: no more changes; what to store."""
        if self._state != DRAFT:
            self._check_draft()  # raises, naming the state
        requested = list(dict.fromkeys([*self._requested_aliases, *aliases]))
        for alias in requested:
            if alias != "latest":
                check_alias(alias)
        self._state = PENDING
        self.project = project
        self._requested_aliases = requested
        return dict(self._pending)

    def _commit_with(self, store: ArtifactStore, pending: dict[str, Pending], logged_by: str | None,
                     progress: Any = None, report: Any = None, after: Any = None,
                     chunk_target: Any = None, server: Any = None, base_deadline: Any = None,
                     warn: Any = None) -> CommitResult:
        """Store and register (on the worker, or the caller for ``save()``); sets the outcome.
        ``report(error)`` is called on failure before ``wait()`` is released, so a caller that
        saw ``wait()`` raise has also had the warning. ``after(result)`` (an online run's upload
        to its server) runs once the version is committed and before ``wait()`` returns; what it
        raises is kept in ``upload_error`` (``after`` reports it), and the local version stands.
        ``chunk_target`` (an online run's ``remote.ServerChunks``) takes the chunks of large files
        instead of local packs (``ArtifactStore.commit``). An incremental draft is merged onto the
        collection's latest version first: ``server``'s (an online run's ``ArtifactClient``; waited
        for until ``base_deadline()``, the worker's ``finish()`` deadline, at most), else the store's
        (``artifacts/incremental.py``); if ``server``'s couldn't be read, the version is marked
        (``base_unread``) and ``warn(message)`` says so."""
        try:
            assert self.project is not None
            base = unread_from = None
            if self._incremental:
                from tracklet.artifacts import incremental

                manifest, base, unread = incremental.resolve_base(store, self.project, self._name, server,
                                                                  deadline=base_deadline)
                pending = incremental.onto(manifest, pending, self._removed)
                if unread is not None and server is not None:
                    unread_from = str(server.http.base_url)
                    if warn is not None:
                        warn(f"tracklet: artifact {self.project}/{self._name}: the latest version on {unread_from} "
                             f"could not be read ({unread}), so this incremental version is built on this data "
                             "root's latest instead: its local copy (files(), download(), `tracklet artifact "
                             "show`) may lack files only the server's version holds. The server merges it onto "
                             "its latest when it is uploaded (now, or by `tracklet sync` if that fails); read "
                             "the server's version for the whole collection")
            self._commit_id = self._commit_id or new_commit_id()
            result = store.commit(self._name, self.type, pending, project=self.project,
                                  aliases=self._requested_aliases, description=self.description,
                                  metadata=self.metadata, logged_by=logged_by, progress=progress,
                                  # an upload reads any local packs at once: through the page cache
                                  read_back=after is not None, chunk_target=chunk_target,
                                  history_step=self._history_step, tags=self._tags, incremental_base=base,
                                  commit_id=self._commit_id, base_unread=unread_from)
        except BaseException as error:
            self._error = error
            self._state = FAILED
            if report is not None and isinstance(error, Exception):
                report(error)
            self._done.set()
            raise
        finally:
            self._drop_staging()
        self._store, self._info, self._manifest = store, result.info, result.manifest
        self._metadata_read = _as_stored(result.info.metadata or {})
        self.reused, self.bytes_written = result.reused, result.bytes_written
        self._state = COMMITTED
        if after is not None:
            try:
                after(result)
            except Exception as error:  # the caller of after reports it; the local version stands
                self.upload_error = error
        self._done.set()
        return result

    def _drop_staging(self) -> None:
        if self._staging is not None:
            import shutil

            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def save(self, project: str | None = None, *, root: str | os.PathLike | None = None,
             aliases: list[str] | None = None, progress: Any = None) -> Artifact:
        """Store this draft as a version now, outside any run (what ``tracklet artifact put``
        does). ``root`` is the data root (default ``$TRACKLET_DIR`` or the per-user one).

        On a committed version, save what was edited since it was read (W&B's way: mutate a
        logged or fetched version, then ``save()``): its ``description``, ``metadata``, ``tags``
        and ``aliases`` (``aliases=`` given here are added): custom aliases added move to this
        version, those removed are taken away. Everything is checked before anything changes
        (a tag W&B refuses, metadata JSON can't hold, ``latest`` removed or a ``vN`` added raise
        ``ArtifactError`` naming it, and nothing is saved); the edit is one locked change of the
        collection. A version read from a server is edited there, with the same rules (one
        request, one transaction); one an online run logged is edited on its server, then in
        the local store. Its files never change (``add_file`` on it raises; log changed files as
        a new version: ``new_draft()``)."""
        from tracklet.artifacts.storage import open_store

        if self._state == PENDING:
            raise ArtifactError(f"artifact {self._name!r} is still being stored: call wait() first, then edit its "
                                "aliases and save()")
        if self._state == COMMITTED:
            threads.wait(self._done)  # an online run's upload first: whether the server has a copy is known then
            if aliases:
                self.aliases.extend(alias for alias in aliases if alias not in self.aliases)
            self._save_edits()
            return self
        pending = self._freeze(project or "uncategorized", list(aliases or []))
        self._commit_with(open_store(_data_root(root)), pending, None, progress)
        return self

    def _save_edits(self) -> None:
        """Apply the edits of a committed version (``save``): every field checked first
        (``VersionEdit.checked``), so a refused save changes nothing."""
        from tracklet.artifacts.fields import VersionEdit, check_tags

        info = self._info
        read = self._metadata_read if self._metadata_read is not None else _as_stored(info.metadata or {})
        description = self.description or ""
        edit = VersionEdit(description=description if description != (info.description or "") else None)
        if _as_stored(self.metadata) != read:
            _metadata_edit(edit, self.metadata, read)
        if self._tag_edit is not None:
            stored_tags = list(getattr(info, "tags", None) or [])
            wanted_tags = check_tags(self._tag_edit, f"artifact {info.qualified_name}")
            edit.add_tags = [tag for tag in wanted_tags if tag not in stored_tags]
            edit.remove_tags = [tag for tag in stored_tags if tag not in wanted_tags]
        if self._alias_edit is not None:
            stored = self._stored_aliases()
            wanted = list(dict.fromkeys(self._alias_edit))
            fixed = {"latest", self.version}
            edit.add_aliases = [alias for alias in wanted if alias not in stored and alias not in fixed]
            edit.remove_aliases = [alias for alias in stored if alias not in wanted and alias != self.version]
        checked = edit.checked(f"artifact {info.qualified_name}")
        if checked.empty:
            return
        if self._link is not None:
            if checked.changes_fields:
                raise ArtifactError(f"{self._link.path} is a registry collection's version: edit the description, "
                                    f"metadata and tags of the version it links ({info.qualified_name}); nothing was "
                                    "saved")
            self._save_link_aliases(checked.add_aliases, checked.remove_aliases)
            return
        registry = getattr(self._store, "registry", None)
        if registry is None or not hasattr(registry, "edit_version"):
            raise ArtifactError(f"artifact {info.qualified_name}: its store can't edit versions")
        server = self._server_versions()
        if server is not None:  # an online run's version: the server's copy first (its refusal changes nothing)
            assert self._server_version is not None
            server.edit_version(info.project, info.name, self._server_version, checked)
        self._info = registry.edit_version(info.project, info.name, info.version, checked)
        self._metadata_read = _as_stored(self._info.metadata or {})
        self._alias_edit = self._tag_edit = None

    def _server_versions(self) -> Any:
        """The server an online run uploaded this version to (``ServerVersions``), or None."""
        if self._server_version is None or self._server_remote is None:
            return None
        from tracklet.artifacts.remote import ServerVersions, connect

        base_url, api_key, root = self._server_remote
        return ServerVersions(connect(base_url, root, api_key=api_key))

    def _save_link_aliases(self, added: list[str], removed: list[str]) -> None:
        """Move the aliases of a registry collection's version in the registry it was read from
        (local or a server's), with its rules, in one transaction: every move is in the alias
        history; a protected alias raises ``PromotionRequired`` naming the request it opened and
        nothing moves; an alias removed that someone else has moved since stays where it is."""
        from tracklet.core.extensions import load

        link, backend = self._link, self._registry
        if backend is None:
            raise ArtifactError(f"artifact {link.path}: move its aliases with `tracklet registry alias`")
        backend.save_aliases(link.registry, link.collection, link.version, added, removed,
                             actor=load("registry").default_actor(),
                             reason="artifact.save()")
        fixed = [alias for alias in link.aliases if alias in ("latest", f"v{link.version}")]
        custom = sorted({*self._stored_aliases(), *added} - {*removed, *fixed})
        self._link = dataclasses.replace(link, aliases=[*fixed, *custom])
        self._alias_edit = None

    def wait(self, timeout: float | None = None) -> Artifact:
        """Block until the artifact is a committed version; raise what went wrong if storing it
        failed, ``ArtifactError`` if ``timeout`` seconds pass first."""
        if self._state == DRAFT:
            raise ArtifactError(f"artifact {self._name!r} was not logged: nothing to wait for")
        if not threads.wait(self._done, timeout):  # in slices: a Ctrl-C is seen (core/threads.py)
            raise ArtifactError(f"artifact {self._name!r} is still being stored after {timeout:g}s")
        if self._state == FAILED:
            assert self._error is not None
            raise self._error
        return self

    # ------------------------------------------------------------ using a version

    @classmethod
    def _from_version(cls, store: VersionStore, info: Any) -> Artifact:
        import copy

        # A deep copy: a nested edit (metadata["cfg"]["lr"] = ...) must not reach the version read.
        # A placeholder type: the stored one was checked when it was logged, by whatever rules held
        # then, and a version with a type today's check refuses still reads back.
        artifact = cls(info.name, "stored", info.description, copy.deepcopy(info.metadata))
        artifact.type = info.type
        artifact._store, artifact._info, artifact._state = store, info, COMMITTED
        artifact._metadata_read = _as_stored(info.metadata or {})
        artifact.project = info.project
        artifact._done.set()
        return artifact

    def download(self, root: str | os.PathLike | None = None, *, link: bool = True, progress: Any = None,
                 allow_missing_references: bool = False, path_prefix: str | None = None) -> str:
        """Materialize the version's files under ``root`` (default ``./artifacts/<name>:vN``)
        and return that directory. Files are reflinked, else hard-linked to the store's read-only
        blobs, else copied (``link=False``: always copied); each is checked against its digest.
        References are fetched and checked against what was recorded; one whose object is gone
        is an error, or skipped with ``allow_missing_references``. ``path_prefix``: only the
        files whose path starts with it (W&B's option; ``"images/"`` is a directory's files). A
        local copy of an incremental version built without its server's latest (``base_unread``)
        is downloaded as it is, with a ``TrackletWarning`` saying it may lack the server's files."""
        self.wait()
        assert self._store is not None
        if self._info.base_unread:
            import warnings

            from tracklet.errors import TrackletWarning

            warnings.warn(TrackletWarning(
                f"tracklet: {self._info.qualified_name} is an incremental version built on this data root's latest, "
                f"as the latest on {self._info.base_unread} could not be read when it was stored: it may lack files "
                "only the server's version holds (the server merges it onto its latest once it is uploaded: "
                f"`tracklet sync`); download the server's version for the whole collection"), stacklevel=2)
        manifest = self.manifest
        if path_prefix is not None:
            manifest = Manifest({entry.path: entry for entry in manifest if entry.path.startswith(str(path_prefix))})
        target = Path(root) if root is not None else _default_root(self._info)
        return str(self._store.download(self._info, manifest, target, link=link, progress=progress,
                                        allow_missing_references=allow_missing_references))

    def download_file(self, name: str, root: str | os.PathLike | None = None, *, link: bool = True) -> str:
        """Materialize the one file ``name`` under ``root`` (as ``download`` does) and return its
        path; ``KeyError`` if the version has no such file."""
        self.wait()
        assert self._store is not None
        entry = self.get_entry(name)
        directory = self._store.download(self._info, Manifest({entry.path: entry}),
                                         Path(root) if root is not None else _default_root(self._info), link=link)
        return str(Path(directory).joinpath(*entry.path.split("/")))

    def checkout(self, root: str | os.PathLike | None = None) -> str:
        """W&B's ``checkout``: make ``root`` (default ``./artifacts/<name>``) hold exactly this
        version's files: every file under it that the version doesn't name is removed (links as
        links, never what they point at), then the version is downloaded there; returns
        ``root``. Refused with ``ArtifactError``, removing nothing, unless ``root`` is a directory
        of this artifact (absent, empty, or holding a non-empty file with the content the artifact
        has at its path, and mostly files at the artifact's paths: one shared LICENSE is no
        evidence), and always
        for the file system's root, the home directory, the working directory or a directory
        above it, and the data root (``tracklet.artifacts.checkout``)."""
        from tracklet.artifacts.checkout import check_root, remove_extra

        self.wait()
        assert self._store is not None
        target = Path(root) if root is not None else Path("artifacts") / self._info.name
        paths = {entry.path for entry in self.manifest}
        manifests: list[Manifest] = []  # read only for a root holding files

        def recent() -> list[Manifest]:
            if not manifests:
                manifests.extend(self._recent_manifests())
            return manifests

        check_root(target, paths, self._info.qualified_name, self._store.data_root,
                   lambda found: self._holds_own_content(found, recent()),
                   lambda: {entry.path for manifest in recent() for entry in manifest})
        remove_extra(target, paths)
        return self.download(target)

    def _recent_manifests(self) -> list[Manifest]:
        """This version's manifest and those of the artifact's 16 latest versions in the store
        (a server's store lists none): what checkout takes a directory of the artifact to hold."""
        assert self._store is not None
        store = self._store
        manifests = [self.manifest]
        versions = getattr(getattr(store, "registry", None), "versions", None)
        try:
            infos = versions(self._info.project, self._info.name)[-16:] if versions is not None else []
            manifests += [store.manifest(info) for info in infos if info.version != self._info.version]
        except (ArtifactError, OSError, ValueError):
            pass
        return manifests

    @staticmethod
    def _holds_own_content(found: dict[str, str], manifests: list[Manifest]) -> bool:
        """Whether one of ``found`` ({version path: file}) has the content that path has in one of
        ``manifests`` (checkout's evidence that a directory is the artifact's); an empty file is
        no evidence."""
        wanted: dict[str, set[str]] = {}
        entry_sizes: dict[tuple[str, str], int] = {}
        for manifest in manifests:
            for entry in manifest:
                if entry.path in found:
                    wanted.setdefault(found[entry.path], set()).add(entry.digest)
                    entry_sizes[(found[entry.path], entry.digest)] = entry.size
        from tracklet.core.digests import algorithm, hash_file

        for path, digests in wanted.items():
            try:
                size = os.path.getsize(path)
                if not size:  # an empty file (``__init__.py``, ``.gitkeep``) is anyone's: no evidence
                    continue
                if any(hash_file(path, algorithm(digest))[0] == digest
                       for digest in digests if entry_sizes.get((path, digest), size) == size):
                    return True
            except OSError:
                continue
        return False

    def verify(self, root: str | os.PathLike | None = None) -> None:
        """Re-hash the files under ``root`` (default: where ``download()`` puts them); raise
        ``ArtifactVerifyError`` naming every file that is missing, differs or is extra."""
        from tracklet.artifacts.storage import default_download_root, verify_tree

        self.wait()
        verify_tree(self._info, self.manifest, Path(root) if root is not None else default_download_root(self._info))

    def link(self, target_path: str, aliases: list[str] | None = None) -> Any:
        """Link this committed version into a registry collection, ``"registry/collection"``
        (W&B's ``"wandb-registry-model/name"`` too), without copying it; returns the linked
        version (``tracklet.registry``, docs/registry.md)."""
        from tracklet.core.extensions import load

        self.wait()
        return load("registry").link_artifact(self, target_path, aliases=list(aliases or []))

    @property
    def linked_artifacts(self) -> LinkedVersions:
        """W&B's ``linked_artifacts``: the registry collections' versions that link this version
        (``link()``'s, ``link_model``'s), each as read through its collection, by registry,
        collection and version; empty for a version that is itself a link, as W&B. Read where the
        version was read: the data root's registry, or the server's (one an online run logged:
        its server's); a server lists only the registries the caller may read. A list that can
        also be called (``artifact.linked_artifacts()``), as code written for either W&B form does."""
        from tracklet.core.extensions import load

        self._committed_info("registry links")
        if self._link is not None:
            return LinkedVersions()
        return LinkedVersions(load("registry").linked_versions(self))

    def unlink(self) -> None:
        """W&B's ``artifact.unlink()``: remove this registry collection's version (one read through
        a registry: ``wandb-registry-model/name:v0``, ``link()``'s, ``use_model``'s) from its
        collection, in the registry it was read from, by that registry's rules
        (``ModelRegistry.unlink``: its aliases are removed, each in the alias history, then the
        version, also in the history; a version a protected alias or a pending promotion request
        names is refused and nothing changes). The artifact version it linked is untouched. A
        version that isn't a link raises ``ArtifactNotLinked`` (a ``ValueError``, as W&B's). A
        version read from a tracking server's registry is unlinked there (the registry's member
        role); a server without the route answers 404 or 405, raised as it comes."""
        from tracklet.core.extensions import load
        from tracklet.errors import ArtifactNotLinked

        info = self._committed_info("registry link to remove")
        link, backend = self._link, self._registry
        if link is None:
            raise ArtifactNotLinked(f"artifact {info.qualified_name} is not a linked artifact (a registry collection's "
                                    "version), so it can't be unlinked; to delete it, use delete() instead")
        if backend is None:
            raise ArtifactError(f"{link.path} can't be unlinked: it was read without its registry; nothing was "
                                "changed")
        backend.unlink(link.registry, link.collection, link.version, actor=load("registry").default_actor(),
                       reason="artifact.unlink()")

    def delete(self, delete_aliases: bool = False, *, break_registry_links: bool = False) -> None:
        """Delete this version from the data root (W&B's ``delete``; ``tracklet artifact rm``), or
        from the server it was read from (``DELETE .../versions/vN``, the same rules; one an
        online run logged: from its server, then from the data root, once the local rules are
        met): its number is never given again and its files stay stored until ``tracklet
        artifact gc`` (a server's: ``tracklet admin artifact-gc``). A
        version holding custom aliases raises ``ArtifactError`` naming them unless
        ``delete_aliases`` (its aliases go with it, as W&B's flag says). A version linked into
        the model registry always raises naming its registry versions: W&B's flag is about aliases
        only, and deleting the version would leave those registry versions (and their protected
        aliases) without files. ``break_registry_links=True`` (``tracklet artifact rm --force`` or
        ``--break-registry-links``) deletes it anyway, with a warning naming them, unless a protected
        alias names one of them or a pending promotion request targets one (``ArtifactError``, every
        role: what refuses their ``unlink()``); on a server only for a member of every registry
        linking it (else ``RemoteError``, the server's 403), and the
        server's audit log and ``artifact.deleted`` event name them. Those registry versions then
        read back as deleted (``ArtifactDeleted`` naming the link). A registry version (a link)
        itself can't be deleted: the registry keeps its versions and their alias history
        (``unlink()`` removes it from its collection, as W&B's ``delete()`` of a link does)."""
        from tracklet.artifacts.lookup import check_deletable, delete_version

        info = self._committed_info("version to delete")
        if self._link is not None:
            raise ArtifactError(f"{self._link.path} is a registry collection's version: tracklet's registry keeps "
                                "its versions and their alias history, so delete() refuses it (W&B's delete() "
                                "unlinks it); remove it from its collection with unlink(), which records that in "
                                "the alias history")
        registry = getattr(self._store, "registry", None)
        if not hasattr(registry, "delete_version"):
            raise ArtifactError(f"artifact {info.qualified_name}: its store can't delete versions")
        server = registry if getattr(registry, "remote", False) else self._server_versions()
        if server is registry:  # a version of a server's project
            answer = registry.delete_version(info.project, info.name, info.version,  # type: ignore[union-attr]
                                             drop_aliases=delete_aliases, break_links=break_registry_links)
            self._deleted = True
            _warn_links_broken(info.qualified_name, answer.get("registry_links_broken") or [])
            return
        assert self._store is not None
        broken: list[str] = []
        if server is not None:  # an online run's: its local copy's rules first, then the server's copy, then it
            check_deletable(self._store.data_root, info, drop_aliases=delete_aliases,
                            break_links=break_registry_links)
            try:
                answer = server.delete_version(info.project, info.name, self._server_version,
                                               drop_aliases=delete_aliases, break_links=break_registry_links)
                broken = list(answer.get("registry_links_broken") or [])
            except ArtifactDeleted:  # the server's copy is gone already (a retry after a lost answer): go on
                pass
        _, links = delete_version(self._store.data_root, info, drop_aliases=delete_aliases,
                                  break_links=break_registry_links)
        self._deleted = True
        _warn_links_broken(info.qualified_name, [*broken, *links])

    def logged_by(self) -> Any:
        """The run that logged this version (a ``tracklet.RecordedRun``; for a version read from a
        server, the server's run: a ``RemoteRun``), or None."""
        from tracklet.artifacts.lineage import logged_by

        self.wait()
        assert self._store is not None
        if hasattr(self._store, "lineage"):  # read from a server: its lineage, not this machine's
            found = self._store.lineage(self._info, "logged")
            return found[0] if found else None
        return logged_by(self._store.data_root, self._info)

    def used_by(self) -> list[Any]:
        """The runs that used this version (``run.use_artifact``), oldest first (for a version read
        from a server, the server's runs)."""
        from tracklet.artifacts.lineage import used_by

        self.wait()
        assert self._store is not None
        if hasattr(self._store, "lineage"):
            return list(self._store.lineage(self._info, "used"))
        return used_by(self._store.data_root, self._info)


class LinkedVersions(list):
    """``Artifact.linked_artifacts``: a list (W&B's is a property) that calling also returns, so
    code written as ``artifact.linked_artifacts()`` works too."""

    def __call__(self) -> list[Any]:
        return list(self)


class _StoringAliases(list):
    """The aliases of a version being stored (``Artifact.aliases`` while pending): the worker
    commits with them, so an edit now could only be lost. Every edit raises ``ArtifactError``
    saying to ``wait()`` first (then edit and ``save()``)."""

    def __init__(self, aliases: list[str], name: str, what: str = "aliases") -> None:
        super().__init__(aliases)
        self._name, self._what = name, what  # what: "aliases", or "tags" (the same rule)

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise ArtifactError(f"artifact {self._name!r} is still being stored with {self._what} {list(self)}: call "
                            f"wait() first, then edit its {self._what} and save()")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse


def _metadata_edit(edit: Any, metadata: Any, read: str) -> None:
    """Give ``edit`` (a ``VersionEdit``) the metadata keys changed since ``read`` (``_as_stored``
    of the metadata read): those set or changed and those removed, so a key another client set
    meanwhile stays; metadata that isn't a dict is sent whole, for ``check_metadata`` to name, and so
    is metadata that lost more keys than an edit may unset (``MAX_UNSET_METADATA_KEYS``)."""
    import json

    from tracklet.artifacts.fields import MAX_UNSET_METADATA_KEYS

    before = json.loads(read)
    if not isinstance(metadata, dict) or not isinstance(before, dict):
        edit.metadata = metadata
        return
    unset = [key for key in before if key not in metadata]
    if len(unset) > MAX_UNSET_METADATA_KEYS:  # more than one edit may unset: the metadata is sent whole
        edit.metadata = metadata
        return
    edit.set_metadata = {key: value for key, value in metadata.items()
                         if key not in before or _as_stored(value) != _as_stored(before[key])}
    edit.unset_metadata = unset


def _as_stored(metadata: Any) -> str:
    """Metadata as its version file holds it (a value JSON can't hold, such as a tuple, a numpy
    number or a path, as the version file writes it), to tell an edit from a round trip."""
    import json

    return json.dumps(metadata, sort_keys=True, default=str)


def _check_policy(name: str, policy: str) -> bool:
    """True for ``"mutable"`` (snapshot now), False for ``"immutable"`` (read when stored)."""
    if policy not in ("mutable", "immutable"):
        raise ArtifactError(f"artifact {name!r}: policy must be 'mutable' or 'immutable'; got {policy!r}")
    return policy == "mutable"


def _default_root(info: Any) -> Path:
    from tracklet.artifacts.storage import default_download_root

    return default_download_root(info)


def _data_root(root: str | os.PathLike | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    from tracklet.core.settings import default_data_root

    return Path(os.environ.get("TRACKLET_DIR") or default_data_root()).expanduser()


def _warn_links_broken(qualified_name: str, links: list[str]) -> None:
    """The warning of a deletion that left registry versions without files (none: no warning)."""
    if not links:
        return
    import warnings

    from tracklet.core.stack import user_stacklevel
    from tracklet.errors import TrackletWarning

    warnings.warn(f"tracklet: deleted {qualified_name}, which {', '.join(dict.fromkeys(links))} linked: those "
                  "registry versions have no files now", TrackletWarning, stacklevel=user_stacklevel())

