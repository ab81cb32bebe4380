"""Media in table cells: ``table.add_data(tracklet.Image(array), "cat", 0.93)``.

A column whose values are media (``tracklet.Image``, ``Audio``, ``Video``, ... and W&B's, which
are the same classes) is stored as a struct column; each cell is encoded and stored by the media
object's own ``_record`` on the worker thread (the same blob, thumbnail included, that logging it
under a key makes; identical media are stored once), and holds:

``kind`` ("image", ...), ``digest`` (sha256 of the stored file, a blob in the artifacts' store),
``format`` ("png", ...), ``width``, ``height`` (pixels; 0 when not an image or video),
``caption``, ``thumbnail`` (the thumbnail's digest, or ""), and an image's overlays as logged
under a key: ``masks`` (``[{name, digest, width, height, class_labels: [{id, label}]}]``: each
mask a PNG of class ids, a blob like the image) and ``boxes`` (``[{name, class_labels, boxes:
[{min_x, max_x, min_y, max_y, pixel, class_id, caption, scores: [{name, value}]}]}]``: corners as
fractions of the image, or pixels when ``pixel``); empty lists for other media.

A cell that is not a media object in such a column, or whose media can't be stored, is a null,
with one warning naming the table, the column and the row.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from tracklet.core.logged import Placement
from tracklet.media import table_arrow

# (values of one column, its name, the index of its first row) -> an Arrow array, or None when the
# column holds no media
CellEncoder = Callable[[Sequence[Any], str, int], Any]


def cell_type() -> Any:
    pa = table_arrow.pa_module()
    labels = pa.list_(pa.struct([("id", pa.int32()), ("label", pa.string())]))
    mask = pa.struct([("name", pa.string()), ("digest", pa.string()), ("width", pa.int32()),
                      ("height", pa.int32()), ("class_labels", labels)])
    box = pa.struct([("min_x", pa.float64()), ("max_x", pa.float64()), ("min_y", pa.float64()),
                     ("max_y", pa.float64()), ("pixel", pa.bool_()), ("class_id", pa.int32()),
                     ("caption", pa.string()),
                     ("scores", pa.list_(pa.struct([("name", pa.string()), ("value", pa.float64())])))])
    boxes = pa.struct([("name", pa.string()), ("class_labels", labels), ("boxes", pa.list_(box))])
    return pa.struct([("kind", pa.string()), ("digest", pa.string()), ("format", pa.string()),
                      ("width", pa.int32()), ("height", pa.int32()), ("caption", pa.string()),
                      ("thumbnail", pa.string()), ("masks", pa.list_(mask)), ("boxes", pa.list_(boxes))])


def _labels(class_labels: Any) -> list[dict[str, Any]]:
    return [{"id": int(class_id), "label": label} for class_id, label in sorted(class_labels.items())]


def cell_of(media: Any) -> dict[str, Any]:
    """A media cell's value (see the module) from the ``pb.MediaLogged`` its object recorded."""
    return {"kind": media.kind, "digest": media.digest, "format": media.format, "width": media.width,
            "height": media.height, "caption": media.caption, "thumbnail": media.thumbnail_digest,
            "masks": [{"name": mask.name, "digest": mask.digest, "width": mask.width, "height": mask.height,
                       "class_labels": _labels(mask.class_labels)} for mask in media.masks],
            "boxes": [{"name": group.name, "class_labels": _labels(group.class_labels),
                       "boxes": [{"min_x": box.min_x, "max_x": box.max_x, "min_y": box.min_y, "max_y": box.max_y,
                                  "pixel": box.pixel, "class_id": box.class_id, "caption": box.caption,
                                  "scores": [{"name": name, "value": value}
                                             for name, value in sorted(box.scores.items())]}
                                 for box in group.boxes]} for group in media.boxes]}


def _is_media(value: Any) -> bool:
    from tracklet.media.base import Media

    return isinstance(value, Media)


def holds_media(rows: Sequence[Sequence[Any]], width: int) -> bool:
    """Whether any column's first value that is not None is a media object."""
    for column in range(width):
        first = next((row[column] for row in rows if len(row) == width and row[column] is not None), None)
        if first is not None and _is_media(first):
            return True
    return False


def media_cells(context: Any, key: str, step: int, when: float, where: str,
                report: table_arrow.Report) -> CellEncoder:
    """A ``CellEncoder`` storing media through ``context`` (the logged-object worker's: ``.blobs``,
    ``.put_bytes``, ``.warn``) for the table logged under ``key`` at ``step``."""

    def encode(values: Sequence[Any], column: str, row_offset: int) -> Any:
        first = next((value for value in values if value is not None), None)
        if first is None or not _is_media(first):
            return None
        cells: list[Any] = []
        bad: list[str] = []
        for index, value in enumerate(values):
            if value is None:
                cells.append(None)
                continue
            row = row_offset + index
            if not _is_media(value):
                cells.append(None)
                bad.append(f"row {row}: a {type(value).__name__}, not media")
                continue
            try:
                record = value._record(context, Placement(key, step, row, len(values), when))
                cells.append(cell_of(record.media))
            except Exception as error:  # contained to the cell: the rest of the row is kept
                cells.append(None)
                bad.append(f"row {row}: {error}")
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            report(f"media:{column}", f"tracklet: {where}: column {column!r} holds media; {len(bad)} cell(s) stored "
                                      f"as null ({'; '.join(bad[:3])}{more}); the rest of each row is kept")
        return table_arrow.pa_module().array(cells, type=cell_type())

    return encode
