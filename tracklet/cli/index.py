"""``tracklet index`` and ``tracklet gc``: bring the store up to date with the record logs, and drop
the rows of deleted runs (tracklet/store/, docs/store.md)."""

from __future__ import annotations

import click

from tracklet.cli.common import CliError, _handle_errors, _state


@click.command()
@click.option("--wait", type=click.FloatRange(0), default=60.0, show_default=True,
              help="Seconds to wait while another process (tracklet ui, another index) is indexing.")
@click.option("--rebuild", is_flag=True,
              help="Empty the tables derived from record logs (runs, metrics, console, alerts) and index every "
                   "log from the start. Users, API keys and project members are kept.")
@click.pass_context
@_handle_errors
def index(ctx: click.Context, wait: float, rebuild: bool) -> None:
    """Ingest new records from every run's record log into the store now.

    A run that cannot be indexed is named with the reason on stderr and the others are indexed;
    the exit status is then 2. If another process keeps indexing for --wait seconds, nothing is
    done (that process is bringing the store up to date) and the exit status is 0.
    --rebuild re-derives the store from the record logs (docs/store.md says what is kept).
    """
    import time

    from tracklet.store import Store

    api = _state(ctx).api
    started = time.perf_counter()

    def waiting() -> None:
        click.echo(f"Another process is indexing {api.root}; waiting up to {wait:g}s for it...", err=True)

    with Store(root=api.root) as store:
        report = store.index(wait=wait, on_wait=waiting, rebuild=rebuild)
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


@click.command()
@click.pass_context
@_handle_errors
def gc(ctx: click.Context) -> None:
    """Remove from the store the runs whose directories were deleted."""
    from tracklet.store import Store

    with Store(root=_state(ctx).api.root) as store:
        removed = store.gc()
    click.echo(f"Removed {removed} deleted run(s) from the store")
