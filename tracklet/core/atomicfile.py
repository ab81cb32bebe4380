"""Replacing a small file so that readers see the old content or the new, never a part.

Credentials, sweep state and the artifact registry each keep small files that another process
may read at any moment; they all write through :func:`replace_atomically`. (Exports, which stream
large files, have their own streaming variant in ``core/export.py``.)
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_atomically(path: Path, data: bytes, *, mode: int = 0o666, durable: bool = True) -> None:
    """Write ``data`` to a hidden file beside ``path`` (created with ``mode``, less the umask),
    ``fsync`` it when ``durable``, and rename it over ``path``. A failure leaves ``path`` as it
    was and removes the temporary file; two writers never share one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
