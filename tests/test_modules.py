"""A module another thread is still importing counts as not loaded (tracklet/core/modules.py), for
every lookup tracklet makes of a module it did not import itself: values logged meanwhile are
recorded, not dropped with "partially initialized module"."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import tracklet
from tracklet.core.modules import loaded

CHECKOUT = Path(__file__).resolve().parents[1]


def test_a_module_counts_as_loaded_once_its_import_is_done(tmp_path, monkeypatch):
    """A module whose import blocks on an Event in another thread: in ``sys.modules`` with some of
    its names, not loaded; loaded (the same object) once its code has run."""
    (tmp_path / "tracklet_test_slowmod.py").write_text(
        "import threading\n"
        "FIRST = 1\n"
        "inside, go = threading.Event(), threading.Event()\n"
        "import builtins\n"
        "builtins._tracklet_test_slowmod = (inside, go)\n"
        "inside.set()\n"
        "go.wait(30)\n"
        "LAST = 2\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins

    importer = threading.Thread(target=__import__, args=("tracklet_test_slowmod",))
    importer.start()
    try:
        while not hasattr(builtins, "_tracklet_test_slowmod"):
            threading.Event().wait(0.001)
        inside, go = builtins._tracklet_test_slowmod
        assert inside.wait(30)
        half = sys.modules["tracklet_test_slowmod"]
        assert half.FIRST == 1 and not hasattr(half, "LAST") and loaded("tracklet_test_slowmod") is None
    finally:
        go.set()
        importer.join(30)
        del builtins._tracklet_test_slowmod
    monkeypatch.delitem(sys.modules, "tracklet_test_slowmod")
    monkeypatch.setitem(sys.modules, "tracklet_test_slowmod", half)
    assert loaded("tracklet_test_slowmod") is half and half.LAST == 2
    assert loaded("tracklet_test_no_such_module") is None


def test_rows_logged_while_another_thread_imports_numpy_are_recorded(root):
    """The sender thread encodes a batch's columns with numpy when the program has imported it.
    Here the training thread logs while another thread's ``import numpy`` is stuck partway (the
    real numpy, held by an import hook in its first submodule's code): every row is recorded."""
    script = textwrap.dedent("""
        import importlib.machinery, os, sys, threading
        from decimal import Decimal
        from fractions import Fraction

        inside, go = threading.Event(), threading.Event()
        PID, held = os.getpid(), []

        class Hold:  # holds numpy's import in its first submodule's code: "numpy" is in sys.modules, half done
            def find_spec(self, name, path=None, target=None):  # (a finder only finds: imports go on meanwhile)
                if not name.startswith("numpy.") or held or os.getpid() != PID:
                    return None
                held.append(name)
                spec = importlib.machinery.PathFinder.find_spec(name, path, target)
                real = spec.loader

                class Held:
                    def create_module(self, spec):
                        return real.create_module(spec)

                    def exec_module(self, module):
                        inside.set()
                        go.wait(60)
                        real.exec_module(module)

                spec.loader = Held()
                return spec

        sys.meta_path.insert(0, Hold())
        import tracklet

        run = tracklet.init(project="mid", settings={"console": "off", "capture_environment": False,
                                                     "system_metrics": False})
        importer = threading.Thread(target=__import__, args=("numpy",))
        importer.start()
        assert inside.wait(60)
        assert "numpy" in sys.modules and not hasattr(sys.modules["numpy"], "asarray")
        from tracklet.core import wire  # the sender's column encoding, asked directly too

        steps = [3 * i for i in range(300)]
        assert wire.packed_varints(steps, zigzag=True) == wire._varints_each(steps, True)
        for i in range(300):  # steps with gaps: the step column is encoded value by value, or with numpy
            run.log({"loss": i / 2, "n": 7 * i, "d": Decimal(i) / 4, "f": Fraction(i, 3)}, step=3 * i)
        finished = threading.Thread(target=run.finish)
        finished.start()
        finished.join(60)
        assert not finished.is_alive(), "finish() waited for numpy's import"
        go.set()
        importer.join(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "TRACKLET_CAPTURE_WAIT": "0.1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "partially initialized" not in done.stderr, done.stderr
    (recorded,) = tracklet.Api(root).runs("mid")
    history = recorded.history()
    assert history["n"] == [7 * i for i in range(300)] and history["loss"] == [i / 2 for i in range(300)]
    assert len(history["d"]) == len(history["f"]) == 300


def test_tracklet_reads_a_module_it_did_not_import_through_loaded():
    """The rule, held for code to come: outside core/modules.py, a module is taken from
    ``sys.modules`` directly only where any state will do, said so in a comment ("any state") on
    the line or the one before (the running program, the import system, a module's file)."""
    offenders = []
    for path in sorted((CHECKOUT / "tracklet").rglob("*.py")):
        if path.name == "modules.py" and path.parent.name == "core":
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if re.search(r"sys\.modules(\.get\(|\[)", line) and not any(
                    "any state" in near for near in lines[max(0, number - 1):number + 1]):
                offenders.append(f"{path.relative_to(CHECKOUT)}:{number + 1}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
