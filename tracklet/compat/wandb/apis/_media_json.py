"""Logged media, tables and histograms as W&B's public API shows them in a run's summary and
history: ``{"_type": "image-file", "path": "media/images/img_3_<id>.png", "sha256", "size",
"format", "width", "height"}``, ``{"_type": "table-file", "path": "media/table/...table.json",
"ncols", "nrows", "log_mode"}``, ``{"_type": "histogram", "values", "bins"}``. The ``path`` is the
name ``run.file(path).download()`` takes (:class:`MediaFile`), as a W&B script finds an image in the
history and downloads it. Read from a run's record log or from a tracking server alike: only the
``RecordedRun``/``RemoteRun`` methods both have (``media``, ``table_keys``, ``table``) are used,
plus the record log's table records where the run is local."""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Callable

# tracklet's media kind -> (W&B's media folder, W&B's _type)
_KINDS = {
    "image": ("media/images", "image-file"),
    "audio": ("media/audio", "audio-file"),
    "video": ("media/videos", "video-file"),
    "html": ("media/html", "html-file"),
    "plotly": ("media/plotly", "plotly-file"),
    "object3d": ("media/object3D", "object3D-file"),
    "molecule": ("media/molecule", "molecule-file"),
}
_LOG_MODES = {1: "IMMUTABLE", 2: "MUTABLE", 3: "INCREMENTAL"}  # TableLogged.LogMode
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/]")


def _safe(key: str) -> str:
    """A key as a file name part (W&B keeps ``/`` as folders); a ``.`` or ``..`` folder becomes
    ``_``, so the path stays under the folder ``download(root=)`` writes to, whatever the key."""
    parts = _UNSAFE.sub("_", key).split("/")
    return "/".join("_" if part in (".", "..") else part for part in parts).strip("/") or "_"


def download_target(root: str, name: str) -> str:
    """``root/name``, where ``File.download`` writes ``name``; ``ValueError`` for a name that
    would land elsewhere (absolute, a drive, a ``..`` folder): a run's file names come from its
    data or a server, and a script downloading every file of a run must not write outside ``root``."""
    parts = name.replace("\\", "/").split("/")
    if not name or os.path.isabs(name) or os.path.splitdrive(name)[0] or ".." in parts or "\0" in name:
        raise ValueError(f"refusing to download the file named {name!r}: the name leads outside the folder "
                         f"it is downloaded to ({root!r})")
    return os.path.join(root, name)


def histogram_json(value: Any) -> dict[str, Any]:
    return {"_type": "histogram", "values": list(value.counts), "bins": list(value.edges)}


def media_path(item: Any) -> str:
    folder, _ = _KINDS.get(item.kind, (f"media/{item.kind}", f"{item.kind}-file"))
    extension = "plotly.json" if item.kind == "plotly" else item.format or "bin"
    return f"{folder}/{_safe(item.key)}_{item.step}_{item.digest[:20]}.{extension}"


def mask_path(item: Any, mask: Any) -> str:
    """Where W&B keeps an image's mask: ``media/images/mask/<key>_<step>_<id>.mask.png``."""
    return f"media/images/mask/{_safe(item.key)}_{item.step}_{mask.digest[:20]}.mask.png"


def boxes_bytes(boxes: Any) -> bytes:
    """An image's box group as W&B's ``.boxes2D.json`` file holds it (what was logged:
    ``box_data`` with each box's ``position``, ``class_id``, ``box_caption``, ``scores``,
    ``domain: pixel`` for pixel corners; ``class_labels``)."""
    data = []
    for box in boxes.boxes:
        entry: dict[str, Any] = {"position": {"minX": box.min_x, "maxX": box.max_x, "minY": box.min_y,
                                              "maxY": box.max_y}, "class_id": box.class_id}
        if box.caption:
            entry["box_caption"] = box.caption
        if box.scores:
            entry["scores"] = dict(box.scores)
        if box.pixel:
            entry["domain"] = "pixel"
        data.append(entry)
    labels = {str(key): value for key, value in boxes.class_labels.items()}
    return json.dumps({"box_data": data, "class_labels": labels}, sort_keys=True).encode()


def boxes_path(item: Any, name: str, payload: bytes) -> str:
    """Where W&B keeps an image's box group: ``media/metadata/boxes2D/<key>_<step>_<id>.boxes2D.json``."""
    ident = hashlib.sha256(payload).hexdigest()[:20]
    return f"media/metadata/boxes2D/{_safe(item.key)}_{item.step}_{_safe(name)}_{ident}.boxes2D.json"


def _mask_size(mask: Any) -> int | None:
    """The mask file's size from a data root; None from a server (finding it would download the
    mask at every read of the summary)."""
    if getattr(getattr(mask, "_blobs", None), "url", None) is not None:
        return None
    try:
        path = mask.path
        return int(path.stat().st_size) if path is not None else None
    except (OSError, AttributeError):
        return None


def image_parts(item: Any) -> dict[str, tuple[str, Any]]:
    """The files an image's masks and boxes are, by the path W&B's JSON names:
    ``("mask", Mask)`` or ``("bytes", payload)``."""
    parts: dict[str, tuple[str, Any]] = {}
    for mask in (getattr(item, "masks", None) or {}).values():
        parts[mask_path(item, mask)] = ("mask", mask)
    for name, boxes in (getattr(item, "boxes", None) or {}).items():
        payload = boxes_bytes(boxes)
        parts[boxes_path(item, name, payload)] = ("bytes", payload)
    return parts


def media_json(item: Any) -> dict[str, Any]:
    """One media item as W&B's JSON of it (an image's masks and boxes as W&B's ``masks`` and
    ``boxes``: ``{name: {"_type": "mask"|"boxes2D", "path", "sha256", "size"}}``)."""
    _, kind = _KINDS.get(item.kind, ("", f"{item.kind}-file"))
    found: dict[str, Any] = {"_type": kind, "path": media_path(item), "sha256": item.digest, "size": item.size_bytes}
    if item.format:
        found["format"] = item.format
    if item.width or item.height:
        found["width"], found["height"] = item.width, item.height
    if item.kind == "audio" and item.sample_rate:
        found["sample_rate"] = item.sample_rate
    if item.caption:
        found["caption"] = item.caption
    masks = getattr(item, "masks", None) or {}
    if masks:
        found["masks"] = {}
        for name, mask in masks.items():
            entry: dict[str, Any] = {"_type": "mask", "path": mask_path(item, mask), "sha256": mask.digest}
            size = _mask_size(mask)
            if size is not None:
                entry["size"] = size
            found["masks"][name] = entry
    boxes = getattr(item, "boxes", None) or {}
    if boxes:
        found["boxes"] = {}
        for name, group in boxes.items():
            payload = boxes_bytes(group)
            found["boxes"][name] = {"_type": "boxes2D", "path": boxes_path(item, name, payload),
                                    "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    return found


def _step_value(items: list[Any]) -> Any:
    """What W&B shows for one key at one step: the item's JSON, or for a list of images logged
    together W&B's ``images/separated`` (paths in ``filenames``); a list of other media: their JSONs."""
    if len(items) == 1:
        return media_json(items[0])
    if all(item.kind == "image" for item in items):
        found: dict[str, Any] = {"_type": "images/separated", "count": len(items),
                                 "filenames": [media_path(item) for item in items],
                                 "format": items[0].format, "width": items[0].width, "height": items[0].height}
        if any(item.caption for item in items):
            found["captions"] = [item.caption for item in items]
        return found
    return [media_json(item) for item in items]


def _table_versions(recorded: Any, key: str) -> list[dict[str, Any]]:
    """Each version of table ``key``: ``step``, ``rows`` (the version's, increments included),
    ``log_mode``, ``ncols``."""
    records = getattr(getattr(recorded, "_read", None), "tables", None)
    if records is not None:  # a local run: its record log's table records
        versions: list[dict[str, Any]] = []
        total = 0
        for record in records:
            if record.key != key:
                continue
            mode = _LOG_MODES.get(record.log_mode, "IMMUTABLE")
            total = total + int(record.rows) if mode == "INCREMENTAL" else int(record.rows)
            versions.append({"step": int(record.step), "rows": total, "log_mode": mode, "ncols": len(record.columns)})
        return versions
    listed = recorded.table_versions(key)  # a server's: the latest version's column count for each
    ncols = len(recorded.table(key)._get(0, 1).get("columns") or []) if listed else 0
    versions, total = [], 0
    for item in listed:
        total = total + int(item["rows"]) if item["log_mode"] == "INCREMENTAL" else int(item["rows"])
        versions.append({"step": int(item["step"]), "rows": total, "log_mode": item["log_mode"], "ncols": ncols})
    return versions


def table_path(run_path: str, key: str, step: int) -> str:
    ident = hashlib.sha256(f"{run_path}\0{key}\0{step}".encode()).hexdigest()[:20]
    return f"media/table/{_safe(key)}_{step}_{ident}.table.json"


def table_json(run_path: str, key: str, version: dict[str, Any]) -> dict[str, Any]:
    kind = "incremental-table-file" if version["log_mode"] == "INCREMENTAL" else "table-file"
    return {"_type": kind, "path": table_path(run_path, key, version["step"]), "ncols": version["ncols"],
            "nrows": version["rows"], "log_mode": version["log_mode"]}


class Logged:
    """A run's media and tables, read once, by key and step."""

    def __init__(self, recorded: Any) -> None:
        self._recorded = recorded
        self.by_step: dict[int, dict[str, Any]] = {}  # step -> {key: W&B's JSON}
        self.last: dict[str, Any] = {}  # key -> its last JSON (the summary's)
        self.files: dict[str, tuple[str, Any]] = {}  # path -> ("media", item) | ("table", (key, step))
        if recorded is None:  # nothing could be read (``Run._logged`` warned)
            return
        grouped: dict[tuple[str, int], list[Any]] = {}
        for item in recorded.media():
            grouped.setdefault((item.key, item.step), []).append(item)
        for (key, step), items in sorted(grouped.items(), key=lambda pair: pair[0][1]):
            items.sort(key=lambda item: item.index)
            self._add(key, step, _step_value(items))
            for item in items:
                self.files[media_path(item)] = ("media", item)
                self.files.update(image_parts(item))
        for key in recorded.table_keys():
            for version in _table_versions(recorded, key):
                value = table_json(recorded.path, key, version)
                self._add(key, version["step"], value)
                self.files[value["path"]] = ("table", (key, version["step"]))

    def _add(self, key: str, step: int, value: Any) -> None:
        self.by_step.setdefault(step, {})[key] = value
        self.last[key] = value

    @property
    def keys(self) -> set[str]:
        return set(self.last)


class BytesFile:
    """A run file whose bytes tracklet makes when it is read (``run.file(name)``), downloaded as
    W&B's ``File.download`` writes one: ``root/<name>``, opened for reading."""

    def __init__(self, name: str, produce: Callable[[], bytes] | None = None) -> None:
        self.name = name
        self._produce = produce
        self._data: bytes | None = None

    def _bytes(self) -> bytes:
        if self._data is None:
            assert self._produce is not None
            self._data = self._produce()
        return self._data

    @property
    def size(self) -> int:
        return len(self._bytes())

    def download(self, root: str = ".", replace: bool = False, exist_ok: bool = False, api: Any = None) -> Any:
        """The file written to ``root/<name>``, opened for reading (as W&B's ``File.download``;
        ``api``, W&B's Api to download with, is accepted: the run's own reader is used)."""
        target = download_target(root, self.name)
        if os.path.exists(target) and not (replace or exist_ok):
            raise ValueError(f"File already exists, pass replace=True to overwrite: {target}")
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        if not os.path.exists(target) or replace:
            partial = f"{target}.partial"
            with open(partial, "wb") as out:
                out.write(self._bytes())
            os.replace(partial, target)
        return open(target)

    def delete(self) -> None:
        """Refused (``UnsupportedError``): see ``_run_files.refuse_delete``."""
        from tracklet.compat.wandb.apis._run_files import refuse_delete

        refuse_delete(self.name)

    def __repr__(self) -> str:
        return f"<File {self.name}>"


class MediaFile(BytesFile):
    """``run.file("media/images/img_3_<id>.png")``: a logged media item or table under the path
    its summary or history JSON names, downloaded as W&B's file (a table as W&B's table JSON,
    ``{"columns": [...], "data": [[...], ...]}``)."""

    def __init__(self, recorded: Any, name: str, source: tuple[str, Any]) -> None:
        super().__init__(name)
        self._recorded, self._source = recorded, source

    def _bytes(self) -> bytes:
        kind, what = self._source
        if kind == "media":
            return bytes(what.read_bytes())
        if kind == "mask":  # an image's mask (image_parts)
            return bytes(what._blobs.read_bytes(what.digest))
        if kind == "bytes":  # an image's boxes as W&B's file (image_parts)
            return bytes(what)
        key, step = what
        frame = self._recorded.table(key, step).to_pandas()
        data = json.loads(frame.to_json(orient="split", index=False, default_handler=str))
        return json.dumps({"columns": data["columns"], "data": data["data"]}).encode()

    @property
    def size(self) -> int:
        kind, what = self._source
        return int(what.size_bytes) if kind == "media" else len(self._bytes())
