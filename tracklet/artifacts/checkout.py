"""``Artifact.checkout(root)``: make a directory hold exactly a version's files (W&B's ``checkout``).

Every file under ``root`` that the version's manifest doesn't name is removed, then the version
is downloaded there (files already right are left alone). Deleting is what can go wrong, so
``root`` is checked first, and the checks are the whole point of this module:

- only entries under ``root`` are removed: the walk never follows a symbolic link (a link under
  ``root``, to a file or a directory, is removed as a link; what it points at is never touched),
  and ``root`` itself may not be a link;
- ``root`` must be a directory of this artifact: absent, empty, or (1) holding at least one
  non-empty file at a path the version names with the content it has in this version or in one of
  the artifact's recent versions, and (2) most of its entries (more than half) at paths this
  version or a recent one names. A file name alone (``README.md``, ``config.json``) is no
  evidence, and neither is one file many projects share byte for byte (a stock LICENSE,
  ``.gitignore`` or README): a project holding the artifact's LICENSE has most of its files
  elsewhere, and would have lost them all. A checkout or download of the artifact, edited or
  with files added, is mostly the artifact's. Any other directory is refused, so a mistyped
  ``root`` (``"."``, a home directory, a source tree) loses nothing;
- never the file system's root, the home directory, the working directory or a directory above
  it, nor anything inside the data root or above it (its store holds every version's bytes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from tracklet.errors import ArtifactError


def _refuse(root: Path, name: str, why: str) -> ArtifactError:
    return ArtifactError(f"artifact {name}: checkout(root={str(root)!r}) refused: {why}; nothing was removed")


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def check_root(root: Path, manifest_paths: set[str], name: str, data_root: Path | None,
               known: Callable[[dict[str, str]], bool] = lambda found: True,
               artifact_paths: Callable[[], set[str]] = set) -> None:
    """Raise ``ArtifactError`` unless ``root`` may be emptied of files the version doesn't name
    (the module's rules); nothing is removed here. ``known({relative path: absolute path})`` of
    the files at paths the version names: whether one has a content of the artifact's;
    ``artifact_paths()``: the paths the artifact's recent versions name, besides this version's
    (more than half of ``root``'s entries must be at one). Both are called only for a root that
    holds files."""
    if root.is_symlink():
        raise _refuse(root, name, "it is a symbolic link (give the directory itself)")
    if root.exists() and not root.is_dir():
        raise _refuse(root, name, "it is not a directory")
    real = Path(os.path.realpath(root))
    protected = {Path(real.anchor): "the file system's root", Path(os.path.realpath(Path.home())): "the home directory"}
    for directory, what in protected.items():
        if real == directory:
            raise _refuse(root, name, f"it is {what}")
    if _inside(Path(os.path.realpath(os.getcwd())), real):
        raise _refuse(root, name, "it is the working directory or a directory above it")
    if data_root is not None:
        store = Path(os.path.realpath(data_root))
        if _inside(real, store) or _inside(store, real):
            raise _refuse(root, name, f"it is inside tracklet's data root {store} or above it")
    if not root.exists():
        return
    found: list[str] = []
    named: dict[str, str] = {}
    for path, full in _files(root):
        found.append(path)
        if path in manifest_paths and not os.path.islink(full) and len(named) < 64:
            named[path] = full
    if not found:
        return
    if not (named and known(named)):
        raise _refuse(root, name, "it holds files and none of them is a file of this version with content "
                                  "the artifact has (an empty file is no evidence), so it is not a directory of this artifact (check "
                                  "out into a new or empty directory)")
    ours = manifest_paths | artifact_paths()
    others = [path for path in found if path not in ours]
    total, at_ours = len(found), len(found) - len(others)
    if 2 * at_ours <= total:
        shown = ", ".join(repr(path) for path in others[:3]) + (", ..." if len(others) > 3 else "")
        raise _refuse(root, name, f"only {at_ours} of its {total} files are at paths this artifact's versions "
                                  f"name (the others: {shown}); a file it shares with the artifact (a stock LICENSE "
                                  "or README) is no evidence that it is the artifact's, and checkout removes files "
                                  "only from a directory most of whose files are the artifact's (check out into a "
                                  "new or empty directory, or move the files that aren't the artifact's out first)")


def _files(root: Path) -> Any:
    """``(relative posix path, absolute path)`` of every non-directory entry under ``root``
    (links included, never followed); directories are walked bottom-up after their entries."""
    for base, directories, names in os.walk(root, followlinks=False):
        for entry in names + [d for d in directories if os.path.islink(os.path.join(base, d))]:
            full = os.path.join(base, entry)
            yield Path(full).relative_to(root).as_posix(), full


def remove_extra(root: Path, manifest_paths: set[str]) -> list[str]:
    """Remove every entry under ``root`` that is not a file the version names (links always: the
    download makes real files), then the directories left empty that no file of it is in;
    returns the removed paths (relative). ``check_root`` first."""
    if not root.exists():
        return []
    keep_dirs = {path.rsplit("/", 1)[0] for path in manifest_paths if "/" in path}
    for path in list(keep_dirs):
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            keep_dirs.add(path)
    removed = []
    for relative, full in list(_files(root)):
        if relative not in manifest_paths or os.path.islink(full):
            os.unlink(full)  # a link is removed as a link: what it points at is not touched
            removed.append(relative)
    for base, _, _ in sorted(os.walk(root, followlinks=False), key=lambda item: -len(item[0])):
        relative = Path(base).relative_to(root).as_posix()
        if relative != "." and relative not in keep_dirs and not os.listdir(base):
            os.rmdir(base)
    return removed


__all__ = ["check_root", "remove_extra"]
