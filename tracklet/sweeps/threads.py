"""One thread for the BLAS and PyTorch pools while a GP suggestion is computed.

A GP ask (Optuna's ``GPSampler``) is thousands of tiny numerical calls: SciPy's L-BFGS-B steps
(``setulb``, on SciPy's own OpenBLAS since SciPy 1.15), NumPy and PyTorch operations on arrays of
a few dozen rows. With the pools at their default (a thread per core) every call wakes and then
spins the pool's threads: on 2 cores a GP ask at 10-18 trials took 300-1,300 ms of CPU, and 60-260
ms with OpenBLAS at one thread (benchmarks/sweeps.py, handoff); a 16-core machine spins 16.

Optuna limits PyTorch around parts of the ask and sets ``OPENBLAS_NUM_THREADS``, which OpenBLAS
reads only when it is loaded, long before the first ask: too late for both the NumPy and the SciPy
OpenBLAS. :func:`one_thread` sets every OpenBLAS loaded in this process (found in
``/proc/self/maps``; pip's NumPy and SciPy wheels each bring one) and PyTorch to one thread for the
whole ask, and puts them back after it, so the agent's own process (``wandb.agent(function=)``
trains in it) keeps its threads. Elsewhere than Linux (macOS: Accelerate) only PyTorch is set.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
from collections.abc import Iterator
from typing import Any

_PREFIXES = ("openblas", "scipy_openblas")  # the wheels' OpenBLAS builds name their symbols so
_SUFFIXES = ("", "64_", "_64")  # 64-bit integer builds add one of these

_lock = threading.Lock()
_depth = 0  # asks inside one_thread now (a server's sweeps ask from several threads)
_saved: list[tuple[Any, int]] = []  # (setter, threads before) to put back when the last one leaves
_found: dict[str, tuple[Any, Any] | None] = {}  # library path -> (get, set) functions, or None


def openblas_controls() -> list[tuple[Any, Any]]:
    """``(get_num_threads, set_num_threads)`` of each OpenBLAS loaded in this process (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    controls = []
    for path in sorted(paths):
        if path not in _found:
            _found[path] = _controls_of(path)
        found = _found[path]
        if found is not None:
            controls.append(found)
    return controls


def _controls_of(path: str) -> tuple[Any, Any] | None:
    try:
        library = ctypes.CDLL(path)  # already loaded: the same handle, nothing new runs
    except OSError:
        return None
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            get = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
            set_ = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                set_.argtypes = [ctypes.c_int]
                set_.restype = None
                return get, set_
    return None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with every loaded OpenBLAS and PyTorch at one thread (see the module
    docstring); nested or concurrent blocks share the limit, the last to leave restores it."""
    global _depth
    with _lock:
        if _depth == 0:
            _saved.clear()
            for get, set_ in openblas_controls():
                _saved.append((set_, get()))
                set_(1)
            torch = sys.modules.get("torch")
            if torch is not None and hasattr(torch, "set_num_threads"):
                _saved.append((torch.set_num_threads, torch.get_num_threads()))
                torch.set_num_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for set_, threads in _saved:
                    set_(threads)
                _saved.clear()
