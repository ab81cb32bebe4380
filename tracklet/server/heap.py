"""Keeping a server's start-up objects out of Python's full garbage collections.

Why: a ``tracklet server`` holds ~200,000 objects the garbage collector tracks once it has started
and warmed up (its modules, FastAPI's routes and pydantic models, SQLAlchemy's tables), and almost
none of them is ever garbage. A full collection walks every one of them, holding the interpreter's
lock: 0.1-0.17 s each on this machine kind, about one per GiB of a large artifact upload (the
recipe a file's registration parses and the packs' rows promote enough young objects to trigger
one). That was ~0.1 s/GiB of the server's lock-held time, which is what bounds an upload's
throughput on many cores (docs/artifacts.md, "The many-core bound").

So once the start-up's warm-ups are done (``query_warm``'s imports, the routes FastAPI readies on
the first request: ``dispatch.prepare``) the server collects its young generations and moves
everything tracked to the collector's permanent generation (``gc.freeze``): later collections walk
only what was made since. Objects made later are collected as before; what was frozen is never
collected again, which is why only the server's own process does this (``create_app``'s
``freeze_heap``, set by ``tracklet server``), not a test or program that makes many apps. A full
collection before the freeze would also free the start-up's cyclic garbage that reached the old
generation (~600 objects, measured), at ~0.1 s of CPU per server start: the test suite starts a few
hundred servers, so those few hundred objects are frozen with the rest instead.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable

#: The longest the freeze waits for a warm-up; one not done by then is frozen without (a freeze
#: later would freeze the requests' objects too).
WAIT_SECONDS = 120.0


def freeze_when_ready(ready: Iterable[threading.Event], *, wait: float = WAIT_SECONDS) -> threading.Thread:
    """Start a daemon thread (``tracklet-heap-freeze``) that waits for every event of ``ready``
    (at most ``wait`` seconds in all), then collects the young generations and freezes the heap
    (see the module). Returns the thread."""
    events = list(ready)

    def run() -> None:
        import time

        deadline = time.monotonic() + wait
        for event in events:
            event.wait(max(0.0, deadline - time.monotonic()))
        gc.collect(1)
        gc.freeze()

    thread = threading.Thread(target=run, name="tracklet-heap-freeze", daemon=True)
    thread.start()
    return thread
