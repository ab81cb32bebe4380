"""A run table named as W&B names it (``run-<id>-<key>:v<n>``, type ``run_table``;
``core/run_tables.py``), resolved for ``Run.use_artifact``: a run that reads another run's
logged table records an ``ArtifactUsed`` naming that version, so lineage shows producer run ->
run table -> consumer run (docs/tables.md#lineage). The table itself stays in its run's log."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from tracklet.core.run_tables import RUN_TABLE_TYPE, local_run_ids, names_table, table_name_run_ids

_VERSION = re.compile(r"v(\d+)")


@dataclasses.dataclass(frozen=True)
class RunTableVersion:
    """Version ``v<version>`` of run table ``name``: a log of ``key`` by run ``project/run_id``,
    at ``step`` (numbered by ``core/run_tables.version_numbers``). ``table()`` reads it (a data root's run)."""

    project: str
    name: str
    version: int
    key: str
    run_id: str
    step: int
    time: float
    aliases: tuple[str, ...] = ()
    root: Path | None = None  # the data root holding the run's log (None: the run is on a server)
    type: str = RUN_TABLE_TYPE
    digest: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.project}/{self.name}:v{self.version}"

    @property
    def run_path(self) -> str:
        return f"{self.project}/{self.run_id}"

    @property
    def _info(self) -> Any:  # what ``worker.used_record`` reads of a version
        return self

    def table(self) -> Any:
        """The table as logged (a lazy query, as ``tracklet.Api().run(...).table(key, step)``). A
        run on a tracking server: read it with ``tracklet.Api(server).run(run_path).table(key, version=n)``."""
        if self.root is None:
            raise NotImplementedError(f"{self.qualified_name} is on a tracking server: read it with "
                                      f"tracklet.Api(<server>).run({self.run_path!r}).table({self.key!r}, "
                                      f"version={self.version})")
        from tracklet.core.api import RecordedRun
        from tracklet.core.extensions import load
        from tracklet.core.layout import RunPaths
        from tracklet.core.run_tables import records_of_version, run_logged_tables

        paths = RunPaths(self.root, self.project, self.run_id)
        tables = run_logged_tables(paths)  # its tables only, not the run's whole log
        if tables is None:  # damaged: the reader reads past damage
            tables = RecordedRun(paths)._read.tables
        # By its record, not its step: a shared run's writers may log the key at one step.
        chosen = records_of_version(tables, self.key, self.version)
        if chosen is None:  # pragma: no cover - resolved from these logs
            return RecordedRun(paths).table(self.key, step=self.step)
        return load("tables").open_table(self.root, chosen, self.key)

    def get(self, name: str) -> Any:
        """The table when ``name`` is its key, else None (W&B's ``artifact.get(key)``)."""
        return self.table() if name == self.key else None

    def __repr__(self) -> str:
        return f"<RunTableVersion {self.qualified_name} (table {self.key!r} of run {self.run_path}, step {self.step})>"


def resolve_run_table(root: Path, reference: Any, default_project: str,
                      remote: tuple[str, str | None] | None = None) -> RunTableVersion | None:
    """The run table ``reference`` (``[project/]run-<id>-<key>[:latest|:v<n>]``) names, from the
    runs of data root ``root`` (or of the server ``remote``: (URL, API key)); None when it names
    none (no such run, key or version, or not such a name)."""
    from tracklet.artifacts.names import parse_ref

    try:
        ref = parse_ref(reference)
    except Exception:  # not an artifact reference at all: the caller's own error says so
        return None
    if not ref.name.startswith("run-"):
        return None
    project = ref.project or default_project
    selector = _VERSION.fullmatch(ref.selector)
    if ref.selector != "latest" and selector is None:
        return None
    listing = _remote_run_ids(remote, project) if remote is not None else local_run_ids(root, project)
    for run_id in table_name_run_ids(ref.name, listing):  # a run id over 112 characters: from the listing
        versions = (_remote_versions(remote, project, run_id, ref.name) if remote is not None
                    else _local_versions(root, project, run_id, ref.name))
        if not versions:
            continue
        latest = max(versions)
        number = latest if selector is None else int(selector[1])
        if number not in versions:
            return None
        key, step, time = versions[number]
        return RunTableVersion(project, ref.name, number, key, run_id, step, time,
                               ("latest",) if number == latest else (), None if remote else root)
    return None


def _local_versions(root: Path, project: str, run_id: str, name: str) -> dict[int, tuple[str, int, float]]:
    """n -> (key, step, time) of each log ``v<n>`` of the table ``name`` names, by run
    ``project/run_id`` of ``root`` (numbered by ``core/run_tables.version_numbers``)."""
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths
    from tracklet.core.run_tables import numbered_versions, run_logged_tables

    paths = RunPaths(root, project, run_id)
    tables = run_logged_tables(paths)
    if tables is None:  # a damaged log: the reader, which reads past damage, reads it whole
        tables = RecordedRun(paths)._read.tables
    return {number: (record.key, record.step, record.time)
            for number, record in numbered_versions(tables, lambda record: names_table(name, run_id, record.key))}


def _remote_run_ids(remote: tuple[str, str | None], project: str) -> Any:
    """The ids of the server's runs of ``project`` starting with a prefix (its runs listing,
    filtered by ``run_id``), for ``table_name_run_ids``."""
    def listing(prefix: str) -> list[str]:
        from tracklet.client.http import HttpClient
        from tracklet.errors import RemoteError, RunNotFound

        http = HttpClient(remote[0], api_key=remote[1], error=RemoteError)
        try:
            rows = http.get_json(f"/api/v1/projects/{project}/runs", missing=RunNotFound,
                                 filter=f'run_id ~ "{prefix}"', limit=1000)["runs"]
        except RunNotFound:
            return []
        finally:
            http.close()
        return [str(row["run_id"]) for row in rows]

    return listing


def _remote_versions(remote: tuple[str, str | None], project: str, run_id: str,
                     name: str) -> dict[int, tuple[str, int, float]]:
    """As ``_local_versions``, from the server's table routes (every log of the key, a page at a
    time; a server before session 34: its last 10,000)."""
    from tracklet.client.http import HttpClient
    from tracklet.client.table_versions import table_version_pages
    from tracklet.errors import RemoteError, RunNotFound, TableNotFound

    http = HttpClient(remote[0], api_key=remote[1], error=RemoteError)
    try:
        keys = http.get_json(f"/api/v1/runs/{project}/{run_id}/tables", missing=RunNotFound)["keys"]
        for key in keys:
            if not names_table(name, run_id, key):
                continue
            listed, first = table_version_pages(http, f"{project}/{run_id}", key, missing=TableNotFound)
            if first and any("version" not in item for item in listed):  # an older server: unnumbered
                return {}
            return {int(item.get("version", first + place)): (key, int(item["step"]), float(item.get("time", 0.0)))
                    for place, item in enumerate(listed)}
    except (RunNotFound, TableNotFound):
        return {}
    finally:
        http.close()
    return {}


__all__ = ["RunTableVersion", "resolve_run_table"]
