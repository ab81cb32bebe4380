"""Console capture: stdout/stderr lines go into the run's record log and still reach the terminal.

``sys.stdout``/``sys.stderr`` are replaced by a thin tee. ``write`` passes the text through first,
then splits complete lines off a small buffer and queues them; encoding happens on the sender's
worker. A carriage return (progress bars) keeps only the text after it, so a tqdm bar is recorded
as its last state per line rather than once per redraw.

Text not ended by a newline yet waits in the tee. So that a killed process keeps it too, the
sender's worker asks every tick (``stale_chunks``) for such text that has waited ``age`` seconds
since it last changed and was not recorded as it stands; it is queued as a *partial* line, which
readers replace with the stream's next line (the same line, grown or ended).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

STDOUT, STDERR = 1, 2
MAX_PARTIAL_LINE = 64 * 1024


class _Tee:
    def __init__(self, original: TextIO, stream: int, put: Callable[[Any], None], chunk: Callable[..., Any]) -> None:
        self._original = original
        self._stream = stream
        self._put = put
        self._chunk = chunk
        self._partial = ""
        self._changed: float | None = None  # when the partial text last changed, if not recorded as it stands
        self._lock = threading.Lock()
        self.active = True

    def write(self, text: str) -> int:
        written = self._original.write(text)
        if self.active and text:
            try:
                self._capture(text)
            except Exception:  # capture must never break printing
                pass
        return written

    def _capture(self, text: str) -> None:
        with self._lock:
            pending = self._partial + text
            if "\n" not in text:
                if "\r" in pending:
                    pending = pending[pending.rfind("\r") + 1 :]
                self._partial = pending[-MAX_PARTIAL_LINE:]
                self._changed = time.monotonic()
                return
            *lines, self._partial = pending.split("\n")
            self._changed = time.monotonic() if self._partial else None
        cleaned = [line[line.rfind("\r") + 1 :] if "\r" in line else line for line in lines]
        self._put(self._chunk(self._stream, time.time(), cleaned))

    def flush_partial(self) -> None:
        with self._lock:
            rest, self._partial, self._changed = self._partial, "", None
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

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class ConsoleCapture:
    """Installs the tees on start, removes them on stop (if nobody replaced them since)."""

    def __init__(self, put: Callable[[Any], None], chunk: Callable[..., Any]) -> None:
        streams = {"stdout": (sys.stdout, STDOUT), "stderr": (sys.stderr, STDERR)}
        self._tees = {
            name: _Tee(original, number, put, chunk)
            for name, (original, number) in streams.items()
            if original is not None  # pythonw and some daemons have no console
        }

    def start(self) -> None:
        for name, tee in self._tees.items():
            setattr(sys, name, tee)

    def stop(self) -> None:
        for name, tee in self._tees.items():
            tee.flush_partial()
            tee.active = False
            if getattr(sys, name) is tee:
                setattr(sys, name, tee._original)

    def stale_chunks(self, age: float) -> list[Any]:
        """Partial chunks of the lines that have waited ``age`` seconds unended (see the module
        docstring); for the sender's tick."""
        return [chunk for tee in self._tees.values() if (chunk := tee.stale_chunk(age)) is not None]

    def disable(self) -> None:
        """After fork: keep passing text through, but queue nothing."""
        for tee in self._tees.values():
            tee.active = False
