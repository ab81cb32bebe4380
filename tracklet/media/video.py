"""``tracklet.Video``: frames (T×C×H×W, W&B's layout, or T×H×W×C) encoded as a GIF with Pillow, or
as mp4/webm when PyAV is installed (``pip install av``, or tracklet's ``media`` extra); or a video
file stored as it is."""

from __future__ import annotations

import io
from typing import Any

from tracklet.core.logged import Placement
from tracklet.media.base import Media, MediaError, extension, read_source
from tracklet.media.image import thumbnail_png
from tracklet.media.pixels import pil_image, to_pixels
from tracklet.media.snapshot import is_path, nbytes, snapshot, to_numpy

VIDEO_FORMATS = ("gif", "mp4", "webm", "ogg")


class Video(Media):
    """A video: a 4-D array of frames (T×C×H×W with C in 1, 3, 4, as W&B takes it, or T×H×W×C;
    uint8, or floats in [0, 1] / ints, converted as images are) at ``fps`` frames per second,
    encoded as ``format`` ("gif" by default; "mp4" or "webm" need PyAV, else a GIF is stored with a
    warning); or a path to a video file (gif, mp4, webm, ogg), stored as it is."""

    _kind = "video"

    def __init__(self, data_or_path: Any, caption: Any = None, fps: float | None = None, format: str | None = None) -> None:
        super().__init__(caption)
        self._data = snapshot(data_or_path, self._buffers)
        self.fps = float(fps) if fps else 4.0
        self.format = (format or "gif").lower()

    def _pending_bytes(self) -> int:
        return nbytes(self._data)

    def _fill(self, context: Any, where: Placement, media: Any) -> None:
        import numpy as np

        notes: list[str] = []
        data = self._data
        if is_path(data) or hasattr(data, "read"):
            raw, name = read_source(data, "video")
            media.source_name = name
            file_format = extension(name)
            if file_format not in VIDEO_FORMATS:
                raise MediaError(f"{name!r} is not a video file tracklet knows ({', '.join(VIDEO_FORMATS)})")
            if file_format == "gif":
                _describe_gif(raw, media, context, name)
            self._store(context, media, raw, file_format)
            return
        frames = to_numpy(data)
        if frames.ndim != 4 or frames.size == 0:
            raise MediaError(f"video frames must be a 4-D array (T×C×H×W or T×H×W×C); got shape {tuple(frames.shape)}")
        if frames.shape[1] in (1, 3, 4) and frames.shape[-1] not in (1, 3, 4):
            frames = np.moveaxis(frames, 1, -1)
        if frames.shape[-1] not in (1, 3, 4):
            raise MediaError(f"video frames need 1, 3 or 4 channels; got shape {tuple(frames.shape)}")
        if frames.shape[-1] == 1:
            frames = frames[..., 0]
        pixels = to_pixels(frames, notes, keep_16_bit=False)
        file_format = self.format
        encoded: bytes | None = None
        if file_format in ("mp4", "webm"):
            try:
                encoded = encode_av(pixels, self.fps, file_format)
            except ImportError:
                notes.append(f"PyAV is not installed (pip install av, or tracklet's media extra), so the video is "
                             f"stored as a GIF, not {file_format}")
                file_format = "gif"
            else:
                height, width = _even(pixels.shape[1]), _even(pixels.shape[2])
                if (height, width) != pixels.shape[1:3]:
                    notes.append(f"{file_format} needs even dimensions: the {pixels.shape[2]}×{pixels.shape[1]} "
                                 f"frames are stored as {width}×{height} (the last column or row left out)")
                    pixels = pixels[:, :height, :width]
        elif file_format != "gif":
            raise MediaError(f"format must be gif, mp4 or webm; got {self.format!r}")
        if encoded is None:
            encoded = encode_gif(pixels, self.fps)
        self._store(context, media, encoded, file_format)
        media.frames, media.fps = int(pixels.shape[0]), self.fps
        media.height, media.width = int(pixels.shape[1]), int(pixels.shape[2])
        if file_format == "gif":
            media.channels = 1 if pixels.ndim == 3 else int(pixels.shape[-1])
        else:
            media.channels = 3  # yuv420p colour: gray frames are stored as colour, alpha is left out
        media.duration = pixels.shape[0] / self.fps
        thumbnail = thumbnail_png(pil_image(pixels[0])) or _png(pil_image(pixels[0]))
        media.thumbnail_digest = context.put_bytes(thumbnail)
        if notes:
            context.warn(("media-converted", where.key), f"tracklet: video at {where}: {'; '.join(notes)}")


def _png(image: Any) -> bytes:
    from tracklet.media.image import encode_png

    return encode_png(image)


def encode_gif(frames: Any, fps: float) -> bytes:
    """An animated GIF of uint8 frames (T×H×W or T×H×W×C) that loops."""
    images = [pil_image(frame) for frame in frames]
    images = [image.convert("RGBA" if image.mode == "RGBA" else "RGB") if image.mode != "L" else image
              for image in images]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0)
    return buffer.getvalue()


def _even(length: int) -> int:
    return max(2, length - length % 2)


# Encoders tried in order (the first PyAV's FFmpeg has): H.264 for mp4, VP9 then VP8 for webm.
AV_CODECS = {"mp4": ("libx264", "h264", "libopenh264", "mpeg4"), "webm": ("libvpx-vp9", "libvpx")}


def encode_av(frames: Any, fps: float, file_format: str) -> bytes:
    """mp4 (H.264) or webm (VP9) with PyAV, in yuv420p (what browsers play), frames cropped to even
    dimensions (yuv420p's rule); ``ImportError`` when PyAV isn't installed."""
    from fractions import Fraction

    import av  # type: ignore[import-not-found,unused-ignore]
    import numpy as np

    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    frames = frames[..., :3]
    height, width = _even(frames.shape[1]), _even(frames.shape[2])
    codec = next((name for name in AV_CODECS[file_format] if name in av.codecs_available), None)
    if codec is None:
        raise MediaError(f"this PyAV's FFmpeg has no {file_format} encoder ({', '.join(AV_CODECS[file_format])})")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=file_format) as container:
        stream: Any = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))  # a VideoStream
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    return buffer.getvalue()


def _describe_gif(raw: bytes, media: Any, context: Any, name: str) -> None:
    from PIL import Image as PILImage

    try:
        image = PILImage.open(io.BytesIO(raw))
        frames = getattr(image, "n_frames", 1)
        duration = sum(_frame_ms(image, index) for index in range(frames)) / 1000.0
        image.seek(0)
        first = image.convert("RGBA")
    except Exception as error:
        raise MediaError(f"{name or 'the file'} is not a GIF Pillow can read ({error})") from None
    media.width, media.height = image.size
    media.frames, media.duration = frames, duration
    media.fps = frames / duration if duration else 0.0
    media.thumbnail_digest = context.put_bytes(thumbnail_png(first) or _png(first))


def _frame_ms(image: Any, index: int) -> float:
    image.seek(index)
    return float(image.info.get("duration", 0) or 0)


def decode_av(raw: bytes) -> Any:
    """An mp4/webm's frames as a T×H×W×3 uint8 array (RGB), with PyAV (``ImportError`` without it)."""
    import av  # type: ignore[import-not-found,unused-ignore]
    import numpy as np

    with av.open(io.BytesIO(raw), mode="r") as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return np.stack(frames)


def decode_gif(raw: bytes) -> Any:
    """A GIF's frames as a T×H×W×C uint8 array (RGB, or RGBA when it has transparency)."""
    import numpy as np
    from PIL import Image as PILImage, ImageSequence

    image = PILImage.open(io.BytesIO(raw))
    frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    return np.stack(frames)
