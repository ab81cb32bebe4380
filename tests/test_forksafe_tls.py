"""TLS work outside tracklet's own sockets is code a fork on another thread waits for
(``core/forksafe.section``), as a direct connection's handshake is: a child forked amid it could
inherit OpenSSL's locks held (one of its global locks, while a context loads a CA bundle), and its
own TLS then waited for ever. HTTPS through an HTTPS proxy: both handshakes (to the proxy, and to
the server inside it, which httpcore runs on memory buffers through ``SSLContext.wrap_bio``). An S3
object store over HTTPS: the TLS context aiobotocore builds at a filesystem's first request, and
each handshake step on fsspec's IO thread. Real servers (a CONNECT proxy with TLS on its listening
side, an HTTPS server, s3rver with TLS), in fresh interpreters (they fork); certificates from
``cryptography`` (tests/tlscerts.py)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import run_script
from s3server import BUCKET, S3_KEY, S3_SECRET, S3RVER
from serverproc import _free_port

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the case forks")
pytest.importorskip("cryptography")
TESTS = Path(__file__).resolve().parent

SERVERS = r'''
import http.server, os, select, socket, socketserver, ssl, sys, threading
sys.path.insert(0, TESTS)
from tlscerts import certificates

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
    # a child forked after the request makes its own through the proxy, under an alarm. An https://
    # artifact reference's client (artifacts/references.py) goes the same way.
    done = run_script(f"TESTS = {str(TESTS)!r}\n" + SERVERS + f"""
import json, sys
folder = {str(tmp_path)!r}
server_context = certificates(folder)
origin_port, proxy_port = origin(server_context), proxy(server_context)
os.environ.update(SSL_CERT_FILE=os.path.join(folder, "ca.pem"), HTTPS_PROXY=f"https://127.0.0.1:{{proxy_port}}",
                  NO_PROXY="")
for name in ("https_proxy", "no_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(name, None)

import forkprobe
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
            forkprobe.fork_during_this_step(forked)  # 3: forked after the step; 4: amid it
        return real(self, *args)
    return do_handshake

ssl.SSLObject.do_handshake = watched(ssl.SSLObject.do_handshake)
ssl.SSLSocket.do_handshake = watched(ssl.SSLSocket.do_handshake)

client = HttpClient(f"https://127.0.0.1:{{origin_port}}")
answer = client.request("GET", "/parent")
from tracklet.artifacts.references import _http_client  # an https:// reference's (the artifact worker's)
with _http_client() as references:
    referenced = references.get(f"https://127.0.0.1:{{origin_port}}/reference").text
while not forked:
    threading.Event().wait(0.01)
child = forkprobe.forked(lambda: 0 if client.request("GET", "/child").text == "through /child" else 2)
print(json.dumps({{"answer": answer.text, "referenced": referenced, "connects": len(CONNECTS), "steps": sorted(set(steps)),
                  "fork_amid_step": forked, "child": child}}))
""", timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["answer"] == "through /parent" and got["referenced"] == "through /reference", got
    assert got["connects"] == 3 and got["child"] == 0, got
    assert got["steps"] == [["SSLObject", True], ["SSLSocket", True]], got  # both legs, only in sections
    assert got["fork_amid_step"] == [3], got  # the fork waited for the step


def test_an_s3_filesystems_first_request_builds_its_tls_context_and_handshakes_in_sections(tmp_path):
    # s3fs's client builds its connector's TLS context at the first request (aiobotocore, on an
    # executor thread: the CA bundle loaded) and handshakes on fsspec's IO thread, both outside the
    # filesystem's build section: measured, a child forked while another thread loaded a CA bundle
    # hung 1 time in 40-150 in CRYPTO_THREAD_write_lock (its own context's set_default_verify_paths).
    # Each load and handshake step is watched: whether it ran in a section, and, for the first load
    # on another thread, a fork begun during it, whose child records whether the load had ended (a
    # fork waits for the section). Then a child forked after makes its own client and request.
    node = shutil.which("node")
    if not S3RVER.is_file() or node is None:
        pytest.skip("s3rver is not installed: run `npm ci --prefix tests/s3` (needs Node.js)")
    pytest.importorskip("s3fs")
    from tlscerts import certificates

    certificates(tmp_path)
    port = _free_port()
    (tmp_path / "s3").mkdir()
    server = subprocess.Popen([node, str(S3RVER), "-d", str(tmp_path / "s3"), "-a", "127.0.0.1", "-p", str(port),
                               "-s", "--key", str(tmp_path / "key.pem"), "--cert", str(tmp_path / "cert.pem"),
                               "--configure-bucket", BUCKET], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"https://127.0.0.1:{port}"
    try:
        trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        deadline = time.monotonic() + 30
        while True:  # readiness: the bucket answers
            try:
                with urllib.request.urlopen(f"{endpoint}/{BUCKET}", context=trusted, timeout=1):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "s3rver did not answer"
                time.sleep(0.05)
        done = run_script(f"""
            import json, os, ssl, threading
            import forkprobe
            os.environ.update(AWS_ACCESS_KEY_ID={S3_KEY!r}, AWS_SECRET_ACCESS_KEY={S3_SECRET!r},
                              AWS_DEFAULT_REGION="us-east-1", AWS_S3_ENDPOINT_URL={endpoint!r},
                              AWS_CA_BUNDLE={str(tmp_path / "ca.pem")!r},
                              # over HTTPS botocore sends a body aws-chunked with a trailing checksum, which
                              # s3rver stores as it came: the checksum only where an operation needs one
                              AWS_REQUEST_CHECKSUM_CALCULATION="when_required")
            from tracklet.artifacts import references
            from tracklet.core import forksafe

            fs = references._S3({BUCKET!r}).fs()  # made in the build section; its first request is not
            steps, tried, forked = [], [], []

            def watched(real, what):
                def call(self, *args, **kwargs):
                    if getattr(self, "server_side", False):
                        return real(self, *args, **kwargs)
                    steps.append((what, threading.get_ident() in forksafe._in_sections))
                    if what == "load" and not tried and threading.current_thread() is not threading.main_thread():
                        tried.append(True)
                        forkprobe.fork_during_this_step(forked)  # 3: forked after the load; 4: amid it
                    return real(self, *args, **kwargs)
                return call

            ssl.SSLContext.load_verify_locations = watched(ssl.SSLContext.load_verify_locations, "load")
            ssl.SSLObject.do_handshake = watched(ssl.SSLObject.do_handshake, "handshake")
            fs.pipe({BUCKET!r} + "/parent", b"1")
            while not forked:
                threading.Event().wait(0.01)

            def in_child():
                own = references._S3({BUCKET!r}).fs()
                own.pipe({BUCKET!r} + "/child", b"2")
                return 0 if own.cat({BUCKET!r} + "/parent") == b"1" else 2

            child = forkprobe.forked(in_child)
            print(json.dumps({{"steps": sorted(set(steps)), "fork_amid_load": forked, "child": child,
                              "child_wrote": fs.cat({BUCKET!r} + "/child").decode()}}))
        """, timeout=120)
    finally:
        server.terminate()
        server.wait(30)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["steps"] == [["handshake", True], ["load", True]], got  # only in sections
    assert got["fork_amid_load"] == [3] and got["child"] == 0 and got["child_wrote"] == "2", got
