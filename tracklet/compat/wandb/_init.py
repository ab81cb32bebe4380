"""``wandb.init`` mapped onto ``tracklet.init``.

What is recorded: project, name, id, config (with ``config_include_keys``/``config_exclude_keys``),
tags, group, job_type, notes, resume, mode (``disabled`` records nothing; ``offline``, ``online``
and ``dryrun`` record under tracklet's data root, streaming to a tracklet server when one is
configured), console and stats settings. W&B's ``WANDB_*`` environment variables fill arguments
left unset; ``tracklet run --project/--name/--job-type`` override them (the command line is where
the user chose). Everything else is accepted with one warning. A run that cannot start becomes a
disabled run with a warning, so training goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import weakref
from pathlib import Path
from typing import Any, Sequence

from tracklet.compat import WANDB_DEFAULT_PROJECT
from tracklet.compat.wandb import wandb_settings
from tracklet.compat.wandb._config import config_defaults, config_paths, parse_config
from tracklet.compat.wandb._messages import not_supported, termlog, warn_once
from tracklet.compat.wandb.errors import UsageError
from tracklet.compat.wandb.wandb_run import Run, RunDisabled
from tracklet.errors import InvalidName, RecordLogError, ResumeError
from tracklet.core.modules import loaded

_MODES = {
    "online": None, "run": None, "shared": None, "offline": "offline", "dryrun": "offline", "disabled": "disabled",
}
_REINIT = (None, True, False, "default", "return_previous", "finish_previous", "create_new")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_UNSUPPORTED_ARGS = {
    "resume_from": "the run is not rewound",
    "fork_from": "a new run starts instead",
    "sync_tensorboard": "TensorBoard logs are not synced (tracklet import tensorboard reads them)",
    "tensorboard": "TensorBoard logs are not synced",
    "monitor_gym": "gym videos are not recorded",
    "magic": "it is ignored",
}

_current: Run | None = None
# The W&B run object of each live tracklet run started or adopted here, so that returning a live
# run (reinit "return_previous") gives back the object the script holds, entity and settings kept.
_wrappers: "weakref.WeakKeyDictionary[Any, Run]" = weakref.WeakKeyDictionary()


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _data_root(directory: Any) -> str | None:
    """``init(dir=D)``: the run is recorded under the data root ``D``, as ``tracklet.init(dir=D)``
    does. W&B's default ``dir`` is the working directory (Lightning's ``WandbLogger`` passes
    ``save_dir="."``); that default maps to tracklet's usual data root (``TRACKLET_DIR``)."""
    if directory is None or directory == "":
        return None
    path = os.path.abspath(os.path.expanduser(os.fspath(directory)))
    return None if path == os.path.abspath(os.getcwd()) else path


def _safe_name(kind: str, value: Any) -> str | None:
    """Project names and run ids become directories in tracklet; other characters become '-'."""
    if value is None or value == "":
        return None
    text = str(value)
    safe = _SAFE.sub("-", text).strip("-._")[:128] or None
    if safe != text:
        warn_once(f"rename-{kind}-{text}", f"{kind} {text!r} is recorded as {safe!r} (tracklet allows letters, "
                  "digits, '.', '_' and '-')")
    return safe


def wrap(tracklet_run: Any, **kwargs: Any) -> Run:
    """The W&B run object for a tracklet run (a :class:`RunDisabled` in disabled mode)."""
    cls = RunDisabled if tracklet_run.settings.mode == "disabled" else Run
    return cls(tracklet_run, **kwargs)


def current() -> Run | None:
    """The W&B run for tracklet's current run (one started by ``tracklet.init`` is adopted)."""
    global _current
    from tracklet.core import lifecycle

    active = lifecycle.current()
    if active is None or active.finished:
        return None
    if _current is None or _current._run is not active:
        _current = _wrapper(active)
    return _current


def _wrapper(tracklet_run: Any) -> Run:
    """The W&B run object for a live tracklet run: the one made for it before, else a new one."""
    known = _wrappers.get(tracklet_run)
    if known is None:
        known = _wrappers[tracklet_run] = wrap(tracklet_run)
    return known


def _note_wandb_server(env: Any, given: dict[str, Any]) -> None:
    """One notice when the script names a W&B server (``WANDB_BASE_URL``, ``Settings(base_url=)``)
    and no tracklet server is configured: tracklet never talks to W&B (nor sends ``WANDB_API_KEY``
    anywhere), so the user learns which variable points runs at a tracklet server instead."""
    if env.get("TRACKLET_BASE_URL"):
        return
    named = "WANDB_BASE_URL" if env.get("WANDB_BASE_URL") else "wandb.Settings(base_url=...)" \
        if given.get("base_url") else None
    if named is not None:
        warn_once("wandb-base-url", f"{named} is ignored: tracklet never talks to a W&B server (nor sends "
                  "WANDB_API_KEY anywhere) and records this run in its data root (TRACKLET_DIR); to stream runs "
                  "to a tracklet server, set TRACKLET_BASE_URL to its URL and TRACKLET_MODE=online")


def _stats_interval(given: dict[str, Any], env: Any) -> dict[str, float]:
    """W&B's ``x_stats_sampling_interval`` (``_stats_sample_rate_seconds``,
    ``WANDB_X_STATS_SAMPLING_INTERVAL``): seconds between the system metrics points it records. In
    tracklet a point is the mean and max of a window's samples: the window is that many seconds,
    sampled every ``system_interval`` (2 s, or the window if shorter). Until session 29 it was
    accepted and ignored silently (a point every 10 s whatever was asked). Not a number of seconds
    of at least 0.1 (W&B's ``UsageError``; tracklet sampled at any interval given): one warning,
    the defaults."""
    value = given.get("x_stats_sampling_interval", given.get("_stats_sample_rate_seconds"))
    if value is None:
        value = env.get("WANDB_X_STATS_SAMPLING_INTERVAL")
    if value is None:
        return {}
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0.1 <= seconds < float("inf"):  # W&B refuses under 0.1 s (UsageError)
        warn_once("stats-interval", f"x_stats_sampling_interval={value!r} is not a number of seconds of at least "
                  "0.1 (W&B's least); system metrics are recorded every 10 s (tracklet's system_window)")
        return {}
    return {"system_window": seconds, "system_interval": min(2.0, seconds)}


def _note_wandb_dir(env: Any, data_root: str | None) -> None:
    """One notice when ``WANDB_DIR`` names a directory and nothing else chose the data root
    (``TRACKLET_DIR`` unset, no ``dir=``): W&B would write the run there (a job's scratch space,
    when the home directory is small), tracklet records it in its default data root. ``WANDB_DIR``
    is not read, as ``wandb.Api()`` and ``tracklet ui`` would not find runs put there; the notice
    names the variable that moves both (until session 29 it was ignored silently)."""
    wandb_dir = env.get("WANDB_DIR")
    if not wandb_dir or data_root is not None or env.get("TRACKLET_DIR") or _data_root(wandb_dir) is None:
        return
    from tracklet.core.settings import default_data_root

    warn_once("wandb-dir", f"WANDB_DIR={wandb_dir} is not read: tracklet records this run in its data root "
              f"{default_data_root()}; set TRACKLET_DIR={wandb_dir} to record runs there (tracklet ui and "
              "wandb.Api() then read them there too), or pass init(dir=...)")


def init(
    job_type: str | None = None,
    dir: str | os.PathLike | None = None,
    config: Any = None,
    project: str | None = None,
    entity: str | None = None,
    reinit: bool | str | None = None,
    tags: Sequence[str] | None = None,
    group: str | None = None,
    name: str | None = None,
    notes: str | None = None,
    magic: Any = None,
    config_exclude_keys: Sequence[str] | None = None,
    config_include_keys: Sequence[str] | None = None,
    anonymous: str | None = None,
    mode: str | None = None,
    allow_val_change: bool | None = None,
    resume: bool | str | None = None,
    force: bool | None = None,
    tensorboard: bool | None = None,
    sync_tensorboard: bool | None = None,
    monitor_gym: bool | None = None,
    save_code: bool | None = None,
    id: str | None = None,
    fork_from: Any = None,
    resume_from: Any = None,
    settings: Any = None,
    **unknown: Any,
) -> Run:
    """Start a run (W&B's ``wandb.init``); see the module docstring for what maps to what."""
    global _current
    env = os.environ
    given = wandb_settings.as_dict(settings)
    for key in unknown:
        not_supported(f"wandb.init({key}=...)", "it is ignored")
    for key, instead in _UNSUPPORTED_ARGS.items():
        if locals()[key] not in (None, False):
            not_supported(f"wandb.init({key}=...)", instead)
    if entity or given.get("entity") or env.get("WANDB_ENTITY"):
        warn_once("entity", "entity= is accepted but not recorded: tracklet has no entities, runs are kept by project")
    data_root = _data_root(dir if dir is not None else given.get("root_dir"))
    _note_wandb_server(env, given)
    _note_wandb_dir(env, data_root)
    # a setting left unset (None) or an unsupported feature turned off (sync_tensorboard=False) asks for nothing
    unknown_settings = sorted(k for k, v in given.items() if k not in wandb_settings.MAPPED
                              and k not in wandb_settings.IGNORED and v is not None
                              and not (k in _UNSUPPORTED_ARGS and v is False))
    if unknown_settings:
        not_supported(f"wandb.Settings({', '.join(unknown_settings)})", "these settings are ignored")

    reinit = given.get("reinit", reinit) if reinit is None else reinit
    if reinit not in _REINIT:
        warn_once("reinit", f"reinit={reinit!r} is not a W&B value; using 'default'")
        reinit = None
    # W&B's booleans: True is "finish_previous", False "return_previous"; "default" is
    # "finish_previous" in a notebook (an IPython kernel or shell), else "return_previous".
    given_reinit = reinit
    if reinit in (None, "default"):
        reinit = "finish_previous" if in_notebook() else "return_previous"
    elif isinstance(reinit, bool):
        reinit = "finish_previous" if reinit else "return_previous"
    previous = _most_recent()
    if previous is not None and reinit != "create_new":
        if reinit == "finish_previous":
            if given_reinit in (None, "default"):
                termlog("Finishing previous runs because reinit is set to 'default'.")
            for live in _live():
                live.finish()
        else:
            if (resume if resume is not None else given.get("resume") or env.get("WANDB_RESUME")) == "must":
                raise UsageError("Cannot resume a run while another run is active. You must either finish it "
                                 "using run.finish(), or use reinit='create_new' when calling wandb.init().")
            warn_once("return-previous", "wandb.init() called while a run is active: returning that run, as W&B "
                      "does by default (its arguments are ignored); pass reinit='finish_previous' for a new run, or "
                      "reinit='create_new' for another live run")
            return previous

    def pick(argument: Any, setting: str, variable: str, launch: str | None = None) -> Any:
        if launch and env.get(launch):
            return env[launch]
        if argument is not None:
            return argument
        if given.get(setting) is not None:
            return given[setting]
        return env.get(variable) or None

    wandb_mode = mode if mode is not None else given.get("mode") or env.get("WANDB_MODE")
    if _flag(env.get("WANDB_DISABLED")):
        wandb_mode = "disabled"
    if wandb_mode is not None and wandb_mode not in _MODES:
        warn_once("mode", f"mode={wandb_mode!r} is not one of {', '.join(_MODES)}; recording as usual")
        wandb_mode = None
    tracklet_settings: dict[str, Any] = {}
    console = given.get("console") or env.get("WANDB_CONSOLE")
    if console == "off":
        tracklet_settings["console"] = "off"
    if given.get("x_disable_stats") or given.get("_disable_stats") or _flag(env.get("WANDB_X_DISABLE_STATS")):
        tracklet_settings["system_metrics"] = False
    tracklet_settings.update(_stats_interval(given, env))
    if given.get("disable_git") or given.get("x_disable_meta") or given.get("_disable_meta") \
            or _flag(env.get("WANDB_DISABLE_GIT")):
        tracklet_settings["capture_environment"] = False
    if given.get("x_primary") is False:  # W&B's shared mode: another process's run, this one's part of it
        tracklet_settings["primary"] = False
        if given.get("x_label") is not None:
            tracklet_settings["label"] = _safe_name("label", str(given["x_label"]))
        # W&B's default (True): its end sets the run's state too, unless x_update_finish_state=False
        tracklet_settings["update_finish_state"] = given.get("x_update_finish_state") is not False

    tag_list = pick(tags, "run_tags", "WANDB_TAGS")
    if isinstance(tag_list, str):
        tag_list = [t.strip() for t in tag_list.split(",") if t.strip()]
    if resume is None:
        resume = given.get("resume") or env.get("WANDB_RESUME") or None
    auto_resume = resume is True or resume == "auto"  # W&B: resume the last run started here unless it finished
    if resume == "auto":
        resume = "allow"
    if resume not in (None, True, False, "allow", "must", "never"):
        warn_once("resume", f"resume={resume!r} is not a W&B value; starting a new run")
        resume = None
    run_id = _safe_name("run id", pick(id, "run_id", "WANDB_RUN_ID"))
    allow = bool(allow_val_change if allow_val_change is not None else given.get("allow_val_change"))
    config_items = config_defaults() or None  # W&B's config-defaults.yaml, which init(config=) overrides
    if config is not None:
        config_items = {**(config_items or {}),
                        **parse_config(config, exclude=config_exclude_keys, include=config_include_keys)}
    from_paths = config_paths()  # WANDB_CONFIG_PATHS' files: over both, as W&B's config_paths
    if from_paths:
        config_items = {**(config_items or {}), **from_paths}

    from tracklet import init as tracklet_init

    arguments = dict(
        project=_safe_name("project", pick(project, "project", "WANDB_PROJECT", "TRACKLET_LAUNCH_PROJECT"))
        or env.get("TRACKLET_PROJECT") or (None if env.get("TRACKLET_SWEEP_ID") else WANDB_DEFAULT_PROJECT),
        name=pick(name, "run_name", "WANDB_NAME", "TRACKLET_LAUNCH_NAME"),
        tags=[str(t) for t in tag_list] if tag_list else None,
        group=pick(group, "run_group", "WANDB_RUN_GROUP"),
        job_type=pick(job_type, "run_job_type", "WANDB_JOB_TYPE", "TRACKLET_LAUNCH_JOB_TYPE"),
        notes=pick(notes, "run_notes", "WANDB_NOTES"),
        id=run_id,
        resume=resume,
        mode=_MODES.get(wandb_mode) if wandb_mode else None,
        dir=data_root,
        settings=tracklet_settings or None,
        reinit="create_new" if reinit == "create_new" else None,  # the others were dealt with above
    )
    resume_file = None
    if auto_resume and arguments["mode"] != "disabled" and not env.get("TRACKLET_SWEEP_ID") \
            and not env.get("TRACKLET_REPRODUCE"):  # a sweep trial or a reproduction has its own run
        resume_file = _autoresume_file(data_root)
        if arguments["id"] is None:
            arguments["id"] = _autoresume_id(resume_file, data_root, arguments["project"])
    shared_writer = (wandb_mode == "shared" and tracklet_settings.get("primary", True) and arguments["id"] is not None
                     and arguments["mode"] != "disabled")
    if shared_writer and given.get("x_primary") is True:  # this process says it is the primary
        state = _log_state(arguments, primary_asked=True)
        if state in ("exists", "remote") and arguments["resume"] is None:
            arguments["resume"] = "allow"  # a primary restarted (here or on another node): it continues its run
        elif state == "live":
            _join_as_secondary(arguments, tracklet_settings, given, primary_asked=True)
    elif shared_writer and _started_elsewhere(arguments):
        _join_as_secondary(arguments, tracklet_settings, given)
    try:
        try:
            started = tracklet_init(config=config_items, **arguments)
        except (RecordLogError, InvalidName, ResumeError) as error:  # two processes started run id= at once
            # in shared mode, or a label differing only in case from a part here or on the server (ResumeError)
            if isinstance(error, (InvalidName, ResumeError)) and "only in case" not in str(error):
                raise
            if not (shared_writer and "being written" in str(error)) and not _label_taken(tracklet_settings, error):
                raise
            if tracklet_settings.get("primary", True):
                _join_as_secondary(arguments, tracklet_settings, given)
            try:
                started = tracklet_init(config=config_items, **arguments)
            except (RecordLogError, InvalidName, ResumeError) as again:  # its x_label is another live process's
                if not _label_taken(tracklet_settings, again):
                    raise
                started = tracklet_init(config=config_items, **arguments)
    except ValueError as error:
        if "resume" in str(error) or "already exists" in str(error):
            raise UsageError(str(error)) from None
        started = _fall_back(arguments, config_items, error)
    except ResumeError:  # the run's log on the server can't be fetched: a new one would fork it
        raise
    except Exception as error:  # e.g. the data root is not writable: training must still run
        started = _fall_back(arguments, config_items, error)
    if resume_file is not None:
        _save_autoresume(resume_file, started)
    made = wrap(started, entity=pick(entity, "entity", "WANDB_ENTITY"), allow_val_change=allow,
                settings=wandb_settings.Settings(**given) if given else None)
    _wrappers[started] = made
    if reinit != "create_new":  # a create_new run is not wandb.run (W&B's rule): the script keeps it
        _current = made
    if save_code if save_code is not None else (given.get("save_code") or _flag(env.get("WANDB_SAVE_CODE"))):
        _save_program(made)
        if given.get("code_dir") is not None:  # W&B's run._on_start: log_code(code_dir) too
            try:
                made.log_code(os.fspath(given["code_dir"]))
            except Exception as error:  # never into training
                warn_once("code-dir", f"wandb.Settings(code_dir={given['code_dir']!r}): saving the code failed: "
                          f"{error!r}")
    return made


def _autoresume_file(data_root: str | None) -> Path:
    """Where ``resume="auto"`` (or ``True``) keeps the id of the last run started from this working
    directory: W&B's ``wandb/wandb-resume.json``, kept under the data root (tracklet writes nothing
    into the working directory), one file per working directory."""
    from tracklet.core.settings import default_data_root

    root = Path(data_root or os.environ.get("TRACKLET_DIR") or default_data_root()).expanduser()
    key = hashlib.sha256(os.path.abspath(os.getcwd()).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return root / "autoresume" / f"{key}.json"


def _autoresume_id(path: Path, data_root: str | None, project: str | None) -> str | None:
    """The run to resume under ``resume="auto"``: the last one started here in ``project``, unless
    it finished (W&B deletes its resume file when a run exits 0) or is still being recorded (a job
    started beside it from the same directory: resuming would fail on its writer), or None for a
    new run."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        run_id, saved_project = saved["run_id"], saved["project"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(run_id, str) or (project is not None and saved_project != project):
        return None
    try:
        import tracklet

        previous = tracklet.Api(data_root).run(f"{saved_project}/{run_id}")
    except Exception:  # gone, or unreadable: start a new run
        return None
    return None if previous.state in ("finished", "running") else run_id


def _save_autoresume(path: Path, started: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"run_id": started.id, "project": started.project}), encoding="utf-8")
    except Exception as error:  # never into training
        warn_once("autoresume", f"resume='auto': the run id could not be saved for the next start: {error!r}")


def _live() -> list[Run]:
    """The W&B run objects of this process's live runs, oldest first (the current one's included)."""
    from tracklet.core import lifecycle

    return [_wrapper(run) for run in lifecycle.live_runs()]


def _most_recent() -> Run | None:
    """W&B's ``most_recent_active_run``: the live run started last, ``wandb.run`` or not; a
    disabled current run (which records nothing, so is not among the live ones) counts too."""
    from tracklet.core import lifecycle

    live = lifecycle.most_recent()
    if live is not None:
        return _wrapper(live)
    return current()


def _save_program(run: Any) -> None:
    """``save_code=True``: the program's main file as a ``code`` artifact (``run.log_code`` of that one
    file), as W&B saves it; beside it tracklet's own capture records the git commit, the diff and the
    untracked modules the program imported (docs/reproduce.md)."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if not os.path.isfile(program):
        warn_once("save-code", "wandb.init(save_code=True): no program file to save (a notebook or `python -c`)")
        return
    program = os.path.abspath(program)
    try:
        run._log_code_files(os.path.dirname(program), [program])
    except Exception as error:  # never into training
        warn_once("save-code", f"wandb.init(save_code=True): saving {program} failed: {error!r}")


def _started_elsewhere(arguments: dict[str, Any]) -> bool:
    """Whether another process started run ``arguments["id"]`` (W&B's shared mode without
    ``x_primary``): its log is being written by a live process, or it exists and this process
    doesn't resume it (``resume=`` unset or ``"never"``: W&B lets a process write a shared run
    whose primary finished; a process passing ``resume="allow"`` continues the run as its primary),
    or, online, the server says another writer holds the run's primary (two nodes starting at once)."""
    state = _log_state(arguments)
    return state == "live" or (state in ("exists", "remote") and arguments["resume"] in (None, False, "never"))


def _log_state(arguments: dict[str, Any], primary_asked: bool = False) -> str | None:
    """Run ``arguments["id"]``'s own log: ``"live"`` while a live process writes it here (online:
    or while the server says another writer holds the run's primary), ``"exists"`` when it is on
    disk here and no live process writes it, ``"remote"`` when it isn't here but an online run's
    server holds it and this process may continue it as its primary (another node started the
    run), None when it is in neither, this process holding the primary where the server was asked
    (or when it can't be told: then the run starts as asked). ``primary_asked``: W&B's
    ``x_primary=True``, which continues the run it started (a claim that resumes)."""
    from tracklet.core.layout import RunPaths
    from tracklet.core.recordlog import writer_alive
    from tracklet.core.settings import data_root, resolve_settings

    try:
        explicit = {key: value for key in ("dir", "project", "mode") if (value := arguments[key]) is not None}
        resolved = resolve_settings(arguments["settings"], **explicit)
        project = arguments["project"] or os.environ.get("TRACKLET_PROJECT") or "default"
        log_file = RunPaths(data_root(resolved), project, arguments["id"]).log_file
        if writer_alive(log_file) is True:
            return "live"
        if log_file.is_file():
            return "exists"
    except Exception:
        return None
    if resolved.mode == "online" and resolved.base_url:
        resume = primary_asked or arguments["resume"] in (True, "allow", "must")
        return _claim_primary(resolved, project, arguments["id"], resume=resume)
    return None


SERVER_CHECK_TIMEOUT = 5.0  # seconds init() waits for the server's answer to whether it holds a shared run


def _claim_primary(resolved: Any, project: str, run_id: str, resume: bool) -> str | None:
    """Ask the tracking server for run ``project/run_id``'s primary (``POST .../primary``, one
    request bounded by ``SERVER_CHECK_TIMEOUT`` and not retried; docs/shared-runs.md, "Claiming
    the primary"): ``"live"`` when it is refused (another writer holds it, or the run exists and
    this process doesn't ``resume`` it: a secondary then), ``"remote"`` when granted for a run the
    server holds (this process continues it), None when granted for a new run. A server from
    before the route (404, 405) is asked as before whether it holds the run's log (``GET
    .../log/offset``: ``"remote"`` or None); one that can't be reached or refuses otherwise leaves
    the decision to the local log (None), as offline."""
    import secrets

    from tracklet.core import hostinfo

    path = f"/api/v1/runs/{project}/{run_id}"
    host = "".join(character for character in hostinfo.hostname() or "" if character.isprintable())[:255]
    claim = {"token": secrets.token_urlsafe(24), "host": host, "pid": os.getpid(), "resume": resume}
    try:
        from tracklet.client.http import HttpClient, RetryPolicy

        with HttpClient(resolved.base_url, api_key=resolved.api_key, timeout=SERVER_CHECK_TIMEOUT,
                        retry=RetryPolicy(give_up_after=SERVER_CHECK_TIMEOUT, attempts=1)) as http:
            response = http.request("POST", f"{path}/primary", json=claim, idempotent=True)
            if response.status_code in (404, 405):  # an older server: does it hold the run's log?
                return "remote" if _server_has_log(http, path) else None
            answer = response.json() if response.status_code in (200, 409) else None
    except Exception:  # httpx missing, unreachable, a bad answer: never keep init() from starting
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("primary"), bool):
        return None
    if not answer["primary"]:
        holder = answer.get("holder")
        if isinstance(holder, dict):
            _refusals[(project, run_id)] = f"{holder.get('host') or 'another host'}, pid {holder.get('pid')}"
        return "live"
    offset = answer.get("offset")
    return "remote" if isinstance(offset, int) and offset > 0 else None


_refusals: dict[tuple[str, str], str] = {}  # who holds a run's primary, as a refused claim's answer named it


def _server_has_log(http: Any, path: str) -> bool:
    """Whether the tracking server holds the run's own log (``GET .../log/offset`` answers more
    than 0 bytes): asked of a server without the primary claim's route."""
    try:
        response = http.request("GET", f"{path}/log/offset")
        if response.status_code != 200:
            return False
        offset = response.json().get("offset")
        return isinstance(offset, int) and offset > 0
    except Exception:  # unreachable, a bad answer: the local rule decides
        return False


def _label_taken(tracklet_settings: dict[str, Any], error: Exception) -> bool:
    """Whether a secondary writer failed to start because another live process writes the part
    of its label (W&B lets processes share an ``x_label``; a part has one writer), or the run has
    a part whose label differs from its only in case (one file on a case-insensitive file
    system): then it takes ``<label>-<pid>``, with one warning, and True (the caller starts it
    again)."""
    label = tracklet_settings.get("label")
    if tracklet_settings.get("primary", True) or label is None or not (
            "being written" in str(error) or "only in case" in str(error)):
        return False
    unique = f"{label[: 128 - 12]}-{os.getpid()}"
    if unique == label:
        return False
    tracklet_settings["label"] = unique
    why = ("another process is writing that label's part of the run" if "being written" in str(error)
           else "the run has a part whose label differs from it only in case (one file on macOS)")
    warn_once(f"shared-label-{label}", f"wandb.init(x_label={label!r}): {why}; this one is recorded as {unique!r} "
              "(give each process its own x_label)")
    return True


def _join_as_secondary(arguments: dict[str, Any], tracklet_settings: dict[str, Any], given: dict[str, Any],
                       primary_asked: bool = False) -> None:
    """W&B's shared mode without ``x_primary=False`` on a run another process writes: W&B lets
    every process write it, so this one becomes a secondary writer (docs/shared-runs.md). With
    ``x_primary=True`` (``primary_asked``) while another live process writes the run's own log,
    the warning says so: two processes took the primary's part."""
    tracklet_settings["primary"] = False
    if given.get("x_label") is not None:
        tracklet_settings["label"] = _safe_name("label", str(given["x_label"]))
    tracklet_settings["update_finish_state"] = given.get("x_update_finish_state") is not False  # W&B's default
    arguments["settings"] = tracklet_settings
    project = arguments["project"] or os.environ.get("TRACKLET_PROJECT") or "default"
    holder = _refusals.pop((project, arguments["id"]), None)
    holder = f" (the server names its primary: {holder})" if holder else ""
    if primary_asked:
        warn_once("shared-secondary", f"wandb.init(mode='shared', x_primary=True): another live process is writing "
                  f"run {arguments['id']} as its primary{holder}; this one is recorded as a secondary writer of it "
                  "(give x_primary=True to one process only)")
        return
    warn_once("shared-secondary", f"wandb.init(mode='shared') joins run {arguments['id']}, which another process "
              f"started{holder}: recorded as a secondary writer of it (W&B's x_primary=False; set it on every "
              "process but the primary's)")


def _fall_back(arguments: dict[str, Any], config: Any, error: Exception) -> Any:
    from tracklet import init as tracklet_init

    warn_once("init-failed", f"wandb.init() could not start a tracklet run ({error!r}); this run records nothing "
              "and training goes on")
    arguments = {**arguments, "mode": "disabled", "resume": None, "settings": None}
    for key in ("project", "id", "dir"):
        arguments[key] = None
    return tracklet_init(config=config, **arguments)


def in_notebook() -> bool:
    """Whether this process runs under IPython (a Jupyter kernel, or an IPython shell), as W&B's
    ``wandb.sdk.lib.ipython.in_notebook`` decides: IPython is already imported and
    ``get_ipython()`` returns a shell. IPython is never imported here (a script doesn't pay for it)."""
    ipython = loaded("IPython")
    if ipython is None:
        return False
    try:
        return ipython.get_ipython() is not None
    except Exception:  # a half-imported or broken IPython: not a notebook
        return False


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run, if any (``wandb.finish``)."""
    run = current()
    if run is not None:
        run.finish(exit_code, quiet)
