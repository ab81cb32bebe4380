"""``tracklet media prune PROJECT --keep-last N --max-bytes SIZE``: a project's media retention
policy, applied explicitly (``tracklet.media.retention``; nothing is sampled away while a run
records)."""

from __future__ import annotations

import click

from tracklet.cli.common import CliError, _handle_errors, _state, unknown_project


@click.group("media")
def media_group() -> None:
    """Logged media (images, audio, video, ...: docs/media.md)."""


@media_group.command("prune")
@click.argument("project")
@click.option("--keep-last", type=click.IntRange(0), default=None, metavar="N",
              help="Per run and key, keep the media of the last N steps that key logged; retire older ones.")
@click.option("--max-bytes", default=None, metavar="SIZE",
              help="Then, per run, retire the oldest steps (of the keys in scope) until the files kept add up to at "
                   "most SIZE (e.g. 500MB, 2GiB; thumbnails and masks not counted).")
@click.option("--key", "keys", multiple=True, metavar="KEY", help="Only these keys (repeatable). Default: every key.")
@click.option("--dry-run", is_flag=True, help="Say what would be retired; change nothing.")
@click.option("--keep-blobs", is_flag=True, help="Retire (hide) the items but remove no stored file.")
@click.option("--url", default=None, metavar="URL",
              help="Apply the policy on this tracking server (its runs and blob store, local or S3; admin on PROJECT) "
                   "instead of the local data root.")
@click.option("--grace", default="1h", show_default=True,
              help="With --url: keep blobs an upload used more recently than this (0, 30m, 12h, 1d).")
@click.pass_context
@_handle_errors
def prune(ctx: click.Context, project: str, keep_last: int | None, max_bytes: str | None, keys: tuple[str, ...],
          dry_run: bool, keep_blobs: bool, url: str | None, grace: str) -> None:
    """Retire the media before each key's last N steps (--keep-last), and then the oldest steps
    past a size (--max-bytes), in every run of PROJECT: the read API and
    dashboard stop listing them (each run's media-retention.json says from which step a key is
    kept), and stored files nothing else names (no kept item, run, artifact or table cell) are
    removed. The record logs are not rewritten."""
    from tracklet.media import retention

    from tracklet.artifacts.sizes import parse_size

    root = _state(ctx).api.root
    try:
        limit = None if max_bytes is None else parse_size(max_bytes)
    except ValueError as error:
        raise CliError(f"--max-bytes: {error}") from None
    if keep_last is None and limit is None:
        raise CliError("say what to keep: --keep-last N, --max-bytes SIZE, or both")
    if url:
        _prune_on_server(url, project, keep_last, limit, list(keys) or None, dry_run, keep_blobs, grace)
        return
    if project not in _state(ctx).api.projects():
        raise unknown_project(_state(ctx).api, project)
    try:
        plans = retention.plan(root, project, keep_last, list(keys) or None, max_bytes=limit)
    except ValueError as error:
        raise CliError(str(error)) from None
    for run in plans:
        if run.newly_retired:
            kept = ", ".join(f"{key} from step {step}" for key, step in sorted(run.cutoffs.items()))
            click.echo(f"{'would retire' if dry_run else 'retired'} {run.newly_retired} media item(s) "
                       f"({run.newly_retired_bytes:,} bytes) of {run.project}/{run.run_id}: kept {kept}")
    if not any(run.newly_retired for run in plans):
        click.echo(f"nothing to retire in {project} (the policy keeps everything there is)")
    if dry_run or not plans:
        return
    report = retention.apply(root, plans, keep_last=keep_last, max_bytes=limit, remove_blobs=not keep_blobs)
    if report.blobs_note:
        click.echo(report.blobs_note, err=True)
    elif not keep_blobs:
        click.echo(f"removed {report.blobs_removed} stored file(s), {report.bytes_freed:,} bytes; "
                   f"kept {report.blobs_kept_shared} that something else names"
                   + (f" and {report.blobs_kept_running} written or used since run {report.running_run} (running) "
                      "started: prune again once it has finished to remove those" if report.blobs_kept_running else ""))


PRUNE_PAGE_ATTEMPTS = 5  # tries of one page (its answer lost: a transport error, a 5xx) before the prune stops


def _prune_on_server(url: str, project: str, keep_last: int | None, limit: int | None, keys: list[str] | None,
                     dry_run: bool, keep_blobs: bool, grace: str) -> None:
    """``prune --url``: the server applies the policy to its copies of the runs and its blob store;
    one whose logs are segments (``--logs``) answers in pages, asked for until the last, the
    progress on stderr; a page whose answer is lost is asked for again (``PRUNE_PAGE_ATTEMPTS``
    tries, backing off), with the same cursor: the server answers it as it did."""
    import uuid

    from tracklet.artifacts.sizes import parse_duration
    from tracklet.client.http import HttpClient, RetryPolicy

    try:
        grace_seconds = parse_duration(grace)
    except ValueError as error:
        raise CliError(f"--grace: {error}") from None
    # A page whose answer is lost (a transport error, a 5xx of a proxy) is asked for again with the same
    # cursor (the first with the same prune_id): the server answers it as it did, doing nothing twice.
    http = HttpClient(url, retry=RetryPolicy(attempts=PRUNE_PAGE_ATTEMPTS))
    request = {"keep_last": keep_last, "max_bytes": limit, "keys": keys, "dry_run": dry_run, "keep_blobs": keep_blobs,
               "grace_seconds": grace_seconds, "prune_id": uuid.uuid4().hex}
    retired = 0  # runs with media retired, over every page
    steps = {"retire": "runs of the project read", "seen": "runs' logs searched for the retired blobs",
             "remove": "retired blobs decided"}
    try:
        while True:  # a server whose logs are segments (--logs) answers in pages: each reads a bounded number of runs
            response = http.request("POST", f"/api/v1/projects/{project}/media/prune", json=request, idempotent=True)
            if response.status_code != 200:
                raise http.refusal(response, what="the prune")
            report = response.json()
            for run in report["runs"]:
                kept = ", ".join(f"{key} from step {step}" for key, step in sorted(run["kept_from"].items()))
                click.echo(f"{'would retire' if dry_run else 'retired'} {run['retired']} media item(s) "
                           f"({run['retired_bytes']:,} bytes) of {project}/{run['run_id']} on {url}: kept {kept}")
            retired += len(report["runs"])
            if not report.get("next_cursor"):
                break
            if report.get("phase") in steps:
                click.echo(f"... {report['done']:,} {steps[report['phase']]}", err=True)
            request["cursor"] = report["next_cursor"]
    finally:
        http.close()
    if not retired:
        click.echo(f"nothing to retire in {project} on {url} (the policy keeps everything there is)")
    if dry_run or not retired:
        return
    if report["note"]:
        click.echo(report["note"], err=True)
    elif not keep_blobs:
        click.echo(f"removed {report['blobs_removed']} stored blob(s) on the server, {report['bytes_freed']:,} bytes; "
                   f"released {report['grants_dropped']} claim(s); kept {report['blobs_kept_shared']} that something "
                   "else names or holds")
