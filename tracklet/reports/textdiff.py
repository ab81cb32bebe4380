"""A unified diff of two versions of a report, in bounded time.

``difflib``'s matcher is quadratic in the lines it compares: two 1 MiB documents of 40k differing
lines take minutes. Lines the versions share at the start and the end (an edit is usually local)
are set aside first; the changed middle is diffed line by line when it is small enough
(``MAX_PAIRS`` line pairs, well under a second), and otherwise shown as one hunk that removes the
old middle and adds the new one: a correct diff, just not the smallest.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator

MAX_PAIRS = 1_000_000  # lines of the old middle times lines of the new one, for difflib
CONTEXT = 3
_HUNK = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


def _range(start: int, count: int) -> str:
    """A hunk range as ``diff -u`` writes it (``start,count``; an empty range names the line before)."""
    if count == 1:
        return f"{start + 1}"
    return f"{start + 1 if count else start},{count}"


def unified_diff(old: list[str], new: list[str], fromfile: str, tofile: str) -> str:
    """``difflib.unified_diff(old, new, fromfile, tofile)`` (lines with their endings; a last
    line without one is marked ``\\ No newline at end of file``), in bounded time."""
    prefix = 0
    most = min(len(old), len(new))
    while prefix < most and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < most - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    if prefix == len(old) == len(new):
        return ""
    start = max(0, prefix - CONTEXT)
    old_part = old[start:len(old) - max(0, suffix - CONTEXT)]
    new_part = new[start:len(new) - max(0, suffix - CONTEXT)]
    middle = (len(old) - prefix - suffix) * (len(new) - prefix - suffix)
    lines = (_shifted(difflib.unified_diff(old_part, new_part, fromfile, tofile, n=CONTEXT), start)
             if middle <= MAX_PAIRS else _one_hunk(old, new, prefix, suffix, start, fromfile, tofile))
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _shifted(lines: Iterator[str], offset: int) -> Iterator[str]:
    """Hunk headers of a diff of slices starting at line ``offset``, renumbered for the whole."""
    for line in lines:
        match = _HUNK.match(line) if line.startswith("@@") else None
        if match is None or not offset:
            yield line
            continue
        old_start, old_count, new_start, new_count = match.groups()
        old_count, new_count = old_count or "", new_count or ""
        # difflib names an empty range by the line before it (start 0 for the very start).
        yield (f"@@ -{int(old_start) + offset}{old_count} +{int(new_start) + offset}{new_count} @@"
               + line[match.end():])


def _one_hunk(old: list[str], new: list[str], prefix: int, suffix: int, start: int, fromfile: str,
              tofile: str) -> Iterator[str]:
    old_end, new_end = len(old) - max(0, suffix - CONTEXT), len(new) - max(0, suffix - CONTEXT)
    yield f"--- {fromfile}\n"
    yield f"+++ {tofile}\n"
    yield f"@@ -{_range(start, old_end - start)} +{_range(start, new_end - start)} @@\n"
    for line in old[start:prefix]:
        yield " " + line
    for line in old[prefix:len(old) - suffix]:
        yield "-" + line
    for line in new[prefix:len(new) - suffix]:
        yield "+" + line
    for line in old[len(old) - suffix:old_end]:
        yield " " + line
