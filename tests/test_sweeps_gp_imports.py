"""The sweeps' SciPy/torch imports (tracklet/sweeps/gp_imports.py): one thread at a time, and the
GP's in the background, started once."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from gp_gate import block_gp_imports, first_page_resident

from tracklet.sweeps import gp_imports

AFTER_GATE = """
import sys
# what another thread imports meanwhile: was the GP thread's import done when this one ran?
RAN_AFTER_RELEASE = sys.modules["tracklet_test_gate"].release.is_set()
"""


def test_an_import_from_another_thread_waits_for_the_module_the_gp_thread_is_importing(tmp_path, monkeypatch):
    """Two threads importing SciPy's circular modules at once hand one a partly initialised module
    (ImportError: it stopped a bayes agent). A request importing through ``serialized_import``
    (``scipy.stats`` for a normal parameter, ``optuna.importance``) while the GP's thread imports
    waits for that module to be imported whole, then imports its own."""
    release = block_gp_imports(tmp_path, monkeypatch)
    (tmp_path / "gp_gate_modules" / "tracklet_test_after_gate.py").write_text(AFTER_GATE)
    monkeypatch.delitem(sys.modules, "tracklet_test_after_gate", raising=False)
    loading = gp_imports.start()
    assert loading is not None
    try:
        assert sys.modules["tracklet_test_gate"].entered.wait(20)  # the GP thread is inside its import
        other = threading.Thread(target=gp_imports.serialized_import, args=("tracklet_test_after_gate",))
        other.start()
        other.join(1.0)  # an import that didn't wait would be done by now
    finally:
        release.set()
    other.join()
    loading.join()
    assert sys.modules["tracklet_test_after_gate"].RAN_AFTER_RELEASE


def test_background_imports_that_failed_are_not_started_again(tmp_path, monkeypatch):
    """A server starts the GP's imports from every new sweep controller: imports that failed (a
    broken torch) must not start again each time (seconds of CPU each); the first GP ask imports
    and reports the error."""
    block_gp_imports(tmp_path, monkeypatch)  # a clean slate: no thread, nothing failed yet
    monkeypatch.setattr(gp_imports, "GP_MODULES", ("tracklet_test_no_such_module", *gp_imports.GP_MODULES))
    thread = gp_imports.start()
    assert thread is not None
    thread.join()
    assert gp_imports.start() is None and not gp_imports.importing()
    with pytest.raises(ImportError):
        gp_imports.serialized_import(*gp_imports.GP_MODULES)


def test_a_process_exiting_while_the_gp_imports_run_lets_them_end_first(tmp_path):
    """Python ends a daemon thread still running at exit wherever it is; inside torch's import
    (C++) that aborted the process (``terminate called after throwing an instance of ''``, exit
    status 134: a server stopped seconds after it started and began the imports). The exit now
    waits for the import thread. Here the first GP module, in a fresh interpreter, takes a moment
    and then writes a file: the main thread exits at once, and the file must be there after."""
    import os
    import subprocess
    import textwrap

    from conftest import REPO

    done = tmp_path / "import-finished"
    (tmp_path / "tracklet_test_slow_import.py").write_text(textwrap.dedent(f"""
        import pathlib, time
        time.sleep(1.0)  # the import is still running when the main thread exits
        pathlib.Path({str(done)!r}).write_text("whole")
    """))
    script = textwrap.dedent("""
        from tracklet.sweeps import gp_imports
        gp_imports.SHARED_LIBRARIES = ()  # straight to the import (the exit stops a page-cache warm-up: below)
        gp_imports.GP_MODULES = ("tracklet_test_slow_import",)
        assert gp_imports.start() is not None
        print("main thread exits")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "main thread exits"
    assert done.read_text() == "whole"


def test_finalizers_the_gp_imports_make_while_the_process_exits_run_at_exit_not_at_teardown(tmp_path):
    """torch's import makes ``weakref.finalize`` objects (``torch.library``'s ``_del_library``); a
    ``tracklet agent`` exiting while the import thread ran printed "Exception ignored in: <finalize
    object ...> TypeError: 'NoneType' object is not callable" once per finalizer: the exit's wait for
    the thread ran as an ``atexit`` callback, so finalizers made during it missed weakref's own
    ``atexit`` pass and ran at module teardown, their module's globals gone (or never ran). Here the
    GP module, in a fresh interpreter, makes such a finalizer a moment after the main thread exits:
    it must run at exit, with its module whole."""
    import os
    import subprocess
    import textwrap

    from conftest import REPO

    ran = tmp_path / "finalizer-ran"
    (tmp_path / "tracklet_test_finalizing_import.py").write_text(textwrap.dedent(f"""
        import pathlib, time, weakref
        time.sleep(1.0)  # the import is still running when the main thread exits

        class Library:
            pass

        def _release(path):
            pathlib.Path(path).write_text("at exit")

        def _del_library(path):
            _release(path)  # a module global, None at teardown

        library = Library()
        weakref.finalize(library, _del_library, {str(ran)!r})
    """))
    script = textwrap.dedent("""
        from tracklet.sweeps import gp_imports
        gp_imports.SHARED_LIBRARIES = ()
        gp_imports.GP_MODULES = ("tracklet_test_finalizing_import",)
        assert gp_imports.start() is not None
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])})
    assert result.returncode == 0, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    assert ran.read_text() == "at exit"


SHARED_LIBRARY = """
import sys
from gp_gate import first_page_resident
# imported by the GP's import thread: were the package's libraries in the page cache by then?
CACHED_AT_IMPORT = [first_page_resident(path) for path in sys.modules["tracklet_test_libs"].paths]
"""


def _drop_from_page_cache(path) -> bool:
    """Drop ``path``'s pages from the page cache; whether its first page is out. The kernel skips a
    page it holds elsewhere for a moment (taken off its list by reclaim under memory pressure, in
    another CPU's batch): ci39 saw one drop not take under the full suite's load, so it is retried."""
    import os
    import time

    for _ in range(50):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages can't be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        if not first_page_resident(str(path)):
            return True
        time.sleep(0.02)
    return False


def _package_of_shared_libraries(tmp_path, monkeypatch):
    """A package (not imported) holding copies of a real shared library, dropped from the page
    cache, standing for torch's: ``SHARED_LIBRARIES`` names it. Returns the copies' paths."""
    import shutil
    import types

    import _ctypes

    package = tmp_path / "libpkg" / "tracklet_test_libpkg"
    (package / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    paths = [package / "lib" / "libtest_global_deps.so", package / "_C.test.so", package / "lib" / "libtest_big.so"]
    for path in paths:
        shutil.copyfile(_ctypes.__file__, path)
    if not all([_drop_from_page_cache(path) for path in paths]):
        pytest.skip("this file system keeps the files in the page cache (tmpfs?): nothing to warm")
    monkeypatch.syspath_prepend(str(tmp_path / "libpkg"))
    monkeypatch.setattr(gp_imports, "SHARED_LIBRARIES", (
        ("tracklet_test_libpkg", ("lib/libtest_global_deps.so", "_C.*.so"), ("lib/libtest_big.so",)),))
    monkeypatch.setitem(sys.modules, "tracklet_test_libs", types.SimpleNamespace(paths=[str(p) for p in paths]))
    return paths


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-cache warming is Linux-only")
def test_the_gp_imports_read_their_shared_libraries_into_the_page_cache_in_a_child_first(tmp_path, monkeypatch):
    """CPython holds the interpreter lock through an extension's ``dlopen``: ``import torch`` with
    libtorch out of the page cache read it from disk with the lock held, and the agent's asks
    waited up to ~1 s for the lock (a 1.2 s handoff; issue #17: <= 1 s). The background thread
    first has a child process load the libraries (the disk reads happen there, this thread waits
    without the lock): when the GP's modules are imported, the libraries' pages are cached, and
    nothing of them was loaded into this process."""
    paths = _package_of_shared_libraries(tmp_path, monkeypatch)
    block_gp_imports(tmp_path, monkeypatch).set()  # a clean slate: no thread, nothing failed yet
    (tmp_path / "gp_gate_modules" / "tracklet_test_after_warm.py").write_text(SHARED_LIBRARY)
    monkeypatch.delitem(sys.modules, "tracklet_test_after_warm", raising=False)
    monkeypatch.setattr(gp_imports, "GP_MODULES", ("tracklet_test_after_warm",))
    thread = gp_imports.start()
    assert thread is not None
    thread.join(60)
    loaded, behind = paths[:2], paths[2]  # what the child loads; what torch's _C would load behind them
    assert sys.modules["tracklet_test_after_warm"].CACHED_AT_IMPORT[:2] == [True, True]
    with open("/proc/self/maps") as maps:
        assert not any(str(path) in line for line in maps for path in paths)
    behind.read_bytes()  # as loading the two would have, where it is their dependency
    assert gp_imports.warm_shared_libraries() == []  # all cached: no second child
    if not _drop_from_page_cache(behind):
        pytest.skip("the kernel kept the library's first page in the page cache through 50 drops")
    assert gp_imports.warm_shared_libraries() == [str(path) for path in loaded]  # one cold: the child again


def test_an_exit_while_the_libraries_warm_stops_the_child_and_imports_nothing(tmp_path):
    """The exit waits for an import under way (above), but not for the child warming the page
    cache, which may read a gigabyte from a slow disk: the child is stopped and no import starts."""
    import os
    import subprocess
    import textwrap

    from conftest import REPO

    package = tmp_path / "tracklet_test_libpkg"
    package.mkdir()
    (package / "libslow.so").write_bytes(b"\0" * 4096)
    started = tmp_path / "child-started"
    script = textwrap.dedent(f"""
        import os, pathlib, sys, time
        from tracklet.sweeps import gp_imports
        gp_imports.SHARED_LIBRARIES = (("tracklet_test_libpkg", ("libslow.so",), ()),)
        gp_imports._first_page_cached = lambda path: False  # a cold cache, whatever this disk holds
        gp_imports._WARM_CHILD = ("import os, pathlib, time; pathlib.Path({str(started) + '.tmp'!r}).write_text("
                                  "str(os.getpid())); os.rename({str(started) + '.tmp'!r}, {str(started)!r});"
                                  " time.sleep(300)")  # whole or not there: the exit may stop it at any point
        gp_imports.GP_MODULES = ("tracklet_test_never_imported",)
        assert gp_imports.start() is not None
        while not pathlib.Path({str(started)!r}).exists():
            time.sleep(0.01)
        print("main thread exits")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "main thread exits"
    assert "tracklet_test_never_imported" not in result.stderr  # no import was tried
    child = int(started.read_text())
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:  # killed, not left sleeping as an orphan
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid):
    """Whether process ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
