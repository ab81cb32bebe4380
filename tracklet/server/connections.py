"""Connection limits for the tracking server's own HTTP listener (``tracklet server``).

uvicorn closes a kept-alive connection that goes quiet (``timeout_keep_alive``), but nothing
else: a connection that never finishes its request head, or stops sending a body it announced,
or never reads its response, holds a file descriptor forever, and about a thousand of them (the
usual descriptor limit) stop the server from accepting anyone. ``GuardedHttpToolsProtocol`` is
uvicorn's httptools protocol (the default: its C parser costs a fraction of h11's pure-Python
one per request) and ``GuardedH11Protocol`` its h11 protocol (``--http h11``, or where httptools
isn't installed), each with:

- a *header timeout*: a request head must arrive complete within ``header_timeout`` seconds of the
  connection opening (or of the first byte of a kept-alive connection's next request);
- an *idle timeout*: a request body, or a response the client doesn't read, may make no progress
  for at most ``idle_timeout`` seconds (waiting on the application itself is never cut short);
- a *connection cap*: at most ``max_connections`` open at once. A connection past the cap closes
  the oldest one that has no request in progress (an unfinished head, or an idle keep-alive), so
  stalled connections can't lock out new clients; when every connection is busy with a request,
  the newcomer gets 503 and is closed;
- h11's checks of a request head, kept with httptools: a head over ``max_header_bytes`` and an
  HTTP/1.1 request without exactly one ``Host`` header get 400 (``Invalid HTTP request received.``).

With httptools, a request body's pieces also reach the application as the parser made them
(``_BodyPieces``), not copied twice on the way (uvicorn's ``bytearray +=`` and ``bytes()``): what
a large upload (artifact packs) cost the server most outside of hashing and the disk. A route
that knows its body's size can go further with the ``tracklet.body_into`` ASGI extension
(``BODY_INTO``, in the request scope's ``extensions``; ``body.read_body_into`` uses it): the rest of
the body goes straight into the route's buffer (received into it by the transport, ``_DirectBody``,
where the body's end is known; else written by the parser's callback, ``BodySink``), and the
route wakes once, when it is whole, not once per piece through ``receive()``.

A reverse proxy in front (docs/deployment.md) should apply the same limits; these keep a server
that is reached directly, or through a proxy that doesn't, available.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import weakref
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tracklet.errors import TrackletError

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - the server extra installs it; h11 then
    httptools = None  # type: ignore[assignment]
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

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


HTTP_PARSERS = ("auto", "httptools", "h11")


def http_parser(choice: str = "auto") -> str:
    """The HTTP implementation ``choice`` names: ``auto`` is httptools where it is installed, else h11."""
    if choice not in HTTP_PARSERS:
        raise ValueError(f"unknown HTTP implementation {choice!r}: pick one of {', '.join(HTTP_PARSERS)}")
    if choice == "auto":
        return "httptools" if httptools is not None else "h11"
    if choice == "httptools" and httptools is None:
        raise ValueError("--http httptools needs the httptools package: pip install 'tracklet[server]'")
    return choice


def uvicorn_options(limits: ConnectionLimits, http: str = "auto") -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that apply ``limits`` with the
    HTTP implementation ``http`` (``http_parser``)."""
    return {"http": guarded_protocol(limits, http), "timeout_keep_alive": limits.keep_alive,
            "h11_max_incomplete_event_size": limits.max_header_bytes}


def guarded_protocol(limits: ConnectionLimits, http: str = "auto") -> type[asyncio.Protocol]:
    """A guarded protocol class for one server (its cap counts that server's connections)."""
    base: type[_ConnectionGuard] = (GuardedHttpToolsProtocol if http_parser(http) == "httptools"
                                    else GuardedH11Protocol)
    return type(base.__name__, (base,), {"limits": limits, "waiting": {}})


class _ConnectionGuard:
    """The header timeout, idle timeout and connection cap, over either uvicorn protocol (a mixin
    before it: ``_reading_body`` says where the protocol's parser is)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    # Connections with no request in progress, oldest first: the ones a newcomer may displace.
    waiting: ClassVar[dict[Any, None]] = {}
    # The uvicorn protocol's own state (both have these).
    connections: set[Any]
    cycle: Any
    flow: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    timeout_keep_alive_task: asyncio.TimerHandle | None

    _read_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _received = False  # bytes of the current request head have arrived

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.limits.max_connections and not self._displace_one():
            self.connections.discard(self)
            transport.write(_BUSY_503)
            transport.close()
            return
        self.waiting[self] = None
        self._arm_read(self.limits.header_timeout, header=True)

    def data_received(self, data: bytes) -> None:
        self._received = True
        super().data_received(data)  # type: ignore[misc]
        self._update()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._received = False
        self._update()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.pop(self, None)
        self._cancel_read()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.idle_timeout, self._close)

    def resume_writing(self) -> None:
        super().resume_writing()  # type: ignore[misc]
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    # ------------------------------------------------------------------ state

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _reading_body(self) -> bool:
        """Whether the client is sending the current request's body."""
        raise NotImplementedError

    def _update(self) -> None:
        """Pick the read timer for where the connection is now."""
        if self.transport.is_closing():
            return
        if self._in_request():
            self.waiting.pop(self, None)
            if self._reading_body():
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


class GuardedH11Protocol(_ConnectionGuard, H11Protocol):  # type: ignore[misc]  # connection_made: uvicorn narrows the transport too
    """uvicorn's h11 protocol with a header timeout, an idle timeout and a connection cap (h11
    itself bounds the head, ``h11_max_incomplete_event_size``, and checks its ``Host``)."""

    def _reading_body(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY


class _BadHead(TrackletError):
    """A head h11 would refuse, raised from a parser callback: httptools turns it into its parser error (a 400)."""


class _BodyPieces:
    """A request body's pieces received since the application last asked, in place of uvicorn's
    ``bytearray`` (``RequestResponseCycle.body``, which it only grows with ``+=``, measures with
    ``len`` and hands over as ``bytes(body)``): a piece is kept as the parser made it, and handed
    over as it is when it is the only one (the usual case: uvicorn stops reading past 64 KiB
    until the application asks), joined once otherwise. uvicorn copied every byte twice."""

    __slots__ = ("pieces", "size")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0

    def __iadd__(self, piece: bytes) -> _BodyPieces:
        self.pieces.append(piece)
        self.size += len(piece)
        return self

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)


#: The ASGI extension (``scope["extensions"][BODY_INTO]``) a guarded httptools protocol offers:
#: ``await body_into(view)`` writes the rest of the request's body into ``view`` and returns how
#: many bytes that was (``body.read_body_into``).
BODY_INTO = "tracklet.body_into"


class BodyOverflow(TrackletError):
    """A request body longer than the buffer ``body_into`` was given."""


class BodyDisconnect(TrackletError):
    """The client went away (or was closed by the idle timeout) before its body was whole."""


class BodySink:
    """The rest of a request body written into a buffer as the parser delivers it (in place of
    ``cycle.body``). Its length is 0 to uvicorn: nothing waits to be handed over, so reading never
    pauses; the buffer, sized by the route, bounds what is kept."""

    __slots__ = ("view", "received", "overflow")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.received = 0
        self.overflow = False

    def write(self, piece: bytes | memoryview) -> None:
        end = self.received + len(piece)
        if end > len(self.view):
            self.overflow = True  # the route answers; the rest of the body is dropped
            return
        self.view[self.received:end] = piece
        self.received = end

    def __len__(self) -> int:
        return 0

    def length(self) -> int:
        """The body's length once it ended; ``BodyOverflow`` if it didn't fit."""
        if self.overflow:
            raise BodyOverflow(f"the request body is longer than its {len(self.view)} bytes")
        return self.received


class _DirectBody(asyncio.BufferedProtocol):
    """The rest of a request body received by the transport straight into the route's buffer
    (the socket read into it: no copy of it in user space, reads as large as the socket has, none
    of the parser's per-piece work), standing in for the connection's protocol until the body is
    whole. The parser is then replaced by a fresh one (the bytes it didn't see would otherwise be
    owed to it) and the request marked complete, as uvicorn's ``on_message_complete`` does. Used
    only where the body's end is known: one ``Content-Length``, no ``Transfer-Encoding``, the
    request the parser is reading now, and a buffer with room for all of it.

    Once the body is whole it keeps nothing of the request (uvloop's transport keeps the methods
    of the last buffered protocol it had), and a transport that goes on feeding it regardless
    (asyncio's proactor loop finishes the read it began with it) has those bytes passed on to the
    connection's protocol."""

    __slots__ = ("protocol", "cycle", "sink", "end", "active", "passing_on", "_spill")

    def __init__(self, protocol: Any, cycle: Any, sink: BodySink, end: int) -> None:
        self.protocol = protocol
        self.cycle: Any = cycle
        self.sink: BodySink | None = sink
        self.end = end  # in ``sink.view``: where the body ends
        self.active = True
        self.passing_on = False  # the body is whole: bytes still fed to this one go to the protocol
        self._spill: bytearray | None = None

    @classmethod
    def start(cls, protocol: Any, cycle: Any, sink: BodySink) -> _DirectBody | None:
        transport = protocol.transport
        if (sink.overflow or protocol.cycle is not cycle or protocol.pipeline or transport.is_closing()
                or transport.get_protocol() is not protocol):
            return None
        lengths = [value for name, value in cycle.scope["headers"] if name in (b"content-length", b"transfer-encoding")]
        if len(lengths) != 1 or not lengths[0].isdigit():  # a Transfer-Encoding, or not exactly one length
            return None
        remaining = int(lengths[0]) - protocol._body_parsed
        if remaining <= 0 or sink.received + remaining > len(sink.view):
            return None  # past the buffer: the parser's callback says so (``BodyOverflow``)
        direct = cls(protocol, cycle, sink, sink.received + remaining)
        transport.set_protocol(direct)
        return direct

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.sink is None:  # after the body: see the class docstring
            if self._spill is None:
                self._spill = bytearray(64 << 10)
            return memoryview(self._spill)
        return self.sink.view[self.sink.received:self.end]

    def buffer_updated(self, nbytes: int) -> None:
        sink = self.sink
        if sink is None:
            if self.passing_on and self._spill is not None:
                self.protocol.data_received(bytes(self._spill[:nbytes]))
            return
        sink.received += nbytes
        if sink.received < self.end:
            self.protocol._update()  # the idle timer restarts at every read, as with the parser
            return
        cycle, protocol = self.cycle, self.protocol
        self._let_go()
        self.passing_on = True
        protocol.transport.set_protocol(protocol)  # before the transport asks this one for a buffer again
        protocol.parser = protocol.fresh_parser()
        protocol._in_body = False  # the old parser's message ends here: the fresh one is between messages
        if not cycle.keep_alive:  # the old parser ignored bytes after a closing request; the fresh one
            protocol.flow.pause_reading()  # doesn't know, so none are read: the response closes it
        cycle.more_body = False
        cycle.message_event.set()
        protocol._update()

    def stop(self) -> None:
        """The route stopped waiting before the body was whole (cancelled): the parser can't take
        this connection's bytes any more, so it is closed."""
        if self.active:
            self._let_go()
            self.protocol.transport.set_protocol(self.protocol)
            self.protocol._close()

    def _let_go(self) -> None:
        self.active = False
        self.sink = self.cycle = None

    def eof_received(self) -> bool | None:
        result: bool | None = self.protocol.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._let_go()
        self.passing_on = False
        self.protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()


async def _body_into(protocol: Any, request: weakref.ref[Any], view: memoryview) -> int:
    """``BODY_INTO`` for one request: what arrived before goes into ``view`` first, then every
    further piece, until the body is whole (uvicorn's ``on_message_complete``) or the client is
    gone (``connection_lost``), either of which sets the cycle's event."""
    cycle = request()
    if cycle is None:  # pragma: no cover - the request's scope keeps its cycle's extension alive
        raise BodyDisconnect("the request is over")
    if view.readonly:
        raise ValueError("body_into needs a writable buffer")
    view = view.cast("B")  # lengths in bytes, whatever the buffer's item type
    if cycle.waiting_for_100_continue and not protocol.transport.is_closing():
        protocol.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        cycle.waiting_for_100_continue = False
    sink = BodySink(view)
    pending = cycle.body
    for piece in pending.pieces if type(pending) is _BodyPieces else ((pending,) if pending else ()):
        sink.write(piece)
    cycle.body = sink
    direct = _DirectBody.start(protocol, cycle, sink) if cycle.more_body else None
    try:
        while cycle.more_body and not cycle.disconnected and not sink.overflow:
            cycle.message_event.clear()
            protocol.flow.resume_reading()
            await cycle.message_event.wait()
    finally:
        cycle.body = bytearray()  # uvicorn's own again (nothing more is handed over)
        if direct is not None:
            direct.stop()
    if not sink.overflow and (cycle.more_body or cycle.disconnected):
        raise BodyDisconnect("the client disconnected before sending the whole body")
    return sink.length()


class _GuardedHttpTools(_ConnectionGuard):
    """The guard over uvicorn's httptools protocol, with the checks h11 makes of a head and
    llhttp doesn't: its size (``max_header_bytes``, counted as it arrives, so a head that never
    ends can't grow without bound) and exactly one ``Host`` in an HTTP/1.1 request."""

    parser: Any
    scope: Any  # the request being parsed (uvicorn's)
    pipeline: Any  # requests received while one is answered (uvicorn's)
    _body_parsed = 0  # bytes of the current request's body the parser has delivered
    _in_body = False  # the parser is past a head and before its message's end
    _head_bytes = 0  # bytes received since the current head began (reset once it is complete)
    _head_size = 0  # the current head's request target and header lines, as parsed

    def _reading_body(self) -> bool:
        return bool(self.cycle.more_body)

    def data_received(self, data: bytes) -> None:
        # Where the parser is, not whether a response is under way: a route that answered before
        # reading its body (413) leaves the rest of it to be parsed and dropped, not counted as a head.
        reading_head = not self._in_body
        if reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if (reading_head and not self._in_body and not self._in_request()
                and self._head_bytes > self.limits.max_header_bytes and not self.transport.is_closing()):
            self.send_400_response("Invalid HTTP request received.")  # type: ignore[attr-defined]

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()  # type: ignore[misc]

    def on_message_begin(self) -> None:
        super().on_message_begin()  # type: ignore[misc]
        self._head_size = 0

    def fresh_parser(self) -> Any:
        """A parser at the start of a request, set up as uvicorn sets up its own."""
        parser = httptools.HttpRequestParser(self)
        try:
            parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # pragma: no cover - httptools < 0.6.3
            pass
        return parser

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        self._body_parsed += len(body)
        sink = cycle.body
        if type(sink) is BodySink:
            if not cycle.response_complete:
                sink.write(body)
                if sink.overflow:
                    cycle.message_event.set()
            return
        if type(sink) is not _BodyPieces:  # uvicorn puts back a bytearray after each hand-over
            pieces = _BodyPieces()
            if cycle.body:
                pieces += bytes(cycle.body)
            cycle.body = pieces
        super().on_body(body)  # type: ignore[misc]

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)  # type: ignore[misc]

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)  # type: ignore[misc]

    def on_headers_complete(self) -> None:
        self._head_bytes = 0
        self._body_parsed = 0
        self._in_body = True
        if self.parser.get_http_version() == "1.1":
            hosts = sum(name == b"host" for name, _ in self.headers)  # type: ignore[attr-defined]
            if hosts != 1:
                raise _BadHead("missing Host header" if not hosts else "multiple Host headers")
        super().on_headers_complete()  # type: ignore[misc]
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # not an upgrade: a request for the app
            extensions = self.scope.setdefault("extensions", {})
            # The cycle by weak reference: the scope is the cycle's, and no request should wait
            # for the cyclic garbage collector.
            extensions[BODY_INTO] = functools.partial(_body_into, self, weakref.ref(cycle))

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.limits.max_header_bytes:
            raise _BadHead(f"request head over {self.limits.max_header_bytes} bytes")


GuardedHttpToolsProtocol: type[_ConnectionGuard] = (
    type("GuardedHttpToolsProtocol", (_GuardedHttpTools, HttpToolsProtocol), {}) if HttpToolsProtocol is not None
    else GuardedH11Protocol)
