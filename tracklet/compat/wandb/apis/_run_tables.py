"""A run's logged tables as W&B names them: artifact ``run-<run id>-<key>``, version ``v<n>`` (the
n-th time the key was logged) or ``latest``, whose ``get(key)`` is the ``wandb.Table``.

W&B stores every table a run logs (a ``wandb.plot`` chart's included, under ``<key>_table``) as
such an artifact, and its documented way to read one back is
``api.artifact("project/run-<id>-<key>:latest").get("<key>")``. tracklet keeps logged tables in
the run's record log (docs/tables.md), so (from a data root or a tracking server) ``wandb.Api().artifact`` answers those names from the
run's tables when no artifact of that name exists, and ``wandb.Api().run(...).logged_artifacts()``
lists them (``run_table_artifacts``) beside the artifacts the run logged, as W&B's does.
"""

from __future__ import annotations

import re
from typing import Any

_NAME = re.compile(r"run-(?P<rest>.+?)(?::(?P<alias>[^:/]+))?$")


class RunTableArtifact:
    """One logged version of a run's table, read through W&B's artifact calls (``get``, ``name``,
    ``version``, ``type``)."""

    type = "run_table"

    def __init__(self, recorded: Any, project: str, key: str, index: int, step: int, count: int,
                 time: float = 0.0) -> None:
        self._recorded, self._key, self._step = recorded, key, step
        self.project = project
        self.version = f"v{index}"
        self.aliases = ["latest"] if index == count - 1 else []
        self.source_name = f"run-{recorded.id}-{key}"
        self.name = f"{self.source_name}:{self.version}"
        self.qualified_name = f"{project}/{self.name}"
        self.time = time  # when the table was logged (seconds since the epoch)
        self.metadata: dict[str, Any] = {}
        self.description = None
        self.state = "COMMITTED"

    @property
    def created_at(self) -> str:
        """When it was logged, as W&B's ISO-8601 string (UTC)."""
        import datetime

        return datetime.datetime.fromtimestamp(self.time, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def get(self, name: str) -> Any:
        """The table (a ``wandb.Table``) when ``name`` is the key, else None (as W&B's ``get``)."""
        from tracklet.compat.wandb.data_types import Table

        if name != self._key:
            return None
        return Table(dataframe=self._recorded.table(self._key, step=self._step).to_pandas())

    def __repr__(self) -> str:
        return f"<Artifact {self.qualified_name} (a logged table)>"


def run_table_artifacts(recorded: Any, project: str) -> list[RunTableArtifact]:
    """Every logged version of every table of ``recorded``, in log order: a local ``RecordedRun``
    from its record log, a ``RemoteRun`` through the server's table keys and versions routes."""
    if not hasattr(recorded, "_read"):  # a run on a tracking server
        return _remote_run_table_artifacts(recorded, project)
    records = list(recorded._read.tables)
    counts: dict[str, int] = {}
    for record in records:
        counts[record.key] = counts.get(record.key, 0) + 1
    seen: dict[str, int] = {}
    found = []
    for record in records:
        index = seen[record.key] = seen.get(record.key, -1) + 1
        found.append(RunTableArtifact(recorded, project, record.key, index, record.step, counts[record.key],
                                      record.time))
    return found


def _remote_run_table_artifacts(recorded: Any, project: str) -> list[RunTableArtifact]:
    found: list[RunTableArtifact] = []
    for key in recorded.table_keys():
        versions = recorded.table_versions(key)
        count = versions[-1]["index"] + 1 if versions else 0
        found.extend(RunTableArtifact(recorded, project, key, version["index"], version["step"], count,
                                      version["time"]) for version in versions)
    found.sort(key=lambda table: table.time)  # stable: a key's versions keep their order
    return found


def run_table_artifact(api: Any, project: str, name: str) -> RunTableArtifact | None:
    """The table artifact ``name`` (``run-<id>-<key>[:alias]``) of ``project``, or None when it
    names no run's logged table."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    rest, alias = match["rest"], match["alias"] or "latest"
    for place in [index for index, char in enumerate(rest) if char == "-"]:
        run_id, key = rest[:place], rest[place + 1:]
        try:
            recorded = api.run(f"{project}/{run_id}")
            versions = [table for table in run_table_artifacts(recorded, project) if table._key == key]
        except Exception:  # no such run: try a longer id
            continue
        if not versions:
            continue
        index = len(versions) - 1 if alias == "latest" else _version(alias)
        if index is None or not 0 <= index < len(versions):
            return None
        return versions[index]
    return None


def _version(alias: str) -> int | None:
    return int(alias[1:]) if re.fullmatch(r"v\d+", alias) else None


__all__ = ["RunTableArtifact", "run_table_artifact", "run_table_artifacts"]
