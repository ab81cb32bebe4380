"""The client package's one HTTP client (tracklet/client/http.py) against a real HTTP server
that answers from a script: which requests are retried and how long it waits (Retry-After, capped
jittered backoff), the key it sends, and the errors refusals become."""

from __future__ import annotations

import email.utils
import http.server
import json
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from tracklet.client.http import HttpClient, RetryPolicy, refusal, retry_after
from tracklet.errors import RemoteError, RunNotFound, SyncError


class Scripted:
    """A real HTTP server on loopback answering each request with the next scripted answer:
    ``(status, headers, body)``, or ``"drop"`` to close the connection without answering."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes] | str] = []
        self.seen: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                owner.seen.append((self.command, self.path, self.headers.get("Authorization")))
                answer = owner.script.pop(0) if owner.script else (200, {}, b'{"ok": true}')
                if answer == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, headers, body = answer
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.close()


def _error(status: int, detail: object, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, headers or {}, json.dumps({"detail": detail}).encode()


def _client(server: Scripted, slept: list[float], **policy: float) -> HttpClient:
    retry = RetryPolicy(**{"base": 0.5, "cap": 30.0, "give_up_after": 300.0, **policy})  # type: ignore[arg-type]
    return HttpClient(server.url, api_key="tlk_test_key", retry=retry, sleep=slept.append)


def test_a_429_or_503_waits_what_retry_after_asks_then_succeeds(scripted):
    when = email.utils.format_datetime(email.utils.localtime().astimezone(), usegmt=False)
    scripted.script = [_error(429, "slow down", {"Retry-After": "7"}), _error(503, "busy", {"Retry-After": "2.5"}),
                       (200, {}, b'{"value": 1}')]
    slept: list[float] = []
    with _client(scripted, slept) as client:
        assert client.get_json("/api/v1/x") == {"value": 1}
    assert slept == [7.0, 2.5] and len(scripted.seen) == 3
    # an HTTP date in the past asks for no wait; garbage is ignored (backoff applies)
    assert retry_after(httpx.Response(503, headers={"Retry-After": when})) == 0.0
    assert retry_after(httpx.Response(503, headers={"Retry-After": "soon"})) is None
    assert retry_after(httpx.Response(503)) is None


def test_retry_after_is_honoured_only_up_to_the_give_up_deadline(scripted):
    scripted.script = [_error(503, "busy", {"Retry-After": "3600"})] * 3
    slept: list[float] = []
    with _client(scripted, slept, give_up_after=5.0, attempts=2) as client, pytest.raises(RemoteError, match="gave up"):
        client.get_json("/api/v1/x")
    assert len(slept) == 1 and 4.0 < slept[0] <= 5.0  # what is left of the 5 s, not an hour


def test_idempotent_requests_retry_5xx_with_capped_jittered_backoff(scripted):
    scripted.script = [_error(500, "boom")] * 4
    slept: list[float] = []
    with _client(scripted, slept, base=1.0, cap=3.0, attempts=4) as client, \
            pytest.raises(RemoteError, match=r"kept failing GET /api/v1/x: gave up after .* 4 attempt\(s\): HTTP 500: boom"):
        client.request("GET", "/api/v1/x")
    assert len(scripted.seen) == 4 and len(slept) == 3
    assert all(0.0 <= wait <= bound for wait, bound in zip(slept, [1.0, 2.0, 3.0]))


def test_backoff_is_full_jitter_under_the_cap_at_any_attempt():
    policy = RetryPolicy(base=0.5, cap=4.0)
    for attempt in (0, 1, 2, 5, 60, 10_000):  # far attempts (an outage in online mode) don't overflow
        waits = [policy.backoff(attempt) for _ in range(200)]
        assert all(0.0 <= wait <= min(4.0, 0.5 * 2 ** min(attempt, 64)) for wait in waits)
        assert len(set(waits)) > 1  # jittered
    assert RetryPolicy(attempts=2).exhausted(2, 0.0) and not RetryPolicy(attempts=3).exhausted(2, 0.0)
    assert RetryPolicy(give_up_after=1.0).exhausted(1, 1.0)


def test_a_post_is_not_sent_again_after_a_5xx_or_a_dropped_connection(scripted):
    slept: list[float] = []
    scripted.script = [_error(500, "half done")]
    with _client(scripted, slept) as client:
        assert client.request("POST", "/api/v1/users", json={"name": "a"}).status_code == 500
        assert len(scripted.seen) == 1
        scripted.script = ["drop"]
        with pytest.raises(RemoteError, match="failed after it was sent.*not sent again"):
            client.request("POST", "/api/v1/users", json={"name": "a"})
        assert len(scripted.seen) == 2 and slept == []
        # 429 means the server did not take it: a POST goes again; and a GET after a dropped connection too
        scripted.script = [_error(429, "later", {"Retry-After": "1"}), (200, {}, b"{}"), "drop", (200, {}, b"{}")]
        assert client.request("POST", "/api/v1/users", json={"name": "a"}).status_code == 200
        assert client.request("GET", "/api/v1/me").status_code == 200
    assert len(scripted.seen) == 6 and slept[0] == 1.0 and len(slept) == 2


def test_connection_errors_are_retried_then_raise_cannot_reach():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    slept: list[float] = []
    client = HttpClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(base=0.01, attempts=3), error=SyncError,
                        advice="; try again later", sleep=slept.append)
    with client, pytest.raises(SyncError, match=r"cannot reach .*gave up after .*3 attempt\(s\): ConnectError.*; try "
                                                r"again later$"):
        client.request("PUT", "/api/v1/runs/p/r/log", content=b"x")
    assert len(slept) == 2


def test_the_key_goes_in_the_authorization_header(scripted, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("TRACKLET_API_KEY", "tlk_from_env")
    with HttpClient(scripted.url, api_key="tlk_explicit") as explicit, HttpClient(scripted.url) as from_env:
        explicit.request("GET", "/a")
        from_env.request("GET", "/b")
    monkeypatch.delenv("TRACKLET_API_KEY")
    with HttpClient(scripted.url) as anonymous:
        anonymous.request("GET", "/c")
    assert [auth for _, _, auth in scripted.seen] == ["Bearer tlk_explicit", "Bearer tlk_from_env", None]


def test_refusals_become_tracklet_errors_with_the_servers_reason(scripted):
    scripted.script = [_error(404, "no run p/missing"), _error(401, "invalid or revoked API key"),
                       _error(422, [{"loc": ["query", "limit"], "msg": "not an integer"}]),
                       (400, {"Content-Type": "text/plain"}, b"plain words"), _error(404, "no project")]
    with HttpClient(scripted.url, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(RunNotFound, match="^no run p/missing$"):
            client.get_json("/api/v1/runs/p/missing", missing=RunNotFound)
        with pytest.raises(RemoteError, match=r"refused GET /api/v1/me \(HTTP 401\): invalid or revoked API key; set "
                                              r"TRACKLET_API_KEY or run `tracklet login --url http"):
            client.get_json("/api/v1/me")
        with pytest.raises(RemoteError, match=r"HTTP 422.*not an integer"):
            client.get_json("/api/v1/projects/p/runs", limit="x")
        with pytest.raises(RemoteError, match=r"HTTP 400\): plain words"):
            client.get_json("/api/v1/projects/p/runs")
        response = client.request("GET", "/api/v1/projects/q/runs")
    error = refusal(response, base_url=client.base_url, error=SyncError, what="the upload")
    assert isinstance(error, SyncError) and isinstance(error, RemoteError)  # `except RemoteError` covers uploads
    assert str(error) == f"{client.base_url} refused the upload (HTTP 404): no project"


def test_a_huge_refusal_reason_is_cut_in_the_message(scripted):
    scripted.script = [_error(400, "x" * 100_000)]
    with HttpClient(scripted.url) as client, pytest.raises(RemoteError) as refused:
        client.get_json("/api/v1/x")
    assert len(str(refused.value)) < 2_200


def test_the_core_starts_no_online_run_without_an_uploader_from_the_layer_above(tmp_path):
    from tracklet.core.start import init

    with pytest.raises(ValueError, match="uploader"):
        init(project="p", dir=str(tmp_path), mode="online", settings={"base_url": "http://127.0.0.1:9"})
    assert not (tmp_path / "projects").exists()


def test_give_up_after_counts_from_the_first_attempt(scripted):
    # With real sleeps (at most 0.05 s) and a 0.2 s limit, a server that keeps failing is given up
    # on after a handful of attempts, not after its script of 100 failures runs out.
    scripted.script = [_error(502, "bad gateway")] * 100
    with HttpClient(scripted.url, retry=RetryPolicy(base=0.05, cap=0.05, give_up_after=0.2)) as client, \
            pytest.raises(RemoteError, match="gave up"):
        client.request("GET", "/x")
    assert 1 < len(scripted.seen) < 100


def test_clients_share_one_tls_context_built_once_per_process(monkeypatch):
    # Building httpx's default context loads the CA bundle (~0.1 CPU s); an online run's artifact
    # thread made two clients per run and paid it each time, on the path A2 times.
    import tracklet.client.http as http_module

    monkeypatch.setattr(http_module, "_ssl_context", None)
    built = []
    real = httpx.create_ssl_context
    monkeypatch.setattr(httpx, "create_ssl_context", lambda *a, **k: built.append(1) or real(*a, **k))
    clients = [HttpClient("http://127.0.0.1:9"), HttpClient("https://tracking.example"), HttpClient("http://[::1]:9")]
    try:
        assert len(built) == 1
        https = httpx.Client(verify=http_module.ssl_context())  # what they use verifies certificates
        assert https._transport._pool._ssl_context.verify_mode.name == "CERT_REQUIRED"
        https.close()
    finally:
        for client in clients:
            client.close()
