"""The diff of two report versions (tracklet/reports/textdiff.py): what difflib gives where the
changed middle is small, and a correct (applicable) diff where it is too big to match line by
line, so a diff's cost is bounded whatever two versions hold."""

from __future__ import annotations

import difflib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tracklet.reports import textdiff


def _difflib(old: list[str], new: list[str]) -> str:
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in difflib.unified_diff(old, new, "a", "b"))


def _apply(old: list[str], diff: str) -> list[str]:
    """``old`` with a unified diff applied (hunks in order)."""
    out: list[str] = []
    position = 0
    lines = diff.splitlines(keepends=True)[2:]
    i = 0
    while i < len(lines):
        start, count = re.match(r"@@ -(\d+)(?:,(\d+))?", lines[i]).groups()
        start = int(start) - (1 if count != "0" else 0)
        out += old[position:start]
        position = start
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            line = lines[i]
            i += 1
            no_newline = i < len(lines) and lines[i].startswith("\\ No newline")
            text = line[1:-1] if no_newline else line[1:]
            if no_newline:
                i += 1
            if line[0] in " -":
                assert old[position] == text
                position += 1
            if line[0] in " +":
                out.append(text)
    return out + old[position:]


_LINES = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "\n", "# t\n", "x"]), max_size=40)


def _whole(lines: list[str]) -> list[str]:
    """A text's lines: only the last may lack its newline."""
    return [line if line.endswith("\n") or n == len(lines) - 1 else line + "\n" for n, line in enumerate(lines)]


@settings(max_examples=300, deadline=None)
@given(_LINES, _LINES)
def test_a_small_change_is_matched_line_by_line_and_applies(old, new):
    old, new = _whole(old), _whole(new)
    diff = textdiff.unified_diff(old, new, "a", "b")
    assert (diff == "") == (old == new)
    if diff:
        assert _apply(old, diff) == new


def test_a_local_edit_reads_as_difflib_writes_it():
    old = [f"line {n}\n" for n in range(30)]
    new = old[:10] + ["inserted\n"] + old[10:19] + ["changed 19\n"] + old[20:28]
    assert textdiff.unified_diff(old, new, "a", "b") == _difflib(old, new)
    assert "@@ -8,6 +8,7 @@" in _difflib(old, new)  # renumbered for the whole text


@settings(max_examples=300, deadline=None)
@given(_LINES, _LINES)
def test_a_change_too_big_to_match_is_one_hunk_that_applies(old, new):
    old, new = _whole(old), _whole(new)
    limit, textdiff.MAX_PAIRS = textdiff.MAX_PAIRS, -1  # every change is "too big"
    try:
        diff = textdiff.unified_diff(old, new, "a", "b")
    finally:
        textdiff.MAX_PAIRS = limit
    assert (diff == "") == (old == new)
    if diff:
        assert diff.count("\n@@ ") == 1
        assert _apply(old, diff) == new


def test_two_big_versions_that_differ_everywhere_are_not_matched_line_by_line():
    old = [f"line {n}\n" for n in range(40_000)]
    new = [f"line {n}\n" if n % 2 else f"changed {n}\n" for n in range(40_000)]
    diff = textdiff.unified_diff(old, new, "a", "b")  # difflib takes minutes on these
    assert diff.count("\n@@ ") == 1 and _apply(old, diff) == new
