"""``ArtifactStore``: the registry, the blob store and the hasher of one artifact directory, and
the two things done with them: committing a draft as a version, and materializing a version.

Where it lives: ``$TRACKLET_ARTIFACT_DIR`` if set (a directory several data roots may share, so
identical files are stored once), else ``<data root>/artifacts``. Blobs go to ``blobs/`` under it
through fsspec; the stat cache is ``<data root>/cache/artifact-digests.sqlite``.

Committing reads each new or changed file twice at most (hash, then copy with a second hash that
must match) and an unchanged one not at all (stat cache); a blob already stored is not written
again, so logging content identical to the latest version writes nothing and returns it.

Chunking seam: ``_store_entry`` stores one file as one blob. Files at or above
``LARGE_FILE_BYTES`` are where ``tracklet.artifacts.chunking`` will store a chunk list instead
(the entry keeps the whole file's sha256 as ``digest``; ``extra`` names the chunk list), and
``_materialize_entry`` is where such an entry will be reassembled.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tracklet.artifacts.blobs import FsspecBlobStore, materialize
from tracklet.artifacts.entries import FileReference, LocalFile, Pending, uri_path
from tracklet.artifacts.hashing import STAT_CACHE_FILE, Hasher, StatCache, parallel_map, sha256_file, stat_key
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.artifacts.registry import LocalRegistry, VersionInfo
from tracklet.errors import ArtifactError, ArtifactVerifyError

ARTIFACT_DIR_ENV = "TRACKLET_ARTIFACT_DIR"
LARGE_FILE_BYTES = 64 << 20  # where chunking (tracklet.artifacts.chunking) will take over


class Progress(Protocol):
    """What the CLI's progress bar implements: totals once, then advances."""

    def start(self, files: int, size: int) -> None: ...

    def advance(self, files: int, size: int) -> None: ...


@dataclasses.dataclass
class CommitResult:
    info: VersionInfo
    manifest: Manifest
    reused: bool  # the latest version had the same content: it was returned, not a new one
    bytes_written: int
    files_written: int


def artifact_dir(data_root: Path) -> Path:
    configured = os.environ.get(ARTIFACT_DIR_ENV)
    return Path(configured).expanduser() if configured else data_root / "artifacts"


def _os_error(name: str, error: OSError) -> ArtifactError:
    where = error.filename or "a file"
    return ArtifactError(f"artifact {name!r}: can't read {where}: {error.strerror or error}")


class ArtifactStore:
    """The artifacts of one data root."""

    def __init__(self, data_root: str | os.PathLike, directory: str | os.PathLike | None = None) -> None:
        self.data_root = Path(data_root).expanduser()
        self.directory = Path(directory) if directory is not None else artifact_dir(self.data_root)
        self.registry = LocalRegistry(self.directory)
        self.blobs = FsspecBlobStore(self.directory)
        self.hasher = Hasher(StatCache(self.data_root / "cache" / STAT_CACHE_FILE))

    # ------------------------------------------------------------ committing

    def commit(self, name: str, type: str, pending: dict[str, Pending], *, project: str, aliases: list[str],
               description: str = "", metadata: dict[str, Any] | None = None, logged_by: str | None = None,
               progress: Progress | None = None) -> CommitResult:
        """Hash and store a draft's files and add it as a version of ``project/name`` (or return
        the latest version if it has the same content)."""
        to_hash = [item.path for item in pending.values()
                   if isinstance(item, LocalFile) or isinstance(item, FileReference) and item.checksum]
        try:
            digests = self.hasher.digest_files(to_hash)
        except OSError as error:
            raise _os_error(name, error) from None
        entries: dict[str, ManifestEntry] = {}
        for path, item in pending.items():
            if isinstance(item, ManifestEntry):
                entries[path] = dataclasses.replace(item, path=path)
            elif isinstance(item, LocalFile):
                digest, size = digests[item.path]
                entries[path] = ManifestEntry(path, digest, size)
            else:
                entries[path] = self._reference_entry(name, path, item, digests)
        manifest = Manifest(entries)
        if progress is not None:
            progress.start(len(manifest), manifest.size)
        written = self._store_files(name, manifest, pending, progress)
        manifest_blob, manifest_written = self.blobs.put_bytes(manifest.to_bytes())
        info = VersionInfo(project=project, name=name, version=-1, type=type, digest=manifest.digest(),
                           manifest=manifest_blob, size=manifest.size, file_count=len(manifest),
                           description=description or "", metadata=dict(metadata or {}), logged_by=logged_by)
        stored, reused = self.registry.commit(info, aliases)
        return CommitResult(stored, manifest, reused, sum(written) + manifest_written, sum(1 for n in written if n))

    def _reference_entry(self, name: str, path: str, item: FileReference,
                         digests: dict[str, tuple[str, int]]) -> ManifestEntry:
        try:
            stat = os.stat(item.path)
        except OSError as error:
            raise _os_error(name, error) from None
        extra = {"mtime_ns": stat.st_mtime_ns}
        if item.checksum:
            digest, size = digests[item.path]
        else:  # W&B's choice: without a checksum the reference's identity is its URI and size
            import hashlib

            digest, size = hashlib.sha256(f"{item.uri}\0{stat.st_size}".encode()).hexdigest(), stat.st_size
            extra["checksum"] = False
        return ManifestEntry(path, digest, size, ref=item.uri, extra=extra)

    def _store_files(self, name: str, manifest: Manifest, pending: dict[str, Pending],
                     progress: Progress | None) -> list[int]:
        """Store every local file's blob (in parallel); bytes written per file."""
        jobs = [(entry, pending[entry.path]) for entry in manifest if isinstance(pending[entry.path], LocalFile)]
        lock = threading.Lock()

        def one(job: tuple[ManifestEntry, Any]) -> int:
            entry, item = job
            written = self._store_entry(name, entry, item.path)
            if progress is not None:
                with lock:
                    progress.advance(1, entry.size)
            return written

        if progress is not None:
            skipped = [entry for entry in manifest if not isinstance(pending[entry.path], LocalFile)]
            progress.advance(len(skipped), sum(entry.size for entry in skipped))
        written = parallel_map(one, jobs, self.hasher.workers, "tracklet-store")
        # New blobs were hashed as they were written: remember them, so a download needn't read them.
        learned = {}
        for (entry, _), count in zip(jobs, written):
            blob = self.blobs.local_path(entry.digest)
            if (count or entry.size == 0) and blob is not None:  # any empty file has an empty file's digest
                try:
                    learned[stat_key(str(blob), os.stat(blob))] = entry.digest
                except OSError:
                    pass
        self.hasher.cache.put_many(learned)
        return written

    def _store_entry(self, name: str, entry: ManifestEntry, local_path: str) -> int:
        # Chunking seam: files of LARGE_FILE_BYTES and more will be stored as chunk lists here.
        try:
            written = self.blobs.put_file(local_path, entry.digest)
        except OSError as error:
            raise _os_error(name, error) from None
        return written

    # ------------------------------------------------------------ reading

    def manifest(self, info: VersionInfo) -> Manifest:
        return Manifest.from_bytes(self.blobs.read_bytes(info.manifest), what=f"the manifest of {info.qualified_name}")

    def download(self, info: VersionInfo, manifest: Manifest, root: Path, *, link: bool = True,
                 progress: Progress | None = None) -> Path:
        """Materialize a version's files under ``root``: each checked against its digest first
        (blobs through the stat cache: an unchanged blob is not read again), then made by
        reflink, hard link or copy; files already there with the right content are left alone.
        ``ArtifactVerifyError`` names every file whose stored bytes are missing or damaged."""
        root.mkdir(parents=True, exist_ok=True)
        if progress is not None:
            progress.start(len(manifest), manifest.size)
        sources = self._sources(info, manifest)
        targets = {entry.path: root.joinpath(*entry.path.split("/")) for entry in manifest}
        present = [str(target) for target in targets.values() if target.is_file()]
        try:
            have = self.hasher.digest_files(present)
        except OSError:
            have = {}
        made: list[str] = []
        for entry in manifest:
            target = targets[entry.path]
            if have.get(str(target), ("",))[0] == entry.digest:
                if progress is not None:
                    progress.advance(1, entry.size)
                continue
            self._materialize_entry(entry, sources[entry.path], target, link)
            made.append(str(target))
            if progress is not None:
                progress.advance(1, entry.size)
        learned = {}
        for target_path in made:
            try:
                learned[stat_key(target_path, os.stat(target_path))] = manifest[
                    Path(target_path).relative_to(root).as_posix()].digest
            except OSError:
                pass
        self.hasher.cache.put_many(learned)
        return root

    def _sources(self, info: VersionInfo, manifest: Manifest) -> dict[str, Path]:
        """Each entry's local source (its blob, or the referenced file), checked against its digest."""
        sources: dict[str, Path] = {}
        problems: dict[str, str] = {}
        for entry in manifest:
            if entry.ref is not None:
                if not entry.ref.startswith("file://"):
                    problems[entry.path] = f"reference {entry.ref} can't be downloaded by this version"
                    continue
                sources[entry.path] = Path(uri_path(entry.ref))
            else:
                local = self.blobs.local_path(entry.digest)
                if local is None:
                    raise ArtifactError("downloading from a non-local blob store is not supported yet")
                sources[entry.path] = local
        checked = {path: source for path, source in sources.items()
                   if manifest[path].extra.get("checksum", True) is not False}
        digests: dict[str, tuple[str, int]] = {}
        try:
            digests = self.hasher.digest_files([str(source) for source in checked.values()])
        except OSError:  # one at a time, to name every file at fault
            for path, source in checked.items():
                try:
                    digests.update(self.hasher.digest_files([str(source)]))
                except OSError as error:
                    problems[path] = f"missing ({source}: {error.strerror or error})"
        for path, source in checked.items():
            if path not in problems and digests[str(source)][0] != manifest[path].digest:
                problems[path] = f"digest mismatch ({source} has sha256 {digests[str(source)][0]}, the manifest " \
                                 f"says {manifest[path].digest})"
        if problems:
            raise ArtifactVerifyError(
                f"artifact {info.qualified_name}: {len(problems)} file(s) can't be downloaded: "
                + "; ".join(f"{path}: {why}" for path, why in sorted(problems.items())[:20]), problems)
        return sources

    def _materialize_entry(self, entry: ManifestEntry, source: Path, target: Path, link: bool) -> None:
        # Chunking seam: an entry stored as a chunk list will be reassembled here.
        if target.is_dir() and not target.is_symlink():
            raise ArtifactError(f"can't download {entry.path}: {target} is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        materialize(source, target, link=link and entry.ref is None)


def verify_tree(info: VersionInfo, manifest: Manifest, root: Path) -> None:
    """Re-hash every file of ``manifest`` under ``root`` (no cache); ``ArtifactVerifyError``
    naming each file that is missing, differs, or is not in the manifest."""
    problems: dict[str, str] = {}
    for entry in manifest:
        path = root.joinpath(*entry.path.split("/"))
        try:
            digest, size = sha256_file(path)
        except OSError as error:
            problems[entry.path] = f"missing ({error.strerror or error})"
            continue
        if digest != entry.digest:
            problems[entry.path] = f"digest mismatch (sha256 {digest}, {size:,} bytes; the manifest says " \
                                   f"{entry.digest}, {entry.size:,} bytes)"
    if root.is_dir():
        for base, _, names in os.walk(root):
            for file_name in names:
                relative = Path(base, file_name).relative_to(root).as_posix()
                if relative not in manifest:
                    problems[relative] = "not in the manifest"
    if problems:
        raise ArtifactVerifyError(
            f"{root} does not match artifact {info.qualified_name}: {len(problems)} problem(s): "
            + "; ".join(f"{path}: {why}" for path, why in sorted(problems.items())[:20]), problems)


def default_download_root(info: VersionInfo) -> Path:
    separator = "-" if sys.platform == "win32" else ":"
    return Path("artifacts") / f"{info.name}{separator}v{info.version}"


_stores: dict[tuple[str, str], ArtifactStore] = {}
_stores_lock = threading.Lock()


def open_store(data_root: str | os.PathLike) -> ArtifactStore:
    """The process's ``ArtifactStore`` for a data root (one per root and artifact directory)."""
    root = Path(data_root).expanduser()
    key = (str(root), str(artifact_dir(root)))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = ArtifactStore(root)
        return store


Callback = Callable[[int], None]
