"""``tracklet diff RUN_A RUN_B``: what differs between two runs (docs/reproduce.md)."""

from __future__ import annotations

import json

import click

from tracklet.cli.common import _handle_errors, _state


@click.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
@_handle_errors
def diff(ctx: click.Context, run_a: str, run_b: str, as_json: bool) -> None:
    """Config, environment, packages, code (a unified diff), inputs and summary metrics (with
    relative differences) of RUN_A and RUN_B."""
    from tracklet.reproduce.compare import compare, render

    api = _state(ctx).api
    result = compare(api.run(run_a), api.run(run_b))
    click.echo(json.dumps(result, indent=1, default=str) if as_json else render(result))
