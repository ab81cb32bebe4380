"""A pack's request body at the trust boundary (issue #15; docs/artifacts.md, "Server CPU per
byte"): the server receives a pack's body piece by piece into a reused buffer (no copies on the
way, ``connections._BodyPieces``) and checks it whole. Whatever goes wrong with a body, the
answer is a clear 4xx and nothing of the pack is visible: no pack file, no partial file, no
chunk held; and the next pack through the same buffers is stored intact. A real `tracklet
server` process over raw sockets. (The buffer then lent to a file's hash while it needs it, and
given back once: tests/test_artifacts_file_streams.py.)"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import blake3
import httpx

from tracklet.artifacts.packs import build_pack

CHUNK = 64 * 1024


def _pack(count: int = 24) -> tuple[str, bytes, list[str]]:
    chunks = [os.urandom(CHUNK) for _ in range(count)]
    pack_id, data = build_pack([(blake3.blake3(chunk).digest(), chunk) for chunk in chunks])
    return pack_id, data, [blake3.blake3(chunk).hexdigest() for chunk in chunks]


def _kept(root: Path) -> list[str]:
    """Pack files, finished or partial, under the server's data root."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()
                  and (path.suffix in (".pack", ".partial")))


def _missing(server, project: str, ids: list[str]) -> list[str]:
    response = httpx.post(f"{server.url}/api/v1/projects/{project}/artifacts/_chunks/missing",
                          json={"chunks": ids}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["missing"]


def _head(server, pack_id: str, length: int | None, *, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"PUT /api/v1/projects/p/artifacts/_packs/{pack_id} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: application/octet-stream\r\n{size}{extra}\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    sock.settimeout(30)
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return int(head.split(b" ")[1]), body


def test_a_pack_cut_short_leaves_nothing_and_the_next_one_is_stored_intact(servers):
    server = servers()
    pack_id, data, ids = _pack()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(_head(server, pack_id, len(data)) + data[:len(data) // 2])
    time.sleep(0.3)  # the server has taken the half into its buffer
    sock.close()  # the client is gone: the body will never be whole
    deadline = time.monotonic() + 10
    while _kept(server.root) and time.monotonic() < deadline:  # a partial would be removed, not left
        time.sleep(0.05)
    assert _kept(server.root) == []
    assert _missing(server, "p", ids) == ids  # no chunk of it is held

    # The buffer the half went into is used again: the next packs must come out exact.
    for _ in range(3):
        other_id, other, other_ids = _pack()
        response = httpx.put(f"{server.url}/api/v1/projects/p/artifacts/_packs/{other_id}", content=other, timeout=30)
        assert response.status_code == 200, response.text
        assert _missing(server, "p", other_ids) == []
    response = httpx.put(f"{server.url}/api/v1/projects/p/artifacts/_packs/{pack_id}", content=data, timeout=30)
    assert response.status_code == 200 and _missing(server, "p", ids) == []


def test_a_pack_over_the_limit_or_damaged_is_refused_clearly_and_nothing_is_kept(servers):
    server = servers()
    pack_id, data, ids = _pack()

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:  # announced larger than a pack may be: refused before the body is read
        sock.sendall(_head(server, pack_id, (32 << 20) + 1))
        status, body = _answer(sock)
    finally:
        sock.close()
    assert status == 413 and b"more than the server's limit of 33554432 bytes" in body

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:  # no Content-Length (chunked): read with the same limit, past which 413
        sock.sendall(_head(server, pack_id, None))
        piece = os.urandom(1 << 20)
        status = None
        for _ in range(40):
            try:
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        status, body = _answer(sock)
    finally:
        sock.close()
    assert status == 413 and b"request body too large" in body

    damaged = bytearray(data)
    damaged[CHUNK * 5 + 7] ^= 0xFF  # a byte of the sixth chunk
    response = httpx.put(f"{server.url}/api/v1/projects/p/artifacts/_packs/{pack_id}", content=bytes(damaged),
                         timeout=30)
    assert response.status_code == 400
    assert f"chunk {ids[5]} at byte {CHUNK * 5} doesn't hash to its id" in response.json()["detail"]

    truncated = data[:-1]  # its footer no longer where it should be
    response = httpx.put(f"{server.url}/api/v1/projects/p/artifacts/_packs/{pack_id}", content=truncated, timeout=30)
    assert response.status_code == 400 and f"pack {pack_id}" in response.json()["detail"]

    assert _kept(server.root) == [] and _missing(server, "p", ids) == ids

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:  # sent chunked and whole: taken like any other
        sock.sendall(_head(server, pack_id, None) + b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n")
        status, body = _answer(sock)
    finally:
        sock.close()
    assert status == 200, body
    assert _missing(server, "p", ids) == []


def _put(server, pack_id: str, data: bytes) -> httpx.Response:
    """One PUT of a pack, never sent again (unlike the client's upload)."""
    return httpx.put(f"{server.url}/api/v1/projects/p/artifacts/_packs/{pack_id}", content=data, timeout=30,
                     headers={"Content-Type": "application/octet-stream"})


def test_pack_buffers_out_at_once_are_capped_503_then_the_clients_upload_completes(servers):
    """``--max-pack-buffers-mb``: the memory lent to packs at once is capped. With a cap below one
    pack, packs are taken one at a time: a second pack while one is received gets 503 with
    Retry-After; the client's upload sends it again and completes once the first is gone. A buffer
    comes back on every path (a client gone mid-body, a damaged pack, a stored pack): were one
    kept, every later pack would get 503 for good."""
    import threading

    from tracklet.client.artifacts import ArtifactClient
    from tracklet.client.http import HttpClient

    server = servers(extra=("--max-pack-buffers-mb", "1"))  # each pack here is 1.5 MiB: one at a time
    held_id, held, _ = _pack()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(_head(server, held_id, len(held)) + held[:len(held) // 2])  # its buffer stays lent
    second_id, second, second_ids = _pack()
    deadline = time.monotonic() + 10
    refused = _put(server, second_id, second)
    while refused.status_code == 200 and time.monotonic() < deadline:  # the half may not have arrived yet
        second_id, second, second_ids = _pack()
        refused = _put(server, second_id, second)
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert "pack buffers" in refused.json()["detail"]

    third_id, third, third_ids = _pack()
    sent: list[int] = []
    upload = threading.Thread(target=lambda: sent.append(
        ArtifactClient(HttpClient(server.url)).upload_pack("p", third_id, third)))
    upload.start()
    sock.close()  # the first client is gone mid-body: its buffer comes back
    upload.join(timeout=120)
    assert sent == [len(third)]  # the client's retries got through
    assert _missing(server, "p", third_ids) == []

    damaged_id, damaged, _ = _pack()
    damaged = damaged[:100] + bytes([damaged[100] ^ 1]) + damaged[101:]
    assert _put(server, damaged_id, damaged).status_code == 400
    for _ in range(3):  # no buffer kept by the refusal or by a stored pack
        pack_id, data, ids = _pack()
        assert _put(server, pack_id, data).status_code == 200
        assert _missing(server, "p", ids) == []
