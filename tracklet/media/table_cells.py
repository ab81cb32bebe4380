"""Media in table cells: ``table.add_data(tracklet.Image(array), "cat", 0.93)``.

A column whose values are media (``tracklet.Image``, ``Audio``, ``Video``, ... and W&B's, which
are the same classes) is stored as a struct column; each cell is encoded and stored by the media
object's own ``_record`` on the worker thread (the same blob, thumbnail included, that logging it
under a key makes; identical media are stored once), and holds:

``kind`` ("image", ...), ``digest`` (sha256 of the stored file, a blob in the artifacts' store),
``format`` ("png", ...), ``width``, ``height`` (pixels; 0 when not an image or video),
``caption`` and ``thumbnail`` (the thumbnail's digest, or "").

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
    return pa.struct([("kind", pa.string()), ("digest", pa.string()), ("format", pa.string()),
                      ("width", pa.int32()), ("height", pa.int32()), ("caption", pa.string()),
                      ("thumbnail", pa.string())])


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
                media = record.media
                cells.append({"kind": media.kind, "digest": media.digest, "format": media.format,
                              "width": media.width, "height": media.height, "caption": media.caption,
                              "thumbnail": media.thumbnail_digest})
            except Exception as error:  # contained to the cell: the rest of the row is kept
                cells.append(None)
                bad.append(f"row {row}: {error}")
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            report(f"media:{column}", f"tracklet: {where}: column {column!r} holds media; {len(bad)} cell(s) stored "
                                      f"as null ({'; '.join(bad[:3])}{more}); the rest of each row is kept")
        return table_arrow.pa_module().array(cells, type=cell_type())

    return encode
