"""Reports' HTTP calls (``/api/v1/projects/{project}/reports...``, ``server/routes_reports.py``):
JSON in, JSON out; ``tracklet.reports.remote`` builds on them.

A refusal maps to tracklet's errors: 404 ``ReportNotFound``, 409 ``ReportConflict`` (a stale
parent, a published report), 400 ``ReportError``; others as every client call's (``refusal``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tracklet.client.http import HttpClient, response_detail
from tracklet.errors import ReportConflict, ReportError, ReportNotFound


class ReportsClient:
    """Report requests to one server, through its ``HttpClient``."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    @staticmethod
    def url(project: str, report_id: int | None = None, tail: str = "") -> str:
        base = f"/api/v1/projects/{quote(project, safe='')}/reports"
        return base if report_id is None else f"{base}/{int(report_id)}{tail}"

    def call(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        response = self.http.request(method, url, **kwargs)
        if response.status_code == 200:
            return response.json()
        detail = response_detail(response)
        if response.status_code == 404:
            raise ReportNotFound(detail)
        if response.status_code == 409:
            raise ReportConflict(detail)
        if response.status_code == 400:
            raise ReportError(detail)
        raise self.http.refusal(response, what=what)

    def list_reports(self, project: str) -> list[dict[str, Any]]:
        return self.call("GET", self.url(project), f"listing the reports of {project}")["reports"]

    def create(self, project: str, title: str | None, markdown: str) -> dict[str, Any]:
        return self.call("POST", self.url(project), f"creating a report in {project}",
                         json={"title": title, "markdown": markdown})

    def get(self, project: str, report_id: int, version: int | None = None) -> dict[str, Any]:
        params = {"version": version} if version is not None else {}
        return self.call("GET", self.url(project, report_id), f"reading report {project}/{report_id}", params=params)

    def save(self, project: str, report_id: int, markdown: str, *, parent: int, title: str | None = None
             ) -> dict[str, Any]:
        body: dict[str, Any] = {"markdown": markdown, "parent": parent}
        if title is not None:
            body["title"] = title
        return self.call("PUT", self.url(project, report_id), f"saving report {project}/{report_id}", json=body)

    def versions(self, project: str, report_id: int) -> list[dict[str, Any]]:
        return self.call("GET", self.url(project, report_id, "/versions"),
                         f"listing the versions of report {project}/{report_id}")["versions"]

    def diff(self, project: str, report_id: int, a: int, b: int) -> str:
        return self.call("GET", self.url(project, report_id, "/diff"), f"diffing report {project}/{report_id}",
                         params={"a": a, "b": b})["diff"]

    def action(self, project: str, report_id: int, action: str, body: dict[str, Any] | None = None
               ) -> dict[str, Any]:
        """``revert`` / ``publish`` (``{"version": N}``) or ``freeze``: the report it gives."""
        return self.call("POST", self.url(project, report_id, f"/{action}"), f"{action} of report {project}/{report_id}",
                         json=body)

    def delete(self, project: str, report_id: int) -> dict[str, Any]:
        return self.call("DELETE", self.url(project, report_id), f"deleting report {project}/{report_id}")

    def panel_data(self, project: str, report_id: int, index: int, **params: Any) -> dict[str, Any]:
        return self.call("GET", self.url(project, report_id, f"/panels/{int(index)}/data"),
                         f"reading panel {index} of report {project}/{report_id}",
                         params={name: value for name, value in params.items() if value is not None})

    def create_token(self, project: str, report_id: int, label: str = "") -> dict[str, Any]:
        return self.call("POST", self.url(project, report_id, "/tokens"),
                         f"creating a view token of report {project}/{report_id}", json={"label": label})

    def tokens(self, project: str, report_id: int) -> list[dict[str, Any]]:
        return self.call("GET", self.url(project, report_id, "/tokens"),
                         f"listing the view tokens of report {project}/{report_id}")["tokens"]

    def revoke_token(self, project: str, report_id: int, token_id: str) -> None:
        self.call("DELETE", self.url(project, report_id, f"/tokens/{quote(token_id, safe='')}"),
                  f"revoking view token {token_id} of report {project}/{report_id}")
