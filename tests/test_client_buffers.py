"""A pack's body sent from memory with ``http.client`` (tracklet/client/buffers.py,
``HttpClient.send_buffers``: no h11 copy of each byte under the interpreter lock), against a real
`tracklet server`: what the server stores is the pack, over TLS verified against the client's CAs,
with the client's key; a connection dropped mid-pack or closed while idle costs a resend, never the
pack; one kept-alive connection per sending thread; a proxy configured for the URL is used (the
upload then goes through httpx). A TCP relay on loopback in front of the server drops, counts,
and TLS-terminates connections."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import threading
from pathlib import Path

import blake3
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tracklet.artifacts.packs import pack_trailer
from tracklet.client import http as http_module
from tracklet.client.artifacts import ArtifactClient, Pieces
from tracklet.client.http import HttpClient, RetryPolicy
from tracklet.errors import RemoteError

CHUNK = 64 * 1024


def _pack(count: int = 40) -> tuple[str, Pieces, list[str]]:
    """A pack of ``count`` random chunks as its chunk buffers and trailer (as an online run sends it)."""
    chunks = [(blake3.blake3(data).digest(), data) for data in (os.urandom(CHUNK) for _ in range(count))]
    pack_id, trailer = pack_trailer(chunks)
    return pack_id, Pieces([*(data for _, data in chunks), trailer]), [cid.hex() for cid, _ in chunks]


def _missing(url: str, project: str, ids: list[str], headers: dict[str, str] | None = None) -> list[str]:
    response = httpx.post(f"{url}/api/v1/projects/{project}/artifacts/_chunks/missing", json={"chunks": ids},
                          headers=headers, timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()["missing"]


class Relay:
    """A TCP relay on loopback to ``target`` (host, port): ``connections`` counts the connections
    accepted; ``cut`` closes the first connection once that many bytes came from the client;
    ``drop_all()`` closes every connection open now; ``context`` TLS-terminates (server side)."""

    def __init__(self, target: tuple[str, int], *, cut: int | None = None,
                 context: ssl.SSLContext | None = None) -> None:
        self.target, self.cut, self.context = target, cut, context
        self.connections = 0
        self.ended = threading.Semaphore(0)  # released as a client closes its connection (not the server)
        self.cut_done = False
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.context is not None:
                client = self.context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError):  # a client that refused our certificate
            client.close()
            return
        upstream = socket.create_connection(self.target)
        with self._lock:
            self.connections += 1
            cut = self.cut if not self.cut_done else None
            self.cut_done = self.cut_done or cut is not None
            self._open += [client, upstream]
        ended = threading.Event()  # set once either side ended (closed, or cut)
        threading.Thread(target=self._pump, args=(upstream, client, None, ended), daemon=True).start()
        if self._pump(client, upstream, cut, ended):
            self.ended.release()

    def _pump(self, source: socket.socket, sink: socket.socket, cut: int | None, ended: threading.Event) -> bool:
        """Copy ``source`` to ``sink`` until either ends; True when ``source`` closed first."""
        moved = 0
        closed = False
        try:
            while data := source.recv(1 << 16):
                if cut is not None and moved + len(data) >= cut:
                    sink.sendall(data[:cut - moved])
                    break
                sink.sendall(data)
                moved += len(data)
            else:
                closed = not ended.is_set()
        except OSError:
            pass
        ended.set()
        for end in (source, sink):
            with _quiet():
                end.shutdown(socket.SHUT_RDWR)
            end.close()
        return closed

    def drop_all(self) -> None:
        with self._lock:
            ends, self._open = self._open, []
        for end in ends:
            with _quiet():
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        self.drop_all()


class _quiet:
    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: object, error: object, trace: object) -> bool:
        return isinstance(error, OSError)


@pytest.fixture
def server(servers):
    return servers()


def _no_sleep(waits: list[float]):
    return lambda seconds: waits.append(seconds)


def _bearer(server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_key}"}


# The relay tests use a server that needs keys: a --dev server refuses a Host header other than
# its own address (the relay's port), as a DNS rebinding guard.
def test_packs_sent_from_buffers_are_stored_and_one_connection_per_thread_is_kept(keyed):
    server = keyed
    relay = Relay(("127.0.0.1", server.port))
    waits: list[float] = []
    http = HttpClient(f"http://127.0.0.1:{relay.port}", api_key=server.admin_key, sleep=_no_sleep(waits))
    client = ArtifactClient(http)
    try:
        packs = [_pack() for _ in range(3)]
        for pack_id, pieces, _ in packs:
            assert client.upload_pack("p", pack_id, pieces) == len(pieces)
        assert relay.connections == 1  # kept alive between a thread's packs
        others = [_pack() for _ in range(2)]
        threads = [threading.Thread(target=client.upload_pack, args=("p", pack_id, pieces))
                   for pack_id, pieces, _ in others]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert relay.connections == 3  # a connection of each new sending thread's own
        pack_id, pieces, ids = _pack()
        last = threading.Thread(target=client.upload_pack, args=("p", pack_id, pieces))
        last.start()
        last.join(timeout=60)
        others.append((pack_id, pieces, ids))
        for _ in threads:  # those of the threads that ended: closed once a connection is opened again
            assert relay.ended.acquire(timeout=60)
        assert relay.connections == 4
        assert _missing(server.url, "p", [cid for *_, ids in packs + others for cid in ids], _bearer(server)) == []
        assert waits == []
    finally:
        http.close()
        relay.close()


def test_a_connection_dropped_mid_pack_costs_a_resend_and_one_closed_while_idle_none(keyed):
    """The first connection is cut after 1 MiB of a 2.5 MiB pack: the upload sends it again (a
    backoff) and the server keeps it whole. Then the relay closes the kept-alive connection while
    it is idle: the next pack goes on a new connection without a failed try."""
    server = keyed
    relay = Relay(("127.0.0.1", server.port), cut=1 << 20)
    waits: list[float] = []
    http = HttpClient(f"http://127.0.0.1:{relay.port}", api_key=server.admin_key, sleep=_no_sleep(waits))
    client = ArtifactClient(http)
    try:
        pack_id, pieces, ids = _pack()
        assert client.upload_pack("p", pack_id, pieces) == len(pieces)
        assert relay.cut_done and relay.connections == 2 and len(waits) == 1
        assert _missing(server.url, "p", ids, _bearer(server)) == []

        relay.drop_all()
        pack_id, pieces, ids = _pack()
        assert client.upload_pack("p", pack_id, pieces) == len(pieces)
        assert relay.connections == 3 and len(waits) == 1  # no failed try on the closed connection
        assert _missing(server.url, "p", ids, _bearer(server)) == []
    finally:
        http.close()
        relay.close()


def test_nothing_listening_fails_clearly(tmp_path):
    """Nothing listening: the client's error names the server and the connection's failure."""
    from serverproc import _free_port

    port = _free_port()
    http = HttpClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=2), sleep=lambda _: None)
    pack_id, pieces, _ = _pack(2)
    with pytest.raises(RemoteError, match=rf"cannot reach http://127.0.0.1:{port}: gave up after .* 2 attempt"
                                          r"\(s\): ConnectError: ConnectionRefusedError"):
        ArtifactClient(http).upload_pack("p", pack_id, pieces)
    http.close()


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA's certificate, and a certificate it signed for 127.0.0.1 with its key (PEM files)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tracklet test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_over_https_the_servers_certificate_is_verified_and_the_key_sent(keyed, tmp_path, monkeypatch):
    """TLS in front of a server that needs keys: with the CA trusted (``SSL_CERT_FILE``, as httpx
    reads it) the pack is stored; with the key missing, a clear 401; with the CA not trusted, the
    certificate is refused and nothing is sent."""
    ca, cert, key = _certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    relay = Relay(("127.0.0.1", keyed.port), context=context)
    url = f"https://127.0.0.1:{relay.port}"
    try:
        monkeypatch.setattr(http_module, "_ssl_context", None)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        http = HttpClient(url, api_key=keyed.admin_key)
        packs = [_pack(), _pack()]
        for pack_id, pieces, _ in packs:
            assert ArtifactClient(http).upload_pack("p", pack_id, pieces) == len(pieces)
        http.close()
        assert relay.connections == 1  # the TLS connection kept alive between packs
        assert _missing(keyed.url, "p", packs[0][2] + packs[1][2], _bearer(keyed)) == []
        with pytest.raises(RuntimeError, match="closed"):  # a closed client is not retried for minutes
            ArtifactClient(http).upload_pack("p", *_pack(2)[:2])

        monkeypatch.delenv("TRACKLET_API_KEY", raising=False)
        keyless = HttpClient(url)  # no key saved for this new port
        with pytest.raises(RemoteError, match=r"refused the upload of pack .* \(HTTP 401\)"):
            ArtifactClient(keyless).upload_pack("p", *_pack(2)[:2])
        keyless.close()

        monkeypatch.setattr(http_module, "_ssl_context", None)
        monkeypatch.delenv("SSL_CERT_FILE")
        untrusting = HttpClient(url, api_key=keyed.admin_key, retry=RetryPolicy(attempts=1))
        connections = relay.connections
        with pytest.raises(RemoteError, match=r"ConnectError: SSLCertVerificationError.*certificate verify failed"):
            ArtifactClient(untrusting).upload_pack("p", *_pack(2)[:2])
        untrusting.close()
        assert relay.connections == connections  # refused before anything was relayed
    finally:
        monkeypatch.setattr(http_module, "_ssl_context", None)
        relay.close()


@pytest.fixture
def keyed(servers, tmp_path):
    """A server that needs keys, with an admin key made beforehand."""
    from serverproc import cli

    root = tmp_path / "keyed"
    created = cli("admin", "--dir", str(root), "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    server = servers(root, dev=False)
    server.admin_key = created.stdout.strip()
    return server


def test_a_proxy_configured_for_the_url_carries_the_pack(server, monkeypatch):
    """``HTTP_PROXY`` names a proxy (here a relay to the server, which takes the absolute-form
    request): the pack goes through it, by httpx. With the server's host in ``NO_PROXY`` it goes
    straight to the server."""
    relay = Relay(("127.0.0.1", server.port))
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{relay.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        with HttpClient(server.url) as http:
            pack_id, pieces, ids = _pack()
            assert ArtifactClient(http).upload_pack("p", pack_id, pieces) == len(pieces)
        assert relay.connections == 1
        assert _missing(server.url, "p", ids) == []

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with HttpClient(server.url) as http:
            pack_id, pieces, ids = _pack()
            assert ArtifactClient(http).upload_pack("p", pack_id, pieces) == len(pieces)
        assert relay.connections == 1  # not through the proxy
        assert _missing(server.url, "p", ids) == []
    finally:
        relay.close()
