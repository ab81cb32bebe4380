"""Run settings: explicit arguments win, then ``TRACKLET_*`` environment variables, then defaults."""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from pathlib import Path
from typing import Any, Mapping

from tracklet.core.layout import check_name, is_valid_name  # noqa: F401  (defined there; imported from here too)

MODES = ("offline", "online", "disabled")
CONSOLE_MODES = ("wrap", "off")



@dataclasses.dataclass
class Settings:
    """Everything that changes how a run records, with the environment variable that sets each.

    A field passed to the constructor (or set on the object later) is an explicit argument: it
    wins over its ``TRACKLET_*`` variable even when it equals the default, so
    ``Settings(console="wrap")`` records the console under ``TRACKLET_CONSOLE=off``. Fields left
    out take the environment's value, then the default.

    Attributes:
        mode: ``"offline"`` records to the local data root; ``"online"`` also streams the record
            log to the tracking server at ``base_url`` as the run goes; ``"disabled"`` makes
            every call a no-op. ``TRACKLET_MODE``.
        dir: the data root. Default: a per-user data directory. ``TRACKLET_DIR``.
        project: project used when ``init(project=None)``. ``TRACKLET_PROJECT``.
        flush_interval: seconds within which a logged record reaches the operating system
            (survives the process being killed). ``TRACKLET_FLUSH_INTERVAL``.
        max_queue: rows the background sender may hold before ``log()`` waits for it (rows of
            10 values; a row of n values counts as (n + 3) / 13 of one). ``TRACKLET_MAX_QUEUE``.
        batch_size: rows that wake the sender before its timer does (counted as for
            ``max_queue``). ``TRACKLET_BATCH_SIZE``.
        strict: raise ``TypeError`` in ``log()`` for an unsupported value instead of warning
            and dropping that key. ``TRACKLET_STRICT``.
        console: ``"wrap"`` records stdout/stderr lines (still shown on the terminal);
            ``"off"`` records none. ``TRACKLET_CONSOLE``.
        capture_environment: record git state, installed packages and hardware.
            ``TRACKLET_CAPTURE_ENVIRONMENT``.
        capture_wait: seconds ``finish()`` waits for the environment capture still running in the
            background (host, git, then the package inventory, cached per environment): parts
            not captured by then are listed in the record's ``incomplete``, with the reason. The
            system monitor is never waited for: a run that ends before its first sample (1 s)
            has no system metrics. ``TRACKLET_CAPTURE_WAIT``.
        finish_timeout: seconds ``finish()`` waits for the sender before giving up (records
            not written by then are reported as lost). ``TRACKLET_FINISH_TIMEOUT``.
        system_metrics: sample GPU (NVML) and host (psutil) metrics on a thread of their own.
            ``TRACKLET_SYSTEM_METRICS``.
        system_interval: seconds between samples. ``TRACKLET_SYSTEM_INTERVAL``.
        system_window: seconds aggregated (mean and max) into one stats record.
            ``TRACKLET_SYSTEM_WINDOW``.
        system_per_core: also record every CPU core's utilisation. ``TRACKLET_SYSTEM_PER_CORE``.
        system_pcie: also record each GPU's PCIe throughput (the driver samples it for 20 ms per
            direction, so it is off by default). ``TRACKLET_SYSTEM_PCIE``.
        base_url: the tracking server for ``mode="online"``. ``TRACKLET_BASE_URL``.
        api_key: the API key to present to it. ``TRACKLET_API_KEY``; else the key that
            ``tracklet login`` saved for ``base_url``.
        upload_interval: seconds between uploads of a live run's new records.
            ``TRACKLET_UPLOAD_INTERVAL``.
        upload_timeout: seconds ``finish()`` waits for the last upload before leaving the rest
            to ``tracklet sync``. ``TRACKLET_UPLOAD_TIMEOUT``.
        sweep_id: the sweep this process runs a trial of (set by ``tracklet agent``):
            ``init()`` records trial ``sweep_trial``'s run with the trial's config
            (``tracklet.core.sweeptrial``). ``TRACKLET_SWEEP_ID``.
        sweep_trial: the trial's number in that sweep. ``TRACKLET_SWEEP_TRIAL``.
        reproduce: a reproduction's JSON file (set by ``tracklet reproduce``): the first
            ``init()`` records the run it names, linked to the original, with its config and
            artifact versions (``tracklet.core.reproduction``). ``TRACKLET_REPRODUCE``.
        media_workers: threads that encode and store logged media (``tracklet.Image``, ...)
            off the training thread. ``TRACKLET_MEDIA_WORKERS``.
        media_queue: logged media items that may wait for those threads; more are dropped
            (counted, one warning), never waited for. ``TRACKLET_MEDIA_QUEUE``.
        tracing: record a span for each call of a ``@tracklet.op`` function while this run is
            the current one (docs/tracing.md). ``TRACKLET_TRACING``.
        tracing_budget: the share of the run's time its traced ops may cost (the worker's CPU
            time on their spans plus an estimate of the callers'); while over it, traces started
            outside any op by ops without their own ``sample_rate`` are left out whole
            (docs/tracing.md, "Tracing budget"). 1 keeps every trace. ``TRACKLET_TRACING_BUDGET``.
        primary: whether this process is the run's primary writer (the default). ``False``
            makes it a *secondary* writer of a run another process started (distributed training:
            other ranks, other nodes): ``init(id=<the run's id>)`` then records into the run's
            part ``parts/<label>.tlog`` beside its ``run.tlog``, and readers and the store show
            every part as one run (docs/shared-runs.md). ``TRACKLET_PRIMARY``.
        label: a secondary writer's name in the run (``"rank_1"``, ``"node-3"``; the rules of a
            run id): its part's file name, the tag of its console lines, system metrics and
            values of keys another writer owns (``loss/l:rank_1``). Default: ``rank_<RANK>`` when the ``RANK`` environment variable is a
            number, else ``<host>-<pid>``. ``TRACKLET_LABEL``.
        update_finish_state: a secondary writer whose end sets the run's state too (W&B's
            ``x_update_finish_state=True``): the run reads running until it ends as well, and
            failed or crashed if it did (docs/shared-runs.md). Default False: the run's state is
            its primary's. ``TRACKLET_UPDATE_FINISH_STATE``.
    """

    mode: str = "offline"
    dir: str | None = None
    project: str | None = None
    flush_interval: float = 1.0
    max_queue: int = 20_000
    batch_size: int = 2_000
    strict: bool = False
    console: str = "wrap"
    capture_environment: bool = True
    capture_wait: float = 0.1
    finish_timeout: float = 30.0
    system_metrics: bool = True
    system_interval: float = 2.0
    system_window: float = 10.0
    system_per_core: bool = False
    system_pcie: bool = False
    base_url: str | None = None
    api_key: str | None = None
    upload_interval: float = 2.0
    upload_timeout: float = 30.0
    sweep_id: str | None = None
    sweep_trial: str | None = None
    reproduce: str | None = None
    media_workers: int = 2
    media_queue: int = 256
    tracing: bool = True
    tracing_budget: float = 0.01
    primary: bool = True
    label: str | None = None
    update_finish_state: bool = False

    def __post_init__(self) -> None:
        # Which fields were given (to the constructor, or set afterwards): those win over the
        # environment in resolve_settings, even when they equal the default.
        given = _CONSTRUCTOR_ARGUMENTS.given
        object.__setattr__(self, "_explicit", set(given) if given is not None else set())

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        explicit = self.__dict__.get("_explicit")
        if explicit is not None:
            explicit.add(name)

    def explicit_fields(self) -> dict[str, Any]:
        """The settings given explicitly (constructor arguments and later assignments)."""
        explicit = self.__dict__["_explicit"]  # set by __post_init__, not a dataclass field
        return {name: getattr(self, name) for name in _FIELD_NAMES if name in explicit}

    def validate(self) -> "Settings":
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.console not in CONSOLE_MODES:
            raise ValueError(f"console must be one of {', '.join(CONSOLE_MODES)}; got {self.console!r}")
        if not self.flush_interval > 0:
            raise ValueError(f"flush_interval must be a positive number of seconds; got {self.flush_interval!r}")
        if self.max_queue < 1 or self.batch_size < 1:
            raise ValueError("max_queue and batch_size must be at least 1")
        if self.media_workers < 1 or self.media_queue < 1:
            raise ValueError("media_workers and media_queue must be at least 1")
        if not 0 < self.system_interval <= self.system_window:
            raise ValueError(
                "system_interval must be positive and at most system_window; "
                f"got {self.system_interval!r} and {self.system_window!r}"
            )
        if self.mode == "online" and not self.base_url:
            raise ValueError("mode='online' needs the tracking server's URL: settings base_url or TRACKLET_BASE_URL")
        if not self.upload_interval > 0 or self.upload_timeout < 0:
            raise ValueError("upload_interval must be positive and upload_timeout at least 0")
        if not 0 < self.tracing_budget <= 1:
            raise ValueError(f"tracing_budget must be a share of the run's time above 0 and at most 1; got {self.tracing_budget!r}")
        if not self.capture_wait >= 0:
            raise ValueError(f"capture_wait must be >= 0 seconds; got {self.capture_wait!r}")
        if self.finish_timeout < 0:
            raise ValueError(f"finish_timeout must be >= 0; got {self.finish_timeout!r}")
        if self.label is not None:
            check_name("label", self.label)
        return self


_FIELD_NAMES = tuple(field.name for field in dataclasses.fields(Settings))


class _ConstructorArguments(threading.local):
    given: tuple[str, ...] | None = None


_CONSTRUCTOR_ARGUMENTS = _ConstructorArguments()
_dataclass_init = Settings.__init__


@functools.wraps(_dataclass_init)
def _init_recording_arguments(self: Settings, *args: Any, **kwargs: Any) -> None:
    _CONSTRUCTOR_ARGUMENTS.given = (*_FIELD_NAMES[: len(args)], *kwargs)
    try:
        _dataclass_init(self, *args, **kwargs)
    finally:
        _CONSTRUCTOR_ARGUMENTS.given = None


Settings.__init__ = _init_recording_arguments  # type: ignore[method-assign]


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"environment variable {name} must be true or false; got {text!r}")


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Settings):
        name = "TRACKLET_" + field.name.upper()
        if name not in environ:
            continue
        text = environ[name]
        try:
            if field.type in ("bool",):
                values[field.name] = _parse_bool(name, text)
            elif field.type in ("int",):
                values[field.name] = int(text)
            elif field.type in ("float",):
                values[field.name] = float(text)
            else:
                values[field.name] = text
        except ValueError as error:
            raise ValueError(f"environment variable {name}={text!r} is not valid: {error}") from None
    return values


def resolve_settings(
    settings: "Settings | Mapping[str, Any] | None" = None,
    environ: Mapping[str, str] | None = None,
    **arguments: Any,
) -> Settings:
    """Merge, by priority: keyword ``arguments`` and ``settings`` (explicit), the environment, defaults."""
    merged = _from_environment(os.environ if environ is None else environ)
    if isinstance(settings, Settings):
        merged.update(settings.explicit_fields())
    elif settings is not None:
        unknown = set(settings) - {f.name for f in dataclasses.fields(Settings)}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        merged.update(settings)
    merged.update({k: v for k, v in arguments.items() if v is not None})
    if merged.get("mode") == "shared":  # W&B's name for a writer of a run with several (docs/shared-runs.md)
        merged.pop("mode")
        merged.setdefault("mode", _from_environment(os.environ if environ is None else environ).get("mode", "offline"))
        if merged["mode"] == "shared":
            merged["mode"] = "offline"
    return Settings(**merged).validate()


def default_data_root() -> Path:
    """The per-user data directory (``~/.local/share/tracklet`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("tracklet", appauthor=False))


def data_root(settings: Settings) -> Path:
    return Path(settings.dir).expanduser() if settings.dir else default_data_root()
