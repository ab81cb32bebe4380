"""The server's own listener under connections that stall (issue #12 item 8): a real `tracklet
server` process with a small open-file limit, loopback sockets that send part of a request and
stop. Before, ~1,000 such connections (the usual `ulimit -n`) stopped it from accepting anyone."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tracklet.core.recordlog import MAGIC

def _partial_head(port: int) -> bytes:
    """A request head cut off in the middle of a header line."""
    return f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Stalling: ".encode()


def _closed_by_server(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before closing ``sock``; None if it was still open at ``deadline``."""
    received = b""
    while True:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return received
        except TimeoutError:
            return None
        if not chunk:
            return received
        received += chunk


def _response(sock: socket.socket) -> bytes:
    """The head of one whole response (with content-length) read from a raw socket."""
    answers = _Answers(sock)
    answers.body()
    return answers.head


def test_stalled_connections_are_closed_and_never_lock_out_a_client(servers):
    server = servers(extra=("--header-timeout", "3", "--idle-timeout", "3"), nofile=256)
    stalled = []
    try:
        for _ in range(300):  # more than the server has descriptors for
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(_partial_head(server.port))
            stalled.append(sock)
        body = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        body.sendall(f"PUT /api/v1/runs/p/r/log?offset=0 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                     "Content-Length: 1000\r\n\r\n".encode() + MAGIC)  # 8 of the 1,000 bytes announced
        stalled.append(body)
        kept_alive = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        kept_alive.sendall(f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert _response(kept_alive).startswith(b"HTTP/1.1 200")
        kept_alive.sendall(_partial_head(server.port))  # its next request stalls
        stalled.append(kept_alive)

        # A client is served while they stall.
        response = httpx.get(f"{server.url}/api/v1/health", timeout=10)
        assert response.status_code == 200

        # Every stalled connection is closed by the server: displaced by newer ones, or timed out
        # (a 408 when part of a head had come).
        deadline = time.monotonic() + 30
        answers = [_closed_by_server(sock, deadline) for sock in stalled]
        assert all(answer is not None for answer in answers), sum(answer is None for answer in answers)
        assert answers[-1].startswith(b"HTTP/1.1 408") and answers[-3].startswith(b"HTTP/1.1 408")
        assert answers[-2] == b""  # the stalled body: closed
    finally:
        for sock in stalled:
            sock.close()
    assert server.proc.poll() is None
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/api/v1/health").status_code == 200
        assert http.get("/api/v1/runs/p/r/log/offset").json() == {"offset": 0}
    server.stop()
    assert "--max-connections lowered from 1000 to 128" in server.stderr_text()


def test_a_slow_upload_that_keeps_going_is_not_cut_off(servers):
    """The idle timeout counts silence, not the length of the upload."""
    server = servers(extra=("--header-timeout", "2", "--idle-timeout", "2"))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(f"PUT /api/v1/runs/p/r/log?offset=0 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                     "Content-Length: 8\r\n\r\n".encode())
        for byte in MAGIC[:4]:
            time.sleep(1)  # 4 s of upload in all, never 2 s silent
            sock.sendall(bytes([byte]))
        sock.sendall(MAGIC[4:])
        assert _response(sock).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    assert httpx.get(f"{server.url}/api/v1/runs/p/r/log/offset", timeout=10).json() == {"offset": 8}


def _exchange(port: int, data: bytes, deadline: float) -> bytes | None:
    """Send ``data`` on a fresh connection; what came back before the server closed it (None:
    still open at ``deadline``)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(data)
        return _closed_by_server(sock, deadline)
    finally:
        sock.close()


def test_both_http_implementations_refuse_bad_heads_and_close_stalls(servers):
    """What h11 checks of a request head holds with httptools (the default, whose parser checks
    less): a head that grows past 64 KiB without ending gets 400, as does an HTTP/1.1 request
    without exactly one Host; a head just under passes (with httptools any head over 64 KiB gets
    400). Both time out a partial head (408) and a stalled body (closed)."""
    for parser in ("h11", "httptools"):
        server = servers(extra=("--http", parser, "--header-timeout", "1", "--idle-timeout", "1"))
        host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
        deadline = time.monotonic() + 20

        def answer(head: bytes, port: int = server.port, deadline: float = deadline) -> bytes:
            data = _exchange(port, head, deadline)
            assert data is not None, head[:60]
            return data.split(b"\r\n", 1)[0]

        def request(*headers: bytes, version: bytes = b"1.1") -> bytes:
            return b"GET /api/v1/health HTTP/" + version + b"\r\n" + b"".join(headers) + b"Connection: close\r\n\r\n"

        ok, bad = b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"
        assert answer(request(host, b"X-Big: " + b"a" * 60_000 + b"\r\n")) == ok, parser
        endless = b"GET /api/v1/health HTTP/1.1\r\n" + host + b"X-Endless: " + b"a" * 70_000  # never finishes its line
        assert answer(endless) == bad, parser
        if parser == "httptools":  # h11 refuses a head that stays incomplete past 64 KiB, one read may bring more
            assert answer(request(host, b"X-Big: " + b"a" * 70_000 + b"\r\n")) == bad
            assert answer(request(host, *[b"X-H%d: %s\r\n" % (n, b"v" * 30) for n in range(2_000)])) == bad
        assert answer(request()) == bad, parser  # HTTP/1.1 without Host
        assert answer(request(host, host)) == bad, parser
        # HTTP/1.0 needs none: the parser passes it (the --dev server's Host check then answers 403).
        assert answer(request(version=b"1.0")) == b"HTTP/1.1 403 Forbidden", parser
        assert answer(_partial_head(server.port)) == b"HTTP/1.1 408 Request Timeout", parser
        stalled_body = (b"PUT /api/v1/runs/p/r/log?offset=0 HTTP/1.1\r\n" + host
                        + b"Content-Length: 1000\r\n\r\n" + MAGIC)
        assert _exchange(server.port, stalled_body, deadline) == b"", parser
        with httpx.Client(base_url=server.url, timeout=10) as http:  # kept alive: two requests, one connection
            assert [http.get("/api/v1/health").status_code for _ in range(2)] == [200, 200]


def test_a_body_sent_in_uneven_pieces_arrives_byte_exact(servers):
    """With httptools the server hands the body's pieces to the application without copying
    them (``connections._BodyPieces``): one piece as it is, several received while the route was
    busy joined once. A blob written to the socket in pieces of 1 byte to 1 MiB, with pauses
    between some (so the server gets some alone and some several at once), is stored byte-exact
    (its sha256 is checked by the route) and reads back the same."""
    import hashlib
    import random

    server = servers()
    generator = random.Random(15)
    blob = generator.randbytes(5 << 20)
    digest = hashlib.sha256(blob).hexdigest()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(f"PUT /api/v1/projects/p/artifacts/_blobs/{digest} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                     f"Content-Type: application/octet-stream\r\nContent-Length: {len(blob)}\r\n\r\n".encode())
        sent = 0
        while sent < len(blob):
            size = generator.choice((1, 7, 4096, 65_537, 300_000, 1 << 20))
            sock.sendall(blob[sent:sent + size])
            sent += size
            if generator.random() < 0.2:
                time.sleep(0.01)
        assert _response(sock).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    response = httpx.get(f"{server.url}/api/v1/projects/p/artifacts/_blobs/{digest}", timeout=30)
    assert response.status_code == 200 and response.content == blob


def test_body_pieces_hand_over_one_piece_as_is_and_join_several():
    from tracklet.server.connections import _BodyPieces

    pieces = _BodyPieces()
    assert bytes(pieces) == b"" and len(pieces) == 0
    piece = b"x" * 70_000
    pieces += piece
    assert bytes(pieces) is piece and len(pieces) == 70_000  # not copied
    pieces += b"yz"
    assert bytes(pieces) == piece + b"yz" and len(pieces) == 70_002


class _BodyIntoApp:
    """A raw ASGI app that reads each request's body with ``body.read_body_into`` into a buffer of
    its Content-Length (``X-Shorter``/``X-Longer``: that many bytes less or more) and answers with
    what it saw: the bytes' size and sha256, or the error's status and detail. ``X-Give-Up-After``:
    the route stops waiting for the body after that many seconds (cancelled mid-body);
    ``X-Think``: it answers that many seconds after the body is whole; ``X-Linger``: that many
    seconds after giving up."""

    def __init__(self) -> None:
        self.offered: list[bool] = []
        self.answers: list[dict] = []
        self.abandoned: tuple[bytearray, bytes] | None = None

    async def __call__(self, scope, receive, send) -> None:
        import asyncio
        import hashlib
        import json

        from fastapi import HTTPException
        from starlette.requests import Request

        from tracklet.server.body import read_body_into
        from tracklet.server.connections import BODY_INTO

        request = Request(scope, receive)
        headers = request.headers
        self.offered.append(BODY_INTO in scope.get("extensions", {}))
        size = int(headers.get("content-length", "0")) - int(headers.get("x-shorter", "0"))
        buffer = bytearray(size + int(headers.get("x-longer", "0")))
        try:
            reading = read_body_into(request, memoryview(buffer))
            wait = headers.get("x-give-up-after")
            size = await (asyncio.wait_for(reading, float(wait)) if wait else reading)
            await asyncio.sleep(float(headers.get("x-think", "0")))
            answer = {"size": size, "sha256": hashlib.sha256(buffer[:size]).hexdigest()}
            status = 200
        except HTTPException as error:
            answer, status = {"detail": error.detail}, error.status_code
        except asyncio.TimeoutError:
            answer, status = {"detail": "gave up"}, 408
            self.abandoned = (buffer, bytes(buffer))  # the buffer may go to another request now
            await asyncio.sleep(float(headers.get("x-linger", "0")))  # as a route's exception handling may
        self.answers.append(answer)
        body = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def wait_for_answers(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.answers) < count and time.monotonic() < deadline:
            time.sleep(0.02)


def _serve(app, http: str = "httptools", loop: str = "auto", **limits):
    import contextlib
    import threading

    import uvicorn

    from tracklet.server.connections import ConnectionLimits, uvicorn_options

    @contextlib.contextmanager
    def running():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                               loop=loop, **uvicorn_options(ConnectionLimits(**limits), http)))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            while not server.started:
                thread.join(0.02)
            yield port
        finally:
            server.should_exit = True
            thread.join(10)

    return running()


class _BodyServer:
    """An in-process uvicorn server with the guarded protocol and a ``_BodyIntoApp``, and the ways
    of sending it requests the tests below share."""

    def __init__(self, port: int, app: _BodyIntoApp, path: str, starts: list[bool]) -> None:
        self.port, self.app, self.path, self.starts = port, app, path, starts

    def head(self, size: int, extra: str = "") -> bytes:
        return (f"PUT /x HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {size}\r\n{extra}\r\n").encode()

    def request(self, body: bytes, extra: str = "") -> bytes:
        return self.head(len(body), extra) + body

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def took_its_path(self) -> bool:
        """Whether the requests took the path this server stands for: the direct read into the
        buffer where it is offered and not refused, the parser's callback where refused (h11:
        neither; the route reads piece by piece)."""
        offered = {self.path != "h11"}
        return set(self.app.offered) == offered and any(self.starts) == (self.path == "direct")


@pytest.fixture(params=[("direct", "httptools", "uvloop"), ("direct", "httptools", "asyncio"),
                        ("callback", "httptools", "uvloop"), ("h11", "h11", "asyncio")],
                ids=lambda param: "-".join(param))
def body_server(request, monkeypatch):
    """``BODY_INTO`` (artifact packs) over each way a body can reach the route's buffer: received
    straight into it (``_DirectBody``, on uvloop and on asyncio's own loop), written into it by the
    parser's callback (the direct read refused), and read piece by piece (h11: no extension)."""
    from tracklet.server import connections

    path, http, loop = request.param
    starts: list[bool] = []
    real = connections._DirectBody.start.__func__

    def start(cls, protocol, cycle, sink):
        direct = real(cls, protocol, cycle, sink) if path == "direct" else None
        starts.append(direct is not None)
        return direct

    monkeypatch.setattr(connections._DirectBody, "start", classmethod(start))
    app = _BodyIntoApp()
    marker = request.node.get_closest_marker("idle_timeout")
    with _serve(app, http, loop, idle_timeout=marker.args[0] if marker else 1.0) as port:
        yield _BodyServer(port, app, path, starts)


def _exact(body: bytes) -> dict:
    import hashlib

    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_a_body_read_into_a_buffer_arrives_byte_exact_however_it_is_sent(body_server):
    """Whatever the pieces (1 byte to 1 MiB, with pauses so some arrive alone and some while others
    wait), with ``Expect: 100-continue``, with the next request sent right behind the body's last
    byte, into a buffer larger than the body, behind a GET on the same connection: each body is
    exact and each request answered, on one kept-alive connection."""
    import json
    import random

    server = body_server
    generator = random.Random(19)
    sock = server.connect()
    answers = _Answers(sock)
    try:
        for size in (1, 70_000, 5 << 20):
            blob = generator.randbytes(size)
            sock.sendall(server.head(size))
            sent = 0
            while sent < size:
                step = generator.choice((1, 7, 4096, 65_537, 300_000, 1 << 20))
                sock.sendall(blob[sent:sent + step])
                sent += step
                if generator.random() < 0.2:
                    time.sleep(0.01)
            assert json.loads(answers.body()) == _exact(blob)

        blob = generator.randbytes(1 << 20)  # the client waits for 100 Continue before its body
        sock.sendall(server.head(len(blob), "Expect: 100-continue\r\n"))
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(blob)
        assert json.loads(answers.body()) == _exact(blob)

        for extra in ("", "X-Longer: 100000\r\n"):  # the next request right behind the body
            first, second = generator.randbytes(3 << 20), generator.randbytes(200_000)
            whole = server.request(first, extra)
            cut = len(whole) - len(first) + 100_000
            sock.sendall(whole[:cut])
            time.sleep(0.2)  # the route waits for the rest of the body
            sock.sendall(whole[cut:] + server.request(second, extra))
            assert json.loads(answers.body()) == _exact(first)
            assert json.loads(answers.body()) == _exact(second)

        blob = generator.randbytes(2 << 20)  # a PUT pipelined behind a GET
        whole = f"GET /x HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode() + server.request(blob)
        sock.sendall(whole[:-1_500_000])
        time.sleep(0.2)
        sock.sendall(whole[-1_500_000:])
        assert json.loads(answers.body()) == _exact(b"")
        assert json.loads(answers.body()) == _exact(blob)
    finally:
        sock.close()
    assert server.took_its_path()


@pytest.mark.idle_timeout(1.5)
def test_a_slow_sender_and_a_slow_route_are_not_cut_off_by_the_idle_timeout(body_server):
    """The idle timeout (1.5 s here) counts from the last bytes received, at every read, and stops
    once the body is whole: a body sent in pieces 0.5 s apart (3 s in all, twice the timeout)
    arrives whole, and a route that answers 2 s after its body gets its answer out. (The gaps leave
    1 s of margin: with 0.6 s gaps under a 1 s timeout, a CI machine under load once woke the
    sender late enough for the server to close the connection.)"""
    import json
    import random

    server = body_server
    blob = random.Random(3).randbytes(600_000)
    sock = server.connect()
    answers = _Answers(sock)
    try:
        sock.sendall(server.head(len(blob)))
        for piece in range(6):
            time.sleep(0.5)
            sock.sendall(blob[piece * 100_000:(piece + 1) * 100_000])
        assert json.loads(answers.body()) == _exact(blob)
        sock.sendall(server.request(blob, "X-Think: 2\r\n"))
        assert json.loads(answers.body()) == _exact(blob)
    finally:
        sock.close()
    assert server.took_its_path()


def test_a_body_longer_than_its_buffer_or_cut_off_is_answered_not_hung(body_server):
    """A body longer than the route's buffer is a clear 400, whether its excess arrived before the
    route asked or after; a request with ``Connection: close`` followed by stray bytes gets its
    answer; a client that goes away or stalls mid-body (the idle timeout) is a disconnect the
    route hears of, not a hang."""
    import json

    server = body_server
    longer = {"detail": "the request body is longer than its 1400 bytes"}
    sock = server.connect()
    answers = _Answers(sock)
    try:
        sock.sendall(server.request(bytes(2000), "X-Shorter: 600\r\n"))  # whole before the route asks
        assert json.loads(answers.body()) == longer
    finally:
        sock.close()
    sock = server.connect()
    answers = _Answers(sock)
    try:
        whole = server.request(bytes(2000), "X-Shorter: 600\r\n")
        sock.sendall(whole[:-500])  # more than the buffer already in, the rest would fit
        time.sleep(0.2)
        sock.sendall(whole[-500:])
        assert json.loads(answers.body()) == longer
    finally:
        sock.close()

    sock = server.connect()
    answers = _Answers(sock)
    try:  # the old parser ignored bytes after a closing request; so must whatever reads after it
        whole = server.request(bytes(300_000), "Connection: close\r\n")
        sock.sendall(whole[:-200_000])
        time.sleep(0.2)
        sock.sendall(whole[-200_000:] + b"\x00junk\r")
        assert json.loads(answers.body()) == _exact(bytes(300_000))
    finally:
        sock.close()

    count = len(server.app.answers)
    for ending in ("close", "stall"):
        sock = server.connect()
        sock.sendall(server.request(bytes(1_000_000))[:-700_000])
        time.sleep(0.2)  # the route waits for the rest
        if ending == "close":
            sock.close()
        else:  # the server's idle timeout (1 s) closes it
            assert _closed_by_server(sock, time.monotonic() + 10) is not None
            sock.close()
        count += 1
        server.app.wait_for_answers(count)
        assert server.app.answers[-1] == {"detail": "the client disconnected before sending the whole body"}
    assert server.took_its_path()


def test_a_route_that_gives_up_mid_body_never_has_its_buffer_written(body_server):
    """A route cancelled while it waits for its body (a server shutting down) may hand its buffer
    to another request at once: nothing of the rest of the body may be written into it. Where the
    body was being received straight into the buffer, the connection is closed (the parser can't
    resume mid-body), so a request sent behind it gets no answer; the server goes on serving."""
    import json
    import random

    server = body_server
    generator = random.Random(5)
    sock = server.connect()
    try:
        whole = server.request(generator.randbytes(1_000_000), "X-Give-Up-After: 0.3\r\nX-Linger: 0.5\r\n")
        sock.sendall(whole[:-700_000])
        deadline = time.monotonic() + 10
        while server.app.abandoned is None and time.monotonic() < deadline:
            time.sleep(0.01)
        try:  # the rest of the body while the route lingers, and a request behind it
            sock.sendall(whole[-700_000:] + server.request(b"next"))
        except OSError:
            pass
        server.app.wait_for_answers(1)
        assert server.app.answers[0] == {"detail": "gave up"}
        received = _closed_by_server(sock, time.monotonic() + (10 if server.path == "direct" else 1.5))
        if server.path == "direct":
            assert received == b""  # closed unanswered: neither the 408 nor the next request's answer
    finally:
        sock.close()
    assert server.app.abandoned is not None
    buffer, then = server.app.abandoned
    assert bytes(buffer) == then

    sock = server.connect()
    try:
        blob = generator.randbytes(2 << 20)
        sock.sendall(server.request(blob))
        assert json.loads(_Answers(sock).body()) == _exact(blob)
    finally:
        sock.close()
    assert server.took_its_path()


class _Answers:
    """Responses read one at a time from a kept-alive socket (several may arrive in one recv)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""
        self.head = b""

    def body(self) -> bytes:
        while b"\r\n\r\n" not in self.data:
            self.data += self._more()
        head, _, rest = self.data.partition(b"\r\n\r\n")
        self.head = head
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += self._more()
        self.data = rest[length:]
        return rest[:length]

    def _more(self) -> bytes:
        piece = self.sock.recv(65536)
        if not piece:
            raise ConnectionError(f"the server closed the connection; had {self.data[:200]!r}")
        return piece


def test_the_rest_of_a_body_answered_early_is_not_taken_for_a_request_head(servers):
    """A route may answer before it reads its body (413: larger than the server takes); the body's
    bytes that arrive after the answer are the parser's to drop, not a request head to count
    against the 64 KiB head limit: the connection serves its next request (it was answered 400
    "Invalid HTTP request received." and closed, each time the rest of a body outran the answer)."""
    server = servers(extra=("--max-body-mb", "1"))
    body = bytes(2 << 20)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    answers = _Answers(sock)
    try:
        sock.sendall(f"PUT /api/v1/runs/p/r/log?offset=0 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode())
        assert b"too large" in answers.body() and answers.head.startswith(b"HTTP/1.1 413")  # before the body
        sock.sendall(body)
        sock.sendall(f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        answers.body()
        assert answers.head.startswith(b"HTTP/1.1 200"), answers.head
    finally:
        sock.close()
