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

from tracklet.core.run_tables import (local_run_ids, names_table, run_logged_tables, table_artifact_name, version_numbers,
                                      table_name_run_ids)

_NAME = re.compile(r"run-(?P<rest>.+?)(?::(?P<alias>[^:/]+))?$")


class RunTableArtifact:
    """One logged version of a run's table, read through W&B's artifact calls (``get``, ``name``,
    ``version``, ``type``)."""

    type = "run_table"

    def __init__(self, recorded: Any, project: str, key: str, index: int, step: int, count: int,
                 time: float = 0.0) -> None:
        self._recorded, self._key, self._step = recorded, key, step
        self.project = project
        self.index = index  # the n of v<n>
        self.version = f"v{index}"
        self.aliases = ["latest"] if index == count - 1 else []
        self.source_name = table_artifact_name(recorded.id, key)
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
        if _local(self._recorded):  # from the log's table records, not the whole log
            from tracklet.core.extensions import load
            from tracklet.core.run_tables import records_of_version

            tables = _local_tables(self._recorded)
            # By its record, not its step: a shared run's writers may log the key at one step.
            chosen = records_of_version(tables, self._key, self.index)
            query = (load("tables").open_table(self._recorded.data_root, chosen, self._key) if chosen is not None
                     else load("tables").open_table(self._recorded.data_root, tables, self._key, self._step))
        else:  # by its version (a server before session 32 answers by the step)
            query = self._recorded.table(self._key, step=self._step, version=self.index)
        frame = query.to_pandas()
        return Table(dataframe=media_objects(frame, self._blobs(), table=self._key))

    def _blobs(self) -> Any:
        """Where the table's media cells' files are: the data root's blob store, or the server."""
        if not _local(self._recorded):  # a run on a tracking server
            return self._recorded._table_blobs(self._key, self.index)
        from tracklet.artifacts.blobs import FsspecBlobStore
        from tracklet.artifacts.storage import artifact_dir

        return FsspecBlobStore(artifact_dir(self._recorded.data_root))

    def __repr__(self) -> str:
        return f"<Artifact {self.qualified_name} (a logged table)>"


#: The most bytes an html or plotly cell's file may have: it is read whole into memory (and a
#: plotly figure parsed), and the cell comes from a table file (read back from disk, or from a
#: server), so a crafted or damaged one may name any blob of the store. A larger one is None.
MAX_TEXT_CELL_BYTES = 32 << 20


def media_objects(frame: Any, blobs: Any, *, table: str = "") -> Any:
    """``frame`` with each media cell (the struct ``tracklet.media.table_cells`` stores: ``kind``,
    ``digest``, ``caption``, masks, boxes) as the ``wandb`` media object over its file, as W&B's
    ``get`` gives them. A cell whose file can't be had, or an html/plotly file over
    ``MAX_TEXT_CELL_BYTES``, is None, with one warning per column naming the table, the row and
    the column (a column keeps one type: the table's other cells are media objects)."""
    for column in frame.columns:
        values = frame[column].tolist()
        if not any(_is_cell(value) for value in values):
            continue
        frame[column] = [_media_object(value, blobs, column, row, table) if _is_cell(value) else value
                         for row, value in enumerate(values)]
    return frame


def _is_cell(value: Any) -> bool:
    """Whether ``value`` is a media cell: a ``kind`` and a ``digest`` (``_path`` refuses a digest
    that is not a sha256: a damaged cell is None, never a file of its choosing)."""
    return isinstance(value, dict) and isinstance(value.get("kind"), str) and isinstance(value.get("digest"), str)


def _media_object(cell: dict[str, Any], blobs: Any, column: str, row: int, table: str) -> Any:
    from tracklet.compat.wandb import data_types
    from tracklet.compat.wandb._messages import warn_once

    try:
        path = _path(blobs, cell["digest"])
        kind = cell["kind"]
        if kind == "image":
            return data_types.Image(path, caption=cell.get("caption") or None, **_overlays(cell, blobs))
        if kind in ("html", "plotly"):
            import json

            size = path.stat().st_size
            if size > MAX_TEXT_CELL_BYTES:
                raise ValueError(f"its {kind} file is {size:,} bytes, over the {MAX_TEXT_CELL_BYTES:,}-byte cap of "
                                 "a text cell (read whole into memory)")
            text = path.read_text(encoding="utf-8")
            return data_types.Html(text) if kind == "html" else data_types.Plotly(json.loads(text))
        classes = {"audio": data_types.Audio, "video": data_types.Video, "object3d": data_types.Object3D,
                   "molecule": data_types.Molecule}
        if kind not in classes:
            raise ValueError(f"unknown media kind {kind!r}")
        return classes[kind](str(path), caption=cell.get("caption") or None)
    except Exception as error:  # a missing or damaged file costs only its cell
        where = f"of table {table!r}, row {row}," if table else f"in row {row},"
        warn_once(f"table-cell-{table}-{column}", f"a media cell {where} column {column!r} is None: its file "
                                                  f"{cell.get('digest')} can't be read ({error})")
        return None


def _path(blobs: Any, digest: Any) -> Any:
    """The file of blob ``digest`` (a sha256 in hex: a mask's digest is read from the table file
    too), or ``ArtifactError``."""
    from tracklet.core.digests import is_sha256
    from tracklet.errors import ArtifactError

    if not is_sha256(digest):
        raise ArtifactError(f"{str(digest)[:100]!r} is not a blob's digest (a sha256 in hex)")
    path = blobs.local_path(digest)
    if path is None or not path.is_file():
        raise ArtifactError(f"blob {digest} is not in the blob store")
    return path


def _overlays(cell: dict[str, Any], blobs: Any) -> dict[str, Any]:
    """An image cell's masks and boxes as ``wandb.Image``'s ``masks=`` and ``boxes=``."""
    def labels(entries: Any) -> dict[int, str]:
        return {int(entry["id"]): str(entry["label"]) for entry in _listed(entries)}

    masks = {mask["name"]: {"path": str(_path(blobs, mask["digest"])), "class_labels": labels(mask["class_labels"])}
             for mask in _listed(cell.get("masks"))}
    boxes = {group["name"]: {"class_labels": labels(group["class_labels"]), "box_data": [
        {"position": {"minX": box["min_x"], "maxX": box["max_x"], "minY": box["min_y"], "maxY": box["max_y"]},
         "domain": "pixel" if box["pixel"] else None, "class_id": box["class_id"],
         "box_caption": box["caption"] or None, "scores": {s["name"]: s["value"] for s in _listed(box["scores"])}}
        for box in _listed(group["boxes"])]} for group in _listed(cell.get("boxes"))}
    return {"masks": masks or None, "boxes": boxes or None}


def _listed(values: Any) -> list[Any]:
    """A list cell as pandas gives it (a numpy array, a list or None) as a list."""
    return [] if values is None else list(values)


def run_table_artifacts(recorded: Any, project: str, name: str | None = None) -> list[RunTableArtifact]:
    """Every logged version of every table of ``recorded`` (with ``name``: of the table that name
    names), in log order: a local ``RecordedRun`` from its record log's table records (not its
    whole log), a ``RemoteRun`` through the server's table keys and versions routes."""
    if not _local(recorded):  # a run on a tracking server
        return _remote_run_table_artifacts(recorded, project, name)
    records = _local_tables(recorded)
    if name is not None:
        records = [record for record in records if names_table(name, recorded.id, record.key)]
    numbers = version_numbers(records)
    latest: dict[str, int] = {}
    for record, number in zip(records, numbers):
        latest[record.key] = max(latest.get(record.key, -1), number)
    found = [RunTableArtifact(recorded, project, record.key, number, record.step, latest[record.key] + 1, record.time)
             for record, number in zip(records, numbers)]
    return found


def _local(recorded: Any) -> bool:
    """Whether ``recorded`` is a run of a data root (a ``RecordedRun``; asked of its class: asking
    the run would read its log)."""
    return hasattr(type(recorded), "_read")


def _local_tables(recorded: Any) -> list[Any]:
    """A local run's ``TableLogged`` records, as its reader lists them: read from the log's table
    records alone unless the run was read already (or its log is damaged)."""
    if getattr(recorded, "_state", None) is None:
        tables = run_logged_tables(recorded._paths)
        if tables is not None:
            return tables
    return list(recorded._read.tables)


def _remote_run_table_artifacts(recorded: Any, project: str, name: str | None = None) -> list[RunTableArtifact]:
    found: list[RunTableArtifact] = []
    for key in recorded.table_keys():
        if name is not None and not names_table(name, recorded.id, key):
            continue
        versions = recorded.table_versions(key)
        count = max(version.get("version", version["index"]) for version in versions) + 1 if versions else 0
        found.extend(RunTableArtifact(recorded, project, key, version.get("version", version["index"]),
                                      version["step"], count, version["time"]) for version in versions)
    found.sort(key=lambda table: table.time)  # stable: a key's versions keep their order
    return found


def run_table_artifact(api: Any, project: str, name: str) -> RunTableArtifact | None:
    """The table artifact ``name`` (``run-<id>-<key>[:alias]``, the key as W&B puts it in the name:
    :func:`table_artifact_name`) of ``project``, or None when it names no run's logged table."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    base, alias = f"run-{match['rest']}", match["alias"] or "latest"
    for run_id in table_name_run_ids(base, _run_ids(api, project)):  # an id over 112 characters: listed
        try:
            recorded = api.run(f"{project}/{run_id}")
            versions = run_table_artifacts(recorded, project, base)
        except Exception:  # no such run: try a longer id
            continue
        if not versions:
            continue
        numbered = {version.index: version for version in versions}
        index = max(numbered) if alias == "latest" else _version(alias)
        return numbered.get(index) if index is not None else None
    return None


def _run_ids(api: Any, project: str) -> Any:
    """The ids of ``api``'s runs of ``project`` starting with a prefix: a data root's from its runs
    directory (the store may lag the logs), a server's from its runs listing."""
    root = getattr(api, "root", None)
    if root is not None:
        return local_run_ids(root, project)

    def listing(prefix: str) -> list[str]:
        return [run.id for run in api.runs(project, filter=f'run_id ~ "{prefix}"', limit=1000)]

    return listing


def _version(alias: str) -> int | None:
    return int(alias[1:]) if re.fullmatch(r"v\d+", alias) else None


__all__ = ["RunTableArtifact", "run_table_artifact", "run_table_artifacts", "table_artifact_name"]
