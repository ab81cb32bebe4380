"""``tracklet audit ls|export`` and ``tracklet automation ls|add|rm|deliveries``: a tracking
server's audit log and automations, over its API (server admins; docs/audit.md)."""

from __future__ import annotations

import datetime as _dt
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from tracklet.cli.common import CliError, _handle_errors, _iso

_URL = click.option("--url", default=None, envvar="TRACKLET_BASE_URL", metavar="URL",
                    help="The tracking server (default: $TRACKLET_BASE_URL).")


def _client(url: str | None) -> Any:
    from tracklet.client.http import HttpClient, RetryPolicy

    if not url:
        raise CliError("no server URL: pass --url or set TRACKLET_BASE_URL")
    return HttpClient(url, timeout=60, retry=RetryPolicy(base=0.25, cap=2.0, give_up_after=10.0))


def _get(client: Any, path: str, **kwargs: Any) -> Any:
    from tracklet.client.http import refusal

    response = client.request("GET", path, **kwargs)
    if response.status_code != 200:
        raise refusal(response, base_url=client.base_url)
    return response


def _time(value: str | None) -> float | None:
    """Unix seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"not a time: {value!r} (Unix seconds or ISO 8601, e.g. 2026-12-01T08:00)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return parsed.timestamp()


def _filters(function: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--actor", default=None, help="Only this user's calls."),
        click.option("--action", default=None, help="Only this action (a route's name, e.g. create_key)."),
        click.option("--project", default=None, help="Only calls on this project."),
        click.option("--target", default=None, help="Only targets starting with this (e.g. projects/p/members/)."),
        click.option("--outcome", type=click.Choice(["ok", "denied", "rejected", "error", "unknown"]), default=None),
        click.option("--since", default=None, help="Only events at or after this time (Unix seconds or ISO 8601)."),
        click.option("--until", default=None, help="Only events before this time."),
    ]):
        function = option(function)
    return function


def _params(actor: str | None, action: str | None, project: str | None, target: str | None, outcome: str | None,
            since: str | None, until: str | None) -> dict[str, Any]:
    params = {"actor": actor, "action": action, "project": project, "target": target, "outcome": outcome,
              "since": _time(since), "until": _time(until)}
    return {key: value for key, value in params.items() if value is not None}


@click.group("audit")
def audit_group() -> None:
    """A tracking server's audit log: one event per mutating API call (server admins)."""


@audit_group.command("ls")
@_filters
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="Events at most.")
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@_URL
@_handle_errors
def audit_ls(actor: str | None, action: str | None, project: str | None, target: str | None, outcome: str | None,
             since: str | None, until: str | None, limit: int, oldest_first: bool, as_json: bool,
             url: str | None) -> None:
    """List audit events, newest first."""
    params = {**_params(actor, action, project, target, outcome, since, until), "limit": limit,
              "order": "asc" if oldest_first else "desc"}
    with _client(url) as client:
        events = _get(client, "/api/v1/audit", params=params).json()["events"]
    if as_json:
        for event in events:
            click.echo(json.dumps(event, separators=(",", ":")))
        return
    for event in events:
        who = event["actor"] or "(unauthenticated)"
        click.echo(f"{event['id']:>8}  {_iso(event['time'])}  {who:<16} {event['action']:<20} "
                   f"{event['method']:<6} {event['target']}  {event['status']} {event['outcome']}  "
                   f"{event['client'] or ''}")


@audit_group.command("export")
@_filters
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (default: standard output).")
@_URL
@_handle_errors
def audit_export(actor: str | None, action: str | None, project: str | None, target: str | None,
                 outcome: str | None, since: str | None, until: str | None, output: str | None,
                 url: str | None) -> None:
    """Every matching audit event as JSON lines, oldest first (fetched a page at a time)."""
    params = {**_params(actor, action, project, target, outcome, since, until), "limit": 10_000, "order": "asc"}
    with _client(url) as client, (open(output, "w", encoding="utf-8") if output else _stdout()) as file:
        while True:
            page = _get(client, "/api/v1/audit", params=params).json()
            for event in page["events"]:
                file.write(json.dumps(event, separators=(",", ":")) + "\n")
            if page["next_after"] is None:
                return
            params["after"] = page["next_after"]


def _stdout() -> Any:
    import contextlib

    return contextlib.nullcontext(sys.stdout)


@click.group("automation")
def automation_group() -> None:
    """A tracking server's automations: webhooks and chat messages on events (server admins)."""


@automation_group.command("ls")
@_URL
@_handle_errors
def automation_ls(url: str | None) -> None:
    """List the rules."""
    with _client(url) as client:
        rules = _get(client, "/api/v1/automations").json()["automations"]
    for rule in rules:
        click.echo(f"{rule['id']:>4}  {rule['name']:<24} {rule['event']:<20} {rule['action']:<8} {rule['url']}  "
                   f"{json.dumps(rule['filter'])}")


@automation_group.command("add")
@click.argument("name")
@click.option("--event", required=True, help="An event kind (run.alert, run.finished, artifact.version, ...) or '*'.")
@click.option("--to", "target_url", required=True, metavar="URL", help="Where to POST (http or https).")
@click.option("--action", type=click.Choice(["webhook", "slack"]), default="webhook", show_default=True)
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="project, subject_prefix, level; metric, op, value for metric.threshold (repeatable).")
@_URL
@_handle_errors
def automation_add(name: str, event: str, target_url: str, action: str, filters: tuple[str, ...],
                   url: str | None) -> None:
    """Add a rule; prints the webhook's signing secret (shown only now)."""
    from tracklet.client.http import refusal

    parsed: dict[str, Any] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--filter takes KEY=VALUE; got {item!r}")
        parsed[key] = float(value) if key == "value" else value
    with _client(url) as client:
        response = client.request("POST", "/api/v1/automations", json={
            "name": name, "event": event, "filter": parsed, "action": action, "url": target_url})
        if response.status_code != 201:
            raise refusal(response, base_url=client.base_url)
    rule = response.json()
    click.echo(f"automation {rule['id']} ({rule['name']}) added; its signing secret, shown only now:", err=True)
    click.echo(rule["secret"])


@automation_group.command("rm")
@click.argument("automation_id", type=int)
@_URL
@_handle_errors
def automation_rm(automation_id: int, url: str | None) -> None:
    """Remove a rule (its delivery log stays)."""
    from tracklet.client.http import refusal

    with _client(url) as client:
        response = client.request("DELETE", f"/api/v1/automations/{automation_id}")
        if response.status_code != 204:
            raise refusal(response, base_url=client.base_url)
    click.echo(f"automation {automation_id} removed")


@automation_group.command("deliveries")
@click.argument("automation_id", type=int)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@_URL
@_handle_errors
def automation_deliveries(automation_id: int, limit: int, url: str | None) -> None:
    """A rule's deliveries, newest first: state, attempts, the last status or error."""
    with _client(url) as client:
        deliveries = _get(client, f"/api/v1/automations/{automation_id}/deliveries",
                          params={"limit": limit}).json()["deliveries"]
    for item in deliveries:
        last = item["last_status"] if item["last_status"] is not None else (item["last_error"] or "")
        click.echo(f"{item['id']:>8}  {_iso(item['created_at'])}  {item['kind']:<18} {item['subject']:<40} "
                   f"{item['state']:<9} attempts={item['attempts']}  {last}")
