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

``RUN`` is ``project/run_id`` or ``project/run_name``, or a run id or run name that is unique under
the data root (``tracklet sync`` takes the same, or a run directory).
``--dir PATH`` (before the command) picks the data root; the default is ``$TRACKLET_DIR`` or the
per-user data directory, as for ``tracklet.Api()``. Expected failures (no such run, an ambiguous
name, a bad format, pyarrow missing) print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import json
import math
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import click

from tracklet import __version__

ERROR_EXIT_CODE = 2
_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_STATE_STYLES = {"finished": "green", "running": "cyan", "failed": "red", "crashed": "magenta"}


class CliError(click.ClickException):
    """An expected failure: one line on stderr, exit status 2."""

    exit_code = ERROR_EXIT_CODE

    def show(self, file: Any = None) -> None:
        click.echo(f"tracklet: error: {self.format_message()}", err=True)


def _as_cli_error(error: Exception) -> CliError | None:
    """The one-line error for a failure a user can cause; None for anything else (a bug)."""
    from tracklet.core.api import RunNotFound
    from tracklet.core.export import MissingDependency

    if isinstance(error, (RunNotFound, MissingDependency, ValueError)):
        return CliError(str(error))
    if type(error).__name__ in ("IndexerBusy", "RunNotIndexed", "AuthError", "MissingDriver"):  # not imported here
        return CliError(str(error))
    if isinstance(error, KeyError):
        return CliError(str(error.args[0]) if error.args else repr(error))
    if isinstance(error, OSError) and error.errno != errno.EPIPE:  # click exits quietly on a closed pipe
        where = f": {error.filename}" if error.filename else ""
        return CliError(f"{error.strerror or error}{where}")
    return None


def _handle_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into :class:`CliError` (one line, exit 2, no traceback)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as error:
            translated = _as_cli_error(error)
            if translated is None:
                raise
            raise translated from None

    return wrapper


class _State:
    """What the group's options decide, shared with every command."""

    def __init__(self, root: Path | None) -> None:
        self.root_option = root
        self._api: Any = None

    @property
    def api(self) -> Any:
        if self._api is None:
            from tracklet.core.api import Api

            self._api = Api(self.root_option)
        return self._api

    def command_prefix(self) -> str:
        """How to call tracklet again with the same data root (for hints we print)."""
        if self.root_option is None:
            return "tracklet"
        return f"tracklet --dir {shlex.quote(str(self.root_option))}"


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


def _state(ctx: click.Context) -> _State:
    state = ctx.find_object(_State)
    return state if state is not None else _State(None)


# ---------------------------------------------------------------- formatting helpers


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


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).isoformat()


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
    from tracklet.core.export import json_safe

    click.echo(json.dumps(json_safe(data), indent=2, ensure_ascii=False, allow_nan=False))


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


@main.command()
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


@main.command()
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
        known = api.projects()
        if project not in known:
            listing = ", ".join(known) if known else "none"
            raise CliError(f"no project {project!r} under {api.root} (projects: {listing})")
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


@main.command()
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


@main.command()
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


# ---------------------------------------------------------------- store


@main.command()
@click.option("--wait", type=click.FloatRange(0), default=60.0, show_default=True,
              help="Seconds to wait while another process (tracklet ui, another index) is indexing.")
@click.pass_context
@_handle_errors
def index(ctx: click.Context, wait: float) -> None:
    """Ingest new records from every run's record log into the store now.

    A run that cannot be indexed is named with the reason on stderr and the others are indexed;
    the exit status is then 2. If another process keeps indexing for --wait seconds, nothing is
    done (that process is bringing the store up to date) and the exit status is 0.
    """
    import time

    from tracklet.store import Store

    api = _state(ctx).api
    started = time.perf_counter()

    def waiting() -> None:
        click.echo(f"Another process is indexing {api.root}; waiting up to {wait:g}s for it...", err=True)

    with Store(root=api.root) as store:
        report = store.index(wait=wait, on_wait=waiting)
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


@main.command()
@click.pass_context
@_handle_errors
def gc(ctx: click.Context) -> None:
    """Remove from the store the runs whose directories were deleted."""
    from tracklet.store import Store

    with Store(root=_state(ctx).api.root) as store:
        removed = store.gc()
    click.echo(f"Removed {removed} deleted run(s) from the store")


# ---------------------------------------------------------------- run


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--project", "-p", default=None, help="Project to record the run in (default: $TRACKLET_PROJECT or 'default').")
@click.option("--name", "-n", default=None, help="Run name (default: a generated one).")
@click.option("--job-type", default=None, help="Job type, e.g. train or eval.")
@click.option("--wandb", "wandb", is_flag=True, default=False,
              help="Run a script written for W&B: `import wandb` resolves to tracklet.compat.wandb "
                   "(also in its subprocesses); the run starts at its wandb.init(). See docs/wandb-compat.md.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_context
def run(ctx: click.Context, project: str | None, name: str | None, job_type: str | None, wandb: bool,
        command: tuple[str, ...]) -> None:
    """Run COMMAND (e.g. python train.py ARGS) with tracking on, without changing the script.

    Lightning, Hugging Face, Keras and JAX are recorded automatically (tracklet.autolog); the
    run records the command line, console, environment and system metrics. Exits with the
    command's exit code. Put -- before the command: tracklet run -- python train.py --lr 3e-4
    """
    import os

    from tracklet.cli.launch import run_command

    state = _state(ctx)
    if state.root_option is not None:
        os.environ["TRACKLET_DIR"] = str(state.root_option)
    try:
        code = run_command(command, project=project, name=name, job_type=job_type, wandb=wandb)
    except ValueError as error:
        raise CliError(str(error)) from None
    ctx.exit(code)


# ---------------------------------------------------------------- demo


@main.command()
@click.option("--project", default="demo", show_default=True, help="Project to record the run in.")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1, 1_000_000), help="Training steps.")
@click.option("--name", default=None, help="Run name (default: a generated one).")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed for the fake training.")
@click.option("--ui", "open_ui", is_flag=True, help="Then serve the dashboard (`tracklet ui`) and open it in a browser.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="With --ui: the dashboard's loopback port (0: any free port).")
@click.option("--no-open", "no_open", is_flag=True, help="With --ui: don't open a browser; just print the URL.")
@click.pass_context
@_handle_errors
def demo(ctx: click.Context, project: str, steps: int, name: str | None, seed: int, open_ui: bool, port: int,
         no_open: bool) -> None:
    """Record a realistic demo training run, then say how to inspect it (with --ui: open the dashboard)."""
    from tracklet.cli.demo import record_demo

    if open_ui:
        _require_server_extra("tracklet demo --ui")
    state = _state(ctx)
    run = record_demo(state.api.root, project=project, steps=steps, name=name, seed=seed)
    prefix = state.command_prefix()
    click.echo(f"Recorded demo run {run.path} ({run.name!r}): {steps} steps")
    click.echo(f"Stored in {run.dir}")
    click.echo("Inspect it with:")
    click.echo(f"  {prefix} ui                 # the dashboard, in a browser")
    click.echo(f"  {prefix} show {run.path}")
    click.echo(f"  {prefix} export {run.path} --format csv -o {shlex.quote(run.id + '.csv')}")
    click.echo(f"  {prefix} runs {shlex.quote(project)}")
    if open_ui:
        ctx.invoke(ui, port=port, no_open=no_open, ui_dir=None, no_token=False)


# ---------------------------------------------------------------- server and sync

def _files_options(pairs: tuple[str, ...]) -> dict[str, object]:
    """``--files-option KEY=VALUE`` pairs as fsspec options; a VALUE that parses as JSON
    (true, 3, {"a": 1}) is that value, anything else the string."""
    import json

    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--files-option {pair!r}: use KEY=VALUE, e.g. endpoint_url=http://127.0.0.1:9000")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _server_root(ctx: click.Context, server_dir: Path | None) -> Path:
    return server_dir if server_dir is not None else Path(_state(ctx).api.root) / "server"


_SERVER_DIR_HELP = ("The server's data root (its copies of uploaded runs, and its SQLite store). "
                    "Default: 'server' inside the data root, apart from the runs recorded on this machine.")
_SERVER_STORE_HELP = "The server's store: sqlite:///PATH or postgresql://... (default: SQLite in the server's data root)."


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond loopback only with API keys (not --dev). Serve it behind HTTPS.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--dir", "server_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=_SERVER_DIR_HELP)
@click.option("--store", "store_url", default=None, metavar="URL", help=_SERVER_STORE_HELP)
@click.option("--files", "files_url", default=None, metavar="DIR|URL",
              help="Where run files go: a directory or an fsspec URL such as s3://bucket/prefix "
              "(default: 'files' in the server's data root). S3: docs/server.md#files.")
@click.option("--logs", "logs_url", default=None, metavar="DIR|URL",
              help="Keep record log copies as segments at this fsspec URL (e.g. s3://bucket/logs), indexed in a "
              "PostgreSQL --store, so several server processes can serve one deployment (docs/deployment.md). "
              "Default: files in the server's data root (one process).")
@click.option("--files-option", "files_options", multiple=True, metavar="KEY=VALUE",
              help="An fsspec option for --files and --logs, e.g. endpoint_url=http://127.0.0.1:9000 (repeatable; "
              "true, false, numbers and JSON are parsed).")
@click.option("--max-body-mb", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Largest request body accepted, in MiB (before and after decompression).")
@click.option("--heartbeat-lapse", default=120.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds a run's uploads may pause before it shows as crashed (no exit record).")
@click.option("--sweep-interval", default=30.0, show_default=True, type=click.FloatRange(0.05),
              help="Seconds between passes that index everything and mark quiet runs crashed.")
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds a client has to send a complete request head (headers); then 408 and closed.")
@click.option("--idle-timeout", default=60.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds an upload's body, or a response the client doesn't read, may stall before the "
              "connection is closed.")
@click.option("--keep-alive", default=5, show_default=True, type=click.IntRange(1),
              help="Seconds an idle kept-alive connection stays open.")
@click.option("--max-connections", default=1000, show_default=True, type=click.IntRange(1),
              help="Open connections at once (lowered to fit the open-file limit); past it, the oldest connection "
              "without a request in progress is closed, or the newcomer gets 503.")
@click.option("--dev", is_flag=True, help="Development mode: no API keys, anyone may do anything; loopback only.")
@click.pass_context
@_handle_errors
def server(ctx: click.Context, host: str, port: int, server_dir: Path | None, store_url: str | None, max_body_mb: int,
           files_url: str | None, files_options: tuple[str, ...], logs_url: str | None,
           heartbeat_lapse: float, sweep_interval: float, header_timeout: float, idle_timeout: float,
           keep_alive: int, max_connections: int, dev: bool) -> None:
    """Run the tracking server: clients upload runs (online mode, `tracklet sync`); a JSON read API serves them.

    Every request needs an API key (create the first admin with `tracklet admin create-user NAME
    --admin`); --dev needs none and listens on loopback only. The server keeps its copies of
    uploaded record logs and its store in its own data root (--dir).
    """
    if dev and not _is_loopback(host):
        raise CliError(
            f"refusing to listen on {host} with --dev: a server without API keys listens on a loopback "
            "address only (127.0.0.1, ::1, localhost); drop --dev to require keys"
        )
    try:
        import uvicorn

        from tracklet.server.app import create_app
        from tracklet.server.connections import ConnectionLimits, fit_descriptor_limit, uvicorn_options
    except ImportError as error:
        raise CliError(f"the server needs FastAPI and uvicorn: pip install 'tracklet[server]' ({error})") from None
    max_connections, lowered = fit_descriptor_limit(max_connections)
    if lowered:
        click.echo(f"tracklet server: {lowered}", err=True)
    limits = ConnectionLimits(header_timeout=header_timeout, idle_timeout=idle_timeout, keep_alive=keep_alive,
                              max_connections=max_connections)
    root = _server_root(ctx, server_dir)
    app = create_app(root, store_url=store_url, max_body_bytes=max_body_mb << 20,
                     files_url=files_url, files_options=_files_options(files_options), logs_url=logs_url,
                     heartbeat_lapse=heartbeat_lapse, sweep_interval=sweep_interval, auth=not dev)
    if dev:  # no keys: only this machine's own pages and programs, never a page by DNS rebinding
        from tracklet.server.localaccess import LoopbackHostCheck

        app.add_middleware(LoopbackHostCheck, port=port or None, bound=host)
    mode = "--dev: no API keys" if dev else "API keys required"
    click.echo(f"tracklet server on http://{host}:{port} ({mode}; data root {root})", err=True)
    if not dev and not app.state.tracklet.authorizer.accounts.users():
        click.echo(f"No users yet: create the first admin with `{first_admin_command(root, store_url)}`",
                   err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", **uvicorn_options(limits))


def first_admin_command(server_dir: Path | None, store_url: str | None) -> str:
    """The `tracklet admin` command line that creates a server's first admin (its --dir and --store
    are options of the `admin` group, so they come before the subcommand)."""
    words = ["tracklet", "admin"]
    if server_dir:
        words += ["--dir", str(server_dir)]
    if store_url:
        words += ["--store", _hide_password(store_url)]
    return shlex.join(words + ["create-user", "NAME", "--admin"])


def _hide_password(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: print nothing secret
        return "URL"


# ---------------------------------------------------------------- the local dashboard

def _require_server_extra(what: str) -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise CliError(f"{what} needs FastAPI and uvicorn: pip install 'tracklet[server]' ({error})") from None


@main.command()
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Loopback port to serve on (0: any free port).")
@click.option("--no-open", "no_open", is_flag=True, help="Don't open a browser; just print the URL.")
@click.option("--dir", "ui_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data root to show (default: the one `tracklet --dir` or $TRACKLET_DIR picks).")
@click.option("--no-token", "no_token", is_flag=True,
              help="Don't ask for the token: any user or process on this machine can then read every run.")
@click.pass_context
@_handle_errors
def ui(ctx: click.Context, port: int, no_open: bool, ui_dir: Path | None, no_token: bool) -> None:
    """Open the dashboard over the runs recorded on this machine (loopback, read-only).

    The URL it prints and opens carries a token made at each start (fixed by $TRACKLET_UI_TOKEN);
    requests without it are refused, so other users of this machine can't read your runs.
    Runs show up and update live while they are logged. Stop it with Ctrl-C.
    """
    from tracklet.cli.ui import serve, ui_token

    _require_server_extra("tracklet ui")
    root = ui_dir if ui_dir is not None else Path(_state(ctx).api.root)
    if no_token:
        click.echo("tracklet ui: --no-token: any user or process on this machine can read every run "
                   "in the data root", err=True)
    serve(root, port=port, open_browser=not no_open, announce=lambda line: click.echo(line),
          token=ui_token(not no_token))


# ---------------------------------------------------------------- accounts (on the server's machine)

@main.group()
@click.option("--dir", "server_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=_SERVER_DIR_HELP)
@click.option("--store", "store_url", default=None, metavar="URL", help=_SERVER_STORE_HELP)
@click.pass_context
def admin(ctx: click.Context, server_dir: Path | None, store_url: str | None) -> None:
    """Manage a tracking server's users, API keys and project members, in its store directly.

    Run it where the server runs, with the server's --dir and --store. Remotely, server admins use
    the HTTP API (/api/v1/users, /api/v1/keys, /api/v1/projects/{project}/members).
    """
    ctx.obj = (_server_root(ctx, server_dir), store_url)


def _accounts(ctx: click.Context) -> Any:
    from tracklet.server.auth import Accounts
    from tracklet.store import Store

    root, store_url = ctx.obj
    store = Store(store_url or f"sqlite:///{Path(root) / 'store.sqlite'}", root=root)
    ctx.call_on_close(store.close)
    return Accounts(store.engine)


def _show_new_key(new: Any) -> None:
    click.echo(f"API key for {new.user} (id {new.key_id}); it is shown only now:", err=True)
    click.echo(new.key)


@admin.command("create-user")
@click.argument("name")
@click.option("--admin", "is_admin", is_flag=True, help="A server admin: every role on every project.")
@click.pass_context
@_handle_errors
def admin_create_user(ctx: click.Context, name: str, is_admin: bool) -> None:
    """Create a user and print their first API key (once)."""
    _show_new_key(_accounts(ctx).create_user(name, admin=is_admin))


@admin.command("users")
@click.pass_context
@_handle_errors
def admin_users(ctx: click.Context) -> None:
    """List users."""
    for user in _accounts(ctx).users():
        flags = [flag for flag, on in (("admin", user["is_admin"]), ("disabled", user["disabled"])) if on]
        click.echo(f"{user['name']}\t{','.join(flags)}\tcreated {_iso(user['created_at'])}")


@admin.command("disable-user")
@click.argument("name")
@click.pass_context
@_handle_errors
def admin_disable_user(ctx: click.Context, name: str) -> None:
    """Disable a user and revoke all their keys."""
    _accounts(ctx).disable_user(name)
    click.echo(f"Disabled {name} and revoked their keys")


@admin.command("create-key")
@click.argument("user")
@click.option("--label", default="", help="What the key is for, e.g. 'laptop' or 'ci'.")
@click.pass_context
@_handle_errors
def admin_create_key(ctx: click.Context, user: str, label: str) -> None:
    """Make another API key for a user and print it (once)."""
    _show_new_key(_accounts(ctx).create_key(user, label=label))


@admin.command("keys")
@click.argument("user", required=False)
@click.pass_context
@_handle_errors
def admin_keys(ctx: click.Context, user: str | None) -> None:
    """List API keys (ids and labels, never secrets), of one user or all."""
    for key in _accounts(ctx).keys(user):
        state = f"revoked {_iso(key['revoked_at'])}" if key["revoked_at"] else "active"
        click.echo(f"{key['key_id']}\t{key['user']}\t{key['label']}\t{state}\tlast used {_iso(key['last_used_at'])}")


@admin.command("revoke-key")
@click.argument("key_id")
@click.pass_context
@_handle_errors
def admin_revoke_key(ctx: click.Context, key_id: str) -> None:
    """Revoke an API key by its id: requests with it get 401 from now on."""
    _accounts(ctx).revoke_key(key_id)
    click.echo(f"Revoked {key_id}")


@admin.command("add-member")
@click.argument("project")
@click.argument("user")
@click.argument("role", type=click.Choice(["read", "write", "admin"]))
@click.pass_context
@_handle_errors
def admin_add_member(ctx: click.Context, project: str, user: str, role: str) -> None:
    """Give USER ROLE in PROJECT (creating the project if needed)."""
    _accounts(ctx).set_member(project, user, role)
    click.echo(f"{user} has {role} access to {project}")


@admin.command("remove-member")
@click.argument("project")
@click.argument("user")
@click.pass_context
@_handle_errors
def admin_remove_member(ctx: click.Context, project: str, user: str) -> None:
    """Take USER's access to PROJECT away (server admins keep theirs)."""
    _accounts(ctx).remove_member(project, user)
    click.echo(f"{user} is no longer a member of {project}")


@main.command()
@click.option("--url", default=None, envvar="TRACKLET_BASE_URL", metavar="URL",
              help="The server, e.g. https://tracklet.example.com (default: $TRACKLET_BASE_URL).")
@click.option("--key", default=None, metavar="KEY", help="The API key (default: asked for, without echo).")
@_handle_errors
def login(url: str | None, key: str | None) -> None:
    """Check an API key against a tracking server and save it for that server.

    Online runs, `tracklet sync` and `tracklet.Api(base_url=...)` then use it when
    TRACKLET_API_KEY is not set. The key is saved readable by you only.
    """
    try:
        import httpx
    except ImportError as error:
        raise CliError(f"tracklet login needs httpx: pip install 'tracklet[server]' ({error})") from None
    from tracklet.core.credentials import save_key

    if not url:
        raise CliError("no server URL: pass --url or set TRACKLET_BASE_URL")
    if key is None:
        key = click.prompt("API key", hide_input=True)
    key = key.strip()
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    except httpx.HTTPError as error:
        raise CliError(f"cannot reach {url}: {error}") from None
    if response.status_code != 200:
        from tracklet.core.remote import response_detail

        raise CliError(f"{url} refused the key (HTTP {response.status_code}): {response_detail(response)}")
    me = response.json()
    path = save_key(url, key)
    role = ", server admin" if me.get("is_admin") else ""
    click.echo(f"Logged in to {url} as {me.get('user')}{role}; key saved in {path}")


@main.command()
@click.argument("run_paths", metavar="[RUN ...]", nargs=-1)
@click.option("--all", "sync_all", is_flag=True, help="Upload every run in the data root.")
@click.option("--url", default=None, envvar="TRACKLET_BASE_URL", metavar="URL",
              help="The server, e.g. http://127.0.0.1:8080 (default: $TRACKLET_BASE_URL).")
@click.option("--chunk-mb", default=4.0, show_default=True, type=click.FloatRange(0.001, 64),
              help="Largest upload request, in MiB of record log (whole frames).")
@click.option("--backoff-cap", default=30.0, show_default=True, type=click.FloatRange(0.01),
              help="Longest wait between retries, in seconds.")
@click.option("--give-up-after", default=300.0, show_default=True, type=click.FloatRange(0),
              help="Stop retrying a request after this many seconds.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@_handle_errors
def sync(ctx: click.Context, run_paths: tuple[str, ...], sync_all: bool, url: str | None, chunk_mb: float,
         backoff_cap: float, give_up_after: float, quiet: bool) -> None:
    """Upload runs (project/run_id or run directories, or --all) to a tracking server.

    Sends only what the server doesn't have yet, so it is safe to repeat; finished, crashed and
    still-running runs upload their complete records.
    """
    try:
        from tracklet.server.client import SyncClient, SyncError, local_damage, local_runs, resolve_run
    except ImportError as error:
        raise CliError(f"tracklet sync needs httpx: pip install 'tracklet[server]' ({error})") from None

    root = _state(ctx).api.root
    if sync_all == bool(run_paths):
        raise CliError("name the runs to upload (project/run_id or a run directory), or pass --all")
    if not url:
        raise CliError("no server URL: pass --url or set TRACKLET_BASE_URL")
    targets = local_runs(root) if sync_all else [resolve_run(root, spec) for spec in run_paths]
    if not targets:
        click.echo(f"No runs in {root}")
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    failures: list[str] = []
    damaged: list[str] = []
    total_sent = 0
    with SyncClient(url, chunk_bytes=max(1, int(chunk_mb * (1 << 20))), backoff_cap=backoff_cap,
                    give_up_after=give_up_after) as client, \
            Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                     console=Console(stderr=True), disable=quiet, transient=False) as bar:
        for paths in targets:
            task = bar.add_task(f"{paths.project}/{paths.run_id}", total=None)

            def report(offset: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=offset, total=total)

            try:
                result = client.sync_run(paths, progress=report)
            except SyncError as error:
                failures.append(f"{paths.project}/{paths.run_id}: {error}")
                continue
            total_sent += result.sent_bytes
            damage = local_damage(paths, result.offset)
            if damage is not None and damage.torn_tail:
                click.echo(f"tracklet: note: {damage.describe()}", err=True)
            elif damage is not None:
                damaged.append(damage.describe())
    whole = len(targets) - len(failures) - len(damaged)
    click.echo(f"Synced {whole} of {len(targets)} run(s) to {url}: {total_sent:,} new bytes"
               + (f"; {len(damaged)} damaged run(s) only partly uploaded" if damaged else ""))
    for line in damaged:
        click.echo(f"tracklet: damaged: {line}", err=True)
    if failures or damaged:
        raise CliError("; ".join(failures) if failures else f"{len(damaged)} run(s) are damaged locally and were "
                       "not uploaded whole (see above)")


from tracklet.cli.importing import import_group  # noqa: E402  (it reaches back into this module only when run)

main.add_command(import_group)


if __name__ == "__main__":
    main(prog_name="tracklet")
