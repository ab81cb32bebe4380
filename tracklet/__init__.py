"""tracklet: a local-first ML experiment tracker that speaks W&B's Python API.

    import tracklet
    run = tracklet.init(project="mnist", config={"lr": 3e-4})
    for step in range(1000):
        tracklet.log({"loss": loss})
    tracklet.finish()

``import tracklet`` is kept light: it imports no ML framework, no numpy and no protobuf until a run
starts. ``tracklet.run``, ``tracklet.config`` and ``tracklet.summary`` are the current run's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from tracklet.core import seeds as _seeds  # noqa: E402

_seeds.install()  # record the random seeds the program sets (no framework is imported)

if TYPE_CHECKING:
    from tracklet.api import Api
    from tracklet.artifacts import Artifact
    from tracklet.core.api import RecordedRun
    from tracklet.core.run import Run
    from tracklet.core.settings import Settings
    from tracklet.core.values import Histogram
    from tracklet.media import Audio, Html, Image, Molecule, Object3D, Plotly, Video
    from tracklet.media.table import Table
    from tracklet.tracing.evaluation import Evaluation
    from tracklet.tracing.ops import op

_LAZY = {
    # With the run's artifact hooks (the worker's small front): a run's first log_artifact then
    # imports nothing on the caller's thread (an import there waited for the GIL, 2-15 ms).
    "Artifact": ("tracklet.artifacts.run_hooks", "Artifact"),
    "Api": ("tracklet.api", "Api"),
    "RecordedRun": ("tracklet.core.api", "RecordedRun"),
    "Run": ("tracklet.core.run", "Run"),
    "Settings": ("tracklet.core.settings", "Settings"),
    "Histogram": ("tracklet.core.values", "Histogram"),
    "Image": ("tracklet.media", "Image"),
    "Audio": ("tracklet.media", "Audio"),
    "Video": ("tracklet.media", "Video"),
    "Html": ("tracklet.media", "Html"),
    "Object3D": ("tracklet.media", "Object3D"),
    "Molecule": ("tracklet.media", "Molecule"),
    "Plotly": ("tracklet.media", "Plotly"),
    "Table": ("tracklet.media.table", "Table"),
    "Report": ("tracklet.reports.report", "Report"),
    "TrackletWarning": ("tracklet.errors", "TrackletWarning"),
    "TrackletError": ("tracklet.errors", "TrackletError"),
    "op": ("tracklet.tracing.ops", "op"),
    "Evaluation": ("tracklet.tracing.evaluation", "Evaluation"),
}


def init(*args: Any, **kwargs: Any) -> "Run":
    from tracklet.core.start import init as _init

    return _init(*args, uploader=_online_uploader, fetcher=_fetch_run, **kwargs)


def _online_uploader(paths: Any, settings: Any, report: Any) -> Any:
    """An online run's uploader, from the client package (imported only by online runs); it
    sends the media and table blobs of the run's artifacts directory too."""
    from tracklet.artifacts.storage import artifact_dir
    from tracklet.client.uploader import online_uploader

    return online_uploader(paths, settings, report, blob_dir=artifact_dir(paths.root))


def _fetch_run(paths: Any, settings: Any) -> bool:
    """An online run resumed where its log isn't: the server's copy, downloaded and checked."""
    from tracklet.errors import ResumeError

    try:
        from tracklet.client.log_download import fetch_for_resume
    except ImportError as error:
        raise ResumeError(f"resuming {paths.project}/{paths.run_id} from {settings.base_url} needs httpx "
                          f"(pip install 'tracklet[server]'): {error}") from None
    return fetch_for_resume(paths, settings)


init.__doc__ = "Start a run; see :func:`tracklet.core.start.init`."


def _artifact_hooks() -> Any:
    """What ``Run.log_artifact``/``use_artifact`` call: the core can't import the artifacts package."""
    from tracklet.artifacts import run_hooks

    return run_hooks


def _logged_worker() -> Any:
    """What ``Run.log`` hands logged objects (media, tables) to: the core can't import it."""
    from tracklet.media import worker

    return worker


def _figures() -> Any:
    """What ``Run.log`` turns matplotlib and plotly figures into media with (``as_logged``)."""
    from tracklet.media import figures

    return figures


def _media_reader() -> Any:
    """What ``RecordedRun.media``/``images`` read logged media with."""
    from tracklet.media import read

    return read


def _table_reader() -> Any:
    """What ``RecordedRun.table``/``table_keys`` read logged tables with."""
    from tracklet.media import table_read

    return table_read


def _registry() -> Any:
    """What ``Run.link_artifact``/``link_model``/``use_artifact`` and ``Artifact.link`` call for
    registry collections (``tracklet.registry``)."""
    from tracklet.registry import service

    return service


def _reports() -> Any:
    """What ``Api.report``/``Api.reports`` read reports with (``tracklet.reports``): the api
    package can't import a package of its own layer."""
    from tracklet.reports import report

    return report


def _sweep_view() -> Any:
    """What ``Api.sweep`` reads a local sweep with (``tracklet.sweeps.view``): the api package can't
    import a package of its own layer."""
    from tracklet.sweeps import view

    return view


def _remote_runs() -> Any:
    """What an artifact version read from a server gives its lineage's runs as (``tracklet.api.remote``'s
    ``RemoteRun``): the artifacts package sits below the api package."""
    from tracklet.api import remote

    return remote


def _plug_in() -> None:
    from tracklet.core.extensions import provide

    provide("artifacts", _artifact_hooks)
    provide("logged", _logged_worker)
    provide("figures", _figures)
    provide("media", _media_reader)
    provide("tables", _table_reader)
    provide("registry", _registry)
    provide("reports", _reports)
    provide("sweep_view", _sweep_view)
    provide("remote_runs", _remote_runs)


_plug_in()


def autolog(frameworks: Any = None, *, disable: bool = False) -> None:
    """Attach tracklet to Lightning, Hugging Face, Keras, JAX, openai and anthropic when they are used; see
    :mod:`tracklet.integrations.autolog`. Imports no framework itself."""
    from tracklet.integrations.autolog import autolog as _autolog

    _autolog(frameworks, disable=disable)


def _current() -> "Run":
    from tracklet.core import lifecycle

    run = lifecycle.current()
    if run is None:
        raise RuntimeError("tracklet: no run is active; call tracklet.init() first")
    return run


def log(data: Any, step: int | None = None, commit: bool | None = None) -> None:
    """Log to the current run (see :meth:`tracklet.Run.log`)."""
    _current().log(data, step=step, commit=commit)


def define_metric(name: str, step_metric: str | None = None, summary: Any = None, hidden: bool = False) -> None:
    _current().define_metric(name, step_metric=step_metric, summary=summary, hidden=hidden)


def alert(title: str, text: str = "", level: str = "INFO") -> None:
    _current().alert(title, text, level)


def log_artifact(artifact_or_path: Any, name: str | None = None, type: str | None = None,
                 aliases: list[str] | None = None) -> Any:
    """Log an artifact to the current run (see :meth:`tracklet.Run.log_artifact`)."""
    return _current().log_artifact(artifact_or_path, name=name, type=type, aliases=aliases)


def use_artifact(artifact_or_name: Any, type: str | None = None) -> Any:
    """Record the current run's use of an artifact version (see :meth:`tracklet.Run.use_artifact`)."""
    return _current().use_artifact(artifact_or_name, type=type)


def finish(exit_code: int | None = None) -> None:
    """Finish the current run, if there is one."""
    from tracklet.core import lifecycle

    run = lifecycle.current()
    if run is not None:
        run.finish(exit_code)


class _NoRun:
    """Stands for ``tracklet.config``/``tracklet.summary`` before ``init()``: any use says so."""

    def __init__(self, what: str) -> None:
        self._what = what

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"tracklet.{self._what} needs an active run; call tracklet.init() first")

    __getitem__ = __setitem__ = __iter__ = __len__ = __contains__ = update = _fail

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._fail()

    def __repr__(self) -> str:
        return f"<tracklet.{self._what}: no active run>"


def __getattr__(name: str) -> Any:
    if name == "run":
        from tracklet.core import lifecycle

        return lifecycle.current()
    if name in ("config", "summary"):
        from tracklet.core import lifecycle

        run = lifecycle.current()
        return getattr(run, name) if run is not None else _NoRun(name)
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        # Kept as a module attribute: later lookups don't call this. ``tracklet.Image(x)`` in a
        # training loop looked it up per step, ~50 µs right after a step (cold caches) each time.
        globals()[name] = value
        return value
    if name.isidentifier() and not name.startswith("_"):
        # ``tracklet.compat.install_wandb()``, ``tracklet.tracing.autopatch()``,
        # ``tracklet.registry.cards.front_matter(...)`` after a plain ``import tracklet``, as the
        # docs write them: a subpackage is imported when first named (``import tracklet`` itself
        # imports none of them).
        import importlib
        import importlib.util

        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'tracklet' has no attribute {name!r}")


__all__ = [
    "Api",
    "Artifact",
    "Audio",
    "Evaluation",
    "Histogram",
    "Html",
    "Image",
    "Molecule",
    "Object3D",
    "Plotly",
    "RecordedRun",
    "Run",
    "Settings",
    "Table",
    "TrackletError",
    "TrackletWarning",
    "Video",
    "__version__",
    "alert",
    "autolog",
    "define_metric",
    "finish",
    "init",
    "log",
    "log_artifact",
    "op",
    "use_artifact",
]
