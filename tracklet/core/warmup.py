"""A warm-up: work done once per process on a daemon thread of its own (imports, mostly), so that
the first caller that needs what it makes finds it made (``server/query_warm.py``,
``media/warm.py``). What they share is the thread's lifecycle around ``fork`` and interpreter exit:

- A fork while the work imports would leave the child with half-imported modules whose import locks
  belong to a thread the child doesn't have: ``os.fork`` first waits for a warm-up under way, at
  most ``fork_wait`` seconds, once its work has begun (not during its delay). In the child, a
  warm-up that had not finished may be started again.
- A process that exits during the delay skips the work (its thread ends at once); one that exits
  while the work runs waits for its thread (``atexit``, at most ``exit_wait`` seconds): Python ends a daemon thread still running at exit with a forced unwind, which DuckDB's
  or pyarrow's C++ import code caught, and the process aborted ("terminate called after throwing
  an instance of ''"). The thread is joined, not only its work waited for (``done``): what the work
  made is destroyed as it returns, and a DuckDB cursor's C++ destructor caught in that unwind aborted
  the process the same way.

Nothing else waits for a warm-up. Its work failing ends it quietly (``done`` is set all the same):
whoever needs what it makes does the work again and reports what is wrong.

A work must not be the first in its process to import a module that registers fork hooks of its own
(``logging``, ``concurrent.futures``): registered while a fork waits for the work, their
after-fork hooks would run in the parent without their before-fork ones (a lock released that was
never taken). Import such modules before ``start``.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable

from tracklet.core import threads


class WarmUp:
    """``work`` run once per process on a daemon thread named ``name`` (:meth:`start`); made once,
    at a module's import, since it registers the fork and exit hooks."""

    def __init__(self, name: str, work: Callable[[], object], *, fork_wait: float, exit_wait: float) -> None:
        self.name = name
        self.fork_wait = fork_wait
        self.exit_wait = exit_wait
        self.begun = threading.Event()  # set once the delay is over and the work begins
        self.done = threading.Event()  # set once the work has ended, well or not
        self._work = work
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._exiting = threading.Event()  # the interpreter is exiting: a work not begun is skipped
        atexit.register(self._wait_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._before_fork, after_in_child=self._after_fork_in_child)

    def start(self, delay: float = 0.0) -> None:
        """Start the work ``delay`` seconds from now, once per process; later calls return at once."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, args=(delay,), name=self.name, daemon=True)
            if not delay:
                self.begun.set()  # before the thread runs: a fork from now on waits for the work
        threads.start(self._thread)

    def running(self) -> bool:
        """Whether the thread is alive (its delay, its work, or the teardown of what it made)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _run(self, delay: float) -> None:
        try:
            if delay:
                if self._exiting.wait(delay):
                    return
                self.begun.set()
            self._work()
        except Exception:  # noqa: BLE001 - see the module docstring
            pass
        finally:
            self.done.set()

    def _before_fork(self) -> None:
        if self.begun.is_set():
            self.done.wait(self.fork_wait)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        if not self.done.is_set():
            self.begun.clear()
            self._thread = None

    def _wait_at_exit(self) -> None:
        self._exiting.set()  # a work still in its delay ends without beginning
        thread = self._thread
        if thread is not None and thread.is_alive():
            try:
                threads.join(thread, self.exit_wait)  # in slices: a Ctrl-C is seen (core/threads.py)
            except KeyboardInterrupt:  # Ctrl-C at exit: stop waiting for the warm-up
                pass
