"""``ArtifactClient``: a tracking server's artifact routes over ``HttpClient`` (docs/artifacts.md).

It speaks digests, files and JSON only (the artifact objects are ``tracklet.artifacts.remote``'s,
a layer above):

- ``missing``: which digests a project lacks, 1,000 per request;
- ``upload_files``: the blobs it lacks, in parallel, small files up to 1,000 to a request (``upload_batch``,
  a batch body up to 8 MiB); a file of ``RESUMABLE_BYTES`` or more goes in
  parts through an upload session whose id and finished parts are kept in a small JSON file under
  ``state_dir``, so a client killed mid-upload resumes where the server's parts end and never
  sends a finished part again;
- ``missing_chunks``, ``upload_pack``, ``register_file``: a large file's chunks the project lacks
  (1,000 ids per request), sent in packs, then the file registered by its recipe blob (the server
  rebuilds it and checks its sha256); a server without these routes raises ``ChunkRoutesMissing``;
- ``download``: a blob into a file, verified against its digest; an interrupted download resumes
  with an HTTP ``Range`` from the bytes already on disk (``<target>.partial``);
- ``commit``, ``version``, ``versions``, ``collections``: versions as JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tracklet.client.http import HttpClient, response_detail
from tracklet.core import threads
from tracklet.core.pools import Pool
from tracklet.errors import ArtifactDeleted, ArtifactError, ArtifactNotFound, RemoteError

MAX_DIGESTS_PER_QUERY = 1000  # the server's limit per "which are missing?" request
PART_BYTES = 8 << 20
RESUMABLE_BYTES = 32 << 20  # files this large go in parts (resumable); smaller: one streamed PUT
UPLOAD_WORKERS = 8
BATCH_FILE_BYTES = 1 << 20  # files up to this size go many to a request
BATCH_BYTES = 8 << 20  # at most this many bytes ...
BATCH_FILES = 1000  # ... and files per request (the server's limit)
_CHUNK = 1 << 20
VERSIONS_PAGE = 1000  # the server's largest page of versions


class ChunkRoutesMissing(RemoteError):
    """The server has no chunk routes (an older server): send large files whole instead."""


class _FileBody:
    """A file's bytes ``[start, start + length)`` as a request body that can be sent again (a
    retry re-reads the file; a generator could not be replayed)."""

    def __init__(self, path: str | os.PathLike, start: int = 0, length: int | None = None) -> None:
        self.path, self.start = path, start
        self.length = os.stat(path).st_size - start if length is None else length

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as handle:
            handle.seek(self.start)
            remaining = self.length
            while remaining > 0 and (chunk := handle.read(min(_CHUNK, remaining))):
                remaining -= len(chunk)
                yield chunk


class Pieces:
    """Buffers sent one after another as one request body, without joining them (``HttpClient.
    send_buffers``: each goes to the socket as it is). Iterable again and again (the buffers, as
    byte views), so a retry can send it again."""

    def __init__(self, buffers: Iterable[bytes | bytearray | memoryview]) -> None:
        self.buffers = [memoryview(buffer).cast("B") for buffer in buffers]
        self.length = sum(view.nbytes for view in self.buffers)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[memoryview]:
        return iter(self.buffers)


Source = Callable[[], Iterable[bytes]]  # a blob's bytes in pieces, read again from the start on each call


class _Replayable:
    """A ``Source`` as a request body that a retry can send again."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.source())


def _parts(pieces: Iterable[bytes], part_size: int) -> Iterator[tuple[int, bytes]]:
    """``(number, bytes)`` of consecutive parts of ``part_size`` bytes (the last: the rest)."""
    buffer = bytearray()
    number = 1
    for piece in pieces:
        buffer += piece
        while len(buffer) >= part_size:
            yield number, bytes(buffer[:part_size])
            del buffer[:part_size]
            number += 1
    if buffer or number == 1:
        yield number, bytes(buffer)


class ArtifactClient:
    """The artifact routes of the server ``http`` talks to; ``state_dir`` keeps resumable upload
    sessions (one small JSON file per blob in progress)."""

    def __init__(self, http: HttpClient, state_dir: str | os.PathLike | None = None, *,
                 workers: int = UPLOAD_WORKERS, part_bytes: int = PART_BYTES,
                 resumable_bytes: int = RESUMABLE_BYTES) -> None:
        self.http = http
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.workers = workers
        self.part_bytes = part_bytes
        self.resumable_bytes = resumable_bytes

    def _base(self, project: str) -> str:
        return f"/api/v1/projects/{project}/artifacts"

    # ------------------------------------------------------------ which blobs are missing

    def missing(self, project: str, digests: list[str]) -> set[str]:
        """The digests of ``digests`` the project lacks on the server (1,000 per request)."""
        unique = list(dict.fromkeys(digests))
        lacking: set[str] = set()
        for start in range(0, len(unique), MAX_DIGESTS_PER_QUERY):
            batch = unique[start:start + MAX_DIGESTS_PER_QUERY]
            response = self.http.request("POST", f"{self._base(project)}/_blobs/missing", idempotent=True,
                                         json={"digests": batch})
            if response.status_code != 200:
                raise self.http.refusal(response, what=f"a query of {len(batch)} artifact digests")
            lacking.update(response.json()["missing"])
        return lacking

    # ------------------------------------------------------------ chunks of large files

    def missing_chunks(self, project: str, chunk_ids: list[str], *, stream: str | None = None,
                       segment: int = 0) -> set[str]:
        """The chunk ids (blake3 hex) of ``chunk_ids`` the project lacks (1,000 per request);
        ``ChunkRoutesMissing`` if the server has no chunk routes. With ``stream``, ``chunk_ids``
        (at most 1,000, in file order, repeats included) are segment ``segment`` of a file being
        streamed: the server hashes the file as they arrive (``register_file(..., stream=)``)."""
        if stream is not None and len(chunk_ids) > MAX_DIGESTS_PER_QUERY:
            raise ValueError(f"a stream's segment holds at most {MAX_DIGESTS_PER_QUERY} chunk ids, got {len(chunk_ids)}")
        unique = list(dict.fromkeys(chunk_ids)) if stream is None else chunk_ids
        lacking: set[str] = set()
        for start in range(0, len(unique), MAX_DIGESTS_PER_QUERY):
            batch = unique[start:start + MAX_DIGESTS_PER_QUERY]
            query: dict[str, object] = {"chunks": batch}
            if stream is not None:
                query.update(stream=stream, segment=segment)
            response = self.http.request("POST", f"{self._base(project)}/_chunks/missing", idempotent=True,
                                         json=query)
            if response.status_code in (404, 405):
                raise ChunkRoutesMissing(f"{self.http.base_url} takes no chunks (an older server)")
            if response.status_code != 200:
                raise self.http.refusal(response, what=f"a query of {len(batch)} chunk ids")
            lacking.update(response.json()["missing"])
        return lacking

    def upload_pack(self, project: str, pack_id: str, data: bytes | Pieces) -> int:
        """Send one pack of chunks (``tracklet.artifacts.packs.build_pack``'s bytes, or its chunk
        bytes and trailer as ``Pieces``: no copy joins them); bytes sent. The server keeps it only
        if it arrives whole with every chunk matching its id."""
        buffers = data.buffers if isinstance(data, Pieces) else [data]
        response = self.http.send_buffers("PUT", f"{self._base(project)}/_packs/{pack_id}", buffers, idempotent=True,
                                          headers={"Content-Type": "application/octet-stream"})
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"the upload of pack {pack_id}")
        return len(data)

    def register_file(self, project: str, digest: str, size: int, recipe: str, *, stream: str | None = None) -> bool:
        """Register file ``digest`` as the chunks recipe blob ``recipe`` lists (its chunks and the
        recipe uploaded first; ``stream``: the stream they were sent in, see ``missing_chunks``);
        False if the project held it already."""
        # The server may read the whole file back to check it: give it time for the size (20 MB/s).
        body: dict[str, object] = {"digest": digest, "size": size, "recipe": recipe}
        if stream is not None:
            body["stream"] = stream
        response = self.http.request("POST", f"{self._base(project)}/_files", idempotent=True, json=body,
                                     timeout=max(60.0, size / 20e6))
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"registering file {digest}")
        return bool(response.json()["registered"])

    # ------------------------------------------------------------ uploads

    def upload_files(self, project: str, files: list[tuple[str, str, int]],
                     on_done: Callable[[int, int], None] | None = None) -> int:
        """Upload ``(path, sha256, size)`` blobs in parallel: small files many to a request
        (``upload_batch``), large ones each on its own (resumably from ``RESUMABLE_BYTES``);
        bytes sent. ``on_done(files, bytes)`` after each request. The first failure is raised
        once the others end."""
        sent = 0
        lock = threading.Lock()
        jobs: list[list[tuple[str, str, int]]] = []
        batch: list[tuple[str, str, int]] = []
        batch_bytes = 0
        for item in files:
            if item[2] > BATCH_FILE_BYTES:
                jobs.append([item])
                continue
            if batch and (batch_bytes + item[2] > BATCH_BYTES or len(batch) == BATCH_FILES):
                jobs.append(batch)
                batch, batch_bytes = [], 0
            batch.append(item)
            batch_bytes += item[2]
        if batch:
            jobs.append(batch)

        def one(job: list[tuple[str, str, int]]) -> None:
            nonlocal sent
            if len(job) == 1 and job[0][2] > BATCH_FILE_BYTES:
                count = self.upload_file(project, *job[0])
            else:
                count = self.upload_batch(project, job)
            with lock:
                sent += count
            if on_done is not None:
                on_done(len(job), sum(item[2] for item in job))

        if len(jobs) <= 1:
            for job in jobs:
                one(job)
            return sent
        with Pool(min(self.workers, len(jobs)), "tracklet-upload") as pool:
            results = [pool.submit(one, job) for job in jobs]
            for result in results:
                threads.result(result)  # in slices on the main thread: a Ctrl-C is seen (core/threads.py)
        return sent

    def upload_batch(self, project: str, files: list[tuple[str, str, int]]) -> int:
        """Upload small files' blobs in one request (each framed as its sha256 in 64 ASCII hex
        digits, its length in 8 bytes big-endian, its bytes); bytes sent. ``RemoteError`` naming
        any the server rejected (its bytes no longer match the digest)."""
        frames = []
        for path, digest, size in files:
            with open(path, "rb") as handle:
                data = handle.read(size + 1)
            frames.append(digest.encode() + len(data).to_bytes(8, "big") + data)
        body = b"".join(frames)
        response = self.http.request("POST", f"{self._base(project)}/_blobs/batch", content=body, idempotent=True,
                                     headers={"Content-Type": "application/octet-stream"})
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"an upload of {len(files)} blobs")
        rejected = response.json()["rejected"]
        if rejected:
            paths = {digest: path for path, digest, _ in files}
            raise RemoteError(f"{self.http.base_url} refused {len(rejected)} blob(s): "
                              + "; ".join(f"{paths.get(item['digest'], item['digest'])}: {item['detail']}"
                                          for item in rejected[:5]))
        return sum(size for _, _, size in files)

    def upload_file(self, project: str, path: str | os.PathLike | Source, digest: str, size: int) -> int:
        """Upload one blob from ``path`` (a file, or a ``Source`` of its bytes); bytes sent in this call."""
        if size >= self.resumable_bytes:
            return self.upload_resumable(project, path, digest, size)
        body: Any = _Replayable(path) if callable(path) else _FileBody(path, 0, size)
        response = self.http.request("PUT", f"{self._base(project)}/_blobs/{digest}", content=body,
                                     headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"the upload of {path} (sha256 {digest})")
        return size

    def upload_bytes(self, project: str, data: bytes) -> str:
        """Upload ``data`` as a blob; its digest."""
        digest = hashlib.sha256(data).hexdigest()
        response = self.http.request("PUT", f"{self._base(project)}/_blobs/{digest}", content=data,
                                     headers={"Content-Type": "application/octet-stream"})
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"the upload of blob {digest}")
        return digest

    def _state_file(self, project: str, digest: str) -> Path | None:
        if self.state_dir is None:
            return None
        key = hashlib.sha256(f"{self.http.base_url}\0{project}\0{digest}".encode()).hexdigest()[:32]
        return self.state_dir / f"{key}.json"

    def _load_state(self, path: Path | None) -> dict[str, Any] | None:
        if path is None:
            return None
        try:
            state = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) and isinstance(state.get("id"), str) else None

    def _save_state(self, path: Path | None, state: dict[str, Any]) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        temporary.write_bytes(json.dumps(state).encode())
        os.replace(temporary, path)

    def upload_resumable(self, project: str, path: str | os.PathLike | Source, digest: str, size: int) -> int:
        """Upload one large blob in parts through an upload session, resuming the session a
        killed client recorded under ``state_dir`` (only the parts the server lacks are sent).
        ``path`` is a file, or a ``Source`` (a callable giving the bytes in pieces, read once, in
        order: its parts are sent one at a time). Bytes sent in this call."""
        base = f"{self._base(project)}/_uploads"
        state_path = self._state_file(project, digest)
        state = self._load_state(state_path)
        session = None
        if state is not None and state.get("size") == size:
            response = self.http.request("GET", f"{base}/{state['id']}")
            if response.status_code == 200:
                session = response.json()
            elif response.status_code != 404:  # 404: expired or completed; start again
                raise self.http.refusal(response, what=f"resuming the upload of {path}")
        if session is None:
            response = self.http.request("POST", base, json={"digest": digest, "size": size,
                                                             "part_size": self.part_bytes})
            if response.status_code != 200:
                raise self.http.refusal(response, what=f"starting the upload of {path} (sha256 {digest})")
            session = response.json()
            state = {"id": session["id"], "digest": digest, "size": size, "part_size": session["part_size"],
                     "parts": []}
            self._save_state(state_path, state)
        assert state is not None
        part_size = session["part_size"]
        done = {part["number"] for part in session["parts"]}
        todo = [number for number in range(1, session["part_count"] + 1) if number not in done]
        lock = threading.Lock()
        sent = 0

        def send(number: int, data: bytes | None = None) -> None:
            nonlocal sent
            start = (number - 1) * part_size
            length = min(part_size, size - start)
            body: Any = _FileBody(path, start, length) if data is None else data  # type: ignore[arg-type]
            part_digest = hashlib.sha256(data if data is not None else b"".join(body)).hexdigest()
            response = self.http.request(
                "PUT", f"{base}/{session['id']}/parts/{number}", content=body,
                headers={"Content-Length": str(length), "X-Tracklet-Sha256": part_digest,
                         "Content-Type": "application/octet-stream"})
            if response.status_code != 200:
                raise self.http.refusal(response, what=f"part {number} of the upload of {path}")
            with lock:
                sent += length
                state["parts"] = sorted({*state["parts"], number})
                self._save_state(state_path, state)

        if callable(path):  # a stream: cut into parts in order, the server's parts skipped
            for number, data in _parts(path(), part_size):
                if number in todo:
                    send(number, data)
        elif todo:
            with Pool(min(self.workers, len(todo)), "tracklet-part") as pool:
                for result in [pool.submit(send, number) for number in todo]:
                    threads.result(result)  # in slices on the main thread (core/threads.py)
        response = self.http.request("POST", f"{base}/{session['id']}/complete", idempotent=True)
        if response.status_code == 404 and not self.missing(project, [digest]):
            pass  # completed by an earlier attempt whose answer was lost
        elif response.status_code != 200:
            if response.status_code == 400 and state_path is not None:
                with contextlib.suppress(OSError):
                    state_path.unlink()  # the session is dropped on a mismatch: start again next time
            raise self.http.refusal(response, what=f"completing the upload of {path}")
        if state_path is not None:
            with contextlib.suppress(OSError):
                state_path.unlink()
        return sent

    # ------------------------------------------------------------ versions

    def commit(self, project: str, name: str, document: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """Commit a version (``CommitRequest``: type, manifest, description, metadata, aliases,
        logged_by); the server's ``CommitResponse``. ``idempotent``: the commit may be sent again
        when its answer is lost (one with a ``commit_id``: the server answers the version the first
        send made)."""
        response = self.http.request("POST", f"{self._base(project)}/{name}/versions", json=document,
                                     idempotent=idempotent)
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"committing artifact {project}/{name}")
        return response.json()

    def version(self, project: str, name: str, selector: str) -> dict[str, Any]:
        """One ``ArtifactVersion`` (``vN``, ``latest`` or an alias); ``ArtifactNotFound`` if none."""
        return self.http.get_json(f"{self._base(project)}/{name}/versions/{selector}",
                                  missing=ArtifactNotFound)["version"]

    def save_aliases(self, project: str, name: str, version: int, add: list[str], remove: list[str]) -> dict[str, Any]:
        """Point ``add`` at ``project/name:v<version>`` and take ``remove`` off it, in one
        transaction on the server; the version after (``ArtifactVersion``). ``ArtifactNotFound``
        for no such version, ``ArtifactError`` with the server's reason for a refused alias."""
        response = self.http.request("POST", f"{self._base(project)}/{name}/versions/v{int(version)}/aliases",
                                     json={"add": list(add), "remove": list(remove)})
        if response.status_code == 400:
            raise ArtifactError(f"{project}/{name}:v{int(version)}: {response_detail(response)}")
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"moving the aliases of {project}/{name}:v{int(version)}",
                                    missing=ArtifactNotFound)
        return response.json()["version"]

    def edit_version(self, project: str, name: str, version: int, edit: dict[str, Any]) -> dict[str, Any]:
        """Edit ``project/name:v<version>`` (``VersionEditRequest``: description, metadata, tags and
        aliases added and removed) in one transaction on the server; the version after
        (``ArtifactVersion``). ``ArtifactNotFound`` for no such version, ``ArtifactError`` with the
        server's reason for a refused edit, or saying the server is too old to edit one (404/405:
        a server from before session 24 moves aliases only)."""
        where = f"{project}/{name}:v{int(version)}"
        response = self.http.request("PATCH", f"{self._base(project)}/{name}/versions/v{int(version)}", json=edit)
        if response.status_code == 400:
            raise ArtifactError(f"{where}: {response_detail(response)}")
        if response.status_code == 405 or (response.status_code == 404 and "does not exist" not in
                                           response_detail(response)):
            raise ArtifactError(f"{where}: the server at {self.http.base_url} can't edit a version's description, "
                                "metadata or tags (an older tracklet server: upgrade it); nothing was changed")
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"editing {where}", missing=ArtifactNotFound)
        return response.json()["version"]

    def delete_version(self, project: str, name: str, version: int, *, delete_aliases: bool = False,
                       break_registry_links: bool = False) -> dict[str, Any]:
        """Delete ``project/name:v<version>`` on the server (``tracklet artifact rm``'s rules);
        ``{"deleted": ArtifactVersion, "aliases_dropped": [...], "registry_links_broken": [...]}``.
        ``ArtifactError`` with the server's reason when it refuses (custom aliases without
        ``delete_aliases``, a version the model registry links without ``break_registry_links``),
        ``RemoteError`` for a 403 (``break_registry_links`` needs the member role in every
        registry linking it), ``ArtifactNotFound`` for no such version, ``ArtifactDeleted``
        (one) for a version deleted already (the server's 410)."""
        params = {"delete_aliases": "true" if delete_aliases else "false"}
        if break_registry_links:  # only when asked: a server that predates it ignores it and refuses (409)
            params["break_registry_links"] = "true"
        response = self.http.request("DELETE", f"{self._base(project)}/{name}/versions/v{int(version)}",
                                     params=params)
        if response.status_code in (400, 409):
            raise ArtifactError(response_detail(response))
        if response.status_code == 410:
            raise ArtifactDeleted(f"deleting {project}/{name}:v{int(version)}: {response_detail(response)} already "
                                  f"(by this deletion's earlier attempt, or by someone else)")
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"deleting {project}/{name}:v{int(version)}",
                                    missing=ArtifactNotFound)
        return response.json()

    def delete_collection(self, project: str, name: str) -> dict[str, Any]:
        """Delete every version of ``project/name`` on the server, with its aliases
        (``{"deleted": [ArtifactVersion, ...], "aliases_dropped": [...]}``). ``ArtifactError`` with
        the server's reason when it refuses (the model registry links a version), ``RemoteError``
        for a 403 (it needs the project's admin role), ``ArtifactNotFound`` for no such collection."""
        return self._collection_call("DELETE", project, name, "deleting")

    def set_collection_type(self, project: str, name: str, type: str) -> dict[str, Any]:  # noqa: A002
        """Give every version of ``project/name`` on the server the type ``type``
        (``{"name", "type", "previous_type"}``); refusals as ``delete_collection``'s (a 400, an
        invalid type: ``ArtifactError``)."""
        return self._collection_call("PATCH", project, name, "changing the type of", json={"type": type})

    def edit_collection(self, project: str, name: str, edit: Any) -> dict[str, Any]:
        """Apply ``edit`` (a ``CollectionEdit``: type, description, tags replaced, added and
        removed; each None or empty left out) to the server's collection ``project/name`` in one
        request, one transaction (``{"name", "type", "previous_type", "description", "tags"}``); a
        bad field or tag: ``ArtifactError`` naming it, nothing changed; the description and tags
        need the write role, a type the admin role (``RemoteError`` for the 403)."""
        body: dict[str, Any] = {key: value for key, value in (("type", edit.type), ("description", edit.description),
                                                               ("tags", edit.tags)) if value is not None}
        if edit.add_tags:
            body["add_tags"] = list(edit.add_tags)
        if edit.remove_tags:
            body["remove_tags"] = list(edit.remove_tags)
        return self._collection_call("PATCH", project, name, "editing", json=body)

    def _collection_call(self, method: str, project: str, name: str, doing: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, f"{self._base(project)}/{name}", **kwargs)
        if response.status_code == 405 or response.status_code == 404 and response_detail(response) == "Not Found":
            raise ArtifactError(f"{doing} artifact collection {project}/{name}: the server at {self.http.base_url} "
                                "has no route for it (a tracklet server older than this client): upgrade it; nothing "
                                "was changed")
        if response.status_code in (400, 409):
            raise ArtifactError(response_detail(response))
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"{doing} artifact collection {project}/{name}",
                                    missing=ArtifactNotFound)
        return response.json()

    def lineage(self, project: str, name: str, selector: str) -> dict[str, list[dict[str, Any]]]:
        """The runs that logged and used a version (``{"logged_by": [...], "used_by": [...]}``, each
        run's ``project``, ``run_id``, ``name``, ``state``; runs the key may not read are left out)."""
        found = self.http.get_json(f"{self._base(project)}/{name}/versions/{selector}", missing=ArtifactNotFound)
        return {"logged_by": list(found.get("logged_by") or []), "used_by": list(found.get("used_by") or [])}

    def versions(self, project: str, name: str) -> list[dict[str, Any]]:
        """Every readable ``ArtifactVersion`` of a collection, oldest first (the server pages them
        newest first)."""
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.http.get_json(f"{self._base(project)}/{name}/versions", missing=ArtifactNotFound,
                                      offset=offset, limit=VERSIONS_PAGE)
            found.extend(page["versions"])
            offset += len(page["versions"]) + len(page["damaged"])
            if offset >= page["total"] or not page["versions"] and not page["damaged"]:
                return found[::-1]

    def collections(self, project: str, type: str | None = None) -> list[dict[str, Any]]:  # noqa: A002
        return self.http.get_json(self._base(project), type=type)["collections"]

    # ------------------------------------------------------------ downloads

    def download(self, project: str, digest: str, target: str | os.PathLike, *, attempts: int = 4) -> int:
        """Fetch blob ``digest`` into ``target`` (replaced only once complete and verified). A
        broken transfer is resumed from ``<target>.partial`` with a ranged request, up to
        ``attempts`` times. Bytes fetched."""
        import httpx

        target = Path(target)
        partial = target.with_name(target.name + ".partial")
        fetched = 0
        for attempt in range(attempts):
            try:
                fetched += self._fetch(project, digest, partial)
                break
            except httpx.TransportError as error:
                if attempt == attempts - 1:
                    raise RemoteError(f"downloading blob {digest} from {self.http.base_url} failed {attempts} "
                                      f"times: {type(error).__name__}: {error}") from None
                self.http._sleep(self.http.retry.backoff(attempt))
        from tracklet.core.digests import file_hasher

        hasher = file_hasher(digest)  # a blob's sha256, or a chunked file's blake3:<hex>
        with open(partial, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
        if hasher.hexdigest() != digest:
            partial.unlink()
            raise RemoteError(f"blob {digest} from {self.http.base_url} arrived damaged (its bytes hash to "
                              f"{hasher.hexdigest()}); it was not kept, download it again")
        os.replace(partial, target)
        return fetched

    def iter_blob(self, project: str, digest: str, *, attempts: int = 4) -> Iterator[bytes]:
        """A blob's bytes in pieces as they arrive; a broken transfer continues with a ranged
        request from the bytes already given, up to ``attempts`` times. Not verified here: the
        consumer checks the digest (``BlobCache.put_stream`` does)."""
        import httpx

        url = f"{self._base(project)}/_blobs/{digest}"
        have = 0
        for attempt in range(attempts):
            try:
                with self.http.stream("GET", url, headers={"Range": f"bytes={have}-"} if have else {}) as response:
                    if response.status_code == 416 and have:
                        return  # everything arrived before the break
                    if response.status_code not in (200, 206) or have and response.status_code != 206:
                        response.read()
                        raise self.http.refusal(response, what=f"the download of blob {digest}",
                                                missing=ArtifactNotFound)
                    for chunk in response.iter_bytes(_CHUNK):
                        have += len(chunk)
                        yield chunk
                return
            except httpx.TransportError as error:
                if attempt == attempts - 1:
                    raise RemoteError(f"downloading blob {digest} from {self.http.base_url} failed {attempts} "
                                      f"times: {type(error).__name__}: {error}") from None
                self.http._sleep(self.http.retry.backoff(attempt))

    def _fetch(self, project: str, digest: str, partial: Path) -> int:
        """Append what ``partial`` lacks of the blob (all of it if it is absent)."""
        have = partial.stat().st_size if partial.is_file() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        fetched = 0
        with self.http.stream("GET", f"{self._base(project)}/_blobs/{digest}", headers=headers) as response:
            if response.status_code == 416 and have:  # the partial file is whole already: verified by the caller
                return 0
            if response.status_code not in (200, 206):
                response.read()
                raise self.http.refusal(response, what=f"the download of blob {digest}", missing=ArtifactNotFound)
            with open(partial, "ab" if response.status_code == 206 else "wb") as handle:
                for chunk in response.iter_bytes(_CHUNK):
                    handle.write(chunk)
                    fetched += len(chunk)
        return fetched

    def read_range(self, project: str, digest: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of blob ``digest``: one ranged request (retried as any read).
        Not verified here: the caller checks what it asked for (each chunk against its id)."""
        if not 0 <= start < end:
            raise ValueError(f"an empty or negative range [{start}, {end})")
        response = self.http.request("GET", f"{self._base(project)}/_blobs/{digest}",
                                     headers={"Range": f"bytes={start}-{end - 1}"})
        if response.status_code != 206:
            raise self.http.refusal(response, what=f"a range of blob {digest}", missing=ArtifactNotFound)
        data = response.content
        if len(data) != end - start:
            raise RemoteError(f"blob {digest} from {self.http.base_url}: asked for {end - start:,} bytes at "
                              f"{start:,}, got {len(data):,}")
        return data

    def read(self, project: str, digest: str, limit: int = 1 << 30) -> bytes:
        """A small blob's bytes (a manifest), verified against its digest."""
        response = self.http.request("GET", f"{self._base(project)}/_blobs/{digest}")
        if response.status_code != 200:
            raise self.http.refusal(response, what=f"reading blob {digest}", missing=ArtifactNotFound)
        data = response.content[: limit + 1]
        if len(data) > limit or hashlib.sha256(data).hexdigest() != digest:
            raise RemoteError(f"blob {digest} from {self.http.base_url} arrived damaged or too large")
        return data
