"""Who may talk to a server without API keys: ``tracklet ui`` and ``tracklet server --dev``.

Both listen on a loopback address only, which keeps other machines out but not

- **web pages** in the user's browser: through DNS rebinding a page at ``evil.example`` resolves
  its own name to 127.0.0.1 and reads the API as a same-origin page. The browser still sends
  ``Host: evil.example:PORT``, so :class:`LoopbackHostCheck` answers only requests whose ``Host``
  names the loopback address and port the server is bound to;
- **other users of the machine**: anyone can connect to a loopback port. :class:`UiAccess` asks
  every request of ``tracklet ui`` (but the health probe and the public plotly.js) for a token made at start (``secrets.token_urlsafe``) that only
  the user who started it has: printed in the URL it opens, ``http://127.0.0.1:PORT/?token=...``,
  as Jupyter does. The first request with a valid ``?token=`` gets an HttpOnly, SameSite=Strict
  cookie and a page request is redirected to the same URL without the token, so the dashboard's
  same-origin requests carry the cookie from then on. Scripts may send ``Authorization: Bearer
  <token>`` instead. The local dashboard only reads, so every other method is refused (405), but
  for two writes that leave the record logs alone, taken with the token only: OTLP spans
  (``/v1/traces``) and the user's reports (``/api/v1/projects/{p}/reports...``, the data root's
  ``reports.sqlite``).

Both are plain ASGI middleware (no buffering: file downloads stream through).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
TOKEN_ENV = "TRACKLET_UI_TOKEN"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A liveness probe, and the plotly.js the dashboard's sandboxed plotly frames load (server/web.py): no data,
# no token (a sandboxed frame's requests are cross-site, so they never carry the SameSite=Strict cookie).
OPEN_PATHS = frozenset({"/api/v1/health", "/vendor/plotly.min.js"})
# The one write tracklet ui takes (with its token): OTLP spans from local applications (docs/tracing.md).
WRITE_PATHS = frozenset({"/v1/traces"})
# Reports the user writes in the dashboard (docs/reports.md): kept in the data root's reports.sqlite,
# apart from the record logs, which nothing here writes. Only with the token (never --no-token).
REPORT_WRITES = re.compile(r"/api/v1/projects/[\w.-]+/reports(/[\w-]+){0,4}")
REPORT_METHODS = frozenset({"POST", "PUT", "DELETE"})
MAX_HOST_LENGTH = 300


def new_token() -> str:
    """A fresh per-start token: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


def loopback_hosts(port: int | None, bound: str | None = None) -> frozenset[str]:
    """The ``Host`` header values that name a loopback address on ``port`` (any port: None):
    127.0.0.1, localhost, [::1] and ``bound`` (the address listened on, e.g. 127.0.0.2).

    A browser omits the port for 80, so on port 80 the bare names are accepted too."""
    names = set(LOOPBACK_NAMES)
    if bound:
        names.add(f"[{bound.strip('[]')}]" if ":" in bound else bound.lower())
    if port is None:
        return frozenset(names)
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts.update(names)
    return frozenset(hosts)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value
    return None


async def _respond(send: Send, status: int, body: bytes, content_type: bytes,
                   headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _json_error(send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await _respond(send, status, json.dumps({"detail": detail}).encode(), b"application/json", headers)


class LoopbackHostCheck:
    """Answer 403 to any request whose ``Host`` header isn't a loopback name on the bound port
    (``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT``): the defence against DNS rebinding."""

    def __init__(self, app: ASGIApp, port: int | None, bound: str | None = None) -> None:
        self.app = app
        self.port = port
        self.allowed = loopback_hosts(port, bound)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = _header(scope, b"host")
        host = raw.decode("latin-1").strip().lower() if raw is not None and len(raw) <= MAX_HOST_LENGTH else None
        if host not in self.allowed:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            shown = "none" if raw is None else repr(raw[:80].decode("latin-1"))
            where = f"127.0.0.1:{self.port}" if self.port is not None else "127.0.0.1"
            await _json_error(send, 403, f"Host header {shown} is not this server's loopback address: "
                                         f"open http://{where}/ (requests through other names are refused, "
                                         "so that no web page can reach this server by DNS rebinding)")
            return
        await self.app(scope, receive, send)


class UiAccess:
    """``tracklet ui``'s gate: read-only, and a valid token (``?token=``, the cookie it sets, or
    ``Authorization: Bearer``) on every request but the health probe. ``token=None``
    (``--no-token``) lets any local user read."""

    def __init__(self, app: ASGIApp, token: str | None, port: int) -> None:
        self.app = app
        self.token = token.encode() if token is not None else None
        self.port = port
        # Cookies ignore the port: one name per port keeps two `tracklet ui`s from clobbering each other.
        self.cookie = f"tracklet-ui-{port}"
        # The cookie holds a digest of the token: always a valid cookie value, whatever TRACKLET_UI_TOKEN is.
        self.cookie_value = hashlib.sha256(b"tracklet-ui-cookie\0" + self.token).hexdigest() if self.token else None

    def _valid(self, presented: str | None) -> bool:
        return (self.token is not None and presented is not None
                and hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), self.token))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        report_write = (self.token is not None and scope["method"] in REPORT_METHODS
                        and REPORT_WRITES.fullmatch(scope["path"]) is not None)
        if (scope["method"] not in READ_METHODS and not (scope["method"] == "POST" and scope["path"] in WRITE_PATHS)
                and not report_write):
            await _json_error(send, 405, "tracklet ui is read-only: it shows the runs recorded on this "
                                         "machine and changes nothing", [(b"allow", b"GET, HEAD, OPTIONS")])
            return
        if self.token is None or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [value for name, value in query if name == "token"]
        if given:
            if not self._valid(given[-1]):
                await self._unauthorized(scope, send, "the token in the URL is not this tracklet ui's (a new "
                                                      "one is made each time it starts)")
                return
            await self._accept_token(scope, receive, send)
            return
        cookie = self._cookie(scope)
        if (cookie is not None and self.cookie_value is not None
                and hmac.compare_digest(cookie.encode("utf-8", "surrogateescape"), self.cookie_value.encode())) \
                or self._valid(self._bearer(scope)):
            await self.app(scope, receive, send)
            return
        await self._unauthorized(scope, send, "none was given")

    def _cookie(self, scope: Scope) -> str | None:
        raw = _header(scope, b"cookie")
        if raw is None:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw.decode("latin-1"))
        except CookieError:
            return None
        morsel = jar.get(self.cookie)
        return morsel.value if morsel is not None else None

    @staticmethod
    def _bearer(scope: Scope) -> str | None:
        raw = _header(scope, b"authorization")
        if raw is None:
            return None
        scheme, _, value = raw.decode("utf-8", "surrogateescape").partition(" ")
        return value.strip() if scheme.lower() in ("bearer", "token") else None

    def _set_cookie(self) -> tuple[bytes, bytes]:
        return (b"set-cookie", f"{self.cookie}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict".encode())

    async def _accept_token(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A valid ``?token=``: set the cookie; a page is reloaded without the token in its URL
        (the rest of the URL byte for byte, so the dashboard's view parameters survive)."""
        if scope["method"] == "GET" and not scope["path"].startswith("/api/"):
            path = b"/" + (scope.get("raw_path") or scope["path"].encode("utf-8")).lstrip(b"/")
            rest = [part for part in scope.get("query_string", b"").split(b"&")
                    if part and unquote_plus(part.partition(b"=")[0].decode("latin-1")) != "token"]
            location = path + (b"?" + b"&".join(rest) if rest else b"")
            await _respond(send, 303, b"", b"text/plain",
                           [(b"location", location), (b"referrer-policy", b"no-referrer"), self._set_cookie()])
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self._set_cookie()]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _unauthorized(self, scope: Scope, send: Send, why: str) -> None:
        message = (f"tracklet ui needs its token and {why}. Open the URL that `tracklet ui` printed, "
                   f"http://127.0.0.1:{self.port}/?token=..., or send the token as 'Authorization: Bearer TOKEN'.")
        if scope["path"].startswith("/api/"):
            await _json_error(send, 401, message, [(b"www-authenticate", b"Bearer")])
            return
        body = ("<!doctype html><meta charset=utf-8><title>tracklet ui: token needed</title>"
                f"<p>{message.replace('<', '&lt;')}</p>").encode()
        await _respond(send, 401, body, b"text/html; charset=utf-8")
