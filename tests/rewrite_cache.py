"""Write pytest's cache of the test modules' rewritten assertions before the test phase (.ci/run).

pytest rewrites each test module's asserts as it imports it, and keeps the result in a special pyc beside
the module, which it reads back even where it writes none; where PYTHONDONTWRITEBYTECODE is set (the CI
machine) it writes none, so every pytest process parses, rewrites and compiles the ~400 test modules again:
each xdist worker imports them all to collect, ~18 s of CPU a worker on a 2-core VM (collection 49 -> 31 s
of CPU with the cache). This writes that cache once, as pytest itself would (the same rewrite, the same
file, checked by pytest against the module's source before use), so the workers read it.

Run as ``python tests/rewrite_cache.py``; it never fails a build: where pytest's internals differ it says
so and exits 0, and the workers rewrite the modules themselves as before.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# What pytest rewrites here: the test modules (python_files' default), conftest.py and the plugin modules
# conftest names in pytest_plugins.
PLUGINS = ("exitguard.py", "fdreport.py")


def main() -> int:
    try:
        from _pytest.assertion.rewrite import PYC_TAIL, _rewrite_test, _write_pyc, get_cache_dir
    except ImportError as error:
        print(f"rewrite_cache: pytest's rewrite internals moved ({error}); the workers rewrite the modules")
        return 0

    class State:  # what _write_pyc asks of pytest's AssertionState: a trace for a failed write
        @staticmethod
        def trace(message: str) -> None:
            print(f"rewrite_cache: {message}")

    files = sorted(TESTS.glob("test_*.py")) + [TESTS / "conftest.py"] + [TESTS / name for name in PLUGINS]
    written = 0
    for path in files:
        try:
            source_hash, code = _rewrite_test(path, None)  # type: ignore[arg-type]  # no config: the defaults
            cache = get_cache_dir(path)
            cache.mkdir(parents=True, exist_ok=True)
            written += bool(_write_pyc(State, code, source_hash, cache / (path.name[:-3] + PYC_TAIL)))  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - pytest internals differing here only cost the workers the rewrite
            print(f"rewrite_cache: {path.name}: {error!r}; pytest rewrites it itself")
    print(f"rewrite_cache: {written} of {len(files)} modules' rewritten code cached")
    return 0


if __name__ == "__main__":
    sys.exit(main())
