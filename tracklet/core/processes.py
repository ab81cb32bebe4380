"""Whether a process of this machine is still alive, asked without touching it."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while a process with this id exists (signal 0 checks without sending anything; a
    process of another user answers with ``PermissionError``, which means it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
