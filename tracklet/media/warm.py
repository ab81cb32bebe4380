"""Warming the media worker's encoders on a thread of their own, once per process.

Why: the worker's first image imports what it encodes and stores with (Pillow, ISA-L, the record
module and protobuf, the artifacts' blob store: ~0.2 s of CPU on an idle machine, 1-1.5 s at load
15 on the shared VMs). While a lane did that inside its first job it refilled no copy buffers
(``media.buffers``), so every copy of a run's first bursts of images went into fresh memory: the
first 4-6 bursts of 50 faulted ~1,850 pages each on the training thread. Now the worker's first
lane starts this warm-up as it starts (the first logged media or table of the process's first
run; never on ``import tracklet`` or ``init()``, which don't import this package), and a lane's
first job waits for it while refilling the buffers every ``TICK`` seconds (``wait``).

``os.fork`` (a DataLoader's workers) waits for a warm-up under way, and so does interpreter exit
(``core/warmup.py`` says why).
"""

from __future__ import annotations

from typing import Callable

from tracklet.core.warmup import WarmUp

# Seconds between a waiting lane's refills of the copy buffers.
TICK = 0.01
# The longest a lane waits for the warm-up (then it imports what it needs itself).
MOST_WAIT = 30.0


def _warm() -> None:
    """Import the encoders and store and encode a tiny PNG (first calls set up ISA-L's deflate).
    A broken install ends it quietly: the worker's first item imports again and reports it."""
    import hashlib

    import numpy as np
    from PIL import Image  # noqa: F401  (what thumbnails and non-array images are made with)

    from tracklet.artifacts import blobs, storage  # noqa: F401  (the worker's Context.blobs)
    from tracklet.media import base, image

    base._records()
    hashlib.sha256(image.fast_png(np.zeros((2, 2, 3), np.uint8))).digest()


WARM_UP = WarmUp("tracklet-media-warm", _warm, fork_wait=5.0, exit_wait=30.0)


def start() -> None:
    """Start the warm-up, once per process; later calls return at once."""
    WARM_UP.start()


def wait(tick: Callable[[], object]) -> None:
    """Until the warm-up is done (at most ``MOST_WAIT`` seconds), call ``tick`` every ``TICK`` s."""
    start()
    for _ in range(int(MOST_WAIT / TICK)):
        if WARM_UP.done.wait(TICK):
            return
        tick()
