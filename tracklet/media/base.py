"""``Media``: what every logged media type shares (a caption, the record it becomes)."""

from __future__ import annotations

import io
import os
from typing import Any

from tracklet import errors
from tracklet.core.logged import LoggedObject, Placement
from tracklet.media import buffers

MIME = {
    "png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
    "bmp": "image/bmp", "tiff": "image/tiff", "wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac",
    "ogg": "audio/ogg", "mp4": "video/mp4", "webm": "video/webm", "html": "text/html", "npy": "application/x-npy",
    "json": "application/json", "obj": "model/obj", "gltf": "model/gltf+json", "glb": "model/gltf-binary",
    "stl": "model/stl", "pdb": "chemical/x-pdb",
}


MediaError = errors.MediaError  # defined with tracklet's other errors; importable from here too


class Media(LoggedObject):
    """A media item to log: ``run.log({"key": item})`` or a list of them under one key."""

    _kind = "media"

    def __init__(self, caption: Any = None) -> None:
        self.caption = None if caption is None else str(caption)
        self._buffers: list[Any] = []  # pooled buffers holding this item's copies (media.buffers)

    def __del__(self) -> None:
        # The item is gone (recorded, or never logged): its copies' buffers can serve new ones.
        held = self.__dict__.get("_buffers")
        if held:
            self.__dict__.clear()  # first the views of the buffers this item held
            try:
                buffers.release(held)
            except Exception:  # at interpreter exit the module may be gone: the memory is freed anyway
                pass

    def _fill(self, context: Any, where: Placement, media: Any) -> None:
        """Encode, store and describe this item in ``media`` (a ``pb.MediaLogged``): subclasses."""
        raise NotImplementedError

    def _record(self, context: Any, where: Placement) -> Any:
        record = _records().Record()
        media = record.media
        media.key, media.step, media.index, media.count, media.time = (where.key, where.step, where.index,
                                                                        where.count, where.time)
        media.kind = self._kind
        if self.caption:
            media.caption = self.caption
        self._fill(context, where, media)
        return record

    @staticmethod
    def _store(context: Any, media: Any, data: bytes, file_format: str) -> None:
        """Store ``data`` as a blob and describe it (digest, size, format, mime) in ``media``."""
        media.digest = context.put_bytes(data)
        media.size_bytes = len(data)
        media.format = file_format
        media.mime = MIME.get(file_format.rpartition(".")[2], "application/octet-stream")


_RECORDS: Any = None


def _records() -> Any:
    """``tracklet.proto.records_pb2``, imported once: a ``from package import module`` statement
    runs importlib's Python-level ``_handle_fromlist`` on every call, holding the GIL that the
    training thread may be waiting for (a fifth of the media worker's GIL samples in a py-spy profile)."""
    global _RECORDS
    if _RECORDS is None:
        from tracklet.proto import records_pb2

        _RECORDS = records_pb2
    return _RECORDS


def read_source(source: Any, what: str) -> tuple[bytes, str]:
    """The bytes of a path or a binary/text file object, and its base name ("" if none).
    ``MediaError`` naming the file when it can't be read."""
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as handle:
                return handle.read(), os.path.basename(os.fspath(source))
        except OSError as error:
            raise MediaError(f"can't read {what} file {os.fspath(source)!r}: {error.strerror or error}") from None
    if isinstance(source, io.BytesIO):
        # The media's own copy of a file object (media/snapshot.py), read without moving it: an
        # object logged twice, or read on the caller's thread (W&B's Image.image) while the worker
        # stores it, gives every reader the same bytes (a read() left the next one nothing).
        data: Any = source.getvalue()[source.tell():]
        return data, os.path.basename(str(getattr(source, "name", "") or ""))
    read = getattr(source, "read", None)
    if read is None:
        raise MediaError(f"{what} takes a path or a file object; got {type(source).__name__}")
    data = read()
    name = os.path.basename(str(getattr(source, "name", "") or ""))
    return (data.encode() if isinstance(data, str) else bytes(data)), name


def extension(name: str) -> str:
    """A file name's format from its extension, lower case ("png"; "pts.json" for W&B point clouds)."""
    lowered = name.lower()
    if lowered.endswith(".pts.json"):
        return "pts.json"
    return lowered.rpartition(".")[2] if "." in lowered else ""
