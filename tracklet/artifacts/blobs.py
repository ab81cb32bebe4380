"""The content-addressed blob store: ``<store>/blobs/sha256/ab/<digest>``, through fsspec.

``BlobStore`` is the small interface a local directory implements today and an S3 bucket or a
tracking server can implement later (``has``, ``put_file``, ``put_bytes``, ``read_bytes``,
``local_path``). ``FsspecBlobStore`` writes every blob to a temporary name under ``blobs/tmp/``,
hashes what it wrote, and renames it into place only when the digest matches: a blob visible
under ``sha256/`` is always complete and correct, whatever was killed when. On a local file
system blobs are made read-only (mode 0444), so a file that ``download()`` hard-linked to a blob
can't be edited in place by accident (an editor that replaces the file, as most do, leaves the
blob alone). A store made with ``durable=True`` (artifacts: the local store and a server's) also
``fsync``s each blob before its rename and each directory it was renamed into when ``sync()`` is
called, before rows naming the blobs are committed (``durable.py``).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from tracklet.artifacts.durable import DirectorySyncs, sync_file
from tracklet.artifacts.fsbuild import made
from tracklet.core.digests import FileHasher
from tracklet.core.filehash import HashedBytes, sha256_hex
from tracklet.errors import ArtifactError

_CHUNK = 1 << 20
# A temporary blob this old was left by a killed process: the next store removes it.
STALE_PARTIAL_SECONDS = 24 * 3600
WRITER_BLOCK = 5 << 20  # bytes a BlobWriter on an object store buffers (S3's smallest multipart part)
#: ``store_file`` reads a file this small whole before deciding to write it (one read, and no
#: write when its content is stored already); larger ones are copied while they are hashed.
INLINE_BYTES = 4 << 20


class BlobStore(Protocol):
    """Where artifact bytes live, by sha256."""

    url: str

    def has(self, digest: str) -> bool: ...

    def put_file(self, path: str, digest: str, on_bytes: Callable[[int], None] | None = None) -> int: ...

    def put_bytes(self, data: bytes | HashedBytes) -> tuple[str, int]: ...

    def read_bytes(self, digest: str) -> bytes: ...

    def local_path(self, digest: str) -> Path | None: ...


def blob_key(digest: str) -> str:
    """Where the blob of ``digest`` is under a store's ``blobs/``. Anything but a sha256 in hex
    raises ``ArtifactError``: a digest read from a file or a server's answer (a table cell, a
    manifest) must never name a path of its choosing (``../../etc/passwd``)."""
    from tracklet.core.digests import is_sha256

    if not is_sha256(digest):
        from tracklet.errors import ArtifactError

        raise ArtifactError(f"{str(digest)[:100]!r} is not a blob's digest (a sha256 in hex)")
    return f"sha256/{digest[:2]}/{digest}"


class ObjectIdentity(NamedTuple):
    """An object-store blob's size and the marks its store changes with its bytes (ETag, ...)."""

    size: int
    marks: tuple[str, ...]


class FsspecBlobStore:
    """Blobs under ``url`` at ``blobs/sha256/ab/<digest>``: any fsspec URL (``s3://...``), or a
    local directory, which is written with the OS's calls directly (what fsspec's local file
    system does anyway, without importing fsspec: a run finished at interpreter exit may not
    import it any more, since fsspec registers an exit hook when it is first imported)."""

    def __init__(self, url: str | os.PathLike, options: dict[str, Any] | None = None, *,
                 durable: bool = False, claims: bool = True) -> None:
        self.url = str(url)
        # Whether content found stored is claimed (``claim``): off for artifact commits, which
        # hold the store's gc.lock shared instead (no collection runs meanwhile).
        self.claims = claims
        self.local = "://" not in self.url or self.url.startswith("file://")
        # Only a local disk needs the fsyncs: a PUT to an object store is durable once it returns.
        self.durable = durable and self.local
        self.directory_syncs = DirectorySyncs()
        self.fs: Any = None
        if self.local:
            base = self.url[len("file://"):] if self.url.startswith("file://") else self.url
        else:
            def make() -> Any:  # an async store's IO loop starts children (core/threads.py); TLS (fsbuild.py)
                import fsspec

                return fsspec.core.url_to_fs(self.url, **dict(options or {}))

            self.fs, base = made(make)
        self.base = base.rstrip("/") + "/blobs"
        self._tmp_dir = self.base + "/tmp"
        self._made_dirs: set[str] = set()
        self._swept = False

    def _path(self, digest: str) -> str:
        return f"{self.base}/{blob_key(digest)}"

    def _makedirs(self, path: str) -> None:
        if path not in self._made_dirs:
            if self.local:
                os.makedirs(path, exist_ok=True)
            else:
                self.fs.makedirs(path, exist_ok=True)
            self._made_dirs.add(path)

    def _open(self, path: str, mode: str) -> Any:
        return open(path, mode) if self.local else self.fs.open(path, mode)

    def has(self, digest: str) -> bool:
        if self.local:
            return os.path.isfile(self._path(digest))
        return bool(self.fs.exists(self._path(digest)))

    def claim(self, digest: str) -> bool:
        """Whether blob ``digest`` is stored, asked by a writer that will name it instead of
        writing it (content stored before). On a local store the blob's modification time is set
        to now: a garbage collection removes a blob only if, once it has moved it aside, it is
        still older than the start of every run running (``tracklet.artifacts.gc``), so a blob
        claimed by a run is kept, and one moved aside first is missing here and written again.
        False also when the time can't be set (another user's blob): the caller writes its own.
        Only looked up on a store made with ``claims=False``."""
        if not (self.local and self.claims):
            return self.has(digest)
        try:
            os.utime(self._path(digest))
        except OSError:
            return False
        return True

    def local_path(self, digest: str) -> Path | None:
        return Path(self._path(digest)) if self.local else None

    def _temporary(self) -> str:
        self._makedirs(self._tmp_dir)
        if not self._swept:
            self._swept = True
            self._sweep_partials()
        return f"{self._tmp_dir}/{os.urandom(16).hex()}.partial"

    def _sweep_partials(self) -> None:
        """Remove temporary blobs a killed process left long ago (never a live writer's)."""
        if not self.local:
            return
        cutoff = time.time() - STALE_PARTIAL_SECONDS
        try:
            for entry in os.scandir(self._tmp_dir):
                if entry.name.endswith(".partial") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
        except OSError:
            pass

    def _publish(self, temporary: str, digest: str) -> None:
        """Make a verified temporary blob visible under its digest (an atomic rename)."""
        final = self._path(digest)
        self._makedirs(final.rsplit("/", 1)[0])
        if self.local:
            os.chmod(temporary, 0o444)
            os.replace(temporary, final)
            if self.durable:
                self.directory_syncs.add(final.rsplit("/", 1)[0])
        else:
            self.fs.mv(temporary, final)

    def _seal(self, handle: Any) -> None:
        """A temporary blob's bytes written: on a durable store, on the disk before its rename."""
        if self.durable:
            sync_file(handle)

    def sync(self) -> int:
        """Make the names of the blobs published so far durable (``fsync`` their directories):
        call before committing anything that names them. Directories synced (0 on an object store)."""
        return self.directory_syncs.sync()

    def _discard(self, temporary: str) -> None:
        try:
            if self.local:
                os.unlink(temporary)
            else:
                self.fs.rm(temporary)
        except OSError:
            pass

    def put_file(self, path: str, digest: str, on_bytes: Callable[[int], None] | None = None) -> int:
        """Copy ``path`` in as blob ``digest`` unless it is there; bytes written (0 if it was).
        ``ArtifactError`` naming the file if its bytes no longer hash to ``digest`` (it changed
        after it was hashed): nothing is left visible then."""
        if self.claim(digest):
            return 0
        temporary = self._temporary()
        hasher = FileHasher("sha256")
        written = 0
        try:
            with open(path, "rb") as source, self._open(temporary, "wb") as target:
                while chunk := source.read(_CHUNK):
                    hasher.update(chunk)
                    target.write(chunk)
                    written += len(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
                self._seal(target)
            if hasher.hexdigest() != digest:
                raise ArtifactError(f"{path} changed while it was being stored (its sha256 is now "
                                    f"{hasher.hexdigest()}, not {digest}); log the artifact again once it is written")
            self._publish(temporary, digest)
        except BaseException:
            self._discard(temporary)
            raise
        return written

    def store_file(self, path: str, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int, int]:
        """Store ``path`` without knowing its digest: one read that hashes the bytes as it copies
        them to a temporary blob, published under the digest they hash to. Returns (sha256, size,
        bytes written: 0 when a blob of that digest was there already, and the copy is dropped).
        A file of at most ``INLINE_BYTES`` is read whole first, so content already stored costs no
        write at all. What the file held when read is what is stored: the caller compares its
        ``stat`` before and after to tell whether it changed meanwhile."""
        with open(path, "rb", buffering=0) as source:
            head = _read_up_to(source, INLINE_BYTES + 1)
            if len(head) <= INLINE_BYTES:
                digest, written = self.put_bytes(head)
                if on_bytes is not None:
                    on_bytes(len(head))
                return digest, len(head), written
            temporary = self._temporary()
            hasher = FileHasher("sha256")
            size = 0
            try:
                with self._open(temporary, "wb") as target:
                    piece: bytes | memoryview = head
                    buffer = bytearray(_CHUNK)
                    view = memoryview(buffer)
                    while piece:
                        hasher.update(piece)
                        target.write(piece)
                        size += len(piece)
                        if on_bytes is not None:
                            on_bytes(len(piece))
                        count = source.readinto(buffer)
                        piece = view[:count]
                    digest = hasher.hexdigest()
                    stored = self.claim(digest)
                    if not stored:
                        self._seal(target)
                if stored:
                    self._discard(temporary)
                    return digest, size, 0
                self._publish(temporary, digest)
            except BaseException:
                self._discard(temporary)
                raise
        return digest, size, size

    def put_bytes(self, data: bytes | HashedBytes) -> tuple[str, int]:
        """Store ``data`` under its sha256; returns (sha256, bytes written). Plain bytes are hashed
        here; ``HashedBytes`` carry the digest computed from these very bytes when they were made,
        so they aren't hashed again. There is no way to name the digest: a blob's name is always
        what its bytes hash to (content addressing), whatever a caller believes they hash to."""
        if isinstance(data, HashedBytes):
            digest, data = data.digest, data.data
        else:
            digest = sha256_hex(data)
        if self.claim(digest):
            return digest, 0
        temporary = self._temporary()
        try:
            with self._open(temporary, "wb") as target:
                target.write(data)
                self._seal(target)
            self._publish(temporary, digest)
        except BaseException:
            self._discard(temporary)
            raise
        return digest, len(data)

    def read_bytes(self, digest: str) -> bytes:
        """A blob's bytes, checked against its digest."""
        try:
            with self._open(self._path(digest), "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise ArtifactError(f"blob {digest} is missing from {self.url}") from None
        if sha256_hex(data) != digest:
            raise ArtifactError(f"blob {digest} in {self.url} is damaged (its bytes don't match its digest)")
        return data

    def open(self, digest: str) -> Any:
        return self._open(self._path(digest), "rb")

    def writer(self) -> BlobWriter:
        """A blob written piece by piece (a streamed upload), hashed as it is written and made
        visible under its digest only by ``BlobWriter.publish`` once the digest matches."""
        return BlobWriter(self)

    def size(self, digest: str) -> int:
        """A stored blob's size in bytes; ``FileNotFoundError`` when it is not stored."""
        path = self._path(digest)
        return os.stat(path).st_size if self.local else int(self.fs.size(path))

    def object_identity(self, digest: str) -> ObjectIdentity | None:
        """What an object store says of a stored blob that changes whenever its bytes do: its
        size and ETag (or version id, or generation), asked afresh (one request), not from
        fsspec's listing cache. None for a local store (``local_path`` has the file) and for a
        store that says nothing of the kind; ``FileNotFoundError`` when the blob is not stored."""
        if self.local:
            return None
        path = self._path(digest)
        self.fs.invalidate_cache(path)
        info = self.fs.info(path)
        marks = tuple(f"{key}={info[key]}" for key in ("ETag", "etag", "VersionId", "generation") if info.get(key))
        return ObjectIdentity(int(info["size"]), marks) if marks else None


def _read_up_to(handle: Any, count: int) -> bytes:
    """``count`` bytes, fewer only at the end of the file (one ``read`` may return less)."""
    data = handle.read(count)
    if len(data) == count or not data:
        return bytes(data)
    parts = [data]
    got = len(data)
    while got < count and (more := handle.read(count - got)):
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class BlobWriter:
    """One blob being written (``FsspecBlobStore.writer``): ``write`` pieces, then ``publish``
    (verified, atomic) or ``discard``. Nothing is visible under ``sha256/`` before ``publish``."""

    def __init__(self, store: FsspecBlobStore) -> None:
        self.store = store
        self.temporary = store._temporary()
        self.hasher = FileHasher("sha256")
        self.size = 0
        # An object store's file buffers a block before each part it sends: keep that small.
        self._handle: Any = (store._open(self.temporary, "wb") if store.local
                             else store.fs.open(self.temporary, "wb", block_size=WRITER_BLOCK))

    def write(self, data: bytes) -> None:
        self.hasher.update(data)
        self._handle.write(data)
        self.size += len(data)

    def publish(self, digest: str) -> bool:
        """Close and make the blob visible as ``digest``; False (and nothing visible) unless the
        bytes written hash to ``digest``."""
        matches = self.hasher.hexdigest() == digest
        try:
            if matches:
                self.store._seal(self._handle)
        finally:
            self._handle.close()
        if not matches:
            self.store._discard(self.temporary)
            return False
        try:
            self.store._publish(self.temporary, digest)
        except BaseException:
            self.store._discard(self.temporary)
            raise
        return True

    def discard(self) -> None:
        abort = getattr(self._handle, "discard", None)  # an object store's file: abort its upload
        try:
            if abort is not None and not self.store.local:
                abort()
                self._handle.closed = True
            else:
                self._handle.close()
        except Exception:  # closing a half-written object may fail too: it is removed either way
            pass
        self.store._discard(self.temporary)


# ---------------------------------------------------------------- materializing files

FICLONE = 0x40049409  # Linux ioctl: share a file's extents (btrfs, XFS, bcachefs)


_NO_REFLINK: set[int] = set()  # devices where a reflink failed once: not tried again


def _reflink(source: Path, target: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # not on Windows
        return False
    try:
        device = os.stat(target.parent).st_dev
    except OSError:
        return False
    if device in _NO_REFLINK:
        return False
    try:
        with open(source, "rb") as src, open(target, "xb") as dst:
            try:
                fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
                return True
            except OSError:
                _NO_REFLINK.add(device)
        target.unlink()
    except OSError:
        try:
            target.unlink()
        except OSError:
            pass
    return False


def _modes_protect_blobs() -> bool:
    """Whether a read-only blob can't be written through a hard link to it: not for root, whom
    file modes don't stop (a ``torch.save`` over a downloaded file would rewrite the stored
    version's bytes)."""
    return not hasattr(os, "geteuid") or os.geteuid() != 0


def materialize(source: Path, target: Path, *, link: bool = True) -> str:
    """Put a copy of blob ``source`` at ``target`` (which must not exist): a reflink (an
    independent copy-on-write file), else a hard link (read-only, as the blob is; never for
    root, see ``_modes_protect_blobs``), else a copy. Returns which one it made."""
    if link:
        if _reflink(source, target):
            return "reflink"
        if _modes_protect_blobs():
            try:
                os.link(source, target)
                return "hardlink"
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                    raise
    import shutil  # here, not at import: storing a run's code snapshot in finish() never copies

    shutil.copyfile(source, target)
    return "copy"
