"""``tracklet.init()``: resolve settings, pick or resume the run directory, start recording."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from tracklet.core import lifecycle
from tracklet.core.layout import RunPaths, check_name
from tracklet.core.run import DisabledRun, Run, UploaderFactory, new_run_id, new_run_name
from tracklet.core.settings import Settings, data_root, resolve_settings

DEFAULT_PROJECT = "default"
_RESUME_VALUES = (None, False, True, "allow", "must", "never")
# What init() does about the runs already live in this process (see init's docstring).
REINIT_VALUES = (None, "finish_previous", "return_previous", "create_new")

# Fetches an online run's record log from its server into ``paths.log_file`` so that it can be
# resumed on a machine that lacks it: True when fetched, False when the server has no such run;
# raises ``ResumeError`` (leaving nothing behind) when the server can't be asked or its answer is
# not an intact log. The layer above injects it (``tracklet.init`` passes
# ``tracklet.client.log_download.fetch_for_resume``), so the core imports no HTTP client.
RunFetcher = Callable[[RunPaths, Settings], bool]


def init(
    project: str | None = None,
    name: str | None = None,
    config: Any = None,
    tags: Sequence[str] | None = None,
    group: str | None = None,
    job_type: str | None = None,
    notes: str | None = None,
    dir: str | None = None,
    id: str | None = None,
    resume: bool | str | None = None,
    mode: str | None = None,
    settings: Settings | dict[str, Any] | None = None,
    reinit: str | None = None,
    *,
    uploader: UploaderFactory | None = None,
    fetcher: RunFetcher | None = None,
) -> Run:
    """Start a run and make it the current one (``tracklet.run``).

    Arguments win over ``TRACKLET_*`` environment variables, which win over defaults. ``config``
    may be a dict, a dataclass or an argparse Namespace. ``resume``: ``"allow"``/``True`` continues
    run ``id`` if it exists, ``"must"`` requires it to, ``"never"`` (and the default) refuses an
    existing ``id``.

    ``reinit`` says what happens to the runs already live in this process (W&B's values):

    - ``None`` (the default): the current run, if any, is finished first; other live runs
      (``create_new`` ones) go on.
    - ``"finish_previous"``: every live run of this process is finished first.
    - ``"return_previous"``: the run started last that is still live is returned as it is (the
      arguments are ignored); a new run starts only when none is live.
    - ``"create_new"``: a new run starts and every live run goes on; it has its own record log,
      sender and uploader, and it does *not* become ``tracklet.run`` (keep the returned object:
      log with ``run.log``). Finishing it, or any other run, leaves the others recording.
      At interpreter exit every live run is finished (failed, with the error, if one escaped).

    ``uploader`` makes an online run's uploader; ``tracklet.init`` passes the client package's
    (``tracklet.client.uploader.online_uploader``), so the core imports no HTTP client.
    ``fetcher``: how an online run resumed (``resume`` "allow", True or "must") on a machine
    without its log gets it from the server first (``RunFetcher``; ``tracklet.init`` passes the
    client package's). A server that doesn't know the run: "allow" starts it new, "must" raises; a
    server that can't be asked raises ``ResumeError`` for both, since a new local log would fork
    the run's on the server.
    """
    if reinit not in REINIT_VALUES:
        raise ValueError(f"reinit must be one of {', '.join(map(repr, REINIT_VALUES))}; got {reinit!r}")
    if reinit == "return_previous":
        live = lifecycle.most_recent()
        if live is not None:
            return live
    resolved = resolve_settings(settings, mode=mode, dir=dir, project=project)
    sweep = None
    if resolved.sweep_id and resolved.mode != "disabled":
        from tracklet.core import sweeptrial

        sweep = sweeptrial.current_trial(resolved)
        if sweep is not None and reinit == "create_new" and _trial_run_live(sweep):
            sweep = None  # the trial's run is live: this one is another run, not a second writer of its log
    reproduction = None
    if resolved.reproduce and resolved.mode != "disabled" and sweep is None:
        from tracklet.core import reproduction as reproducing

        reproduction = reproducing.current(resolved.reproduce)
    if reproduction is not None:  # tracklet reproduce: the run, linked to the original, and its config
        project, id, resolved.project = reproduction.project, reproduction.run_id, reproduction.project
        resume = None if resume == "must" else resume  # a new run, whatever the original resumed
    if sweep is not None:  # a sweep trial: the sweep decides the project, the run and its config
        project, id, resume = _sweep_identity(sweep, project, id, resume)
        resolved.project = sweep.project
        tags = [*(tags or []), *([sweep.tag] if sweep.tag not in (tags or []) else [])]
    project_name = check_name("project", DEFAULT_PROJECT if resolved.project is None else resolved.project)
    run_id = check_name("run id", id) if id is not None else new_run_id()  # both before a run is finished
    if resume not in _RESUME_VALUES:
        raise ValueError(f"resume must be one of {', '.join(map(repr, _RESUME_VALUES))}; got {resume!r}")
    if tags is not None and (isinstance(tags, str) or not all(isinstance(t, str) for t in tags)):
        raise TypeError(f"tags must be a list of strings; got {tags!r}")
    identity = dict(
        project=project_name,
        run_id=run_id,
        name=name,
        tags=list(tags) if tags is not None else None,
        group=group,
        job_type=job_type,
        notes=notes,
    )

    if resolved.mode == "online" and uploader is None:
        raise ValueError("mode='online' needs an uploader: start online runs with tracklet.init()")

    if not resolved.primary and resolved.mode != "disabled":
        _secondary_settings(resolved, id)
    if resolved.mode != "disabled" and reinit != "finish_previous":
        _refuse_a_live_run(RunPaths(data_root(resolved), project_name, run_id, resolved.label if not resolved.primary
                                    else None),
                           ending=lifecycle.current() if reinit != "create_new" else None)
    if reinit == "finish_previous":
        for live in lifecycle.live_runs():
            live.finish()
    elif reinit != "create_new":
        previous = lifecycle.current()
        if previous is not None:
            previous.finish()
    becomes_current = reinit != "create_new"

    if resolved.mode == "disabled":
        run: Run = DisabledRun(resolved, **_fill_identity(identity, None))
        if config is not None:
            run.config.update(config)
        if becomes_current:
            lifecycle.set_current(run)
        return run

    paths = RunPaths(data_root(resolved), project_name, run_id)
    state = None
    if not resolved.primary:  # a secondary writer: its own part of the run (docs/shared-runs.md)
        identity = _primary_identity(paths, identity)
        paths, state = _secondary(resolved, paths, id, fetcher if resume in (True, "allow", "must") else None)
    elif paths.log_file.exists():
        if resume in (None, False, "never"):
            raise ValueError(
                f"run {project_name}/{run_id} already exists in {paths.root}; pass resume='allow' to continue "
                "it, or leave id unset for a new run"
            )
        from tracklet.core.reader import replay

        state = replay(paths.log_file)
    elif resume in (True, "allow", "must") and id is not None and resolved.mode == "online" and fetcher is not None:
        if fetcher(paths, resolved):  # the run lives on the server: resume from its log
            from tracklet.core.reader import replay

            state = replay(paths.log_file)
        elif resume == "must":
            raise ValueError(f"resume='must' but there is no run {project_name}/{run_id} in {paths.root} nor "
                             f"on the server {resolved.base_url}")
    elif resume == "must":
        raise ValueError(f"resume='must' but there is no run {project_name}/{run_id} in {paths.root}")

    run = Run(resolved, paths=paths, uploader=uploader, **_fill_identity(identity, state))
    if reproduction is not None:
        run._reproduces, run._artifact_pins = reproduction.reproduces, dict(reproduction.artifacts)
    run._start(config, resume_state=state)
    renamed = _changed_on_resume(identity, state)
    if renamed:
        run._update_identity(renamed)
    if reproduction is not None:
        from tracklet.core.sweeptrial import merge_config

        run.config.update(merge_config(dict(run.config.items()), reproduction.config))
    if sweep is not None:
        from tracklet.core.sweeptrial import end_cleanly_on_sigterm, merge_config

        run.config.update({key: merge_config({key: run.config.get(key)}, {key: value})[key]
                           for key, value in sweep.config.items()})
        run._sweep_trial = True
        run._sweep_id = sweep.sweep_id
        end_cleanly_on_sigterm(sweep, data_root(resolved))
    if becomes_current:
        lifecycle.set_current(run)
    return run


def default_label() -> str:
    """A secondary writer's label when none is given: ``rank_<RANK>`` under a launcher that sets
    ``RANK`` (torchrun, accelerate, DeepSpeed), else ``<host>-<pid>``, made a valid name."""
    import os
    import re

    from tracklet.core import hostinfo
    from tracklet.core.layout import MAX_NAME_CHARS

    rank = os.environ.get("RANK", "").strip()
    if rank.isdigit():
        return f"rank_{int(rank)}"
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", hostinfo.hostname() or "host").strip("-._") or "host"
    return f"{host[: MAX_NAME_CHARS - 12]}-{os.getpid()}"


def _secondary_settings(resolved: Settings, run_id: str | None) -> None:
    """Settings of a secondary writer (``primary=False``): a run id to join, a label; no
    environment capture (the primary records the code, git and packages, as W&B's secondaries
    don't either). Online, its part is uploaded beside the run's log (``part=`` on the upload
    routes), as the primary's log is."""
    if run_id is None:
        raise ValueError("a secondary writer (settings primary=False, W&B's x_primary=False) records into a run "
                         "another process started: pass id=<the primary's run id>")
    if resolved.label is None:
        resolved.label = default_label()
    resolved.capture_environment = False


def _primary_identity(run: RunPaths, identity: dict[str, Any]) -> dict[str, Any]:
    """A secondary writer's name, tags, group, ... left unset take the run's (its primary's first
    record), when the primary started already: ``run.name`` then reads alike in every process."""
    from tracklet.core import identity as identities
    from tracklet.core.parsecost import parse_record
    from tracklet.core.recordlog import read_first_payload

    try:
        payload = read_first_payload(run.log_file)
        record = parse_record(payload) if payload is not None else None
    except Exception:  # none yet (ranks race), or unreadable: the defaults
        return identity
    if record is None or record.WhichOneof("kind") != "run_start":
        return identity
    known = identities.of_start(record.run_start)
    return {field: known[field] if field in known and value is None else value for field, value in identity.items()}


def _secondary(resolved: Settings, run: RunPaths, run_id: str | None,
               fetcher: RunFetcher | None = None) -> tuple[RunPaths, Any]:
    """A secondary writer's paths (its part of ``run``) and, when its part exists (the process
    restarted), that part's state to append to. The primary's log need not exist yet: ranks
    start in any order, and readers show a part once the run's ``run.tlog`` is there. ``fetcher``
    (an online run started with ``resume``): a part this machine lacks is downloaded from the
    server first when it has one (the writer was restarted on another machine), so it goes on."""
    assert resolved.label is not None and run_id is not None
    _refuse_a_case_twin(run, resolved.label)
    paths = run.part_paths(resolved.label)
    paths.parts_dir.mkdir(parents=True, exist_ok=True)
    if not paths.log_file.exists() and (resolved.mode != "online" or fetcher is None or not fetcher(paths, resolved)):
        return paths, None
    from tracklet.core.reader import replay

    return paths, replay(paths.log_file)


def _refuse_a_case_twin(run: RunPaths, label: str) -> None:
    """A label that differs from one of the run's parts only in case (``Rank_1``, ``rank_1``) is
    refused (``InvalidName``): on a case-insensitive file system (macOS's and Windows' default)
    both name one file, so two writers would share one part, or a restarted writer append to
    another's. Refused on every system, so a script behaves the same wherever it runs; the part
    listing shows each file under the name it was created with."""
    from tracklet.errors import InvalidName

    folded = label.casefold()
    for other in run.parts():
        if other != label and other.casefold() == folded:
            raise InvalidName(f"label {label!r} differs only in case from {other!r}, a part of run "
                              f"{run.project}/{run.run_id}: on a case-insensitive file system (macOS's default) "
                              "they are one file; give each writer a label that differs in more than case")


def _refuse_a_live_run(paths: RunPaths, ending: Run | None) -> None:
    """A run live in this process (other than ``ending``, which ``init()`` finishes first) can't be
    started again: its log has one writer. Checked before any run is finished."""
    for live in lifecycle.live_runs():
        if live is not ending and live._paths is not None and live._paths.log_file == paths.log_file:
            raise ValueError(f"run {paths.project}/{paths.run_id} is live in this process: log to the run object "
                             "init() returned for it, or finish it before starting it again")


def _trial_run_live(sweep: Any) -> bool:
    """Whether the sweep trial's run is live in this process: a ``create_new`` run started beside
    it is then an ordinary run (the trial's run id would make it a second writer of one log)."""
    return any(run.project == sweep.project and run.id == sweep.run_id for run in lifecycle.live_runs())


def _fill_identity(identity: dict[str, Any], state: Any) -> dict[str, Any]:
    """Unset identity fields take the resumed run's values (as changed by ``RunUpdate``s), else
    defaults."""
    known = state.identity if state is not None and state.start is not None else None
    filled = dict(identity)
    if filled["name"] is None:
        filled["name"] = known["name"] if known is not None else new_run_name()
    if filled["tags"] is None:
        filled["tags"] = list(known["tags"]) if known is not None else []
    for field in ("group", "job_type", "notes"):
        if filled[field] is None:
            filled[field] = known[field] if known is not None else ""
    return filled


def _changed_on_resume(identity: dict[str, Any], state: Any) -> dict[str, Any]:
    """The identity fields ``init()`` was given that differ from the resumed run's: W&B renames a
    run resumed with a new ``name`` (and so for tags, group, job type and notes); fields left unset
    keep the run's."""
    if state is None or state.start is None:
        return {}
    known = state.identity
    return {field: identity[field] for field in ("name", "tags", "group", "job_type", "notes")
            if identity[field] is not None and identity[field] != known[field]}


def init_arguments(owner: str, kwargs: dict[str, Any], *, own: Sequence[str] = ()) -> dict[str, Any]:
    """``kwargs`` an integration forwards to :func:`init`, checked when the integration is built
    (not when it starts its run, after the model is built or loaded).

    A keyword ``init()`` doesn't take is a ``TypeError`` naming it, ``owner`` and what it takes
    (``own``: the integration's own arguments, for the message); a bad ``project`` or ``id`` is
    ``InvalidName``; ``dir`` becomes a ``str``. Integrations take ``**init_kwargs`` rather than
    copying ``init()``'s signature, so a new ``init()`` argument reaches every one of them.
    """
    import inspect
    import os

    # the user's arguments: ``uploader`` and ``fetcher`` are how tracklet.init plugs in the client package
    accepted = [name for name in inspect.signature(init).parameters if name not in ("uploader", "fetcher")]
    unknown = [name for name in kwargs if name not in accepted]
    if unknown:
        takes = ", ".join([*own, *accepted])
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}; it takes {takes} "
                        "(all but its own go to tracklet.init)")
    checked = dict(kwargs)
    if checked.get("project") is not None:
        check_name("project", checked["project"])
    if checked.get("id") is not None:
        check_name("run id", checked["id"])
    if checked.get("dir") is not None:
        checked["dir"] = os.fspath(checked["dir"])
    return checked


def _sweep_identity(sweep: Any, project: str | None, run_id: str | None, resume: Any) -> tuple[str, str, Any]:
    """A trial's project and run are the sweep's (W&B ignores ``project=`` in a sweep too); a
    restarted trial resumes its run."""
    import warnings

    from tracklet.core.stack import user_stacklevel
    from tracklet.core.warn import TrackletWarning

    for what, given, used in (("project", project, sweep.project), ("id", run_id, sweep.run_id)):
        if given is not None and given != used:
            warnings.warn(f"tracklet: init({what}={given!r}) is ignored in sweep {sweep.sweep_id}'s trial "
                          f"{sweep.trial}: the run is {sweep.project}/{sweep.run_id}", TrackletWarning,
                          stacklevel=user_stacklevel())
    return sweep.project, sweep.run_id, "allow" if resume in (None, False, "never") else resume
