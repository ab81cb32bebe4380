"""``tracklet.Audio``: samples with a sample rate (stored as WAV through the standard library's
``wave``, or as FLAC through PyAV with ``format="flac"``), or an audio file stored as it is."""

from __future__ import annotations

import io
import wave
from typing import Any

from tracklet.core.logged import Placement
from tracklet.media.base import Media, MediaError, extension, read_source
from tracklet.media.snapshot import TorchCopy, is_path, nbytes, snapshot, to_numpy

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "oga", "m4a", "aac", "webm")


class Audio(Media):
    """Audio: a 1-D array of samples (mono) or a 2-D one (frames × channels, or channels × frames
    for a torch tensor or when the first axis is the short one) with ``sample_rate``; or a path
    to an audio file (wav, mp3, flac, ogg, ...), stored as it is.

    Floats are read as [-1, 1] and stored as 16-bit PCM (values outside are clipped, with a
    warning); int16, int32 and uint8 samples are stored at their width, unchanged.

    ``format``: "wav" (default; the standard library's ``wave``) or "flac" (lossless and about
    half the size for speech and music, encoded by PyAV: ``pip install av`` or tracklet's
    ``media`` extra). FLAC holds the 16-bit PCM above (floats and int16, 1 to 8 channels); int32
    or uint8 samples, more channels, or no PyAV store a WAV instead, with a warning saying why.
    """

    _kind = "audio"

    def __init__(self, data_or_path: Any, sample_rate: int | None = None, caption: Any = None,
                 format: str | None = None) -> None:
        super().__init__(caption)
        self._channels_first = type(data_or_path).__module__.partition(".")[0] == "torch"
        self._data = snapshot(data_or_path, self._buffers)
        self.sample_rate = sample_rate
        self.format = (format or "wav").lower()

    def _pending_bytes(self) -> int:
        return nbytes(self._data)

    def _fill(self, context: Any, where: Placement, media: Any) -> None:
        notes: list[str] = []
        data = self._data
        if is_path(data) or hasattr(data, "read"):
            raw, name = read_source(data, "audio")
            media.source_name = name
            file_format = extension(name) or "wav"
            if file_format not in AUDIO_FORMATS:
                raise MediaError(f"{name!r} is not an audio file tracklet knows ({', '.join(AUDIO_FORMATS)})")
            if file_format == "wav":
                describe_wav(raw, media, name)
            elif file_format == "flac":
                describe_flac(raw, media)
        else:
            if self.sample_rate is None or int(self.sample_rate) <= 0:
                raise MediaError("audio samples need sample_rate= (a positive number of samples per second)")
            if self.format not in ("wav", "flac"):
                raise MediaError(f"format must be wav or flac; got {self.format!r}")
            pcm = to_pcm(to_numpy(data), notes, self._channels_first or isinstance(data, TorchCopy))
            rate = int(self.sample_rate)
            raw, file_format = b"", "wav"
            if self.format == "flac":
                why = flac_refusal(pcm)
                if why is None:
                    raw, file_format = encode_flac(pcm, rate), "flac"
                else:
                    notes.append(f"stored as WAV, not FLAC: {why}")
            if file_format == "wav":
                raw = wav_bytes(pcm, rate)
            media.sample_rate, media.channels = rate, 1 if pcm.ndim == 1 else int(pcm.shape[1])
            media.duration = pcm.shape[0] / rate
        self._store(context, media, raw, file_format)
        if notes:
            context.warn(("media-converted", where.key),
                         f"tracklet: audio at {where}: {'; '.join(notes)} (recorded so)")


def encode_wav(samples: Any, sample_rate: int, notes: list[str], channels_first: bool = False) -> bytes:
    """A WAV file of ``samples`` (see :class:`Audio` for shapes and sample types)."""
    return wav_bytes(to_pcm(samples, notes, channels_first), sample_rate)


def to_pcm(samples: Any, notes: list[str], channels_first: bool = False) -> Any:
    """``samples`` as PCM, 1-D (mono) or frames × channels: int16, int32 and uint8 as they are,
    floats (read as [-1, 1]) and other integers as int16 (each conversion that changes values said
    in ``notes``); ``MediaError`` for other shapes and types."""
    import numpy as np

    if samples.ndim == 2 and (channels_first or samples.shape[0] < samples.shape[1] and samples.shape[0] <= 8):
        samples = samples.T
    if samples.ndim not in (1, 2) or samples.size == 0:
        raise MediaError(f"audio samples must be 1-D (mono) or 2-D (frames × channels) and not empty; got shape "
                         f"{tuple(samples.shape)}")
    kind = samples.dtype.kind
    if samples.dtype in (np.int16, np.int32, np.uint8):
        pcm = samples
    elif kind == "f":
        finite = np.isfinite(samples)
        if not finite.all():
            notes.append(f"{samples.size - int(finite.sum())} NaN or infinite sample(s) became 0")
            samples = np.where(finite, samples, 0.0)
        low, high = float(samples.min()), float(samples.max())
        if low < -1.0 or high > 1.0:
            notes.append(f"float samples in [{low:g}, {high:g}] were clipped to [-1, 1]")
            samples = np.clip(samples, -1.0, 1.0)
        pcm = np.rint(samples * 32767.0).astype(np.int16)
    elif kind in "iub":
        notes.append(f"{samples.dtype} samples were stored as 16-bit (clipped to its range)")
        pcm = np.clip(samples.astype(np.int64), -32768, 32767).astype(np.int16)
    else:
        raise MediaError(f"audio samples must be numbers; got dtype {samples.dtype}")
    return pcm


def wav_bytes(pcm: Any, sample_rate: int) -> bytes:
    """A WAV file of ``to_pcm``'s ``pcm`` at its sample width."""
    import numpy as np

    channels = 1 if pcm.ndim == 1 else int(pcm.shape[1])
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(pcm.dtype.itemsize)
        out.setframerate(sample_rate)
        out.writeframes(np.ascontiguousarray(pcm.astype(pcm.dtype.newbyteorder("<"))).tobytes())
    return buffer.getvalue()


def describe_wav(raw: bytes, media: Any, name: str) -> None:
    """Sample rate, channels and duration of a WAV file; ``MediaError`` if it isn't one."""
    try:
        with wave.open(io.BytesIO(raw), "rb") as source:
            rate, frames, channels = source.getframerate(), source.getnframes(), source.getnchannels()
    except (wave.Error, EOFError, ValueError) as error:
        raise MediaError(f"{name or 'the file'} is not a WAV file the standard library can read ({error})") from None
    media.sample_rate, media.channels = rate, channels
    media.duration = frames / rate if rate else 0.0


def decode_wav(raw: bytes) -> Any:
    """A WAV file's samples: 1-D for mono, frames × channels otherwise, at the stored width."""
    import numpy as np

    with wave.open(io.BytesIO(raw), "rb") as source:
        width, channels, frames = source.getsampwidth(), source.getnchannels(), source.getnframes()
        data = source.readframes(frames)
    dtype: Any = {1: np.dtype(np.uint8), 2: np.dtype("<i2"), 4: np.dtype("<i4")}.get(width)
    if dtype is None:
        raise MediaError(f"{8 * width}-bit WAV samples are not supported")
    samples = np.frombuffer(data, dtype=dtype)
    return samples if channels == 1 else samples.reshape(-1, channels)


# FFmpeg's channel layout for each channel count FLAC has one for (its encoder takes these only).
FLAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def flac_refusal(pcm: Any) -> str | None:
    """Why ``to_pcm``'s ``pcm`` can't be stored as FLAC here (None: it can). FFmpeg's encoder, which
    PyAV drives, takes 16-bit samples losslessly; its 32-bit input keeps only 24 bits, so int32
    (and 8-bit) samples, which a WAV holds exactly, stay WAV."""
    channels = 1 if pcm.ndim == 1 else int(pcm.shape[1])
    if pcm.dtype.itemsize != 2:
        return f"FLAC is written from 16-bit samples here, these are {pcm.dtype}"
    if channels not in FLAC_LAYOUTS:
        return f"FLAC holds at most 8 channels, these are {channels}"
    try:
        import av  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return "PyAV is not installed (pip install av, or tracklet's media extra)"
    return None


def encode_flac(pcm: Any, sample_rate: int) -> bytes:
    """A FLAC file of int16 ``pcm`` (1-D, or frames × channels, at most 8), encoded by PyAV
    (FFmpeg's FLAC encoder; lossless: ``decode_flac`` gives the same samples back)."""
    import numpy as np

    import av  # type: ignore[import-not-found,unused-ignore]

    layout = FLAC_LAYOUTS[1 if pcm.ndim == 1 else int(pcm.shape[1])]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=sample_rate, layout=layout)
        # Packed 16-bit: one plane of interleaved frames (the array's C order).
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16",
                                           layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def decode_flac(raw: bytes) -> Any:
    """A FLAC file's samples as int16 (1-D for mono, frames × channels otherwise), by PyAV."""
    import numpy as np

    import av  # type: ignore[import-not-found,unused-ignore]

    planes = []
    with av.open(io.BytesIO(raw), mode="r") as container:
        stream = container.streams.audio[0]
        channels = stream.channels
        for frame in container.decode(stream):
            samples = frame.to_ndarray()  # packed: 1 × (frames · channels); planar: channels × frames
            planes.append((samples.T if frame.format.is_planar else samples).reshape(-1))
    samples = np.concatenate(planes).astype(np.int16, copy=False) if planes else np.zeros(0, np.int16)
    return samples if channels == 1 else samples.reshape(-1, channels)


def describe_flac(raw: bytes, media: Any) -> None:
    """Sample rate, channels and duration of a FLAC file, from its stream header by PyAV; nothing
    without PyAV or from a file it can't read (the file is stored as it is either way)."""
    try:
        import av  # type: ignore[import-not-found,unused-ignore]

        with av.open(io.BytesIO(raw), mode="r") as container:
            stream = container.streams.audio[0]
            media.sample_rate, media.channels = int(stream.rate or 0), int(stream.channels or 0)
            if stream.duration is not None and stream.time_base is not None:
                media.duration = float(stream.duration * stream.time_base)
    except Exception:  # ImportError, or not a FLAC PyAV can read
        return
