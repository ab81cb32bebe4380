"""Artifacts on a tracking server: uploading a locally committed version, and reading versions
from the server into the local store (docs/artifacts.md, "Server mode").

- ``upload_version``: asks which of the version's blobs the project lacks (1,000 digests per
  request), uploads those in parallel from the local CAS (large ones resumably), then the
  manifest, then commits the version on the server (which assigns its own ``vN``).
- ``RemoteArtifacts``: ``artifact("project/name:alias")``, ``versions``, ``collections`` from the
  server; a version's ``download()`` (``ServerVersionStore``) fetches the blobs the machine's
  size-capped blob cache lacks (``fetch_blob``: verified, a broken transfer resumed with a
  ``Range``) and materializes the files from it as in local mode.

The HTTP side is ``tracklet.client.artifacts.ArtifactClient`` (digests, files, JSON).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import uuid
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from tracklet.artifacts.artifact import Artifact
from tracklet.artifacts.manifest import Manifest
from tracklet.artifacts.names import check_artifact_name, parse_ref, version_number
from tracklet.artifacts.registry import VersionInfo
from tracklet.artifacts.cache import BlobCache, CacheFull
from tracklet.artifacts.manifest import MAX_MANIFEST_BYTES
from tracklet.artifacts.storage import ArtifactStore, recipe_of
from tracklet.client.artifacts import ArtifactClient
from tracklet.errors import ArtifactError, ArtifactNotFound, ArtifactVerifyError

UPLOAD_STATE_DIR = "artifact-uploads"  # under <data root>/cache: resumable upload sessions


def connect(base_url: str, data_root: str | os.PathLike, *, api_key: str | None = None,
            give_up_after: float = 300.0, attempts: int | None = None) -> ArtifactClient:
    """An ``ArtifactClient`` for the server at ``base_url``, keeping resumable uploads' state in
    ``<data_root>/cache/artifact-uploads``; requests retried for ``give_up_after`` seconds (or
    ``attempts`` attempts)."""
    from tracklet.client.http import HttpClient, RetryPolicy
    from tracklet.errors import RemoteError

    retry = RetryPolicy(base=0.25 if attempts else 0.5, cap=2.0 if attempts else 30.0, give_up_after=give_up_after,
                        attempts=attempts)
    http = HttpClient(base_url, api_key=api_key, retry=retry, error=RemoteError)
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


def fetch_blob(client: ArtifactClient, cache: BlobCache, project: str, digest: str, size: int) -> bool:
    """Put blob ``digest`` into the machine's blob cache from the server (verified as it is
    written, nothing visible unless whole and matching); False if the cache has no room for it
    (``CacheFull``: the caller downloads it straight to its destination).

    The one place server bytes enter a local store."""
    if cache.has(digest):
        return True
    try:
        cache.put_stream(client.iter_blob(project, digest), digest, size)
    except CacheFull:
        return False
    return True


class ServerVersionStore:
    """What a version read from a server downloads through (the ``ArtifactStore`` calls an
    ``Artifact`` makes: ``manifest``, ``download``): manifests from the server, file bytes
    through the size-capped ``BlobCache`` (``artifacts/cache.py``), materialized by reflink, hard
    link or copy as in local mode."""

    def __init__(self, client: ArtifactClient, data_root: str | os.PathLike, cache: BlobCache | None = None) -> None:
        self.client = client
        self.data_root = Path(data_root).expanduser()  # for lineage (logged_by, used_by) read locally
        self._cache = cache
        self._manifests: dict[str, Manifest] = {}

    @property
    def cache(self) -> BlobCache:
        if self._cache is None:
            self._cache = BlobCache()
        return self._cache

    def manifest(self, info: VersionInfo) -> Manifest:
        manifest = self._manifests.get(info.manifest)
        if manifest is None:
            data = self.client.read(info.project, info.manifest, limit=MAX_MANIFEST_BYTES)
            manifest = self._manifests[info.manifest] = Manifest.from_bytes(
                data, what=f"the manifest of {info.qualified_name}")
        return manifest

    def download(self, info: VersionInfo, manifest: Manifest, root: Path, *, link: bool = True,
                 progress: Any = None, allow_missing_references: bool = False) -> Path:
        """Each file of ``manifest`` under ``root``: left alone if it is there with the right
        sha256, else fetched into the cache (unless cached) and materialized through a hidden
        temporary renamed into place. A remote reference (``s3://``, ``gs://``, ``http(s)://``)
        is fetched from where it lives and checked against what was recorded, as in local mode
        (``allow_missing_references`` skips one whose object is gone); a ``file://`` reference
        (not stored on a server) is an ``ArtifactVerifyError`` naming it, after the other files
        are done."""
        from tracklet.artifacts.blobs import materialize
        from tracklet.artifacts.hashing import sha256_file
        from tracklet.artifacts.references import ReferenceMissing, fetch, is_remote

        root.mkdir(parents=True, exist_ok=True)
        if progress is not None:
            progress.start(len(manifest), manifest.size)
        problems: dict[str, str] = {}
        for entry in manifest:
            target = root.joinpath(*entry.path.split("/"))
            if entry.ref is not None and is_remote(entry):
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fetch(entry, target)
                except ReferenceMissing as error:
                    if not allow_missing_references:
                        problems[entry.path] = str(error)
                except (ArtifactError, OSError) as error:
                    problems[entry.path] = str(error)
                if progress is not None:
                    progress.advance(1, entry.size)
                continue
            if entry.ref is not None:
                problems[entry.path] = f"reference {entry.ref} is not stored on the server"
                continue
            if target.is_file() and target.stat().st_size == entry.size and sha256_file(target)[0] == entry.digest:
                if progress is not None:
                    progress.advance(1, entry.size)
                continue
            if target.is_dir() and not target.is_symlink():
                raise ArtifactError(f"can't download {entry.path}: {target} is a directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
            try:
                made = False
                if fetch_blob(self.client, self.cache, info.project, entry.digest, entry.size):
                    with self.cache.get(entry.digest) as cached:
                        if cached is not None:
                            materialize(cached, temporary, link=link)
                            made = True
                if not made:  # no room in the cache, or evicted at once: straight to the file
                    self.client.download(info.project, entry.digest, temporary)
                os.replace(temporary, target)
            finally:
                with contextlib.suppress(OSError):
                    temporary.unlink()
                with contextlib.suppress(OSError):
                    Path(str(temporary) + ".partial").unlink()
            if progress is not None:
                progress.advance(1, entry.size)
        if problems:
            raise ArtifactVerifyError(
                f"artifact {info.qualified_name}: {len(problems)} file(s) can't be downloaded: "
                + "; ".join(f"{path}: {why}" for path, why in sorted(problems.items())[:20]), problems)
        return root


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

    def __init__(self, client: ArtifactClient, data_root: str | os.PathLike, cache: BlobCache | None = None) -> None:
        self.client = client
        self.store = ServerVersionStore(client, data_root, cache)

    def _artifact(self, info: VersionInfo) -> Artifact:
        return Artifact._from_version(self.store, info)

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
