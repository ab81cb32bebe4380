"""HTTPS to a server through an HTTPS proxy (TLS in TLS): every step of both handshakes (to the
proxy, and to the server inside it, which httpcore runs on memory buffers through
``SSLContext.wrap_bio``) is code a fork on another thread waits for (``core/forksafe.section``),
as a direct connection's are: a child forked amid one could inherit OpenSSL's locks held, and its
own TLS then waited for ever. A real CONNECT proxy with TLS on its listening side and a real HTTPS
server, in a fresh interpreter (it forks); certificates from ``cryptography``."""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_script

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the case forks")
pytest.importorskip("cryptography")

SERVERS = r'''
import datetime, http.server, os, select, socket, socketserver, ssl, threading
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

def certificates(folder):
    """A CA (its PEM at ``folder/ca.pem``) and a server certificate for 127.0.0.1 it signed: a server context."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tracklet test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(os.path.join(folder, "ca.pem"), "wb") as out:
        out.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(folder, "server.pem"), "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(folder, "server.pem"))
    return context

class Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"through " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

def origin(context):
    """An HTTPS server on 127.0.0.1; its port."""
    server = Threaded(("127.0.0.1", 0), Answer)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]

CONNECTS = []

def proxy(context):
    """A CONNECT proxy with TLS on its listening side (an HTTPS proxy); its port."""
    listening = socket.create_server(("127.0.0.1", 0))

    def relay(client):
        try:
            client = context.wrap_socket(client, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                got = client.recv(4096)
                if not got:
                    return
                head += got
            line = head.split(b"\r\n", 1)[0].decode()
            method, target, _ = line.split(" ")
            assert method == "CONNECT", line
            CONNECTS.append(target)
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            while True:
                ready = [client] if client.pending() else select.select([client, upstream], [], [], 60)[0]
                if not ready:
                    return
                for side in ready:
                    data = side.recv(65536)
                    if not data:
                        return
                    (upstream if side is client else client).sendall(data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            client.close()

    def accept():
        while True:
            client, _ = listening.accept()
            threading.Thread(target=relay, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listening.getsockname()[1]
'''


def test_both_handshakes_through_an_https_proxy_run_in_sections_a_fork_waits_for(tmp_path):
    # Every handshake step of either leg (ssl.SSLSocket's to the proxy, ssl.SSLObject's to the
    # server inside it) is watched: whether it ran in a section, and, for the first step inside the
    # proxy, a fork on another thread begun during it: the child records whether that step had
    # ended when it was forked (a fork waits for the section; without it the fork went ahead). Then
    # a child forked after the request makes its own through the proxy, under an alarm.
    done = run_script(SERVERS + f"""
import json, signal, sys
folder = {str(tmp_path)!r}
server_context = certificates(folder)
origin_port, proxy_port = origin(server_context), proxy(server_context)
os.environ.update(SSL_CERT_FILE=os.path.join(folder, "ca.pem"), HTTPS_PROXY=f"https://127.0.0.1:{{proxy_port}}",
                  NO_PROXY="")
for name in ("https_proxy", "no_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(name, None)

from tracklet.core import forksafe
from tracklet.client.http import HttpClient

steps, tried, forked = [], [], []

def watched(real):
    def do_handshake(self, *args):
        if self.server_side:  # the proxy's and the server's own
            return real(self, *args)
        inside = threading.get_ident() in forksafe._in_sections
        steps.append((type(self).__mro__[1].__name__ if type(self).__module__ != "ssl" else type(self).__name__,
                      inside))
        if isinstance(self, ssl.SSLObject) and not tried:
            tried.append(True)
            began, ended = threading.Event(), []
            def fork():
                began.set()
                pid = os.fork()
                if pid == 0:
                    os._exit(3 if ended else 4)  # 3: forked after the step; 4: amid it
                forked.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            forker = threading.Thread(target=fork)
            forker.start()
            began.wait(30)
            import time
            time.sleep(0.2)  # the step goes on: a fork that doesn't wait for it goes ahead meanwhile
            ended.append(True)
        return real(self, *args)
    return do_handshake

ssl.SSLObject.do_handshake = watched(ssl.SSLObject.do_handshake)
ssl.SSLSocket.do_handshake = watched(ssl.SSLSocket.do_handshake)

client = HttpClient(f"https://127.0.0.1:{{origin_port}}")
answer = client.request("GET", "/parent")
while not forked:
    threading.Event().wait(0.01)
pid = os.fork()
if pid == 0:
    code = 1
    try:
        signal.alarm(30)
        code = 0 if client.request("GET", "/child").text == "through /child" else 2
    finally:
        os._exit(code)
child = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps({{"answer": answer.text, "connects": len(CONNECTS), "steps": sorted(set(steps)),
                  "fork_amid_step": forked, "child": child}}))
""", timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["answer"] == "through /parent" and got["connects"] == 2 and got["child"] == 0, got
    assert got["steps"] == [["SSLObject", True], ["SSLSocket", True]], got  # both legs, only in sections
    assert got["fork_amid_step"] == [3], got  # the fork waited for the step
