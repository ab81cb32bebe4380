"""Starting the GP's imports at a server's start when a sweep in its tables will ask the GP.

Why: a bayes sweep's asks past its random start-up trials fit Optuna's GP, whose modules (torch,
SciPy: seconds of CPU) a server imports on a background thread (``tracklet.sweeps.gp_imports``);
until they are imported, such an ask is answered at random and its trial marked
``random_while_gp_imports``. The server started that thread only as a sweep was created or as the
first call naming it made its controller, so a server restarted mid-sweep answered its agents'
first asks at random for the seconds the imports took from their first call. Now the server's
lifespan calls :func:`start` as it starts (``app.py``); ``DELAY`` seconds later (once it listens
and has answered what was queued meanwhile, as ``query_warm`` waits) a daemon thread looks for a
running or paused GP sweep that is not finished (``sweeps_db.active_gp_sweep``) and, if there is
one, starts the GP's imports (``gp_imports.start``): by the time the agents come back, they are
under way or done.

Nothing waits for it: not start-up, not a request, not a fork (``gp_imports`` explains why no
before-fork hook joins its thread). If the database can't be read, the thread ends quietly: the
first call naming a GP sweep starts the imports, as before. Importing this module imports nothing
heavy (the thread imports ``sweeps_db``, hence Optuna, only if the tables hold a sweep).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from tracklet.server import query_warm

# Seconds after start-up the thread looks for a GP sweep: the server's start, and the requests
# queued while it started, first (the table query stack's warm-up begins then too).
DELAY = query_warm.DELAY


def start(engine: Any, root: Path, delay: float = DELAY) -> threading.Thread:
    """Start the daemon thread (``tracklet-sweeps-warm``) that, ``delay`` seconds from now, starts
    the GP's imports if a sweep under ``engine`` will ask the GP; returns it (it ends once it has
    looked, not when the imports end)."""
    thread = threading.Thread(target=_warm, args=(engine, root, delay), name="tracklet-sweeps-warm", daemon=True)
    thread.start()
    return thread


def _warm(engine: Any, root: Path, delay: float) -> None:
    time.sleep(delay)
    try:
        if not _has_sweeps(engine):  # most servers: no Optuna import (sweeps_db) for nothing
            return
        from tracklet.server.sweeps_db import active_gp_sweep
        from tracklet.sweeps import gp_imports

        if active_gp_sweep(engine, root) is not None:
            gp_imports.start()
    except Exception as error:  # the database gone a moment: the first call naming a GP sweep starts them
        print(f"tracklet server: looking for GP sweeps at start failed: {error!r}", file=sys.stderr)


def _has_sweeps(engine: Any) -> bool:
    """Whether the server's tables hold any sweep (one cheap query, before importing Optuna)."""
    from tracklet.server.schema import holds_rows, sweep_studies

    return holds_rows(engine, sweep_studies)
