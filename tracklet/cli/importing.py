"""``tracklet import wandb DIR``, ``tracklet import tensorboard LOGDIR`` and ``tracklet import mlflow
STORE``: other trackers' runs into this data root (tracklet/importers/, docs/import.md), with a progress bar per run."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import click

from tracklet.cli.common import CliError, _handle_errors, _state


@click.group("import")
def import_group() -> None:
    """Import runs from other trackers into the data root (importing again changes nothing)."""


def _run_import(ctx: click.Context, label: str,
                call: Callable[[Callable[[Any, int, int | None], None]], list[Any]], quiet: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tracklet.importers.writer import SourceError

    console = Console(stderr=True)
    tasks: dict[Any, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=quiet, transient=False) as bar:

        def report(source: Any, done: int, total: int | None) -> None:  # total None: not known yet
            task = tasks.get(source)
            if task is None:
                task = tasks[source] = bar.add_task(f"{label} {Path(str(source)).name}", total=total)
            bar.update(task, completed=done, total=total)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # each run's warnings are printed below, once
            try:
                results = call(report)
            except SourceError as error:
                raise CliError(str(error)) from None
    counts = {"imported": 0, "unchanged": 0, "changed": 0, "completed": 0, "skipped": 0}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
        for message in result.warnings:
            click.echo(f"tracklet: warning: {result.path}: {message}", err=True)
        if result.status == "imported":
            click.echo(f"imported {result.path} ({result.name}): {result.rows:,} rows, {result.points:,} points")
        elif result.status == "skipped":
            click.echo(f"skipped {result.source}: it could not be read (see the warning above)")
        elif result.status == "unchanged":
            click.echo(f"already imported {result.path} ({result.name}): unchanged, nothing to do")
        elif result.status == "completed":
            click.echo(f"already imported {result.path} ({result.name}): its artifact files, not imported then, "
                       "added now")
        else:
            click.echo(f"already imported {result.path} ({result.name}): the source changed since; "
                       f"delete that run's directory to import it again")
    click.echo(f"{counts['imported']} run(s) imported, {counts['unchanged'] + counts['changed']} already there"
               + (f", {counts['completed']} given their artifact files" if counts["completed"] else "")
               + (f", {counts['skipped']} skipped" if counts["skipped"] else ""))
    left = [result.path for result in results if getattr(result, "without_artifacts", False)]
    if left:
        click.echo(f"{len(left)} run(s) without their artifact files (the warnings above say why): "
                   + ", ".join(left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else ""))
    models = getattr(results, "models", None)
    if models:
        _report_models(models)


def _report_models(models: list[Any]) -> None:
    """What ``tracklet import mlflow`` did with each registered model version."""
    counts = {"imported": 0, "unchanged": 0, "skipped": 0}
    for result in models:
        counts[result.status] = counts.get(result.status, 0) + 1
        for message in result.warnings:
            click.echo(f"tracklet: warning: MLflow model {result.name}: {message}", err=True)
        aliases = f" (aliases: {', '.join(result.aliases)})" if result.aliases else ""
        if result.status == "imported":
            click.echo(f"registered {result.path}: MLflow model {result.name}{aliases}")
        elif result.status == "unchanged":
            click.echo(f"already registered {result.path}: MLflow model {result.name}{aliases}")
        else:
            click.echo(f"skipped MLflow model {result.name} (see the warning above)")
    click.echo(f"{counts['imported']} model version(s) registered, {counts['unchanged']} already there"
               + (f", {counts['skipped']} skipped" if counts["skipped"] else ""))


@import_group.command("wandb")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--project", default=None, help="Project for the runs (default: each W&B run's own project).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def import_wandb_command(ctx: click.Context, path: Path, project: str | None, quiet: bool) -> None:
    """Import W&B offline runs: a wandb/ directory, one run directory, or one run-*.wandb file."""
    root = _state(ctx).api.root

    def run(report: Any) -> Any:
        from tracklet.importers.wandb import import_wandb  # inside: a missing extra is a one-line error

        return import_wandb(path, root, project, progress=report)

    _handle_errors(_run_import)(ctx, "wandb", run, quiet)


@import_group.command("tensorboard")
@click.argument("logdir", type=click.Path(path_type=Path))
@click.option("--project", default=None, help="Project for the runs (default: tensorboard).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def import_tensorboard_command(ctx: click.Context, logdir: Path, project: str | None, quiet: bool) -> None:
    """Import TensorBoard logs: every directory under LOGDIR holding event files is a run."""
    root = _state(ctx).api.root

    def run(report: Any) -> Any:
        from tracklet.importers.tensorboard import import_tensorboard

        return import_tensorboard(logdir, root, project, progress=report)

    _handle_errors(_run_import)(ctx, "tensorboard", run, quiet)


@import_group.command("mlflow")
@click.argument("store")
@click.option("--project", default=None, help="Project for the runs (default: one per experiment, named after it).")
@click.option("--experiment", "experiments", multiple=True, metavar="NAME_OR_ID",
              help="Import only this experiment (repeatable; default: every active one).")
@click.option("--no-models", is_flag=True, help="Import the runs only, not the registered models.")
@click.option("--artifact-root", "artifact_roots", multiple=True, metavar="DIR",
              help="Also read artifact files that the store keeps in this directory of this machine (repeatable; "
                   "default: only inside a file store's or a database's own directory).")
@click.option("--fetch-remote-artifacts", is_flag=True,
              help="Also fetch artifact files from the remote locations the store names (s3://, gs://, https://, ...) "
                   "with this machine's credentials (default: not fetched; a server's own files are).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def import_mlflow_command(ctx: click.Context, store: str, project: str | None, experiments: tuple[str, ...],
                          no_models: bool, artifact_roots: tuple[str, ...], fetch_remote_artifacts: bool,
                          quiet: bool) -> None:
    """Import MLflow runs and registered models: a file store (mlruns/), a database (mlflow.db,
    sqlite:///...) or a server (http://...)."""
    root = _state(ctx).api.root

    def run(report: Any) -> Any:
        from tracklet.importers.mlflow import import_mlflow

        return import_mlflow(store, root, project, experiments, progress=report, models=not no_models,
                             artifact_roots=artifact_roots, fetch_remote_artifacts=fetch_remote_artifacts)

    _handle_errors(_run_import)(ctx, "mlflow", run, quiet)
