"""``HttpClient``: the configured ``httpx`` client every tracklet caller of a server goes through.

One place decides, for online mode, ``tracklet sync``, run files, ``tracklet.Api(base_url=...)``
and ``tracklet login``:

- **the connection**: base URL, ``Authorization: Bearer <key>`` from the explicit key,
  ``$TRACKLET_API_KEY`` or the key ``tracklet login`` saved (``core/credentials.py``), timeouts;
- **retries** (``RetryPolicy``): a connection error, a timeout, or an HTTP 500, 502, 503 or 504
  answer to an idempotent request (GET, HEAD, PUT, DELETE, OPTIONS; an upload by byte offset is
  one) is sent again after a full-jitter exponential backoff capped at ``cap`` seconds, until
  ``give_up_after`` seconds (or ``attempts`` attempts) pass. A request that may not be repeated
  (POST) is retried only when it can't have been taken: the connection never opened, or HTTP 429.
  A 429 or 503 with ``Retry-After`` (seconds or an HTTP date) waits what the server asked;
- **errors** (``refusal``): an answer that isn't the one wanted becomes a ``TrackletError``
  carrying the server's ``ErrorResponse`` ``detail``: the caller's ``missing`` class for 404
  (``RunNotFound``), else the client's error class (``RemoteError``, ``SyncError`` for uploads),
  with how to give a key on 401. Giving up on retries raises that class too.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import random
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

import httpx
from tracklet.core import forksafe, threads

from tracklet.client.buffers import BufferSender
from tracklet.core.credentials import resolve_key, unauthorized_hint
from tracklet.errors import RemoteError, TrackletError

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_ANY_METHOD = frozenset({429})  # the server says it did not take the request
RETRY_IDEMPOTENT = frozenset({500, 502, 503, 504})
RETRY_AFTER_STATUSES = frozenset({429, 503})
_DETAIL_CHARS = 2000  # of a refusal's reason, in an exception message


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a request: full-jitter exponential backoff (``base`` doubling per
    attempt, capped at ``cap`` seconds) until ``give_up_after`` seconds or ``attempts`` attempts."""

    base: float = 0.5
    cap: float = 30.0
    give_up_after: float = 300.0
    attempts: int | None = None

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0 for the first)."""
        return random.uniform(0.0, min(self.cap, self.base * 2.0 ** min(attempt, 64)))

    def exhausted(self, attempts: int, elapsed: float) -> bool:
        """True once ``attempts`` attempts taking ``elapsed`` seconds in all are enough."""
        return elapsed >= self.give_up_after or (self.attempts is not None and attempts >= self.attempts)


def retry_after(response: httpx.Response) -> float | None:
    """The seconds a ``Retry-After`` header asks for (a number or an HTTP date), or ``None``."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def response_detail(response: httpx.Response) -> str:
    """A refusal's reason: the ``detail`` of the server's ``ErrorResponse`` body, else the start
    of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is None:
        return response.text[:200]
    text = detail if isinstance(detail, str) else str(detail)  # a validation error's list
    return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS] + "..."


def refusal(response: httpx.Response, *, base_url: str, error: type[TrackletError] = RemoteError,
            what: str | None = None, missing: type[TrackletError] | None = None,
            hint: bool = True) -> TrackletError:
    """The exception for a server's answer that isn't the one wanted (to raise): ``missing`` with
    the server's reason for 404 when given, else ``error`` naming the server, ``what`` was refused
    (default: the method and path), the status and the reason, and, for 401 when ``hint``, how to
    give the client a key."""
    detail = response_detail(response)
    status = response.status_code
    if status == 404 and missing is not None:
        return missing(detail)
    if what is None:
        what = f"{response.request.method} {response.request.url.path}"
    login = unauthorized_hint(base_url) if status == 401 and hint else ""
    return error(f"{base_url} refused {what} (HTTP {status}): {detail}{login}")


#: A body held in memory goes to httpx in views of at most this many bytes: httpcore's send loop
#: copies what a ``send()`` left over (``buffer[n:]``), so a body handed over whole is copied again
#: on every partial send (quadratic in its size); views of it cost one copy each in h11.
PIECE_BYTES = 1 << 20


class _Views:
    """Buffers as an httpx request body in views of at most ``PIECE_BYTES`` (see there; h11 takes
    any bytes-like piece); iterable again and again, so a retry can send it again."""

    def __init__(self, views: list[memoryview]) -> None:
        self.views = views

    def __iter__(self) -> Iterator[memoryview]:
        for view in self.views:
            for start in range(0, len(view), PIECE_BYTES):
                yield view[start:start + PIECE_BYTES]


_ssl_lock = forksafe.lock()
_ssl_context: Any = None


def ssl_context() -> Any:
    """httpx's default TLS context (certifi's CAs, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), built
    once per process: building it loads the CA bundle, ~0.1 CPU s each time, which every new
    ``httpx.Client`` paid (an online run's artifact thread made two per run). Built in a
    ``forksafe.section``: a fork meanwhile waits for it, so a forked child never inherits OpenSSL's
    locks held by a build it doesn't have."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            with forksafe.section():
                context = httpx.create_ssl_context()
            context.sslsocket_class = _HandshakeInSections  # httpx's and BufferSender's sockets
            context.sslobject_class = forksafe.tls_object_class()  # httpcore's TLS in TLS (an HTTPS proxy)
            _ssl_context = context
        return _ssl_context


_proxy_context: Any = None


def proxy_ssl_context() -> Any:
    """The TLS context for connections to an HTTPS proxy: the one httpcore would build for each
    (``httpcore.default_ssl_context``: the system's CAs and certifi's), built once per process in
    a ``forksafe.section``, its handshakes in sections (``_HandshakeInSections``)."""
    global _proxy_context
    with _ssl_lock:
        if _proxy_context is None:
            import certifi

            with forksafe.section():
                context = ssl.create_default_context()
                context.load_verify_locations(certifi.where())
            context.sslsocket_class = _HandshakeInSections
            _proxy_context = context
        return _proxy_context


class _HandshakeInSections(ssl.SSLSocket):
    """The sockets of ``ssl_context()`` (httpx's transport and BufferSender's ``HTTPSConnection``
    both make them with its ``wrap_socket``). A process's first handshake fetches OpenSSL's
    algorithms (key exchange, signatures, ciphers) under OpenSSL's global locks, and every one
    verifies the server's certificates under the context's store lock (the context a forked child
    inherits and uses): a child forked meanwhile (a ``Pool`` right after an online ``init()``, as
    the uploader connected) could inherit one held, and its own handshake, its uploader's or the
    user's https download, waited for ever. So each step of a handshake (OpenSSL's work between two
    waits for the server, milliseconds) runs in a ``forksafe.section``, and the waits for the server
    outside any: a fork waits for a step, never for the server (a stalled one would have held every
    fork of a ``Pool`` ``FORK_WAIT`` seconds)."""

    def do_handshake(self, block: bool = False) -> None:
        timeout = self.gettimeout()
        if timeout == 0.0 and not block:  # the caller's own non-blocking steps
            with forksafe.section():
                return super().do_handshake()
        import selectors

        wait = None if block else timeout  # each wait for the server, as ``ssl``'s own (per operation)
        self.settimeout(0.0)
        try:
            with selectors.DefaultSelector() as waiting:
                waiting.register(self, selectors.EVENT_READ)
                while True:
                    try:
                        with forksafe.section():
                            return super().do_handshake()
                    except ssl.SSLWantReadError:
                        waiting.modify(self, selectors.EVENT_READ)
                    except ssl.SSLWantWriteError:
                        waiting.modify(self, selectors.EVENT_WRITE)
                    if not waiting.select(wait):
                        raise TimeoutError("The handshake operation timed out")
        finally:
            self.settimeout(timeout)


def proxy_mounts() -> dict[str, httpx.BaseTransport]:
    """Transports for the HTTPS proxies the environment names (as httpx's ``trust_env`` reads
    them: ``urllib.request.getproxies``, ``NO_PROXY`` applied by httpx's own mounts), whose TLS to
    the proxy uses ``proxy_ssl_context()``: httpx's own made httpcore build a new default context
    (the CA bundles loaded again, ~0.1 CPU s, outside any ``forksafe.section``) for each connection
    to the proxy, and handshake with a plain ``ssl.SSLSocket``, outside any section too."""
    import urllib.request

    mounts: dict[str, httpx.BaseTransport] = {}
    for scheme, url in urllib.request.getproxies().items():
        if scheme in ("http", "https", "all") and url:
            url = url if "://" in url else f"http://{url}"  # httpx's reading of a bare host
            if httpx.URL(url).scheme == "https":
                mounts[f"{scheme}://"] = httpx.HTTPTransport(
                    verify=ssl_context(), proxy=httpx.Proxy(url, ssl_context=proxy_ssl_context()))
    return mounts


class HttpClient:
    """An ``httpx.Client`` for the server at ``base_url`` with the API key, ``retry`` and
    ``error`` (the class refusals and give-ups raise); ``advice`` ends a give-up's message."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0,
                 retry: RetryPolicy = RetryPolicy(), error: type[TrackletError] = RemoteError, advice: str = "",
                 transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = threads.sleep) -> None:
        self.base_url = base_url.strip().rstrip("/")
        self.retry = retry
        self.error = error
        self._advice = advice
        self._sleep = sleep
        self._made_with = (timeout, transport, resolve_key(self.base_url, api_key))
        self._client = self._open()
        # Bodies held in memory go out without h11's copy (client/buffers.py); a transport given
        # (a test's, a mounted one) keeps every request on httpx.
        self._buffers = BufferSender(self._client, ssl_context()) if transport is None else None

    def _open(self) -> httpx.Client:
        timeout, transport, key = self._made_with
        return httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                            verify=ssl_context() if transport is None else True,
                            mounts=proxy_mounts() if transport is None else None,
                            headers={"Authorization": f"Bearer {key}"} if key else None)

    # A forked child (a Pool worker holding a tracklet.Api, an artifact read from a server) opens
    # its own connections: the parent's kept-alive ones carry the parent's TLS sessions and requests.
    _client = forksafe.own(lambda http, parents: http._open())
    _buffers = forksafe.own(lambda http, parents: BufferSender(http._client, ssl_context()))

    def close(self) -> None:
        if self._buffers is not None:
            self._buffers.close()
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, url: str, *, idempotent: bool | None = None, **kwargs: Any) -> httpx.Response:
        """The server's answer to one request, sent again as ``retry`` allows (``idempotent``:
        whether it may be repeated; default: by its method). Raises the client's error class when
        retrying gives up, or when a request that may not be repeated fails after it was sent."""
        method = method.upper()
        repeatable = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        return self._retrying(method, url, repeatable, lambda: self._client.request(method, url, **kwargs))

    def send_buffers(self, method: str, url: str, buffers: Sequence[bytes | bytearray | memoryview], *,
                     headers: dict[str, str], idempotent: bool | None = None) -> httpx.Response:
        """``request`` with a body of ``buffers`` held in memory, sent one after another
        (``Content-Length``: their sum), retried the same way. Sent with ``http.client``, each
        buffer handed to the socket as it is (``client/buffers.py``: httpx's h11 copies every
        byte of a body while holding the interpreter lock); through httpx when a proxy is
        configured for the URL or the client has a transport of its own."""
        method = method.upper()
        repeatable = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        sender = self._buffers
        if sender is None or not sender.direct(method, url):
            views = [memoryview(buffer).cast("B") for buffer in buffers]
            headers = {**headers, "Content-Length": str(sum(view.nbytes for view in views))}
            body = cast("Iterable[bytes]", _Views(views))
            return self._retrying(method, url, repeatable,
                                  lambda: self._client.request(method, url, headers=headers, content=body))
        return self._retrying(method, url, repeatable, lambda: sender.send(method, url, buffers, headers))

    def _retrying(self, method: str, url: str, repeatable: bool,
                  attempt: Callable[[], httpx.Response]) -> httpx.Response:
        """``attempt()``'s answer, called again as ``retry`` allows (see ``request``)."""
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            wait: float | None = None
            try:
                response = attempt()
            except httpx.TransportError as failure:
                problem = f"{type(failure).__name__}: {failure}"
                if not repeatable and not isinstance(failure, (httpx.ConnectError, httpx.ConnectTimeout)):
                    raise self.error(f"{method} {self.base_url}{url} failed after it was sent ({problem}); not "
                                     "sent again, as it may not be repeated") from None
                unreachable = True
            else:
                status = response.status_code
                if status not in RETRY_ANY_METHOD and not (repeatable and status in RETRY_IDEMPOTENT):
                    return response
                problem = f"HTTP {status}: {response_detail(response)}"
                if status in RETRY_AFTER_STATUSES:
                    wait = retry_after(response)
                unreachable = False
            elapsed = time.monotonic() - started
            if self.retry.exhausted(attempts, elapsed):
                where = (f"cannot reach {self.base_url}" if unreachable
                         else f"{self.base_url} kept failing {method} {url}")
                raise self.error(f"{where}: gave up after {elapsed:.1f}s and {attempts} attempt(s): "
                                 f"{problem}{self._advice}")
            delay = self.retry.backoff(attempts - 1) if wait is None else wait
            self._sleep(min(delay, max(0.0, self.retry.give_up_after - elapsed)))

    def stream(self, method: str, url: str, **kwargs: Any) -> Any:
        """``httpx.Client.stream``: a response read as it arrives, as a context manager. Not
        retried here: a caller that can resume (a download continuing with a ``Range`` from the
        bytes it has) retries itself."""
        return self._client.stream(method, url, **kwargs)

    def refusal(self, response: httpx.Response, *, what: str | None = None,
                missing: type[TrackletError] | None = None, hint: bool = True) -> TrackletError:
        """``refusal`` for this client's server and error class."""
        return refusal(response, base_url=self.base_url, error=self.error, what=what, missing=missing, hint=hint)

    def get_json(self, url: str, *, missing: type[TrackletError] | None = None, **params: Any) -> Any:
        """The JSON body of ``GET url`` with the ``params`` that aren't ``None``; anything but 200
        raises (see ``refusal``)."""
        response = self.request("GET", url, params={name: value for name, value in params.items() if value is not None})
        if response.status_code != 200:
            raise self.refusal(response, missing=missing)
        return response.json()
