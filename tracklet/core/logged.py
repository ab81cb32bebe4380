"""Logged objects: values ``log()`` hands to a part above the core (media, tables) to record.

A :class:`LoggedObject` (``tracklet.Image``, ``tracklet.Audio``, ... and the tables built on the
same hook) took its snapshot of the caller's data when it was made (a numpy copy, a torch copy to
a host buffer, a path): logging it costs the caller a type check and an append to a bounded queue.
``Run.log``'s slow path (rows whose key set is not all builtins) takes such values, and lists of
them, out of the row and submits them to the run's :class:`LoggedObjectWorker`; the history row
keeps the rest. The worker lives above the core: ``tracklet/__init__.py`` provides it as
``"logged"`` through ``core/extensions.py`` (today ``tracklet.media.worker``), and the core reaches
it only through :func:`start_worker`. The worker encodes each object off the training thread (it
calls :meth:`LoggedObject._record`) and queues the record that object returns through the run's
sender.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol


class LoggedObject:
    """Base of values that ``log()`` records through the logged-object worker, not in history.

    A subclass snapshots the caller's data in its constructor (no encoding there) and implements
    :meth:`_record`, which the worker calls on one of its threads.
    """

    __slots__ = ()

    #: What the object is, for warnings ("image", "audio", "table", ...).
    _kind = "object"

    #: Whether :meth:`_at_log` takes a snapshot (a table); when not, ``log()`` hands the object
    #: itself and skips the call.
    _snapshot_at_log = False

    def _at_log(self, key: str, step: int) -> LoggedObject:
        """What ``log()`` hands the worker for this object logged under ``key`` at ``step``: the
        object itself (media took their copy when they were made), or a snapshot taken now (a
        table, which changes after it is logged). Runs on the caller's thread: it must be cheap."""
        return self

    def _dropped(self) -> LoggedObject | None:
        """Called on the caller's thread, right after :meth:`_at_log`, when a full queue dropped
        this object (``log()`` never waits): undo what logging took (an INCREMENTAL table's
        snapshot hands its rows back to the table) and return what ``finish()`` should log under
        the same key if no later log of that key is taken (a table), or None (media)."""
        return None

    def _pending_bytes(self) -> int:
        """About how many bytes this object holds until it is recorded (the worker's queue is
        bounded by the total)."""
        return 0

    def _record(self, context: Any, where: Placement) -> Any:
        """Encode and store this object; return the ``tracklet.v1.Record`` to log (or None).

        Called on one of the worker's threads. ``context`` is what the worker offers (the blob
        store, a warning reporter; see ``tracklet.media.worker.Context``); ``where``: the key,
        step and place in a list it was logged at. Raising reports one warning naming the key
        and step; the rest of the row is recorded."""
        raise NotImplementedError


class Placement:
    """Where a logged object was logged: ``key`` at ``step`` (``time``: when ``log()`` ran), item
    ``index`` of ``count`` (0 of 1 for a single object)."""

    __slots__ = ("key", "step", "index", "count", "time")

    def __init__(self, key: str, step: int, index: int, count: int, time: float) -> None:
        self.key, self.step, self.index, self.count, self.time = key, step, index, count, time

    def __repr__(self) -> str:
        where = f"[{self.index}]" if self.count > 1 else ""
        return f"key {self.key!r}{where} at step {self.step}"


class LoggedObjectWorker(Protocol):
    """What ``Run`` hands logged objects to (provided above the core)."""

    def submit(self, step: int, when: float, key: str, items: list[LoggedObject]) -> None:
        """Queue ``items`` logged under ``key`` at ``step``; a full queue drops them (media and
        tables alike), counted, with one warning: it never waits."""

    def submit_row(self, step: int, keys: tuple[str, ...], values: tuple[Any, ...]) -> bool:
        """Submit every value of a row of logged objects under its key and return True; False,
        having taken none, if a value is not a logged object (or the worker is closed)."""

    def flush(self, timeout: float | None) -> bool:
        """Wait until what was submitted so far is recorded (its records queued). False on timeout."""

    def close(self, timeout: float) -> bool:
        """Record what is pending within ``timeout``, then stop. False on timeout."""

    @property
    def pending(self) -> int:
        """Logged objects queued and not recorded yet (what ``finish()`` says it waits for)."""


def logged_items(value: Any) -> list[LoggedObject] | None:
    """``value`` as a list of logged objects if it is one or a list/tuple of them, else None.

    A list counts when its first item is a logged object; items of other types in it are
    dropped by the worker with a warning."""
    if isinstance(value, LoggedObject):
        return [value]
    if type(value) in (list, tuple) and value and isinstance(value[0], LoggedObject):
        return list(value)
    return None


def start_worker(root: Path, put: Callable[[Any], None], warn: Callable[..., None], *, workers: int,
                 max_pending: int, paths: Any = None) -> LoggedObjectWorker:
    """The run's logged-object worker, from the part provided as ``"logged"`` (``paths``: the
    writer's ``RunPaths``, whose run directory holds the run's table version counter)."""
    from tracklet.core.extensions import load

    return load("logged").LoggedWorker(root, put, warn, workers=workers, max_pending=max_pending, paths=paths)
