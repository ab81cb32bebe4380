"""``tracklet media prune PROJECT --keep-last N --max-bytes SIZE``: a project's media retention
policy, applied explicitly (``tracklet.media.retention``; nothing is sampled away while a run
records)."""

from __future__ import annotations

import click

from tracklet.cli.common import CliError, _handle_errors, _state


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
@click.pass_context
@_handle_errors
def prune(ctx: click.Context, project: str, keep_last: int | None, max_bytes: str | None, keys: tuple[str, ...],
          dry_run: bool, keep_blobs: bool) -> None:
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
                   f"kept {report.blobs_kept_shared} that something else names")
