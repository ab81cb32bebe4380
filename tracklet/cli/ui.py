"""``tracklet ui``: the dashboard over the local data root, on a loopback port, without keys.

It is the tracking server's app (``create_app``) over the data root the runs were recorded in,
with what a local root needs: no API keys (loopback only), a run is alive while its writer holds
the log's lock (``writer_alive``, as ``tracklet runs`` judges it), a sweep every second so new
runs and new points show up while they are logged, and the root's ``store.lock`` taken for each
pass so ``tracklet index`` and ``tracklet.Api`` never write the store at the same time.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import webbrowser
from pathlib import Path
from typing import Callable

SWEEP_INTERVAL = 1.0  # seconds between index passes: the dashboard polls every 2 s


def bind_loopback(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port); a clear error when it's taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is in use (another `tracklet ui`?); "
                             "pick another with --port") from None
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(root: Path, *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True,
          announce: Callable[[str], None] = print) -> None:
    """Serve the dashboard over ``root`` until interrupted; ``announce`` gets the URL line."""
    import uvicorn

    from tracklet.core.recordlog import writer_alive
    from tracklet.server.app import create_app

    app = create_app(root, store_url=os.environ.get("TRACKLET_STORE"), auth=False, liveness=writer_alive,
                     shared_root=True, sweep_interval=SWEEP_INTERVAL)
    sock = bind_loopback(host, port)
    bound = sock.getsockname()[1]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}/"
    announce(f"tracklet ui: {url} (data root {Path(root).expanduser().resolve()}; Ctrl-C to stop)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    if open_browser:
        def open_when_started() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=open_when_started, name="tracklet-ui-open", daemon=True).start()
    server.run(sockets=[sock])
