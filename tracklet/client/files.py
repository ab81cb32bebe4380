"""The client half of run files: upload a run's ``files/`` that the server lacks or holds different.

``SyncClient.sync_run`` calls ``FileSync.sync`` after the record log, so ``tracklet sync`` and
online mode both carry files. One listing request per run tells what the server has (size and
sha256 per name); only files that differ are read and sent, whole and gzip-compressed. A local
file's digest is remembered per (size, mtime), so a live run's unchanged files cost one ``stat``
per upload tick. A file is hashed in pieces and sent as a stream of gzip pieces read from it
again (never held whole in memory: a run may keep a checkpoint among its files), with its sha256
in ``X-Tracklet-Sha256`` so the server refuses a body that changed since it was hashed. A file
that vanishes or can't be read, or that the server refuses (a name it doesn't accept, too large,
changed while sent), is skipped with a ``TrackletWarning``: files never stop the log upload.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import urllib.parse
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tracklet.client.http import response_detail
from tracklet.core.layout import RunPaths
from tracklet.errors import TrackletWarning


@dataclasses.dataclass(frozen=True)
class _Seen:
    """What a local file held at one version (size, mtime), and whether the server refused it."""

    size: int
    mtime_ns: int
    sha256: str
    refused: bool = False


#: Bytes read from a run file at a time, to hash it and to send it.
PIECE = 1 << 20
#: A file up to this size is read whole once, hashed and sent from memory (a consistent snapshot of
#: a file being appended to, such as a live log); a larger one is hashed, then streamed from disk.
WHOLE_BYTES = 8 << 20


def _sha256_of(path: Path) -> tuple[str, int, os.stat_result]:
    """(sha256, size) of ``path`` read in pieces, and its ``fstat`` after the read (the version
    those bytes belong to)."""
    from tracklet.core.filehash import sha256_handle

    with open(path, "rb", buffering=0) as handle:
        digest, size = sha256_handle(handle)
        return digest, size, os.fstat(handle.fileno())


class GzipBody:
    """A file's bytes as gzip pieces, read again from the start each time it is iterated (so the
    HTTP client's retry can send it again); memory stays at one piece whatever the file's size."""

    def __init__(self, path: Path, level: int = 6) -> None:
        self.path = path
        self.level = level

    def __iter__(self) -> Iterator[bytes]:
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, 31)  # 31: the gzip container
        with open(self.path, "rb") as handle:
            while piece := handle.read(PIECE):
                if out := compressor.compress(piece):
                    yield out
        yield compressor.flush()


def local_files(files_dir: Path) -> list[tuple[str, Path]]:
    """``(name, path)`` for every file under ``files_dir`` (names '/'-separated), by name."""
    found: list[tuple[str, Path]] = []
    for directory, subdirs, names in os.walk(files_dir):
        subdirs.sort()
        for name in names:
            path = Path(directory, name)
            found.append((path.relative_to(files_dir).as_posix(), path))
    return sorted(found)


def part_file_name(label: str, name: str) -> str:
    """The server's name of file ``name`` of a shared run's part written by ``label``:
    ``parts/<label>/<name>`` (docs/shared-runs.md)."""
    return f"parts/{label}/{name}"


def _warn(message: str) -> None:
    warnings.warn(f"tracklet: {message}", TrackletWarning, stacklevel=3)


class FileSync:
    """Uploads run files through ``request(method, url, **kwargs)``: the sync client's
    ``HttpClient.request``, which retries connection errors, timeouts and 5xx (and raises
    ``SyncError`` when it gives up)."""

    def __init__(self, request: Callable[..., httpx.Response]) -> None:
        self._request = request
        self._seen: dict[Path, _Seen] = {}

    @staticmethod
    def _url(paths: RunPaths, name: str = "") -> str:
        base = f"/api/v1/runs/{paths.project}/{paths.run_id}/files"
        return f"{base}/{urllib.parse.quote(name, safe='/')}" if name else base

    def sync(self, paths: RunPaths) -> int:
        """Send the run's files the server doesn't have as they are now; the number sent. A shared
        run's part's files (its secondary writer's ``run.dir``) are the run's files
        ``parts/<label>/<name>`` on the server (``part_file_name``), so two writers' files of one
        name (``output.log``) never replace each other."""
        local = local_files(paths.files_dir) if paths.files_dir.is_dir() else []
        if not local:
            return 0
        run = f"{paths.project}/{paths.run_id}"
        if paths.part is not None:
            local = [(part_file_name(paths.part, name), path) for name, path in local]
            response = self._request("GET", self._url(paths), params={"under": part_file_name(paths.part, "")[:-1]})
        else:
            response = self._request("GET", self._url(paths))
        if response.status_code != 200:
            _warn(f"could not list the server's files of {run} (HTTP {response.status_code}: {response_detail(response)}); "
                  "its files were not uploaded")
            return 0
        remote = {entry["name"]: (entry["size"], entry["sha256"]) for entry in response.json()["files"]}
        sent = 0
        for name, path in local:
            try:
                sent += self._sync_file(paths, run, name, path, remote.get(name))
            except OSError as error:  # vanished, unreadable: the log upload goes on
                self._seen.pop(path, None)
                _warn(f"skipped file {name!r} of {run}: {error}")
        return sent

    def _sync_file(self, paths: RunPaths, run: str, name: str, path: Path, remote: tuple[int, str] | None) -> int:
        stat = path.stat()
        seen = self._seen.get(path)
        if seen is not None and (seen.size, seen.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            if seen.refused or remote == (seen.size, seen.sha256):
                return 0  # unchanged since the server had it, or since it refused it
        data: bytes | None = None
        if stat.st_size <= WHOLE_BYTES:
            with open(path, "rb") as handle:
                data = handle.read(WHOLE_BYTES + 1)
                after = os.fstat(handle.fileno())  # the version these bytes belong to
            sha256, size = hashlib.sha256(data).hexdigest(), len(data)
        if data is None or len(data) > WHOLE_BYTES:  # large (or grew past the limit meanwhile)
            data = None
            sha256, size, after = _sha256_of(path)
        version = _Seen(size, after.st_mtime_ns, sha256)
        if after.st_size == size:  # not being appended to as we read: remember it
            self._seen[path] = version
        if remote == (size, sha256):
            return 0
        response = self._request(
            "PUT", self._url(paths, name), content=gzip.compress(data, 6) if data is not None else GzipBody(path),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream", "X-Tracklet-Sha256": sha256},
        )
        if response.status_code == 200:
            return 1
        if response.status_code == 412:  # it changed between the hash and the send: next tick sends it
            self._seen.pop(path, None)
            return 0
        if after.st_size == size:
            self._seen[path] = dataclasses.replace(version, refused=True)  # not again until it changes
        _warn(f"the server refused file {name!r} of {run} (HTTP {response.status_code}): {response_detail(response)}")
        return 0
