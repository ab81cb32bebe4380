"""Terminal messages (``wandb.termlog`` and friends) and the one-time "not yet supported" warnings.

Every W&B call tracklet cannot honour yet is accepted and reported once per process, as a
``TrackletWarning`` naming the call and what happens instead; it never raises.
"""

from __future__ import annotations

import sys
import warnings

from tracklet.core import forksafe
from tracklet.core.encoder import TrackletWarning
from tracklet.core.stack import user_stacklevel

PREFIX = "wandb: "
_lock = forksafe.lock()
_said: set[str] = set()
_warned: set[str] = set()


def _emit(text: str, *, newline: bool, repeat: bool, prefix: bool, label: str = "") -> None:
    text = str(text)
    if not repeat:
        with _lock:
            if text in _said:
                return
            _said.add(text)
    lead = (PREFIX + label) if prefix else ""
    lines = "\n".join(lead + line for line in text.split("\n")) if prefix else text
    try:
        sys.stderr.write(lines + ("\n" if newline else ""))
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed stderr must not stop training
        pass


def termlog(string: str = "", newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    """Print ``wandb: <string>`` to stderr (``repeat=False``: only the first time this text comes)."""
    _emit(string, newline=newline, repeat=repeat, prefix=prefix)


def termwarn(string: str, newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    """Print ``wandb: WARNING <string>`` to stderr."""
    _emit(string, newline=newline, repeat=repeat, prefix=prefix, label="WARNING ")


def termerror(string: str, newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    """Print ``wandb: ERROR <string>`` to stderr."""
    _emit(string, newline=newline, repeat=repeat, prefix=prefix, label="ERROR ")


def warn_once(key: str, message: str) -> None:
    """Warn with ``message`` the first time ``key`` comes up in this process. The warning points
    at the first frame outside tracklet (the user's line, or the framework's), however many
    compat-layer frames lie between."""
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(f"tracklet (wandb compat): {message}", TrackletWarning, stacklevel=user_stacklevel())


def not_supported(call: str, instead: str = "it is ignored") -> None:
    """The standard once-per-process warning for a W&B call or argument tracklet doesn't support."""
    warn_once(call, f"{call} is not yet supported; {instead}")
