"""This process and its descendants, shared by the samplers.

Listing children means reading every ``/proc/<pid>/stat`` on Linux (about a millisecond with a
hundred processes, more on a busy node), so the list is refreshed at most every ``max_age``
seconds: a DataLoader worker started now is counted from the next refresh on. The last sample,
taken while ``finish()`` waits, never lists them (``refresh=False``): on a GPU node with many
processes a listing took 62-68 ms.
"""

from __future__ import annotations

import os
import time
from tracklet.core import forksafe

_lock = forksafe.lock()
_cached: tuple[float, frozenset[int]] | None = None


def process_tree(max_age: float = 10.0, *, refresh: bool = True) -> frozenset[int]:
    """PIDs of this process and all its descendants, at most ``max_age`` seconds old.

    ``refresh=False``: the last list whatever its age (just this process if there is none), never
    a walk of ``/proc``."""
    global _cached
    now = time.monotonic()
    with _lock:
        if _cached is not None and os.getpid() in _cached[1] and (not refresh or now - _cached[0] < max_age):
            return _cached[1]
    if not refresh:
        return frozenset((os.getpid(),))
    import psutil

    me = psutil.Process(os.getpid())
    pids = {me.pid}
    try:
        pids.update(child.pid for child in me.children(recursive=True))
    except psutil.Error:
        pass
    tree = frozenset(pids)
    with _lock:
        _cached = (now, tree)
    return tree


def forget_process_tree() -> None:
    """Make the next :func:`process_tree` list the processes again."""
    global _cached
    with _lock:
        _cached = None
