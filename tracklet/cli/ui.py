"""``tracklet ui``: the dashboard over the local data root, on a loopback port, without keys.

It is the tracking server's app (``create_app``) over the data root the runs were recorded in,
with what a local root needs: no API keys (loopback only), a run is alive while its writer holds
the log's lock (``writer_alive``, as ``tracklet runs`` judges it), a sweep every second so new
runs and new points show up while they are logged, and the root's ``store.lock`` taken for each
pass so ``tracklet index`` and ``tracklet.Api`` never write the store at the same time.

Loopback keeps other machines out, not other users of this one nor web pages (DNS rebinding):
every request must name the bound address in its ``Host`` header and carry the token made at
start (printed in the URL, ``?token=``; then a cookie), and nothing but reads is answered
(``server/localaccess.py``).
"""

from __future__ import annotations

import errno
import html
import os
import socket
import tempfile
import threading
import webbrowser
from pathlib import Path
from typing import Callable
from urllib.parse import quote

SWEEP_INTERVAL = 1.0  # seconds between index passes: the dashboard polls every 2 s


def bind_loopback(host: str, port: int, *, other: str = "another `tracklet ui`", backlog: int = 128) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port); a clear error when it's taken
    (``other``: what is likely holding it). ``tracklet server`` binds its address with it too, with
    uvicorn's own backlog (2048: a team's clients connecting at once are queued, not refused)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is in use ({other}?); pick another with --port") from None
        raise
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def ui_token(use_token: bool = True) -> str | None:
    """The token for this start: ``$TRACKLET_UI_TOKEN`` when set (a fixed one, as Jupyter's
    ``JUPYTER_TOKEN``), else a fresh random one; None with ``use_token=False`` (``--no-token``)."""
    from tracklet.server.localaccess import TOKEN_ENV, new_token

    if not use_token:
        return None
    fixed = os.environ.get(TOKEN_ENV, "").strip()
    return fixed or new_token()


def serve(root: Path, *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True,
          announce: Callable[[str], None] = print, token: str | None = None) -> None:
    """Serve the dashboard over ``root`` until interrupted; ``announce`` gets the URL line.

    ``token`` (see :func:`ui_token`) is required of every request; None lets any local user read."""
    import uvicorn

    from tracklet.core.recordlog import writer_alive
    from tracklet.server.app import create_app
    from tracklet.server.localaccess import LoopbackHostCheck, UiAccess

    app = create_app(root, store_url=os.environ.get("TRACKLET_STORE"), auth=False, liveness=writer_alive,
                     shared_root=True, sweep_interval=SWEEP_INTERVAL)
    sock = bind_loopback(host, port)
    bound = sock.getsockname()[1]
    app.add_middleware(UiAccess, token=token, port=bound)
    app.add_middleware(LoopbackHostCheck, port=bound, bound=host)  # outermost: a foreign Host is refused first
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}/"
    if token is not None:
        url += "?token=" + quote(token, safe="")
    read_only = " (read-only here: shown as last indexed)" if app.state.tracklet.indexer.read_only else ""
    announce(f"tracklet ui: {url} (data root {Path(root).expanduser().resolve()}{read_only}; Ctrl-C to stop)")
    from tracklet.server.connections import ConnectionLimits, fit_descriptor_limit, uvicorn_options

    # The team server's guards against connections that stall (header and idle timeouts, a cap
    # that fits the open-file limit): a local process could otherwise lock the dashboard out.
    max_connections, _ = fit_descriptor_limit(ConnectionLimits.max_connections)
    limits = ConnectionLimits(max_connections=max_connections)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **uvicorn_options(limits)))
    opener = redirect_file(url) if open_browser and token is not None else None
    if open_browser:
        def open_when_started() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                webbrowser.open(opener.as_uri() if opener is not None else url)

        # A plain start (not core/threads.py's): it starts the browser, which must not inherit blocked signals.
        threading.Thread(target=open_when_started, name="tracklet-ui-open", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        if opener is not None:
            opener.unlink(missing_ok=True)


def redirect_file(url: str) -> Path:
    """A page only this user can read that sends the browser on to ``url``.

    The browser is started with this file's path, not the URL: a command line is visible to every
    user of the machine (``ps``), and the URL holds the token (Jupyter opens such a file too)."""
    descriptor, name = tempfile.mkstemp(prefix="tracklet-ui-", suffix=".html")  # mode 0600
    target = html.escape(url, quote=True)
    with os.fdopen(descriptor, "w", encoding="utf-8") as page:
        page.write(f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={target}">'
                   f'<title>tracklet ui</title><p><a href="{target}">Open tracklet ui</a></p>\n')
    return Path(name)
