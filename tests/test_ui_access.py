"""Who may use `tracklet ui` and `tracklet server --dev` (issue #12, item 6): real processes.

`tracklet ui` answers only requests that name its loopback address in the Host header (DNS
rebinding) and carry the token it printed (other users of the machine), and only reads.
"""

from __future__ import annotations

import re
import stat
import time
from collections.abc import Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx
import pytest

import serverproc
import tracklet
from serverproc import Server

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}


class Ui:
    """A `tracklet ui --no-open --port 0` process and what it printed."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        # Forked from the server template (serverproc.cli_process), not a cold interpreter start.
        self.proc = serverproc.cli_process("--dir", str(root), "ui", "--no-open", "--port", "0", *args, env=env)
        self.line = self.proc.first_line()
        found = re.search(r"(http://127\.0\.0\.1:(\d+)/)(\?token=([\w-]+))?", self.line)
        assert found, (self.line, self.proc.output()[1] if self.proc.poll() is not None else "")
        self.url, self.port, self.token = found.group(1), int(found.group(2)), found.group(4)
        # No cookie jar: each request shows only the credentials the test gives it.
        self.client = httpx.Client(base_url=self.url, timeout=10,
                                   cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))

    def cookie_value(self) -> str:
        """The cookie a valid ``?token=`` sets."""
        response = self.client.get("/api/v1/projects", params={"token": self.token})
        return response.cookies[f"tracklet-ui-{self.port}"]

    def stop(self) -> str:
        self.client.close()
        self.proc.terminate()
        _, stderr = self.proc.communicate(timeout=10)
        self.proc.close()
        return stderr


def _record(root: Path) -> None:
    run = tracklet.init(project="p", id="r1", dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()
    files = Path(run.dir) / "files"
    files.mkdir(exist_ok=True)
    (files / "requirements.txt").write_text("numpy==1.0\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ui") / "data"
    _record(root)
    return root


@pytest.fixture(scope="module")
def ui(data) -> Iterator[Ui]:
    process = Ui(data)
    yield process
    process.stop()


def test_the_printed_url_carries_a_fresh_token(ui, data):
    assert ui.token and len(ui.token) >= 40
    other = Ui(data)
    try:
        assert other.token != ui.token  # one per start
    finally:
        other.stop()


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1:{other}", "localhost",
                                  "127.0.0.1.evil.example:{port}", ""])
def test_a_foreign_host_header_is_refused_even_with_the_token(ui, host):
    """DNS rebinding: a page at evil.example resolved to 127.0.0.1 sends its own name as Host."""
    value = host.format(port=ui.port, other=ui.port + 1)
    response = ui.client.get("/api/v1/projects", params={"token": ui.token}, headers={"Host": value})
    assert response.status_code == 403
    assert "Host header" in response.json()["detail"] and f"127.0.0.1:{ui.port}" in response.json()["detail"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_the_loopback_names_of_the_bound_port_are_accepted(ui, host):
    response = ui.client.get("/api/v1/projects", headers={"Host": host.format(port=ui.port),
                                                          "Authorization": f"Bearer {ui.token}"})
    assert response.status_code == 200
    assert response.json()["projects"] == [{"name": "p", "runs": 1}]


@pytest.mark.parametrize("path", ["/api/v1/projects", "/api/v1/runs/p/r1", "/api/v1/runs/p/r1/files/requirements.txt",
                                  "/openapi.json", "/", "/projects/p"])
def test_without_the_token_nothing_is_shown(ui, path):
    response = ui.client.get(path)
    assert response.status_code == 401
    assert "numpy" not in response.text and "r1" not in response.text
    assert "Open the URL that `tracklet ui` printed" in response.text
    assert f"http://127.0.0.1:{ui.port}/?token=..." in response.text


def test_a_wrong_token_is_refused(ui):
    for request in ({"params": {"token": ui.token[:-1] + "x"}}, {"params": {"token": ""}},
                    {"headers": {"Authorization": "Bearer nope"}},
                    {"headers": {"Cookie": f"tracklet-ui-{ui.port}=nope"}},
                    {"headers": {"Cookie": f"tracklet-ui-{ui.port}={ui.token}"}},  # the cookie isn't the token
                    {"headers": {"Cookie": f"tracklet-ui-{ui.port + 1}={ui.cookie_value()}"}}):  # another port's name
        response = ui.client.get("/api/v1/projects", **request)
        assert response.status_code == 401, request
        assert "projects" not in response.json()


def test_the_token_sets_a_strict_http_only_cookie_and_leaves_the_url(ui):
    response = ui.client.get(f"/projects/p?sel=r1,r2&token={ui.token}&tab=compare")
    assert response.status_code == 303
    assert response.headers["location"] == "/projects/p?sel=r1,r2&tab=compare"  # the view survives, byte for byte
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"tracklet-ui-{ui.port}=")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {part.strip() for part in cookie.split(";")}
    with httpx.Client(base_url=ui.url, timeout=10) as browser:
        value = response.cookies[f"tracklet-ui-{ui.port}"]
        assert ui.token not in value  # a digest: the token itself never sits in the browser's cookie store
        browser.cookies.set(f"tracklet-ui-{ui.port}", value)
        assert browser.get("/projects/p").status_code == 200
        assert browser.get("/api/v1/projects").json()["projects"] == [{"name": "p", "runs": 1}]
        assert browser.get("/api/v1/runs/p/r1/files/requirements.txt").text == "numpy==1.0\n"
    api = ui.client.get("/api/v1/projects", params={"token": ui.token})  # an API call is answered, cookie set too
    assert api.status_code == 200 and f"tracklet-ui-{ui.port}=" in api.headers["set-cookie"]


def test_nothing_is_written_even_with_the_token(ui, data):
    """The issue's attack: a PUT overwrote a run's requirements.txt and planted a new run."""
    auth = {"Authorization": f"Bearer {ui.token}"}
    requirements = data / "projects" / "p" / "runs" / "r1" / "files" / "requirements.txt"
    attempts = [("PUT", "/api/v1/runs/p/r1/files/requirements.txt", b"evil==6.6.6\n"),
                ("PUT", "/api/v1/runs/p/planted/log", b"TLOG" + bytes(60)),
                ("POST", "/api/v1/keys", b"{}"), ("DELETE", "/api/v1/runs/p/r1/files/requirements.txt", b""),
                ("PATCH", "/api/v1/projects", b"{}")]
    for method, path, body in attempts:
        response = ui.client.request(method, path, content=body, headers=auth)
        assert response.status_code == 405, (method, path)
        assert "read-only" in response.json()["detail"]
    assert requirements.read_text() == "numpy==1.0\n"
    assert not (data / "projects" / "p" / "runs" / "planted").exists()
    assert ui.client.get("/api/v1/projects", headers=auth).json()["projects"] == [{"name": "p", "runs": 1}]


def test_health_needs_no_token(ui):
    assert ui.client.get("/api/v1/health").json()["status"] == "ok"


def test_plotly_js_needs_no_token_and_is_the_installed_packages_own(ui):
    """The dashboard's sandboxed plotly frames load it cross-site, without the cookie: a public library."""
    plotly = pytest.importorskip("plotly")
    response = ui.client.get("/vendor/plotly.min.js")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
    assert response.content == (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    assert ui.client.get("/vendor/other.js").status_code == 401  # only that path is open


def test_the_token_can_be_fixed_by_the_environment(data):
    fixed = Ui(data, env={"TRACKLET_UI_TOKEN": "my-fixed-token"})
    try:
        assert fixed.token == "my-fixed-token"
        assert fixed.client.get("/api/v1/projects", params={"token": "my-fixed-token"}).status_code == 200
        assert fixed.client.get("/api/v1/projects").status_code == 401
    finally:
        fixed.stop()
    odd = Ui(data, env={"TRACKLET_UI_TOKEN": "two words; é"})  # quoted in the URL, a digest in the cookie
    try:
        printed = odd.line.split()[2]
        assert printed.endswith("/?token=two%20words%3B%20%C3%A9")
        first = odd.client.get("/api/v1/projects?" + printed.partition("?")[2])
        assert first.status_code == 200
        cookie = {"Cookie": f"tracklet-ui-{odd.port}={first.cookies[f'tracklet-ui-{odd.port}']}"}
        assert odd.client.get("/api/v1/projects", headers=cookie).status_code == 200
        assert odd.client.get("/api/v1/projects", headers={"Authorization": "Bearer two words; é".encode()}
                              ).status_code == 200
    finally:
        odd.stop()


def test_no_token_is_an_explicit_opt_out_that_still_checks_host_and_reads_only(data):
    open_ui = Ui(data, "--no-token")
    try:
        assert open_ui.token is None and "token" not in open_ui.line
        assert open_ui.client.get("/api/v1/projects").json()["projects"] == [{"name": "p", "runs": 1}]
        assert open_ui.client.get("/api/v1/projects", headers={"Host": f"evil.example:{open_ui.port}"}
                                  ).status_code == 403
        assert open_ui.client.put("/api/v1/runs/p/r1/files/requirements.txt", content=b"x").status_code == 405
    finally:
        stderr = open_ui.stop()
    assert "--no-token: any user or process on this machine can read every run" in stderr


def test_the_browser_is_sent_a_private_file_not_the_token_url():
    """A browser's command line is visible to every user (ps): it gets a file only we can read."""
    from tracklet.cli.ui import redirect_file

    url = "http://127.0.0.1:8765/?token=abc-123_x"
    page = redirect_file(url)
    try:
        assert stat.S_IMODE(page.stat().st_mode) == 0o600
        assert 'content="0;url=http://127.0.0.1:8765/?token=abc-123_x"' in page.read_text()
        assert "token" not in page.as_uri()
    finally:
        page.unlink()


def test_a_dev_server_refuses_a_foreign_host_header(tmp_path):
    server = Server(tmp_path / "srv", dev=True).start()
    try:
        assert httpx.get(f"{server.url}/api/v1/projects", timeout=5).status_code == 200
        assert httpx.get(f"{server.url}/api/v1/projects", headers={"Host": f"localhost:{server.port}"},
                         timeout=5).status_code == 200
        rebound = httpx.put(f"{server.url}/api/v1/runs/p/planted/log", content=b"TLOG",
                            headers={"Host": f"evil.example:{server.port}"}, timeout=5)
        assert rebound.status_code == 403 and "Host header" in rebound.json()["detail"]
        assert not (tmp_path / "srv" / "projects" / "p").exists()
    finally:
        server.stop()


def test_a_server_with_keys_answers_any_host_name(tmp_path):
    """Behind a proxy a keyed server has any name: only the keyless modes check Host."""
    server = Server(tmp_path / "srv", dev=False).start()
    try:
        response = httpx.get(f"{server.url}/api/v1/projects", headers={"Host": "tracking.example.com"}, timeout=5)
        assert response.status_code == 401  # asks for a key, not refused for its name
    finally:
        server.stop()


def test_stalled_connections_never_lock_the_ui_out(root):
    """`tracklet ui` has the team server's connection guards: with fewer descriptors than stalled
    connections (a local process opening them), the dashboard still answers, and the stalled
    connections are closed."""
    import socket

    ui = serverproc.cli_process("--dir", str(root), "ui", "--no-open", "--port", "0", nofile=256)
    stalled = []
    try:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", ui.first_line())
        port, token = int(found.group(1)), found.group(2)
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(f"GET /api/v1/projects HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Stalling: ".encode())
            stalled.append(sock)
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/projects", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)
        assert answer.status_code == 200
        deadline = time.monotonic() + 30  # the header timeout is 10 s
        for sock in stalled:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                pass  # closed: what matters
    finally:
        for sock in stalled:
            sock.close()
        ui.terminate()
        ui.wait(timeout=10)
        ui.close()


def test_reports_are_the_one_thing_written_with_the_token(ui, data):
    """The dashboard's report editor works over a data root (docs/reports.md): reports, and only
    they, are written, into reports.sqlite; never without the token, never other paths."""
    auth = {"Authorization": f"Bearer {ui.token}"}
    made = ui.client.post("/api/v1/projects/p/reports", json={"title": "Local", "markdown": "# hi\n"}, headers=auth)
    assert made.status_code == 200, made.text
    report_id = made.json()["id"]
    saved = ui.client.put(f"/api/v1/projects/p/reports/{report_id}", json={"markdown": "# hi again\n", "parent": 1},
                          headers=auth)
    assert saved.status_code == 200 and saved.json()["version"] == 2
    assert (data / "reports.sqlite").is_file()
    assert ui.client.post("/api/v1/projects/p/reports", json={"markdown": "x"}).status_code == 401  # no token
    for path in ("/api/v1/projects/p/reports/../../runs/p/r1/log", "/api/v1/projects/p/reportsx",
                 "/api/v1/projects/p/runs/r1/reports"):
        assert ui.client.post(path, content=b"{}", headers=auth).status_code == 405, path


def test_reports_stay_read_only_without_a_token(data):
    open_ui = Ui(data, "--no-token")
    try:
        refused = open_ui.client.post("/api/v1/projects/p/reports", json={"markdown": "x"})
        assert refused.status_code == 405
    finally:
        open_ui.stop()
