"""A bounded exit: a pytest process still not gone ``TRACKLET_TEST_EXIT_GRACE`` seconds (default 300) after
its interpreter began to shut down prints every thread's stack and exits with status 1.

What it bounds: a thread that is not a daemon and never ends, an ``atexit`` hook that waits, a child the
interpreter waits for. Each would otherwise hold the process (and, under pytest-xdist, the whole run) until
CI's own limit, with nothing printed. Armed as shutdown begins (``threading``'s exit hooks run before it
joins the threads left), not as the session ends: an xdist worker done with its tests rightly waits, its
session over, until the controller lets it go (when every worker is done). A test that hangs is
pytest-timeout's (``timeout`` in pyproject.toml). Loaded by tests/conftest.py (``pytest_plugins``); a
plugin of its own so a pytest run without the conftest can load it (``-p exitguard``).
"""

from __future__ import annotations

import faulthandler
import os
import threading

_stderr = None  # kept open for the watchdog: pytest has closed its own copy of stderr by then


def _arm() -> None:
    global _stderr
    grace = float(os.environ.get("TRACKLET_TEST_EXIT_GRACE", "300"))
    _stderr = os.fdopen(os.dup(2), "w")
    faulthandler.dump_traceback_later(grace, exit=True, file=_stderr)


# (concurrent.futures registers its exit hook so too: called before the interpreter joins its threads)
threading._register_atexit(_arm)  # type: ignore[attr-defined]
