"""``tracklet.Report``: a report built from Python, or one read back (``Api().report(...)``).

    rep = tracklet.Report("mnist", title="Learning rate sweep")
    rep.add_text("# Loss")
    rep.add_panel({"keys": ["train/loss"], "x": "step"}, runs={"filter": "config.lr > 0.01", "limit": 10})
    rep.save()          # rep.id, rep.version
    rep.freeze(); rep.publish()

A ``Report`` holds its Markdown (``markdown``); ``add_text``/``add_panel`` append to it and
``save`` stores it: the first save creates the report, each later one is a new version edited from
the version last saved or read (a conflicting save raises ``ReportConflict``). It lives where its
backend says (``backends.py``): a data root, or a server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tracklet.errors import ReportError, ReportNotFound
from tracklet.reports.backends import LocalReports, RemoteReports, connect
from tracklet.reports.document import check_markdown, panel_markdown, parse, validate_panel
from tracklet.reports.sql import DEFAULT_TITLE, check_title

_FIELDS = ("id", "project", "title", "version", "latest_version", "parent", "author", "created_at", "updated_at",
           "published_version", "note", "markdown")


class Report:
    """A report of ``project`` (see the module's docstring). ``dir``/``base_url``/``api_key`` say
    where it is kept (default: ``$TRACKLET_BASE_URL`` if set, else the data root)."""

    def __init__(self, project: str, title: str | None = None, *, dir: str | os.PathLike | None = None,
                 base_url: str | None = None, api_key: str | None = None,
                 backend: LocalReports | RemoteReports | None = None) -> None:
        from tracklet.core.layout import check_name

        self.project = check_name("project", project)
        self.title = check_title(title) if title is not None else DEFAULT_TITLE
        self.markdown = ""
        self.id: int | None = None
        self.version: int | None = None
        self.latest_version: int | None = None
        self.parent: int | None = None
        self.author: str | None = None
        self.created_at: float | None = None
        self.updated_at: float | None = None
        self.published_version: int | None = None
        self.note: str | None = None
        self._backend = backend if backend is not None else connect(dir=dir, base_url=base_url, api_key=api_key)

    # ------------------------------------------------------------ reading

    @classmethod
    def _from(cls, backend: LocalReports | RemoteReports, data: dict[str, Any]) -> Report:
        report = cls(data["project"], data["title"], backend=backend)
        report._take(data)
        return report

    def _take(self, data: dict[str, Any]) -> Report:
        for name in _FIELDS:
            setattr(self, name, data.get(name))
        return self

    @property
    def path(self) -> str:
        """``project/id`` (what ``Api().report`` and the CLI take)."""
        return f"{self.project}/{self.id}"

    @property
    def blocks(self) -> list[dict[str, Any]]:
        """The Markdown's blocks as the server describes them (text, and panels with their errors)."""
        return parse(self.markdown).to_json()

    @property
    def errors(self) -> dict[int, str]:
        """Panel index -> what is wrong with that panel."""
        return {panel.index: panel.error for panel in parse(self.markdown).panels if panel.error is not None}

    def _saved(self) -> int:
        if self.id is None:
            raise ReportError("the report is not saved yet: call save() first")
        return self.id

    def refresh(self, version: int | None = None) -> Report:
        """Read the report again (``version``, default the published or latest one)."""
        return self._take(self._backend.get(self.project, self._saved(), version))

    def versions(self) -> list[dict[str, Any]]:
        return self._backend.versions(self.project, self._saved())

    def diff(self, a: int, b: int | None = None) -> str:
        """A unified diff of version ``a`` to ``b`` (default: the latest)."""
        return self._backend.diff(self.project, self._saved(), a, b if b is not None else self.latest_version or a)

    def panel_data(self, index: int, *, version: int | None = None, buckets: int | None = 1000) -> dict[str, Any]:
        """Panel ``index``'s runs and history (``{access, error, runs, history}``) as saved."""
        return self._backend.panel_data(self.project, self._saved(), index, version=version, buckets=buckets)

    # ------------------------------------------------------------ editing

    def add_text(self, markdown: str) -> Report:
        """Append a paragraph of Markdown (a blank line separates it from what is before)."""
        check_markdown(markdown)
        if not markdown.endswith("\n"):
            markdown += "\n"
        self.markdown = _joined(self.markdown, markdown)
        return self

    def add_panel(self, spec: dict[str, Any], runs: dict[str, Any] | None = None) -> Report:
        """Append a panel: ``spec`` is a workspace panel (``keys`` and ``x`` at least; ``title``,
        ``smoothing``, ``log_y``, ``size``), ``runs`` its run set (``project``, ``filter``,
        ``sort``, ``limit``, ``group``). ``ReportError`` naming every problem of a bad one."""
        if not isinstance(spec, dict):
            raise ReportError(f"a panel spec is a dict (keys, x, ...); got {type(spec).__name__}")
        data = dict(spec)
        if isinstance(data.get("keys"), str):
            data["keys"] = [data["keys"]]
        if runs is not None:
            data["runs"] = runs
        checked, run_set, problems = validate_panel(data)
        if problems:
            raise ReportError(f"panel {len(parse(self.markdown).panels)}: " + "; ".join(problems))
        self.markdown = _joined(self.markdown, panel_markdown(checked, run_set))
        return self

    def save(self) -> Report:
        """Store the Markdown: a new report the first time, then a new version each time."""
        check_markdown(self.markdown)
        if self.id is None:
            data = self._backend.create(self.project, self.title, self.markdown)
        else:
            if self.latest_version is None:
                raise ReportError("the report's latest version is unknown: refresh() it first")
            data = self._backend.save(self.project, self.id, self.markdown, parent=self.latest_version,
                                      title=self.title)
        return self._take(data)

    def revert(self, version: int) -> Report:
        """A new version equal to ``version``."""
        return self._take(self._backend.revert(self.project, self._saved(), version))

    def publish(self, version: int | None = None) -> Report:
        """Publish ``version`` (default: the latest): the report is immutable from then on."""
        return self._take(self._backend.publish(self.project, self._saved(), version or self.latest_version or 1))

    def freeze(self) -> Report:
        """Pin every live panel's runs and max step, as a new version."""
        return self._take(self._backend.freeze(self.project, self._saved()))

    def create_token(self, label: str = "") -> dict[str, Any]:
        """A view token: ``{token_id, token}`` (the token is shown this once)."""
        return self._backend.create_token(self.project, self._saved(), label)

    def tokens(self) -> list[dict[str, Any]]:
        return self._backend.tokens(self.project, self._saved())

    def revoke_token(self, token_id: str) -> None:
        self._backend.revoke_token(self.project, self._saved(), token_id)

    def export(self, fmt: str, out: str | os.PathLike[str], *, version: int | None = None,
               buckets: int | None = None) -> list[Path]:
        """Export the saved report as ``fmt`` (html, pdf, png, md) to ``out``: the paths written
        (``tracklet.reports.export``; docs/reports.md#export). pdf, png and md need Chromium."""
        from tracklet.reports.export import export

        return export(self, fmt, out, version=version, buckets=buckets)

    def delete(self) -> dict[str, Any]:
        """Delete the report (on a server: ``write`` on its project, ``admin`` once published):
        gone from every listing, its view tokens stop working; its versions stay in the database,
        unreachable. What it was: ``{id, project, title, version, published_version}``."""
        deleted = self._backend.delete(self.project, self._saved())
        self.id = None
        return deleted

    def __repr__(self) -> str:
        where = f"{self.path} v{self.version}" if self.id is not None else f"{self.project} (not saved)"
        return f"<Report {where}: {self.title!r}>"


def _joined(before: str, block: str) -> str:
    if not before:
        return block
    return before + ("\n" if before.endswith("\n") else "\n\n") + block


def parse_reference(reference: int | str, project: str | None = None) -> tuple[str | None, int]:
    """(project, id) of ``7``, ``"7"`` or ``"mnist/7"`` (``project`` given separately or not)."""
    if isinstance(reference, str) and "/" in reference:
        named, _, number = reference.rpartition("/")
        if project is not None and project != named:
            raise ReportError(f"report {reference!r} is not in project {project!r}")
        project, reference = named, number
    try:
        report_id = int(reference)
    except (TypeError, ValueError):
        raise ReportError(f"a report is named by its id or project/id (e.g. mnist/7); got {reference!r}") from None
    if not 1 <= report_id <= 2**63 - 1:
        raise ReportError(f"a report id is a positive 64-bit integer; got {report_id}")
    return project, report_id


def open_report(backend: LocalReports | RemoteReports, reference: int | str, *, project: str | None = None,
                version: int | None = None) -> Report:
    """The report ``reference`` names (see ``parse_reference``) through ``backend``."""
    project, report_id = parse_reference(reference, project)
    if project is None:
        project = backend.project_of(report_id)
        if project is None:
            raise ReportNotFound(f"no report {report_id}" if isinstance(backend, LocalReports)
                                 else f"name a server's report with its project: project/{report_id}")
    return Report._from(backend, backend.get(project, report_id, version))


def list_reports(backend: LocalReports | RemoteReports, project: str) -> list[dict[str, Any]]:
    return backend.list_reports(project)


def local_backend(root: str | os.PathLike, store_url: str | None = None) -> LocalReports:
    """A data root's reports (what ``LocalApi.report(s)`` reads)."""
    return LocalReports(root, store_url=store_url)


def remote_backend(http: Any) -> RemoteReports:
    """A server's reports over an ``Api``'s ``HttpClient`` (what ``RemoteApi.report(s)`` reads)."""
    from tracklet.reports.backends import remote

    return remote(http)
