"""A GP import that blocks until the test releases it: stands for the GP's background imports
(``tracklet.sweeps.gp_imports``) outlasting the start-up trials (short trials, a loaded
machine), so a test can check that no ask waits for them and what an ask does meanwhile."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

BLOCKED_IMPORT = """
import sys
# imported by the GP's import thread: stands for a GP import that outlasts the start-up trials
sys.modules["tracklet_test_gate"].entered.set()
if not sys.modules["tracklet_test_gate"].release.wait(20):
    raise ImportError("the test never released the import")
"""


def block_gp_imports(tmp_path: Path, monkeypatch: Any) -> threading.Event:
    """Put a module first in ``gp_imports.GP_MODULES`` whose import waits for the returned event
    (set it to let the imports go on). Waits first for an import thread an earlier test started."""
    from tracklet.sweeps import gp_imports

    running = gp_imports.running()
    if running is not None:
        running.join()
    gate = types.ModuleType("tracklet_test_gate")
    release = threading.Event()
    gate.release = release  # type: ignore[attr-defined]
    gate.entered = threading.Event()  # type: ignore[attr-defined]  # set once the blocked import began
    monkeypatch.setitem(sys.modules, "tracklet_test_gate", gate)
    folder = tmp_path / "gp_gate_modules"
    folder.mkdir()
    (folder / "tracklet_test_blocked_import.py").write_text(BLOCKED_IMPORT)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "tracklet_test_blocked_import", raising=False)
    monkeypatch.setattr(gp_imports, "GP_MODULES", ("tracklet_test_blocked_import", *gp_imports.GP_MODULES))
    monkeypatch.setattr(gp_imports, "_imported", set(gp_imports._imported) - {"tracklet_test_blocked_import"})
    monkeypatch.setattr(gp_imports, "_failed", False)
    return release


def watch_gp_asks(monkeypatch: Any) -> list[int]:
    """The numbers of the trials Optuna's GPSampler is asked for from now on (the real sampler,
    watched; a start-up ask is one too: it answers {})."""
    import optuna

    asked: list[int] = []
    plain: Callable[..., Any] = optuna.samplers.GPSampler.sample_relative

    def watched(self: Any, study: Any, trial: Any, search_space: Any) -> Any:
        asked.append(trial.number)
        return plain(self, study, trial, search_space)

    monkeypatch.setattr(optuna.samplers.GPSampler, "sample_relative", watched)
    return asked


def trials_while_blocked(run_trial: Callable[[], None], count: int, release: threading.Event,
                         loading: threading.Thread) -> None:
    """Run ``count`` trials while the imports are blocked (none may wait for them: the import
    thread is still alive after them), then release the imports, wait for them, and run one more."""
    try:
        for _ in range(count):
            run_trial()
        assert loading.is_alive()  # no ask waited for the imports
    finally:
        release.set()
    loading.join()
    run_trial()


def first_page_resident(path: str) -> bool:
    """Whether the first page of ``path`` is in the page cache, by ``mincore`` (Linux), which,
    unlike a read (even one with ``RWF_NOWAIT``), starts no read-ahead: a test can look without
    warming what it looks at. True to the cache only for a file this process owns or may write
    (for others Linux reports every page resident): the tests' files are their own copies."""
    import ctypes
    import mmap
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap of {path}")
        try:
            vector = ctypes.create_string_buffer(1)
            if libc.mincore(address, mmap.PAGESIZE, vector) != 0:
                raise OSError(ctypes.get_errno(), f"mincore of {path}")
            return bool(vector.raw[0] & 1)
        finally:
            libc.munmap(address, mmap.PAGESIZE)
    finally:
        os.close(fd)
