"""Keeping the server's store up to date with its record log copies.

One ``Indexer`` per server, used under one lock: the store has exactly one writer. A run is
indexed right after each append to it, so a read that follows an acknowledged upload sees it.
A failure to index is logged, never turned into a failed upload: the copy is durable and the
run is indexed again at its next append or when the server starts.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from tracklet.core.layout import RunPaths
from tracklet.store import Store
from tracklet.store.ingest import Indexer

log = logging.getLogger("tracklet.server")


class StoreIndexer:
    """Serialized ingestion of record log copies into ``store``."""

    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self._indexer = Indexer(store.engine, root)
        self._lock = threading.Lock()

    def index_all(self) -> None:
        """Ingest everything new under the data root (at startup)."""
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
