"""The one HTTP client of a tracking server (docs/server.md), for every caller in tracklet.

- ``http.py``: ``HttpClient``, the configured ``httpx`` client (base URL, the API key's
  ``Authorization`` header, timeouts), the one retry policy (``RetryPolicy``: idempotent requests
  and connection errors retried with capped, jittered exponential backoff; ``Retry-After``
  honoured on 429 and 503) and the one mapping from a refusal to tracklet's errors
  (``refusal``: the server's ``ErrorResponse`` ``detail`` in the message).
- ``sync.py``: ``SyncClient``, uploading record logs by byte offset (``tracklet sync``).
- ``files.py``: ``FileSync``, a run's ``files/`` after its log.
- ``uploader.py``: online mode's thread, which streams a live run's log with ``SyncClient``.

The layer sits above ``tracklet.core`` and beside ``tracklet.store``: it imports neither the store
nor the server (docs/architecture.md). Importing this package imports nothing heavy; ``httpx``
loads with the module that needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["HttpClient", "RetryPolicy", "SyncClient", "refusal"]

if TYPE_CHECKING:
    from tracklet.client.http import HttpClient, RetryPolicy, refusal
    from tracklet.client.sync import SyncClient

_LAZY = {"HttpClient": "tracklet.client.http", "RetryPolicy": "tracklet.client.http",
         "refusal": "tracklet.client.http", "SyncClient": "tracklet.client.sync"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
