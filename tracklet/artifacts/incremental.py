"""Incremental versions (W&B's ``wandb.Artifact(..., incremental=True)``): a draft holding only the
files to add or change (and the paths ``remove`` named) is stored as the collection's latest
version with those applied.

Which latest (docs/artifacts.md, "Incremental versions"):

- an online run's (its artifact worker has a server): **the server's**, read when the version is
  stored on the worker (its manifest only: no file bytes are fetched, and the files it names are not
  sent again, as the server holds them). A server that can't be read (unreachable, refusing, or not
  answering within ``BASE_WAIT_S``, nor before ``finish()`` stops waiting) leaves the local store's
  latest as the base, as offline;
- offline (and ``Artifact.save()`` outside a run): the data root's latest.

Either way the version records the manifest blob of its base (``VersionInfo.incremental_base``,
the blob kept in the local store), so its increment is known again whenever it is sent to a server
(the online run's upload, ``tracklet sync``, ``tracklet artifact push``): the commit names that base,
and a server whose latest version is another by then (a second process logged an incremental
version meanwhile, an offline version synced later) merges the increment onto its latest under
the collection's lock (``merged``), so no process's files are lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tracklet.artifacts.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestEntry

NO_BASE = ""  # an incremental version of a collection that had no version


def removed(path: str, removals: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``removals`` or under one of them (a directory removed)."""
    return any(path == gone or path.startswith(gone + "/") for gone in removals)


def onto(base: Manifest | None, pending: Mapping[str, Any], removals: Iterable[str]) -> dict[str, Any]:
    """What an incremental draft stores: the base's files less those ``removals`` name, with the
    draft's own (``pending``) over them."""
    gone = list(removals)
    kept = {} if base is None else {entry.path: entry for entry in base if not removed(entry.path, gone)}
    return {**kept, **pending}


def _same(left: ManifestEntry, right: ManifestEntry) -> bool:
    return (left.digest, left.size, left.ref) == (right.digest, right.size, right.ref)


def increment(base: Manifest, version: Manifest) -> tuple[dict[str, ManifestEntry], list[str]]:
    """What ``version`` changed of ``base``: its entries that are new or differ, and the base's
    paths it no longer has."""
    changed = {entry.path: entry for entry in version if entry.path not in base or not _same(base[entry.path], entry)}
    gone = [entry.path for entry in base if entry.path not in version]
    return changed, gone


def merged(latest: Manifest | None, changed: Mapping[str, ManifestEntry], gone: Iterable[str]) -> Manifest:
    """``latest`` with an increment (``increment``'s result) applied: what a server commits when its
    latest version moved since the increment's base was read."""
    gone = set(gone)
    entries = {} if latest is None else {entry.path: entry for entry in latest if entry.path not in gone}
    entries.update(changed)
    return Manifest(entries)


#: How long an online run's artifact worker waits for the server's latest version (the base) before
#: it stores the version on the data root's latest instead (docs/artifacts.md, "Incremental versions").
#: Bounded so that a server that accepts connections and never answers (stopped, overloaded, a proxy
#: holding the request) can't keep the version unstored until ``finish()`` gives up and the process
#: ends without it: the version recording its base, a later send merges it onto the server's latest.
BASE_WAIT_S = 5.0
#: The wait also ends this long before ``finish()`` (or interpreter exit) stops waiting for the
#: worker (``deadline``), leaving the local commit time to land first.
BASE_WAIT_MARGIN_S = 1.0


def _server_base(server: Any, project: str, name: str) -> tuple[dict[str, Any], bytes] | None:
    """The server's latest version of ``project/name`` and its manifest's bytes; None if it has none."""
    from tracklet.errors import ArtifactNotFound

    try:
        document = server.version(project, name, "latest")
    except ArtifactNotFound:
        return None
    return document, server.read(project, document["manifest"], limit=MAX_MANIFEST_BYTES)


def _bounded(read: Callable[[], Any], wait: float, deadline: Callable[[], float] | None) -> tuple[bool, Any]:
    """``read()`` on a thread of its own, waited for at most ``wait`` seconds and never past
    ``deadline()`` (a ``time.monotonic`` reading, asked again as the wait goes on, less
    ``BASE_WAIT_MARGIN_S``): (True, its result), or (False, what it raised or None if it didn't
    end in time: the thread is left to end on its own, its result dropped)."""
    from tracklet.core import threads

    done = threading.Event()
    outcome: list[Any] = [False, None]

    def run() -> None:
        try:
            outcome[:] = [True, read()]
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome[:] = [False, error]
        finally:
            done.set()

    threads.start_new(run)
    end = time.monotonic() + wait
    while not done.is_set():
        until = end if deadline is None else min(end, deadline() - BASE_WAIT_MARGIN_S)
        left = until - time.monotonic()
        if left <= 0 or done.wait(min(left, 0.1)):
            break
    return (outcome[0], outcome[1]) if done.is_set() else (False, None)


def resolve_base(store: Any, project: str, name: str, server: Any = None, *, wait: float | None = None,
                 deadline: Callable[[], float] | None = None) -> tuple[Manifest | None, str, str | None]:
    """The base of an incremental version of ``project/name``: (its manifest, None if the collection
    has no version; the sha256 of its manifest blob, ``NO_BASE`` then; why the server's latest
    wasn't read, None if it was or there is no server). ``server`` (an online run's
    ``ArtifactClient``): the server's latest, its manifest read (bytes checked) and kept as a blob
    of ``store`` (what ``tracklet sync`` diffs against later); a server that can't be read (refusing,
    unreachable, or not answering within ``wait`` seconds (``BASE_WAIT_S``), nor before ``deadline()``
    less ``BASE_WAIT_MARGIN_S``: ``finish()``'s) leaves the local latest (the version records it, so a
    later send merges onto the server's latest then), and says why: the version is then marked
    (``VersionInfo.base_unread``), its local copy lacking what only the server's latest holds."""
    from tracklet.errors import ArtifactNotFound, RemoteError

    unread = None
    if server is not None:
        ended, answer = _bounded(lambda: _server_base(server, project, name),
                                 BASE_WAIT_S if wait is None else wait, deadline)
        if ended and answer is None:
            return None, NO_BASE, None
        if ended:
            document, data = answer
            manifest = Manifest.from_bytes(data, what=f"the manifest of {project}/{name}:v{document['index']}")
            digest, _ = store.blobs.put_bytes(data)
            return manifest, digest, None
        if answer is not None and not isinstance(answer, (RemoteError, OSError)):
            raise answer  # not the server's absence: a damaged answer, as before
        # unreachable, refusing or not answering in time: the local latest, as offline
        unread = (f"it did not answer in time ({BASE_WAIT_S if wait is None else wait:g} s at most, less near "
                  "finish())" if answer is None else f"{type(answer).__name__}: {answer}")
    try:
        info = store.registry.version(project, name)
    except ArtifactNotFound:
        return None, NO_BASE, unread
    return store.manifest(info), info.manifest, unread
