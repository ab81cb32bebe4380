"""The tracking server (``tracklet server``).

``create_app`` builds the FastAPI application. Its client (``SyncClient``, which ``tracklet sync``
and online mode upload record logs with) lives in ``tracklet.client`` and stays importable from
here. See docs/server.md for the wire protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["SyncClient", "SyncError", "create_app"]

if TYPE_CHECKING:
    from tracklet.client.sync import SyncClient, SyncError
    from tracklet.server.app import create_app


def __getattr__(name: str) -> Any:
    # Lazy: the client must not import FastAPI, the server must not need httpx.
    if name == "create_app":
        from tracklet.server.app import create_app

        return create_app
    if name in ("SyncClient", "SyncError"):
        from tracklet.client import sync

        return getattr(sync, name)
    raise AttributeError(name)
