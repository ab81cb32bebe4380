"""Where ``tracklet.Report`` and ``Api.report(s)`` keep reports: a data root (``LocalReports``:
``reports.sqlite`` and the root's store for run sets) or a server (``RemoteReports``: its HTTP API
through ``client/reports.py``). Both have the same calls and answer the server's JSON shapes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tracklet.errors import ReportNotFound
from tracklet.reports.document import parse
from tracklet.reports.runsets import freeze_pins
from tracklet.reports.runsets import panel_data as panel_data_of
from tracklet.reports.service import default_actor, open_local
from tracklet.reports.sql import ReportStore

INDEX_WAIT = 5.0  # seconds a freeze or a panel's data waits for another process's index pass


class LocalReports:
    """The reports of data root ``root`` (``reports.sqlite``); run sets resolve against its store
    (``store_url``, default SQLite in the root), brought up to date first."""

    def __init__(self, root: str | os.PathLike, *, store_url: str | None = None, actor: str | None = None) -> None:
        self.root = Path(root).expanduser()
        self.store_url = store_url
        self.actor = actor or default_actor()
        self._reports: ReportStore | None = None
        self._store: Any = None

    @property
    def reports(self) -> ReportStore:
        """The data root's reports, the file created if needed (for a change)."""
        if self._reports is None:
            found = open_local(self.root)
            assert found is not None  # create=True
            self._reports = found
        return self._reports

    def _reading(self) -> ReportStore | None:
        """The data root's reports for a read: None (nothing made) if it has none yet."""
        if self._reports is None:
            self._reports = open_local(self.root, create=False)
        return self._reports

    def _read(self) -> ReportStore:
        found = self._reading()
        if found is None:
            raise ReportNotFound(f"no reports in data root {self.root} (none was saved there)")
        return found

    def store(self) -> Any:
        """The data root's store, indexed now (what a freeze or a panel reads)."""
        if self._store is None:
            from tracklet.store import Store

            self._store = Store(self.store_url, root=self.root)
        self._store.index(wait=INDEX_WAIT)
        return self._store

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def project_of(self, report_id: int) -> str | None:
        found = self._reading()
        return found.project_of(report_id) if found is not None else None

    def list_reports(self, project: str) -> list[dict[str, Any]]:
        found = self._reading()
        return found.list_reports(project) if found is not None else []

    def create(self, project: str, title: str | None, markdown: str) -> dict[str, Any]:
        return self.reports.create(project, title, markdown, author=self.actor)

    def get(self, project: str, report_id: int, version: int | None = None) -> dict[str, Any]:
        return self._read().get(project, report_id, version)

    def save(self, project: str, report_id: int, markdown: str, *, parent: int, title: str | None = None
             ) -> dict[str, Any]:
        return self.reports.save(project, report_id, markdown, parent=parent, title=title, author=self.actor)

    def versions(self, project: str, report_id: int) -> list[dict[str, Any]]:
        return self._read().versions(project, report_id)

    def diff(self, project: str, report_id: int, a: int, b: int) -> str:
        return self._read().diff(project, report_id, a, b)

    def revert(self, project: str, report_id: int, version: int) -> dict[str, Any]:
        return self.reports.revert(project, report_id, version, author=self.actor)

    def publish(self, project: str, report_id: int, version: int) -> dict[str, Any]:
        return self.reports.publish(project, report_id, version, author=self.actor)

    def freeze(self, project: str, report_id: int) -> dict[str, Any]:
        store = self.store()
        return self.reports.freeze(project, report_id, lambda runs, home: freeze_pins(store, runs, home),
                                   author=self.actor)

    def panel_data(self, project: str, report_id: int, index: int, *, version: int | None = None,
                   start: float | None = None, end: float | None = None, buckets: int | None = 1000
                   ) -> dict[str, Any]:
        """What ``GET .../panels/{index}/data`` answers, from the data root (everything is readable)."""
        panel = parse(self.get(project, report_id, version)["markdown"]).panel(index)
        return panel_data_of(self.store(), panel, project, lambda _project: True, start=start, end=end,
                             buckets=buckets)

    def create_token(self, project: str, report_id: int, label: str = "") -> dict[str, Any]:
        return self.reports.create_token(project, report_id, author=self.actor, label=label)

    def tokens(self, project: str, report_id: int) -> list[dict[str, Any]]:
        return self._read().tokens(project, report_id)

    def revoke_token(self, project: str, report_id: int, token_id: str) -> None:
        self.reports.revoke_token(project, report_id, token_id)

    def delete(self, project: str, report_id: int) -> dict[str, Any]:
        """Locally there are no roles: whoever may write the data root deletes (published too)."""
        return self.reports.delete(project, report_id)


class RemoteReports:
    """The reports of a server, through ``client`` (a ``ReportsClient``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def close(self) -> None:
        """The HTTP client is its owner's (an ``Api``'s, or the ``Report``'s that made it)."""

    def project_of(self, report_id: int) -> str | None:
        return None  # a server's report is named with its project

    def list_reports(self, project: str) -> list[dict[str, Any]]:
        return self.client.list_reports(project)

    def create(self, project: str, title: str | None, markdown: str) -> dict[str, Any]:
        return self.client.create(project, title, markdown)

    def get(self, project: str, report_id: int, version: int | None = None) -> dict[str, Any]:
        return self.client.get(project, report_id, version)

    def save(self, project: str, report_id: int, markdown: str, *, parent: int, title: str | None = None
             ) -> dict[str, Any]:
        return self.client.save(project, report_id, markdown, parent=parent, title=title)

    def versions(self, project: str, report_id: int) -> list[dict[str, Any]]:
        return self.client.versions(project, report_id)

    def diff(self, project: str, report_id: int, a: int, b: int) -> str:
        return self.client.diff(project, report_id, a, b)

    def revert(self, project: str, report_id: int, version: int) -> dict[str, Any]:
        return self.client.action(project, report_id, "revert", {"version": version})

    def publish(self, project: str, report_id: int, version: int) -> dict[str, Any]:
        return self.client.action(project, report_id, "publish", {"version": version})

    def freeze(self, project: str, report_id: int) -> dict[str, Any]:
        return self.client.action(project, report_id, "freeze")

    def panel_data(self, project: str, report_id: int, index: int, *, version: int | None = None,
                   start: float | None = None, end: float | None = None, buckets: int | None = 1000
                   ) -> dict[str, Any]:
        return self.client.panel_data(project, report_id, index, version=version, start=start, end=end,
                                      buckets=buckets or 0)

    def create_token(self, project: str, report_id: int, label: str = "") -> dict[str, Any]:
        return self.client.create_token(project, report_id, label)

    def tokens(self, project: str, report_id: int) -> list[dict[str, Any]]:
        return self.client.tokens(project, report_id)

    def revoke_token(self, project: str, report_id: int, token_id: str) -> None:
        self.client.revoke_token(project, report_id, token_id)

    def delete(self, project: str, report_id: int) -> dict[str, Any]:
        return self.client.delete(project, report_id)


def remote(http: Any) -> RemoteReports:
    """A server's reports over an ``HttpClient`` (an ``Api``'s)."""
    from tracklet.client.reports import ReportsClient

    return RemoteReports(ReportsClient(http))


def connect(*, dir: str | os.PathLike | None = None, base_url: str | None = None, api_key: str | None = None,
            store_url: str | None = None) -> LocalReports | RemoteReports:
    """Reports on the server at ``base_url`` (default ``$TRACKLET_BASE_URL``, if set and no
    ``dir`` is given), else those of data root ``dir`` (default ``TRACKLET_DIR`` or the per-user one)."""
    if base_url is None and dir is None:
        base_url = os.environ.get("TRACKLET_BASE_URL") or None
    if base_url is not None:
        if dir is not None:
            raise ValueError("reports are kept in a data root (dir) or on a server (base_url), not both")
        from tracklet.client.http import HttpClient
        from tracklet.errors import RemoteError

        return remote(HttpClient(base_url, api_key=api_key, error=RemoteError))
    if dir is None:
        from tracklet.core.settings import default_data_root

        dir = os.environ.get("TRACKLET_DIR") or default_data_root()
    return LocalReports(dir, store_url=store_url)
