"""``tracklet artifact edit REF``: edit from the shell what the Api edits: a version's description,
metadata, tags and aliases (``Artifact.save()``), or, when REF names no version, the collection's
own description and tags (``Api.edit_artifact_collection``). In the data root by default, on a
server with ``--url`` (never from ``$TRACKLET_BASE_URL``: an edit names where it happens).

Every option is read and checked before anything is saved (a bad tag, metadata that isn't JSON, an
alias or tag to remove that isn't there: one line naming it, exit 2, nothing changed); the save
itself is the Api's one locked change (one request on a server)."""

from __future__ import annotations

import json
from typing import Any

import click

from tracklet.cli.artifacts import _reader
from tracklet.cli.common import CliError, _handle_errors

_VERSION_ONLY = {"metadata": "--metadata", "set_metadata": "--set-metadata", "unset_metadata": "--unset-metadata",
                 "aliases": "--alias", "unaliases": "--unalias"}


@click.command("edit")
@click.argument("ref")
@click.option("--description", "-d", default=None, help="The new description ('' clears it).")
@click.option("--metadata", "metadata_json", default=None, metavar="JSON",
              help="Replace the version's metadata with this JSON object.")
@click.option("--set-metadata", "set_metadata", multiple=True, metavar="KEY=JSON",
              help="Set one metadata key to a JSON value, e.g. acc=0.93 or split='\"test\"' (repeatable).")
@click.option("--unset-metadata", "unset_metadata", multiple=True, metavar="KEY",
              help="Remove one metadata key (repeatable).")
@click.option("--add-tag", "--tag", "tags", multiple=True,
              help="Add a tag (repeatable); tags not named stay, whoever added them meanwhile.")
@click.option("--remove-tag", "--untag", "untags", multiple=True,
              help="Remove a tag (repeatable); tags not named stay.")
@click.option("--alias", "-a", "aliases", multiple=True,
              help="Give the version an alias, moving it from the version that has it (repeatable).")
@click.option("--unalias", "unaliases", multiple=True, help="Take an alias from the version (repeatable).")
@click.option("--url", default=None, metavar="URL",
              help="Edit on this tracking server instead of the data root (its key: $TRACKLET_API_KEY or "
                   "`tracklet login`). Never taken from $TRACKLET_BASE_URL: an edit names where it happens.")
@click.pass_context
@_handle_errors
def edit(ctx: click.Context, ref: str, description: str | None, metadata_json: str | None,
         set_metadata: tuple[str, ...], unset_metadata: tuple[str, ...], tags: tuple[str, ...],
         untags: tuple[str, ...], aliases: tuple[str, ...], unaliases: tuple[str, ...], url: str | None) -> None:
    """Edit a version (REF: project/name:vN or :alias) or, with no version in REF (project/name),
    the collection's own description and tags. Tags and aliases not named stay as they are."""
    from tracklet.artifacts.names import parse_ref

    parsed = parse_ref(ref)
    if parsed.project is None:
        raise CliError(f"{ref!r} needs a project: use project/name[:vN]")
    options = {"metadata": metadata_json, "set_metadata": set_metadata, "unset_metadata": unset_metadata,
               "aliases": aliases, "unaliases": unaliases}
    given = {key for key, value in options.items() if value}
    if description is None and not tags and not untags and not given:
        raise CliError("nothing to edit: give --description, --metadata, --set-metadata, --unset-metadata, "
                       "--add-tag, --remove-tag, --alias or --unalias")
    names_version = ":" in ref.rsplit("/", 1)[-1]
    if not names_version and given:
        flags = ", ".join(flag for key, flag in _VERSION_ONLY.items() if key in given)
        raise CliError(f"{ref!r} names a collection, whose own fields are its description and tags; {flags} "
                       "edit one version (project/name:vN)")
    with _reader(ctx, url) as api:
        if names_version:
            _edit_version(api, ref, description, _metadata(metadata_json, set_metadata, unset_metadata), tags,
                          untags, aliases, unaliases, url)
        else:
            _edit_collection(api, parsed.project, parsed.name, description, tags, untags, url)


class _MetadataEdit:
    """``--metadata``/``--set-metadata``/``--unset-metadata``, parsed before anything is read."""

    def __init__(self, replace: dict[str, Any] | None, set_keys: dict[str, Any], unset: list[str]) -> None:
        self.replace, self.set_keys, self.unset = replace, set_keys, unset

    def apply(self, current: dict[str, Any], where: str) -> dict[str, Any]:
        result = dict(self.replace if self.replace is not None else current)
        missing = [key for key in self.unset if key not in result]
        if missing:
            raise CliError(f"--unset-metadata {missing[0]!r}: {where} has no such metadata key; nothing was changed")
        for key in self.unset:
            del result[key]
        result.update(self.set_keys)
        return result

    @property
    def empty(self) -> bool:
        return self.replace is None and not self.set_keys and not self.unset


def _metadata(text: str | None, set_metadata: tuple[str, ...], unset: tuple[str, ...]) -> _MetadataEdit:
    replace = None
    if text is not None:
        replace = _json("--metadata", text)
        if not isinstance(replace, dict):
            raise CliError(f"--metadata must be a JSON object; got {type(replace).__name__}")
    set_keys: dict[str, Any] = {}
    for item in set_metadata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set-metadata {item!r}: use KEY=JSON, e.g. acc=0.93 or split='\"test\"'")
        set_keys[key] = _json(f"--set-metadata {key}", value)
    return _MetadataEdit(replace, set_keys, list(dict.fromkeys(unset)))


def _json(option: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        hint = ' (a string is quoted: \'"text"\')' if text and text[0] not in '{["-0123456789tfn' else ""
        raise CliError(f"{option}: not JSON: {error}{hint}; nothing was changed") from None


def _edit_version(api: Any, ref: str, description: str | None, metadata: _MetadataEdit, tags: tuple[str, ...],
                  untags: tuple[str, ...], aliases: tuple[str, ...], unaliases: tuple[str, ...],
                  url: str | None) -> None:
    artifact = api.artifact(ref)
    where = artifact.qualified_name
    _refuse_missing("--remove-tag", untags, artifact.tags, where, "tag")
    _refuse_missing("--unalias", unaliases, artifact.aliases, where, "alias")
    changed = []
    if description is not None and description != (artifact.description or ""):
        artifact.description = description
        changed.append("description")
    if not metadata.empty:
        edited = metadata.apply(dict(artifact.metadata or {}), where)
        if edited != (artifact.metadata or {}):
            artifact.metadata = edited
            changed.append("metadata")
    tags = tuple(tag for tag in dict.fromkeys(tags) if tag not in artifact.tags)
    if tags or untags:
        artifact.tags = [*[tag for tag in artifact.tags if tag not in untags], *tags]
        changed.append(_moves("tags", tags, untags))
    aliases = tuple(alias for alias in dict.fromkeys(aliases) if alias not in artifact.aliases)
    if aliases or unaliases:
        artifact.aliases = [*[alias for alias in artifact.aliases if alias not in unaliases], *aliases]
        changed.append(_moves("aliases", aliases, unaliases))
    artifact.save()
    click.echo(f"edited {where}{'' if url is None else ' on ' + url}: {'; '.join(changed) or 'nothing changed'}")


def _edit_collection(api: Any, project: str, name: str, description: str | None, tags: tuple[str, ...],
                     untags: tuple[str, ...], url: str | None) -> None:
    """One edit of the collection's own fields: the tags named added and removed as the edit
    lands (not the list read here written back), so two edits at once both keep their tags."""
    from tracklet.errors import ArtifactNotFound

    where = f"{project}/{name}"
    row = next((row for row in api.artifact_collections(project) if row["name"] == name), None)
    if row is None:
        raise ArtifactNotFound(f"no artifact collection {where}")
    current = list(row.get("tags") or [])
    _refuse_missing("--remove-tag", untags, current, f"collection {where}", "tag")
    tags = tuple(tag for tag in dict.fromkeys(tags) if tag not in current)
    untags = tuple(dict.fromkeys(untags))
    if description == row.get("description", ""):
        description = None
    if description is not None or tags or untags:
        api.edit_artifact_collection(where, description=description, add_tags=list(tags), remove_tags=list(untags))
    changed = (["description"] if description is not None else []) + ([_moves("tags", tags, untags)]
                                                                       if tags or untags else [])
    click.echo(f"edited collection {where}{'' if url is None else ' on ' + url}: "
               f"{'; '.join(changed) or 'nothing changed'}")


def _refuse_missing(option: str, names: tuple[str, ...], present: list[str], where: str, what: str) -> None:
    missing = [name for name in names if name not in present]
    if missing:
        raise CliError(f"{option} {missing[0]!r}: {where} has no such {what}; nothing was changed")


def _moves(what: str, added: tuple[str, ...], removed: tuple[str, ...]) -> str:
    return f"{what} " + " ".join([*(f"+{name}" for name in added), *(f"-{name}" for name in removed)])
