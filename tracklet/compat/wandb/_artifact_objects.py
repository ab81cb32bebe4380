"""W&B's ``artifact.add(obj, name)`` and ``artifact.get(name)``: a table or a media object stored
in an artifact version as W&B stores it, and read back as the same kind of object.

- A ``Table`` becomes ``<name>.table.json`` in W&B's shape (``{"_type": "table", "columns",
  "data"}``); a media cell becomes its file under ``media/<kind>/`` and, in the row, W&B's
  reference to it (``{"_type": "image-file", "path", "sha256", "size", "format", "width",
  "height", "caption"}``).
- A ``JoinedTable`` becomes ``<name>.joined-table.json`` naming its two tables' files (a
  ``Table`` or ``PartitionedTable`` not in the artifact yet added as ``t<n>_<id>``); a
  ``PartitionedTable``, ``<name>.partitioned-table.json`` naming its directory of table parts.
- An ``Image``, ``Audio``, ``Video``, ``Html``, ``Object3D`` or ``Molecule`` becomes its file and
  ``<name>.<kind>.json`` holding that reference.

Media are encoded by the media classes' own code (the bytes ``log()`` would store), here on the
caller's thread, as W&B does in ``add``. ``get`` reads the JSON and returns a ``Table`` (media
cells as media objects over their files, materialized once per version under the data root's
``cache/artifact-files/``) or the media object.

An image's masks and boxes are kept as W&B keeps them in an artifact: in the image's reference,
``"masks": {name: {"path", "sha256", "size"}}`` (each mask a PNG of class ids under
``media/image/mask/``), ``"boxes": {name: [box, ...]}`` (W&B's ``box_data``: ``position``
``{minX, maxX, minY, maxY}``, ``class_id``, ``box_caption``, ``scores``, ``domain``) and
``"classes"``, a ``classes-file`` (``media/classes/<md5>_cls.classes.json``, ``{"_type":
"classes", "class_set": [{"id", "name"}]}``) holding every label of the image. W&B has one class
set per image where tracklet has labels per mask and per box group, so each mask's reference also
holds its own ``class_labels`` and the image's ``"box_class_labels"`` each box group's (keys W&B's
reader ignores); ``get`` gives an ``Image`` with the same masks, boxes and labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from tracklet.compat.wandb._messages import warn_once

# W&B's ``_type`` of a media reference, by tracklet media kind (``Media._kind``)
_FILE_TYPES = {"image": "image-file", "audio": "audio-file", "video": "video-file", "html": "html-file",
               "object3d": "object3D-file", "molecule": "molecule-file", "plotly": "plotly-file"}
_KINDS = {file_type: kind for kind, file_type in _FILE_TYPES.items()}
_JSON_SUFFIXES = ("table", "joined-table", "partitioned-table", *_FILE_TYPES)
_TABLE_TYPES = ("table", "partitioned-table")  # what a JoinedTable's side may be
MAX_CHECKED_TABLE_BYTES = 64 << 20  # a JoinedTable's table entry larger than this is not parsed to check it


class _Collect:
    """What a media object's ``_record`` stores through: each blob's bytes kept by digest."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = bytes(data)
        return digest

    def warn(self, token: Any, message: str) -> None:
        warn_once(f"artifact-add-{token}", message)


def _media_reference(item: Any, artifact: Any, written: set[str]) -> dict[str, Any]:
    """``item`` encoded, its file added to ``artifact`` (once per content), and W&B's reference to it."""
    from tracklet.core.logged import Placement

    collect = _Collect()
    media = item._record(collect, Placement("artifact", 0, 0, 1, time.time())).media
    kind = media.kind
    path = _add_blob(artifact, written, collect, f"media/{kind}/{media.digest[:20]}.{media.format}", media.digest)
    reference = {"_type": _FILE_TYPES.get(kind, f"{kind}-file"), "path": path, "sha256": media.digest,
                 "size": media.size_bytes, "format": media.format}
    if media.width or media.height:
        reference.update(width=media.width, height=media.height)
    if media.caption:
        reference["caption"] = media.caption
    if len(media.masks) or len(media.boxes):
        reference.update(_overlays(media, artifact, written, collect))
    return reference


def _add_blob(artifact: Any, written: set[str], collect: _Collect, path: str, digest: str) -> str:
    """The blob ``digest`` as the artifact's file ``path`` (written once per artifact); ``path``."""
    if path not in written:
        with artifact.new_file(path, mode="xb") as handle:
            handle.write(collect.blobs[digest])
        written.add(path)
    return path


def _overlays(media: Any, artifact: Any, written: set[str], collect: _Collect) -> dict[str, Any]:
    """An image's masks, boxes and class set in W&B's artifact shape (the module's docstring)."""
    classes: dict[int, str] = {}
    masks: dict[str, Any] = {}
    for mask in media.masks:
        path = _add_blob(artifact, written, collect, f"media/image/mask/{mask.digest[:20]}.png", mask.digest)
        masks[mask.name] = {"path": path, "sha256": mask.digest, "size": len(collect.blobs[mask.digest]),
                            "class_labels": {str(k): v for k, v in sorted(mask.class_labels.items())}}
        for class_id, label in mask.class_labels.items():
            classes.setdefault(class_id, label)
    boxes: dict[str, list[dict[str, Any]]] = {}
    box_labels: dict[str, dict[str, str]] = {}
    for group in media.boxes:
        boxes[group.name] = [_box_data(box) for box in group.boxes]
        box_labels[group.name] = {str(k): v for k, v in sorted(group.class_labels.items())}
        for class_id, label in group.class_labels.items():
            classes.setdefault(class_id, label)
    found: dict[str, Any] = {"masks": masks} if masks else {}
    if boxes:
        found.update(boxes=boxes, box_class_labels=box_labels)
    class_set = [{"id": class_id, "name": classes[class_id]} for class_id in sorted(classes)]
    document = json.dumps({"_type": "classes", "class_set": class_set}, sort_keys=True).encode()
    path = f"media/classes/{hashlib.md5(document, usedforsecurity=False).hexdigest()}_cls.classes.json"
    if path not in written:
        with artifact.new_file(path, mode="xb") as handle:
            handle.write(document)
        written.add(path)
    found["classes"] = {"type": "classes-file", "path": path, "digest": hashlib.sha256(document).hexdigest()}
    return found


def _box_data(box: Any) -> dict[str, Any]:
    """One stored box as W&B's ``box_data`` entry."""
    data: dict[str, Any] = {"position": {"minX": box.min_x, "maxX": box.max_x, "minY": box.min_y, "maxY": box.max_y},
                            "class_id": box.class_id}
    if box.pixel:
        data["domain"] = "pixel"
    if box.caption:
        data["box_caption"] = box.caption
    if len(box.scores):
        data["scores"] = dict(box.scores)
    return data


def _is_media(value: Any) -> bool:
    from tracklet.media.base import Media

    return isinstance(value, Media)


def _cell(value: Any, artifact: Any, written: set[str]) -> Any:
    if _is_media(value):
        return _media_reference(value, artifact, written)
    if isinstance(value, float) and value != value:
        return None  # JSON has no NaN; W&B writes null too
    if hasattr(value, "item") and type(value).__module__.partition(".")[0] == "numpy":
        return value.item()
    return value


def add_object(artifact: Any, obj: Any, name: str) -> str:
    """Store ``obj`` (a ``Table``, a ``JoinedTable`` or a media object) in ``artifact`` under
    ``name``; the JSON file's path in the artifact. An object added before is not stored again:
    its path is returned (W&B's ``add`` keeps its added objects by identity too)."""
    from tracklet.compat.wandb.data_types import JoinedTable, PartitionedTable
    from tracklet.errors import ArtifactError
    from tracklet.media.table import Table

    added = artifact.__dict__.setdefault("_wandb_added_objects", {})  # id -> (object, path)
    if id(obj) in added and added[id(obj)][0] is obj:
        return str(added[id(obj)][1])
    written = {entry.path for entry in artifact.files()}  # media an earlier add() stored: not again
    name = name.removesuffix(".json")
    document: dict[str, Any]
    if isinstance(obj, JoinedTable):
        document = {"_type": "joined-table", "table1": _joined_part(artifact, obj, obj._table1, 1, written),
                    "table2": _joined_part(artifact, obj, obj._table2, 2, written), "join_key": obj._join_key}
        path = f"{name}.joined-table.json"
    elif isinstance(obj, PartitionedTable):
        document = {"_type": "partitioned-table", "parts_path": obj.parts_path}
        path = f"{name}.partitioned-table.json"
    elif isinstance(obj, Table):
        columns = obj.columns
        rows = [[_cell(value, artifact, written) for value in row] for row in _rows(obj)]
        document = {"_type": "table", "columns": columns, "data": rows, "ncols": len(columns),
                                    "nrows": len(rows)}
        path = f"{name}.table.json"
    elif _is_media(obj):
        document = _media_reference(obj, artifact, written)
        path = f"{name}.{obj._kind}.json"
    else:
        raise ArtifactError(f"artifact.add() takes a Table, a JoinedTable or a media object (Image, Audio, Video, "
                            f"Html, Object3D, Molecule, Plotly), or a PartitionedTable; got {type(obj).__name__}")
    with artifact.new_file(path, mode="x") as handle:
        json.dump(document, handle, allow_nan=False, default=str)
    added[id(obj)] = (obj, path)
    return path


def _joined_part(artifact: Any, joined: Any, table: Any, index: int, written: set[str]) -> str:
    """The path of one of a ``JoinedTable``'s tables in ``artifact``: a ``Table`` or
    ``PartitionedTable`` is added (as ``t<index>_<id>``, W&B's name, unless it was added already);
    a path, or an entry of this artifact, must name a table the artifact holds (W&B's
    ``ValueError`` otherwise; one naming what it holds instead when that is no table)."""
    if not isinstance(table, str) and not hasattr(table, "path"):
        return add_object(artifact, table, f"t{index}_{id(joined)}")
    path = table if isinstance(table, str) else table.path
    owner = getattr(table, "artifact", None)
    if owner is not None and owner is not artifact:
        raise ValueError(f"JoinedTable table{index} is entry {path!r} of artifact {getattr(owner, 'name', owner)!r}, "
                         f"not of the artifact it is added to: add that table to this artifact "
                         f"(artifact.add(table, name)) and join on its entry")
    if path not in written:
        raise ValueError(f"JoinedTable table:{path} not found in artifact. Add a table to the artifact using "
                         f"Artifact#add(<table>, {path!r}) before adding this JoinedTable")
    kind = _draft_json_type(artifact, path)
    if kind is not None and kind not in _TABLE_TYPES:
        raise ValueError(f"JoinedTable table{index}: {path!r} in the artifact is not a table ({kind}); "
                         f"add the table with artifact.add(<table>, name) and join on its entry")
    return path


def _draft_json_type(artifact: Any, path: str) -> str | None:
    """What the draft's file ``path`` holds: its JSON ``_type`` (``"no JSON document"`` when it
    isn't one); None when it can't be read or is larger than ``MAX_CHECKED_TABLE_BYTES`` (taken to
    be the table its name says)."""
    item = getattr(artifact, "_pending", {}).get(path)
    data = getattr(item, "data", None)
    try:
        if data is None:
            local = getattr(item, "path", None)
            if local is None or os.stat(local).st_size > MAX_CHECKED_TABLE_BYTES:
                return None
            with open(local, "rb") as handle:
                data = handle.read(MAX_CHECKED_TABLE_BYTES + 1)
        if len(data) > MAX_CHECKED_TABLE_BYTES:
            return None
        document = json.loads(bytes(data))
    except OSError:
        return None
    except ValueError:
        return "no JSON document"
    kind = document.get("_type") if isinstance(document, dict) else None
    return f"_type {kind!r}" if kind not in _TABLE_TYPES else str(kind)


def _rows(table: Any) -> list[list[Any]]:
    """The table's rows with media cells as the media objects (``table.data`` gives their text)."""
    held = getattr(table, "_rows", None)
    from tracklet.media.table_arrow import materialize

    arrow = materialize(getattr(table, "_arrow", None))
    rows: list[list[Any]] = []
    if arrow is not None:
        names = table.columns
        rows.extend([row[column] for column in names] for row in arrow.to_pylist())
    rows.extend(list(row) for row in held or [])
    return rows


def get_object(artifact: Any, name: str, *, tables_only: bool = False) -> Any:
    """What ``add_object`` stored under ``name`` (a ``Table``, or the media object); None if the
    artifact has no such object, as W&B returns. ``tables_only``: None for anything but a
    ``Table`` or ``PartitionedTable`` (a ``JoinedTable``'s sides: never another join, so a
    document naming itself through another is not followed round)."""
    from tracklet.compat.wandb import data_types

    paths = {entry.path for entry in artifact.files()}
    path = name if name.endswith(".json") and name in paths else None  # a file's path: a JoinedTable's tables
    name = name.removesuffix(".json")
    if path is None:
        path = next((f"{name}.{suffix}.json" for suffix in _JSON_SUFFIXES if f"{name}.{suffix}.json" in paths), None)
    if path is None:
        return None
    from tracklet.artifacts.storage import cache_download_root

    root = artifact.download(cache_download_root(artifact._store.data_root, artifact._info))
    with open(os.path.join(root, path), encoding="utf-8") as handle:
        document = json.load(handle)
    if not isinstance(document, dict) or (tables_only and document.get("_type") not in _TABLE_TYPES):
        return None
    if document.get("_type") == "table":
        data = [[_object_of(cell, root) for cell in row] for row in document.get("data", [])]
        return data_types.Table(columns=document.get("columns"), data=data)
    if document.get("_type") == "partitioned-table":  # W&B's from_json: its parts, the tables under parts_path
        parts_path = str(document.get("parts_path") or "")
        partitioned = data_types.PartitionedTable(parts_path)
        prefix = parts_path.rstrip("/") + "/" if parts_path else ""
        partitioned._parts = sorted(entry for entry in paths if entry.startswith(prefix)
                                    and entry.endswith(".table.json") and entry != path)
        partitioned._artifact = artifact
        return partitioned
    if document.get("_type") == "joined-table":  # W&B's from_json: each table, else its path
        parts = [get_object(artifact, part, tables_only=True) if isinstance(part, str) else None
                 for part in (document.get("table1"), document.get("table2"))]
        return data_types.JoinedTable(parts[0] if parts[0] is not None else document.get("table1"),
                                      parts[1] if parts[1] is not None else document.get("table2"),
                                      document.get("join_key"))
    return _object_of(document, root)


def _object_of(cell: Any, root: str) -> Any:
    from tracklet.compat.wandb import data_types

    if not isinstance(cell, dict) or cell.get("_type") not in _KINDS:
        return cell
    classes = {"image": data_types.Image, "audio": data_types.Audio, "video": data_types.Video,
               "html": data_types.Html, "object3d": data_types.Object3D, "molecule": data_types.Molecule}
    kind = _KINDS[cell["_type"]]
    path = os.path.join(root, cell["path"])
    if kind == "html":
        with open(path, encoding="utf-8") as handle:
            return data_types.Html(handle.read())
    if kind == "plotly":  # the figure's JSON (tracklet.media.plotly)
        with open(path, encoding="utf-8") as handle:
            return data_types.Plotly(json.load(handle))
    if kind == "image" and (cell.get("masks") or cell.get("boxes")):
        return data_types.Image(path, caption=cell.get("caption"), **_overlays_of(cell, root))
    return classes[kind](path, caption=cell.get("caption"))


def _overlays_of(cell: dict[str, Any], root: str) -> dict[str, Any]:
    """An image reference's masks, boxes and classes as ``Image``'s arguments (W&B's artifact
    shape: labels from each mask's and box group's own, else the image's class set)."""
    class_set: list[Any] = []
    classes_file = cell.get("classes")
    if isinstance(classes_file, dict) and isinstance(classes_file.get("path"), str):
        with open(os.path.join(root, classes_file["path"]), encoding="utf-8") as handle:
            class_set = json.load(handle).get("class_set") or []
    labels = {int(entry["id"]): str(entry.get("name", entry["id"])) for entry in class_set
              if isinstance(entry, dict) and "id" in entry}
    masks = {name: {"path": os.path.join(root, mask["path"]), "class_labels": _labels(mask.get("class_labels"), labels)}
             for name, mask in (cell.get("masks") or {}).items()}
    box_labels = cell.get("box_class_labels") or {}
    boxes = {name: {"box_data": box_data, "class_labels": _labels(box_labels.get(name), labels)}
             for name, box_data in (cell.get("boxes") or {}).items()}
    return {"masks": masks or None, "boxes": boxes or None, "classes": class_set or None}


def _labels(own: Any, image_labels: dict[int, str]) -> dict[int, str]:
    """A mask's or box group's ``{id: label}`` (JSON keys are text), else the image's."""
    if isinstance(own, dict) and own:
        return {int(k): str(v) for k, v in own.items()}
    return dict(image_labels)
