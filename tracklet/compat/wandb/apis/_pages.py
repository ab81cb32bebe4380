"""Pieces of ``wandb.Api``'s run and sweep objects that read more than a run's record: the
logged-in user (``Api().viewer``), a run's console output (``Run.console_logs()``) and the
dashboard page a notebook shows (``Run.to_html()``, ``Sweep.to_html()``).

A page's address: the tracklet server's the object was read from, else ``tracklet ui``'s at its
default address (``http://127.0.0.1:8765``), as ``Artifact.url`` gives it.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
from typing import Any
from urllib.parse import quote


def page_base(api: Any, recorded: Any = None) -> str:
    """The dashboard's address for what ``api`` (a ``tracklet.Api``) read."""
    from tracklet.artifacts.artifact import LOCAL_UI_URL

    http = getattr(recorded, "_http", None) or getattr(api, "_http", None)
    base = getattr(http, "base_url", None) or getattr(api, "base_url", None)
    return str(base or LOCAL_UI_URL).rstrip("/")


def page_url(api: Any, project: str, kind: str, item_id: str, recorded: Any = None) -> str:
    """``<dashboard>/projects/<project>/<kind>/<id>`` (``kind``: ``runs`` or ``sweeps``)."""
    return f"{page_base(api, recorded)}/projects/{quote(project, safe='')}/{kind}/{quote(item_id, safe='')}"


def iframe(url: str, height: int = 420, hidden: bool = False, what: str = "run") -> str:
    """W&B's ``to_html``: an iframe of the page ``height`` pixels high; ``hidden``: not shown until
    the button before it is pressed."""
    height = int(height)
    style = f"border:none;width:100%;height:{height}px;"
    prefix = ""
    if hidden:
        style += "display:none;"
        prefix = ("<button onClick=\"this.nextSibling.style.display='block';this.style.display='none';\">"
                  f"Display tracklet {html.escape(what)}</button>")
    return f'{prefix}<iframe src="{html.escape(url)}" style="{style}"></iframe>'


@dataclasses.dataclass(frozen=True)
class ConsoleLogLine:
    """One line of a run's console output, as W&B's: ``number`` (from 0), ``timestamp`` (a UTC
    datetime, or None), ``level`` (``"error"`` for stderr, else ``""``), ``label`` (always ``""``:
    tracklet records one writer per run) and ``content``, the text."""

    number: int
    timestamp: datetime.datetime | None
    level: str
    label: str
    content: str


class ConsoleLogs(list):
    """A run's console lines, oldest first (W&B's ``ConsoleLogs``; read at once, not paged)."""


def _line(number: int, time: Any, stream: str, text: str) -> ConsoleLogLine:
    stamp = None
    if isinstance(time, (int, float)) and time == time:
        try:
            stamp = datetime.datetime.fromtimestamp(time, datetime.timezone.utc)
        except (OverflowError, OSError, ValueError):
            stamp = None
    return ConsoleLogLine(number, stamp, "error" if stream == "stderr" else "", "", text)


def console_logs(recorded: Any, per_page: int = 1000, last: int | None = None) -> ConsoleLogs:
    """The run's console lines (``last``: only the last ``last`` of them): from its record log,
    or from the server it was read from (paged by ``per_page``, at most 10,000 a request)."""
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 0):
        raise ValueError(f"console_logs(last=...) must be a non-negative int, not {last!r}")
    if isinstance(per_page, bool) or not isinstance(per_page, int) or per_page < 1:
        raise ValueError(f"console_logs(per_page=...) must be a positive int, not {per_page!r}")
    found = ConsoleLogs()
    if last == 0:
        return found
    http = getattr(recorded, "_http", None)
    if http is None:  # a data root's run: every line is in its record log
        lines = list(recorded.console)
        start = 0 if last is None else max(0, len(lines) - last)
        found.extend(_line(number, line.time, line.stream, line.text)
                     for number, line in enumerate(lines[start:], start))
        return found
    path = f"/api/v1/runs/{recorded.path}/console"
    if last is not None:
        data = http.get_json(path, limit=min(last, 10_000), tail=True)
        found.extend(_line(line["seq"] - 1, line["time"], line["stream"], line["text"]) for line in data["lines"])
        return found
    after = 0
    while True:
        data = http.get_json(path, after=after, limit=min(per_page, 10_000))
        found.extend(_line(line["seq"] - 1, line["time"], line["stream"], line["text"]) for line in data["lines"])
        if not data["lines"] or data["next_after"] <= after or data["next_after"] >= data["last_seq"]:
            return found
        after = data["next_after"]


def viewer(api: Any) -> Any:
    """W&B's ``Api().viewer``: on a server with API keys, the user of the key (verified); on a
    ``--dev`` server, its one principal; in a data root, the OS user this process runs as."""
    from tracklet.compat.wandb.apis.public import User

    http = getattr(api, "_http", None)
    if http is not None:
        me = http.get_json("/api/v1/me")
        return User(me["user"], verified=bool(me.get("auth")), admin=bool(me.get("is_admin")))
    from tracklet.core.hostinfo import os_user_name

    name = os_user_name()
    if not name:
        raise ValueError("Unable to find the user: this process's OS user has no name (no $USER, $LOGNAME or "
                         "password entry); wandb.Api().viewer names the OS user when reading a data root")
    return User(name)
