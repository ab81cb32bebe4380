"""Connection limits for the tracking server's own HTTP listener (``tracklet server``).

uvicorn closes a kept-alive connection that goes quiet (``timeout_keep_alive``), but nothing
else: a connection that never finishes its request head, or stops sending a body it announced,
or never reads its response, holds a file descriptor forever, and about a thousand of them (the
usual descriptor limit) stop the server from accepting anyone. ``GuardedH11Protocol`` is uvicorn's
h11 protocol with:

- a *header timeout*: a request head must arrive complete within ``header_timeout`` seconds of the
  connection opening (or of the first byte of a kept-alive connection's next request);
- an *idle timeout*: a request body, or a response the client doesn't read, may make no progress
  for at most ``idle_timeout`` seconds (waiting on the application itself is never cut short);
- a *connection cap*: at most ``max_connections`` open at once. A connection past the cap closes
  the oldest one that has no request in progress (an unfinished head, or an idle keep-alive), so
  stalled connections can't lock out new clients; when every connection is busy with a request,
  the newcomer gets 503 and is closed.

A reverse proxy in front (docs/deployment.md) should apply the same limits; these keep a server
that is reached directly, or through a proxy that doesn't, available.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

# Descriptors kept for everything but client connections: the store's pool, log copies and
# files being written by the thread pool, object storage connections, the sweep thread.
RESERVED_DESCRIPTORS = 128

_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_BUSY_503 = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 30\r\n"
             b"connection: close\r\n\r\ntoo many connections; retry\r\n")


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0  # seconds for a complete request head
    idle_timeout: float = 60.0  # seconds a body upload or a response may stall
    keep_alive: int = 5  # seconds an idle kept-alive connection stays open (uvicorn's timeout_keep_alive)
    max_connections: int = 1000  # open connections at once
    max_header_bytes: int = 64 << 10  # a request head larger than this gets 400 (h11's limit)


def fit_descriptor_limit(max_connections: int) -> tuple[int, str | None]:
    """Raise this process's soft descriptor limit toward the hard one and return the connection
    cap that fits under it (keeping ``RESERVED_DESCRIPTORS``), with a note when it had to shrink."""
    if resource is None:
        return max_connections, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections, None
    fitted = max(1, soft - RESERVED_DESCRIPTORS)
    return fitted, (f"--max-connections lowered from {max_connections} to {fitted} to fit the open-file limit "
                    f"of {soft} (ulimit -n); raise that limit to allow more")


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that apply ``limits``."""
    return {"http": guarded_protocol(limits), "timeout_keep_alive": limits.keep_alive,
            "h11_max_incomplete_event_size": limits.max_header_bytes}


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """A ``GuardedH11Protocol`` class for one server (its cap counts that server's connections)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits, "waiting": {}})


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout, an idle timeout and a connection cap."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    # Connections with no request in progress, oldest first: the ones a newcomer may displace.
    waiting: ClassVar[dict[GuardedH11Protocol, None]] = {}

    _read_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _received = False  # bytes of the current request head have arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._displace_one():
            self.connections.discard(self)
            transport.write(_BUSY_503)
            transport.close()
            return
        self.waiting[self] = None
        self._arm_read(self.limits.header_timeout, header=True)

    def data_received(self, data: bytes) -> None:
        self._received = True
        super().data_received(data)
        self._update()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._received = False
        self._update()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.pop(self, None)
        self._cancel_read()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.idle_timeout, self._close)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    # ------------------------------------------------------------------ state

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _update(self) -> None:
        """Pick the read timer for where the connection is now."""
        if self.transport.is_closing():
            return
        if self._in_request():
            self.waiting.pop(self, None)
            if self.conn.their_state is h11.SEND_BODY:
                self._arm_read(self.limits.idle_timeout, header=False)  # restarts at every chunk
            else:
                self._cancel_read()  # the application has the whole request
            return
        self.waiting.setdefault(self, None)
        if self.timeout_keep_alive_task is None and self._received and self._read_timer is None:
            self._arm_read(self.limits.header_timeout, header=True)  # a kept-alive connection's next head

    def _arm_read(self, seconds: float, *, header: bool) -> None:
        self._cancel_read()
        self._read_timer = self.loop.call_later(seconds, self._read_timed_out, header)

    def _cancel_read(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self, header: bool) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if not header and self.flow.read_paused:  # we stopped reading, not the client
            self._arm_read(self.limits.idle_timeout, header=False)
            return
        if header and self._received and not self._in_request():
            self.transport.write(_TIMEOUT_408)
        self._close()

    def _close(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _displace_one(self) -> bool:
        """Close the oldest connection with no request in progress; False when there is none."""
        for other in self.waiting:
            if other is not self:
                self.waiting.pop(other)
                other._cancel_read()
                other._close()
                other.connections.discard(other)  # counted out now, not when the close completes
                return True
        return False
