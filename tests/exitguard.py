"""A bounded exit after the last test: a pytest process that has not exited ``TRACKLET_TEST_EXIT_GRACE``
seconds (default 300) after the session ends prints every thread's stack and exits with status 1.

What it bounds: a thread that is not a daemon and never ends, an ``atexit`` hook that waits, a child the
interpreter waits for. Each would otherwise hold the process (and, under pytest-xdist, the whole run) until
CI's own limit, with nothing printed. A test that hangs is pytest-timeout's (``timeout`` in pyproject.toml).
Loaded by tests/conftest.py (``pytest_plugins``); a plugin of its own so a pytest run without the conftest
can load it (``-p exitguard``).
"""

from __future__ import annotations

import faulthandler
import os

_stderr = None  # kept open for the watchdog: pytest closes its own copy of stderr as it unconfigures


def pytest_unconfigure(config) -> None:
    global _stderr
    grace = float(os.environ.get("TRACKLET_TEST_EXIT_GRACE", "300"))
    _stderr = os.fdopen(os.dup(2), "w")
    faulthandler.dump_traceback_later(grace, exit=True, file=_stderr)
