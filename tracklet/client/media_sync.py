"""A run's media, table and trace blobs to a tracking server, before the records that name them.

``MediaLogged`` (Record field 13), ``TableLogged`` (14) and ``Span`` (15) records name sha256
blobs in the local artifacts' blob store (``<blob dir>/blobs/sha256/ab/<digest>``): a media file,
its thumbnail and masks; a table version's Parquet fragments and, for a table with media cells,
each cell's file and thumbnail; a span's payloads stored as blobs and the media its payloads
reference (its ``tracklet.media`` attribute). ``SyncClient.sync_run`` (``tracklet sync`` and online mode's uploader) calls
:meth:`MediaBlobSync.send` for the log bytes it is about to upload, so a record reaches the
server only once every blob it names is there: a server never lists an image it can't serve,
and a sync killed anywhere resumes by scanning the frames the server doesn't have yet.

The blobs go through the artifacts' server routes (``ArtifactClient``: one "which are missing?"
request per 1,000 digests, small blobs many to a request, large ones streamed, from 32 MiB in
resumable parts whose session is kept under ``state_dir``), into the project's grants: the
server verifies each blob's sha256 before it becomes visible, and only a key with ``write`` on
the project may send them. A digest the server confirmed is remembered for the life of this
object (online mode asks about each blob once). A blob missing or unreadable locally is left
out with one warning (the records still upload: the server then answers 404 for that file).

The log is read in bounded windows (``WINDOW_BYTES``, more only for one larger frame); only
records whose first byte says media or table are parsed (spans only when their bytes hold a blob
field or the ``tracklet.media`` attribute's name).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tracklet.client.artifacts import ArtifactClient
from tracklet.core.layout import RunPaths
from tracklet.core.parsecost import record_parse_problem
from tracklet.core.recordlog import MAGIC, scan, scan_frames
from tracklet.errors import RemoteError, TrackletWarning

WINDOW_BYTES = 8 << 20  # log bytes read at a time while looking for media and table records
KNOWN_CAP = 200_000  # digests remembered as on the server (then forgotten, and asked about again)
_MEDIA_TAG = (13 << 3) | 2  # first byte of a serialized Record whose kind is media (field 13) ...
_TABLE_TAG = (14 << 3) | 2  # ... or a table (field 14)
_SPAN_TAG = (15 << 3) | 2  # ... or a span (field 15), which may name payload and media blobs
_SPAN_MEDIA = b"tracklet.media"  # the span attribute listing its payloads' media (tracing/media.py)
_PAYLOAD_BLOB = b"\x12\x40"  # a SpanPayload's blob_digest field: tag, then 64 bytes of sha256
_DIGEST = re.compile(r"[0-9a-f]{64}")
_CELL_FIELDS = {"kind", "digest", "thumbnail"}  # a media cell's struct (media/table_cells.py)


@dataclasses.dataclass
class MediaSyncResult:
    """What one :meth:`MediaBlobSync.send` did."""

    digests: int = 0  # distinct blobs the scanned records name
    missing: int = 0  # of those, blobs the server lacked
    sent: int = 0  # blobs uploaded
    sent_bytes: int = 0
    requests: int = 0  # "which are missing?" queries made
    unreadable: list[str] = dataclasses.field(default_factory=list)  # digests missing locally: not sent


def blob_path(blob_dir: Path, digest: str) -> Path:
    """Where a local artifacts' store keeps blob ``digest`` (``artifacts/blobs.py``'s layout)."""
    return blob_dir / "blobs" / "sha256" / digest[:2] / digest


def _frames(log_file: Path, start: int, end: int) -> Iterator[bytes]:
    """Payloads of the intact frames of the log between ``start`` (a frame boundary, or 0) and
    ``end``, read ``WINDOW_BYTES`` at a time; damaged regions are skipped."""
    offset = start
    window = WINDOW_BYTES
    with open(log_file, "rb") as handle:
        while offset < end:
            handle.seek(offset)
            data = handle.read(min(window, end - offset))
            if not data:
                return
            result = scan(data, resync=True) if offset == 0 else scan_frames(data, 0, base=offset, resync=True)
            for _, payload in result.payloads:
                yield payload
            stop = result.end_offset
            if stop <= max(offset, len(MAGIC) if offset == 0 else offset):
                if offset + len(data) >= end:
                    return  # nothing intact in what is left (a live writer's half frame)
                window *= 2  # one frame bigger than the window: read it whole
                continue
            offset, window = stop, WINDOW_BYTES


def _record_digests(payload: bytes, blob_dir: Path, record: Any, retired: dict[str, int] | None = None) -> list[str]:
    """The blobs one media, table or span record names (``[]`` for any other record, and for a
    media item a retention policy retired: ``retired``, each key's first kept step)."""
    if not payload or payload[0] not in (_MEDIA_TAG, _TABLE_TAG, _SPAN_TAG):
        return []
    if payload[0] == _SPAN_TAG and _SPAN_MEDIA not in payload and _PAYLOAD_BLOB not in payload:
        return []  # most spans: payloads inline, no media (no parse)
    if record_parse_problem(payload) is not None:
        return []  # too costly to parse (core/parsecost.py): the server refuses it, readers skip it
    try:
        record.ParseFromString(payload)
    except Exception:  # a damaged record names nothing reliable
        return []
    kind = record.WhichOneof("kind")
    if kind == "media":
        media = record.media
        if retired and media.step < retired.get(media.key, media.step):
            return []  # retired (`tracklet media prune`): its blob may be gone; the server is told (sync.py)
        return [media.digest, media.thumbnail_digest, *(mask.digest for mask in media.masks)]
    if kind == "span":
        span = record.span
        found = [span.input.blob_digest, span.output.blob_digest]
        for entry in span.attributes:
            if entry.key == _SPAN_MEDIA.decode():
                found.extend(item.string_value for item in entry.value.list_value.items)
        return found
    if kind == "table_logged":
        table = record.table_logged
        found = [fragment.digest for fragment in table.fragments]
        if any(column.type.startswith("struct<") and "digest" in column.type for column in table.columns):
            for fragment in table.fragments:
                if _DIGEST.fullmatch(fragment.digest):
                    found.extend(cell_digests(blob_path(blob_dir, fragment.digest)))
        return found
    return []


def cell_digests(fragment: Path) -> list[str]:
    """The media files, thumbnails and masks the media cells of a table fragment (a Parquet file)
    name: only its struct columns with ``kind``, ``digest`` and ``thumbnail`` fields are read."""
    try:
        import pyarrow.parquet as pq

        schema = pq.read_schema(fragment)
        import pyarrow as pa

        columns = [field.name for field in schema
                   if pa.types.is_struct(field.type) and _CELL_FIELDS <= {f.name for f in field.type}]
        if not columns:
            return []
        table = pq.read_table(fragment, columns=columns)
    except Exception:  # unreadable here: the fragment itself is reported when it is sent
        return []
    found: list[str] = []
    for name in columns:
        column = table.column(name).combine_chunks()
        for field in ("digest", "thumbnail"):
            found.extend(value for value in column.field(field).to_pylist() if value)
        if "masks" in {f.name for f in column.type}:  # an image cell's masks are PNG blobs too
            masks = column.field("masks").flatten()
            found.extend(value for value in masks.field("digest").to_pylist() if value)
    return found


class MediaBlobSync:
    """Sends the blobs a run's records name to the server ``artifacts`` talks to (see the
    module); ``blob_dir`` is the local artifacts directory (``artifact_dir(data_root)``)."""

    def __init__(self, artifacts: ArtifactClient, blob_dir: Path) -> None:
        self.artifacts = artifacts
        self.blob_dir = Path(blob_dir)
        self._known: set[tuple[str, str]] = set()  # (project, digest) the server confirmed holding
        self._warned: set[str] = set()

    def digests(self, paths: RunPaths, start: int, end: int) -> list[str]:
        """The blobs the media and table records between ``start`` and ``end`` of the run's log
        name, once each, in log order (anything that is not a sha256 is left out)."""
        from tracklet.proto import records_pb2 as pb

        from tracklet.core.extensions import load

        try:
            retired = load("media").read_cutoffs(paths.run_dir)
        except ValueError:  # a damaged retention file: every item's blob is sent
            retired = {}
        record = pb.Record()
        found: dict[str, None] = {}
        for payload in _frames(paths.log_file, start, end):
            for digest in _record_digests(payload, self.blob_dir, record, retired):
                if _DIGEST.fullmatch(digest):
                    found[digest] = None
        return list(found)

    def send(self, paths: RunPaths, start: int, end: int) -> MediaSyncResult:
        """Make sure the server holds, for the run's project, every blob the records between
        ``start`` and ``end`` of its log name; what it did. Refusals and giving up raise the
        ``HttpClient``'s error class (``SyncError`` from a ``SyncClient``)."""
        project = paths.project
        result = MediaSyncResult()
        wanted = self.digests(paths, start, end)
        result.digests = len(wanted)
        asking = [digest for digest in wanted if (project, digest) not in self._known]
        if not asking:
            return result
        result.requests = -(-len(asking) // 1000)
        lacking = self.artifacts.missing(project, asking)
        result.missing = len(lacking)
        files: list[tuple[str, str, int]] = []
        for digest in asking:
            if digest not in lacking:
                self._remember(project, digest)
                continue
            path = blob_path(self.blob_dir, digest)
            try:
                size = path.stat().st_size
            except OSError:
                result.unreadable.append(digest)
                continue
            files.append((str(path), digest, size))
        if files:
            try:
                result.sent_bytes = self.artifacts.upload_files(project, files)
            except RemoteError as error:  # a blob refused (its bytes no longer match its digest): the caller's class
                http = self.artifacts.http
                if isinstance(error, http.error):
                    raise
                raise http.error(f"{paths.project}/{paths.run_id}: {error}; its records were not uploaded") from None
            result.sent = len(files)
            for _, digest, _ in files:
                self._remember(project, digest)
        if result.unreadable:
            self._warn(paths, result.unreadable)
        return result

    def _remember(self, project: str, digest: str) -> None:
        if len(self._known) >= KNOWN_CAP:
            self._known.clear()
        self._known.add((project, digest))

    def _warn(self, paths: RunPaths, digests: list[str]) -> None:
        fresh = [digest for digest in digests if digest not in self._warned]
        if not fresh:
            return
        self._warned.update(fresh)
        warnings.warn(f"tracklet: {paths.project}/{paths.run_id}: {len(fresh)} media or table file(s) its records "
                      f"name are missing from the local blob store {self.blob_dir} (e.g. {fresh[0]}): not uploaded; "
                      "the server answers 404 for them", TrackletWarning, stacklevel=3)
