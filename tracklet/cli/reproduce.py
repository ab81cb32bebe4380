"""``tracklet reproduce RUN``: run a recorded run again from what it recorded (docs/reproduce.md).

``--dry-run`` prints the plan (what is checked out, applied, installed, materialized and run; what
differs from the original machine; what can't be restored) and does nothing. Without it the plan
is carried out, unless it names a part that can't be restored (then nothing is done, exit 2)
or ``--force`` is given.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tracklet.cli.common import CliError, _handle_errors, _state


@click.command()
@click.argument("run_path", metavar="RUN")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="Where the working tree goes (empty or new). Default: ./reproduce-<run id>[-N].")
@click.option("--env", "env", type=click.Choice(["current", "venv", "uv"]), default="current", show_default=True,
              help="current: this interpreter as it is (no network); venv or uv: a new environment with the "
                   "run's packages.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (JSON values: 0.1, true, \"text\"; a.b=1 for nested keys). Repeatable.")
@click.option("--rewrite-args", is_flag=True,
              help="Where a --set key is also a recorded command-line argument (--lr 0.5), pass the new value "
                   "there too (without it, the plan warns).")
@click.option("--dry-run", is_flag=True, help="Print the plan and do nothing.")
@click.option("--force", is_flag=True, help="Go on although the plan names parts that can't be restored.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan (and the outcome) as JSON.")
@click.pass_context
@_handle_errors
def reproduce(ctx: click.Context, run_path: str, directory: Path | None, env: str, overrides: tuple[str, ...],
              rewrite_args: bool, dry_run: bool, force: bool, as_json: bool) -> None:
    """Reproduce RUN: its code at the recorded commit with its uncommitted changes, its
    environment, its input artifact versions and its command and config, as a new run linked to
    it (a `reproduces` link). Compare the two with `tracklet diff`."""
    from tracklet.reproduce.execute import parse_overrides, reproduce as carry_out
    from tracklet.reproduce.plan import make_plan

    state = _state(ctx)
    run = state.api.run(run_path)
    def progress(text: str) -> None:
        click.echo(f"tracklet: {text}", err=True)

    plan = make_plan(run, state.api.root, env=env, directory=directory, overrides=parse_overrides(overrides),
                     progress=progress, rewrite_args=rewrite_args)
    if dry_run:
        click.echo(json.dumps(plan.to_dict(), indent=1, default=str) if as_json else plan.render())
        if plan.problems:
            ctx.exit(2)
        return
    if plan.problems and not force:
        click.echo(plan.render(), err=True)
        raise CliError(f"{len(plan.problems)} part(s) of {run.path} can't be restored; nothing was done "
                       "(--force goes on anyway)")
    if not as_json:
        click.echo(plan.render(), err=True)
    outcome = carry_out(plan, force=force, progress=progress)
    if as_json:
        click.echo(json.dumps({"plan": plan.to_dict(), "run": outcome.run, "exit_code": outcome.exit_code,
                               "directory": str(outcome.directory), "seconds": outcome.seconds}, indent=1,
                              default=str))
    else:
        click.echo(f"reproduced {run.path} as {outcome.run} (exit status {outcome.exit_code}); compare with: "
                   f"{state.command_prefix()} diff {run.path} {outcome.run}")
    if outcome.exit_code != 0:
        sys.exit(outcome.exit_code if 0 < outcome.exit_code < 256 else 1)
