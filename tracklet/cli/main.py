"""The ``tracklet`` command line.

    tracklet projects                      projects and their run counts
    tracklet runs [PROJECT] [--json]       runs, newest first (all projects without PROJECT)
    tracklet show RUN [--json]             one run: identity, state, host, git, config, summary, ...
    tracklet export RUN -f csv|jsonl|parquet [-o FILE] [--keys a,b]
    tracklet demo [--project demo] [--steps 300] [--name NAME]
    tracklet run [--project P] [--name N] -- python train.py ARGS   record an unmodified script
    tracklet runs PROJECT --filter EXPR --sort KEYS [--limit N]      query the store
    tracklet index | gc                    ingest new records into the store | drop deleted runs
    tracklet ui [--port 8765] [--no-open] [--no-token]  the dashboard over this data root, in a browser
    tracklet import wandb DIR | tensorboard LOGDIR [--project P]   other trackers' runs, idempotently
    tracklet artifact ls|show|edit|get|put|verify|rm|gc [project/name[:alias]]  artifact versions (docs/artifacts.md)
    tracklet registry ls|link|alias|history|card|protect|approve  the model registry (docs/registry.md)
    tracklet sweep create config.yaml [--project P]   a sweep (W&B's YAML); prints its id last
    tracklet agent SWEEP_ID [--count N] [--gpus 0-3 --gpus-per-trial 1]   run a sweep's trials
    tracklet sweep ls | show ID | pause ID | resume ID | stop ID | extend ID --run-cap N
    tracklet audit ls|export [--actor U --action A --target PREFIX --since T]   a server's audit log
    tracklet automation ls|add|rm|deliveries   a server's webhooks and chat messages on events
    tracklet reproduce RUN [--dry-run] [--dir DIR] [--env current|venv|uv] [--set k=v]   run a run again
    tracklet diff RUN_A RUN_B [--json]     config, environment, packages, code, inputs, summary
    tracklet report ls|show|diff|revert|publish|freeze|token|export  reports (docs/reports.md)
    tracklet traces export PROJECT -o spans.parquet [--run RUN]   spans as Parquet / JSON Lines
    tracklet media prune PROJECT [--keep-last N] [--max-bytes SIZE] [--dry-run] [--url URL]   media retention (docs/media.md)

``RUN`` is ``project/run_id`` or ``project/run_name``, or a run id or run name that is unique under
the data root (``tracklet sync`` takes the same, or a run directory).
``--dir PATH`` (before the command) picks the data root; the default is ``$TRACKLET_DIR`` or the
per-user data directory, as for ``tracklet.Api()``. Expected failures (no such run, an ambiguous
name, a bad format, pyarrow missing) print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click

from tracklet import __version__
from tracklet.cli.common import (  # noqa: F401  (their old home: importable from here too)
    ERROR_EXIT_CODE,
    CliError,
    _as_cli_error,
    _handle_errors,
    _State,
    _state,
)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    text = str(message)
    if not text.startswith("tracklet"):
        text = f"tracklet: warning: {text}"
    click.echo(text, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data root to read and write runs in. Default: $TRACKLET_DIR, else the per-user data directory.",
)
@click.version_option(__version__, prog_name="tracklet")
@click.pass_context
def main(ctx: click.Context, root: Path | None) -> None:
    """tracklet: record runs (tracklet run, demo) and list, inspect and export them."""
    ctx.obj = _State(root)
    # Reader warnings (e.g. a damaged record log) become one line each on stderr, not a source dump.
    ctx.with_resource(warnings.catch_warnings())
    warnings.showwarning = _show_warning


def _register() -> None:
    """Add every command module's commands to the group (they import ``common``, never this module)."""
    from tracklet.cli import (artifact_edit, artifacts, audit, demo, diff, importing, index, launch, media, registry,
                              report, reproduce, runs, serve, sweeps, traces)

    artifacts.artifact_group.add_command(artifact_edit.edit)

    for command in (runs.projects, runs.runs, runs.show, runs.export, index.index, index.gc, launch.run, demo.demo,
                    serve.server, serve.ui, serve.admin, serve.login, serve.sync, importing.import_group,
                    artifacts.artifact_group, registry.registry_group, sweeps.sweep_group, sweeps.agent,
                    audit.audit_group, audit.automation_group, reproduce.reproduce, diff.diff,
                    report.report_group, traces.traces_group, media.media_group):
        main.add_command(command)


_register()


if __name__ == "__main__":
    main(prog_name="tracklet")
