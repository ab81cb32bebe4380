"""The artifact worker of a run: stores logged artifacts off the training thread, in order.

``Run.log_artifact`` freezes the draft and hands it here; one daemon thread per run hashes,
stores and registers each, then queues an ``ArtifactLogged`` record to the run's sender, so the
store can derive lineage. A failure (a file deleted before it was read, a full disk) is
contained to that artifact: a ``TrackletWarning`` names it and ``artifact.wait()`` raises it;
the run goes on. ``finish()`` waits for what is pending within its timeout (``close``); a version
still being stored then is committed if the process lives long enough, and is never half-visible.

Online runs (``remote``: the server's URL and key) then upload each committed version to the
server on the same thread (``artifacts/remote.py``: only the blobs the server lacks, large ones
resumably) before ``wait()`` returns. An upload that fails, or that ``finish()`` doesn't wait for,
leaves the version committed locally, with a warning; ``tracklet artifact push`` sends it later.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracklet.artifacts.artifact import Artifact
from tracklet.artifacts.entries import Pending
from tracklet.core import lifecycle, threads
from tracklet.core.modules import loaded

if TYPE_CHECKING:
    from tracklet.artifacts.storage import ArtifactStore


def version_ref(target: Any, info: Any) -> None:
    target.project, target.name, target.type = info.project, info.name, info.type
    target.version, target.digest = info.version, info.digest


def logged_record(info: Any, aliases: list[str], reused: bool, bytes_written: int, when: float) -> Any:
    """The ``ArtifactLogged`` record, a ``core/wire.py`` message: no protobuf import (~30 ms of CPU
    in a fresh process) for a run whose only artifact is its code snapshot, logged in ``finish()``."""
    from tracklet.core import wire

    record = wire.Record()
    logged = record.artifact_logged
    version_ref(logged.artifact, info)
    logged.aliases.extend(aliases)
    logged.size_bytes, logged.file_count, logged.time = info.size, info.file_count, when
    logged.reused, logged.bytes_written = reused, bytes_written
    return record


def used_record(info: Any, when: float) -> Any:
    """The ``ArtifactUsed`` record, a ``core/wire.py`` message (see :func:`logged_record`)."""
    from tracklet.core import wire

    record = wire.Record()
    version_ref(record.artifact_used.artifact, info)
    record.artifact_used.time = when
    return record


_workers: weakref.WeakSet[ArtifactWorker] = weakref.WeakSet()
_drain_registered = False


def _drain_workers() -> None:
    """Wait (each worker within its ``exit_timeout``) for the versions runs logged to be stored
    and uploaded, while ``concurrent.futures`` still takes work. A script that ends without
    ``finish()`` (or by Ctrl-C) has its runs finished by ``atexit``, which runs after threading's
    exit hooks, one of which stops every thread pool: the upload of a large checkpoint logged last
    then failed ("cannot schedule new futures after interpreter shutdown")."""
    lifecycle.interrupts_stop_waiting()
    try:
        if lifecycle.waiting_stopped_at_exit():
            return
        deadline = time.monotonic() + max((worker.exit_timeout for worker in list(_workers)), default=0.0)
        for worker in list(_workers):
            worker._close_by = min(worker._close_by, deadline)
            for artifact in list(worker._logged):
                if artifact._state == "pending":
                    try:
                        artifact.wait(max(0.0, deadline - time.monotonic()))
                    except Exception:  # noqa: BLE001 - reported by the worker; finish() goes on as ever
                        pass
    except KeyboardInterrupt:  # a second Ctrl-C stops waiting: finish() reports what is not stored, at once
        lifecycle.stop_waiting_at_exit()


def _drain_at_thread_shutdown() -> None:
    """Register ``_drain_workers`` with threading's exit hooks once, after
    ``concurrent.futures.thread`` registered its own (they run in reverse order, so this one runs
    first)."""
    global _drain_registered
    if _drain_registered:
        return
    _drain_registered = True
    # A forked child (multiprocessing, DataLoader workers) inherits the hook and the parent's
    # workers, but not their threads: it would wait out exit_timeout for versions it never stores.
    os.register_at_fork(after_in_child=_workers.clear)
    register = getattr(threading, "_register_atexit", None)  # CPython's, what concurrent.futures uses
    if register is not None:
        try:
            register(_drain_workers)
        except RuntimeError:  # the interpreter is already shutting down: nothing to run before
            pass


class ArtifactWorker:
    """One daemon thread per run that commits logged artifacts in the order they were logged."""

    def __init__(self, root: Path, put: Callable[[Any], None], warn: Callable[[Any, str], None],
                 run_path: str, remote: tuple[str, str | None] | None = None, exit_timeout: float = 30.0) -> None:
        self.exit_timeout = exit_timeout  # how long interpreter exit waits for online uploads (finish_timeout)
        self._root = root
        self._put = put
        self._warn = warn
        self._run_path = run_path
        self._remote = remote  # (base_url, api_key) of an online run's server
        self._client: Any = None
        # A deque and a semaphore, not queue.Queue: importing ``queue`` on the caller's first
        # log_artifact cost more than the rest of the call.
        self._jobs: deque[tuple | None] = deque()
        self._ready = threading.Semaphore(0)
        self._started = False
        self._done = threading.Event()  # set when the thread has ended
        self._logged: list[Artifact] = []  # still being stored; pruned as they settle
        # When finish() (close) or interpreter exit (_drain_workers) stops waiting for this thread (a
        # time.monotonic reading): an incremental version stops waiting for its server's base before it.
        self._close_by = float("inf")

    def _warn_failed(self, artifact: Any, error: Exception) -> None:
        """One warning per failed artifact (a repeat of the same one is dropped by the run's warner)."""
        self._warn(("artifact", artifact.name, id(artifact)),
                   f"tracklet: artifact {artifact.name!r} could not be stored: {error}")

    def _store(self) -> ArtifactStore:
        """The data root's store, opened (fsspec, SQLite) on this thread, not the caller's."""
        from tracklet.artifacts.storage import open_store

        return open_store(self._root)

    def _streamer(self, artifact: Artifact) -> Any:
        """A ``remote.ServerChunks`` for the online run's server: the version's large files are
        cut once and their chunks streamed there, with no local copy (off with
        ``TRACKLET_ARTIFACT_STREAM_CHUNKS=0``: stored locally, uploaded after the commit). Its
        client gives up after two tries: the commit then stores the chunks locally, and ``_upload``
        after the commit sends them, with its retries."""
        import os

        # An offline run imports nothing here (the server client, httpx): storing needs none of it.
        if self._remote is None or artifact.project is None:
            return None
        from tracklet.artifacts.remote import STREAM_CHUNKS_ENV, ServerChunks, connect

        try:  # the upload's pools: their exit hook first, so that ours (_drain_at_exit) runs before it
            import concurrent.futures.thread  # noqa: F401
        except RuntimeError:  # the interpreter is shutting down: the pools run their jobs on this thread
            pass
        self._drain_at_exit()
        if os.environ.get(STREAM_CHUNKS_ENV, "1") == "0":
            return None
        base_url, api_key = self._remote
        return ServerChunks(connect(base_url, self._root, api_key=api_key, attempts=2), artifact.project)

    def _base_client(self, artifact: Artifact) -> Any:
        """For an incremental draft of an online run: a client of its server (two tries, as the
        chunk streamer's), whose latest version of the collection the draft is merged onto
        (``artifacts/incremental.py``); None otherwise."""
        if self._remote is None or not artifact._incremental:
            return None
        from tracklet.artifacts.remote import connect

        base_url, api_key = self._remote
        return connect(base_url, self._root, api_key=api_key, attempts=2)

    def _upload(self, artifact: Artifact, streamer: Any, result: Any) -> None:
        """Send a committed version to the online run's server (``Artifact._commit_with``'s
        ``after``): the blobs and chunks the server lacks (none of the chunks ``streamer`` got
        there), the manifest, the commit."""
        from tracklet.artifacts.remote import connect, upload_version

        self._drain_at_exit()
        assert self._remote is not None
        base_url, api_key = self._remote
        try:
            if self._client is None:
                self._client = connect(base_url, self._root, api_key=api_key)
            # The draft's own commit id: the version stored may be an earlier one (the same files as
            # the local latest), but this log is a commit of its own on the server (that version took
            # this id: ``tracklet sync`` sends it again under the id sent here).
            answer = upload_version(self._client, self._store(), result.info, artifact._requested_aliases,
                                    result.manifest, commit_id=artifact._commit_id)
            # The server numbers its own versions: what a registry link on that server names.
            artifact._server_version = int(answer["version"]["index"])
            artifact._server_remote = (base_url, api_key, str(self._root))  # its aliases move there too (save())
        except Exception as error:
            self._warn(("artifact-upload", artifact.name, id(artifact)),
                       f"tracklet: artifact {result.info.qualified_name} is stored locally, but uploading it to "
                       f"{base_url} failed: {error}; `tracklet artifact push {result.info.qualified_name} --url "
                       f"{base_url}` sends it later")
            raise

    def _drain_at_exit(self) -> None:
        """Have interpreter exit wait for this run's versions to be stored and uploaded while
        thread pools still work (``_drain_workers``). Only once ``concurrent.futures.thread`` is
        imported (its exit hook is then registered before ours, so ours runs before it)."""
        if self not in _workers and loaded("concurrent.futures.thread") is not None:
            _workers.add(self)
            _drain_at_thread_shutdown()

    def _submit(self, job: tuple | None) -> None:
        self._jobs.append(job)
        self._ready.release()
        if not self._started:
            # A bare thread (daemon-like, as before): threading.Thread.start() waits until the new
            # thread has run, 0.2-10 ms on a loaded machine, on the caller's first log_artifact.
            self._started = True
            threads.start_new(self._run)

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._done.set()

    def log(self, artifact: Artifact, pending: dict[str, Pending]) -> None:
        # Imported already (torch, Lightning, pandas do it): registered now, with nothing imported on
        # the caller's thread, so a script that ends right after this call still uploads it.
        self._drain_at_exit()
        self._logged = [a for a in self._logged if a._state == "pending"]
        self._logged.append(artifact)
        self._submit(("log", artifact, pending, time.time()))

    def settle(self, project: str, name: str, timeout: float | None = None) -> None:
        """Wait until the versions of ``project/name`` this run logged are stored (or failed), so
        that a run reads its own writes: ``use_artifact("name:latest")`` right after
        ``log_artifact`` finds the version it just logged."""
        for artifact in list(self._logged):
            if artifact.name == name and artifact.project == project and artifact._state == "pending":
                try:
                    artifact.wait(timeout)
                except Exception:  # noqa: BLE001 - a failed version was reported; use resolves what exists
                    pass

    def use(self, artifact: Artifact) -> None:
        """Record the use of an artifact this run logged and that is still being stored."""
        self._submit(("use", artifact, None, time.time()))

    def _loop(self) -> None:
        while True:
            self._ready.acquire()
            job = self._jobs.popleft()
            if job is None:
                return
            kind, artifact, pending, when = job
            try:
                if kind == "log":
                    streamer = self._streamer(artifact)
                    after = partial(self._upload, artifact, streamer) if self._remote is not None else None
                    server = self._base_client(artifact)
                    try:
                        result = artifact._commit_with(
                            self._store(), pending, self._run_path, after=after, chunk_target=streamer,
                            report=lambda error, artifact=artifact: self._warn_failed(artifact, error), server=server,
                            base_deadline=lambda: self._close_by,
                            warn=lambda text, artifact=artifact: self._warn(("artifact-base", artifact.name,
                                                                             id(artifact)), text))
                    finally:
                        if streamer is not None:
                            streamer.streamer.close()
                            streamer.client.http.close()
                        if server is not None:
                            server.http.close()
                    aliases = ["latest", *[a for a in artifact._requested_aliases if a != "latest"]]
                    record: Any = partial(logged_record, result.info, aliases, result.reused, result.bytes_written,
                                          when)
                elif artifact._state == "committed":
                    record = partial(used_record, artifact._info, when)
                else:
                    continue
            except Exception as error:  # contained to this artifact: wait() raises it
                self._warn_failed(artifact, error)
                continue
            try:
                self._put(record)
            except RuntimeError:  # the run finished before this version was committed (finish says so)
                pass

    def unfinished(self) -> list[str]:
        """One line per version this run logged that is not done yet (what ``finish()`` names
        when ``close`` timed out): committed locally but not uploaded (``tracklet sync`` sends
        it), or not stored (committed whole if the process lives long enough, else not kept)."""
        lines = []
        for artifact in list(self._logged):
            if artifact._done.is_set():
                continue
            if artifact._state == "committed" and self._remote is not None:
                name = artifact._info.qualified_name
                lines.append(f"{name} is stored locally, not yet on {self._remote[0]}: `tracklet sync` (or "
                             f"`tracklet artifact push {name} --url {self._remote[0]}`) uploads it")
            else:
                lines.append(f"{artifact.name!r} ({artifact.type}) is not stored: it is committed whole if this "
                             "process lives long enough, else not kept at all (log it again)")
        return lines

    def close(self, timeout: float) -> bool:
        """Store what is pending (within ``timeout``) and stop the thread. False on timeout."""
        if not self._started:
            return True
        self._close_by = min(self._close_by, time.monotonic() + timeout)
        self._submit(None)
        if not threads.wait(self._done, timeout):  # in slices: a Ctrl-C is seen (core/threads.py)
            return False
        if self._client is not None:
            self._client.http.close()
        return True


def prepare(artifact_or_path: Any, name: str | None, type: str | None) -> Artifact:
    """``log_artifact``'s first argument as an Artifact: an Artifact as is, a path as a new
    draft (a file with ``add_file``, a directory with ``add_dir``, a reference URI such as
    ``s3://bucket/key`` with ``add_reference``; name: the base name)."""
    import os
    import re

    if isinstance(artifact_or_path, Artifact):
        return artifact_or_path
    if isinstance(artifact_or_path, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(artifact_or_path))
        if name is None:
            base = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]", "-", os.path.basename(path.rstrip(os.sep))))
            name = base.lstrip(".-_")[:128] or "artifact"
        artifact = Artifact(name, type or "unspecified")
        if "://" in os.fspath(artifact_or_path) and not os.path.exists(artifact_or_path):
            artifact.add_reference(os.fspath(artifact_or_path))
        elif os.path.isdir(path):
            artifact.add_dir(path)
        else:
            artifact.add_file(path)
        return artifact
    raise TypeError(f"log_artifact() takes a tracklet.Artifact or a path; got {artifact_or_path.__class__.__name__}")
