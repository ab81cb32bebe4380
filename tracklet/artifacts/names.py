"""Which names an artifact, an alias and a file inside an artifact may have, and how
``"project/name:alias"`` references are read.

An artifact's name becomes a directory of the local registry, so it gets the character set of
project names (letters, digits, ``.``, ``_``, ``-``; no ``/``, no ``..``). Paths inside an artifact
are ``/``-separated and relative: ``..``, an absolute path, an empty part and NUL are refused, so
no manifest can make ``download()`` write outside its root; a draft's names also have parts of at
most 255 bytes, so every version it makes can be downloaded.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from tracklet.errors import ArtifactNameError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION = re.compile(r"v(0|[1-9][0-9]{0,9})")
MAX_PATH_CHARS = 4096
MAX_PART_BYTES = 255  # NAME_MAX of ext4, XFS, btrfs, APFS, NTFS (255 UTF-16 units there)
LATEST = "latest"


def check_artifact_name(name: object) -> str:
    """``name`` if it may name an artifact collection, else ``ArtifactNameError`` saying why."""
    if not isinstance(name, str):
        raise ArtifactNameError(f"an artifact name must be a string; got {type(name).__name__}")
    if _NAME.fullmatch(name) is None or ".." in name:
        why = ("'/' separates the project from the name and can't be part of it" if "/" in name
               else "'..' is not allowed" if ".." in name else
               "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
        raise ArtifactNameError(f"artifact name {_shortened(name, 80)} is not valid: {why}")
    return name


MAX_TYPE_CHARS = 128


def check_artifact_type(type_: object) -> str:
    """``type_`` if a new version may have it as its type, else ``ArtifactNameError`` saying why:
    a non-empty string of at most 128 characters without control characters (a newline or an
    escape sequence would break the one-line-per-version listings). The one check both a client
    and a server apply to new versions; a version already stored with an odd type still reads back
    (listings show such a type with ``printable_type``)."""
    if not isinstance(type_, str) or not type_ or len(type_) > MAX_TYPE_CHARS:
        got = _shortened(type_, 80) if isinstance(type_, str) else type(type_).__name__
        raise ArtifactNameError(f"artifact type must be a non-empty string of at most {MAX_TYPE_CHARS} characters; "
                                f"got {got}")
    if any(_is_control(character) for character in type_):
        raise ArtifactNameError(f"artifact type {_shortened(type_, 80)} is not valid: it has a control "
                                "character (a newline, a tab, an escape, ...)")
    return type_


def printable_type(type_: str) -> str:
    """A stored version's type for a one-line listing: as it is if ``check_artifact_type`` would
    take it, else Python's ``repr`` of it (quoted, control characters escaped)."""
    return repr(type_) if any(_is_control(character) for character in type_) else type_


def _is_control(character: str) -> bool:
    """C0/C1 controls, DEL, and the Unicode line and paragraph separators."""
    return unicodedata.category(character) in ("Cc", "Zl", "Zp")


def is_artifact_name(name: object) -> bool:
    """Whether ``name`` may name an artifact collection (``check_artifact_name`` without the why)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None and ".." not in name


def check_alias(alias: object) -> str:
    """A custom alias: the name character set, and not ``vN`` (version numbers are assigned)."""
    if not isinstance(alias, str) or _NAME.fullmatch(alias) is None or ".." in alias:
        raise ArtifactNameError(f"alias {_shortened(str(alias), 80)} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
                                "starting with a letter or digit")
    if _VERSION.fullmatch(alias):
        raise ArtifactNameError(f"alias {_shortened(alias, 80)} is not allowed: 'vN' names a version and is assigned automatically")
    return alias


def check_movable_alias(alias: object) -> str:
    """An alias someone may point, remove or protect by name (``check_alias``), and not ``latest``:
    that one always names the newest version, so nobody moves it."""
    alias = check_alias(alias)
    if alias == LATEST:
        raise ArtifactNameError("alias 'latest' is not allowed: it always names the newest version and moves by itself")
    return alias


def custom_aliases(aliases: Iterable[object]) -> list[str]:
    """The aliases to give a version out of ``aliases``: each checked (``check_alias``: a bad name
    or a ``vN`` raises ``ArtifactNameError``), ``latest`` left out (it always names the newest
    version, nobody gives it), in their order, each once."""
    return list(dict.fromkeys(check_alias(alias) for alias in aliases if alias != LATEST))


def check_entry_path(path: object) -> str:
    """A file's path inside an artifact, normalized (``./`` parts dropped, ``\\`` kept as a
    character): relative, ``/``-separated, no ``..``, no empty part, no NUL."""
    if not isinstance(path, str):
        raise ArtifactNameError(f"a file name in an artifact must be a string; got {type(path).__name__}")
    if not path or len(path) > MAX_PATH_CHARS:
        raise ArtifactNameError(f"file name {_shortened(path, 80)} in an artifact must have 1-{MAX_PATH_CHARS} characters")
    if "\0" in path:
        raise ArtifactNameError(f"file name {_shortened(path, 80)} in an artifact contains NUL")
    if path.startswith("/"):
        raise ArtifactNameError(f"file name {_shortened(path, 80)} in an artifact must be relative, not absolute")
    parts = [part for part in path.split("/") if part != "."]
    if ".." in parts:
        raise ArtifactNameError(f"file name {_shortened(path, 80)} in an artifact must not contain '..'")
    if not parts or "" in parts[:-1] or parts[-1] == "":
        raise ArtifactNameError(f"file name {_shortened(path, 80)} in an artifact has an empty part (a leading, doubled or "
                                "trailing '/')")
    return "/".join(parts)


def check_new_entry_path(path: object) -> str:
    """``check_entry_path`` for a name a draft is given, and each of its parts at most
    ``MAX_PART_BYTES`` in UTF-8: file systems refuse longer names (``NAME_MAX``), so such a
    version could be stored but never downloaded. Manifests already stored are read with
    ``check_entry_path`` alone (their download names the file it can't write)."""
    checked = check_entry_path(path)
    for part in checked.split("/"):
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > MAX_PART_BYTES:
            raise ArtifactNameError(f"file name {_shortened(checked, 80)} in an artifact has a part of {size} bytes "
                                    f"({_shortened(part, 40)}); file systems take names of at most {MAX_PART_BYTES} "
                                    "bytes, so it could never be downloaded: shorten it")
    return checked


def partial_path(target: Path) -> Path:
    """A hidden temporary beside ``target`` to write it under, then rename over it:
    ``.<name>.<random>.partial``, or ``.<random>.partial`` where that would be longer than a file
    system takes (a name of 200-255 bytes is allowed; leaving room for a ``.partial`` more that a
    writer adds), so every file a version may hold can be downloaded."""
    import uuid  # here: naming a draft's files (this module's other work) needs no uuid

    token = uuid.uuid4().hex[:12]
    name = f".{target.name}.{token}.partial"
    if len(f"{name}.partial".encode("utf-8", "surrogateescape")) > MAX_PART_BYTES:
        name = f".{token}.partial"
    return target.with_name(name)


def _shortened(text: str, chars: int) -> str:
    return repr(text) if len(text) <= chars else repr(text[:chars]) + "..."


def version_number(selector: str) -> int | None:
    """3 for ``"v3"``, None for an alias."""
    match = _VERSION.fullmatch(selector)
    return int(selector[1:]) if match else None


class ArtifactRef(NamedTuple):
    """A parsed ``[project/]name[:alias|:vN]``; ``selector`` defaults to ``latest``."""

    project: str | None
    name: str
    selector: str

    def __str__(self) -> str:
        prefix = f"{self.project}/" if self.project else ""
        return f"{prefix}{self.name}:{self.selector}"


def parse_ref(text: object) -> ArtifactRef:
    """``"mnist/dataset:v3"``, ``"dataset:best"``, ``"dataset"`` (latest). A leading entity
    (``"entity/project/name"``, W&B's three parts) is ignored: a data root has no entities."""
    if not isinstance(text, str) or not text:
        raise ArtifactNameError(f"an artifact reference must be 'project/name:alias'; got {repr(text)[:80]}")
    head, _, selector = text.partition(":")
    parts = head.split("/")
    if len(parts) > 3:
        raise ArtifactNameError(f"artifact reference {_shortened(text, 80)} has too many '/' parts (use 'project/name:alias')")
    project = parts[-2] if len(parts) >= 2 else None
    name = check_artifact_name(parts[-1])
    if project is not None:
        from tracklet.core.settings import is_valid_name

        if not is_valid_name(project):
            raise ArtifactNameError(f"project {_shortened(project, 80)} in artifact reference {_shortened(text, 80)} is not a valid "
                                    "project name")
    selector = selector or LATEST
    if selector != LATEST and version_number(selector) is None:
        check_alias(selector)
    return ArtifactRef(project, name, selector)
