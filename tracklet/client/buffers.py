"""``BufferSender``: requests whose body is buffers already in memory (an artifact pack's chunk
bytes), sent with the standard library's ``http.client`` instead of httpx.

Why: httpx sends a body through httpcore and h11, and h11 turns every piece of it into a fresh
``bytes`` (``b"".join`` of the piece) before the socket sees it, a copy of every byte sent made
while holding the interpreter lock: 20% of an online run's lock-held time while it uploads a large
file (docs/artifacts.md, "The client's lock-held time per GiB (session 21)"). ``http.client``
hands each buffer to ``socket.sendall`` as it is: no copy, and the lock is released for the whole
send (on TLS, the encryption runs without it too).

What stays as httpx has it, so the two paths are one client to the server and to the user: the
request line and headers are the ``httpx.Client``'s own (``build_request``: base URL, path
encoding, ``Authorization``, ``User-Agent``), TLS verifies against the same ``ssl.SSLContext``
(``http.ssl_context``), the timeouts are the client's, and failures come back as httpx's
exceptions (``ConnectError``, ``WriteError``, ``ReadTimeout``, ...) so ``HttpClient``'s retry rules
apply unchanged. Each sending thread keeps its own connection (kept alive between requests; one
the server closed while idle is replaced before use, not found out by a failed send). A URL that
would go through a proxy (``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` without a ``NO_PROXY``
match), or a client with a transport of its own, is not for this path (``direct``): the caller
sends through httpx.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Sequence

import httpx

Buffer = bytes | bytearray | memoryview

#: Bytes handed to one ``sendall`` at most. A socket's timeout bounds a whole ``sendall`` (since
#: Python 3.5), httpx's write timeout each ``send``: in pieces this size a slow link still gets the
#: client's write timeout per MiB, as under httpx, not for a whole 16 MiB pack.
SEND_BYTES = 1 << 20

# Headers httpx adds that this path leaves out: an encoded answer would need httpx's decoders.
_SKIPPED = frozenset({"accept-encoding", "content-length", "transfer-encoding"})


def uses_proxy(url: httpx.URL) -> bool:
    """Whether the environment names a proxy for ``url`` (as httpx's ``trust_env`` reads it:
    ``urllib.request.getproxies``, bypassed by ``NO_PROXY``)."""
    proxies = urllib.request.getproxies()
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(url.host)


def _readable(sock: socket.socket) -> bool:
    """True when an idle kept-alive socket has something to read: the server closed it (EOF) or
    sent what it shouldn't have; either way it can't carry the next request."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _failure(error: OSError, request: httpx.Request, timed_out: type[httpx.TransportError],
             failed: type[httpx.TransportError]) -> httpx.TransportError:
    """httpx's exception for a socket's ``error``: ``timed_out`` for a timeout, else ``failed``."""
    kind = timed_out if isinstance(error, TimeoutError) else failed
    return kind(f"{type(error).__name__}: {error}", request=request)


class BufferSender:
    """Requests with bodies held in memory for one ``httpx.Client`` (see the module's docstring),
    one kept-alive ``http.client`` connection per sending thread; those of threads that ended are
    closed when another is opened (an upload's thread pool ends with it), all by ``close``."""

    def __init__(self, client: httpx.Client, ssl_context: ssl.SSLContext) -> None:
        self._client = client
        self._ssl_context = ssl_context
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: dict[http.client.HTTPConnection, threading.Thread] = {}  # each with its thread
        self._closed = False

    def direct(self, method: str, url: str) -> bool:
        """Whether a request to ``url`` goes this way (else: through httpx)."""
        target = self._client.build_request(method, url).url
        return target.scheme in ("http", "https") and not uses_proxy(target)

    def send(self, method: str, url: str, buffers: Sequence[Buffer], headers: dict[str, str]) -> httpx.Response:
        """The server's answer to one request whose body is ``buffers`` one after another (a
        ``Content-Length`` of their sum), not retried here. Raises httpx's ``TransportError``
        classes: ``ConnectError``/``ConnectTimeout`` when the connection can't be opened,
        ``WriteError``/``WriteTimeout`` when the body can't be sent (and no answer came),
        ``ReadError``/``ReadTimeout``/``RemoteProtocolError`` when the answer can't be read."""
        request = self._client.build_request(method, url, headers=headers)
        length = sum(memoryview(buffer).nbytes for buffer in buffers)
        timeout = self._client.timeout
        connection = self._connection(request)
        try:
            if connection.sock is None:
                try:
                    connection.connect()
                except OSError as failure:
                    raise _failure(failure, request, httpx.ConnectTimeout, httpx.ConnectError) from failure
            sock = connection.sock
            sock.settimeout(timeout.write)
            sent_error: OSError | None = None
            try:
                connection.putrequest(method, request.url.raw_path.decode("ascii"), skip_host=True,
                                      skip_accept_encoding=True)
                for name, value in request.headers.multi_items():
                    if name.lower() not in _SKIPPED:
                        connection.putheader(name, value)
                connection.putheader("Content-Length", str(length))
                connection.endheaders()
                for buffer in buffers:
                    view = memoryview(buffer).cast("B")
                    for start in range(0, len(view), SEND_BYTES):
                        sock.sendall(view[start:start + SEND_BYTES])
            except TimeoutError as failure:
                raise httpx.WriteTimeout(f"{type(failure).__name__}: {failure}", request=request) from failure
            except OSError as failure:  # the server may have answered and closed early (a refusal): read on
                sent_error = failure
            sock.settimeout(timeout.read)
            try:
                answer = connection.getresponse()
                body = answer.read()
            except (OSError, http.client.HTTPException) as failure:
                if sent_error is not None:  # no answer to a body that didn't go out: the send's failure
                    raise httpx.WriteError(f"{type(sent_error).__name__}: {sent_error}",
                                           request=request) from sent_error
                if isinstance(failure, http.client.HTTPException):  # a closed connection, a garbled answer
                    raise httpx.RemoteProtocolError(f"{type(failure).__name__}: {failure}",
                                                    request=request) from failure
                raise _failure(failure, request, httpx.ReadTimeout, httpx.ReadError) from failure
            if sent_error is not None or answer.will_close:
                self._drop(connection)
        except BaseException:
            self._drop(connection)
            raise
        return httpx.Response(answer.status, headers=answer.getheaders(), content=body, request=request)

    def _connection(self, request: httpx.Request) -> http.client.HTTPConnection:
        """This thread's connection to the request's server, opened lazily (``sock`` None until
        ``connect``); one the server closed while it was idle is replaced."""
        url = request.url
        key = (url.scheme, url.host, url.port)
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None and (self._local.key != key or connection.sock is None
                                       or _readable(connection.sock)):
            self._drop(connection)
            connection = None
        if connection is None:
            timeout = self._client.timeout.connect
            port = url.port
            if url.scheme == "https":
                connection = http.client.HTTPSConnection(url.host, port, timeout=timeout, context=self._ssl_context)
            else:
                connection = http.client.HTTPConnection(url.host, port, timeout=timeout)
            with self._lock:
                if self._closed:  # as httpx answers a closed client: not a failure to retry
                    raise RuntimeError("Cannot send a request, as the client has been closed.")
                ended = [old for old, thread in self._connections.items() if not thread.is_alive()]
                for old in ended:  # a finished thread's (a pool's, after its upload): its socket, not left open
                    del self._connections[old]
                self._connections[connection] = threading.current_thread()
            for old in ended:
                old.close()
            self._local.connection, self._local.key = connection, key
        return connection

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        with self._lock:
            self._connections.pop(connection, None)
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None

    def close(self) -> None:
        """Close every thread's connection; a later request raises ``RuntimeError`` (as httpx's
        closed client does)."""
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections), {}
        for connection in connections:
            connection.close()

