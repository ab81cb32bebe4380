"""Put on PYTHONPATH by ``tracklet run``: starts a run and turns on autolog in the script's process.

Only the process ``tracklet run`` started directly does this (its parent PID is in
``TRACKLET_LAUNCHER_PID``); processes the script starts in turn (DataLoader workers, helpers)
are left alone. Any ``sitecustomize`` this one shadows is run afterwards.

With ``TRACKLET_WANDB_COMPAT=1`` (``tracklet run --wandb``), every process that has this on its
path, the script's subprocesses included, makes ``import wandb`` resolve to
``tracklet.compat.wandb``; the script's own ``wandb.init()`` then starts the run, so none is
started here.
"""

import os
import sys


def _wandb_compat() -> bool:
    """Turn on the ``import wandb`` redirect when ``TRACKLET_WANDB_COMPAT`` is set; True if so."""
    if os.environ.get("TRACKLET_WANDB_COMPAT", "").strip().lower() not in ("1", "true", "yes", "on"):
        return False
    try:
        from tracklet.compat.redirect import install

        install(propagate=False)  # the environment already carries the switch to subprocesses
    except Exception as error:
        print(f"tracklet run: import wandb is not redirected to tracklet: {error!r}", file=sys.stderr)
    return True


def _start() -> None:
    compat = _wandb_compat()
    if os.environ.get("TRACKLET_LAUNCHER_PID") != str(os.getppid()):
        return
    try:
        import tracklet

        if not compat:
            tracklet.init(
                project=os.environ.get("TRACKLET_LAUNCH_PROJECT") or None,
                name=os.environ.get("TRACKLET_LAUNCH_NAME") or None,
                job_type=os.environ.get("TRACKLET_LAUNCH_JOB_TYPE") or None,
            )
        tracklet.autolog()
        _exit_on_sigterm()
    except Exception as error:  # the script must run even when tracking can't start
        print(f"tracklet run: tracking is off for this process: {error!r}", file=sys.stderr)


def _exit_on_sigterm() -> None:
    """A job scheduler stopping the script (SIGTERM) ends it through sys.exit(143), so the run is
    finished and marked failed instead of being left to read as crashed. Only when the script
    hasn't set a SIGTERM handler of its own (it can still set one later)."""
    import signal

    from tracklet.core.forksafe import sigterm_handler

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # not a forked worker's (forksafe.sigterm_handler)
        signal.signal(signal.SIGTERM, sigterm_handler(lambda signum, frame: sys.exit(128 + signum)))


def _chain() -> None:
    """Run the ``sitecustomize`` that would have run without this one, if any."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_start()
_chain()
