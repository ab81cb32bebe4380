"""The once-per-run warning filter (``TrackletWarning`` itself lives in :mod:`tracklet.errors`): in a
module of its own so that the caller's side of a run (``init``, ``log``) can warn without importing the
encoder or protobuf."""

from __future__ import annotations

import warnings
from typing import Any

from tracklet.errors import TrackletWarning  # noqa: F401  (defined in tracklet.errors; imported from here too)


class WarnOnce:
    """Emits each distinct warning once per run."""

    def __init__(self) -> None:
        self._seen: set[Any] = set()

    def __call__(self, token: Any, message: str, stacklevel: int = 2) -> None:
        if token in self._seen:
            return
        self._seen.add(token)
        warnings.warn(message, TrackletWarning, stacklevel=stacklevel)
