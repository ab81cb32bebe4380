"""What an ``OSError`` met while storing or downloading an artifact becomes: an ``ArtifactError``
naming the file at fault and what went wrong, and for a full disk (or quota), which disk.

An ``OSError`` from ``write()`` carries no file name, so the raw error of a full disk said only
"No space left on device", and storing called every failure a failure to *read*; these messages
name the source file and the directory the bytes were going to instead.
"""

from __future__ import annotations

import errno
from pathlib import Path

from tracklet.errors import ArtifactError

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(error: OSError) -> bool:
    """Whether ``error`` says the disk (or the user's quota) is full."""
    return error.errno in _NO_SPACE


def _reason(error: OSError, source: str | Path | None) -> str:
    reason = error.strerror or str(error)
    where = error.filename2 or error.filename
    # tracklet's own temporaries (``.partial``) mean nothing to the reader: the source is named.
    if where is not None and str(where) != str(source) and not str(where).endswith(".partial"):
        reason += f" ({where})"
    return reason


def store_error(name: str, error: OSError, source: str | Path | None, store: str | Path) -> ArtifactError:
    """The error for artifact ``name`` whose file ``source`` (its path on disk, or None when no one
    file is at fault) could not be stored in the artifact store at ``store``."""
    what = f"can't store {source}" if source is not None else "can't store its files"
    message = f"artifact {name!r}: {what}: {_reason(error, source)}"
    if is_no_space(error):
        message += (f"; the disk holding the artifact store ({store}) is full: free space there, or point "
                    "TRACKLET_ARTIFACT_DIR at a disk with room, and log it again")
    return ArtifactError(message)


def download_error(qualified_name: str, path: str, target: Path, error: OSError) -> ArtifactError:
    """The error for file ``path`` of version ``qualified_name`` that could not be written to
    ``target``."""
    message = f"artifact {qualified_name}: can't download {path} to {target}: {_reason(error, target)}"
    if is_no_space(error):
        message += f"; the disk holding {target.parent} is full: free space there, or download to another root"
    return ArtifactError(message)
