"""Where a warning should point: the first frame outside the tracklet package.

tracklet's own layers (the W&B compatibility layer over ``tracklet.Run``, module-level functions
over run methods, helpers over both) put a varying number of frames between the user's call and
``warnings.warn``; a fixed ``stacklevel`` points into tracklet for one path and past the user's
frame (``sys:1``) for another. Walking the stack once per warning (warnings are rare) is exact.
"""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made by the caller of this function that makes
    the warning point at the first frame outside tracklet (the innermost tracklet frame when
    there is none, as on a tracklet thread)."""
    frame = sys._getframe(1)  # the function that will call warnings.warn: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    if frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        return 1
    return level


__all__ = ["user_stacklevel"]
