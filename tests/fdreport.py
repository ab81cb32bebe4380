"""At the end of a pytest process's session, what it still holds open when that is over ``TRACKLET_TEST_FD_REPORT``
descriptors (default 300): their count and the ten commonest kinds (sockets, pipes, pidfds, files by folder), and
the test files during whose tests the count grew most (``/proc/self/fd`` counted before and after each test: ~0.1 ms
with a few hundred open; a session fixture's server counts for the first file using it), on stderr. A run of the
suite left a worker holding over 1,024 (ci53: ``select.select`` then failed in the tests after), and which tests
leak them is found from these lines without rerunning the suite under a tracer."""

from __future__ import annotations

import collections
import os
import re

import pytest


def _kind(target: str) -> str:
    if target.startswith(("socket:", "pipe:")):
        return target.split(":", 1)[0]
    if target.startswith("anon_inode:"):
        return target
    folder = os.path.dirname(target)
    return re.sub(r"/(pytest-\d+|popen-gw\d+|tmp[\w-]{6,})(?=/|$)", "/*", folder)


_grown: collections.Counter[str] = collections.Counter()


def open_targets(under: str = "") -> list[str]:
    """What this process's descriptors point at (``/proc/self/fd`` links), those starting with
    ``under``; also imported by the scripts tests/test_descriptors.py and test_import_mlflow.py run."""
    held = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile (listdir's own)
            continue
        if target.startswith(under):
            held.append(target)
    return held


def _count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc (not Linux)
        return 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before = _count()
    yield
    _grown[item.location[0]] += _count() - before


def pytest_sessionfinish(session, exitstatus) -> None:
    try:
        held = open_targets()
    except OSError:  # no /proc (not Linux)
        return
    if len(held) <= int(os.environ.get("TRACKLET_TEST_FD_REPORT", "300")):
        return
    kinds = collections.Counter(_kind(target) for target in held)
    commonest = "; ".join(f"{count} {kind}" for kind, count in kinds.most_common(10))
    grown = "; ".join(f"{path} +{count}" for path, count in _grown.most_common(5) if count > 0)
    os.write(2, f"\nfdreport: pid {os.getpid()} holds {len(held)} descriptors at the session's end: {commonest}\n"
                f"fdreport: its count grew most during the tests of: {grown or 'none'}\n".encode())
