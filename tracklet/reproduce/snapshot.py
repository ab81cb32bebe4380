"""Where a run's code snapshot (the untracked source files it imported) is read from.

A run logs its snapshot as a ``code`` artifact (``core/reproduction.py``): the version is named by
its ``ArtifactLogged`` record (a lineage edge run -> version), and each file is a blob named by the
sha256 its ``Environment`` record lists, so a file is read by that digest from the data root's
artifact store (or, on a server, from the server's: ``BlobReader``). Runs recorded before that
kept the files under ``files/code/``; those are read from there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracklet.core.reproduction import CODE_TYPE

# (project, sha256) -> the blob's bytes; raises (any exception) when the blob is not there.
BlobReader = Callable[[str, str], bytes]


class CodeSnapshot:
    """A run's code snapshot: ``read(path)`` gives a file's bytes as recorded, or None with the
    reason in ``missing[path]`` (gone, or changed since it was recorded)."""

    def __init__(self, run: Any, blobs: BlobReader | None = None) -> None:
        environment = run.environment_record
        self.digests: dict[str, str] = (
            {entry.path: entry.sha256 for entry in environment.code_files} if environment is not None else {})
        self.artifact = next((f"{ref['project']}/{ref['name']}:v{ref['version']}" for ref in run.logged_artifacts
                              if ref["type"] == CODE_TYPE), "")
        self.files = Path(run.files_dir) / "code"
        self.missing: dict[str, str] = {}
        self._project = run.project
        self._blobs = blobs
        self._root = Path(run.data_root)

    @property
    def where(self) -> str:
        """What the plan names as the snapshot's place."""
        return f"artifact {self.artifact}" if self.artifact else str(self.files)

    def read(self, path: str) -> bytes | None:
        expected = self.digests.get(path)
        if expected is None:
            self.missing[path] = "not in the code snapshot"
            return None
        try:
            data = self._read_artifact(expected) if self.artifact else (self.files / path).read_bytes()
        except Exception as error:  # noqa: BLE001 - a store or file error: the plan names it
            self.missing[path] = (f"gone from {self.where} ({error})" if self.artifact
                                  else f"gone from {self.files}")
            return None
        if hashlib.sha256(data).hexdigest() != expected:
            self.missing[path] = "changed since it was recorded"
            return None
        return data

    def _read_artifact(self, digest: str) -> bytes:
        if self._blobs is not None:
            return self._blobs(self._project, digest)
        from tracklet.artifacts.storage import open_store

        return open_store(self._root).blobs.read_bytes(digest)


def server_blobs(artifacts: Any) -> BlobReader:
    """A ``BlobReader`` over a server's artifacts (``ServerArtifacts``): a project's blobs only."""

    def read(project: str, digest: str) -> bytes:
        handle, _size = artifacts.open_blob(project, digest)
        with handle:
            data: bytes = handle.read()
        return data

    return read
