"""Media in an op's arguments or result: stored once in the blob store, referenced by the span.

On the run's worker, while a payload is turned into JSON (``record.to_json``), a value that is
media is encoded and written to the data root's content-addressed blob store (the artifacts'
``blobs/sha256/...``, the store logged media use: ``tracklet.media``'s own encoders, no copy of
them here), and the payload keeps a reference in its place::

    {"_type": "tracklet.media", "kind": "image", "sha256": "<64 hex>", "mime": "image/png",
     "format": "png", "size": 1234, "width": 64, "height": 48, "thumbnail": "<64 hex>"}

Media are: a ``tracklet.Image`` / ``Audio`` / ``Video`` / ``Html`` / ... (any logged media item),
a PIL image, a numpy array shaped like an image (``uint8``, H×W or H×W×1/3/4, both sides at least
``MIN_IMAGE_SIDE``), and bytes longer than ``BYTES_INLINE`` (kind ``"bytes"``, their type sniffed
from their first bytes: PNG, JPEG, GIF, WebP, WAV, MP3, Ogg, FLAC, MP4, else
``application/octet-stream``). There is no size limit: a blob is written in one piece, whatever
its size. Each span names the blobs its payloads reference in its ``tracklet.media`` attribute
(so ``tracklet sync`` sends them to a server before the span, as it does for logged media).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tracklet.core.logged import LoggedObject, Placement

MEDIA_TYPE = "tracklet.media"  # the "_type" of a reference
MEDIA_ATTRIBUTE = "tracklet.media"  # the span attribute listing the blobs its payloads reference
BYTES_INLINE = 8 * 1024  # bytes up to this long are described ({"_type": "bytes", "size"}), not stored
MIN_IMAGE_SIDE = 16

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"), (b"ID3", "audio/mpeg"), (b"OggS", "audio/ogg"), (b"fLaC", "audio/flac"),
)


def sniff_mime(data: bytes) -> str:
    """The media type of ``data`` from its first bytes (images, audio and video a browser plays);
    ``application/octet-stream`` for anything else."""
    head = bytes(data[:16])
    for signature, mime in _SIGNATURES:
        if head.startswith(signature):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return "application/octet-stream"


class _Context:
    """What a media item's ``_record`` needs on the worker (``tracklet.media.worker.Context``'s
    shape): the blob store, and a reporter for conversions (not reported for op payloads)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def put_bytes(self, data: bytes) -> str:
        digest, _ = self.store.put_bytes(data)
        return str(digest)

    def warn(self, key: Any, message: str) -> None:
        pass


class Sink:
    """The blob store a worker thread writes one span's media to, and the digests written."""

    __slots__ = ("root", "digests")

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.digests: list[str] = []


_local = threading.local()


def begin(root: Path | None) -> Sink:
    """Start collecting one span's media (on the worker thread building it)."""
    sink = _local.sink = Sink(root)
    return sink


def end() -> None:
    """Stop collecting (the span is built): a walk outside a span stores nothing."""
    _local.sink = None


def current() -> Sink | None:
    return getattr(_local, "sink", None)


def is_media(value: Any) -> bool:
    """Whether ``value`` (not a builtin scalar or container) is stored as media (see the module)."""
    if isinstance(value, LoggedObject):
        return getattr(value, "_kind", "") != "table" and hasattr(value, "_fill")
    module = type(value).__module__
    if module.startswith("PIL.") and hasattr(value, "getbands"):
        return True
    if module == "numpy":
        return _image_shaped(value)
    return False


def _image_shaped(array: Any) -> bool:
    shape: Any = getattr(array, "shape", ())
    return (str(getattr(array, "dtype", "")) == "uint8"
            and (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4)))
            and shape[0] >= MIN_IMAGE_SIDE and shape[1] >= MIN_IMAGE_SIDE)


def reference(value: Any, sink: Sink) -> dict[str, Any]:
    """Store media ``value`` (``is_media``, or long bytes) and return its reference; a value that
    can't be stored is described with the reason instead (``{"_type": ..., "error": ...}``)."""
    from tracklet.tracing.record import _blob_store  # one store per data root, shared with payloads

    if sink.root is None:
        return {"_type": type(value).__name__, "error": "no data root to store it in"}
    try:  # a failure (encoding, a full disk) is this value's alone: described, the span kept
        context = _Context(_blob_store(sink.root))
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            digest = context.put_bytes(data)
            sink.digests.append(digest)
            return {"_type": MEDIA_TYPE, "kind": "bytes", "sha256": digest, "mime": sniff_mime(data),
                    "size": len(data)}
        return _media_reference(value, context, sink)
    except Exception as error:
        return {"_type": type(value).__name__, "error": f"not stored: {error}"[:500]}


def _media_reference(value: Any, context: _Context, sink: Sink) -> dict[str, Any]:
    item = value
    if not isinstance(value, LoggedObject):
        from tracklet.media.image import Image

        item = Image(value)
    record = item._record(context, Placement("op", 0, 0, 1, 0.0))
    media = record.media
    out: dict[str, Any] = {"_type": MEDIA_TYPE, "kind": media.kind, "sha256": media.digest, "mime": media.mime,
                           "format": media.format, "size": media.size_bytes}
    for name in ("width", "height", "channels", "duration", "sample_rate", "fps", "frames", "caption"):
        field = getattr(media, name)
        if field:
            out[name] = field
    digests = [media.digest]
    if media.thumbnail_digest:
        out["thumbnail"] = media.thumbnail_digest
        digests.append(media.thumbnail_digest)
    sink.digests.extend(digest for digest in digests if digest)
    return out


def attribute(sink: Sink) -> list[str]:
    """The span's ``tracklet.media`` attribute: each blob once, in the order written."""
    return list(dict.fromkeys(sink.digests))
