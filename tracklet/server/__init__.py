"""The tracking server (``tracklet server``) and its client (``tracklet sync``).

``create_app`` builds the FastAPI application; ``SyncClient`` uploads record logs to it. See
docs/server.md for the wire protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["SyncClient", "SyncError", "create_app"]

if TYPE_CHECKING:
    from tracklet.server.app import create_app
    from tracklet.server.client import SyncClient, SyncError


def __getattr__(name: str) -> Any:
    # Lazy: the client must not import FastAPI, the server must not need httpx.
    if name == "create_app":
        from tracklet.server.app import create_app

        return create_app
    if name in ("SyncClient", "SyncError"):
        from tracklet.server import client

        return getattr(client, name)
    raise AttributeError(name)
