"""``tracklet server``, ``ui``, ``admin``, ``login`` and ``sync``: the tracking server, the local
dashboard, accounts on the server's machine, and uploading runs to a server."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from tracklet.cli.common import CliError, _handle_errors, _iso, _require_server_extra, _state
from tracklet.errors import TrackletError


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


@click.command()
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
@click.option("--artifacts", "artifacts_url", default=None, metavar="DIR|URL",
              help="Where artifact blobs go: a directory or an fsspec URL such as s3://bucket/artifacts "
              "(default: 'artifacts' in the server's data root, which keeps the versions). docs/artifacts.md.")
@click.option("--files-option", "files_options", multiple=True, metavar="KEY=VALUE",
              help="An fsspec option for --files, --logs and --artifacts, e.g. endpoint_url=http://127.0.0.1:9000 (repeatable; "
              "true, false, numbers and JSON are parsed).")
@click.option("--max-body-mb", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Largest request body accepted, in MiB (before and after decompression).")
@click.option("--max-pack-buffers-mb", default=512, show_default=True, type=click.IntRange(1),
              help="MiB of memory lent to artifact pack uploads at once (up to 17 MiB each); past it a pack "
              "gets 503 with Retry-After and the client sends it again.")
@click.option("--max-parts-per-run", default=2048, show_default=True, type=click.IntRange(1),
              help="Parts (secondary writers' logs) one shared run may have; the upload that would start one more "
              "gets 400 naming this limit (docs/shared-runs.md).")
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
@click.option("--http", "http_parser", type=click.Choice(["auto", "httptools", "h11"]), default="auto", show_default=True,
              help="The HTTP/1.1 implementation: httptools (a C parser; auto picks it where installed) or h11 "
              "(pure Python). The connection limits above apply to both.")
@click.option("--webhook-timeout", default=10.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds an automation's webhook may take to answer before the attempt counts as failed.")
@click.option("--webhook-retry-base", default=2.0, show_default=True, type=click.FloatRange(0.01),
              help="Seconds before an automation's first retry; doubled after each failed attempt (docs/audit.md).")
@click.option("--webhook-delivery", type=click.Choice(["process", "thread"]), default="process", show_default=True,
              help="Send automations' webhooks from a process of their own (no request waits for one) or from a "
              "thread of the server's process (one process fewer; deliveries then cost requests' latency).")
@click.option("--dev", is_flag=True, help="Development mode: no API keys, anyone may do anything; loopback only.")
@click.pass_context
@_handle_errors
def server(ctx: click.Context, host: str, port: int, server_dir: Path | None, store_url: str | None, max_body_mb: int,
           max_pack_buffers_mb: int, max_parts_per_run: int,
           files_url: str | None, files_options: tuple[str, ...], logs_url: str | None, artifacts_url: str | None,
           heartbeat_lapse: float, sweep_interval: float, header_timeout: float, idle_timeout: float,
           keep_alive: int, max_connections: int, http_parser: str, webhook_timeout: float,
           webhook_retry_base: float, webhook_delivery: str, dev: bool) -> None:
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
        from tracklet.server.automations_worker import DeliveryPolicy
        from tracklet.server.connections import ConnectionLimits, fit_descriptor_limit, uvicorn_options
    except ImportError as error:
        raise CliError(f"the server needs FastAPI and uvicorn: pip install 'tracklet[server]' ({error})") from None
    max_connections, lowered = fit_descriptor_limit(max_connections)
    if lowered:
        click.echo(f"tracklet server: {lowered}", err=True)
    limits = ConnectionLimits(header_timeout=header_timeout, idle_timeout=idle_timeout, keep_alive=keep_alive,
                              max_connections=max_connections)
    root = _server_root(ctx, server_dir)
    from tracklet.cli.ui import bind_loopback

    # Bound first, before the app opens the store (indexing, audit recovery: it may take long):
    # a taken port is one clear error at once, never after that work, and never announced.
    try:
        sock = bind_loopback(host, port, other="another `tracklet server` or `tracklet ui`",
                             backlog=2048)
    except ValueError as error:
        raise CliError(str(error)) from None
    except OSError as error:  # an address this machine doesn't have, a privileged port
        raise CliError(f"can't listen on {host}:{port}: {error.strerror or error}") from None
    try:
        app = create_app(root, store_url=store_url, max_body_bytes=max_body_mb << 20,
                         files_url=files_url, files_options=_files_options(files_options), logs_url=logs_url,
                         artifacts_url=artifacts_url, heartbeat_lapse=heartbeat_lapse, sweep_interval=sweep_interval,
                         auth=not dev, delivery=DeliveryPolicy(timeout=webhook_timeout, retry_base=webhook_retry_base),
                         delivery_process=webhook_delivery == "process", freeze_heap=True,
                         max_pack_buffer_bytes=max_pack_buffers_mb << 20, max_parts_per_run=max_parts_per_run)
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]  # --port 0: the free port chosen
    if dev:  # no keys: only this machine's own pages and programs, never a page by DNS rebinding
        from tracklet.server.localaccess import LoopbackHostCheck

        app.add_middleware(LoopbackHostCheck, port=port, bound=host)
    mode = "--dev: no API keys" if dev else "API keys required"
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address is bracketed in a URL
    click.echo(f"tracklet server on http://{shown}:{port} ({mode}; data root {root})", err=True)
    if not dev and not app.state.tracklet.authorizer.accounts.users():
        click.echo(f"No users yet: create the first admin with `{first_admin_command(root, store_url)}`",
                   err=True)
    try:
        options = uvicorn_options(limits, http_parser)
    except ValueError as error:  # --http httptools without httptools installed
        raise CliError(str(error)) from None
    uvicorn.Server(uvicorn.Config(app, log_level="warning", **options)).run(sockets=[sock])


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

@click.command()
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

@click.group()
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


def _server_store(ctx: click.Context) -> Any:
    """The server's store (closed with the command), its SQLite writes queued at the server's write
    gate (server/write_gate.py): a live server's writers are not made to meet SQLite's lock and
    sleep in its busy handler while an admin command writes, nor the other way round."""
    from tracklet.server import write_gate
    from tracklet.store import Store

    root, store_url = ctx.obj
    store = Store(store_url or f"sqlite:///{Path(root) / 'store.sqlite'}", root=root)
    ctx.call_on_close(store.close)
    write_gate.install(store.engine)
    return store


def _accounts(ctx: click.Context) -> Any:
    from tracklet.server.auth import Accounts

    return Accounts(_server_store(ctx))


def _show_new_key(new: Any) -> None:
    click.echo(f"API key for {new.user} (id {new.key_id}); it is shown only now:", err=True)
    click.echo(new.key)


@admin.command("artifact-gc")
@click.option("--artifacts", "artifacts_url", default=None, metavar="DIR|URL",
              help="Where the server keeps artifact blobs (its --artifacts; default: 'artifacts' in its data root).")
@click.option("--files-option", "files_options", multiple=True, metavar="KEY=VALUE",
              help="An fsspec option for --artifacts and --logs, as for `tracklet server` (repeatable).")
@click.option("--logs", "logs_url", default=None, metavar="DIR|URL",
              help="Where the server keeps record logs as segments (its --logs): the runs' media, tables and spans "
                   "named there, every writer's of a shared run, are live too. Needed for such a server's store.")
@click.option("--grace", default="1d", show_default=True,
              help="Keep what was sent or used more recently than this (an upload may be in flight): 0, 30m, 12h, 1d.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--repack", type=click.FloatRange(0, 1), default=None, metavar="SHARE",
              help="Also rewrite each pack whose unreferenced bytes are at least SHARE of it (e.g. 0.3) with only "
                   "its live chunks; the old packs go with the next collection.")
@click.pass_context
@_handle_errors
def admin_artifact_gc(ctx: click.Context, artifacts_url: str | None, files_options: tuple[str, ...],
                      logs_url: str | None, grace: str, dry_run: bool, repack: float | None) -> None:
    """Remove artifact blobs, packs and upload sessions that uploads left without committing a
    version (older than --grace); never what a committed version references. Reports the bytes
    that packs kept for their live chunks hold for nothing (what --repack reclaims)."""
    from tracklet.artifacts.sizes import parse_duration
    from tracklet.server.artifact_blobs import ServerArtifacts
    from tracklet.server.artifact_gc import collect

    try:
        grace_seconds = parse_duration(grace)
    except ValueError as error:
        raise CliError(f"--grace: {error}") from None
    root, _ = ctx.obj
    store = _server_store(ctx)
    try:
        artifacts = ServerArtifacts.connect(Path(root), artifacts_url, _files_options(files_options), store.engine)
    except ValueError as error:
        raise CliError(str(error)) from None
    run_logs = _segment_logs(store, root, logs_url, files_options)
    verb = "would remove" if dry_run else "removed"
    report = collect(artifacts, grace=grace_seconds, dry_run=dry_run, repack=None if dry_run else repack,
                     runs_root=Path(root),  # runs' media, tables and spans are live too
                     run_logs=run_logs,  # (read from the segments of a --logs server)
                     on_removed=lambda path: click.echo(f"{verb} {path}"))  # as they go: memory stays bounded
    for problem in report.problems:
        click.echo(f"warning: {problem}", err=True)
    click.echo(("dry run: " if dry_run else "") + report.summary())


def _segment_logs(store: Any, root: str, logs_url: str | None, files_options: tuple[str, ...]) -> Any:
    """The server's log copies in shared storage (``--logs``) for a command that reads every run's
    logs, or None (its data root's files). A store whose server keeps its logs as segments
    (``log_heads`` has rows) needs ``--logs``: its runs' logs are not under the data root, and what
    they name would be taken for unreferenced."""
    import sqlalchemy as sa

    from tracklet.server.schema import log_heads

    if logs_url is None:
        try:
            with store.engine.connect() as connection:
                segmented = connection.execute(sa.select(log_heads.c.run_id).limit(1)).first() is not None
        except sa.exc.DBAPIError:  # no server tables yet: nothing was uploaded
            segmented = False
        if segmented:
            raise CliError("this store's server keeps record logs as segments (tracklet server --logs): pass its "
                           "--logs (and --files-option) so the runs' logs are read; without them what the runs name "
                           "would be collected")
        return None
    from tracklet.server.files import RunFiles
    from tracklet.server.indexing import HEARTBEAT_LAPSE
    from tracklet.server.segments import SegmentCopies

    try:
        location = RunFiles.connect(logs_url, _files_options(files_options))
        return SegmentCopies(store.engine, location.fs, location.base, Path(root), heartbeat_lapse=HEARTBEAT_LAPSE)
    except ValueError as error:
        raise CliError(str(error)) from None


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


# ---------------------------------------------------------------- a remote server: login and sync

@click.command()
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
        from tracklet.client.http import HttpClient, RetryPolicy
    except ImportError as error:
        raise CliError(f"tracklet login needs httpx: pip install 'tracklet[server]' ({error})") from None
    from tracklet.core.credentials import save_key

    if not url:
        raise CliError("no server URL: pass --url or set TRACKLET_BASE_URL")
    if key is None:
        key = click.prompt("API key", hide_input=True)
    key = key.strip()
    if not key:
        raise CliError("the API key is empty")
    with HttpClient(url, api_key=key, timeout=30, retry=RetryPolicy(base=0.25, cap=2.0, give_up_after=10.0,
                                                                   attempts=3)) as http:
        response = http.request("GET", "/api/v1/me")
        if response.status_code != 200:
            raise http.refusal(response, what="the key", hint=False)
    me = response.json()
    path = save_key(url, key)
    role = ", server admin" if me.get("is_admin") else ""
    click.echo(f"Logged in to {url} as {me.get('user')}{role}; key saved in {path}")


@click.command()
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
@click.option("--check-media", is_flag=True,
              help="Check every media and table file the runs' records name, not only those of records not yet "
                   "uploaded, and send those the server lacks (runs synced by a tracklet that sent no media).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@_handle_errors
def sync(ctx: click.Context, run_paths: tuple[str, ...], sync_all: bool, url: str | None, chunk_mb: float,
         backoff_cap: float, give_up_after: float, check_media: bool, quiet: bool) -> None:
    """Upload runs (project/run_id or run directories, or --all) to a tracking server.

    Sends only what the server doesn't have yet, so it is safe to repeat; finished, crashed and
    still-running runs upload their complete records.
    """
    try:
        from tracklet.client.sync import SyncClient, SyncError, local_damage, local_runs
    except ImportError as error:
        raise CliError(f"tracklet sync needs httpx: pip install 'tracklet[server]' ({error})") from None

    root = _state(ctx).api.root
    if sync_all == bool(run_paths):
        raise CliError("name the runs to upload (project/run_id or a run directory), or pass --all")
    if not url:
        raise CliError("no server URL: pass --url or set TRACKLET_BASE_URL")
    targets = local_runs(root) if sync_all else [  # each run with its parts (a shared run's other writers)
        log for run in (resolve_run(root, spec) for spec in run_paths)
        for log in ([run] if run.log_file.is_file() else []) + [run.part_paths(label) for label in run.parts()]]
    if not targets:
        click.echo(f"No runs in {root}")
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    failures: list[str] = []
    damaged: list[str] = []
    total_sent = media_files = 0
    from tracklet.artifacts.remote import UPLOAD_STATE_DIR
    from tracklet.artifacts.storage import artifact_dir

    with SyncClient(url, chunk_bytes=max(1, int(chunk_mb * (1 << 20))), backoff_cap=backoff_cap,
                    give_up_after=give_up_after, blob_dir=artifact_dir(root),
                    upload_state_dir=root / "cache" / UPLOAD_STATE_DIR, check_media=check_media) as client, \
            Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                     console=Console(stderr=True), disable=quiet, transient=False) as bar:
        pushed: set[tuple[str, str]] = set()
        for paths in targets:
            name = f"{paths.project}/{paths.run_id}" + (f" part {paths.part}" if paths.part is not None else "")
            task = bar.add_task(name, total=None)

            def report(offset: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=offset, total=total)

            try:
                result = client.sync_run(paths, progress=report)
            except SyncError as error:
                failures.append(f"{name}: {error}")
                continue
            total_sent += result.sent_bytes + result.media_bytes
            media_files += result.media_sent
            try:
                if (paths.project, paths.run_id) not in pushed:  # once per run: its own log's, else its first part's
                    pushed.add((paths.project, paths.run_id))  # (a node that holds only parts of it)
                    total_sent += _push_artifacts(root, url, paths)
            except (TrackletError, OSError) as error:  # contained to this run's artifacts
                failures.append(f"{name}: artifacts: {error}")
            for line in result.describe_gaps():
                click.echo(f"tracklet: damaged: {line}", err=True)
            damage = local_damage(paths, result.offset)
            if damage is not None and damage.torn_tail:
                click.echo(f"tracklet: note: {damage.describe()}", err=True)
            elif damage is not None:
                damaged.append(damage.describe())
    whole = len(targets) - len(failures) - len(damaged)
    click.echo(f"Synced {whole} of {len(targets)} run(s) to {url}: {total_sent:,} new bytes"
               + (f" ({media_files:,} media and table file(s))" if media_files else "")
               + (f"; {len(damaged)} damaged run(s) only partly uploaded" if damaged else ""))
    for line in damaged:
        click.echo(f"tracklet: damaged: {line}", err=True)
    if failures or damaged:
        raise CliError("; ".join(failures) if failures else f"{len(damaged)} run(s) are damaged locally and were "
                       "not uploaded whole (see above)")


def _push_artifacts(root: Path, url: str, paths: Any) -> int:
    """Send the artifact versions a run logged or used (those stored locally) to the server; bytes sent."""
    from tracklet.artifacts.remote import connect, push_run_versions, versions_of_run
    from tracklet.artifacts.storage import open_store

    store = open_store(root)
    infos = versions_of_run(store, root, paths.project, paths.run_id)
    if not infos:
        return 0
    client = connect(url, root)
    try:
        answers = push_run_versions(client, store, infos, f"{paths.project}/{paths.run_id}")
        return sum(answer["bytes_sent"] for answer in answers)
    finally:
        client.http.close()


def resolve_run(root: Path, spec: str) -> Any:
    """The ``RunPaths`` of a run given as a run directory or its run.tlog, or as ``tracklet show``
    takes it: ``project/run_id``, ``project/run_name``, or a run id or name unique under ``root``."""
    from tracklet.api.local import LocalApi
    from tracklet.core.layout import RunPaths, is_valid_name
    from tracklet.errors import RunNotFound

    candidate = Path(spec).expanduser()
    if candidate.name == "run.tlog":
        candidate = candidate.parent
    if (candidate / "run.tlog").is_file() and candidate.parent.name == "runs":
        return RunPaths(candidate.parents[3], candidate.parents[1].name, candidate.name)
    try:
        found = LocalApi(root).run(spec)
    except RunNotFound as error:
        project, _, run_id = spec.partition("/")
        if is_valid_name(project) and is_valid_name(run_id) and RunPaths(Path(root), project, run_id).parts():
            return RunPaths(Path(root), project, run_id)  # a shared run's parts alone (a secondary's node)
        raise ValueError(f"{error}: give project/run_id, project/run_name, a run id or name, or a run "
                         "directory") from None
    return RunPaths(Path(root), found.project, found.id)
