"""Two actions released at the same moment, for the tests of concurrent writers (a deletion racing
a registry link, on a data root and on real servers)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def race(first: Callable[[], bool], second: Callable[[], bool]) -> tuple[bool, bool]:
    """Run ``first()`` and ``second()`` at once (released together by a barrier); whether each succeeded."""
    start = threading.Barrier(2)

    def go(action: Callable[[], bool]) -> bool:
        start.wait()
        return action()

    with ThreadPoolExecutor(2) as pool:
        done_first, done_second = pool.map(go, [first, second])
    return done_first, done_second
