"""A version's mutable fields: its description, metadata and tags, which W&B lets one edit on a
committed version (``artifact.tags.append(...)``, ``artifact.metadata[...] = ...``, then
``artifact.save()``), unlike its files, which never change.

The checks here are the one set a client and a server apply, so an edit refused in one mode is
refused in the other with the same message: a tag is W&B's (letters, digits, ``_`` and ``-``,
words separated by spaces; at most ``MAX_TAG_CHARS``), a version has at most ``MAX_TAGS`` of them,
and metadata must be JSON as it is (no value turned into its ``str()`` as logging does: an edit
that would not read back as written is refused, naming the key at fault).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from tracklet.errors import ArtifactError, ArtifactNameError

MAX_TAG_CHARS = 128
MAX_TAGS = 256
MAX_DESCRIPTION_CHARS = 65_536
MAX_METADATA_BYTES = 4 << 20  # its JSON: within a server's 8 MiB JSON body with everything else
# Metadata keys one edit unsets (``unset_metadata``): at most this many, their JSON at most
# MAX_METADATA_BYTES, as the keys set are (a key longer than that can't name a stored one).
MAX_UNSET_METADATA_KEYS = 1000
_TAG = re.compile(r"[-\w]+(?: +[-\w]+)*")  # W&B's tag names (wandb.sdk.artifacts._validators)


def check_tags(tags: object, what: str = "artifact") -> list[str]:
    """``tags`` as a list, each once in their order (W&B's ``validate_tags``), or
    ``ArtifactNameError`` (a ``ValueError``, as W&B raises) naming the tag at fault."""
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise ArtifactNameError(f"{what}: tags must be a list of strings; got {type(tags).__name__}")
    checked: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise ArtifactNameError(f"{what}: a tag must be a string; got {type(tag).__name__}")
        if len(tag) > MAX_TAG_CHARS or _TAG.fullmatch(tag) is None:
            shown = repr(tag if len(tag) <= 80 else tag[:80] + "...")
            raise ArtifactNameError(f"{what}: tag {shown} is not valid: use at most {MAX_TAG_CHARS} letters, digits, "
                                    "'_' or '-', words separated by spaces")
        checked.append(tag)
    unique = list(dict.fromkeys(checked))
    if len(unique) > MAX_TAGS:
        raise ArtifactNameError(f"{what}: {len(unique)} tags; at most {MAX_TAGS}")
    return unique


def check_description(description: object, what: str = "artifact") -> str:
    """``description`` (None: empty) if a version may have it, else ``ArtifactError``."""
    if description is None:
        return ""
    if not isinstance(description, str):
        raise ArtifactError(f"{what}: description must be a string; got {type(description).__name__}")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ArtifactError(f"{what}: description has {len(description):,} characters; at most "
                            f"{MAX_DESCRIPTION_CHARS:,}")
    return description


def check_metadata(metadata: object, what: str = "artifact") -> dict[str, Any]:
    """``metadata`` as the JSON object it will be stored as (tuples become lists), or
    ``ArtifactError`` naming the first key whose value JSON can't hold (an object, NaN or an
    infinity, a key that isn't a string) or saying it is too large."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{what}: metadata must be a dict; got {type(metadata).__name__}")
    problem = _not_json(metadata, "metadata", 0)
    if problem is not None:
        raise ArtifactError(f"{what}: {problem}; metadata must be JSON (numbers, strings, booleans, None, lists "
                            "and dicts with string keys)")
    encoded = json.dumps(metadata, sort_keys=True, allow_nan=False)
    if len(encoded) > MAX_METADATA_BYTES:
        raise ArtifactError(f"{what}: metadata is {len(encoded):,} bytes as JSON; at most {MAX_METADATA_BYTES:,}")
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded


def _not_json(value: Any, path: str, depth: int) -> str | None:
    """What keeps ``value`` (at ``path``) from being JSON as it is, or None."""
    if depth > 100:
        return f"{path} is nested more than 100 levels deep"
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON can't hold"
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _not_json(item, f"{path}[{index}]", depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has the key {key!r}, which is not a string"
            problem = _not_json(item, f"{path}[{key!r}]", depth + 1)
            if problem is not None:
                return problem
        return None
    return f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which JSON can't hold"


def _metadata_keys(keys: object, what: str) -> list[str]:
    """``keys`` (metadata keys to unset) as a list of strings, each once, or ``ArtifactError``."""
    if isinstance(keys, str) or not isinstance(keys, Iterable):
        raise ArtifactError(f"{what}: metadata keys to unset must be a list of strings; got {type(keys).__name__}")
    checked: list[Any] = []
    seen: set[Any] = set()
    size = 2  # the JSON list's brackets
    for key in keys:
        if not isinstance(key, str):
            raise ArtifactError(f"{what}: a metadata key to unset must be a string; got {type(key).__name__}")
        if key in seen:
            continue
        size += len(json.dumps(key)) + 2
        if size > MAX_METADATA_BYTES:
            raise ArtifactError(f"{what}: the metadata keys to unset are over {MAX_METADATA_BYTES:,} bytes as JSON "
                                f"(a key of {len(key):,} characters); at most {MAX_METADATA_BYTES:,}, as metadata")
        seen.add(key)
        checked.append(key)
        if len(checked) > MAX_UNSET_METADATA_KEYS:
            raise ArtifactError(f"{what}: over {MAX_UNSET_METADATA_KEYS:,} metadata keys to unset in one edit; at "
                                f"most {MAX_UNSET_METADATA_KEYS:,} (or replace the metadata whole)")
    return checked


@dataclasses.dataclass
class CollectionFields:
    """A collection's own description and tags (W&B's ``ArtifactCollection.description`` and
    ``.tags``, apart from each version's): empty until edited, gone with the collection."""

    description: str = ""
    tags: list[str] = dataclasses.field(default_factory=list)
    updated_at: float | None = None  # when last edited (epoch seconds); None: never

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "tags": list(self.tags), "updated_at": self.updated_at}

    @classmethod
    def from_json(cls, document: object, what: str) -> CollectionFields:
        """The fields a stored document holds, or ``ArtifactError`` saying it is damaged."""
        try:
            if not isinstance(document, dict):
                raise ArtifactError("not a JSON object")
            updated = document.get("updated_at")
            return cls(description=check_description(document.get("description"), what),
                       tags=check_tags(document.get("tags") or [], what),
                       updated_at=float(updated) if isinstance(updated, (int, float)) else None)
        except ArtifactError as error:
            raise ArtifactError(f"{what} is damaged: {error}") from None


@dataclasses.dataclass
class CollectionEdit:
    """What ``ArtifactCollection.save()`` changes on a collection, applied as one locked change
    (both or neither): its ``type`` (every version's), its own ``description``, and its own tags,
    either replaced whole (``tags``) or added and removed (``add_tags``, ``remove_tags``: what a
    save sends, the difference between the tags it read and the tags it has, so two clients
    adding different tags at once both keep theirs; a tag removed that isn't there is no error).
    A field None (or an empty list) is left as it is."""

    type: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    add_tags: list[str] = dataclasses.field(default_factory=list)
    remove_tags: list[str] = dataclasses.field(default_factory=list)

    @property
    def changes_fields(self) -> bool:
        """Whether it changes the collection's own description or tags (not only its type)."""
        return self.description is not None or self.tags is not None or bool(self.add_tags) or bool(self.remove_tags)

    @property
    def empty(self) -> bool:
        return self.type is None and not self.changes_fields

    def checked(self, what: str) -> CollectionEdit:
        """This edit with every field checked (a version's rules: ``check_tags``,
        ``check_description``, ``check_artifact_type``), or the error naming what is wrong;
        nothing is changed before this passes."""
        from tracklet.artifacts.names import check_artifact_type

        return CollectionEdit(
            type=None if self.type is None else check_artifact_type(self.type),
            description=None if self.description is None else check_description(self.description, what),
            tags=None if self.tags is None else check_tags(self.tags, what),
            add_tags=check_tags(self.add_tags, what), remove_tags=check_tags(self.remove_tags, what))

    def applied_tags(self, tags: list[str], what: str) -> list[str]:
        """``tags`` after this edit (replaced if ``tags`` is given, then removed ones out and added
        ones appended, each once), or ``ArtifactError`` if that makes more than ``MAX_TAGS``."""
        base = self.tags if self.tags is not None else tags
        after = list(dict.fromkeys([*(tag for tag in base if tag not in self.remove_tags), *self.add_tags]))
        if len(after) > MAX_TAGS:
            raise ArtifactError(f"{what} would have {len(after)} tags; at most {MAX_TAGS}; nothing was changed")
        return after

    def summary(self) -> dict[str, Any]:
        """What the edit changes, for an audit row."""
        detail: dict[str, Any] = {} if self.type is None else {"type": self.type}
        if self.description is not None:
            detail["description"] = True
        if self.tags is not None:
            detail["tags"] = self.tags
        for key in ("add_tags", "remove_tags"):
            if getattr(self, key):
                detail[key] = getattr(self, key)
        return detail


@dataclasses.dataclass
class VersionEdit:
    """What ``artifact.save()`` changes on a committed version: each field None is left as it is;
    aliases and tags are added and removed (the registry's rules for aliases; an alias or tag
    removed that isn't there is no error), and metadata keys set and unset (``metadata`` replaces
    it whole, before them), so two clients editing different ones both land."""

    description: str | None = None
    metadata: dict[str, Any] | None = None
    set_metadata: dict[str, Any] | None = None
    unset_metadata: list[str] = dataclasses.field(default_factory=list)
    add_tags: list[str] = dataclasses.field(default_factory=list)
    remove_tags: list[str] = dataclasses.field(default_factory=list)
    add_aliases: list[str] = dataclasses.field(default_factory=list)
    remove_aliases: list[str] = dataclasses.field(default_factory=list)

    @property
    def changes_fields(self) -> bool:
        """Whether it changes more than aliases (what an older server can't do)."""
        return (self.description is not None or self.changes_metadata or bool(self.add_tags)
                or bool(self.remove_tags))

    @property
    def changes_metadata(self) -> bool:
        return self.metadata is not None or bool(self.set_metadata) or bool(self.unset_metadata)

    @property
    def empty(self) -> bool:
        return not self.changes_fields and not self.add_aliases and not self.remove_aliases

    def checked(self, what: str) -> VersionEdit:
        """This edit with every field checked (``check_*``), or the error naming what is wrong."""
        from tracklet.artifacts.names import LATEST, check_alias, custom_aliases

        if LATEST in self.remove_aliases:
            raise ArtifactError(f"{what}: 'latest' always names the newest version; it can't be removed")
        return VersionEdit(
            description=None if self.description is None else check_description(self.description, what),
            metadata=None if self.metadata is None else check_metadata(self.metadata, what),
            set_metadata=check_metadata(self.set_metadata, what) if self.set_metadata else None,
            unset_metadata=_metadata_keys(self.unset_metadata, what),
            add_tags=check_tags(self.add_tags, what), remove_tags=list(dict.fromkeys(check_tags(self.remove_tags, what))),
            add_aliases=custom_aliases(self.add_aliases),
            remove_aliases=list(dict.fromkeys(check_alias(alias) for alias in self.remove_aliases)))

    def applied_tags(self, tags: list[str]) -> list[str]:
        """``tags`` after this edit: removed ones out, added ones appended, each once."""
        kept = [tag for tag in tags if tag not in self.remove_tags]
        return list(dict.fromkeys([*kept, *self.add_tags]))

    def applied_metadata(self, metadata: dict[str, Any], what: str) -> dict[str, Any]:
        """``metadata`` after this edit (replaced if ``metadata`` is given, then the keys unset
        removed and those set set), or ``ArtifactError`` if it grows past ``MAX_METADATA_BYTES``."""
        after = dict(self.metadata if self.metadata is not None else metadata)
        for key in self.unset_metadata:
            after.pop(key, None)
        after.update(self.set_metadata or {})
        return check_metadata(after, what)

    def summary(self) -> dict[str, Any]:
        """What the edit changes, for an audit row (metadata by its keys, not its values)."""
        detail: dict[str, Any] = {}
        if self.description is not None:
            detail["description"] = True
        if self.metadata is not None:
            detail["metadata_keys"] = sorted(self.metadata)[:100]
        if self.set_metadata:
            detail["set_metadata_keys"] = sorted(self.set_metadata)[:100]
        if self.unset_metadata:
            detail["unset_metadata_keys"] = sorted(self.unset_metadata)[:100]
        for key in ("add_tags", "remove_tags", "add_aliases", "remove_aliases"):
            if getattr(self, key):
                detail[key] = getattr(self, key)
        return detail
