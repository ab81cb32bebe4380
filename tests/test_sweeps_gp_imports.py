"""The sweeps' SciPy/torch imports (tracklet/sweeps/gp_imports.py): one thread at a time, and the
GP's in the background, started once."""

from __future__ import annotations

import sys
import threading

import pytest
from gp_gate import block_gp_imports

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
        gp_imports.GP_MODULES = ("tracklet_test_slow_import",)
        assert gp_imports.start() is not None
        print("main thread exits")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "main thread exits"
    assert done.read_text() == "whole"
