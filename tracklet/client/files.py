"""The client half of run files: upload a run's ``files/`` that the server lacks or holds different.

``SyncClient.sync_run`` calls ``FileSync.sync`` after the record log, so ``tracklet sync`` and
online mode both carry files. One listing request per run tells what the server has (size and
sha256 per name); only files that differ are read and sent, whole and gzip-compressed. A local
file's digest is remembered per (size, mtime), so a live run's unchanged files cost one ``stat``
per upload tick. A file that vanishes or can't be read, or that the server refuses (a name it
doesn't accept, too large), is skipped with a ``TrackletWarning``: files never stop the log upload.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import urllib.parse
import warnings
from collections.abc import Callable
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


def local_files(files_dir: Path) -> list[tuple[str, Path]]:
    """``(name, path)`` for every file under ``files_dir`` (names '/'-separated), by name."""
    found: list[tuple[str, Path]] = []
    for directory, subdirs, names in os.walk(files_dir):
        subdirs.sort()
        for name in names:
            path = Path(directory, name)
            found.append((path.relative_to(files_dir).as_posix(), path))
    return sorted(found)


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
        """Send the run's files the server doesn't have as they are now; the number sent."""
        local = local_files(paths.files_dir) if paths.files_dir.is_dir() else []
        if not local:
            return 0
        run = f"{paths.project}/{paths.run_id}"
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
        with open(path, "rb") as handle:
            data = handle.read()
            after = os.fstat(handle.fileno())  # the version these bytes belong to
        sha256 = hashlib.sha256(data).hexdigest()
        version = _Seen(len(data), after.st_mtime_ns, sha256)
        if after.st_size == len(data):  # not being appended to as we read: remember it
            self._seen[path] = version
        if remote == (len(data), sha256):
            return 0
        response = self._request(
            "PUT", self._url(paths, name), content=gzip.compress(data, 6),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
        )
        if response.status_code == 200:
            return 1
        if after.st_size == len(data):
            self._seen[path] = dataclasses.replace(version, refused=True)  # not again until it changes
        _warn(f"the server refused file {name!r} of {run} (HTTP {response.status_code}): {response_detail(response)}")
        return 0
