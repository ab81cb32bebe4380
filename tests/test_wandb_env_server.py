"""W&B's server variables and settings under the compat layer: ``WANDB_API_KEY`` is never sent
anywhere (an online run streaming to a real ``tracklet server``, every request captured on its way
there), ``WANDB_BASE_URL`` without a tracklet server configured and ``WANDB_DIR`` without a tracklet
data root get one notice naming the variable to use, and ``x_stats_sampling_interval`` sets how
often system metrics are recorded."""

from __future__ import annotations

import gzip
import http.server
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import httpx
import pytest
from conftest import REPO

from tracklet.errors import TrackletWarning

SECRET = "wandb-key-SENTINEL-7f3a9c1e5b"
CONTROL = "logged-CONTROL-42d8e6"  # logged on purpose: proves the capture sees what is sent

SCRIPT = """
import os
import tracklet.compat.wandb as wandb

wandb.login(key=os.environ["WANDB_API_KEY"])
run = wandb.init(project="secret", config={"marker": os.environ["CONTROL"]},
                 settings=wandb.Settings(api_key=os.environ["WANDB_API_KEY"]))
for step in range(5):
    wandb.log({"loss": 1.0 / (step + 1)})
with open("weights.bin", "wb") as handle:
    handle.write(b"weights" * 100)
artifact = wandb.Artifact("model", type="model")
artifact.add_file("weights.bin")
run.log_artifact(artifact)
artifact.wait()
wandb.finish()
"""


class _Capture(http.server.ThreadingHTTPServer):
    """A forwarding proxy that keeps every request (method, path, headers, decoded body)."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = httpx.Client(base_url=upstream, timeout=60)
        self.seen: list[tuple[str, str, list[tuple[str, str]], bytes]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Capture

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _forward(self) -> None:
        body = self._body()
        headers = [(name, value) for name, value in self.headers.items()
                   if name.lower() not in ("host", "transfer-encoding", "content-length", "connection")]
        decoded = gzip.decompress(body) if self.headers.get("content-encoding", "").lower() == "gzip" else body
        with self.server.lock:
            self.server.seen.append((self.command, self.path, headers, decoded))
        request = self.server.upstream.build_request(self.command, self.path, headers=headers, content=body)
        response = self.server.upstream.send(request, stream=True)
        try:
            content = b"".join(response.iter_raw())
        finally:
            response.close()
        self.send_response(response.status_code)
        for name, value in response.headers.multi_items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward


def test_wandb_api_key_is_never_sent_to_a_tracklet_server(root, servers, tmp_path):
    server = servers()
    proxy = _Capture(server.url)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_API_KEY": SECRET, "CONTROL": CONTROL,
               "TRACKLET_MODE": "online", "TRACKLET_BASE_URL": proxy.url}
        done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
    finally:
        proxy.shutdown()
        proxy.upstream.close()
    paths = {path.split("?")[0] for _, path, _, _ in proxy.seen}
    assert any(path.endswith("/log") for path in paths), paths  # the run was streamed...
    assert any("/artifacts/" in path for path in paths), paths  # ...and its artifact uploaded
    assert any(CONTROL.encode() in body for _, _, _, body in proxy.seen)  # the capture sees logged values
    for method, path, headers, body in proxy.seen:
        assert not any(SECRET in value for _, value in headers), (method, path)
        assert SECRET.encode() not in body, (method, path)
    # Nor is it kept anywhere: not by the server, not in the local data root.
    for directory in (server.root, root):
        for file in Path(directory).rglob("*"):
            if file.is_file():
                assert SECRET.encode() not in file.read_bytes(), file
    assert SECRET not in server.stderr_text()


def test_wandb_base_url_without_a_tracklet_server_gets_one_notice(root, monkeypatch):
    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb import _messages

    monkeypatch.setattr(_messages, "_warned", set())
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    settings = {"console": "off", "x_disable_stats": True, "disable_git": True}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            wandb.init(project="notice", settings=settings, reinit="finish_previous")
            wandb.log({"loss": 1.0})
            wandb.finish()
    notices = [str(w.message) for w in caught if issubclass(w.category, TrackletWarning) and "BASE_URL" in str(w.message)]
    assert notices == ["tracklet (wandb compat): WANDB_BASE_URL is ignored: tracklet never talks to a W&B server (nor "
                       "sends WANDB_API_KEY anywhere) and records this run in its data root (TRACKLET_DIR); to stream "
                       "runs to a tracklet server, set TRACKLET_BASE_URL to its URL and TRACKLET_MODE=online"]
    assert len(wandb.Api().runs("notice")) == 2  # recorded locally, as ever

    # With a tracklet server configured there is nothing to say: the runs go there.
    monkeypatch.setattr(_messages, "_warned", set())
    monkeypatch.setenv("TRACKLET_BASE_URL", "http://127.0.0.1:9")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wandb.init(project="notice", settings=settings)
        wandb.finish()
    assert not [w for w in caught if "BASE_URL" in str(w.message)]


def test_a_wandb_settings_base_url_gets_the_notice_too(root, monkeypatch):
    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb import _messages

    monkeypatch.setattr(_messages, "_warned", set())
    with pytest.warns(TrackletWarning, match=r"wandb.Settings\(base_url=...\) is ignored.*TRACKLET_BASE_URL"):
        wandb.init(project="notice", settings=wandb.Settings(base_url="https://wandb.example.com", console="off",
                                                             x_disable_stats=True, disable_git=True))
    wandb.finish()


def test_wandb_dir_without_a_tracklet_data_root_gets_one_notice_naming_tracklet_dir(tmp_path, monkeypatch):
    """A job that sets WANDB_DIR (its scratch space) gets one notice saying where the run is
    recorded instead and which variable moves it; it was ignored silently. TRACKLET_DIR or init(dir=)
    chose the data root: nothing to say."""
    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb import _messages

    monkeypatch.setattr(_messages, "_warned", set())
    monkeypatch.delenv("TRACKLET_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # tracklet's default data root, here
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "scratch"))
    monkeypatch.chdir(tmp_path)
    settings = {"console": "off", "x_disable_stats": True, "disable_git": True}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            run = wandb.init(project="scratch", settings=settings)
            wandb.finish()
    notices = [str(w.message) for w in caught if "WANDB_DIR" in str(w.message)]
    assert notices == [f"tracklet (wandb compat): WANDB_DIR={tmp_path / 'scratch'} is not read: tracklet records "
                       f"this run in its data root {tmp_path / 'xdg' / 'tracklet'}; set "
                       f"TRACKLET_DIR={tmp_path / 'scratch'} to record runs there (tracklet ui and wandb.Api() then "
                       "read them there too), or pass init(dir=...)"]
    assert run.dir.startswith(str(tmp_path / "xdg" / "tracklet"))

    monkeypatch.setattr(_messages, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wandb.init(project="scratch", settings=settings, dir=str(tmp_path / "chosen"))
        wandb.finish()
        monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "chosen"))
        wandb.init(project="scratch", settings=settings)
        wandb.finish()
    assert not [w for w in caught if "WANDB_DIR" in str(w.message)]
    assert len(wandb.Api().runs("scratch")) == 2


def test_wandb_stats_sampling_interval_sets_how_often_system_metrics_are_recorded(root, monkeypatch):
    """W&B's ``x_stats_sampling_interval`` (seconds between system metrics points) was accepted and
    ignored silently: tracklet records a point (mean and max of its samples) per system_window."""
    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb import _messages

    monkeypatch.setattr(_messages, "_warned", set())
    for given, window, interval in (({"x_stats_sampling_interval": 30}, 30.0, 2.0),
                                    ({"_stats_sample_rate_seconds": 0.5}, 0.5, 0.5)):
        run = wandb.init(project="stats", settings=wandb.Settings(console="off", disable_git=True, **given))
        assert (run.tracklet_run.settings.system_window, run.tracklet_run.settings.system_interval) == (window, interval)
        wandb.finish()
    monkeypatch.setenv("WANDB_X_STATS_SAMPLING_INTERVAL", "5")
    run = wandb.init(project="stats", settings=wandb.Settings(console="off", disable_git=True))
    assert run.tracklet_run.settings.system_window == 5.0
    wandb.finish()
    for refused in (-1, 0.001):  # W&B refuses under 0.1 s (UsageError)
        monkeypatch.setattr(_messages, "_warned", set())
        with pytest.warns(TrackletWarning, match=rf"x_stats_sampling_interval={refused} is not a number of seconds "
                          r"of at least 0.1"):
            run = wandb.init(project="stats", settings=wandb.Settings(console="off", disable_git=True,
                                                                      x_stats_sampling_interval=refused))
        settings = run.tracklet_run.settings
        assert (settings.system_window, settings.system_interval) == (10.0, 2.0)
        wandb.finish()
