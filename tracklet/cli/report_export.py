"""``tracklet report export REPORT --format html|pdf|png|md -o FILE``: a report as one offline HTML
file, a PDF, a PNG per panel (``-o`` a directory) or its Markdown with the panels as PNG images
(beside it, in ``<name>_files/``). ``REPORT`` is ``PROJECT/ID`` (or ``ID`` with ``--project``; or
just ``ID`` in a data root, whose report ids are unique); from a server with ``--url`` or
``$TRACKLET_BASE_URL`` (a key as every command takes it, or a report's view token with
``--token``), else from the data root. See tracklet/reports/export.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tracklet.cli.common import CliError, _handle_errors, _state

_FORMATS = ("html", "pdf", "png", "md")


def split_reference(reference: str, project: str | None, local_project: Any = None) -> tuple[str, str]:
    """(project, report id) from ``PROJECT/ID``, ``ID`` with ``--project``, or ``ID`` alone when
    ``local_project`` (id -> project, a data root's) knows it."""
    if "/" in reference:
        named, _, report_id = reference.rpartition("/")
        if project is not None and project != named:
            raise CliError(f"{reference!r} names project {named!r} but --project says {project!r}")
        project = named
    else:
        report_id = reference
        if project is None and local_project is not None and report_id.isdigit():
            project = local_project(int(report_id))
    if not project or not report_id:
        raise CliError("name the report as PROJECT/ID, or as ID with --project")
    return project, report_id


def _source(ctx: click.Context, url: str | None, token: str | None) -> Any:
    from tracklet.reports.export import HttpReportSource, LocalReportSource

    if url:
        return HttpReportSource(url, token=token)
    if token:
        raise CliError("--token is a server's report view token: give the server with --url")
    return LocalReportSource(Path(_state(ctx).api.root))


def _local_project(ctx: click.Context) -> Any:
    """id -> project of the data root's reports (None for an unknown id or a root without reports)."""

    def find(report_id: int) -> str | None:
        from tracklet.reports.service import open_local

        reports = open_local(Path(_state(ctx).api.root), create=False)
        return reports.project_of(report_id) if reports is not None else None

    return find


@click.command("export")
@click.argument("reference", metavar="REPORT")
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default=None,
              help="html (one offline file), pdf, png (a directory of one PNG per panel), md (Markdown + PNGs); "
                   "default: from -o's suffix")
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), required=True,
              help="the file to write (png: a directory)")
@click.option("-p", "--project", default=None, help="the report's project (or name it PROJECT/ID)")
@click.option("--version", "version", type=click.IntRange(1, 2**31 - 1), default=None,
              help="a version of the report (default: the published one, else the newest)")
@click.option("--buckets", type=click.IntRange(1, 100_000), default=None,
              help="points per series at most (min/max/last buckets beyond; default: by panel size, about one per 2.5 px)")
@click.option("--url", default=None, envvar="TRACKLET_BASE_URL",
              help="a tracking server's URL (default: $TRACKLET_BASE_URL, else the data root)")
@click.option("--token", default=None, help="a report view token (with --url), instead of an API key")
@click.pass_context
@_handle_errors
def export(ctx: click.Context, reference: str, fmt: str | None, output: Path, project: str | None, version: int | None,
           buckets: int | None, url: str | None, token: str | None) -> None:
    """Export a report: an offline HTML file, a PDF, PNGs per panel, or Markdown with images."""
    from tracklet.reports.export import export_report

    project, report_id = split_reference(reference, project, None if url else _local_project(ctx))
    if fmt is None:
        suffix = output.suffix.lower().lstrip(".")
        fmt = {"htm": "html", "markdown": "md"}.get(suffix, suffix)
        if fmt not in _FORMATS:
            raise CliError(f"say which format with --format ({', '.join(_FORMATS)}): -o {output} has no known suffix")
    source = _source(ctx, url, token)
    try:
        written = export_report(source, project, report_id, fmt, output, version=version, buckets=buckets)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    for path in written:
        click.echo(str(path))

