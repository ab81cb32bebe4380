"""``tracklet report ls|show|diff|revert|publish|freeze|rm|token|export``: reports of the data root,
or of a server with ``--url`` (tracklet/reports/, docs/reports.md).

REPORT is ``PROJECT/ID``, or ``ID`` with ``--project`` (locally an id alone names it). ``export``
is ``cli/report_export.py``'s command (tracklet/reports/export.py)."""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Callable
from typing import Any

import click

from tracklet.cli.common import CliError, _handle_errors, _iso, _state, unknown_project


@click.group("report")
def report_group() -> None:
    """Reports: Markdown documents with live or frozen chart panels, versioned, published and
    shared by view tokens."""


def _where(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every subcommand takes: which server (or the data root) and project."""

    @click.option("--url", default=None, envvar="TRACKLET_REPORT_URL", metavar="URL",
                  help="A tracking server's reports instead of the data root's.")
    @click.option("-p", "--project", default=None, help="The report's project (or name it PROJECT/ID).")
    @functools.wraps(command)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return command(*args, **kwargs)

    return wrapped


def _backend(ctx: click.Context, url: str | None) -> Any:
    if url:
        from tracklet.reports.backends import connect

        return connect(base_url=url)
    from tracklet.reports.backends import LocalReports

    return LocalReports(_state(ctx).api.root)


def _open(ctx: click.Context, url: str | None, reference: str, project: str | None,
          version: int | None = None) -> Any:
    from tracklet.reports.report import open_report

    return open_report(_backend(ctx, url), reference, project=project, version=version)


def _summary(report: Any) -> str:
    published = f", published v{report.published_version}" if report.published_version else ""
    return (f"{report.path}  v{report.version} (latest v{report.latest_version}{published})  "
            f"{report.title!r}  by {report.author}  {_iso(report.updated_at)}")


_VERSION = click.IntRange(1, 2**31 - 1)


@report_group.command("ls")
@click.argument("project_name", metavar="PROJECT")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_where
@click.pass_context
@_handle_errors
def ls(ctx: click.Context, project_name: str, as_json: bool, url: str | None, project: str | None) -> None:
    """A project's reports, most recently changed first."""
    rows = _backend(ctx, url).list_reports(project_name)
    if not rows and url is None and project_name not in _state(ctx).api.projects():
        raise unknown_project(_state(ctx).api, project_name)
    for row in rows:
        published = f"published v{row['published_version']}" if row["published_version"] else "draft"
        click.echo(json.dumps(row) if as_json else
                   f"{row['id']:<6} v{row['version']:<4} {published:<15} {_iso(row['updated_at'])}  "
                   f"{row['author']}  {row['title']}")


@report_group.command("show")
@click.argument("reference", metavar="REPORT")
@click.option("--version", type=_VERSION, default=None, help="Default: the published version, else the latest.")
@click.option("--markdown", "markdown_only", is_flag=True, help="Only the Markdown, as stored.")
@click.option("--json", "as_json", is_flag=True, help="The report as the server's JSON.")
@_where
@click.pass_context
@_handle_errors
def show(ctx: click.Context, reference: str, version: int | None, markdown_only: bool, as_json: bool,
         url: str | None, project: str | None) -> None:
    """A report: who saved which version when, its panels' problems, its Markdown."""
    report = _open(ctx, url, reference, project, version)
    if markdown_only:
        click.echo(report.markdown, nl=False)
        return
    if as_json:
        fields = ("id", "project", "title", "version", "latest_version", "parent", "author", "created_at",
                  "updated_at", "published_version", "note", "markdown")
        click.echo(json.dumps({**{name: getattr(report, name) for name in fields}, "blocks": report.blocks}))
        return
    click.echo(_summary(report))
    for index, error in report.errors.items():
        click.echo(f"panel {index}: {error}")
    click.echo("")
    click.echo(report.markdown, nl=False)


@report_group.command("diff")
@click.argument("reference", metavar="REPORT")
@click.argument("a", type=_VERSION)
@click.argument("b", type=_VERSION, required=False)
@_where
@click.pass_context
@_handle_errors
def diff(ctx: click.Context, reference: str, a: int, b: int | None, url: str | None, project: str | None) -> None:
    """A unified diff of version A to version B (default: the latest)."""
    report = _open(ctx, url, reference, project)
    click.echo(report.diff(a, b), nl=False)


@report_group.command("revert")
@click.argument("reference", metavar="REPORT")
@click.argument("version", type=_VERSION)
@_where
@click.pass_context
@_handle_errors
def revert(ctx: click.Context, reference: str, version: int, url: str | None, project: str | None) -> None:
    """Make a new version equal to VERSION."""
    click.echo(_summary(_open(ctx, url, reference, project).revert(version)))


@report_group.command("publish")
@click.argument("reference", metavar="REPORT")
@click.argument("version", type=_VERSION, required=False)
@_where
@click.pass_context
@_handle_errors
def publish(ctx: click.Context, reference: str, version: int | None, url: str | None, project: str | None) -> None:
    """Publish VERSION (default: the latest): the report is immutable from then on."""
    report = _open(ctx, url, reference, project)
    click.echo(_summary(report.publish(version or report.latest_version)))


@report_group.command("freeze")
@click.argument("reference", metavar="REPORT")
@_where
@click.pass_context
@_handle_errors
def freeze(ctx: click.Context, reference: str, url: str | None, project: str | None) -> None:
    """Pin every live panel's runs and max step, as a new version."""
    click.echo(_summary(_open(ctx, url, reference, project).freeze()))


@report_group.command("rm")
@click.argument("reference", metavar="REPORT")
@click.option("-y", "--yes", is_flag=True, help="Don't ask; needed when stdin is not a terminal.")
@_where
@click.pass_context
@_handle_errors
def rm(ctx: click.Context, reference: str, yes: bool, url: str | None, project: str | None) -> None:
    """Delete a report: gone from listings, its view tokens stop working (on a server: write on
    the project; a published report needs admin). Its versions stay in the database, unreachable."""
    report = _open(ctx, url, reference, project)
    if not yes:
        import sys

        if not sys.stdin.isatty():
            raise CliError(f"deleting report {report.path} needs --yes when stdin is not a terminal")
        click.confirm(f"Delete report {report.path} ({report.title!r}, v{report.latest_version}"
                      f"{', published' if report.published_version else ''})?", abort=True)
    deleted = report.delete()
    click.echo(f"deleted report {deleted['project']}/{deleted['id']} ({deleted['title']!r})")


@report_group.group("token")
def token_group() -> None:
    """View tokens: read one report without an account (revocable)."""


@token_group.command("create")
@click.argument("reference", metavar="REPORT")
@click.option("--label", default="", help="Who or what the token is for.")
@_where
@click.pass_context
@_handle_errors
def token_create(ctx: click.Context, reference: str, label: str, url: str | None, project: str | None) -> None:
    """Make a view token; it is printed once (stdout), its id on stderr."""
    made = _open(ctx, url, reference, project).create_token(label)
    click.echo(f"token id {made['token_id']} (the token is shown only now)", err=True)
    click.echo(made["token"])


@token_group.command("ls")
@click.argument("reference", metavar="REPORT")
@_where
@click.pass_context
@_handle_errors
def token_ls(ctx: click.Context, reference: str, url: str | None, project: str | None) -> None:
    """The report's view tokens (never their secrets)."""
    for token in _open(ctx, url, reference, project).tokens():
        state = f"revoked {_iso(token['revoked_at'])}" if token["revoked_at"] else "active"
        click.echo(f"{token['token_id']}  {state:<28} {_iso(token['created_at'])}  {token['created_by']}  "
                   f"{token['label']}")


@token_group.command("revoke")
@click.argument("reference", metavar="REPORT")
@click.argument("token_id")
@_where
@click.pass_context
@_handle_errors
def token_revoke(ctx: click.Context, reference: str, token_id: str, url: str | None, project: str | None) -> None:
    """Revoke view token TOKEN_ID: it never works again."""
    _open(ctx, url, reference, project).revoke_token(token_id)
    click.echo(f"revoked {token_id}")


def _add_export() -> None:
    """``export`` is reports-ui's command (cli/report_export.py over tracklet/reports/export.py);
    where that isn't part of this build, a command that says so."""
    if importlib.util.find_spec("tracklet.cli.report_export") is not None:
        report_group.add_command(importlib.import_module("tracklet.cli.report_export").export)
        return

    @report_group.command("export", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @_handle_errors
    def export_unavailable(args: tuple[str, ...]) -> None:
        """Export a report (HTML, PDF, PNG, Markdown): not available in this build."""
        raise CliError("tracklet report export is not available in this build (tracklet.reports.export and "
                       "tracklet/cli/report_export.py are missing)")


_add_export()
