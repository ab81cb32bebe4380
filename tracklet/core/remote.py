"""Moved: ``RemoteApi`` is ``tracklet.api.remote.RemoteApi`` (``tracklet.Api(base_url=...)``).

``RemoteError`` stays importable from here, where it was defined first.
"""

from tracklet.errors import RemoteError

__all__ = ["RemoteError"]
