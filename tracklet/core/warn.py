"""``TrackletWarning`` and the once-per-run warning filter: in a module of their own so that the
caller's side of a run (``init``, ``log``) can warn without importing the encoder or protobuf."""

from __future__ import annotations

import warnings
from typing import Any


class TrackletWarning(UserWarning):
    """Something tracklet could not record as asked; the run goes on."""


class WarnOnce:
    """Emits each distinct warning once per run."""

    def __init__(self) -> None:
        self._seen: set[Any] = set()

    def __call__(self, token: Any, message: str, stacklevel: int = 2) -> None:
        if token in self._seen:
            return
        self._seen.add(token)
        warnings.warn(message, TrackletWarning, stacklevel=stacklevel)
