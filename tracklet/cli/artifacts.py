"""``tracklet artifact ls|show|get|put|verify|rm|gc|push``: artifact versions in the data root
(tracklet/artifacts/, docs/artifacts.md; ``edit``: tracklet/cli/artifact_edit.py). ``get``, ``put`` and ``gc`` show a progress bar (files,
bytes, rate) on stderr; ``--quiet`` hides it."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tracklet.artifacts.names import printable_type
from tracklet.cli.common import CliError, _handle_errors, _iso, _state, unknown_project


@click.group("artifact")
def artifact_group() -> None:
    """List, inspect, edit, download, store, verify, delete and garbage-collect artifact versions
    (REF: project/name[:alias|:vN])."""


class _Bar:
    """A rich progress bar fed by ``ArtifactStore``'s ``start``/``advance`` calls."""

    def __init__(self, bar: Any, label: str) -> None:
        self.bar, self.label, self.task, self.files, self.total_files = bar, label, None, 0, 0

    def start(self, files: int, size: int) -> None:
        self.total_files = files
        self.task = self.bar.add_task(self._description(), total=size)

    def advance(self, files: int, size: int) -> None:
        self.files += files
        self.bar.update(self.task, advance=size, description=self._description())

    def _description(self) -> str:
        return f"{self.label} {self.files:,}/{self.total_files:,} files"


def _progress(label: str, quiet: bool) -> Iterator[_Bar]:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), disable=quiet) as bar:
        yield _Bar(bar, label)


def _project_and_name(ref: str) -> tuple[str, str]:
    from tracklet.artifacts.names import parse_ref

    parsed = parse_ref(ref)
    if parsed.project is None:
        raise CliError(f"{ref!r} needs a project: use project/name")
    return parsed.project, parsed.name


def _read_url(what: str) -> Any:
    return click.option("--url", default=None, metavar="URL",
                        help=f"{what} this tracking server's artifacts instead of the data root's (its key: "
                             "$TRACKLET_API_KEY or `tracklet login`).")


@contextlib.contextmanager
def _reader(ctx: click.Context, url: str | None) -> Iterator[Any]:
    """The Api a read goes through: the data root's, or the server's at ``url`` (closed after)."""
    if url is None:
        yield _state(ctx).api
        return
    from tracklet.api.remote import RemoteApi

    api = RemoteApi(url)
    try:
        yield api
    finally:
        api.close()


@artifact_group.command("ls")
@click.argument("where", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_read_url("List")
@click.pass_context
@_handle_errors
def ls(ctx: click.Context, where: str | None, as_json: bool, url: str | None) -> None:
    """Collections (all projects, or PROJECT's), or the versions of PROJECT/NAME."""
    with _reader(ctx, url) as api:
        _ls(api, where, as_json, remote=url is not None)


def _ls(api: Any, where: str | None, as_json: bool, remote: bool) -> None:
    if where and "/" in where:
        rows = [_version_row(artifact) for artifact in api.artifact_versions(where)]
        if not rows:
            raise CliError(f"no artifact {where}")
        for row in rows:
            click.echo(json.dumps(row) if as_json else
                       f"{row['version']:>5}  {row['size']:>14,} B  {row['files']:>7,} files  {row['created']}  "
                       f"{','.join(row['aliases'])}")
        return
    if remote:
        projects = [where] if where else api.projects()
        _ls_collections(api, projects, as_json)
        return
    from tracklet.artifacts.storage import open_store

    holding = open_store(api.root).registry.projects()
    if where and where not in holding:
        if where not in api.projects():
            raise unknown_project(api, where, also=holding)
        click.echo(f"no artifacts in project {where} yet", err=True)
    _ls_collections(api, [where] if where else holding, as_json)


def _ls_collections(api: Any, projects: list[str], as_json: bool) -> None:
    for project in projects:
        for row in api.artifact_collections(project):
            row = {"project": project, **row}
            text = f"{project}/{row['name']}  type={printable_type(row['type'])}  versions={row['versions']}  latest={row['latest']}"
            if row.get("tags"):
                text += "  tags=" + ",".join(row["tags"])
            click.echo(json.dumps(row) if as_json else text)


def _version_row(artifact: Any) -> dict[str, Any]:
    return {"name": artifact.qualified_name, "version": artifact.version, "type": artifact.type,
            "digest": artifact.digest, "size": artifact.size, "files": artifact._info.file_count,
            "aliases": artifact.aliases, "created": _iso(artifact.created_at),
            "description": artifact.description, "metadata": artifact.metadata,
            "logged_by": artifact._info.logged_by, "tags": list(artifact._info.tags),
            "history_step": artifact._info.history_step,
            **({"base_unread": artifact._info.base_unread} if artifact._info.base_unread else {})}


@artifact_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="The version and its files as one JSON object.")
@_read_url("Show")
@click.pass_context
@_handle_errors
def show(ctx: click.Context, ref: str, as_json: bool, url: str | None) -> None:
    """One version: identity, aliases, tags, metadata, and every file with its size and digest. A
    registry version whose artifact version was deleted shows the link, "files: deleted", and the
    runs that logged and used that version."""
    from tracklet.errors import ArtifactDeleted, ArtifactNotFound

    with _reader(ctx, url) as api:
        try:
            artifact = api.artifact(ref)
        except ArtifactDeleted:
            if url is not None or not _show_deleted_link(api.root, ref, as_json):
                raise
            return
        except ArtifactNotFound:  # a run's logged table, as W&B names it (run-<id>-<key>:v<n>)?
            shown = (_show_remote_run_table(api, ref, as_json) if url is not None
                     else _show_run_table(api, ref, as_json))
            if not shown:
                raise
            return
        _show(artifact, as_json)


def _show_run_table(api: Any, ref: str, as_json: bool) -> bool:
    """``show`` of a run table named as W&B names it (``project/run-<id>-<key>:v<n>``, type
    ``run_table``; docs/tables.md#lineage): its key, step, the run that logged it and the runs
    that used it (the store's lineage). False if ``ref`` names none."""
    from tracklet.artifacts.lineage import run_paths
    from tracklet.artifacts.names import parse_ref
    from tracklet.artifacts.run_tables import resolve_run_table

    parsed = parse_ref(ref)
    table = resolve_run_table(Path(api.root), ref, parsed.project or "") if parsed.project else None
    if table is None:
        return False
    api.store.index(wait=2.0)  # the runs that used it: what their logs say now
    row = {"name": table.qualified_name, "type": table.type, "key": table.key, "step": table.step,
           "aliases": list(table.aliases), "created": _iso(table.time), "logged_by": table.run_path,
           "used_by": run_paths(Path(api.root), table.project, table.name, table.version, "used")}
    if as_json:
        click.echo(json.dumps(row))
        return True
    _echo_run_table(row, table.version)
    return True


def _echo_run_table(row: dict[str, Any], version: int) -> None:
    for key, value in row.items():
        click.echo(f"{key + ':':<12} {(', '.join(value) or '-') if isinstance(value, list) else value}")
    click.echo(f"a table run {row['logged_by']} logged under {row['key']!r} (its log {version + 1} of that key); "
               f"read it with tracklet.Api().run({row['logged_by']!r}).table({row['key']!r}, step={row['step']})")


def _show_remote_run_table(api: Any, ref: str, as_json: bool) -> bool:
    """``_show_run_table`` from a tracking server: the table's node and its runs from the
    server's lineage route, its key and step from the logging run's table routes."""
    from tracklet.artifacts.names import parse_ref
    from tracklet.core.run_tables import names_table
    from tracklet.errors import ArtifactNotFound

    parsed = parse_ref(ref)
    if not parsed.project or not parsed.name.startswith("run-"):
        return False
    try:
        graph = api._http.get_json(f"/api/v1/projects/{parsed.project}/lineage", missing=ArtifactNotFound,
                                   artifact=f"{parsed.name}:{parsed.selector}", hops=1)
    except ArtifactNotFound:
        return False
    nodes = {node["id"]: node for node in graph["nodes"]}
    root = nodes.get(graph["root"], {})
    logged = [nodes[e["source"]] for e in graph["edges"] if e["target"] == graph["root"] and e["kind"] == "logged"]
    users = [nodes[e["target"]] for e in graph["edges"] if e["source"] == graph["root"] and e["kind"] == "used"]
    if root.get("type") != "run_table" or not logged:
        return False
    run = api.run(f"{logged[0]['project']}/{logged[0]['run_id']}")
    number = int(str(root["version"])[1:])
    key = next((k for k in run.table_keys() if names_table(parsed.name, run.id, k)), None)
    versions = run.table_versions(key) if key is not None else []
    found = [v for v in versions if v.get("version", v["index"]) == number]
    if not found:
        return False
    row = {"name": f"{parsed.project}/{parsed.name}:{root['version']}", "type": "run_table", "key": key,
           "step": found[0]["step"], "aliases": list(root.get("aliases") or []), "created": _iso(found[0]["time"]),
           "logged_by": f"{logged[0]['project']}/{logged[0]['run_id']}",
           "used_by": [f"{user['project']}/{user['run_id']}" for user in users]}
    if as_json:
        click.echo(json.dumps(row))
    else:
        _echo_run_table(row, number)
    return True


def _show(artifact: Any, as_json: bool) -> None:
    row = _version_row(artifact)
    files = [{"path": e.path, "size": e.size, "digest": e.digest, **({"ref": e.ref} if e.ref else {})}
             for e in artifact.files()]
    if as_json:
        click.echo(json.dumps({**row, "files": files}))
        return
    for key in ("name", "type", "digest", "size", "files", "aliases", "tags", "created", "logged_by", "history_step",
                "description"):
        value = row[key]
        if key in ("tags", "history_step") and value in ([], None):  # none: the listing as before
            continue
        if key == "size":
            value = f"{value:,} bytes"
        elif value is None:  # logged_by of a version stored outside any run
            value = "-"
        elif key == "type":
            value = printable_type(value)
        click.echo(f"{key + ':':<12} {', '.join(value) if isinstance(value, list) else value}")
    if row["metadata"]:
        click.echo(f"{'metadata:':<13}{json.dumps(row['metadata'])}")
    if row.get("base_unread"):  # an incremental version built without its server's latest
        click.echo(f"{'incomplete:':<12} built on this data root's latest: {row['base_unread']}'s latest could not be "
                   "read when it was stored, so this copy may lack files only the server's version holds (the "
                   "server merges it there once uploaded: `tracklet sync`; `--url` shows the server's)")
    for item in files:
        where = f"  -> {item['ref']}" if "ref" in item else ""
        click.echo(f"  {item['size']:>14,}  {item['digest'][:12]}  {item['path']}{where}")


def _show_deleted_link(root: Any, ref: str, as_json: bool) -> bool:
    """``show`` of a registry version whose artifact version was deleted (``break_registry_links``):
    what the registry keeps (the link, its aliases) and what the runs recorded (who logged and used
    that version); False if ``ref`` is no such version."""
    from tracklet.artifacts.lineage import run_paths
    from tracklet.registry.service import deleted_link

    link = deleted_link(root, ref)
    if link is None:
        return False
    number = (link.source_project, link.source_name, link.source_version)
    row: dict[str, Any] = {"name": link.path, "files_deleted": True, "source": link.source, "type": link.type,
           "digest": link.source_digest, "aliases": link.aliases, "linked": _iso(link.linked_at),
           "linked_by": link.linked_by, "logged_by": run_paths(Path(root), *number, "logged"),
           "used_by": run_paths(Path(root), *number, "used"), "files": []}
    if as_json:
        click.echo(json.dumps(row))
        return True
    click.echo(f"{'name:':<13}{row['name']}")
    click.echo(f"{'files:':<13}deleted: {link.source} was deleted (`tracklet artifact rm --break-registry-links`); "
               "the registry keeps this version and its alias history")
    for key in ("source", "type", "digest", "aliases", "linked", "linked_by", "logged_by", "used_by"):
        value = row[key]
        if key == "type":
            value = printable_type(value)
        click.echo(f"{key + ':':<13}{(', '.join(value) or '-') if isinstance(value, list) else value}")
    return True


@artifact_group.command("get")
@click.argument("ref")
@click.option("--root", "target", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to put the files. Default: ./artifacts/<name>:vN.")
@click.option("--copy", is_flag=True, help="Copy every file (default: reflink, else hard link, else copy).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@_read_url("Download from")
@click.pass_context
@_handle_errors
def get(ctx: click.Context, ref: str, target: Path | None, copy: bool, quiet: bool, url: str | None) -> None:
    """Download a version's files (each checked against its digest)."""
    started = time.perf_counter()
    with _reader(ctx, url) as api:
        artifact = api.artifact(ref)
        for bar in _progress(f"get {artifact.qualified_name}", quiet):
            path = artifact.download(target, link=not copy, progress=bar)
    click.echo(f"{artifact.qualified_name}: {artifact._info.file_count:,} files, {artifact.size:,} bytes in "
               f"{path} ({time.perf_counter() - started:.2f}s)")


@artifact_group.command("put")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", "-n", "name", default=None,
              help="Collection name, or W&B's PROJECT/NAME[:ALIAS] (an entity before it is ignored). Default: the "
                   "base name of PATH.")
@click.option("--type", "-t", "kind", default="dataset", show_default=True, help="Artifact type.")
@click.option("--project", "-p", default="uncategorized", show_default=True)
@click.option("--alias", "-a", "aliases", multiple=True, help="An alias to give the version (repeatable).")
@click.option("--description", "-d", default="")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@_handle_errors
def put(ctx: click.Context, path: Path, name: str | None, kind: str, project: str, aliases: tuple[str, ...],
        description: str, quiet: bool) -> None:
    """Store a file or directory as the next version of PROJECT/NAME (outside any run)."""
    from tracklet.artifacts.worker import prepare

    if name is not None and ("/" in name or ":" in name):  # W&B's `wandb artifact put --name project/name:alias`
        name, project, aliases = _put_target(ctx, name, project, aliases)
    artifact = prepare(os.fspath(path), name, kind)
    artifact.description = description
    started = time.perf_counter()
    for bar in _progress(f"put {project}/{artifact.name}", quiet):
        artifact.save(project, root=_state(ctx).api.root, aliases=list(aliases), progress=bar)
    state = "unchanged: same content as" if artifact.reused else "stored as"
    click.echo(f"{state} {artifact.qualified_name} ({artifact._info.file_count:,} files, {artifact.size:,} bytes, "
               f"{artifact.bytes_written:,} bytes written, {time.perf_counter() - started:.2f}s)")


def _put_target(ctx: click.Context, text: str, project: str,
                aliases: tuple[str, ...]) -> tuple[str, str, tuple[str, ...]]:
    """``put --name [entity/]project/name[:alias]``: the name, the project (``--project``, if
    given too, must agree) and the aliases with the one named added."""
    from tracklet.artifacts.names import LATEST, parse_ref, version_number

    ref = parse_ref(text)
    if ref.project is not None:
        given = ctx.get_parameter_source("project") is click.core.ParameterSource.COMMANDLINE
        if given and project != ref.project:
            raise CliError(f"--name {text!r} names project {ref.project!r}, --project {project!r}: give one")
        project = ref.project
    if ":" in text and ref.selector != LATEST:
        if version_number(ref.selector) is not None:
            raise CliError(f"--name {text!r}: {ref.selector!r} names a version, which is assigned; give an alias")
        aliases = (*aliases, ref.selector)
    return ref.name, project, aliases


@artifact_group.command("verify")
@click.argument("ref")
@click.option("--root", "target", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The directory to check. Default: ./artifacts/<name>:vN.")
@click.pass_context
@_handle_errors
def verify(ctx: click.Context, ref: str, target: Path | None) -> None:
    """Re-hash a downloaded version's files; name each missing, changed or extra file (exit 2)."""
    from tracklet.errors import ArtifactVerifyError

    artifact = _state(ctx).api.artifact(ref)
    try:
        artifact.verify(target)
    except ArtifactVerifyError as error:
        for path, why in sorted(error.problems.items()):
            click.echo(f"{path}: {why}", err=True)
        raise CliError(f"{len(error.problems)} file(s) don't match {artifact.qualified_name}") from None
    click.echo(f"ok: {artifact._info.file_count:,} files match {artifact.qualified_name}")


@artifact_group.command("rm")
@click.argument("ref")
@click.option("--force", is_flag=True, help="Delete a version that has aliases (with them); in the data root, "
              "also one the model registry links (as --break-registry-links).")
@click.option("--break-registry-links", "break_links", is_flag=True,
              help="Delete a version the model registry links, leaving those registry versions without files "
                   "(on a server: needs the member role in every registry linking it; never while a protected "
                   "alias names one of them).")
@click.option("--url", default=None, metavar="URL",
              help="Delete the version of this tracking server's project instead of the data root's (its key: "
                   "$TRACKLET_API_KEY or `tracklet login`). Never taken from $TRACKLET_BASE_URL: a deletion "
                   "names where it happens.")
@click.pass_context
@_handle_errors
def rm(ctx: click.Context, ref: str, force: bool, break_links: bool, url: str | None) -> None:
    """Delete one version (REF names it: project/name:vN or :alias). Its number is never reused;
    its files stay stored until `tracklet artifact gc` (on a server, `tracklet admin artifact-gc`)."""
    from tracklet.artifacts.names import parse_ref
    from tracklet.artifacts.storage import open_store

    parsed = parse_ref(ref)
    if parsed.project is None or ":" not in ref.rsplit("/", 1)[-1]:
        raise CliError(f"{ref!r}: name one version, as project/name:vN (or project/name:alias)")
    if url is not None:
        _rm_on_server(url, _state(ctx).api.root, parsed.project, parsed.name, parsed.selector, force, break_links)
        return
    from tracklet.artifacts.lookup import delete_version

    store = open_store(_state(ctx).api.root)
    info = store.registry.version(parsed.project, parsed.name, parsed.selector)
    dropped, links = delete_version(_state(ctx).api.root, info, drop_aliases=force, break_links=force or break_links)
    click.echo(f"deleted {info.qualified_name}{_rm_notes(dropped, links)}; run `tracklet artifact gc` to free its "
               "storage")


def _rm_notes(dropped: list[str], links: list[str]) -> str:
    note = f" (aliases dropped: {', '.join(dropped)})" if dropped else ""
    return note + (f" (registry versions left without files: {', '.join(links)})" if links else "")


def _rm_on_server(url: str, root: Any, project: str, name: str, selector: str, force: bool, break_links: bool) -> None:
    """``rm --url``: the server's ``DELETE .../versions/vN`` (the same rules: ``--force`` drops
    the version's aliases; a version the server's registry links needs ``--break-registry-links``
    and the member role in every registry linking it: ``--force`` alone never breaks a server's
    registry versions, a team's shared state)."""
    from tracklet.artifacts.names import version_number
    from tracklet.artifacts.remote import connect

    client = connect(url, root, attempts=3)
    try:
        number = version_number(selector)
        if number is None:  # an alias or latest: the version it names now
            number = int(client.version(project, name, selector)["index"])
        answer = client.delete_version(project, name, number, delete_aliases=force, break_registry_links=break_links)
    finally:
        client.http.close()
    notes = _rm_notes(answer["aliases_dropped"], answer.get("registry_links_broken") or [])
    click.echo(f"deleted {project}/{name}:v{number} on {url}{notes}; `tracklet admin artifact-gc` there frees its "
               "storage")


@artifact_group.command("gc")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--grace", default="1d", show_default=True,
              help="Keep unreferenced files younger than this (a commit may be in flight): 0, 30m, 12h, 1d.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@_handle_errors
def gc(ctx: click.Context, dry_run: bool, grace: str, quiet: bool) -> None:
    """Remove blobs, packs and chunks that no version references, and stale temporaries."""
    from tracklet.artifacts.gc import collect, summary
    from tracklet.artifacts.sizes import parse_duration
    from tracklet.artifacts.storage import open_store
    from tracklet.media.retention import unversioned_blobs_in_use

    try:
        grace_seconds = parse_duration(grace)
    except ValueError as error:
        raise CliError(f"--grace: {error}") from None
    store = open_store(_state(ctx).api.root)
    for bar in _progress("gc (dry run)" if dry_run else "gc", quiet):
        report = collect(store, grace=grace_seconds, dry_run=dry_run, progress=bar,
                         orphan_check=unversioned_blobs_in_use)
    if dry_run:
        for path in report.removed:
            click.echo(f"would remove {path}")
    for problem in [*report.damaged_packs, *report.problems]:
        click.echo(f"warning: {problem}", err=True)
    click.echo(summary(report))


@artifact_group.command("push")
@click.argument("refs", nargs=-1, required=True)
@click.option("--url", default=None, envvar="TRACKLET_BASE_URL", metavar="URL",
              help="The tracking server (default: $TRACKLET_BASE_URL).")
@click.pass_context
@_handle_errors
def push(ctx: click.Context, refs: tuple[str, ...], url: str | None) -> None:
    """Upload local versions (REF: project/name:vN or :alias) to a tracking server: only the blobs
    it lacks, large ones resumably. A version the server has from the same run is not added again."""
    from tracklet.artifacts.remote import connect
    from tracklet.artifacts.remote import push as push_versions

    if not url:
        raise CliError("no server URL: pass --url or set TRACKLET_BASE_URL")
    api = _state(ctx).api
    artifacts = [api.artifact(ref) for ref in refs]
    client = connect(url, api.root)
    try:
        for artifact in artifacts:
            (answer,) = push_versions(client, artifact._store, [artifact._info])
            version = answer["version"]
            click.echo(f"{artifact.qualified_name} -> {url} as {version['project']}/{version['name']}:"
                       f"{version['version']} ({answer['bytes_sent']:,} bytes sent)")
    finally:
        client.http.close()
