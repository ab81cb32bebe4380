"""``tracklet registry ls|link|alias|history|card|protect|members|requests|approve|reject``: the model
registry of the data root, or of a server with ``--url`` (tracklet/registry/, docs/registry.md).

COLLECTION is ``registry/collection`` (a bare name is in the ``model`` registry); W&B's
``wandb-registry-model/name`` and ``models:/name`` are accepted too."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tracklet.cli.common import CliError, _handle_errors, _iso, _state


@click.group("registry")
@click.option("--url", default=None, metavar="URL", help="A tracking server's registry instead of the data root's.")
@click.pass_context
def registry_group(ctx: click.Context, url: str | None) -> None:
    """Registries of models (and any artifact): collections of linked versions, aliases with their
    history, model cards, protected aliases and promotion requests."""
    ctx.meta["registry_url"] = url


def _api(ctx: click.Context) -> Any:
    url = ctx.meta.get("registry_url")
    if url:
        from tracklet.api.remote import RemoteApi

        return RemoteApi(url)
    return _state(ctx).api


def _actor() -> str:
    from tracklet.registry.service import default_actor

    return default_actor()


def _collection(text: str) -> Any:
    from tracklet.registry.service import parse_collection

    return parse_collection(text)


@registry_group.command("ls")
@click.argument("where", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
@_handle_errors
def ls(ctx: click.Context, where: str | None, as_json: bool) -> None:
    """Collections (of every registry, or of REGISTRY), or the versions of REGISTRY/COLLECTION."""
    api = _api(ctx)
    if where and ("/" in where or where.startswith("models:")):
        ref = _collection(where)
        for link in api.registry.versions(ref.registry, ref.collection):
            row = {**link.to_json(), "linked_at": _iso(link.linked_at)}
            click.echo(json.dumps(row) if as_json else
                       f"v{link.version:<5} {link.source:<40} {row['linked_at']}  {link.linked_by}  "
                       f"{','.join(alias for alias in link.aliases if alias != f'v{link.version}')}")
        return
    rows = api.registry_collections(where)
    if where and not rows:
        known = sorted({row["registry"] for row in api.registry_collections()})
        raise CliError(f"no registry {where!r}: nothing has been linked into it (registries: {', '.join(known) or 'none'})")
    for row in rows:
        aliases = " ".join(f"{alias}={version}" for alias, version in row["aliases"].items())
        click.echo(json.dumps(row) if as_json else
                   f"{row['registry']}/{row['collection']}  type={row['type']}  versions={row['versions']}  "
                   f"latest={row['latest']}  {aliases}".rstrip())


@registry_group.command("link")
@click.argument("ref")
@click.argument("target")
@click.option("--alias", "-a", "aliases", multiple=True, help="An alias to give the version (repeatable).")
@click.option("--reason", default="", help="Why: kept in the alias history.")
@click.pass_context
@_handle_errors
def link(ctx: click.Context, ref: str, target: str, aliases: tuple[str, ...], reason: str) -> None:
    """Link artifact version REF (project/name:vN or :alias) into TARGET (registry/collection),
    without copying it."""
    from tracklet.registry.service import link_artifact

    artifact = _api(ctx).artifact(ref)
    linked = link_artifact(artifact, target, list(aliases), actor=_actor(), reason=reason)
    click.echo(f"{linked.source_qualified_name} -> {linked.qualified_name}  "
               f"{','.join(linked.aliases)}".rstrip())
    for request_id in linked._link.requests:
        click.echo(f"promotion request #{request_id} opened: a protected alias waits for approval", err=True)


@registry_group.command("alias")
@click.argument("collection")
@click.argument("alias")
@click.argument("version", required=False)
@click.option("--remove", is_flag=True, help="Remove ALIAS from the collection.")
@click.option("--reason", default="", help="Why: kept in the alias history.")
@click.pass_context
@_handle_errors
def alias(ctx: click.Context, collection: str, alias: str, version: str | None, remove: bool, reason: str) -> None:
    """Point ALIAS of COLLECTION at VERSION (vN, latest or another alias), or --remove it. A
    protected alias opens a promotion request instead (exit 2, naming it). --remove with VERSION
    (vN) removes it only if it still names that version (else an error, nothing changed); without
    VERSION it is removed wherever it points: you asked for that alias to go."""
    ref = _collection(collection)
    registry = _api(ctx).registry
    if not remove and version is None:
        raise CliError("give VERSION to move the alias, or --remove")
    if remove:
        expected = None
        if version is not None:
            from tracklet.artifacts.names import version_number

            expected = version_number(version)
            if expected is None:
                raise CliError(f"--remove takes VERSION as vN (the version the alias must still name); got {version!r}")
        event = registry.remove_alias(ref.registry, ref.collection, alias, expected=expected,
                                      unconditional=expected is None, actor=_actor(), reason=reason)
    else:
        assert version is not None
        event = registry.set_alias(ref.registry, ref.collection, alias, version, actor=_actor(), reason=reason)
    click.echo(str(event) if event is not None else f"{alias}: unchanged")


@registry_group.command("history")
@click.argument("collection")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
@_handle_errors
def history(ctx: click.Context, collection: str, as_json: bool) -> None:
    """Every move of COLLECTION's aliases (COLLECTION:ALIAS: of that alias), oldest first."""
    events = _api(ctx).alias_history(collection)
    for event in events:
        click.echo(json.dumps({**event.to_json(), "at": _iso(event.at)}) if as_json else str(event))


@registry_group.command("card")
@click.argument("version_ref", metavar="COLLECTION[:VERSION]")
@click.option("--generate", is_flag=True, help="Generate a card from the version's lineage (printed; --save keeps it).")
@click.option("--save", "save", is_flag=True, help="With --generate: save it as the card's next revision.")
@click.option("--file", "from_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Save this Markdown file as the card's next revision.")
@click.option("--revision", type=int, default=None, help="Show this revision (default: the newest).")
@click.pass_context
@_handle_errors
def card(ctx: click.Context, version_ref: str, generate: bool, save: bool, from_file: Path | None,
         revision: int | None) -> None:
    """Show, generate or save the model card of a version (default: latest)."""
    from tracklet.registry import cards

    api = _api(ctx)
    ref = _collection(version_ref)
    artifact = api.artifact(f"wandb-registry-{ref.registry}/{ref.collection}:{ref.selector}")
    number = artifact._link.version
    if from_file is not None or generate:
        text = (from_file.read_text() if from_file is not None else
                cards.generate(artifact, data_root=getattr(api, "root", None), api=api))
        if from_file is not None or save:
            saved = api.registry.save_card(ref.registry, ref.collection, number, text, author=_actor())
            click.echo(f"{artifact.qualified_name}: card revision {saved.revision} saved", err=True)
        if from_file is None:
            click.echo(text)
        return
    shown = api.registry.card(ref.registry, ref.collection, number, revision)
    if shown is None:
        raise CliError(f"{artifact.qualified_name} has no card"
                       + (f" revision {revision}" if revision else "") + ": make one with --generate --save")
    sys.stdout.write(shown.text if shown.text.endswith("\n") else shown.text + "\n")


@registry_group.command("protect")
@click.argument("collection")
@click.argument("alias")
@click.option("--approvals", type=click.IntRange(0, 100), default=1, show_default=True,
              help="Approvals (by others than the requester) a move needs; 0 lifts the protection.")
@click.option("--check", type=click.IntRange(1, 2**63 - 1), default=None,
              help="A webhook automation's id (server only): it must answer 2xx before a promotion completes.")
@click.option("--check-timeout", type=click.FloatRange(0.5, 120), default=None,
              help="Seconds the check may take to answer (0.5-120; default 10): a timeout fails it.")
@click.option("--approver-role", type=click.Choice(["viewer", "member", "admin"]), default="admin", show_default=True,
              help="The registry role whose holders (and those of higher roles) may approve or reject (server).")
@click.pass_context
@_handle_errors
def protect(ctx: click.Context, collection: str, alias: str, approvals: int, check: int | None,
            check_timeout: float | None, approver_role: str) -> None:
    """Protect ALIAS of COLLECTION: moving it takes an approved promotion request."""
    ref = _collection(collection)
    if check is not None and not ctx.meta.get("registry_url"):
        raise CliError("--check needs a server's registry (--url): webhook checks are a server's")
    if check_timeout is not None and check is None:
        raise CliError("--check-timeout is the timeout of a --check")
    registry = _api(ctx).registry
    if check is not None:
        registry.protect(ref.registry, ref.collection, alias, approvals, approver_role=approver_role, check=check,
                         check_timeout=check_timeout)
    else:
        registry.protect(ref.registry, ref.collection, alias, approvals, approver_role=approver_role)
    click.echo(f"{ref.path}:{alias} " + (f"needs {approvals} approval(s) by the {approver_role} role or a higher one "
                                         "to move" if approvals else "is not protected")
               + (f" and automation #{check}'s check" if check is not None and approvals else ""))


@registry_group.command("protections")
@click.argument("collection")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
@_handle_errors
def protections(ctx: click.Context, collection: str, as_json: bool) -> None:
    """COLLECTION's protected aliases: the approvals a move needs and the role that may approve."""
    ref = _collection(collection)
    for alias, policy in sorted(_api(ctx).registry.protections(ref.registry, ref.collection).items()):
        click.echo(json.dumps(policy.to_json()) if as_json else
                   f"{alias}\t{policy.approvals} approval(s)\tby {policy.approver_role} or higher")


@registry_group.command("members")
@click.argument("registry")
@click.argument("user", required=False)
@click.argument("role", type=click.Choice(["viewer", "member", "admin"]), required=False)
@click.option("--remove", is_flag=True, help="Take USER's role in REGISTRY.")
@click.pass_context
@_handle_errors
def members(ctx: click.Context, registry: str, user: str | None, role: str | None, remove: bool) -> None:
    """A server's registry roles (--url): list REGISTRY's members, give USER a ROLE, or --remove it."""
    if not ctx.meta.get("registry_url"):
        raise CliError("registry roles are a server's: pass --url (a data root's registry is its user's)")
    api = _api(ctx)
    if user is None:
        found = api.registry.members(registry)
    elif remove:
        found = api.registry.set_member(registry, user, None)
    elif role is None:
        raise CliError("give a ROLE (viewer, member or admin) or --remove")
    else:
        found = api.registry.set_member(registry, user, role)
    for member in found:
        click.echo(f"{member['user']}\t{member['role']}")


@registry_group.command("requests")
@click.option("--all", "every", is_flag=True, help="Decided requests too (default: pending ones).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
@_handle_errors
def requests(ctx: click.Context, every: bool, as_json: bool) -> None:
    """Promotion requests (pending ones unless --all)."""
    for request in _api(ctx).registry.requests(state=None if every else "pending"):
        approvals = sum(review["decision"] == "approve" for review in request.reviews)
        click.echo(json.dumps(request.to_json()) if as_json else
                   f"#{request.id}  {request.registry}/{request.collection}:{request.alias} -> v{request.to_version}  "
                   f"{request.state}  {approvals}/{request.approvals_required} approvals (by {request.approver_role}s)  "
                   f"by {request.requester}"
                   + (f"  ({request.reason})" if request.reason else ""))


def _review(ctx: click.Context, request_id: int, decision: str, comment: str) -> None:
    decided = _api(ctx).registry.review(request_id, decision, reviewer=_actor(), comment=comment)
    click.echo(f"#{decided.id} {decided.state}"
               + (f": {decided.alias} -> v{decided.to_version}" if decided.state == "approved" else ""))


@registry_group.command("approve")
@click.argument("request_id", type=int)
@click.option("--comment", default="")
@click.pass_context
@_handle_errors
def approve(ctx: click.Context, request_id: int, comment: str) -> None:
    """Approve promotion request REQUEST_ID (not your own); the last approval needed moves the alias."""
    _review(ctx, request_id, "approve", comment)


@registry_group.command("reject")
@click.argument("request_id", type=int)
@click.option("--comment", required=True, help="Why (kept with the request).")
@click.pass_context
@_handle_errors
def reject(ctx: click.Context, request_id: int, comment: str) -> None:
    """Reject promotion request REQUEST_ID (not your own)."""
    _review(ctx, request_id, "reject", comment)
