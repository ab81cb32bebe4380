"""Keeping the server's store up to date with its record log copies.

One ``Indexer`` per server, used under one lock: the store has exactly one writer. A run is
indexed right after each append to it, so a read that follows an acknowledged upload sees it.
A failure to index is logged, never turned into a failed upload: the copy is durable and the
run is indexed again at its next append or when the server starts.

No client process holds a lock on the server's copies, so a run without an exit record is
``running`` while its copy keeps growing (uploads are its heartbeat) and ``crashed`` once it
hasn't for ``HEARTBEAT_LAPSE`` seconds; ``sweep()``, run periodically, applies that to runs
whose clients went quiet.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from tracklet.core.layout import RunPaths
from tracklet.store import Store
from tracklet.store.ingest import Indexer, heartbeat_liveness

log = logging.getLogger("tracklet.server")

HEARTBEAT_LAPSE = 120.0


class StoreIndexer:
    """Serialized ingestion of record log copies into ``store``."""

    def __init__(self, store: Store, root: Path, *, heartbeat_lapse: float = HEARTBEAT_LAPSE) -> None:
        self.store = store
        self._indexer = Indexer(store.engine, root, liveness=heartbeat_liveness(heartbeat_lapse))
        self._lock = threading.Lock()

    def index_all(self) -> None:
        """Ingest everything new under the data root, and mark runs whose clients went quiet
        crashed (at startup, then periodically)."""
        with self._lock:
            for paths in self._indexer.run_dirs():
                self._index(paths)

    def index_run(self, paths: RunPaths) -> None:
        with self._lock:
            self._index(paths)

    def _index(self, paths: RunPaths) -> None:
        try:
            self._indexer.index_run(paths)
        except Exception:  # the upload stays acknowledged; the next append retries
            log.exception("indexing %s/%s failed", paths.project, paths.run_id)
