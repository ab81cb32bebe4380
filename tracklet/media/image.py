"""``tracklet.Image``: an image with optional segmentation masks and bounding boxes (W&B's shapes).

    run.log({"pred": tracklet.Image(array, caption="epoch 3",
                                    masks={"predictions": {"mask_data": mask, "class_labels": {1: "cat"}}},
                                    boxes={"truth": {"box_data": [{"position": {"minX": 0.1, "maxX": 0.4,
                                                                                "minY": 0.2, "maxY": 0.6},
                                                                   "class_id": 1, "scores": {"p": 0.9}}],
                                                     "class_labels": {1: "cat"}}})})

The constructor copies (``tracklet.media.snapshot``); encoding (PNG by default, lossless; JPEG or
WebP with ``file_type=``), the 256 px thumbnail, the masks' PNGs and storing happen on the worker.
"""

from __future__ import annotations

import io
from types import MappingProxyType
from typing import Any, Mapping

from tracklet.core.logged import Placement
from tracklet.media import buffers, figures
from tracklet.media.base import Media, MediaError, extension, read_source
from tracklet.media.pixels import channels_last, pil_image, to_pixels
from tracklet.media.snapshot import TorchCopy, is_path, nbytes, snapshot, to_numpy

THUMBNAIL_PX = 256
PNG_COMPRESS_LEVEL = 1  # zlib level: fast (the worker shares the CPU with training); still lossless
FILE_TYPES = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


def encode_png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


_PNG_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (gray, RGB, RGBA)
_FAST_MODES = ("L", "RGB", "RGBA")  # Pillow modes fast_png writes (8 bits per channel)


def _isal_deflate() -> Any:
    """ISA-L's ``compress`` (the ``isal`` package, in the media extra) when it is installed, else None."""
    try:
        from isal import isal_zlib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return isal_zlib.compress


def deflate(data: Any) -> bytes:
    """A zlib stream of ``data`` (a PNG's IDAT): ISA-L at level 1 when installed, else zlib's
    run-length strategy. Both release the GIL while they work."""
    global _ISAL
    if _ISAL is _UNSET:
        _ISAL = _isal_deflate()
    if _ISAL is not None:
        return bytes(_ISAL(data, 1))
    import zlib

    compressor = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    return compressor.compress(data) + compressor.flush()


_UNSET: Any = object()
_ISAL: Any = _UNSET


def fast_png(pixels: Any) -> bytes:
    """A PNG of an H×W / H×W×3 / H×W×4 uint8 array: every row "Up"-filtered (its difference from
    the row above, in numpy) and deflated in one pass over the filtered rows (``deflate``, which
    releases the GIL), the result assembled with a single copy.

    Why this encoder: the worker's CPU per image is what a training step pays for on a busy
    machine. Measured on the 2-core VMs for a 224×224×3 photograph-like image: Pillow's PNG
    encoder at its fastest level costs about twice zlib level 1 on Up-filtered rows (its adaptive
    per-row filters and chunked encoding, with a GIL hand-off per chunk); zlib's ``Z_RLE`` strategy
    costs about half of level 1 again (0.9-1.0 ms against 1.8 ms) and makes files ~10% smaller
    (after an Up filter a photograph's rows are small differences that Huffman coding packs and
    matching barely improves; flat regions are runs), and noise (deflate's worst case) a third.
    ISA-L's level 1 (``isal``, in the media extra) costs about half of zlib's RLE again (0.5 ms)
    for files ~3% larger than it (flat plots and noise the same). Any PNG reader decodes either
    (Pillow in the tests)."""
    import struct
    import zlib

    import numpy as np

    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    filtered = np.empty((height, width * channels + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type Up
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps, as PNG's does
    body = deflate(filtered.data)
    crc = zlib.crc32(body, zlib.crc32(b"IDAT"))
    header = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR_TYPES[channels], 0, 0, 0)
    return b"".join((b"\x89PNG\r\n\x1a\n", struct.pack(">I", 13), header, struct.pack(">I", zlib.crc32(header)),
                     struct.pack(">I", len(body)), b"IDAT", body, struct.pack(">I", crc), _PNG_END))


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` scaled to at most ``THUMBNAIL_PX`` on the longer side, aspect kept."""
    scale = THUMBNAIL_PX / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def thumbnail_png(image: Any) -> bytes | None:
    """A PNG at most ``THUMBNAIL_PX`` on its longer side; None if the image is that small already.

    One ``resize`` into a new image (no copy of the original first, as ``thumbnail()`` needs), with
    ``reducing_gap=1``: a box reduction by the integer factor, then bicubic for the rest. Measured
    for a 768×512 photograph: 1.1 ms against 3.2 ms for ``copy()`` + ``thumbnail()`` (whose default
    gap of 2 resamples twice the pixels bicubically); at 256 px the two can't be told apart."""
    if max(image.size) <= THUMBNAIL_PX:
        return None
    from PIL import Image as PILImage

    if image.mode not in _FAST_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    small = image.resize(thumbnail_size(*image.size), PILImage.Resampling.BICUBIC, reducing_gap=1.0)
    import numpy as np

    return fast_png(np.asarray(small))


class Image(Media):
    """An image: a numpy array (H×W, H×W×1/3/4, C×H×W; uint8, bool, ints, floats), a torch tensor
    (C×H×W or H×W), a jax array, a PIL image, a matplotlib figure or ``matplotlib.pyplot`` (its
    current figure: drawn now, on the caller, as RGBA; ``tracklet.media.figures``), or a path to an
    image file (stored as it is).

    ``mode``: a Pillow mode to convert to ("L", "RGB", "RGBA"). ``masks``: ``{name: {"mask_data":
    H×W class ids, "class_labels": {id: label}}}`` (or ``"path"`` instead of ``mask_data``).
    ``boxes``: ``{name: {"box_data": [{"position": {"minX", "maxX", "minY", "maxY"} or {"middle":
    [x, y], "width", "height"}, "domain": "pixel" (else fractions), "class_id", "box_caption",
    "scores": {name: value}}, ...], "class_labels": {id: label}}}``. ``classes``: W&B's class set
    (its ``{"id", "name"}`` list gives labels to masks and boxes that have none). ``file_type``:
    "png" (default, lossless), "jpeg" or "webp". ``normalize``: scale float arrays in [0, 1] or
    [-1, 1] to 0-255 (W&B's default).

    ``copy=False`` (numpy arrays only; tracklet's, not W&B's): the array itself is handed to the
    worker, not a copy, under the lifetime rule README states for logged arrays: don't change it in
    place until the run is flushed (``run.flush()``). The caller then pays no copy: after a
    training step the copy of a 224×224×3 image is about 40 of the ~90 µs ``log()`` costs
    (docs/media.md, "What the caller pays").
    """

    _kind = "image"
    # Defaults as class attributes: the constructor sets only what it was given (see __init__).
    mode: str | None = None
    _channels_first = False
    _file_type = "png"
    _normalize = True
    _classes: Mapping[int, str] = MappingProxyType({})
    _masks: Mapping[str, dict[str, Any]] = MappingProxyType({})
    _boxes: Mapping[str, dict[str, Any]] = MappingProxyType({})

    def __init__(self, data_or_path: Any, mode: str | None = None, caption: Any = None, grouping: Any = None,
                 classes: Any = None, boxes: Mapping[str, Any] | None = None, masks: Mapping[str, Any] | None = None,
                 file_type: str | None = None, normalize: bool = True, copy: bool = True) -> None:
        # The caller pays for every object this touches: after a training step each is a cache
        # and TLB miss (~5 µs for a no-op call on the shared VMs), so a plain numpy image takes
        # one copy call and sets three attributes (Media.__init__'s two, inlined, and the copy).
        self.caption = None if caption is None else str(caption)
        self._buffers: list[Any] = []
        if type(data_or_path) is buffers.NDARRAY:
            self._data = buffers.copy_dense(data_or_path, self._buffers) if copy else data_or_path
        elif not copy and type(data_or_path).__module__ == "numpy" and type(data_or_path).__name__ == "ndarray":
            self._data = data_or_path  # (the first call of a process: NDARRAY not known yet)
        else:
            root = type(data_or_path).__module__.partition(".")[0]
            if root == "torch":
                self._channels_first = True
            elif root in ("matplotlib", "builtins") and figures.is_matplotlib(data_or_path):
                data_or_path = figures.matplotlib_pixels(data_or_path)  # drawn here: figures aren't thread-safe
            self._data = snapshot(data_or_path, self._buffers)
        if mode is not None:
            self.mode = mode
        if file_type is not None:
            self._file_type = file_type.lower()
        if not normalize:
            self._normalize = False
        if classes is not None:
            self._classes = _class_labels_of(classes)
        if masks:
            self._masks = {str(name): _mask_snapshot(spec, self._buffers) for name, spec in masks.items()}
        if boxes:
            self._boxes = {str(name): _boxes_snapshot(spec) for name, spec in boxes.items()}

    def _pending_bytes(self) -> int:
        data = self._data
        size = data[3] if type(data) is buffers.PooledCopy else nbytes(data)  # (log()'s path: no call)
        if self._masks:
            for mask in self._masks.values():
                size += nbytes(mask.get("mask_data"))
        return size

    def _pil(self) -> Any:
        """This image as a Pillow image, its pixels converted as they are when recorded (channels
        last, W&B's value rules, ``mode``); on the caller's thread, for W&B's ``Image.image``."""
        from PIL import Image as PILImage

        data = self._data
        if is_path(data) or hasattr(data, "read"):
            raw, _ = read_source(data, "image")
            image: Any = PILImage.open(io.BytesIO(raw))
            image.load()
        elif type(data).__module__.partition(".")[0] == "PIL":
            image = data
        else:
            array = channels_last(to_numpy(data), self._channels_first or isinstance(data, TorchCopy))
            image = pil_image(to_pixels(array, [], normalize=self._normalize))
        return image.convert(self.mode) if self.mode and image.mode != self.mode else image

    # ------------------------------------------------------------ worker side

    def _fill(self, context: Any, where: Placement, media: Any) -> None:
        from PIL import Image as PILImage

        notes: list[str] = []
        data = self._data
        if is_path(data) or hasattr(data, "read"):
            raw, name = read_source(data, "image")
            media.source_name = name
            try:
                image: Any = PILImage.open(io.BytesIO(raw))
                image.load()
            except Exception as error:
                raise MediaError(f"{name or 'the file'} is not an image Pillow can read ({error})") from None
            file_format = (image.format or extension(name) or "png").lower()
            if self.mode and image.mode != self.mode:
                image = image.convert(self.mode)
                raw, file_format = self._encode(image, notes), self._format_name()
            elif file_format not in ("png", "jpeg", "gif", "webp", "bmp", "tiff"):
                raw, file_format = self._encode(image, notes), self._format_name()  # a browser can show it
        else:
            if type(data).__module__.partition(".")[0] == "PIL":
                image = data
            else:
                array = to_numpy(data)
                if array.dtype.kind in "OUSVc":
                    raise MediaError(f"an image's values must be numbers; got dtype {array.dtype}")
                if array.dtype.name != "uint8":
                    media.dtype = str(array.dtype)
                array = channels_last(array, self._channels_first or isinstance(data, TorchCopy))
                pixels = to_pixels(array, notes, normalize=self._normalize)
                if pixels.dtype.name == "uint8" and not self.mode and self._format_name() == "png":
                    self._store_pixels(context, where, media, pixels, notes)  # the common case: no Pillow image
                    return
                image = pil_image(pixels)
            if self.mode and image.mode != self.mode:
                image = image.convert(self.mode)
            if self._format_name() == "png" and image.mode in _FAST_MODES:
                # A PIL image, or a mode conversion: the same encoder as arrays (and the same bytes,
                # so the same picture logged as an array or as a PIL image is stored once).
                import numpy as np

                self._store_pixels(context, where, media, np.asarray(image), notes)
                return
            raw, file_format = self._encode(image, notes), self._format_name()
        self._store(context, media, raw, file_format)
        media.width, media.height = image.size
        media.channels = len(image.getbands())
        media.mode = image.mode
        thumbnail = thumbnail_png(image)
        if thumbnail is not None:
            media.thumbnail_digest = context.put_bytes(thumbnail)
        self._finish(context, where, media, image.size, notes)

    def _store_pixels(self, context: Any, where: Placement, media: Any, pixels: Any, notes: list[str]) -> None:
        """Store H×W / H×W×3 / H×W×4 uint8 ``pixels`` as a PNG (``fast_png``), with its thumbnail."""
        self._store(context, media, fast_png(pixels), "png")
        media.height, media.width = int(pixels.shape[0]), int(pixels.shape[1])
        media.channels = 1 if pixels.ndim == 2 else int(pixels.shape[2])
        media.mode = {1: "L", 3: "RGB", 4: "RGBA"}[media.channels]
        if max(pixels.shape[:2]) > THUMBNAIL_PX:
            media.thumbnail_digest = context.put_bytes(thumbnail_png(pil_image(pixels)) or b"")
        self._finish(context, where, media, (media.width, media.height), notes)

    def _finish(self, context: Any, where: Placement, media: Any, size: tuple[int, int], notes: list[str]) -> None:
        """Masks, boxes, and the one warning about conversions made."""
        for name, spec in self._masks.items():
            self._add_mask(context, media, name, spec, size, notes)
        for name, spec in self._boxes.items():
            self._add_boxes(media, name, spec, notes)
        if notes:
            context.warn(("media-converted", where.key),
                         f"tracklet: image at {where}: {'; '.join(notes)} (recorded so; later images of this key "
                         "are converted without a warning)")

    def _format_name(self) -> str:
        return "jpeg" if self._file_type in ("jpeg", "jpg") else self._file_type

    def _encode(self, image: Any, notes: list[str]) -> bytes:
        kind = FILE_TYPES.get(self._file_type)
        if kind is None:
            raise MediaError(f"file_type must be png, jpeg or webp; got {self._file_type!r}")
        if kind == "PNG":
            return encode_png(image)
        if kind == "JPEG" and image.mode not in ("L", "RGB"):
            notes.append(f"JPEG has no {image.mode} mode: stored as RGB")
            image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format=kind, quality=90)
        return buffer.getvalue()

    def _add_mask(self, context: Any, media: Any, name: str, spec: Mapping[str, Any], size: tuple[int, int],
                  notes: list[str]) -> None:
        import numpy as np

        if spec.get("path") is not None and spec.get("mask_data") is None:
            raw, _ = read_source(spec["path"], "mask")
            from PIL import Image as PILImage

            try:
                array = np.asarray(PILImage.open(io.BytesIO(raw)))
            except Exception as error:
                notes.append(f"mask {name!r} is not an image ({error}): left out")
                return
        else:
            array = to_numpy(spec.get("mask_data"))
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2 or array.dtype.kind not in "iub" or array.size == 0:
            notes.append(f"mask {name!r} must be H×W integer class ids; got shape {tuple(array.shape)} of "
                         f"{array.dtype}: left out")
            return
        if (array.shape[1], array.shape[0]) != size:
            notes.append(f"mask {name!r} is {array.shape[1]}×{array.shape[0]}, the image {size[0]}×{size[1]}")
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 65535:
            notes.append(f"mask {name!r} has class ids in [{low}, {high}]: clipped to [0, 65535]")
            array = np.clip(array, 0, 65535)
        array = array.astype(np.uint8 if int(array.max()) <= 255 else np.uint16)
        mask = media.masks.add()
        mask.name = name
        mask.digest = context.put_bytes(fast_png(array) if array.dtype == np.uint8 else encode_png(pil_image(array)))
        mask.width, mask.height = int(array.shape[1]), int(array.shape[0])
        labels = _class_labels_of(spec.get("class_labels")) or self._classes
        for class_id, label in labels.items():
            mask.class_labels[class_id] = label

    def _add_boxes(self, media: Any, name: str, spec: Mapping[str, Any], notes: list[str]) -> None:
        group = media.boxes.add()
        group.name = name
        skipped = 0
        for box_spec in spec.get("box_data") or []:
            try:
                _fill_box(group.boxes.add(), box_spec)
            except (KeyError, TypeError, ValueError, AttributeError):
                del group.boxes[-1]
                skipped += 1
        if skipped:
            notes.append(f"{skipped} box(es) of {name!r} had no valid position (minX/maxX/minY/maxY, or middle + "
                         "width + height): left out")
        labels = _class_labels_of(spec.get("class_labels")) or self._classes
        for class_id, label in labels.items():
            group.class_labels[class_id] = label


def _fill_box(box: Any, spec: Mapping[str, Any]) -> None:
    position = spec["position"]
    if "middle" in position:
        middle_x, middle_y = (float(v) for v in position["middle"])
        width, height = float(position["width"]), float(position["height"])
        box.min_x, box.max_x = middle_x - width / 2, middle_x + width / 2
        box.min_y, box.max_y = middle_y - height / 2, middle_y + height / 2
    else:
        box.min_x, box.max_x = float(position["minX"]), float(position["maxX"])
        box.min_y, box.max_y = float(position["minY"]), float(position["maxY"])
    box.pixel = spec.get("domain") == "pixel"
    if spec.get("class_id") is not None:
        box.class_id = int(spec["class_id"])
    if spec.get("box_caption") is not None:
        box.caption = str(spec["box_caption"])
    for score, value in (spec.get("scores") or {}).items():
        box.scores[str(score)] = float(value)


def _class_labels_of(labels: Any) -> dict[int, str]:
    """``{id: label}`` from W&B's class_labels dict or its ``Classes`` list of ``{"id", "name"}``."""
    if labels is None:
        return {}
    if hasattr(labels, "_class_set"):  # wandb.Classes
        labels = labels._class_set
    if isinstance(labels, Mapping):
        try:
            return {int(k): str(v) for k, v in labels.items()}
        except (TypeError, ValueError):
            return {}
    found: dict[int, str] = {}
    for entry in labels if isinstance(labels, (list, tuple)) else []:
        if isinstance(entry, Mapping) and "id" in entry:
            try:
                found[int(entry["id"])] = str(entry.get("name", entry["id"]))
            except (TypeError, ValueError):
                continue
    return found


def _mask_snapshot(spec: Any, keep: list[Any]) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        spec = {"mask_data": spec}
    copy = dict(spec)
    if copy.get("mask_data") is not None:
        copy["mask_data"] = snapshot(copy["mask_data"], keep)
    return copy


def _boxes_snapshot(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        return {"box_data": []}
    copy = dict(spec)
    copy["box_data"] = [dict(box) if isinstance(box, Mapping) else box for box in (spec.get("box_data") or [])]
    return copy
