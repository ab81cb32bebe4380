"""``tracklet traces export PROJECT -o FILE``: a project's spans as Parquet or JSON Lines."""

from __future__ import annotations

from pathlib import Path

import click

from tracklet.cli.common import CliError, _handle_errors, _state, unknown_project


@click.group("traces")
def traces_group() -> None:
    """Traces recorded by @tracklet.op, the LLM clients and OTLP (docs/tracing.md)."""


@traces_group.command("export")
@click.argument("project")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write (replaced atomically).")
@click.option("--format", "-f", "fmt", metavar="parquet|jsonl",
              help="Output format. Default: from -o's suffix (.jsonl/.ndjson: jsonl), else parquet.")
@click.option("--run", "run_id", default=None, help="Only traces with a span of this run.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=10_000, show_default=True,
              help="The latest traces, at most this many.")
@click.pass_context
@_handle_errors
def export(ctx: click.Context, project: str, output: Path, fmt: str | None, run_id: str | None, limit: int) -> None:
    """Export a project's spans, one row per span: ids, name, times, status, run and step, typed
    columns, cost, and inputs / output / attributes as JSON text."""
    from tracklet.api.trace_export import FORMATS, export_spans

    if fmt is None:
        fmt = "jsonl" if output.suffix.lower() in (".jsonl", ".ndjson") else "parquet"
    if fmt not in FORMATS:
        raise CliError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    api = _state(ctx).api
    traces = api.traces(project, run=run_id, limit=limit)
    if not traces and project not in api.projects():  # spans of a project without runs come by OTLP
        raise unknown_project(api, project)
    rows = export_spans(traces, fmt, output)
    click.echo(f"Wrote {rows} spans of {len(traces)} traces of {project} to {output} ({fmt})", err=True)
