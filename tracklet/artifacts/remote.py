"""Artifacts on a tracking server: uploading a locally committed version, and reading versions
from the server into the local store (docs/artifacts.md, "Server mode").

- ``upload_version``: asks which of the version's blobs the project lacks (1,000 digests per
  request), uploads those in parallel from the local CAS (large ones resumably), then the
  manifest, then commits the version on the server (which assigns its own ``vN``).
- ``RemoteArtifacts``: ``artifact("project/name:alias")``, ``versions``, ``collections`` from the
  server; a version's ``download()`` first fetches the blobs the local CAS lacks
  (``fetch_blobs``, verified, ranged resume) and then materializes the files as in local mode.

The HTTP side is ``tracklet.client.artifacts.ArtifactClient`` (digests, files, JSON).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from tracklet.artifacts.artifact import Artifact
from tracklet.artifacts.manifest import Manifest
from tracklet.artifacts.names import check_artifact_name, parse_ref, version_number
from tracklet.artifacts.registry import VersionInfo
from tracklet.artifacts.storage import ArtifactStore, open_store, recipe_of
from tracklet.client.artifacts import ArtifactClient
from tracklet.errors import ArtifactError, ArtifactNotFound

UPLOAD_STATE_DIR = "artifact-uploads"  # under <data root>/cache: resumable upload sessions


def connect(base_url: str, data_root: str | os.PathLike, *, api_key: str | None = None,
            give_up_after: float = 300.0) -> ArtifactClient:
    """An ``ArtifactClient`` for the server at ``base_url``, keeping resumable uploads' state in
    ``<data_root>/cache/artifact-uploads``."""
    from tracklet.client.http import HttpClient, RetryPolicy
    from tracklet.errors import RemoteError

    http = HttpClient(base_url, api_key=api_key, retry=RetryPolicy(give_up_after=give_up_after), error=RemoteError)
    return ArtifactClient(http, Path(data_root).expanduser() / "cache" / UPLOAD_STATE_DIR)


def upload_version(client: ArtifactClient, store: ArtifactStore, info: VersionInfo, aliases: list[str],
                   manifest: Manifest | None = None) -> dict[str, Any]:
    """Send a locally committed version to the server: the blobs the project lacks, the manifest,
    then the commit. Returns the server's answer (``version``: its ``ArtifactVersion``;
    ``reused``; ``bytes_sent``)."""
    manifest = manifest if manifest is not None else store.manifest(info)
    # The server keeps every file whole: its manifest names no local chunk recipes (same digest).
    sent_manifest = server_manifest(manifest)
    manifest_bytes = sent_manifest.to_bytes()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    entries = {entry.digest: entry for entry in manifest if entry.ref is None}
    lacking = client.missing(info.project, [*entries, manifest_digest])
    files: list[tuple[Any, str, int]] = []
    for digest, entry in entries.items():
        if digest not in lacking:
            continue
        local = store.blobs.local_path(digest) if recipe_of(entry) is None else None
        if local is not None and local.is_file():
            files.append((str(local), digest, entry.size))
        else:  # stored as chunks (or not a local directory): its bytes, rebuilt and checked as they are sent
            files.append((partial(store.entry_bytes, entry), digest, entry.size))
    whole = [item for item in files if not callable(item[0])]
    sent = client.upload_files(info.project, whole)
    for source, digest, size in files:
        if callable(source):
            sent += client.upload_file(info.project, source, digest, size)
    if manifest_digest in lacking:
        client.upload_bytes(info.project, manifest_bytes)
        sent += len(manifest_bytes)
    answer = client.commit(info.project, info.name, {
        "type": info.type, "manifest": manifest_digest, "description": info.description,
        "metadata": info.metadata, "aliases": [alias for alias in aliases if alias != "latest"],
        "logged_by": info.logged_by})
    answer["bytes_sent"] = sent
    return answer


def server_manifest(manifest: Manifest) -> Manifest:
    """``manifest`` as a server keeps it: each file whole, so no entry names a local chunk recipe
    (the version's digest, over paths and file digests, is the same)."""
    if not any("recipe" in entry.extra for entry in manifest):
        return manifest
    return Manifest({entry.path: dataclasses.replace(entry, extra={key: value for key, value in entry.extra.items()
                                                                  if key != "recipe"})
                     for entry in manifest})


def logged_by_run(store: ArtifactStore, project: str, run_id: str) -> list[VersionInfo]:
    """The local versions a run logged, oldest first per collection (what ``tracklet sync``
    sends after the run's log)."""
    run_path = f"{project}/{run_id}"
    return [info for name in store.registry.collections(project)
            for info in store.registry.versions(project, name) if info.logged_by == run_path]


def push(client: ArtifactClient, store: ArtifactStore, infos: Iterable[VersionInfo]) -> list[dict[str, Any]]:
    """Send local versions to the server (each with its custom aliases); the server's answers.
    A version the server has from the same run is not added again (idempotent)."""
    return [upload_version(client, store, info, [alias for alias in info.aliases
                                                 if alias != "latest" and version_number(alias) is None])
            for info in infos]


def fetch_blobs(client: ArtifactClient, store: ArtifactStore, project: str, digests: Iterable[str]) -> int:
    """Put the blobs of ``digests`` the local store lacks into it, from the server (each verified
    while it is still a temporary file, then renamed into place). Bytes fetched.

    The one place server downloads enter the local CAS: a size-capped cache replaces it here."""
    from tracklet.artifacts.hashing import stat_key

    fetched = 0
    learned = {}
    for digest in dict.fromkeys(digests):
        if store.blobs.has(digest):
            continue
        temporary = store.blobs._temporary()
        try:
            fetched += client.download(project, digest, temporary)
            store.blobs._publish(temporary, digest)
        except BaseException:
            store.blobs._discard(temporary)
            store.blobs._discard(temporary + ".partial")
            raise
        local = store.blobs.local_path(digest)
        if local is not None:
            try:
                learned[stat_key(str(local), os.stat(local))] = digest  # verified: not read again by download()
            except OSError:
                pass
    store.hasher.cache.put_many(learned)
    return fetched


def version_info(document: dict[str, Any]) -> VersionInfo:
    """A server's ``ArtifactVersion`` as a ``VersionInfo``."""
    return VersionInfo(project=document["project"], name=document["name"], version=int(document["index"]),
                       type=document["type"], digest=document["digest"], manifest=document["manifest"],
                       size=document["size"], file_count=document["file_count"],
                       description=document.get("description") or "", metadata=dict(document.get("metadata") or {}),
                       created_at=document.get("created_at") or 0.0, logged_by=document.get("logged_by"),
                       aliases=list(document.get("aliases") or []))


class RemoteArtifacts:
    """Artifact versions on a tracking server, downloaded through the local store of ``data_root``."""

    def __init__(self, client: ArtifactClient, data_root: str | os.PathLike) -> None:
        self.client = client
        self.store = open_store(Path(data_root).expanduser())

    def _artifact(self, info: VersionInfo) -> Artifact:
        fetch_blobs(self.client, self.store, info.project, [info.manifest])
        artifact = Artifact._from_version(self.store, info)
        artifact._fetch = lambda manifest: fetch_blobs(
            self.client, self.store, info.project, [entry.digest for entry in manifest if entry.ref is None])
        return artifact

    def artifact(self, reference: str, *, default_project: str | None = None, type: str | None = None) -> Artifact:  # noqa: A002
        """The version ``reference`` (``project/name:alias``) names on the server."""
        ref = parse_ref(reference)
        project = ref.project or default_project
        if project is None:
            raise ArtifactError(f"artifact reference {reference!r} needs a project: use 'project/name:alias'")
        info = version_info(self.client.version(project, ref.name, ref.selector))
        if type is not None and info.type != type:
            raise ArtifactNotFound(f"artifact {info.qualified_name} has type {info.type!r}, not {type!r}")
        return self._artifact(info)

    def versions(self, project: str, name: str) -> list[Artifact]:
        infos = [version_info(document) for document in self.client.versions(project, check_artifact_name(name))]
        return [self._artifact(info) for info in infos]

    def collections(self, project: str, type: str | None = None) -> list[dict[str, Any]]:  # noqa: A002
        """``{"name", "type", "versions", "latest"}`` per collection, as the local ``Api`` gives."""
        return [{key: item[key] for key in ("name", "type", "versions", "latest")}
                for item in self.client.collections(project, type) if not item.get("error")]
