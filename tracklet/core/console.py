"""Console capture: stdout/stderr lines go into the run's record log and still reach the terminal.

``sys.stdout``/``sys.stderr`` are replaced by a thin tee, one per stream for the whole process.
``write`` passes the text through first, then hands it to each capturing run's line buffer, which
splits complete lines off and queues them; encoding happens on the sender's worker. With several
live runs (``reinit="create_new"``) every one of them records what is printed while it is live,
as W&B's runs each get every write; the tee is put back once no run captures, in whatever order
the runs finish (a tee per run, each wrapping the one before, left a chain of dead tees behind a
run that was not the last started, one more layer on every later ``print``). A carriage return (progress bars) keeps only the text after it, so a tqdm bar is recorded
as its last state per line rather than once per redraw.

A tee taken out of ``sys.stdout`` is never freed there: CPython's ``print`` (3.11 and before)
holds ``sys.stdout`` as a borrowed reference while it writes, so a ``print`` on another thread,
still writing when the last run finishes and the stream is put back, would go on in freed memory
(a segfault). The tee each stream had last stays referenced, idle, and is the one the next run
installs again while the stream it wraps is still in place; a run's capture keeps the tees it
joined too.

Text not ended by a newline yet waits in the tee. So that a killed process keeps it too, the
sender's worker asks every tick (``stale_chunks``) for such text that has waited ``age`` seconds
since it last changed and was not recorded as it stands; it is queued as a *partial* line, which
readers replace with the stream's next line (the same line, grown or ended).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, TextIO

STDOUT, STDERR = 1, 2
MAX_PARTIAL_LINE = 64 * 1024


class _Lines:
    """One run's capture of one stream: complete lines are queued, an unended one waits here."""

    def __init__(self, stream: int, put: Callable[[Any], None], chunk: Callable[..., Any]) -> None:
        self._stream = stream
        self._put = put
        self._chunk = chunk
        self._partial = ""
        self._changed: float | None = None  # when the partial text last changed, if not recorded as it stands
        self._lock = threading.Lock()
        # A signal handler (or a __del__ run by the garbage collector) that prints runs on the thread
        # that may be mid-capture, holding the lock: it waited for itself for ever. Such a write sees
        # this thread's `busy` and leaves its text in `_nested`, which the capture it interrupted
        # takes after its own text, in order.
        self._local = threading.local()
        self._nested: list[str] = []
        self.active = True

    def _take(self, text: str) -> list[str]:
        """Adds ``text`` to the unended line; the lines it ends. Under the lock."""
        pending = self._partial + text
        if "\n" not in text:
            if "\r" in pending:
                pending = pending[pending.rfind("\r") + 1 :]
            self._partial = pending[-MAX_PARTIAL_LINE:]
            self._changed = time.monotonic()
            return []
        *lines, self._partial = pending.split("\n")
        self._changed = time.monotonic() if self._partial else None
        return lines

    def _take_nested(self, at_most: int | None = None) -> list[str]:
        """The lines ended by text written while a capture was interrupted (``at_most`` of the
        writes). Under the lock."""
        lines: list[str] = []
        while self._nested and (at_most is None or at_most > 0):
            lines += self._take(self._nested.pop(0))
            at_most = None if at_most is None else at_most - 1
        return lines

    def _put_lines(self, lines: list[str]) -> None:
        if lines:
            cleaned = [line[line.rfind("\r") + 1 :] if "\r" in line else line for line in lines]
            self._put(self._chunk(self._stream, time.time(), cleaned))

    def capture(self, text: str) -> None:
        local = self._local
        if getattr(local, "busy", False):  # written while this thread captures (a handler, a __del__)
            self._nested.append(text)
            return
        local.busy = True
        earlier = len(self._nested)  # left by an interruption after a capture's last look: before this text
        try:
            with self._lock:
                lines = self._take_nested(earlier) + self._take(text) + self._take_nested()
            while self._nested:  # an interruption after the last look
                with self._lock:
                    lines += self._take_nested()
        finally:
            local.busy = False
        self._put_lines(lines)

    def flush_partial(self) -> None:
        if getattr(self._local, "busy", False):  # stop() from a handler amid a capture: that one goes on
            return
        with self._lock:
            lines = self._take_nested()
            rest, self._partial, self._changed = self._partial, "", None
        self._put_lines(lines)
        if rest:
            self._put(self._chunk(self._stream, time.time(), [rest]))

    def stale_chunk(self, age: float) -> Any:
        """The unended line as it stands, as a partial chunk, if it has waited ``age`` seconds
        since it last changed and was not recorded so; None otherwise. Nothing is queued here
        (the worker calls this and takes the chunk itself)."""
        with self._lock:
            changed = self._changed
            if not self.active or changed is None or time.monotonic() - changed < age:
                return None
            self._changed = None
            text = self._partial
        line = text[text.rfind("\r") + 1 :] if "\r" in text else text
        return self._chunk(self._stream, time.time(), [line], partial=True) if line else None


class _Tee:
    """What ``sys.stdout`` (or ``sys.stderr``) is while runs capture it: writes pass through to the
    stream it replaced, then go to every capturing run's :class:`_Lines`."""

    def __init__(self, original: TextIO) -> None:
        self._original = original
        self._captures: tuple[_Lines, ...] = ()  # replaced whole, never changed in place: write() reads it unlocked

    def write(self, text: str) -> int:
        written = self._original.write(text)
        if text:
            for lines in self._captures:
                if lines.active:
                    try:
                        lines.capture(text)
                    except Exception:  # capture must never break printing
                        pass
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


_STREAMS = {"stdout": STDOUT, "stderr": STDERR}
_tees: dict[str, _Tee] = {}  # the tee each stream has while a run captures it
_idle: dict[str, list[_Tee]] = {}  # the tees last taken out of each stream: kept alive, and reused (module docstring)
_tees_lock = threading.RLock()  # re-entered only by a signal handler (or __del__) on its holder: see _locked
_depth = 0  # locked sections running on the holder (0 or 1; under the lock)
_deferred: list[Callable[[], None]] = []  # handlers' sections, run once the one they interrupted ends


def _locked(section: Callable[[], None]) -> None:
    """Run ``section`` (a start's or stop's change of the tees) under the tees' lock. A signal
    handler runs between any two bytecodes of the main thread, so also inside such a section
    (``tracklet.init`` or ``finish()`` of another run): a handler that finishes a run (SIGTERM:
    save what you have) waited for the lock its own thread held, for ever. The lock is re-entrant
    for that: a section asked for inside another is run right after it, on the same thread, never
    interleaved with it."""
    global _depth
    with _tees_lock:
        if _depth:
            _deferred.append(section)
            return
        pending = [section]
        while pending:
            _depth = 1
            try:
                for each in pending:
                    each()
            finally:
                _depth = 0
            pending, _deferred[:] = list(_deferred), []


class ConsoleCapture:
    """One run's console capture: joins the process's tees on start (installing them if no run
    captures yet), leaves them on stop (taking every tee that no run captures any more out of the
    stream, as far as the stream is one: a stream replaced since is left as it is)."""

    def __init__(self, put: Callable[[Any], None], chunk: Callable[..., Any]) -> None:
        self._lines = {name: _Lines(number, put, chunk) for name, number in _STREAMS.items()}
        self._joined: list[tuple[str, _Tee]] = []  # referenced while this capture lives (module docstring)

    def start(self) -> None:
        _locked(self._install)

    def _install(self) -> None:
        """Join the tees (installing them where none is in place). Under the lock."""
        for name, lines in self._lines.items():
            current = getattr(sys, name)
            if current is None:  # pythonw and some daemons have no console
                lines.active = False
                continue
            if isinstance(current, _Tee):  # ours (one a `with redirect_stdout` put back, say): joined, not wrapped
                tee = _tees[name] = current
            else:  # none yet, or the stream was replaced since: tee it anew
                idle = next((idle for idle in _idle.get(name, ()) if idle._original is current), None)
                tee = _tees[name] = idle if idle is not None else _Tee(current)
                setattr(sys, name, tee)
            tee._captures = (*tee._captures, lines)
            self._joined.append((name, tee))

    def stop(self) -> None:
        for lines in self._lines.values():
            if lines.active:
                lines.flush_partial()
            lines.active = False
        _locked(self._leave)

    def _leave(self) -> None:
        """Take this capture's lines out of every tee, then every tee no run captures any more out
        of the streams they are (a tee left in a stream by a ``redirect_stdout`` that a run started
        inside of put back: else one more dead layer on every later ``print``). Under the lock."""
        for name, lines in self._lines.items():
            for tee in [tee for joined, tee in self._joined if joined == name] + _all_tees(getattr(sys, name, None)):
                if lines in tee._captures:
                    tee._captures = tuple(other for other in tee._captures if other is not lines)
            if _tees.get(name) is not None and not _tees[name]._captures:
                del _tees[name]
            taken: list[_Tee] = []
            stream = getattr(sys, name, None)
            while isinstance(stream, _Tee) and not stream._captures and len(taken) < 64:
                taken.append(stream)
                stream = stream._original
                setattr(sys, name, stream)
            if taken:
                _idle[name] = taken  # kept alive (module docstring), the last one reused first

    def stale_chunks(self, age: float) -> list[Any]:
        """Partial chunks of the lines that have waited ``age`` seconds unended (see the module
        docstring); for the sender's tick."""
        return [chunk for lines in self._lines.values() if (chunk := lines.stale_chunk(age)) is not None]

    def disable(self) -> None:
        """After fork: keep passing text through, but queue nothing."""
        for lines in self._lines.values():
            lines.active = False


def _all_tees(stream: Any) -> list[_Tee]:
    """The tees of ours a stream passes through (a stream replaced while a run captured may wrap
    an older tee)."""
    found: list[_Tee] = []
    while isinstance(stream, _Tee) and len(found) < 64:
        found.append(stream)
        stream = stream._original
    return found


def _after_fork_in_child() -> None:
    """In a child made by fork: the lock anew (another thread of the parent may have held it while
    forking, and the child's first run would wait for it forever), and the tees' captures dropped
    (the parent's runs record nothing here), so the child's own runs install, join and remove the
    tees as in any process."""
    global _tees_lock, _depth
    _tees_lock, _depth = threading.RLock(), 0
    _deferred.clear()
    for tee in [*_tees.values(), *_all_tees(sys.stdout), *_all_tees(sys.stderr)]:
        tee._captures = ()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
