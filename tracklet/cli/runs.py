"""``tracklet projects``, ``runs``, ``show`` and ``export``: list, inspect and export the runs in
the data root."""

from __future__ import annotations

import datetime as _dt
import math
import shlex
import sys
from pathlib import Path
from typing import Any, Iterable

import click

from tracklet.cli.common import CliError, _handle_errors, _iso, _state, unknown_project

_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_STATE_STYLES = {"finished": "green", "running": "cyan", "failed": "red", "crashed": "magenta"}


def _console() -> Any:
    import os

    from rich.console import Console

    width = None
    if "COLUMNS" not in os.environ and not sys.stdout.isatty():
        width = 200  # piped or captured: do not squeeze tables into 80 columns
    return Console(file=sys.stdout, highlight=False, width=width)


def _text(value: Any, style: str = "") -> Any:
    """User data as rich Text: never parsed as markup."""
    from rich.text import Text

    return Text(str(value), style=style)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return _dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def _short(value: Any, limit: int = 80) -> str:
    from tracklet.core.values import Histogram

    kind = type(value)
    if kind is float:
        text = f"{value:.6g}"
    elif kind is bool:
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, Histogram):
        text = repr(value)
    elif isinstance(value, (bytes, bytearray)):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_short(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_short(v, limit) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _echo_json(data: Any) -> None:
    from tracklet.core.jsonsafe import dumps

    click.echo(dumps(data, indent=2))


def _scalar_summary(summary: dict[str, Any], count: int) -> list[tuple[str, Any]]:
    """A few summary values worth a glance: scalars, keys that look like metrics first."""
    scalars = [
        (k, v) for k, v in summary.items() if not k.startswith("_") and type(v) in (int, float, bool, str)
    ]
    scalars.sort(key=lambda kv: 0 if any(w in kv[0].lower() for w in ("loss", "acc", "score", "metric")) else 1)
    return scalars[:count]


def _step_info(run: Any) -> tuple[int, int | None]:
    """(history rows, last step) without building any value column."""
    steps = run.history([])["_step"]
    return len(steps), (steps[-1] if steps else None)


def _run_overview(run: Any) -> dict[str, Any]:
    rows, last_step = _step_info(run)
    return {
        "path": run.path,
        "project": run.project,
        "id": run.id,
        "name": run.name,
        "state": run.state,
        "exit_code": run.exit_code,
        "created_at": run.created_at,
        "created": _iso(run.created_at),
        "runtime": run.runtime,
        "rows": rows,
        "last_step": last_step,
        "tags": run.tags,
        "group": run.group,
        "job_type": run.job_type,
        "summary": run.summary,
        "damage": run.damage,
    }


def _log_mtime(run: Any) -> float | None:
    from tracklet.core.recordlog import LOG_FILE_NAME

    try:
        return (Path(run.dir) / LOG_FILE_NAME).stat().st_mtime
    except OSError:
        return None


# ---------------------------------------------------------------- commands


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@_handle_errors
def projects(ctx: click.Context, as_json: bool) -> None:
    """List projects with their run counts."""
    api = _state(ctx).api
    found = []
    for project in api.projects():
        runs = api.runs(project)
        times = [t for t in map(_log_mtime, runs) if t is not None]
        found.append({"project": project, "runs": len(runs), "last_activity": max(times) if times else None})
    if as_json:
        _echo_json([{**p, "last_activity": _iso(p["last_activity"])} for p in found])
        return
    if not found:
        click.echo(f"No projects under {api.root}")
        return
    from rich.table import Table

    table = Table(title=f"Projects in {api.root}", title_justify="left")
    table.add_column("Project")
    table.add_column("Runs", justify="right")
    table.add_column("Last activity")
    for p in found:
        table.add_row(_text(p["project"]), str(p["runs"]), _when(p["last_activity"]))
    _console().print(table)


@click.command()
@click.argument("project", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per run) instead of a table.")
@click.option("--filter", "filter_text", default=None, help="A filter expression (see docs/store.md).")
@click.option("--sort", default=None, help="Sort keys, comma-separated; '-' for descending, e.g. -summary.acc,created.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many runs.")
@click.pass_context
@_handle_errors
def runs(ctx: click.Context, project: str | None, as_json: bool, filter_text: str | None,
         sort: str | None, limit: int | None) -> None:
    """List runs, newest first: those of PROJECT, or of every project.

    --filter and --sort (which need PROJECT) query the store, e.g.
    tracklet runs mnist --filter 'config.lr < 1e-3 and state = "finished"' --sort -summary.val/loss
    """
    api = _state(ctx).api
    if (filter_text or sort) and project is None:
        raise CliError("--filter and --sort need a PROJECT")
    if project is not None:
        if project not in api.projects():
            raise unknown_project(api, project)
        selected = api.runs(project, filter=filter_text, order_by=sort, limit=limit)
    else:
        selected = [run for name in api.projects() for run in api.runs(name)]
        selected.sort(key=lambda r: r.created_at or 0.0, reverse=True)
    overviews = [_run_overview(run) for run in selected]
    if as_json:
        _echo_json(overviews)
        return
    if not overviews:
        click.echo(f"No runs under {api.root}")
        return
    from rich.table import Table

    title = f"Runs in {project}" if project else f"Runs in {api.root}"
    table = Table(title=title, title_justify="left")
    if project is None:
        table.add_column("Project")
    for name, justify in (("ID", "left"), ("Name", "left"), ("State", "left"), ("Created", "left"),
                          ("Runtime", "right"), ("Steps", "right"), ("Summary", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for o in overviews:
        summary = "  ".join(f"{k}={_short(v, 24)}" for k, v in _scalar_summary(o["summary"], 3))
        state = o["state"] if o["exit_code"] in (None, 0) else f"{o['state']} ({o['exit_code']})"
        if o["damage"]:
            state += ", damaged"
        cells = [
            _text(o["id"]),
            _text(o["name"]),
            _text(state, _STATE_STYLES.get(o["state"], "")),
            _when(o["created_at"]),
            _duration(o["runtime"]),
            str(o["rows"]),
            _text(summary),
        ]
        if project is None:
            cells.insert(0, _text(o["project"]))
        table.add_row(*cells)
    _console().print(table)


@click.command()
@click.argument("run_path", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--lines", "-n", default=10, show_default=True, type=click.IntRange(0), help="Console lines to show.")
@click.pass_context
@_handle_errors
def show(ctx: click.Context, run_path: str, as_json: bool, lines: int) -> None:
    """Show one run: RUN is project/run_id or project/run_name, or a run id or name unique under the data root."""
    run = _state(ctx).api.run(run_path)
    overview = _run_overview(run)
    metadata = run.metadata
    console_lines = run.console[-lines:] if lines else []
    keys = run.keys()
    if as_json:
        data = {
            **overview,
            "notes": run.notes,
            "error": run.error,
            "traceback": run.traceback,
            "dir": run.dir,
            "damaged": run.damaged,
            "metadata": metadata,
            "config": run.config,
            "history": {"rows": overview["rows"], "last_step": overview["last_step"], "keys": keys},
            "metric_definitions": [vars(d) for d in run.metric_definitions],
            "alerts": [vars(a) for a in run.alerts],
            "console": [vars(line) for line in console_lines],
            "files": run.files(),
        }
        _echo_json(data)
        return

    from rich.table import Table

    out = _console()
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()

    def field(label: str, value: Any, style: str = "") -> None:
        if value not in (None, "", []):
            info.add_row(label, value if not isinstance(value, str) else _text(value, style))

    state_text = overview["state"]
    if run.exit_code is not None:
        state_text += f" (exit code {run.exit_code})"
    field("Run", run.path)
    field("Name", run.name)
    field("State", state_text, _STATE_STYLES.get(overview["state"], ""))
    field("Error", run.error, "red")
    field("Created", _when(run.created_at))
    field("Runtime", _duration(run.runtime))
    field("Tags", ", ".join(run.tags))
    field("Group", run.group)
    field("Job type", run.job_type)
    field("Notes", run.notes)
    field("Host", metadata.get("hostname") or metadata.get("host"))
    parts = metadata.get("parts") or {}  # a shared run's secondary writers (docs/shared-runs.md)
    if metadata.get("no_primary"):
        field("Primary", "not started: the run is its secondary writers' parts", "yellow")
    field("Writers", ", ".join(f"{label} ({part.get('state')}{', ' + str(part.get('host')) if part.get('host') else ''})"
                               for label, part in sorted(parts.items())))
    username = metadata.get("username")  # the OS user the run's process recorded (run.user): nothing checked it
    field("User", f"{username} (unverified)" if isinstance(username, str) and username else None)
    command = metadata.get("command")
    field("Command", shlex.join(command) if command else None)
    field("Working dir", metadata.get("cwd"))
    field("Python", metadata.get("python"))
    git = metadata.get("git")
    if git:
        described = git.get("commit") or "(no commit)"
        if git.get("branch"):
            described += f" on {git['branch']}"
        if git.get("dirty"):
            described += " (uncommitted changes: files/diff.patch)"
        field("Git", described)
        field("Git remote", git.get("remote"))
    code = metadata.get("code") or {}
    if code.get("files"):
        where = f"artifact {code['artifact']}" if code.get("artifact") else "files/code/"
        field("Code snapshot", f"{len(code['files'])} untracked file(s) in {where}")
    field("Reproduces", metadata.get("reproduces"))
    field("Directory", run.dir)
    if run.damage:
        field("Record log", f"{run.damage}; every other record was read", "red")
    out.print(info)

    if run.traceback:
        out.print()
        out.print(_text("Traceback", "bold red"))
        out.print(_text(run.traceback.rstrip()))

    for title, mapping in (("Config", dict(_flatten(run.config))), ("Summary", run.summary)):
        if mapping:
            table = Table(title=title, title_justify="left")
            table.add_column("Key")
            table.add_column("Value")
            for key, value in mapping.items():
                table.add_row(_text(key), _text(_short(value)))
            out.print()
            out.print(table)

    out.print()
    if overview["rows"]:
        steps = f"last step {overview['last_step']}"
        out.print(_text(f"History: {overview['rows']} rows ({steps}), {len(keys)} keys"), style="bold")
        if keys:
            out.print(_text("  " + ", ".join(keys)))
    else:
        out.print(_text("History: no rows"), style="bold")

    if run.alerts:
        out.print()
        out.print(_text(f"Alerts ({len(run.alerts)})", "bold"))
        for alert in run.alerts:
            out.print(_text(f"  {_when(alert.time)} [{alert.level}] {alert.title}: {alert.text}".rstrip(": ")))

    if console_lines:
        from rich.text import Text

        total = len(run.console)
        out.print()
        out.print(_text(f"Console (last {len(console_lines)} of {total} lines)", "bold"))
        for line in console_lines:
            text = Text("  ")
            text.append(Text.from_ansi(line.text, style="red" if line.stream == "stderr" else ""))
            out.print(text)


@click.command()
@click.argument("run_path", metavar="RUN")
@click.option("--format", "-f", "fmt", metavar="csv|jsonl|parquet",
              help="Output format. Default: from -o's suffix (.csv, .jsonl/.ndjson, .parquet), else csv.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (replaced atomically). Default: stdout (csv and jsonl only).")
@click.option("--keys", "-k", "key_lists", multiple=True, metavar="K1,K2",
              help="Only these keys, in this order (comma-separated; may be repeated).")
@click.pass_context
@_handle_errors
def export(ctx: click.Context, run_path: str, fmt: str | None, output: Path | None, key_lists: tuple[str, ...]) -> None:
    """Export a run's history (_step, _timestamp, _runtime and one column per key).

    CSV: empty cell = missing, floats at full precision, nan/inf/-inf, histograms as JSON text.
    JSON Lines: one object per row without its missing keys, NaN/infinities as the strings
    "NaN"/"Infinity"/"-Infinity". Parquet (needs pyarrow): typed columns, null = missing.
    """
    from tracklet.core.export import check_format, export_history

    to_stdout = output is None or str(output) == "-"
    if fmt is None:
        fmt = "csv" if to_stdout else _SUFFIX_FORMATS.get(output.suffix.lower(), "csv")  # type: ignore[union-attr]
    fmt = check_format(fmt)
    if fmt == "parquet" and to_stdout:
        raise CliError("parquet output is binary: write it to a file with -o FILE")
    keys = [k.strip() for text in key_lists for k in text.split(",") if k.strip()] or None
    run = _state(ctx).api.run(run_path)
    if to_stdout:
        export_history(run, fmt, sys.stdout, keys=keys)
        sys.stdout.flush()
        return
    rows = export_history(run, fmt, output, keys=keys)  # type: ignore[arg-type]
    click.echo(f"Wrote {rows} rows of {run.path} to {output} ({fmt})", err=True)
