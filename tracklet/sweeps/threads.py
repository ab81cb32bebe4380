"""One thread for the BLAS and PyTorch pools while a GP suggestion is computed.

A GP ask (Optuna's ``GPSampler``) is thousands of tiny numerical calls: SciPy's L-BFGS-B steps
(``setulb``, on SciPy's own OpenBLAS since SciPy 1.15), NumPy and PyTorch operations on arrays of
a few dozen rows. With the pools at their default (a thread per core) every call wakes and then
spins the pool's threads: on 2 cores a GP ask at 10-18 trials took 300-1,300 ms of CPU, and 60-260
ms with OpenBLAS at one thread (benchmarks/sweeps.py, handoff); a 16-core machine spins 16.

Optuna limits PyTorch around parts of the ask and sets ``OPENBLAS_NUM_THREADS``, which OpenBLAS
reads only when it is loaded, long before the first ask: too late for both the NumPy and the SciPy
OpenBLAS. :func:`one_thread` sets every BLAS loaded in this process (threadpoolctl finds them:
pip's NumPy and SciPy wheels each bring an OpenBLAS; MKL and BLIS too) and PyTorch to one thread
for the whole ask, and puts them back after it, so the agent's own process
(``wandb.agent(function=)`` trains in it) keeps its threads. Without threadpoolctl (it comes with
the ``sweeps`` extra) only PyTorch is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from tracklet.core.modules import loaded
from tracklet.core import forksafe

_lock = forksafe.lock()
_depth = 0  # asks inside one_thread now (a server's sweeps ask from several threads)
_restore: list[Any] = []  # what puts the threads back when the last ask leaves


def _limit_blas() -> Any | None:
    """Every loaded BLAS at one thread; returns the limiter whose ``restore_original_limits()``
    puts them back, or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController().limit(limits=1, user_api="blas")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with every loaded BLAS and PyTorch at one thread (see the module docstring);
    nested or concurrent blocks share the limit, the last to leave restores it."""
    global _depth
    with _lock:
        if _depth == 0:
            _restore.clear()
            limiter = _limit_blas()
            if limiter is not None:
                _restore.append(limiter.restore_original_limits)
            torch = loaded("torch")
            if torch is not None and hasattr(torch, "set_num_threads"):
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                _restore.append(lambda: torch.set_num_threads(threads))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for restore in _restore:
                    restore()
                _restore.clear()
