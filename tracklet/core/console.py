"""Console capture: stdout/stderr lines go into the run's record log and still reach the terminal.

``sys.stdout``/``sys.stderr`` are replaced by a thin tee. ``write`` passes the text through first,
then splits complete lines off a small buffer and queues them; encoding happens on the sender's
worker. A carriage return (progress bars) keeps only the text after it, so a tqdm bar is recorded
as its last state per line rather than once per redraw.
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
                return
            *lines, self._partial = pending.split("\n")
        cleaned = [line[line.rfind("\r") + 1 :] if "\r" in line else line for line in lines]
        self._put(self._chunk(self._stream, time.time(), cleaned))

    def flush_partial(self) -> None:
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest:
            self._put(self._chunk(self._stream, time.time(), [rest]))

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

    def disable(self) -> None:
        """After fork: keep passing text through, but queue nothing."""
        for tee in self._tees.values():
            tee.active = False
