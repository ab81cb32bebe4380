"""Reading logged media back: ``RecordedRun.media(key)`` / ``images(key)`` (``tracklet.Api``).

Each ``MediaLogged`` record of the run's log becomes a :class:`MediaItem`: where the file is (a
blob of the artifacts' store), what it is, and ``to_numpy()`` (an image's pixels as stored, byte
for byte what was logged for uint8 arrays with the default PNG; audio samples; video frames; a
point cloud), plus masks and boxes for images.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

from tracklet.core.reader import keys_in_logged_order
from tracklet.errors import ArtifactError, TrackletWarning
from tracklet.media.retention import RETENTION_FILE, read_cutoffs, retained

_DIGEST = re.compile(r"[0-9a-f]{64}")


def _valid(message: Any) -> bool:
    """Every digest a record names is a sha256 in hex: a record log is read from disk, and a
    digest becomes a path under the blob store, so anything else (``../..``) is refused."""
    digests = [message.digest, *(mask.digest for mask in message.masks)]
    if message.thumbnail_digest:
        digests.append(message.thumbnail_digest)
    return all(_DIGEST.fullmatch(digest) for digest in digests)


@dataclasses.dataclass
class Box:
    """A bounding box: corners as fractions of the image (or pixels when ``pixel``)."""

    min_x: float
    max_x: float
    min_y: float
    max_y: float
    pixel: bool
    class_id: int
    caption: str
    scores: dict[str, float]
    label: str | None  # the class's label, if its group has one


@dataclasses.dataclass
class Boxes:
    name: str
    boxes: list[Box]
    class_labels: dict[int, str]


@dataclasses.dataclass
class Mask:
    """A segmentation mask: an H×W PNG of class ids."""

    name: str
    digest: str
    width: int
    height: int
    class_labels: dict[int, str]
    _blobs: Any = dataclasses.field(repr=False, default=None)

    @property
    def path(self) -> Path | None:
        return self._blobs.local_path(self.digest) if self._blobs is not None else None

    def to_numpy(self) -> Any:
        """The class ids (H×W, uint8 or uint16)."""
        import io

        import numpy as np
        from PIL import Image as PILImage

        return np.asarray(PILImage.open(io.BytesIO(self._blobs.read_bytes(self.digest))))


@dataclasses.dataclass
class MediaItem:
    """One logged media item (see ``MediaLogged`` in records.proto for the fields)."""

    key: str
    step: int
    index: int
    count: int
    kind: str
    digest: str
    format: str
    mime: str
    size_bytes: int
    time: float
    caption: str
    width: int
    height: int
    channels: int
    duration: float
    sample_rate: int
    fps: float
    frames: int
    mode: str
    source_name: str
    thumbnail_digest: str
    masks: dict[str, Mask]
    boxes: dict[str, Boxes]
    _blobs: Any = dataclasses.field(repr=False, default=None)

    @property
    def path(self) -> Path | None:
        """The stored file (a read-only blob; ``None`` if the blob store is not local)."""
        return self._blobs.local_path(self.digest)

    @property
    def thumbnail_path(self) -> Path | None:
        """A PNG at most 256 px wide/high (images and videos; the image itself when it is that small)."""
        if self.thumbnail_digest:
            return self._blobs.local_path(self.thumbnail_digest)
        return self.path if self.kind == "image" else None

    def read_bytes(self) -> bytes:
        """The stored file's bytes, checked against its digest (``ArtifactError`` if missing or damaged)."""
        return bytes(self._blobs.read_bytes(self.digest))

    def to_pil(self) -> Any:
        """An image (or a video's first frame) as a Pillow image."""
        import io

        from PIL import Image as PILImage

        image = PILImage.open(io.BytesIO(self.read_bytes()))
        image.load()
        return image

    def to_plotly(self) -> Any:
        """A plotly figure's item (kind ``"plotly"``) as a ``plotly.graph_objects.Figure`` (needs
        plotly; ``read_bytes()`` gives its JSON without it)."""
        if self.kind != "plotly":
            raise ValueError(f"{self.kind} is not a plotly figure; to_pil()/to_numpy()/read_bytes() read it")
        import json

        import plotly.graph_objects

        figure = json.loads(self.read_bytes(), object_hook=_typed_array)
        return plotly.graph_objects.Figure(figure, skip_invalid=True)

    def to_numpy(self) -> Any:
        """The data as numpy: an image's pixels (H×W or H×W×C, as stored), audio samples (1-D, or
        frames × channels, as stored in the WAV or FLAC), a GIF's frames (T×H×W×C), an mp4's or webm's frames
        (T×H×W×3, decoded by PyAV: lossy, so near the logged pixels, not equal), a point cloud."""
        import io

        import numpy as np

        if self.kind == "image":
            return np.asarray(self.to_pil())
        if self.kind == "audio" and self.format == "wav":
            from tracklet.media.audio import decode_wav

            return decode_wav(self.read_bytes())
        if self.kind == "audio" and self.format == "flac":
            from tracklet.media.audio import decode_flac

            return decode_flac(self.read_bytes())  # PyAV decodes it (ImportError without it)
        if self.kind == "video" and self.format == "gif":
            from tracklet.media.video import decode_gif

            return decode_gif(self.read_bytes())
        if self.kind == "video" and self.format in ("mp4", "webm"):
            from tracklet.media.video import decode_av

            return decode_av(self.read_bytes())  # PyAV decodes it (ImportError without it)
        if self.format == "npy":
            return np.load(io.BytesIO(self.read_bytes()), allow_pickle=False)
        raise ValueError(f"{self.kind} stored as {self.format} has no array form; read_bytes() or path give the file")


def _typed_array(value: dict[str, Any]) -> Any:
    """A plotly typed array (``{"dtype": "f8", "bdata": base64, "shape": "2, 3"}``, what plotly
    writes for numpy arrays) as the numpy array it was; any other JSON object as it is."""
    if "bdata" not in value or not isinstance(value.get("dtype"), str) or len(value) > 3:
        return value
    import base64

    import numpy as np

    array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
    shape = value.get("shape")
    if isinstance(shape, str) and shape:
        array = array.reshape([int(size) for size in shape.split(",")])
    return array


def _item(message: Any, blobs: Any) -> MediaItem:
    masks = {m.name: Mask(m.name, m.digest, m.width, m.height, dict(m.class_labels), blobs) for m in message.masks}
    boxes = {}
    for group in message.boxes:
        labels = dict(group.class_labels)
        boxes[group.name] = Boxes(group.name, [
            Box(b.min_x, b.max_x, b.min_y, b.max_y, b.pixel, b.class_id, b.caption, dict(b.scores),
                labels.get(b.class_id)) for b in group.boxes], labels)
    return MediaItem(
        message.key, message.step, message.index, message.count, message.kind, message.digest, message.format,
        message.mime, message.size_bytes, message.time, message.caption, message.width, message.height,
        message.channels, message.duration, message.sample_rate, message.fps, message.frames, message.mode,
        message.source_name, message.thumbnail_digest, masks, boxes, blobs,
    )


def media_items(records: Iterable[Any], root: Path, key: str | None = None, kind: str | None = None) -> list[MediaItem]:
    """The run's media (``MediaLogged`` messages) under ``key`` (all keys if None) and of ``kind``,
    ordered by step, then place in the logged list."""
    from tracklet.artifacts.blobs import FsspecBlobStore
    from tracklet.artifacts.storage import artifact_dir

    blobs = FsspecBlobStore(artifact_dir(root))
    chosen = [m for m in records if (key is None or m.key == key) and (kind is None or m.kind == kind)]
    valid = [m for m in chosen if _valid(m)]
    if len(valid) < len(chosen):
        warnings.warn(f"tracklet: {len(chosen) - len(valid)} media record(s) name a blob that is not a sha256 digest "
                      "(a damaged or forged record log): left out", TrackletWarning, stacklevel=3)
    valid.sort(key=lambda m: (m.step, m.key, m.index))
    return [_item(message, blobs) for message in valid]


_MEDIA_TAG = (13 << 3) | 2  # the first byte of a serialized Record whose kind is media (field 13)


def logged_digests(root: Path) -> set[str]:
    """Every blob digest the media records of every run under data root ``root`` name (files,
    thumbnails, masks): what artifact garbage collection must keep besides artifact manifests.
    Reads each record log once and parses only its media records. ``OSError`` when a log can't be
    read: a collector must then keep everything rather than guess."""
    from tracklet.core.layout import iter_logs
    from tracklet.core.parsecost import record_parse_problem
    from tracklet.core.recordlog import read_log
    from tracklet.proto import records_pb2 as pb

    found: set[str] = set()
    record = pb.Record()
    for paths in iter_logs(root):  # a shared run's parts too
        for _, payload in read_log(paths.log_file, resync=True).payloads:
            if not payload or payload[0] != _MEDIA_TAG or record_parse_problem(payload) is not None:
                continue  # not media, or too costly to parse (core/parsecost.py): every reader skips it
            try:
                record.ParseFromString(payload)
            except Exception:  # a damaged record names nothing reliable
                continue
            if record.WhichOneof("kind") == "media" and _valid(record.media):
                media = record.media
                found.add(media.digest)
                found.update(mask.digest for mask in media.masks)
                if media.thumbnail_digest:
                    found.add(media.thumbnail_digest)
    return found


__all__ = ["RETENTION_FILE", "ArtifactError", "Box", "Boxes", "Mask", "MediaItem", "keys_in_logged_order",
           "logged_digests", "media_items",
           "read_cutoffs",
           "retained"]
