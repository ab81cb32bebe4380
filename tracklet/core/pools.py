"""Thread pools whose work is still done while the interpreter shuts down.

A run's last artifact may be stored and uploaded at interpreter exit: a script that just ends, or
is ended by Ctrl-C, has its runs finished by ``atexit`` (``core/lifecycle.py``), and ``finish()``
waits there for the artifact worker. By then ``concurrent.futures`` takes no new work: the first
import of ``concurrent.futures.thread`` fails ("can't register atexit after shutdown": it
registers one of threading's exit hooks, and those have run), and a pool's ``submit`` raises
("cannot schedule new futures after interpreter shutdown"). A :class:`Pool` then runs each job on
the thread that submits it: slower, never lost. Every pool on that path (hashing, chunk packs,
uploads) is one of these. Its threads block the process's signals (``core/threads.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tracklet.core import threads

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

T = TypeVar("T")


class Pool:
    """``concurrent.futures.ThreadPoolExecutor``'s ``submit``/``shutdown`` (and ``with``) over
    ``workers`` threads named ``name``, or the calling thread where no pool can take the job."""

    def __init__(self, workers: int, name: str) -> None:
        self._closed = False
        self._workers = workers
        self._begun: list[None] = []  # one item per thread the pool has started (its initializer)
        self._pool: ThreadPoolExecutor | None = None
        try:
            from concurrent.futures import ThreadPoolExecutor  # its first import registers an exit hook

            self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=self._begun.append,
                                            initargs=(None,))
        except RuntimeError:  # "can't register atexit after shutdown": the interpreter is exiting
            self._pool = None

    @property
    def inline(self) -> bool:
        """Whether jobs now run on the submitting thread (the interpreter is shutting down)."""
        return self._pool is None

    def submit(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """``function(*args, **kwargs)`` on a pool thread; on this one, done when this returns,
        once the pool takes no new work (interpreter shutdown: every later job runs here too)."""
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if self._pool is not None:
            try:
                if len(self._begun) < self._workers:  # this submit may start a thread: signals blocked
                    with threads.blocked():
                        return self._pool.submit(function, *args, **kwargs)
                return self._pool.submit(function, *args, **kwargs)
            except RuntimeError as error:
                # Only its refusals before the job is queued ("... after interpreter shutdown", or
                # "... after shutdown": the pool's threads saw the interpreter exiting; we never shut
                # it down before this, see _closed). An error after (no thread could be started)
                # leaves the job queued for the pool's threads: run here too, it would run twice.
                # The jobs submitted before still run on the pool's threads.
                if not str(error).startswith("cannot schedule new futures"):
                    raise
                self._pool = None
        return _done(function, args, kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more jobs; with ``wait``, return once the pool's threads have done theirs
        (``cancel_futures``: those not begun are dropped).

        On the main thread the wait is :func:`threads.join`'s, in slices: ``ThreadPoolExecutor``
        joins each thread in one untimed call, so a Ctrl-C whose signal did not interrupt that
        call (``core/threads.py``) was seen only once the pool's jobs were done. Interrupted, the
        pool is shut down all the same (its threads end after the jobs already taken)."""
        self._closed = True
        pool = self._pool
        if pool is None:
            return
        workers = getattr(pool, "_threads", None)  # the executor's threads (CPython 3.10 to 3.14)
        if not wait or workers is None or threading.get_ident() != threading.main_thread().ident:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
            return
        pool.shutdown(wait=False, cancel_futures=cancel_futures)  # as wait=True does, less its joins
        for thread in list(workers):
            threads.join(thread)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)


def _done(function: Callable[..., T], args: tuple, kwargs: dict[str, Any]) -> Future[T]:
    """A future of ``function(*args, **kwargs)``, called now on this thread (its result, or the
    exception it raised, as a pool's future holds them)."""
    from concurrent.futures import Future  # concurrent.futures._base: no exit hook, imports at shutdown

    future: Future[T] = Future()
    try:
        result = function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - held by the future, raised by result(), as a pool does
        future.set_exception(error)
    else:
        future.set_result(result)
    return future


def parallel_map(function: Callable[[Any], T], items: list[Any], workers: int, name: str) -> list[T]:
    """``[function(item) for item in items]`` on up to ``workers`` threads, in order (on this
    thread while the interpreter shuts down)."""
    if len(items) <= 1 or workers <= 1:
        return [function(item) for item in items]
    pool = Pool(min(workers, len(items)), name)
    try:
        futures = [pool.submit(function, item) for item in items]
        return [threads.result(future) for future in futures]  # in slices on the main thread
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
