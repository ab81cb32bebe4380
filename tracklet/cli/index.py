"""``tracklet index`` and ``tracklet gc``: bring the store up to date with the record logs, and drop
the rows of deleted runs (tracklet/store/, docs/store.md)."""

from __future__ import annotations

from typing import Any

import click

from tracklet.cli.common import CliError, _handle_errors, _state


@click.command()
@click.option("--wait", type=click.FloatRange(0), default=60.0, show_default=True,
              help="Seconds to wait while another process (tracklet ui, another index) is indexing.")
@click.option("--rebuild", is_flag=True,
              help="Empty the tables derived from record logs (runs, metrics, console, alerts) and index every "
                   "log from the start. A server's own tables (users, API keys, members, segments) are never touched.")
@click.option("--store", "store_url", default=None, metavar="URL",
              help="The store to index (default: $TRACKLET_STORE, else SQLite in the data root); a server's: its --store.")
@click.option("--logs", "logs_url", default=None, metavar="DIR|URL",
              help="Read the record logs from a server's segment copies at this location (its --logs; with its "
                   "PostgreSQL --store) instead of the data root.")
@click.option("--files-option", "files_options", multiple=True, metavar="KEY=VALUE",
              help="An fsspec option for --logs, as for `tracklet server` (repeatable).")
@click.pass_context
@_handle_errors
def index(ctx: click.Context, wait: float, rebuild: bool, store_url: str | None, logs_url: str | None,
          files_options: tuple[str, ...]) -> None:
    """Ingest new records from every run's record log into the store now.

    A run that cannot be indexed is named with the reason on stderr and the others are indexed;
    the exit status is then 2. If another process keeps indexing for --wait seconds, nothing is
    done (that process is bringing the store up to date) and the exit status is 0.
    --rebuild re-derives the store from the record logs (docs/store.md says what is kept); for a
    server that keeps its logs as segments, pass its --store and --logs.
    """
    import time

    from tracklet.store import Store

    api = _state(ctx).api
    started = time.perf_counter()

    def waiting() -> None:
        click.echo(f"Another process is indexing {api.root}; waiting up to {wait:g}s for it...", err=True)

    with Store(store_url, root=api.root) as store:
        source = _segment_source(store, logs_url, files_options) if logs_url is not None else None
        report = store.index(wait=wait, on_wait=waiting, rebuild=rebuild, source=source)
    elapsed = time.perf_counter() - started
    if report.busy:
        click.echo(f"Skipped: another process is still indexing {api.root} (it brings the store up to date)")
        return
    click.echo(
        f"Indexed {report.runs_updated} of {report.runs_seen} runs: {report.points:,} points, "
        f"{report.bytes_read:,} bytes in {elapsed:.2f}s ({store.url})"
    )
    for line in report.damaged:
        click.echo(f"tracklet: warning: damaged record log, every intact record indexed: {line}", err=True)
    if report.failed:
        raise CliError(f"{len(report.failed)} run(s) could not be indexed (the others were): "
                       + "; ".join(report.failed))


def _segment_source(store: Any, logs_url: str, files_options: tuple[str, ...]) -> Any:
    """A server's segment copies at ``logs_url`` as the indexer's log source (server/segments.py)."""
    from tracklet.cli.common import _require_server_extra
    from tracklet.cli.serve import _files_options

    _require_server_extra("tracklet index --logs")
    from tracklet.server.files import RunFiles
    from tracklet.server.indexing import HEARTBEAT_LAPSE
    from tracklet.server.segments import SegmentCopies

    try:
        location = RunFiles.connect(logs_url, _files_options(files_options))
        return SegmentCopies(store.engine, location.fs, location.base, store.root, heartbeat_lapse=HEARTBEAT_LAPSE)
    except ValueError as error:
        raise CliError(str(error)) from None


@click.command()
@click.pass_context
@_handle_errors
def gc(ctx: click.Context) -> None:
    """Remove from the store the runs whose directories were deleted."""
    from tracklet.store import Store

    with Store(root=_state(ctx).api.root) as store:
        removed = store.gc()
    click.echo(f"Removed {removed} deleted run(s) from the store")
