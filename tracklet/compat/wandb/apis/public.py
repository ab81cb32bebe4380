"""``wandb.Api``: W&B's public read API over ``tracklet.Api`` (the local data root, or a tracklet
server: ``overrides={"base_url": ...}`` or ``$TRACKLET_BASE_URL``).

Paths may carry an entity (``entity/project/run_id``, ``entity/project/runs/run_id``) or not
(``project/run_id``); tracklet has no entities, so it is ignored. ``run.history()`` returns a
pandas DataFrame as W&B does (a list of dicts with ``pandas=False`` or without pandas).
"""

from __future__ import annotations

import copy
import datetime
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Iterator, Sequence

from tracklet.compat.wandb._messages import not_supported, warn_once
from tracklet.compat.wandb.apis import _artifact_lists
from tracklet.compat.wandb.apis.filters import config_path, to_filter, to_order
from tracklet.compat.wandb.errors import CommError, UsageError

_INTERNAL = ("_step", "_timestamp", "_runtime")
_SERVER_HISTOGRAM = {"edges", "counts", "nan_count", "inf_count"}


def _iso(seconds: float | None) -> str | None:
    """Seconds since the epoch as W&B's timestamps read: ISO 8601 in UTC, to the second."""
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parts(path: str) -> list[str]:
    return [p for p in str(path).replace(":", "/").split("/") if p and p != "runs"]


def _dotted(values: Any, key: str) -> Any:
    """``values[key]``, else the nested value a dotted ``key`` names (``"opt.lr"``); None if absent."""
    if key in values:
        return values[key]
    for part in key.split("."):
        if not hasattr(values, "get"):
            return None
        values = values.get(part)
    return values


class User:
    """W&B's ``User`` as a run gives it (``run.user``) and ``Api().viewer``: ``username``, ``name``
    and ``entity`` (tracklet keeps one name per user and has no entities: all three are it), and
    ``verified``, tracklet's own: True when a server authenticated the user by API key, False for
    an OS user name. ``admin``: a server admin (the viewer on a server only). tracklet keeps no
    e-mail addresses, teams or W&B API keys: ``email`` is None, ``teams`` and ``api_keys`` empty."""

    def __init__(self, username: str, *, verified: bool = False, admin: bool = False) -> None:
        self.username = username
        self.name = username
        self.entity = username
        self.verified = verified
        self.admin = admin
        self.email: str | None = None
        self.teams: list[str] = []
        self.api_keys: list[str] = []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, User) and (self.username, self.verified) == (other.username, other.verified)

    def __hash__(self) -> int:
        return hash((self.username, self.verified))

    def __repr__(self) -> str:
        return f"<User {self.username}{'' if self.verified else ' (unverified)'}>"


class HTTPSummary(dict):
    """A run's summary: a dict with attribute access (W&B's ``HTTPSummary``). Edits (item or
    attribute assignment, ``del``) are saved by ``summary.update()`` (``update(dict)`` sets the
    dict's keys first), as W&B's ``update`` saves the summary at once, or by ``run.update()``.

    ``more`` gives keys read only when first needed (a run's logged media and tables as W&B's
    JSON: reading them lists every item the run logged), each kept unless set already: a key
    the dict lacks, ``get``, ``in``, and every view of the whole (iteration, ``len``, ``keys``,
    ``items``, ``values``, ``dict(summary)``, ``json.dumps``, ``copy``) ask for them first, so
    ``summary["loss"]`` reads no media."""

    def __init__(self, data: Any = (), more: Any = None, save: Any = None) -> None:
        super().__init__(data)
        object.__setattr__(self, "_more", more)
        object.__setattr__(self, "_save", save)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """W&B's ``summary.update(key_vals=None)``: set ``key_vals``' keys, then save the summary's
        edits to the run (``Run.update`` for the summary alone), as W&B's saves it to its server."""
        dict.update(self, *args, **kwargs)
        save = self.__dict__.get("_save")
        if save is not None:
            save()

    def _complete(self) -> bool:
        """Add ``more``'s keys (once); whether there were any to ask for."""
        more = self.__dict__.get("_more")
        if more is None:
            return False
        object.__setattr__(self, "_more", None)
        for key, value in more().items():
            dict.setdefault(self, key, value)
        return True

    def __missing__(self, key: Any) -> Any:
        if self._complete():
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def get(self, key: Any, default: Any = None) -> Any:
        if not dict.__contains__(self, key):
            self._complete()
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (self._complete() and dict.__contains__(self, key))

    def _whole(name: str) -> Any:  # type: ignore[misc]  # noqa: N805  (a helper of the class body)
        method = getattr(dict, name)

        def whole(self: HTTPSummary, *args: Any, **kwargs: Any) -> Any:
            self._complete()
            return method(self, *args, **kwargs)

        whole.__name__ = name
        return whole

    # Every view of the whole dict, and edits that must see the keys first (a key deleted before
    # they arrived would come back with them).
    __iter__ = _whole("__iter__")
    __len__ = _whole("__len__")
    __repr__ = _whole("__repr__")
    __eq__ = _whole("__eq__")
    __ne__ = _whole("__ne__")
    __or__ = _whole("__or__")
    __ror__ = _whole("__ror__")
    __reversed__ = _whole("__reversed__")
    __delitem__ = _whole("__delitem__")
    keys = _whole("keys")
    items = _whole("items")
    values = _whole("values")
    copy = _whole("copy")
    pop = _whole("pop")
    popitem = _whole("popitem")
    setdefault = _whole("setdefault")
    clear = _whole("clear")
    __hash__ = None
    del _whole

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    @property
    def _json_dict(self) -> dict[str, Any]:
        """The summary as JSON data, as W&B's export snippets read it: histograms become W&B's
        ``{"_type": "histogram", "values": counts, "bins": edges}``."""
        return {key: _json_value(value) for key, value in self.items()}


def _json_value(value: Any) -> Any:
    from tracklet.core.values import Histogram

    if isinstance(value, Histogram):
        return {"_type": "histogram", "values": list(value.counts), "bins": list(value.edges)}
    if isinstance(value, dict) and set(value) == _SERVER_HISTOGRAM:  # a server's JSON of a Histogram
        return {"_type": "histogram", "values": list(value["counts"]), "bins": list(value["edges"])}
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    return value


_EDITABLE = ("name", "tags", "notes", "group", "job_type")


class Run:
    """A recorded run as ``wandb.Api().run(...)`` returns it."""

    def __init__(self, recorded: Any, entity: str | None = None, api: Any = None) -> None:
        self._recorded = recorded
        self.entity = entity
        self._api = api  # the tracklet.Api that found it (a server's: resolves its artifacts)
        self._config: dict[str, Any] | None = None
        self._summary: HTTPSummary | None = None
        self._media: Any = None  # _media_json.Logged, read at the first summary/history/file that needs it
        self._edited: dict[str, Any] = {}  # name, tags, notes, group, job_type set on this object

    # identity and metadata
    @property
    def id(self) -> str:
        return self._recorded.id

    @property
    def name(self) -> str:
        return self._edited.get("name", self._recorded.name)

    @name.setter
    def name(self, value: str) -> None:
        self._edited["name"] = value

    display_name = name

    @property
    def project(self) -> str:
        return self._recorded.project

    @property
    def path(self) -> list[str]:
        return [self.entity or "", self.project, self.id]

    @property
    def url(self) -> str:
        return f"tracklet://{self.project}/{self.id}"

    @property
    def state(self) -> str:
        """``running``, ``finished``, ``failed`` or ``crashed``; for a run that called
        ``mark_preempting()`` (and was not resumed since) ``preempting`` while it runs and
        ``preempted`` when it ended other than finished, as W&B's."""
        state = self._recorded.state
        if state != "finished" and getattr(self._recorded, "preempting", None):
            return "preempting" if state == "running" else "preempted"
        return state

    @property
    def config(self) -> dict[str, Any]:
        """The run's config, one dict per ``Run`` object: edits to it are saved by :meth:`update`."""
        if self._config is None:
            self._config = copy.deepcopy(self._recorded.config)  # edits in place stay here until update()
        return self._config

    @property
    def summary(self) -> HTTPSummary:
        """The run's summary, one per ``Run`` object: edits to it are saved by :meth:`update`.
        As W&B's: a histogram is ``{"_type": "histogram", "values", "bins"}``, and each key media
        or a table was logged under holds the last one's JSON (``{"_type": "image-file", "path",
        ...}``: ``_media_json``)."""
        if self._summary is None:
            recorded = self._recorded
            self._summary = HTTPSummary(self._summary_view(recorded, media=False), more=lambda: self._media_view(),
                                        save=lambda: self._save("run.summary.update()", everything=False))
        return self._summary

    def _logged(self) -> Any:
        """The run's media and tables by key and step (``_media_json.Logged``), read once per ``Run``."""
        if self._media is None:
            from tracklet.compat.wandb.apis._media_json import Logged

            try:
                self._media = Logged(self._recorded)
            except Exception as error:  # the metrics still read: the media are named missing, once
                warn_once("api-media", f"run {self._recorded.path}: its media and tables are left out of summary "
                          f"and history: {type(error).__name__}: {error}")
                self._media = Logged(None)
        return self._media

    def _summary_view(self, recorded: Any, media: bool = True) -> dict[str, Any]:
        """The summary as W&B shows it (see :attr:`summary`; ``media``: with the media and tables'
        keys); :meth:`update` saves what differs from it."""
        view = {key: _json_value(value) for key, value in copy.deepcopy(recorded.summary).items()}
        if media:
            for key, value in self._media_view().items():
                view.setdefault(key, value)
        return view

    def _media_view(self) -> dict[str, Any]:
        """Each key media or a table was logged under, with the last one's JSON (a copy)."""
        return copy.deepcopy(self._logged().last)

    @property
    def tags(self) -> list[str]:
        if "tags" not in self._edited:
            self._edited["tags"] = list(self._recorded.tags)  # the list W&B scripts append to
        return self._edited["tags"]

    @tags.setter
    def tags(self, value: Sequence[str]) -> None:
        self._edited["tags"] = list(value)

    @property
    def group(self) -> str | None:
        return self._edited["group"] if "group" in self._edited else self._recorded.group or None

    @group.setter
    def group(self, value: str | None) -> None:
        self._edited["group"] = value

    @property
    def job_type(self) -> str | None:
        return self._edited["job_type"] if "job_type" in self._edited else self._recorded.job_type or None

    @job_type.setter
    def job_type(self, value: str | None) -> None:
        self._edited["job_type"] = value

    @property
    def notes(self) -> str | None:
        return self._edited["notes"] if "notes" in self._edited else self._recorded.notes or None

    @notes.setter
    def notes(self, value: str | None) -> None:
        self._edited["notes"] = value

    @property
    def summary_metrics(self) -> dict[str, Any]:
        """The summary as JSON data (W&B's ``run.summary_metrics``)."""
        return self.summary._json_dict

    @property
    def sweep(self) -> Sweep | None:
        """The sweep this run is a trial of (its ``sweep:<id>`` tag), else None."""
        from tracklet.errors import SweepNotFound

        sweep_id = next((tag.removeprefix("sweep:") for tag in self._recorded.tags if tag.startswith("sweep:")), None)
        if sweep_id is None or self._api is None:
            return None
        try:
            return Sweep(self._api.sweep(f"{self.project}/{sweep_id}"), self._api, self.entity)
        except (SweepNotFound, ValueError):
            return None

    @property
    def sweep_name(self) -> str | None:
        """W&B's ``sweepName``: the id of the sweep this run is a trial of (its ``sweep:<id>`` tag),
        else None."""
        return next((tag.removeprefix("sweep:") for tag in self._recorded.tags if tag.startswith("sweep:")), None)

    @property
    def rawconfig(self) -> dict[str, Any]:
        """W&B's ``rawconfig``: the config's values (not wrapped in ``{"value", "desc"}``) with W&B's
        internal keys (``_wandb``); tracklet records no internal keys in a config, so it is the
        config's keys and values (a copy: edit ``config`` and call :meth:`update` to change them)."""
        return copy.deepcopy(self.config)

    @property
    def json_config(self) -> str:
        """The config as W&B's JSON text, ``{"key": {"value": v, "desc": null}}`` (the shape of
        ``config-defaults.yaml``)."""
        import json

        return json.dumps({key: {"value": value, "desc": None} for key, value in self.config.items()})

    @property
    def created_at(self) -> str | None:
        """ISO 8601 in UTC, as W&B gives it."""
        return _iso(self._recorded.created_at)

    createdAt = created_at  # noqa: N815 - W&B's Attrs answer both spellings

    @property
    def heartbeat_at(self) -> str | None:
        """When the run last wrote a record that carries a time (a history row, its start, its
        exit), ISO 8601 in UTC like ``created_at``: W&B's last heartbeat of the run. None for a
        run with no such record."""
        return _iso(self._recorded.updated_at)

    heartbeatAt = heartbeat_at  # noqa: N815

    @property
    def lastHistoryStep(self) -> int:  # noqa: N802 - W&B's name
        """The last step of the history; -1 when nothing was logged, as W&B."""
        step = self._recorded.last_step
        return -1 if step is None else step

    @property
    def historyLineCount(self) -> int:  # noqa: N802 - W&B's name
        """How many history rows (steps) the run has, as W&B counts its history lines."""
        steps = self._recorded.history([]).get("_step")
        return len(steps) if steps is not None else 0

    history_line_count = historyLineCount

    @property
    def user(self) -> User | None:
        """W&B's ``User`` who made the run (``username``, ``name``): on a tracklet server with API
        keys, the user of the key that started the run's upload; in a data root (or on a server
        without keys), the OS user name the run's process recorded. None for a run recorded without
        one (before tracklet recorded users), so a script's ``run.user.username`` should check first."""
        found = self._recorded.user
        return None if found is None else User(found.name, verified=found.verified)

    @property
    def username(self) -> str | None:
        """W&B's deprecated ``run.username``: the entity (W&B's answer too), with W&B's warning."""
        warn_once("run-username", "Run.username is deprecated. Please use Run.entity instead.")
        return self.entity

    @property
    def storage_id(self) -> str:
        """What the run is stored under: ``project/run_id`` (W&B's is an opaque database id; tracklet's
        runs are kept by project and id, in the data root and on a server alike)."""
        return f"{self.project}/{self.id}"

    @property
    def metadata(self) -> dict[str, Any]:
        """Where and how the run ran (tracklet's metadata), with W&B's names for what it recorded
        under its own: ``program``, ``args``, ``startedAt``, ``gpu``, ``gpu_count``, ``memory``,
        ``cudaVersion`` (``_run_files.wandb_metadata``)."""
        from tracklet.compat.wandb.apis._run_files import wandb_metadata

        return wandb_metadata(self._recorded.metadata, self.created_at)

    @property
    def system_metrics(self) -> dict[str, Any]:
        """The last system metrics window (W&B's last values of ``system/*``)."""
        history = self._system_columns()
        return {k: v[-1] for k, v in history.items() if v and not k.startswith("_")}

    def _system_columns(self) -> Any:
        """The system metrics' ``History`` (window means), from the record log or from a server
        (whose ``RemoteRun.system_metrics`` gives series: ``system_history`` gives the columns),
        with each metric W&B has also under W&B's name and unit (``system.gpu.0.gpu``,
        ``system.cpu``, ``system.proc.memory.rssMB``...: ``wandb_system_names.wandb_name``), as W&B's
        ``history(stream="events")`` and ``system_metrics`` name them."""
        from tracklet.compat.wandb_system_names import wandb_name

        remote = getattr(self._recorded, "system_history", None)
        columns = remote() if remote is not None else self._recorded.system_metrics()
        for name in list(columns):
            found = wandb_name(name)
            if found is not None and f"system.{found[0]}" not in columns:
                factor = found[1]
                columns[f"system.{found[0]}"] = [None if value is None else value * factor for value in columns[name]]
        return columns

    # history
    def _rows(self, keys: Sequence[str] | None, x_axis: str = "_step", min_step: int | None = None,
              max_step: int | None = None, stream: str = "default") -> list[dict[str, Any]]:
        """The history's rows as W&B returns them: histograms, media and tables as W&B's JSON
        (``_media_json``), a step that logged only media or tables a row of its own."""
        if isinstance(keys, (str, bytes)):  # W&B: "keys must be specified in a list", and no rows
            raise UsageError(f"keys must be specified in a list: keys=[{keys!r}], not keys={keys!r} (which names "
                             "no key: each of its characters would be one)")
        media: dict[int, dict[str, Any]] = {}
        if stream == "system" or stream == "events":
            columns = self._system_columns()
        else:
            # Media and tables are read (every item the run logged) only for keys that may be
            # theirs: not for keys the history holds numbers under.
            metric_keys = set(self._recorded.keys()) if keys is not None else set()
            if keys is None or any(k not in _INTERNAL and k not in metric_keys for k in keys):
                logged = self._logged()
            else:
                from tracklet.compat.wandb.apis._media_json import Logged

                logged = Logged(None)
            wanted = None if keys is None else [k for k in dict.fromkeys([*keys, x_axis])
                                                if k not in _INTERNAL and k not in logged.keys]
            columns = self._recorded.history(wanted)
            media = {step: {k: v for k, v in values.items() if keys is None or k in keys}
                     for step, values in logged.by_step.items()}
        rows = []
        # The system stream's rows are by time, not step: W&B's default x axis (_step) isn't one
        # they must hold (a row lacking an x axis given explicitly is left out as in the history).
        axis = () if stream in ("system", "events") and x_axis == "_step" else (x_axis,)

        def keep(row: dict[str, Any]) -> None:
            step = row.get("_step")
            if step is not None and ((min_step is not None and step < min_step) or
                                     (max_step is not None and step >= max_step)):
                return
            if keys is not None:
                # W&B asks its server for the keys [x_axis, *keys] (runs.py _sampled_history): only
                # rows holding every one of them, and only those columns (x_axis="epoch": no _step;
                # until session 29 _step came too, and rows without the x axis)
                if any(row.get(k) is None for k in (*axis, *keys)):
                    return
                row = {k: row[k] for k in dict.fromkeys([x_axis, *keys]) if k in row}
            else:
                row = {k: v for k, v in row.items() if v is not None or k in _INTERNAL}
            rows.append({k: _json_value(v) for k, v in row.items()})

        for row in columns.rows():  # row by row, without a list per column (a sparse run stays small)
            logged_here = media.pop(row.get("_step"), None) if media else None
            keep({**row, **copy.deepcopy(logged_here)} if logged_here else row)
        if media:  # steps that logged media or tables and nothing else
            for step in sorted(media):
                if media[step]:
                    keep({"_step": step, **copy.deepcopy(media[step])})
            rows.sort(key=lambda row: row.get("_step", -1))
        return rows

    def history(self, samples: int = 500, keys: Sequence[str] | None = None, x_axis: str = "_step",
                pandas: bool = True, stream: str = "default") -> Any:
        """At most ``samples`` rows, evenly spaced over the history (first and last kept); with
        ``keys``, only rows holding all of them. A pandas DataFrame unless ``pandas=False``."""
        rows = self._rows(keys, x_axis, stream=stream)
        if samples is not None and 0 < samples < len(rows):
            if samples == 1:
                rows = [rows[-1]]
            else:
                last = len(rows) - 1
                rows = [rows[round(i * last / (samples - 1))] for i in range(samples)]
        if not pandas:
            return rows
        try:
            import pandas as pd
        except ImportError:
            warn_once("pandas", "run.history() returns a list of dicts: pandas is not installed")
            return rows
        return pd.DataFrame.from_records(rows)

    def scan_history(self, keys: Sequence[str] | None = None, page_size: int = 1000, min_step: int | None = None,
                     max_step: int | None = None) -> Iterator[dict[str, Any]]:
        """Every row (no sampling), as dicts; with ``keys``, only rows holding all of them."""
        return iter(self._rows(keys, min_step=min_step, max_step=max_step))

    def files(self, names: Sequence[str] | None = None, per_page: int = 50) -> list[Any]:
        """The run's files by name, as W&B lists a run's files: its ``files/`` (``wandb.save``,
        ``requirements.txt``, ``diff.patch``), W&B's ``config.yaml``, ``wandb-summary.json``,
        ``wandb-metadata.json`` and ``output.log`` (made from the record: ``_run_files``), and each
        logged media file and table under the ``media/...`` path its summary and history JSON
        name. ``names``: only those."""
        from tracklet.compat.wandb.apis import _run_files
        from tracklet.compat.wandb.apis._media_json import MediaFile

        wanted = None if names is None else set(names)
        found: dict[str, Any] = {name: File(self._recorded, name) for name in self._recorded.files()
                                 if wanted is None or name in wanted}
        for name in _run_files.NAMES:
            if name not in found and (wanted is None or name in wanted):
                made = _run_files.wandb_file(self, name)
                if made is not None:
                    found[name] = made
        if wanted is None or any(name.startswith("media/") for name in wanted):
            for name, source in self._logged().files.items():
                if name not in found and (wanted is None or name in wanted):
                    found[name] = MediaFile(self._recorded, name, source)
        return [found[name] for name in sorted(found)]

    def file(self, name: str) -> Any:
        """A file of the run's ``files/``; W&B's ``config.yaml``, ``wandb-summary.json``,
        ``wandb-metadata.json`` or ``output.log`` made from the record; or a logged media item or
        table under the ``path`` its summary or history JSON names (``media/images/...``),
        downloaded as W&B's file."""
        from tracklet.compat.wandb.apis import _run_files

        if name in _run_files.NAMES or name.startswith("media/"):
            if name not in self._recorded.files():
                if name in _run_files.NAMES:
                    made = _run_files.wandb_file(self, name)
                    if made is not None:
                        return made
                else:
                    from tracklet.compat.wandb.apis._media_json import MediaFile

                    source = self._logged().files.get(name)
                    if source is not None:
                        return MediaFile(self._recorded, name, source)
        return File(self._recorded, name)

    def upload_file(self, path: str, root: str = ".") -> "File":
        """W&B's ``run.upload_file(path, root=".")``: add the file to the run's files under its path
        relative to ``root`` (the data root's ``files/``, or the server's copy for a run read from
        one, as ``tracklet sync`` sends files) and return it (``_run_files.upload``)."""
        from tracklet.compat.wandb.apis._run_files import upload

        return File(self._recorded, upload(self._recorded, path, root))

    def update(self) -> None:
        """Save edits to ``config`` and ``summary``: appended to the run's record log as the
        same config and summary records a live run writes, so every reader, the store and a
        server copy (``tracklet sync``) see them and nothing already recorded is rewritten.
        A run still being recorded is refused (its writer owns the log). Edits to ``name``,
        ``tags``, ``notes``, ``group`` and ``job_type`` are appended as one ``RunUpdate`` record,
        which readers, the store and the dashboard apply over the run's start."""
        self._save("run.update()", everything=True)

    def _save(self, call: str, everything: bool) -> None:
        """Append the edits (``everything``: config, summary and run fields; else the summary's
        alone, as W&B's ``summary.update()`` saves only the summary) to the run's record log."""
        from tracklet.core.api import RecordedRun

        if not isinstance(self._recorded, RecordedRun):
            raise CommError(f"{call} is not supported for runs read from a tracklet server yet; update the "
                            "local copy and `tracklet sync` it")
        recorded = self._recorded.refresh()
        from tracklet.core.identity import checked_changes

        renamed: dict[str, Any] = {}
        config_set: dict[str, Any] = {}
        config_removed: list[str] = []
        if everything:
            try:
                renamed = checked_changes({field: self._edited[field] for field in _EDITABLE if field in self._edited
                                           and self._edited[field] != _recorded_field(recorded, field)})
            except (TypeError, ValueError) as error:
                raise UsageError(f"{call}: {error}; nothing was saved") from None
            config_set, config_removed = _changes(recorded.config, self._config)
        summary_set, summary_removed = _changes(self._summary_view(recorded), self._summary)
        summary_set = _summary_values(summary_set)  # UsageError for media: nothing saved
        if not (renamed or config_set or config_removed or summary_set or summary_removed):
            return
        try:
            append_updates(recorded, config_set, config_removed, summary_set, summary_removed, renamed)
        except Exception as error:
            raise CommError(f"{call} could not save {recorded.path}: {error}") from error
        if everything:
            self._config = self._summary = self._media = None
            self._edited = {}
        recorded.refresh()  # the summary object stays: it holds what is saved now

    def delete(self, delete_artifacts: bool = False) -> None:
        not_supported("wandb.Api run.delete()", "nothing is deleted (remove the run's directory to delete it)")

    def logged_artifacts(self, per_page: int = 100) -> list:
        """The artifact versions this run logged (from the store's lineage), with its logged tables
        as W&B lists them: ``run-<id>-<key>:v<n>`` of type ``run_table``, one per time the key was
        logged (``_run_tables.py``), all in the order they were logged; a run on a tracking server
        the same, from the server's read routes."""
        return self._artifacts("logged")

    def used_artifacts(self, per_page: int = 100) -> list:
        """The artifact versions this run used."""
        return self._artifacts("used")

    def _artifacts(self, direction: str) -> list:
        from tracklet.artifacts.lookup import resolve
        from tracklet.compat.wandb.data_types import Artifact
        from tracklet.api.local import LocalApi as TrackletApi
        from tracklet.store.lineage import edges_of_run

        from tracklet.compat.wandb._messages import warn_once
        from tracklet.errors import ArtifactNotFound

        recorded = self._recorded
        found: list[tuple[float, Any]] = []
        gone: list[str] = []
        if not hasattr(recorded, "_paths"):  # a run on a tracking server: its lineage from the server
            refs = recorded.used_artifacts if direction == "used" else recorded.logged_artifacts
            edges = [{**ref, "reference": f"{ref['project']}/{ref['name']}:v{ref['version']}"} for ref in refs]
            look_up = self._api.artifact
        else:
            root = recorded._paths.root
            edges = [{**edge, "reference": f"{edge['project']}/{edge['name']}:v{edge['version']}"}
                     for edge in edges_of_run(TrackletApi(root).store.engine, recorded.project, recorded.id, direction)]

            def look_up(reference: str) -> Any:
                return resolve(root, reference)
        for edge in edges:
            if edge["type"] == "run_table" and direction == "logged":
                continue  # its logged tables: all of them, below
            if any(a.qualified_name == edge["reference"] for _, a in found):
                continue
            try:
                if edge["type"] == "run_table":  # a run's logged table it used (run-<id>-<key>:v<n>)
                    from tracklet.compat.wandb.apis._run_tables import run_table_artifact

                    tables = self._api if self._api is not None else TrackletApi(recorded._paths.root)
                    table = run_table_artifact(tables, edge["project"], f"{edge['name']}:v{edge['version']}")
                    if table is None:
                        raise ArtifactNotFound(edge["reference"])
                    found.append((edge["time"], table))
                else:
                    found.append((edge["time"], Artifact._wrap(look_up(edge["reference"]))))
            except ArtifactNotFound:  # deleted since (artifact.delete()): the others are still listed
                gone.append(edge["reference"])
        if gone:
            warn_once(f"run-artifacts-gone-{self.project}/{self.id}-{direction}",
                      f"run {self.project}/{self.id} {direction} artifact version(s) deleted since, left out: "
                      f"{', '.join(gone[:10])}")
        if direction == "logged":
            from tracklet.compat.wandb.apis._run_tables import run_table_artifacts

            found.extend((table.time, table) for table in run_table_artifacts(recorded, recorded.project))
            found.sort(key=lambda pair: pair[0])  # stable: ties keep the lineage order
        return [artifact for _, artifact in found]

    def console_logs(self, *, per_page: int = 1000, last: int | None = None) -> Any:
        """W&B's ``console_logs()``: what the run's process wrote to stdout and stderr, one
        ``ConsoleLogLine`` a line (``number`` from 0, ``timestamp``, ``level`` ``"error"`` for
        stderr, ``label``, ``content``), oldest first; ``last``: only the last ``last`` lines. From
        the record log, or from the server the run was read from (``per_page`` lines a request)."""
        from tracklet.compat.wandb.apis._pages import console_logs

        return console_logs(self._recorded, per_page, last)

    def update_state(self, state: str) -> bool:
        """W&B's ``update_state`` (requeue a run as ``pending``, mark one ``failed``) is refused:
        a tracklet run's state is what its record log says (its exit record, or its process
        gone), which nothing but the run writes. Raises ``UnsupportedError`` naming the method."""
        from tracklet.compat.wandb.errors import UnsupportedError

        raise UnsupportedError(
            f"Run.update_state({state!r}) is not supported by tracklet: a run's state comes from its record log "
            "(finished, failed or crashed when its process ends); tracklet has no run queue to requeue a run to "
            "'pending'. To resume a run, start it again with wandb.init(id=..., resume='must').")

    def to_html(self, height: int = 420, hidden: bool = False) -> str:
        """W&B's ``to_html``: an iframe of the run's dashboard page, ``height`` pixels high
        (``hidden``: behind a button that shows it): on the tracklet server the run was read from,
        else under ``tracklet ui`` at its default address
        (``http://127.0.0.1:8765/projects/<project>/runs/<id>``)."""
        from tracklet.compat.wandb.apis._pages import iframe, page_url

        return iframe(page_url(self._api, self.project, "runs", self.id, self._recorded), height, hidden, "run")

    def _repr_html_(self) -> str:
        return self.to_html()

    def load(self, force: bool = False) -> None:
        self._recorded.refresh()

    def __repr__(self) -> str:
        return f"<Run {'/'.join(p for p in self.path if p)} ({self.state})>"


def _summary_values(changed: dict[str, Any]) -> dict[str, Any]:
    """The summary's changed values as the summary records them (a ``wandb.Histogram`` as a
    histogram); ``UsageError`` naming the key for a media object, table or chart (nested ones
    too), which W&B saves as a file beside the summary and tracklet records only as a run logs it."""
    from tracklet.compat.wandb._summary import summary_value

    for key, value in changed.items():
        label = _media_in(value)
        if label is not None:
            raise UsageError(f"run.summary[{key!r}] holds a {label}: tracklet records media, tables and charts "
                             "only as a run logs them (run.log()), not in a recorded run's summary; nothing was saved")
    return {key: summary_value(key, value, warn=False) for key, value in changed.items()}


def _media_in(value: Any) -> str | None:
    from tracklet.compat.wandb._summary import media_label

    if isinstance(value, Mapping):
        return next((label for label in map(_media_in, value.values()) if label is not None), None)
    return media_label(value)


def _recorded_field(recorded: Any, field: str) -> Any:
    value = getattr(recorded, field)
    return list(value) if field == "tags" else (value or None) if field != "name" else value


def _changes(before: dict[str, Any], after: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """What to write so ``before`` becomes ``after``: the keys set (new or changed) and removed."""
    if after is None:
        return {}, []
    changed = {key: value for key, value in after.items() if key not in before or not _same(before[key], value)}
    return changed, [key for key in before if key not in after]


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN equals NaN here


def append_updates(recorded: Any, config_set: dict[str, Any], config_removed: list[str],
                   summary_set: dict[str, Any], summary_removed: list[str],
                   renamed: dict[str, Any] | None = None) -> None:
    """Append a ``ConfigUpdate``, ``SummaryUpdate`` and/or ``RunUpdate`` (``renamed``: checked
    name, tags, notes, group, job_type changes) to a run's record log. Refused while a
    writer holds the log, and when the log is damaged before its end (appending would cut what
    follows the damage); a torn last frame (a killed writer's) is cut, as resuming does."""
    from pathlib import Path

    from tracklet.core.recordlog import LOG_FILE_NAME, RecordLogWriter
    from tracklet.core.values import fill_entries, to_plain
    from tracklet.proto import records_pb2 as pb

    damage = recorded._read.damage
    log_file = Path(recorded.dir) / LOG_FILE_NAME
    if damage is not None and not damage.torn_tail:
        raise UsageError(f"{damage.describe(log_file)}; not appending to it")
    records = []
    for kind, items, removed in (("config", config_set, config_removed), ("summary", summary_set, summary_removed)):
        if items or removed:
            record = pb.Record()
            update = getattr(record, kind)
            update.SetInParent()
            fill_entries(update.items, {key: to_plain(value) for key, value in items.items()})
            update.removed.extend(removed)
            records.append(record.SerializeToString())
    if renamed:
        import time

        from tracklet.core.identity import update_record

        records.append(update_record(renamed, time.time()).SerializeToString())
    writer = RecordLogWriter(log_file, resume=True)  # takes the writer's lock, or refuses: the run is live
    try:
        for payload in records:
            writer.write(payload)
    finally:
        writer.close()


class File:
    """A file under the run's ``files/`` directory."""

    def __init__(self, recorded: Any, name: str) -> None:
        self._recorded = recorded
        self.name = name

    @property
    def _remote(self) -> bool:
        return not hasattr(self._recorded, "dir")  # a run read from a tracking server

    @property
    def path(self) -> str:
        import os

        if self._remote:
            return f"{self._recorded.path}/files/{self.name}"
        if hasattr(self._recorded, "file_path"):  # a secondary writer's parts/<label>/... is in its part's folder
            return str(self._recorded.file_path(self.name))
        return os.path.join(self._recorded.dir, "files", self.name)

    @property
    def size(self) -> int:
        import os

        if self._remote:
            entry = next((e for e in self._recorded.file_entries() if e["name"] == self.name), None)
            if entry is None:
                raise CommError(f"run {self._recorded.path} has no file {self.name!r}")
            return int(entry["size"])
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            raise CommError(f"run {self._recorded.path} has no file {self.name!r}") from None

    def download(self, root: str = ".", replace: bool = False, exist_ok: bool = False, api: Any = None) -> Any:
        """The file copied to ``root/<name>`` (from a server, downloaded), opened for reading.
        ``api`` (W&B's Api to download with) is accepted: the run's own reader is used."""
        import os
        import shutil

        from tracklet.compat.wandb.apis._media_json import download_target

        target = download_target(root, self.name)  # ValueError for a name leading outside root
        if os.path.exists(target) and not (replace or exist_ok):
            raise ValueError(f"File already exists, pass replace=True to overwrite: {target}")
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        if not os.path.exists(target) or replace:
            try:
                if self._remote:
                    self._recorded.download_file(self.name, target)
                else:
                    shutil.copy2(self.path, target)
            except FileNotFoundError as error:
                raise CommError(f"run {self._recorded.path} has no file {self.name!r}: {error}") from None
        return open(target)

    def delete(self) -> None:
        """W&B's ``File.delete()`` is refused (``UnsupportedError`` naming the file): tracklet keeps
        a run's files with its record."""
        from tracklet.compat.wandb.apis._run_files import refuse_delete

        refuse_delete(self.name)

    def __repr__(self) -> str:
        return f"<File {self.name}>"


class Sweep:
    """A sweep as ``wandb.Api().sweep(...)`` returns it: its config, state, runs and best run."""

    _STATES: ClassVar[dict[str, str]] = {"running": "RUNNING", "paused": "PAUSED", "stopped": "FINISHED", "finished": "FINISHED"}

    def __init__(self, data: dict[str, Any], api: Any, entity: str | None = None) -> None:
        self._data = data
        self._api = api
        self.entity = entity

    id = property(lambda self: self._data["id"])
    project = property(lambda self: self._data["project"])
    config = property(lambda self: copy.deepcopy(self._data["config"]), doc="The sweep's config, normalized.")
    name = property(lambda self: self._data["config"].get("name") or self._data["id"])
    state = property(lambda self: self._STATES.get(self._data["state"], str(self._data["state"]).upper()),
                     doc="RUNNING, PAUSED or FINISHED (stopped, or every trial done), as W&B spells them.")
    expected_run_count = property(lambda self: self._data.get("run_cap") or self._data.get("grid_size"))

    @property
    def runs(self) -> Runs:
        """The sweep's runs, in trial order (a trial whose run this store or server lacks is left out)."""
        from tracklet.core.api import RunNotFound

        found = Runs()
        for trial in sorted(self._data["trials"], key=lambda trial: trial["number"]):
            if trial.get("run_id"):
                try:
                    found.append(Run(self._api.run(f"{self.project}/{trial['run_id']}"), self.entity, self._api))
                except RunNotFound:
                    continue
        return found

    def best_run(self, order: str | None = None) -> Run | None:
        """The run with the best value of the sweep's metric, or first by ``order`` as W&B sorts it
        (``QueryGenerator.format_order_key``): ``"+name"`` the smallest, ``"-name"`` and a bare
        ``"name"`` the largest ``summary["name"]``; ``"config.lr"`` reads the config (a dotted key
        under neither ``config.`` nor ``summary_metrics.`` is a summary key). None if no run has one.
        A sweep with no metric and no ``order``: its most recent run, with W&B's warning."""
        if order is None and not (self._data["config"].get("metric") or {}).get("name"):
            from tracklet.compat.wandb._messages import termwarn

            termwarn("No order specified and couldn't find metric in sweep config, returning most recent run")
            runs = self.runs
            return max(runs, key=lambda run: run._recorded.created_at or 0.0, default=None)
        if order is None:
            best = self._data.get("best") or {}
            if not best.get("run_id"):
                return None
            return Run(self._api.run(f"{self.project}/{best['run_id']}"), self.entity, self._api)
        descending = not order.startswith("+")
        key = order[1:] if order[:1] in ("+", "-") else order
        in_config = key.startswith("config.")
        key = ".".join(config_path(key.removeprefix("config."))) if in_config else (
            key.removeprefix("summary_metrics.").removeprefix("summary."))
        scored = [(value, run) for run in self.runs
                  if isinstance(value := _dotted(run.config if in_config else run.summary, key), (int, float))
                  and not isinstance(value, bool) and value == value]
        if not scored:
            return None
        pick = max if descending else min
        return pick(scored, key=lambda pair: pair[0])[1]

    @property
    def path(self) -> list[str]:
        """``[entity, project, sweep_id]`` (the entity ``""`` when none was given: tracklet has none)."""
        return [self.entity or "", self.project, self.id]

    @property
    def url(self) -> str:
        """The sweep's dashboard page: on the tracklet server it was read from, else under
        ``tracklet ui`` at its default address (``http://127.0.0.1:8765/projects/<p>/sweeps/<id>``)."""
        from tracklet.compat.wandb.apis._pages import page_url

        return page_url(self._api, self.project, "sweeps", self.id)

    @property
    def order(self) -> str | None:
        """W&B's sort key of the sweep's metric: ``"+summary_metrics.<name>"`` (``minimize``) or
        ``"-summary_metrics.<name>"`` (``maximize``); None for a sweep without a metric."""
        metric = self._data["config"].get("metric") or {}
        if not metric.get("name"):
            return None
        return ("-" if metric.get("goal") == "maximize" else "+") + "summary_metrics." + metric["name"]

    def to_html(self, height: int = 420, hidden: bool = False) -> str:
        """W&B's ``to_html``: an iframe of the sweep's dashboard page (:attr:`url`), ``height``
        pixels high; ``hidden``: behind a button that shows it."""
        from tracklet.compat.wandb.apis._pages import iframe

        return iframe(self.url, height, hidden, "sweep")

    def _repr_html_(self) -> str:
        return self.to_html()

    def load(self, force: bool = False) -> None:
        self._data = self._api.sweep(f"{self.project}/{self.id}")

    def __repr__(self) -> str:
        return f"<Sweep {self.project}/{self.id} ({self.state})>"


class Runs(list):
    """The runs a query matched, newest first unless ``order`` says otherwise."""

    @property
    def length(self) -> int:
        """W&B's paginator ``length``: how many runs matched (all are read at once here)."""
        return len(self)

    def histories(self, samples: int = 500, keys: Sequence[str] | None = None, x_axis: str = "_step",
                  format: str = "default", stream: str = "default") -> Any:
        """W&B's ``Runs.histories``: each run's ``history(samples, keys, x_axis, stream)`` rows with
        a ``run_id`` key, one after another: a list of dicts (``format="default"``), or one pandas
        (``"pandas"``) or polars (``"polars"``) DataFrame, its columns sorted, as W&B's."""
        if format not in ("default", "pandas", "polars"):
            raise ValueError(f"Invalid format: {format}. Must be one of 'default', 'pandas', 'polars'")
        rows: list[dict[str, Any]] = []
        frames = []
        for run in self:
            history = run.history(samples=samples, keys=keys, x_axis=x_axis, pandas=False, stream=stream)
            for row in history:
                row["run_id"] = run.id
            if format == "default":
                rows.extend(history)
            elif history:
                frames.append(history)
        if format == "default":
            return rows
        if format == "pandas":
            import pandas as pd

            if not frames:
                return pd.DataFrame()
            combined = pd.concat([pd.DataFrame.from_records(frame) for frame in frames]).reset_index(drop=True)
            return combined[sorted(combined.columns)]
        import importlib

        try:
            pl = importlib.import_module("polars")  # not a dependency: W&B asks for it the same way
        except ImportError:
            raise ImportError("Exporting polars DataFrame requires polars") from None
        if not frames:
            return pl.DataFrame()
        joined = pl.concat([pl.from_dicts(frame) for frame in frames], how="vertical")
        return joined.select(sorted(joined.columns))


class Project:
    """W&B's ``Project`` as ``wandb.Api().project(name)`` / ``projects()`` give it: ``name``,
    ``entity``, ``path``, ``sweeps()``, ``artifacts_types()``."""

    def __init__(self, name: str, entity: str | None = None, api: Any = None) -> None:
        self.name = name
        self.entity = entity
        self._api = api  # the wandb.Api that made it

    @property
    def path(self) -> list[str]:
        return [self.entity or "", self.name]

    def sweeps(self, per_page: int = 50) -> list[Sweep]:
        """The project's sweeps, newest first, as ``wandb.Api().sweep()`` gives each (from a
        server: the newest 50, what its listing route answers)."""
        if self._api is None:
            return []
        tracklet_api = self._api._api
        http = getattr(tracklet_api, "_http", None)
        if http is not None:
            listed = http.get_json(f"/api/v1/projects/{self.name}/sweeps")["sweeps"]
        else:
            from tracklet.sweeps.controller import list_sweeps

            listed = [info for info in list_sweeps(tracklet_api.root) if info.get("project") == self.name]
        from tracklet.errors import SweepNotFound

        found = []
        for info in listed:
            try:
                found.append(Sweep(tracklet_api.sweep(f"{self.name}/{info['id']}"), tracklet_api, self.entity))
            except (SweepNotFound, ValueError):  # removed since it was listed, or unreadable: left out
                continue
        return found

    def artifacts_types(self, per_page: int = 50) -> list[Any]:
        """W&B's ``Project.artifacts_types()``: ``wandb.Api().artifact_types(project)``."""
        return [] if self._api is None else self._api.artifact_types(self.name)

    def __repr__(self) -> str:
        return f"<Project {self.name}>"


class Api:
    """``wandb.Api()``: reads a tracklet server, ``overrides={"base_url": URL}`` or else
    ``$TRACKLET_BASE_URL`` (as W&B's ``Api()`` reads the server at ``WANDB_BASE_URL``), with
    ``api_key``, else ``$TRACKLET_API_KEY`` or the key ``tracklet login`` saved; with neither, the
    runs recorded under tracklet's data root (``TRACKLET_DIR``). ``overrides={"root": path}``
    (``None``: the default data root) reads a data root even with ``$TRACKLET_BASE_URL`` set."""

    def __init__(self, overrides: Mapping[str, Any] | None = None, timeout: int | None = None,
                 api_key: str | None = None) -> None:
        import tracklet

        overrides = dict(overrides or {})
        self.settings = overrides
        self._entity = overrides.get("entity")
        self._default_project = overrides.get("project")
        self._viewer: User | None = None
        base_url = overrides.get("base_url")
        if base_url is None and "root" not in overrides:
            base_url = os.environ.get("TRACKLET_BASE_URL", "").strip() or None
        if base_url and "wandb" in str(base_url):
            warn_once("api-base-url",
                      f"wandb.Api(base_url={base_url!r}) is a W&B server; reading tracklet's data root instead")
            base_url = None
        if base_url:
            self._api = tracklet.Api(base_url=base_url, api_key=api_key)
        else:
            self._api = tracklet.Api(overrides.get("root"))

    @property
    def default_entity(self) -> str | None:
        return self._entity

    @property
    def viewer(self) -> User:
        """W&B's logged-in user (``username``, ``entity``, ``admin``, ``teams``): on a tracklet server
        with API keys, the user of the key (``verified``); on a ``--dev`` server, its one user; in a
        data root, the OS user this process runs as (as a run records it: ``run.user``). A
        ``ValueError`` where there is none (an OS user with no name), as W&B's."""
        from tracklet.compat.wandb.apis._pages import viewer

        if self._viewer is None:
            self._viewer = viewer(self._api)
        return self._viewer

    @property
    def tracklet_api(self) -> Any:
        """The ``tracklet.Api`` that answers."""
        return self._api

    def _project(self, path: str | None) -> tuple[str | None, str]:
        parts = _parts(path or "")
        if not parts:
            if not self._default_project:
                raise UsageError("wandb.Api().runs() needs a project: runs('entity/project') or runs('project')")
            return self._entity, self._default_project
        return (parts[-2] if len(parts) > 1 else self._entity), parts[-1]

    def projects(self, entity: str | None = None, per_page: int = 200) -> list[Project]:
        return [Project(name, entity or self._entity, self) for name in self._api.projects()]

    def project(self, name: str, entity: str | None = None) -> Project:
        return Project(name, entity or self._entity, self)

    def runs(self, path: str | None = None, filters: dict[str, Any] | None = None, order: str = "+created_at",
             per_page: int = 50, include_sweeps: bool = True, lazy: bool = True) -> Runs:
        """A project's runs matching ``filters`` (MongoDB-style, as in W&B), sorted by ``order``
        (``+`` ascending, ``-`` descending; the default, as in W&B, is oldest first)."""
        entity, project = self._project(path)
        expression = to_filter(filters)
        if not expression and order in ("+created_at", "created_at", "-created_at", None):
            found = self._api.runs(project)  # newest first, straight from the record logs
            if order != "-created_at":
                found = list(reversed(found))
        else:
            found = self._api.runs(project, filter=expression or None, order_by=to_order(order))
        return Runs(Run(r, entity, self._api) for r in found)

    def run(self, path: str = "") -> Run:
        """A run by ``entity/project/run_id``, ``project/run_id`` (``runs/`` and ``:`` accepted) or a
        unique run id."""
        from tracklet.core.api import RunNotFound

        parts = _parts(path)
        if not parts:
            raise UsageError("wandb.Api().run() needs a run path: 'entity/project/run_id'")
        entity = parts[-3] if len(parts) > 2 else self._entity
        target = "/".join(parts[-2:]) if len(parts) > 1 else (
            f"{self._default_project}/{parts[0]}" if self._default_project else parts[0])
        try:
            return Run(self._api.run(target), entity, self._api)
        except RunNotFound as error:
            raise CommError(str(error)) from None

    def artifact(self, name: str, type: str | None = None) -> Any:
        """An artifact version by ``entity/project/name:alias``, ``project/name:v3`` or
        ``name:alias`` (in the default project); ``run-<run id>-<key>:latest`` (or ``:v<n>``) is a
        table the run logged under ``key`` (``_run_tables.py``), as W&B names it."""
        from tracklet.compat.wandb.data_types import Artifact
        from tracklet.compat.wandb.errors import ArtifactNotFoundCommError, type_mismatch
        from tracklet.errors import ArtifactError, ArtifactNotFound, ArtifactTypeMismatch

        parts = name.split("/")
        if len(parts) == 1 and self._default_project:
            name = f"{self._default_project}/{name}"
        try:
            return Artifact._wrap(self._api.artifact(name, type=type))
        except ArtifactTypeMismatch as error:  # W&B: CommError(message, exc=ValueError(message))
            mismatch = type_mismatch(error)
            raise ArtifactNotFoundCommError(str(mismatch), mismatch) from None
        except ArtifactError as error:
            table = self._run_table(name)  # a run's logged table, named as W&B names it
            if table is not None:
                return table
            raise (ArtifactNotFoundCommError if isinstance(error, ArtifactNotFound) else CommError)(str(error)) from None

    def artifacts(self, type_name: str, name: str, per_page: int = 50, tags: Any = None) -> list[Any]:
        """Every version of the collection ``entity/project/name`` (or ``project/name``), newest
        first; ``CommError`` if it has none or is not of ``type_name``. ``tags`` (a tag or a
        list): only the versions that have all of them, as W&B."""
        project, collection = _artifact_lists._project_and_name(name, self._default_project, "artifacts()")
        found = _artifact_lists.versions(self._api, project, collection, type_name)
        if tags is None:
            return found
        wanted = [tags] if isinstance(tags, str) else list(tags)
        return [version for version in found if all(tag in version.tags for tag in wanted)]

    def artifact_versions(self, type_name: str, name: str, per_page: int = 50) -> list[Any]:
        """W&B's older name of ``artifacts(type_name, name)``."""
        return self.artifacts(type_name, name, per_page)

    def artifact_exists(self, name: str, type: str | None = None) -> bool:
        """Whether ``entity/project/name:alias`` names a version (of ``type``, if given)."""
        project, reference = _artifact_lists._project_and_name(name, self._default_project, "artifact_exists()")
        return _artifact_lists.exists(self._api, f"{project}/{reference}", type)

    def artifact_collection_exists(self, name: str, type: str) -> bool:
        """Whether the collection ``entity/project/name`` has a version of ``type``."""
        project, collection = _artifact_lists._project_and_name(name, self._default_project,
                                                                "artifact_collection_exists()")
        return any(found.name == collection for found in _artifact_lists.collections(self._api, project, type,
                                                                                     self._entity))

    def artifact_collections(self, project_name: str, type_name: str, per_page: int = 50) -> list[Any]:
        """The project's collections of ``type_name`` (``ArtifactCollection``: ``name``, ``type``,
        ``aliases``, ``artifacts()``), by name."""
        project = _artifact_lists._project(project_name, self._default_project, "artifact_collections()")
        return _artifact_lists.collections(self._api, project, type_name, self._entity)

    def artifact_collection(self, type_name: str, name: str) -> Any:
        """The collection ``entity/project/name`` of ``type_name`` (``CommError`` if none)."""
        project, collection = _artifact_lists._project_and_name(name, self._default_project, "artifact_collection()")
        return _artifact_lists.ArtifactType(self._api, project, type_name, self._entity).collection(collection)

    def artifact_types(self, project: str | None = None) -> list[Any]:
        """The artifact types of the project's collections (``ArtifactType``: ``name``,
        ``collections()``), by name."""
        name = _artifact_lists._project(project, self._default_project, "artifact_types()")
        return _artifact_lists.types(self._api, name, self._entity)

    def artifact_type(self, type_name: str, project: str | None = None) -> Any:
        """One artifact type of the project (``CommError`` if no collection has it)."""
        for found in self.artifact_types(project):
            if found.name == type_name:
                return found
        raise CommError(f"no artifact of type {type_name!r} in project {project or self._default_project!r}")

    def registries(self, organization: str | None = None, filter: dict[str, Any] | None = None) -> Any:
        """The model registry's registries (W&B's ``Registries``: each a ``Registry`` with
        ``name``, ``full_name``, ``collections()``, ``versions()``; the list's own
        ``collections()``/``versions()`` span them all). ``organization`` is W&B's and ignored."""
        from tracklet.compat.wandb.apis import _registries

        return _registries.registries(self._api, self._entity, filter)

    def registry(self, name: str, organization: str | None = None) -> Any:
        """One registry by name (``model``, or W&B's ``wandb-registry-model``); ``CommError`` if
        nothing was linked into it."""
        from tracklet.compat.wandb.apis import _registries

        return _registries.registry(self._api, name, self._entity)

    def _run_table(self, name: str) -> Any:
        from tracklet.compat.wandb.apis._run_tables import run_table_artifact

        parts = name.split("/")
        if len(parts) < 2:
            return None
        return run_table_artifact(self._api, parts[-2], parts[-1])

    def sweep(self, path: str = "") -> Sweep:
        """A sweep by ``entity/project/sweep_id``, ``project/sweep_id`` or its id (in the default
        project; locally the id alone finds it)."""
        from tracklet.errors import SweepNotFound

        parts = _parts(path)
        if not parts:
            raise UsageError("wandb.Api().sweep() needs a sweep path: 'entity/project/sweep_id'")
        entity = parts[-3] if len(parts) > 2 else self._entity
        target = "/".join(parts[-2:]) if len(parts) > 1 else (
            f"{self._default_project}/{parts[0]}" if self._default_project else parts[0])
        try:
            return Sweep(self._api.sweep(target), self._api, entity)
        except (SweepNotFound, ValueError) as error:
            raise CommError(str(error)) from None

    def flush(self) -> None:
        """Nothing cached to drop: every read goes to the record logs or the store."""


__all__ = ["Api", "File", "HTTPSummary", "Project", "Run", "Runs", "User"]
