"""The sweep trial a process runs, as ``init()`` needs it: which run to record and its config.

``tracklet agent`` starts a trial's process with ``TRACKLET_SWEEP_ID`` and ``TRACKLET_SWEEP_TRIAL``
(settings ``sweep_id``, ``sweep_trial``); the controller wrote the trial's config and run to
``<root>/sweeps/<sweep_id>/trials/<n>.json`` before handing the trial out. This module only reads
that file (plain JSON: the core never imports ``tracklet.sweeps`` or Optuna). A file that is
missing or unreadable is reported and the run records as an ordinary run: training goes on.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

from tracklet.core.settings import Settings, data_root, is_valid_name
from tracklet.core.stack import user_stacklevel
from tracklet.core.warn import TrackletWarning


@dataclasses.dataclass(frozen=True)
class SweepTrial:
    sweep_id: str
    trial: int
    project: str
    run_id: str
    config: dict[str, Any]

    @property
    def tag(self) -> str:
        """The tag a trial's run carries (``sweep:<id>``): the store filters and groups by it."""
        return f"sweep:{self.sweep_id}"


def trial_file(root: Path, sweep_id: str, trial: int) -> Path:
    return Path(root) / "sweeps" / sweep_id / "trials" / f"{trial}.json"


def stop_file(root: Path, sweep_id: str, trial: int) -> Path:
    """Where the agent writes why it is stopping a trial's process (``pruned``) before SIGTERM."""
    return Path(root) / "sweeps" / sweep_id / "trials" / f"{trial}.stop"


def sigterm_file(root: Path, sweep_id: str, trial: int) -> Path:
    """What the trial's process did with the agent's stop, for the agent to read once it exits:
    ``installed`` (the handler is in place and never ran), ``pruned`` (the run was stopped and
    tagged pruned) or ``late`` (the run had already ended: the stop was ignored)."""
    return Path(root) / "sweeps" / sweep_id / "trials" / f"{trial}.sigterm"


exit_tag: str | None = None  # a tag the run gets as the process ends (``pruned``): set by the SIGTERM handler


def _live_run() -> bool:
    """Whether this process has a run not yet finishing (``finish()`` unregisters a run first).
    Called from a signal handler: it reads the list without ``lifecycle``'s lock, which the
    interrupted main thread may be holding (copying a list is one step under the GIL)."""
    import os

    from tracklet.core import lifecycle

    return any(run._pid == os.getpid() and not run.finished for run in list(lifecycle._active))


def _say(path: Path, what: str) -> None:
    try:
        path.write_text(what)
    except OSError:  # the agent then goes by its own view of the stop
        pass


def end_cleanly_on_sigterm(trial: SweepTrial, root: Path) -> None:
    """In a trial's process, a SIGTERM from the agent ends the run as ``sys.exit`` would, instead of
    killing it (which leaves the run ``crashed``): a pruned trial (the agent wrote ``pruned`` to
    :func:`stop_file` first) exits 0 and its run is tagged ``pruned`` (``lifecycle`` adds the tag
    before it finishes the run); any other stop exits 143 (the run is ``failed``, exit code 143).
    A prune that arrives once the run is finishing or finished is too late: it is ignored (raising
    ``SystemExit`` inside ``finish()`` would leave the run half-written), and the trial completes.
    What happened is written to :func:`sigterm_file`, so the agent tells the trial pruned only if
    its run really was stopped. Only from the main thread, and only when SIGTERM still has its
    default action (a program's or framework's own handler is left alone)."""
    import signal
    import sys
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    path = stop_file(root, trial.sweep_id, trial.trial)
    said = sigterm_file(root, trial.sweep_id, trial.trial)

    def on_sigterm(signum: int, frame: Any) -> None:
        global exit_tag
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        try:
            reason = path.read_text(errors="replace")[:64].strip()
        except OSError:
            reason = ""
        if reason == "pruned":
            if not _live_run():
                _say(said, "late")
                return
            _say(said, "pruned")
            exit_tag = "pruned"
            sys.exit(0)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    _say(said, "installed")


def current_trial(settings: Settings) -> SweepTrial | None:
    """The trial named by ``settings`` (None when no sweep is set, or with a warning when the
    trial can't be read)."""
    if not settings.sweep_id:
        return None
    problem = None
    sweep_id, number = settings.sweep_id, str(settings.sweep_trial or "")
    if not is_valid_name(sweep_id):
        problem = f"TRACKLET_SWEEP_ID={sweep_id!r} is not a sweep id"
    elif not number.isdigit():
        problem = f"TRACKLET_SWEEP_TRIAL={number!r} is not a trial number"
    else:
        path = trial_file(data_root(settings), sweep_id, int(number))
        try:
            data = json.loads(path.read_text())
            trial = SweepTrial(sweep_id, int(number), str(data["project"]), str(data["run_id"]),
                               dict(data["config"]))
            if is_valid_name(trial.project) and is_valid_name(trial.run_id):
                return trial
            problem = f"{path} names an invalid project or run id"
        except (OSError, ValueError, KeyError, TypeError) as error:
            problem = f"can't read sweep trial {path}: {error}"
    warnings.warn(f"tracklet: {problem}; this run records without the sweep's config", TrackletWarning,
                  stacklevel=user_stacklevel())
    return None


def merge_config(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` on top, nested dicts merged key by key (the sweep's values win,
    as in W&B, where a sweep's parameters override the defaults a script passes to ``init``)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged
