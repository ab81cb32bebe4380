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
    """One whole response (with content-length) read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return head


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
    its Content-Length and answers with what it saw: whether the protocol offered ``BODY_INTO``,
    the bytes' sha256, or the error's status and detail."""

    def __init__(self) -> None:
        self.offered: list[bool] = []
        self.answers: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        import asyncio
        import hashlib
        import json

        from fastapi import HTTPException
        from starlette.requests import Request

        from tracklet.server.body import read_body_into
        from tracklet.server.connections import BODY_INTO

        request = Request(scope, receive)
        self.offered.append(BODY_INTO in scope.get("extensions", {}))
        buffer = bytearray(int(request.headers["content-length"]) - int(request.headers.get("x-shorter", "0")))
        try:
            reading = read_body_into(request, memoryview(buffer))
            wait = request.headers.get("x-give-up-after")  # the route stops waiting (cancelled mid-body)
            size = await (asyncio.wait_for(reading, float(wait)) if wait else reading)
            answer = {"size": size, "sha256": hashlib.sha256(buffer[:size]).hexdigest()}
            status = 200
        except HTTPException as error:
            answer, status = {"detail": error.detail}, error.status_code
        except asyncio.TimeoutError:
            answer, status = {"detail": "gave up"}, 408
            self.abandoned = (buffer, bytes(buffer))  # the buffer may go to another request now
        self.answers.append(answer)
        body = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


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


@pytest.mark.parametrize(("http", "loop"), [("httptools", "uvloop"), ("httptools", "asyncio"), ("h11", "asyncio")])
def test_a_body_read_into_a_buffer_arrives_byte_exact_however_it_is_sent(http, loop):
    """``BODY_INTO`` (artifact packs): the rest of the body goes straight into the route's buffer
    (received into it by the transport where its length is known, else written by the parser's
    callback). Whatever the pieces (1 byte to 1 MiB, with pauses so some arrive alone and some
    while others wait), with ``Expect: 100-continue``, with the next request sent right behind the
    body's last byte, on one kept-alive connection: each body is exact and each request answered.
    A body longer than the route's buffer is a clear 400; a client that goes away or stalls
    mid-body (the idle timeout) is a disconnect the route hears of, not a hang. With h11 (no
    extension) the route reads piece by piece, the same."""
    import hashlib
    import json
    import random

    app = _BodyIntoApp()
    generator = random.Random(19)
    with _serve(app, http, loop, idle_timeout=1.0) as port:
        head = f"PUT /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n"

        def head_of(size: int, extra: str = "") -> bytes:
            return f"{head}Content-Length: {size}\r\n{extra}\r\n".encode()

        def request(body: bytes, extra: str = "") -> bytes:
            return head_of(len(body), extra) + body

        def exact(body: bytes) -> dict:
            return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}

        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        answers = _Answers(sock)
        try:
            for size in (1, 70_000, 5 << 20):
                blob = generator.randbytes(size)
                sock.sendall(head_of(size))
                sent = 0
                while sent < size:
                    step = generator.choice((1, 7, 4096, 65_537, 300_000, 1 << 20))
                    sock.sendall(blob[sent:sent + step])
                    sent += step
                    if generator.random() < 0.2:
                        time.sleep(0.01)
                assert json.loads(answers.body()) == exact(blob)

            blob = generator.randbytes(1 << 20)  # the client waits for 100 Continue before its body
            sock.sendall(head_of(len(blob), "Expect: 100-continue\r\n"))
            assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(blob)
            assert json.loads(answers.body()) == exact(blob)

            first, second = generator.randbytes(3 << 20), generator.randbytes(200_000)
            whole = request(first)
            sock.sendall(whole[:len(whole) - len(first) + 100_000])
            time.sleep(0.2)  # the route waits for the rest of the body
            sock.sendall(whole[len(whole) - len(first) + 100_000:] + request(second))  # the next request right behind
            assert json.loads(answers.body()) == exact(first)
            assert json.loads(answers.body()) == exact(second)

            sock.sendall(request(bytes(1000), "X-Shorter: 1\r\n"))
            assert json.loads(answers.body()) == {"detail": "the request body is longer than its 999 bytes"}
        finally:
            sock.close()

        for ending in ("close", "stall"):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(request(bytes(1_000_000))[:-700_000])
            time.sleep(0.2)  # the route waits for the rest
            if ending == "close":
                sock.close()
            else:  # the server's idle timeout (1 s) closes it
                assert _closed_by_server(sock, time.monotonic() + 10) is not None
                sock.close()
            deadline = time.monotonic() + 10
            while len(app.answers) < 8 + (ending == "stall") and time.monotonic() < deadline:
                time.sleep(0.02)
            assert app.answers[-1] == {"detail": "the client disconnected before sending the whole body"}

        # The route gives up mid-body: on the direct read the connection is closed (its parser can't
        # resume), else the answer goes out; either way the server goes on serving.
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        whole = request(generator.randbytes(1_000_000), "X-Give-Up-After: 0.3\r\n")
        sock.sendall(whole[:-700_000])
        deadline = time.monotonic() + 10
        while len(app.answers) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.answers[-1] == {"detail": "gave up"}
        try:  # the rest of the body: nothing may write it into the buffer the route gave up
            sock.sendall(whole[-700_000:])
        except OSError:
            pass
        assert _closed_by_server(sock, time.monotonic() + 10) is not None
        sock.close()
        buffer, then = app.abandoned
        assert bytes(buffer) == then
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            blob = generator.randbytes(2 << 20)
            sock.sendall(request(blob))
            assert json.loads(_Answers(sock).body()) == exact(blob)
        finally:
            sock.close()
    assert app.offered == [http == "httptools"] * 11  # through the extension where offered


class _Answers:
    """Responses read one at a time from a kept-alive socket (several may arrive in one recv)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""

    def body(self) -> bytes:
        while b"\r\n\r\n" not in self.data:
            self.data += self.sock.recv(65536)
        head, _, rest = self.data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.data = rest[length:]
        return rest[:length]
