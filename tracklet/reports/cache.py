"""What a server keeps between requests for report pages (docs/reports.md#performance):

- ``document_of(markdown)``: a saved version's parsed document (versions never change, so the
  Markdown is the key), for the read routes only (a caller must not change what it gets);
- ``PanelCache``: each panel's answer (the JSON bytes of ``GET .../panels/{i}/data``) keyed by
  everything that decides it: the panel's spec and run set, the window asked for, and the *stamp*
  of the runs it resolved to (their ids with the store's ``heartbeat_at``, ``updated_at`` and
  ``last_step``, which change whenever the store ingests more of a run's log). A report shown
  again, or by someone else, answers from memory until one of its runs logs more; a live run
  set that gains or loses a run has another stamp. Bounded by bytes (least recently used out).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from tracklet.reports.document import Document, parse

DEFAULT_MAX_BYTES = 64 << 20


@functools.lru_cache(maxsize=32)
def document_of(markdown: str) -> Document:
    """``parse(markdown)``, remembered (read-only use: ``freeze`` parses its own copy)."""
    return parse(markdown)


def run_stamp(rows: list[dict[str, Any]], entries: list[dict[str, Any]] | None = None) -> str:
    """A short digest of the runs a run set resolved to, how far the store has ingested each, and
    what the panel says about them (``entries``: names, groups): it changes when a run is added,
    removed, renamed or logs more (and never otherwise)."""
    parts = [(row["run_id"], row.get("heartbeat_at"), row.get("updated_at"), row.get("last_step")) for row in rows]
    return hashlib.blake2b(json.dumps([parts, entries], default=str).encode(), digest_size=12).hexdigest()


def panel_key(project: str, spec: dict[str, Any], runs: dict[str, Any], stamp: str, **window: Any) -> str:
    """The cache key of a panel's answer: its project, spec, run set, runs' stamp and window."""
    text = json.dumps([project, spec, runs, stamp, window], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class PanelCache:
    """Panel answers (bytes) by key, least recently used first out past ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: str, body: bytes) -> None:
        if len(body) > self.max_bytes // 4:  # one huge answer would empty the cache for nothing
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = body
            self._bytes += len(body)
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._items)
