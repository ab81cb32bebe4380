"""The server's database unreachable: a 503 with ``Retry-After``, not a 500 with a traceback.

PostgreSQL restarted, failed over or out of connections, a SQLite file locked past its timeout:
every route that touches the store or the server's tables then raises one of SQLAlchemy's
operational errors. Those are transient, so the answer is **503** with ``Retry-After`` and a
detail naming the database, which clients retry (``client/http.py``: an online run's uploader
keeps trying, ``tracklet sync`` until ``--give-up-after``), and the server prints one line per
reason and interval instead of a traceback per request. Which errors count as unavailable is the
store's call (``tracklet/store/outage.py``): a defect (a wrong query) still surfaces as a 500.
"""

from __future__ import annotations

import sys
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tracklet.errors import ReadOnlyDataRoot
from tracklet.store import UNAVAILABLE_ERRORS, driver_reason, is_unavailable

RETRY_AFTER_S = 5
"""What the answer's ``Retry-After`` asks clients to wait, in seconds."""

REPORT_EVERY_S = 30.0
"""One stderr line per distinct reason at most this often: an outage under load is many requests."""


class _Reporter:
    """Prints one line per reason per ``REPORT_EVERY_S``, with how many answers it stood for."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def report(self, reason: str) -> None:
        now = time.monotonic()
        last, count = self._last.get(reason, (float("-inf"), 0))
        if now - last < REPORT_EVERY_S:
            self._last[reason] = (last, count + 1)
            return
        more = f" ({count} more such answer(s) since the last report)" if count else ""
        print(f"tracklet server: the server's database is unavailable, answering 503: {reason}{more}",
              file=sys.stderr, flush=True)
        if len(self._last) > 100:  # bounded: reasons carry no request data, but stay few anyway
            self._last.clear()
        self._last[reason] = (now, 0)


def read_only_write(error: BaseException) -> bool:
    """Whether ``error`` is SQLite refusing a write to a file opened read-only (``core/readonly.py``)."""
    return "readonly database" in driver_reason(error)


def install(app: FastAPI) -> None:
    """Answer the database's unavailability with 503 + ``Retry-After`` on every route of ``app``."""
    reporter = _Reporter()

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        if read_only_write(error):  # a SQLite file of a data root this user can't write: not transient
            state = getattr(request.app.state, "tracklet", None)
            where = f"the data root {state.root}" if state is not None else "the database"
            return JSONResponse(status_code=403, content={
                "detail": f"{where} can't be written by the user this server runs as (a read-only data root): "
                          "it can be read, not changed"})
        if not is_unavailable(error):
            raise error  # a defect: Starlette's error middleware answers 500 and logs the traceback
        reason = driver_reason(error)
        reporter.report(reason)
        return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)},
                            content={"detail": f"the server's database is unavailable ({reason}); try again "
                                               f"in {RETRY_AFTER_S} s"})

    for kind in UNAVAILABLE_ERRORS:
        app.add_exception_handler(kind, unavailable)

    async def read_only(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": str(error)})

    app.add_exception_handler(ReadOnlyDataRoot, read_only)  # a write asked of a data root this user can't write
