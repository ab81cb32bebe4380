"""``tracklet.Api``: one read interface over recorded runs, with two implementations.

``Api(root)`` (or ``Api()``) is a ``LocalApi`` (``local.py``): the runs under a data root, read
from their record logs, with the store (``tracklet.store``) for filters, sorts and cross-run
history. ``Api(base_url=...)`` is a ``RemoteApi`` (``remote.py``): the runs on a tracking server,
read through its JSON API with the client package (``tracklet.client``). Both are ``Api``s, with
the same calls: ``projects``, ``runs``, ``run``, ``history``, ``close`` (and ``with``).

This package sits above the core, the store and the client (docs/architecture.md). Importing it
imports neither: each implementation loads what it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracklet.api.local import LocalApi
    from tracklet.api.remote import RemoteApi

__all__ = ["Api", "LocalApi", "RemoteApi"]


class Api:
    """Read access to recorded runs: those under a data root (default: ``TRACKLET_DIR`` or the
    per-user one, with the store at ``store_url``), or with ``base_url`` those on a tracking server,
    authenticated with ``api_key``, ``$TRACKLET_API_KEY`` or the key ``tracklet login`` saved.

    ``Api(...)`` returns a ``LocalApi`` or a ``RemoteApi``; both are instances of ``Api``. (Not an
    ``abc.ABC``: type checkers would then refuse the ``Api(...)`` call users write.)
    """

    def __new__(cls, root: str | Path | None = None, *, store_url: str | None = None, base_url: str | None = None,
                api_key: str | None = None) -> Any:
        if cls is not Api:  # LocalApi(...), RemoteApi(...)
            return super().__new__(cls)
        if base_url is None:
            from tracklet.api.local import LocalApi

            return super().__new__(LocalApi)
        if root is not None or store_url is not None:
            raise ValueError("tracklet.Api reads a data root (root, store_url) or a server (base_url), not both")
        from tracklet.api.remote import RemoteApi

        return super().__new__(RemoteApi)

    def projects(self) -> list[str]:
        """The projects there are runs of (on a server: that the key may read)."""
        raise NotImplementedError

    def runs(self, project: str, filter: str | None = None, order_by: str | None = None,
             limit: int | None = None, offset: int = 0) -> list[Any]:
        """A project's runs, newest first unless ``order_by`` says otherwise (e.g.
        ``-summary.val/loss``), those matching ``filter`` (e.g. ``config.lr < 1e-3 and state =
        "finished"``; syntax: docs/store.md), at most ``limit`` after skipping ``offset``."""
        raise NotImplementedError

    def run(self, path: str) -> Any:
        """A run by ``project/run_id``; ``RunNotFound`` when there is none."""
        raise NotImplementedError

    def history(self, runs: Sequence[Any] | str | Any, keys: Sequence[str] | str, *, x: str = "step",
                start: float | None = None, end: float | None = None, buckets: int | None = 1000) -> list[Any]:
        """Cross-run history: per run and key a ``tracklet.store.query.SeriesHistory``, ``buckets``
        buckets of min, max, last and count over the window ``start``..``end`` of ``x`` (exact
        points when the window holds fewer, or with ``buckets=None``)."""
        raise NotImplementedError

    def traces(self, project: str, filter: Any = None, run: Any = None, limit: int = 100) -> list[Any]:
        """The project's latest traces (``tracklet.api.traces.Trace``), newest first, each with its
        ``spans``: those of ``run`` (a run id or run) only, those with a span matching ``filter``
        (a dict of typed column -> value: ``name``, ``status``, ``operation``, ``provider``,
        ``model``, ``kind``, ``source``, ``trace_id``), at most ``limit`` (docs/tracing.md)."""
        raise NotImplementedError

    def sweep(self, path: str) -> dict[str, Any]:
        """A sweep by ``project/sweep_id``, as the dashboard shows it: ``id``, ``project``,
        ``method``, ``state`` (running, paused, stopped, finished), ``metric``, ``config`` (the
        normalized spec), ``parameters``, ``trials`` (number, state, params, value, ``run_id``,
        ``random_while_gp_imports``: suggested at random while the GP's modules imported), ``best``
        and ``best_so_far`` (docs/sweeps.md); ``SweepNotFound`` when there is none."""
        raise NotImplementedError

    def report(self, reference: int | str, *, project: str | None = None, version: int | None = None) -> Any:
        """A report (``tracklet.Report``) by ``project/id`` (or its id: locally, or with ``project``),
        at ``version`` (default: the published version, else the latest); ``ReportNotFound`` if none."""
        from tracklet.core.extensions import load

        reports = load("reports")
        return reports.open_report(self._reports_backend(), reference, project=project, version=version)

    def reports(self, project: str) -> list[dict[str, Any]]:
        """The project's reports, most recently changed first: id, project, title, version,
        author, created_at, updated_at, published_version (docs/reports.md)."""
        return self._reports_backend().list_reports(project)

    def _reports_backend(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """Release what this ``Api`` holds open (a store's connections, an HTTP client)."""

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def __getattr__(name: str) -> Any:
    if name == "LocalApi":
        from tracklet.api.local import LocalApi

        return LocalApi
    if name == "RemoteApi":
        from tracklet.api.remote import RemoteApi

        return RemoteApi
    raise AttributeError(name)
