"""Warming the media worker's encoders on a thread of their own, once per process.

Why: the worker's first image imports what it encodes and stores with (Pillow, ISA-L, the record
module and protobuf, the artifacts' blob store: ~0.2 s of CPU on an idle machine, 1-1.5 s at load
15 on the shared VMs). While a lane did that inside its first job it refilled no copy buffers
(``media.buffers``), so every copy of a run's first bursts of images went into fresh memory: the
first 4-6 bursts of 50 faulted ~1,850 pages each on the training thread. Now the worker's first
lane starts this warm-up as it starts (the first logged media or table of the process's first
run; never on ``import tracklet`` or ``init()``, which don't import this package), and a lane's
first job waits for it while refilling the buffers every ``TICK`` seconds (``wait``).

A fork while the warm-up imports would leave the child with half-imported modules whose import
locks belong to a thread the child doesn't have: ``os.fork`` (a DataLoader's workers) first waits
for the warm-up, at most ``FORK_WAIT`` seconds. Interpreter exit waits for one under way as well (at
most ``EXIT_WAIT`` seconds): a daemon thread still importing at exit is ended by a forced unwind, which
C++ import code can catch and abort the process on (``server.query_warm``, ``sweeps.gp_imports``).
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Callable

# Seconds between a waiting lane's refills of the copy buffers.
TICK = 0.01
# The longest a lane waits for the warm-up (then it imports what it needs itself).
MOST_WAIT = 30.0
# The longest os.fork() waits for a warm-up under way.
FORK_WAIT = 5.0
# The longest interpreter exit waits for a warm-up under way.
EXIT_WAIT = 30.0

DONE = threading.Event()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def start() -> None:
    """Start the warm-up (a daemon thread), once per process; later calls return at once."""
    global _thread
    if _thread is not None:
        return
    with _lock:
        if _thread is not None:
            return
        _thread = threading.Thread(target=_warm, name="tracklet-media-warm", daemon=True)
    _thread.start()


def wait(tick: Callable[[], object]) -> None:
    """Until the warm-up is done (at most ``MOST_WAIT`` seconds), call ``tick`` every ``TICK`` s."""
    start()
    for _ in range(int(MOST_WAIT / TICK)):
        if DONE.wait(TICK):
            return
        tick()


def _warm() -> None:
    """Import the encoders and store and encode a tiny PNG (first calls set up ISA-L's deflate)."""
    try:
        import hashlib

        import numpy as np
        from PIL import Image  # noqa: F401  (what thumbnails and non-array images are made with)

        from tracklet.artifacts import blobs, storage  # noqa: F401  (the worker's Context.blobs)
        from tracklet.media import base, image

        base._records()
        hashlib.sha256(image.fast_png(np.zeros((2, 2, 3), np.uint8))).digest()
    except Exception:  # a broken install: the worker's first item imports again and reports it
        pass
    finally:
        DONE.set()


def _before_fork() -> None:
    thread = _thread
    if thread is not None and thread.is_alive():
        DONE.wait(FORK_WAIT)


def _after_fork_in_child() -> None:
    """The child has no warm-up thread: one unfinished is started again there when needed."""
    global _thread, _lock
    _lock = threading.Lock()
    if not DONE.is_set():
        _thread = None


def _wait_at_exit() -> None:
    """Let a warm-up under way end before the interpreter does: its thread joined, not only its
    imports done (``DONE``), so nothing it made is torn down by exit's forced unwind (as the
    table warm-up's DuckDB cursor was: ``server/query_warm.py``)."""
    thread = _thread
    if thread is not None and thread.is_alive():
        thread.join(EXIT_WAIT)


atexit.register(_wait_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
