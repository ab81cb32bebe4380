"""Sizes and durations as people write them in settings and on the command line: ``64MiB``,
``10GB``, ``5%`` (of a whole), ``1d``, ``12h``. Kept tiny and dependency-free; the parsers raise
``ValueError`` naming the text, so a bad environment variable is reported, not guessed at."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str | int, *, whole: int | None = None) -> int:
    """Bytes in ``text``: a number with an optional unit (``k``/``KB`` = 1000, ``KiB`` = 1024, up
    to ``T``/``TiB``), or ``N%`` of ``whole`` when ``whole`` is given."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size can't be negative: {text}")
        return text
    stripped = text.strip()
    if stripped.endswith("%") and whole is not None:
        try:
            percent = float(stripped[:-1])
        except ValueError:
            raise ValueError(f"not a percentage: {text!r}") from None
        if not 0 <= percent <= 100:
            raise ValueError(f"a percentage is between 0 and 100: {text!r}")
        return int(whole * percent / 100)
    match = _SIZE.fullmatch(stripped.lower())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 1048576, 64MiB, 10GB"
                         + (", 5%)" if whole is not None else ")"))
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def parse_duration(text: str | float) -> float:
    """Seconds in ``text``: a number with an optional unit (``s``, ``m``, ``h``, ``d``, ``w``)."""
    if isinstance(text, (int, float)):
        return float(text)
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None or match.group(2) not in _DURATION_UNITS:
        raise ValueError(f"not a duration: {text!r} (examples: 0, 90s, 30m, 12h, 1d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
