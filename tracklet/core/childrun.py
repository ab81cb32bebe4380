"""A run in a child process: the run object a child got by pickling (multiprocessing's ``spawn``
and ``forkserver`` start methods, ``Pool`` arguments, ``torch.multiprocessing.spawn``) or
inherited by ``fork`` records there as a secondary writer of the same run (docs/shared-runs.md,
"Runs passed to child processes").

The child's object is a :class:`ChildRun`: it answers the run's identity (``id``, ``project``,
``name``, ``path``, ``config``) from what the parent had, and on its first other use (``log()``,
``summary``, ``define_metric``, ...) it joins the run: ``tracklet.init(id=..., settings={"primary":
False, "label": "<host>-<pid>"}, reinit="create_new")`` in the child, with the parent's project,
data root and mode (online: the same server), and from then on hands every call to that writer.
Unpickling costs a dict copy; a child that never uses the run writes nothing. A join that fails
is reported once (a ``TrackletWarning``) and the child's calls are dropped, as a disabled run's.

Its part ends with ``finish()`` (a use after it joins again: a ``Pool`` worker's next task), else
when the child ends: at interpreter exit (``atexit``, as any run), and in a multiprocessing child,
which leaves with ``os._exit`` after its finalizers, by a ``multiprocessing.util.Finalize`` (an
exception escaping the child's target ends the part failed, with it). A daemonic multiprocessing child (a ``Pool`` worker, a ``DataLoader`` worker)
that its parent ends with SIGTERM (``Pool.terminate``, ``with Pool() as pool``) ends its part
first, as ``sys.exit(0)`` would: only from the main thread, only while SIGTERM has its default
action. Such a part ends promptly online: its records are durable in its log as they are written,
so its ``finish()`` waits at most :data:`TEARDOWN_UPLOAD_WAIT` seconds for their upload (not
``upload_timeout``/``finish_timeout``: ``Pool.terminate()`` joins each worker without a timeout,
and the training process stalled that long behind a slow or unreachable server); the online
uploader of the writer that passed the run on uploads the rest once the worker is gone
(client/uploader.py; the worker's message says so while that writer records, else names
``tracklet sync``; docs/shared-runs.md). A SIGTERM whose handler can't run (it arrived as the
worker's main thread went back to block on its pool's task lock, which ``terminate()`` holds from
then on: the handler waits for the thread's next bytecode, which never comes) is seen by a watcher
thread on a signal wakeup fd: it sends SIGTERM to the main thread again (a blocked wait returns
with EINTR and the handler runs), and after :data:`LOST_SIGTERM_GRACE` seconds without the handler
ends the process with SIGKILL: the worker never hangs its pool's ``terminate()`` (the part then
reads crashed, its records kept).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from tracklet.core import forksafe, threads
from tracklet.core.run import Config, DisabledRun, Run, Summary
from tracklet.core.settings import Settings, data_root
from tracklet.core.stack import user_stacklevel
from tracklet.core.warn import TrackletWarning

_IDENTITY = ("name", "tags", "group", "job_type", "notes")
# Read from the child's object itself (no join): its identity, config and state, and what pickle,
# repr and ``with`` look up.
_LOCAL = frozenset({
    "__class__", "__dict__", "__reduce_ex__", "__reduce__", "__repr__", "__enter__", "__exit__",
    "id", "project", "path", "config", "summary", "settings", "finished", "finish", *_IDENTITY,
    "_child_spec", "_child_target", "_child_finished", "_child_join", "_record_config_local",
})
_JOIN_LOCK = threading.RLock()
# Seconds a part ended by its pool's SIGTERM waits for its upload (the pool's parent joins the
# worker without a timeout; the rest stays in the part's log, which the parent's online uploader
# sends: client/uploader.py).
TEARDOWN_UPLOAD_WAIT = 2.0
LOST_SIGTERM_GRACE = 5.0  # seconds a pool worker's SIGTERM handler may take to start before SIGKILL
_sigterm_handled = threading.Event()
# The parts this process's multiprocessing child joined (ended by its finalizers or its SIGTERM).
_parts: list[Run] = []
# The child runs unpickled in this process, by (data root, project, run id): a Pool worker gets
# the run again with every task, and every task records into one part.
_unpickled: dict[tuple[str, str, str], "ChildRun"] = {}
# The online runs this process joined as a child, by (data root, project, run id): the record log
# and pid of the writer that passed the run on (``delivering_writer``).
_passed_by: dict[tuple[str, str, str], tuple[str, int]] = {}


def _after_fork_in_child() -> None:
    global _JOIN_LOCK
    _JOIN_LOCK = threading.RLock()  # another thread of the parent may have held it while forking


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def child_label() -> str:
    """A child writer's label: ``<host>-<pid>`` (a valid name), unique among live processes of a
    host. Not ``rank_<RANK>``: a rank's DataLoader workers inherit ``RANK``."""
    import re

    from tracklet.core import hostinfo
    from tracklet.core.layout import MAX_NAME_CHARS

    host = re.sub(r"[^A-Za-z0-9._-]+", "-", hostinfo.hostname() or "host").strip("-._") or "host"
    return f"{host[: MAX_NAME_CHARS - 12]}-{os.getpid()}"


def spec_of(run: Run, *, for_a_child: bool = True) -> dict[str, Any]:
    """What a child needs to join ``run``: plain data (pickled with it, or kept at fork).
    ``for_a_child=False`` (a pickle that isn't multiprocessing's: ``pickling_for_a_child``) leaves
    the API key out whatever its source."""
    if isinstance(run, ChildRun):
        spec = dict(object.__getattribute__(run, "_child_spec"))
        target = object.__getattribute__(run, "_child_target")
        spec["config"] = dict(object.__getattribute__(run, "config")._data)
        spec["identity"] = {field: getattr(run, field) for field in _IDENTITY}
        if target is not None and not isinstance(target, DisabledRun):
            spec["step"] = max(spec["step"], target.step)
        return spec
    settings = {field.name: getattr(run.settings, field.name) for field in dataclasses.fields(Settings)}
    settings["dir"] = str(data_root(run.settings).resolve()) if settings["mode"] != "disabled" else settings["dir"]
    if settings["api_key"] is not None and (not for_a_child
                                            or _found_by_a_child(settings["api_key"], settings["base_url"])):
        settings["api_key"] = None  # not in the pickle: the child finds the same key where the parent did
    return {
        "project": run.project,
        "id": run.id,
        "settings": settings,
        "identity": {field: getattr(run, field) for field in _IDENTITY},
        "config": dict(run.config._data),
        "step": run._step,
        "pid": os.getpid(),
        # the parent's ``@tracklet.op`` spans went to this run (its current run, tracing on): the
        # child's part takes them once it has joined (``_join``)
        "traced": _lifecycle_current_is(run),
        # online: how tracklet.init made the run's uploader (tracklet._online_uploader, pickled by name)
        "uploader": run._uploader_factory if settings["mode"] == "online" else None,
    }


def _lifecycle_current_is(run: Run) -> bool:
    """Whether ``run`` is the process's current run (set at ``init``; a forked child's inherited
    object still is, though it reads finished)."""
    from tracklet.core import lifecycle

    return lifecycle._current is run


def pickling_for_a_child() -> bool:
    """Whether the run being pickled now goes to another process of this job: the pickle is
    multiprocessing's (``ForkingPickler``: a ``spawn``/``forkserver`` process's arguments, a
    ``Pool``'s or a ``ProcessPoolExecutor``'s tasks, a ``multiprocessing.Queue``; torch's
    multiprocessing uses it too), whose caller is in ``multiprocessing.reduction`` (pickle's C
    code adds no frame between). Any other pickle (``pickle.dump``, ``torch.save`` of a model or
    a config holding the run: a file that may be shared) is not, and gets no API key given in code."""
    frame = sys._getframe(2)  # the frame that called pickle's dump (this one's caller is __reduce_ex__)
    return str(frame.f_globals.get("__name__")) in _CHILD_PICKLERS


# The modules whose pickler sends objects to another process of the job: multiprocessing's, the
# `multiprocess` fork's (dill), joblib's loky workers'.
_CHILD_PICKLERS = frozenset({"multiprocessing.reduction", "multiprocess.reduction",
                             "joblib.externals.loky.backend.reduction", "loky.backend.reduction"})


def _found_by_a_child(key: str, base_url: str | None) -> bool:
    """Whether a child process finds API key ``key`` by itself (``TRACKLET_API_KEY``, which it
    inherits, or the key ``tracklet login`` saved for ``base_url``). Then a pickled run leaves it
    out: a run is pickled for a child, but also wherever an object holding it is pickled (a model,
    a config or a trainer written to disk), and the key was written there in plain text. A key
    given to ``init`` in code alone travels with the run in multiprocessing's pickles only (the
    child needs it to upload; ``pickling_for_a_child``)."""
    from tracklet.core.credentials import API_KEY_ENV, saved_key

    if os.environ.get(API_KEY_ENV) == key:
        return True
    try:
        return base_url is not None and saved_key(base_url) == key
    except Exception:  # an unreadable credentials file: keep the key (the child may not read it either)
        return False


def unpickle(spec: dict[str, Any]) -> Run:
    """The run a child gets for a pickled run (the ``__reduce_ex__`` of :class:`Run`): the same
    object for every unpickling in one process while it records; in the process that pickled it,
    the run itself while it is live there."""
    from tracklet.core import lifecycle

    if spec["settings"]["mode"] == "disabled":
        disabled = DisabledRun(Settings(**{**spec["settings"], "primary": True, "label": None}), project=spec["project"],
                          run_id=spec["id"], **spec["identity"])
        disabled.config._data.update(spec["config"])
        return disabled
    if spec["pid"] == os.getpid():
        for live in lifecycle.live_runs():
            if live.project == spec["project"] and live.id == spec["id"] and live.settings.primary == \
                    spec["settings"]["primary"] and str(data_root(live.settings).resolve()) == spec["settings"]["dir"]:
                return live
    key = (spec["settings"]["dir"], spec["project"], spec["id"])
    with _JOIN_LOCK:
        known = _unpickled.get(key)
        if known is not None and not known.finished:
            return known
        run = ChildRun.__new__(ChildRun)
        _setup(run, spec)
        object.__setattr__(run, "config", Config(run))
        object.__getattribute__(run, "config")._data.update(spec["config"])
        object.__setattr__(run, "summary", Summary(run))
        _unpickled[key] = run
        return run


def become_child(run: Run) -> None:
    """In a child made by fork, after the parent's writer was dropped: ``run`` (the inherited
    object, which the child's code holds) becomes a :class:`ChildRun` that joins on first use.
    Its config stays (the parent's, at the fork)."""
    spec = spec_of(run)
    run.__class__ = ChildRun
    _setup(run, spec)


def _setup(run: Run, spec: dict[str, Any]) -> None:
    setattr_ = object.__setattr__
    setattr_(run, "_child_spec", spec)
    setattr_(run, "_child_target", None)
    setattr_(run, "_child_finished", False)
    setattr_(run, "id", spec["id"])
    setattr_(run, "project", spec["project"])
    if "settings" not in object.__getattribute__(run, "__dict__"):
        setattr_(run, "settings", Settings(**{**spec["settings"], "label": None, "primary": True}))


def _identity_property(field: str) -> property:
    def get(self: "ChildRun") -> Any:
        value = object.__getattribute__(self, "_child_spec")["identity"][field]
        return list(value) if field == "tags" else value

    def set_(self: "ChildRun", value: Any) -> None:
        target = object.__getattribute__(self, "_child_join")()
        setattr(target, field, value)
        object.__getattribute__(self, "_child_spec")["identity"][field] = getattr(target, field)

    return property(get, set_, doc=f"The run's {field} (the parent's; assigning it records the change).")


class ChildRun(Run):
    """A run passed to (or inherited by) a child process: see the module docstring. Every
    attribute but its identity and config is the child's secondary writer's, joined on first use."""

    def __getattribute__(self, name: str) -> Any:
        # dunders are the object's own: looked up on it by the copy module (``__deepcopy__``),
        # frameworks' introspection, ...: joining for them recorded a part for a child that logged
        # nothing, and a deepcopy was the child's writer instead of the run the child holds
        if name in _LOCAL or (name[:2] == "__" and name[-2:] == "__"):
            return object.__getattribute__(self, name)
        target = object.__getattribute__(self, "_child_target")
        if target is None or object.__getattribute__(self, "_child_finished"):
            target = object.__getattribute__(self, "_child_join")()
        return getattr(target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_child") or name in ("config", "summary"):
            object.__setattr__(self, name, value)
        elif name in _IDENTITY:
            object.__getattribute__(ChildRun, name).__set__(self, value)
        else:
            setattr(object.__getattribute__(self, "_child_join")(), name, value)

    name = _identity_property("name")
    tags = _identity_property("tags")
    group = _identity_property("group")
    job_type = _identity_property("job_type")
    notes = _identity_property("notes")

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    @property
    def finished(self) -> bool:
        if object.__getattribute__(self, "_child_finished"):
            return True
        target = object.__getattribute__(self, "_child_target")
        return target is not None and target.finished

    def finish(self, exit_code: int | None = None, *, error: BaseException | None = None) -> None:
        """End this process's part of the run (nothing, if it recorded nothing)."""
        object.__setattr__(self, "_child_finished", True)
        target = object.__getattribute__(self, "_child_target")
        if target is not None:
            target.finish(exit_code, error=error)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (unpickle, (spec_of(self, for_a_child=pickling_for_a_child()),))

    def _child_join(self) -> Run:
        """This process's writer of the run, started on first use (see the module docstring), and
        again on the first use after this process's ``finish()``: a ``Pool`` worker made by fork
        keeps the object it inherited for all its tasks, and a task's ``finish()`` (which ends the
        worker's part) made the next task's ``log()`` raise into the user's code. It joins as a
        pickled run does, whose every task unpickles it afresh (``unpickle``)."""
        with _JOIN_LOCK:
            target = object.__getattribute__(self, "_child_target")
            spec = object.__getattribute__(self, "_child_spec")
            if object.__getattribute__(self, "_child_finished"):
                if target is not None and not isinstance(target, DisabledRun):
                    spec["step"] = max(spec["step"], target.step)
                object.__setattr__(self, "_child_finished", False)
                target = None
            if target is not None:
                return target
            target = _join(spec)
            object.__setattr__(self, "_child_target", target)
            return target


def _dropping(spec: dict[str, Any]) -> Run:
    """A run that drops what it is given (a join that failed)."""
    return DisabledRun(Settings(mode="disabled"), project=spec["project"], run_id=spec["id"], **spec["identity"])


def _join(spec: dict[str, Any]) -> Run:
    """``tracklet.init`` of this process's part of the run; on failure a warning (once: this is
    called once per child object) and a run that drops what it is given."""
    from tracklet.core import lifecycle
    from tracklet.core.start import init

    settings = dict(spec["settings"])
    for live in lifecycle.live_runs():  # another object of this run joined already in this process
        if (live.project, live.id, live.settings.label, live.settings.primary) == \
                (spec["project"], spec["id"], child_label(), False) and str(data_root(live.settings)) == settings["dir"]:
            live.set_step(spec["step"])
            return live
    settings.update(primary=False, label=child_label(), update_finish_state=False, capture_environment=False,
                    system_metrics=False, sweep_id=None, sweep_trial=None, reproduce=None)
    try:
        target = init(project=spec["project"], id=spec["id"], settings=settings, reinit="create_new",
                      uploader=spec["uploader"], **{field: spec["identity"][field] for field in _IDENTITY})
        target.set_step(spec["step"])
    except Exception as error:
        warnings.warn(f"tracklet: this process (pid {os.getpid()}) could not record into run "
                      f"{spec['project']}/{spec['id']} as its secondary writer {settings['label']!r} ({error}); "
                      "what it logs to the run is dropped", TrackletWarning, stacklevel=user_stacklevel())
        return _dropping(spec)
    _end_with_the_process(target)
    if spec.get("traced") and lifecycle.trace_target is None and target.settings.tracing:
        # The child's ``@tracklet.op`` calls record into its part, as the parent's did into the run
        # (a ``create_new`` part never becomes current, so until session 35 they recorded nothing).
        lifecycle.trace_target = target
    if spec["settings"]["mode"] == "online":
        _note_who_passed(spec)
    return target


def _note_who_passed(spec: dict[str, Any]) -> None:
    """Keep the log and pid of the writer that passed the run on (``passed_by``)."""
    from tracklet.core.layout import RunPaths

    parent = spec["settings"]
    if not parent["primary"] and parent["label"] is None:
        return  # can't be known: messages name `tracklet sync`
    try:
        log_file = RunPaths(Path(parent["dir"]), spec["project"], spec["id"],
                            None if parent["primary"] else parent["label"]).log_file
    except ValueError:  # no valid label (can't be known): messages name `tracklet sync`
        return
    _passed_by[(parent["dir"], spec["project"], spec["id"])] = (str(log_file), spec["pid"])


def passed_by(root: Path, project: str, run_id: str) -> tuple[str, int] | None:
    """Where this process joined online run ``project/run_id`` (data root ``root``) as a child:
    the record log and pid of the writer that passed the run on; ``None`` if it didn't."""
    if not _passed_by:
        return None
    return _passed_by.get((str(Path(root).resolve()), project, run_id))


def delivering_writer(root: Path, project: str, run_id: str) -> int | None:
    """The pid of the online writer that passed run ``project/run_id`` (data root ``root``) to
    this process, while that writer records (its log's lock is held): its uploader sends the run's
    parts whose writers are gone (this process's, once it has exited), at the latest when it
    finishes (client/uploader.py). ``None`` when this process joined no such run or can't know."""
    from tracklet.core.recordlog import writer_alive

    known = passed_by(root, project, run_id)
    if known is None:
        return None
    try:
        return known[1] if writer_alive(known[0]) is True else None
    except OSError:
        return None


def _end_with_the_process(run: Run) -> None:
    """A multiprocessing child leaves by ``os._exit`` after its finalizers (no ``atexit``): end
    the part in one. A daemonic one (a pool's worker) ends the part at its pool's SIGTERM too."""
    if "multiprocessing" not in sys.modules:
        return
    import multiprocessing
    from multiprocessing import util

    if multiprocessing.parent_process() is None:
        return  # not started by multiprocessing (an os.fork() child, or the main process): atexit ends it
    process = multiprocessing.current_process()
    _parts.append(run)
    util.Finalize(None, _finish_at_exit, args=(run,), exitpriority=100)
    if process.daemon and threading.current_thread() is threading.main_thread():
        import signal

        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, forksafe.sigterm_handler(_on_sigterm))
            _watch_for_a_stuck_sigterm()


def _watch_for_a_stuck_sigterm() -> None:
    """Start the watcher of the module docstring: a signal wakeup fd (only where the program has
    none of its own, such as asyncio's) read by a daemon thread."""
    import signal

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (ValueError, OSError):
        previous = None
    if previous != -1:  # not possible here, or the program's own: left as it is, no watcher
        if previous is not None:
            signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)
        return
    # Blocking the asynchronous signals, as every thread of tracklet's (core/threads.py): one that
    # didn't could take the worker's SIGINT/SIGTERM itself, leaving a blocked main thread unwoken. A
    # signal any thread takes still writes the wakeup fd (CPython's C handler does, on whichever).
    threads.start(threading.Thread(target=_rescue_a_stuck_sigterm, args=(read_fd,), name="tracklet-pool-sigterm",
                                   daemon=True))


def _rescue_a_stuck_sigterm(read_fd: int) -> None:
    import signal
    import time

    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:
            return
        if signal.SIGTERM in data:
            break
    deadline = time.monotonic() + LOST_SIGTERM_GRACE
    while not _sigterm_handled.wait(0.5):
        if time.monotonic() >= deadline:
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
        except (OSError, ValueError):
            pass


def _finish_at_exit(run: Run) -> None:
    """The part's end when the child's target returned or raised (the exception in flight is the
    one ``Process._bootstrap``'s ``finally`` runs the finalizers in)."""
    if run.finished:
        return
    error = sys.exc_info()[1]
    if error is None or (isinstance(error, SystemExit) and error.code in (0, None)):
        run.finish()
    elif isinstance(error, SystemExit):
        run.finish(error.code if isinstance(error.code, int) else 1)
    else:
        run.finish(1, error=error)


def _on_sigterm(signum: int, frame: Any) -> None:
    """A daemonic child's SIGTERM (its pool ends): unwind and leave as ``sys.exit(0)`` (its
    finalizers end the part); a second SIGTERM kills at once. A child already leaving (its
    finalizers run: a pool worker that took its last task) goes on leaving: an exception raised
    into its finalizers would cut the part's end short. Either way the parent waits for this
    process (``Pool.terminate()`` joins it without a timeout): each part's ``finish()``, under way
    or to come, waits at most ``TEARDOWN_UPLOAD_WAIT`` more seconds for its upload."""
    import signal
    from multiprocessing import util

    _sigterm_handled.set()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for run in _parts:
        run._cut_upload_wait(TEARDOWN_UPLOAD_WAIT)
    if not getattr(util, "_exiting", False):
        sys.exit(0)
