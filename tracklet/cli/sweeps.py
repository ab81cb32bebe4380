"""``tracklet sweep create|ls|show|pause|resume|stop|extend`` and ``tracklet agent``: hyperparameter
sweeps over the local data root (tracklet/sweeps/, docs/sweeps.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from tracklet.cli.common import _handle_errors, _iso, _state


def _root(ctx: click.Context) -> Path:
    return Path(_state(ctx).api.root)


def _server_url(url: str | None) -> str | None:
    """``--url``, else ``$TRACKLET_BASE_URL`` when ``$TRACKLET_MODE`` is ``online``: server mode."""
    from tracklet.sweeps.remote import server_url

    return server_url(url)


_URL_HELP = ("A tracking server: the sweep lives there (server mode; agents on any machine talk HTTP to it). "
             "Default: $TRACKLET_BASE_URL when $TRACKLET_MODE=online, else the local data root.")


@click.group("sweep")
def sweep_group() -> None:
    """Create and control hyperparameter sweeps (W&B's sweep YAML; Optuna searches)."""


@sweep_group.command("create")
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--project", default=None, help="Project of the sweep's runs. Default: the config's project:, "
                                                "$TRACKLET_PROJECT, else 'default'.")
@click.option("--warm-start", is_flag=True, default=False,
              help="Start the search from the project's finished runs whose config fits the parameters and that "
                   "logged the metric (the config's warm_start: key does the same, and can name another project).")
@click.option("--url", default=None, help=_URL_HELP)
@click.pass_context
@_handle_errors
def create(ctx: click.Context, config_file: Path, project: str | None, warm_start: bool, url: str | None) -> None:
    """Create a sweep from a W&B sweep config (YAML or JSON); the last line printed is its id.

    Start agents with `tracklet agent SWEEP_ID` (as many as you like, on this machine; with --url,
    on any machine that reaches the server).
    """
    from tracklet.sweeps.controller import create_sweep
    from tracklet.sweeps.spec import load_text

    config = load_text(config_file.read_text())
    if warm_start and isinstance(config, dict) and not config.get("warm_start"):
        config["warm_start"] = True
    server = _server_url(url)
    if server is not None:
        from tracklet.sweeps.remote import create_remote_sweep

        made = create_remote_sweep(server, config, project=project)
        size = f", {made['grid_size']} grid points" if made.get("grid_size") else ""
        click.echo(f"Created sweep {made['id']} in project {made['project']} ({made['method']}{size}) on {server}",
                   err=True)
        click.echo(f"Run agents with: {_state(ctx).command_prefix()} agent {made['id']} --url {server}", err=True)
        click.echo(made["id"])
        return
    root = _root(ctx)
    sweep_id = create_sweep(root, config, project=project)
    from tracklet.sweeps.controller import LocalController

    controller = LocalController(root, sweep_id)
    spec = controller.spec
    size = f", {spec.grid_size()} grid points" if spec.method == "grid" else ""
    click.echo(f"Created sweep {sweep_id} in project {controller.project} ({spec.method}{size}) under {root}", err=True)
    warm = controller.info.get("warm_start")
    if warm is not None:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(warm["skipped"].items()))
        click.echo(f"Warm start: {warm['added']} finished run(s) of project {warm['project']} added as trials"
                   + (f"; skipped: {skipped}" if skipped else ""), err=True)
    click.echo(f"Run agents with: {_state(ctx).command_prefix()} agent {sweep_id}", err=True)
    click.echo(sweep_id)


@sweep_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--project", default=None, help="Only this project's sweeps.")
@click.option("--url", default=None, help="A tracking server: list its sweeps (those of the projects your key may "
                                          "read; the newest 50). Default: $TRACKLET_BASE_URL when "
                                          "$TRACKLET_MODE=online, else the local data root.")
@click.pass_context
@_handle_errors
def ls(ctx: click.Context, as_json: bool, project: str | None, url: str | None) -> None:
    """The sweeps under the data root (or on a server), newest first."""
    server = _server_url(url)
    if server is not None:
        from tracklet.sweeps.remote import list_remote_sweeps

        answer = list_remote_sweeps(server, project=project)
        rows = [{"id": s["id"], "project": s["project"], "state": s["state"], "method": s.get("method") or None,
                 "metrics": s.get("metrics") or [], "created": s.get("created"), "counts": s.get("counts") or {},
                 **({"error": s["error"]} if s.get("error") else {})} for s in answer["sweeps"]]
        more = answer["total"] - len(rows)
    else:
        from tracklet.sweeps.controller import list_sweeps
        from tracklet.sweeps.view import reader, summarise

        # each sweep's state as `sweep show` says it (a grid done or the run cap reached: finished;
        # state.json alone says only what pause/resume/stop set) and its counts, as the server's listing
        root = _root(ctx)
        infos = [s for s in list_sweeps(root) if project is None or s.get("project") == project]
        rows = []
        for info, listed in zip(infos, summarise(infos, lambda info: reader(root, info["id"]))):
            summary = listed.summary
            rows.append({"id": info["id"], "project": info["project"], "state": summary["state"],
                         "method": info["config"].get("method"), "metrics": _objectives(info["config"]),
                         "created": info.get("created"), "counts": summary.get("counts") or {},
                         **({"error": listed.error} if listed.error else {})})
        more = 0
    if as_json:
        click.echo(json.dumps([{**row, "created": _iso(row["created"])} for row in rows], indent=2))
        return
    if not rows:
        click.echo("No sweeps (create one with `tracklet sweep create config.yaml"
                   + (f" --url {server}`)" if server else "`)"))
        return
    for row in rows:
        goals = ", ".join(f"{m.get('goal', '')} {m.get('name', '')}" for m in row["metrics"])
        counts = ", ".join(f"{n} {state}" for state, n in sorted(row.get("counts", {}).items()))
        click.echo(f"{row['id']}  {row['state']:<8} {row['method'] or '':<7} {row['project']}  {goals}  "
                   f"{_iso(row['created']) or ''}" + (f"  ({counts})" if counts else "")
                   + (f"  ({row['error']})" if row.get("error") else ""))
    if more > 0:
        click.echo(f"... and {more} older sweep(s) (--project narrows the list)")


def _objectives(config: dict[str, Any]) -> list[dict[str, Any]]:
    """A sweep config's objectives as ``[{name, goal}]``: ``metric:``, else ``metrics:``."""
    if isinstance(config.get("metric"), dict):
        return [config["metric"]]
    return [m for m in config.get("metrics") or [] if isinstance(m, dict)]


@sweep_group.command("show")
@click.argument("sweep_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--url", default=None, help=_URL_HELP)
@click.pass_context
@_handle_errors
def show(ctx: click.Context, sweep_id: str, as_json: bool, url: str | None) -> None:
    """One sweep: its state, trial counts, the best trial, every trial."""
    status = _controller(ctx, sweep_id, url).status()
    if as_json:
        from tracklet.core.export import json_safe

        click.echo(json.dumps(json_safe(status), indent=2, allow_nan=False))
        return
    metric = status["metric"]
    counts = ", ".join(f"{n} {state}" for state, n in sorted(status["counts"].items())) or "no trials yet"
    click.echo(f"sweep {status['id']}  project {status['project']}  method {status['method']}  state {status['state']}")
    if metric:
        click.echo(f"metric: {metric['goal']} {metric['name']}")
    elif status["metrics"]:
        click.echo("metrics: " + ", ".join(f"{m['goal']} {m['name']}" for m in status["metrics"]))
    extra = f" of {status['grid_size']} grid points" if status["grid_size"] else ""
    cap = f", run cap {status['run_cap']}" if status["run_cap"] else ""
    click.echo(f"trials: {counts}{extra}{cap}")
    best = status["best"]
    if best is not None:
        click.echo(f"best: trial {best['trial']} ({best['run']}) {best['value']:g}  {_compact(best['config'])}")
    if status["pareto"] is not None:
        names = ", ".join(m["name"] for m in status["metrics"])
        click.echo(f"Pareto front ({len(status['pareto'])} trials; {names}):")
        for row in status["pareto"]:
            click.echo(f"  {row['trial']:>4}  {_values(row):>24}  {row['run'] or '':<24} {_compact(row['config'])}")
        click.echo("trials:")
    for row in status["trials"]:
        value = _values(row)
        note = f"  ({row['error']})" if row["error"] and row["state"] != "complete" else ""
        if row["state"] == "pruned" and row.get("last_step") is not None:
            note = f"  (pruned at step {row['last_step']})"
        if row.get("random_while_gp_imports"):  # the GP would have been asked: its modules were importing
            note += "  (random: GP importing)"
        click.echo(f"  {row['trial']:>4}  {row['state']:<8} {value:>12}  {row['run'] or '':<24} "
                   f"{_compact(row['config'])}{note}")


def _values(row: dict[str, Any]) -> str:
    """A trial's objective value(s): ``0.25``, or ``0.25, 3`` for several objectives."""
    if row["values"] is None:
        return ""
    return ", ".join("" if v is None else f"{v:g}" for v in row["values"])


def _compact(config: dict[str, Any]) -> str:
    return json.dumps(config, separators=(",", ":"), default=str)


def _controller(ctx: click.Context, sweep_id: str, url: str | None) -> Any:
    """The sweep's controller: the server's (``--url``) or the data root's."""
    server = _server_url(url)
    if server is not None:
        from tracklet.sweeps.remote import RemoteController

        return RemoteController(server, sweep_id, root=_root(ctx))
    from tracklet.sweeps.controller import LocalController

    return LocalController(_root(ctx), sweep_id)


def _set_state(ctx: click.Context, sweep_id: str, state: str, message: str, url: str | None) -> None:
    _controller(ctx, sweep_id, url).set_state(state)
    click.echo(message)


@sweep_group.command("stop")
@click.argument("sweep_id")
@click.option("--url", default=None, help=_URL_HELP)
@click.pass_context
@_handle_errors
def stop(ctx: click.Context, sweep_id: str, url: str | None) -> None:
    """Hand out no more trials; running trials finish, then agents exit."""
    _set_state(ctx, sweep_id, "stopped", f"Sweep {sweep_id} stopped: running trials finish, agents then exit", url)


@sweep_group.command("pause")
@click.argument("sweep_id")
@click.option("--url", default=None, help=_URL_HELP)
@click.pass_context
@_handle_errors
def pause(ctx: click.Context, sweep_id: str, url: str | None) -> None:
    """Hand out no new trials until `tracklet sweep resume`; agents wait."""
    _set_state(ctx, sweep_id, "paused", f"Sweep {sweep_id} paused: agents wait for `tracklet sweep resume`", url)


@sweep_group.command("resume")
@click.argument("sweep_id")
@click.option("--url", default=None, help=_URL_HELP)
@click.pass_context
@_handle_errors
def resume(ctx: click.Context, sweep_id: str, url: str | None) -> None:
    """Hand out trials again after pause or stop."""
    _set_state(ctx, sweep_id, "running", f"Sweep {sweep_id} running", url)


@sweep_group.command("extend")
@click.argument("sweep_id")
@click.option("--run-cap", type=click.IntRange(1), required=True, help="The new total number of trials.")
@click.option("--url", default=None, help=_URL_HELP)
@click.pass_context
@_handle_errors
def extend(ctx: click.Context, sweep_id: str, run_cap: int, url: str | None) -> None:
    """Set a new run cap (and run a stopped sweep again)."""
    _controller(ctx, sweep_id, url).extend(run_cap)
    click.echo(f"Sweep {sweep_id}: run cap {run_cap}")


@click.command("agent")
@click.argument("sweep_id")
@click.option("--count", type=click.IntRange(1), default=None, help="Run at most this many trials, then exit.")
@click.option("--gpus", default=None, help="Devices to spread trials over, e.g. 0-3 or 0,2: one worker per "
                                            "--gpus-per-trial devices, each with its own CUDA_VISIBLE_DEVICES.")
@click.option("--gpus-per-trial", type=click.IntRange(1), default=1, show_default=True)
@click.option("--lease-ttl", type=click.FloatRange(min=0.1), default=None,
              help="Seconds a trial's lease lasts without a heartbeat (default $TRACKLET_SWEEP_LEASE_TTL or 60). "
                   "A preempted job restarted within it resumes its trial.")
@click.option("--max-failures", type=click.IntRange(1), default=5, show_default=True,
              help="Stop after this many failed trials in a row.")
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Seconds between asks while the sweep has nothing to hand out yet.")
@click.option("--url", default=None, help=_URL_HELP + " Trials then record their runs online, to that server.")
@click.pass_context
@_handle_errors
def agent(ctx: click.Context, sweep_id: str, count: int | None, gpus: str | None, gpus_per_trial: int,
          lease_ttl: float | None, max_failures: int, poll_interval: float, url: str | None) -> None:
    """Run trials of a sweep: take a suggestion, run the sweep's command with it, report its metric.

    With $TRACKLET_SWEEP_TRIAL set (a preempted job restarted with its environment), the agent
    first resumes that trial if it is still running; inside a SLURM job, the trial the same job
    (its $SLURM_JOB_ID, kept across a requeue) was running.
    """
    from tracklet.sweeps.agent import Agent, parse_gpus, slurm_agent_name

    resume = os.environ.get("TRACKLET_SWEEP_TRIAL")
    resume_trial = int(resume) if resume and resume.isdigit() and os.environ.get("TRACKLET_SWEEP_ID") in (
        None, sweep_id.rsplit("/", 1)[-1]) else None
    controller = _controller(ctx, sweep_id, url)
    report = Agent(controller, count=count, ttl=lease_ttl, max_failures=max_failures, poll_interval=poll_interval,
                   gpus=parse_gpus(gpus) if gpus else None, gpus_per_trial=gpus_per_trial,
                   resume_trial=resume_trial, name=slurm_agent_name()).run_commands()
    done = sum(1 for r in report.results if r.state == "complete")
    click.echo(f"Agent done: {len(report.results)} trial(s) run, {done} complete"
               + (f"; {report.stopped_because}" if report.stopped_because else ""), err=True)
