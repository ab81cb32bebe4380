"""The server's own listener under connections that stall (issue #12 item 8): a real `tracklet
server` process with a small open-file limit, loopback sockets that send part of a request and
stop. Before, ~1,000 such connections (the usual `ulimit -n`) stopped it from accepting anyone."""

from __future__ import annotations

import socket
import time

import httpx

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
