"""``wandb.Api``: W&B's public read API over ``tracklet.Api`` (the local data root, or a tracklet
server with ``overrides={"base_url": ...}``).

Paths may carry an entity (``entity/project/run_id``, ``entity/project/runs/run_id``) or not
(``project/run_id``); tracklet has no entities, so it is ignored. ``run.history()`` returns a
pandas DataFrame as W&B does (a list of dicts with ``pandas=False`` or without pandas).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Iterator, Sequence

from tracklet.compat.wandb._messages import not_supported, warn_once
from tracklet.compat.wandb.apis.filters import to_filter, to_order
from tracklet.compat.wandb.errors import CommError, UsageError

_INTERNAL = ("_step", "_timestamp", "_runtime")


def _parts(path: str) -> list[str]:
    return [p for p in str(path).replace(":", "/").split("/") if p and p != "runs"]


class HTTPSummary(dict):
    """A run's summary: a dict with attribute access (W&B's ``HTTPSummary``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Run:
    """A recorded run as ``wandb.Api().run(...)`` returns it."""

    def __init__(self, recorded: Any, entity: str | None = None) -> None:
        self._recorded = recorded
        self.entity = entity

    # identity and metadata
    @property
    def id(self) -> str:
        return self._recorded.id

    @property
    def name(self) -> str:
        return self._recorded.name

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
        """``running``, ``finished``, ``failed`` or ``crashed``."""
        return self._recorded.state

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._recorded.config)

    @property
    def summary(self) -> HTTPSummary:
        return HTTPSummary(self._recorded.summary)

    @property
    def tags(self) -> list[str]:
        return list(self._recorded.tags)

    @property
    def group(self) -> str | None:
        return self._recorded.group or None

    @property
    def job_type(self) -> str | None:
        return self._recorded.job_type or None

    @property
    def notes(self) -> str | None:
        return self._recorded.notes or None

    @property
    def created_at(self) -> str | None:
        """ISO 8601 in UTC, as W&B gives it."""
        start = self._recorded.created_at
        if start is None:
            return None
        return datetime.datetime.fromtimestamp(start, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def lastHistoryStep(self) -> int:  # noqa: N802 - W&B's name
        step = self._recorded.last_step
        return -1 if step is None else step

    @property
    def metadata(self) -> dict[str, Any]:
        return self._recorded.metadata

    @property
    def system_metrics(self) -> dict[str, Any]:
        """The last system metrics window (W&B's last values of ``system/*``)."""
        history = self._recorded.system_metrics()
        return {k: v[-1] for k, v in history.items() if v and not k.startswith("_")}

    # history
    def _rows(self, keys: Sequence[str] | None, x_axis: str = "_step", min_step: int | None = None,
              max_step: int | None = None, stream: str = "default") -> list[dict[str, Any]]:
        if stream == "system" or stream == "events":
            columns = self._recorded.system_metrics()
        else:
            wanted = None if keys is None else [k for k in dict.fromkeys([*keys, x_axis]) if k not in _INTERNAL]
            columns = self._recorded.history(wanted)
        names = list(columns)
        length = len(columns.get("_step", columns.get("_timestamp", ())))
        rows = []
        for index in range(length):
            row = {name: columns[name][index] for name in names}
            step = row.get("_step")
            if step is not None and ((min_step is not None and step < min_step) or
                                     (max_step is not None and step >= max_step)):
                continue
            if keys is not None:
                # W&B returns only rows holding every requested key.
                if any(row.get(k) is None for k in keys):
                    continue
                row = {k: row[k] for k in dict.fromkeys(["_step", x_axis, *keys]) if k in row}
            else:
                row = {k: v for k, v in row.items() if v is not None or k in _INTERNAL}
            rows.append(row)
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

    def files(self, names: Sequence[str] | None = None, per_page: int = 50) -> list["File"]:
        found = self._recorded.files()
        return [File(self._recorded, n) for n in found if names is None or n in names]

    def file(self, name: str) -> "File":
        return File(self._recorded, name)

    def update(self) -> None:
        not_supported("wandb.Api run.update()", "recorded runs are read-only in tracklet")

    def delete(self, delete_artifacts: bool = False) -> None:
        not_supported("wandb.Api run.delete()", "nothing is deleted (remove the run's directory to delete it)")

    def logged_artifacts(self, per_page: int = 100) -> list:
        not_supported("wandb.Api run.logged_artifacts()", "tracklet stores no artifacts yet")
        return []

    def used_artifacts(self, per_page: int = 100) -> list:
        not_supported("wandb.Api run.used_artifacts()", "tracklet stores no artifacts yet")
        return []

    def load(self, force: bool = False) -> None:
        self._recorded.refresh()

    def __repr__(self) -> str:
        return f"<Run {'/'.join(p for p in self.path if p)} ({self.state})>"


class File:
    """A file under the run's ``files/`` directory."""

    def __init__(self, recorded: Any, name: str) -> None:
        self._recorded = recorded
        self.name = name

    @property
    def path(self) -> str:
        import os

        return os.path.join(self._recorded.dir, "files", self.name)

    @property
    def size(self) -> int:
        import os

        return os.path.getsize(self.path)

    def download(self, root: str = ".", replace: bool = False, exist_ok: bool = False) -> Any:
        import os
        import shutil

        target = os.path.join(root, self.name)
        if os.path.exists(target) and not (replace or exist_ok):
            raise ValueError(f"File already exists, pass replace=True to overwrite: {target}")
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        if not os.path.exists(target) or replace:
            shutil.copy2(self.path, target)
        return open(target)


class Runs(list):
    """The runs a query matched, newest first unless ``order`` says otherwise."""


class Project:
    def __init__(self, name: str, entity: str | None = None) -> None:
        self.name = name
        self.entity = entity

    def __repr__(self) -> str:
        return f"<Project {self.name}>"


class Api:
    """``wandb.Api()``: reads runs recorded under tracklet's data root (``TRACKLET_DIR``), or a
    tracklet server with ``overrides={"base_url": URL}`` and ``api_key``."""

    def __init__(self, overrides: Mapping[str, Any] | None = None, timeout: int | None = None,
                 api_key: str | None = None) -> None:
        import tracklet

        overrides = dict(overrides or {})
        self.settings = overrides
        self._entity = overrides.get("entity")
        self._default_project = overrides.get("project")
        base_url = overrides.get("base_url")
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
        return [Project(name, entity or self._entity) for name in self._api.projects()]

    def project(self, name: str, entity: str | None = None) -> Project:
        return Project(name, entity or self._entity)

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
        return Runs(Run(r, entity) for r in found)

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
            return Run(self._api.run(target), entity)
        except RunNotFound as error:
            raise CommError(str(error)) from None

    def artifact(self, name: str, type: str | None = None) -> Any:
        raise CommError("tracklet stores no artifacts yet, so wandb.Api().artifact() has nothing to return")

    def sweep(self, path: str = "") -> Any:
        raise CommError("tracklet has no sweeps yet, so wandb.Api().sweep() has nothing to return")

    def flush(self) -> None:
        """Nothing cached to drop: every read goes to the record logs or the store."""


__all__ = ["Api", "File", "HTTPSummary", "Project", "Run", "Runs"]
