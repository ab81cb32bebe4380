"""``tracklet media prune PROJECT --keep-last N``: a project's media retention policy, applied
explicitly (``tracklet.media.retention``; nothing is ever sampled away while a run records)."""

from __future__ import annotations

import click

from tracklet.cli.common import CliError, _handle_errors, _state


@click.group("media")
def media_group() -> None:
    """Logged media (images, audio, video, ...: docs/media.md)."""


@media_group.command("prune")
@click.argument("project")
@click.option("--keep-last", type=click.IntRange(0), required=True, metavar="N",
              help="Per run and key, keep the media of the last N steps that key logged; retire older ones.")
@click.option("--key", "keys", multiple=True, metavar="KEY", help="Only these keys (repeatable). Default: every key.")
@click.option("--dry-run", is_flag=True, help="Say what would be retired; change nothing.")
@click.option("--keep-blobs", is_flag=True, help="Retire (hide) the items but remove no stored file.")
@click.pass_context
@_handle_errors
def prune(ctx: click.Context, project: str, keep_last: int, keys: tuple[str, ...], dry_run: bool,
          keep_blobs: bool) -> None:
    """Retire the media before each key's last N steps in every run of PROJECT: the read API and
    dashboard stop listing them (each run's media-retention.json says from which step a key is
    kept), and stored files nothing else names (no kept item, run, artifact or table cell) are
    removed. The record logs are not rewritten."""
    from tracklet.media import retention

    root = _state(ctx).api.root
    try:
        plans = retention.plan(root, project, keep_last, list(keys) or None)
    except ValueError as error:
        raise CliError(str(error)) from None
    for run in plans:
        if run.newly_retired:
            kept = ", ".join(f"{key} from step {step}" for key, step in sorted(run.cutoffs.items()))
            click.echo(f"{'would retire' if dry_run else 'retired'} {run.newly_retired} media item(s) "
                       f"({run.newly_retired_bytes:,} bytes) of {run.project}/{run.run_id}: kept {kept}")
    if not any(run.newly_retired for run in plans):
        click.echo(f"nothing to retire in {project} (keeping the last {keep_last} step(s) of each key)")
    if dry_run or not plans:
        return
    report = retention.apply(root, plans, keep_last=keep_last, remove_blobs=not keep_blobs)
    if report.blobs_note:
        click.echo(report.blobs_note, err=True)
    elif not keep_blobs:
        click.echo(f"removed {report.blobs_removed} stored file(s), {report.bytes_freed:,} bytes; "
                   f"kept {report.blobs_kept_shared} that something else names")
