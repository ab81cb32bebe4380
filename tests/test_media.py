"""Logged media (tracklet.media, docs/media.md): every type round-trips through the read API with the
real Pillow and the standard library's wave; the caller only copies; bad input is warned about
naming the key and step while the rest of the row is kept; the same bytes are stored once; a full
media queue drops (counted) and never blocks; kill -9 leaves no damaged blob visible."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

import tracklet
from tracklet.media import Media
from tracklet.media.worker import LoggedWorker

from conftest import REPO, read

RNG = np.random.default_rng(7)


def _image(shape=(24, 32, 3), dtype=np.uint8):
    return RNG.integers(0, 256, shape).astype(dtype)


def _blobs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "artifacts" / "blobs" / "sha256").rglob("*") if p.is_file())


def _log_and_read(start, data: dict, **settings):
    run = start(settings=settings)
    run.log(data)
    run.finish()
    return read(run)


# ---------------------------------------------------------------- images


@pytest.mark.parametrize("shape", [(24, 32, 3), (24, 32, 4), (24, 32)])
def test_a_uint8_image_reads_back_byte_for_byte(start, shape):
    pixels = _image(shape)
    recorded = _log_and_read(start, {"img": tracklet.Image(pixels, caption="first"), "loss": 0.5})
    (image,) = recorded.images("img")
    assert np.array_equal(image.to_numpy(), pixels) and image.to_numpy().dtype == np.uint8
    assert (image.step, image.caption, image.width, image.height, image.format, image.mime) == (
        0, "first", 32, 24, "png", "image/png")
    assert image.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert hashlib.sha256(image.path.read_bytes()).hexdigest() == image.digest
    assert recorded.history()["loss"] == [0.5]  # the rest of the row is history as usual
    assert "img" not in recorded.keys()


def test_jpeg_and_webp_are_opt_in_lossy_encodings_png_stays_the_default(start):
    ramp = np.broadcast_to(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (24, 32, 3)).copy()
    recorded = _log_and_read(start, {"jpeg": tracklet.Image(ramp, file_type="jpeg"),
                                     "webp": tracklet.Image(ramp, file_type="webp"), "png": tracklet.Image(ramp)})
    for key, magic, mime in (("jpeg", b"\xff\xd8\xff", "image/jpeg"), ("webp", b"RIFF", "image/webp")):
        (image,) = recorded.images(key)
        assert (image.format, image.mime, image.width, image.height) == (key, mime, 32, 24)
        assert image.path.read_bytes()[:len(magic)] == magic
        assert np.abs(image.to_numpy().astype(int) - ramp).max() <= 16  # lossy, but the picture
    assert np.array_equal(recorded.images("png")[0].to_numpy(), ramp)
    with pytest.warns(tracklet.errors.TrackletWarning, match=r"key 'tiff' at step 0 could not be recorded: file_type must be png, jpeg or webp"):
        _log_and_read(start, {"tiff": tracklet.Image(ramp, file_type="tiff")})


def test_channels_first_arrays_and_torch_tensors_pil_images_and_paths(start, tmp_path):
    import torch

    pixels = _image((16, 20, 3))
    png = tmp_path / "photo.png"
    PILImage.fromarray(pixels).save(png)
    recorded = _log_and_read(start, {
        "chw": tracklet.Image(np.ascontiguousarray(pixels.transpose(2, 0, 1))),
        "torch": tracklet.Image(torch.from_numpy(pixels.transpose(2, 0, 1).copy())),
        "torch_float": tracklet.Image(torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float() / 255),
        "pil": tracklet.Image(PILImage.fromarray(pixels)),
        "path": tracklet.Image(str(png)),
        "gray_16": tracklet.Image(np.arange(16 * 20, dtype=np.uint16).reshape(16, 20) * 200),
    })
    for key in ("chw", "torch", "torch_float", "pil", "path"):
        (image,) = recorded.images(key)
        assert np.array_equal(image.to_numpy(), pixels), key
    # One encoder for arrays, tensors and PIL images: the same picture is the same blob, stored once.
    assert len({recorded.images(key)[0].digest for key in ("chw", "torch", "torch_float", "pil")}) == 1
    (path_image,) = recorded.images("path")
    assert path_image.digest == hashlib.sha256(png.read_bytes()).hexdigest()  # a file is stored as it is
    assert path_image.source_name == "photo.png"
    (gray,) = recorded.images("gray_16")
    assert gray.mode == "I;16" and np.array_equal(gray.to_numpy(), np.arange(320, dtype=np.uint16).reshape(16, 20) * 200)


def test_a_mode_conversion_is_stored_like_an_array_of_that_mode(start):
    """``mode=`` converts with Pillow on the worker; the result is stored by the same PNG encoder
    as arrays (not Pillow's, which costs about twice the CPU), so it reads back as the conversion."""
    pixels = _image((12, 10, 3))
    gray = np.asarray(PILImage.fromarray(pixels).convert("L"))
    recorded = _log_and_read(start, {"as_gray": tracklet.Image(pixels, mode="L"), "gray": tracklet.Image(gray),
                                     "rgba": tracklet.Image(PILImage.fromarray(pixels), mode="RGBA")})
    (as_gray,) = recorded.images("as_gray")
    assert (as_gray.mode, as_gray.channels) == ("L", 1) and np.array_equal(as_gray.to_numpy(), gray)
    assert as_gray.digest == recorded.images("gray")[0].digest
    (rgba,) = recorded.images("rgba")
    assert rgba.mode == "RGBA" and np.array_equal(rgba.to_numpy()[..., :3], pixels)
    assert (rgba.to_numpy()[..., 3] == 255).all()


def test_the_caller_copies_so_later_changes_are_not_recorded(start):
    import torch

    array, tensor = _image(), torch.zeros(3, 8, 8, dtype=torch.uint8)
    original = array.copy()
    run = start()
    run.log({"np": tracklet.Image(array), "torch": tracklet.Image(tensor)})
    array[:] = 0
    tensor += 7
    run.finish()
    recorded = read(run)
    assert np.array_equal(recorded.images("np")[0].to_numpy(), original)
    assert recorded.images("torch")[0].to_numpy().max() == 0


def test_copy_false_hands_the_array_itself_to_the_worker_under_the_lifetime_rule(start):
    array = _image()
    original = array.copy()
    run = start()
    image = tracklet.Image(array, copy=False)
    assert image._data is array and image._buffers == []  # no copy, no pooled buffer taken
    run.log({"np": image})
    run.flush()  # README's rule for logged arrays: unchanged until the run is flushed
    array[:] = 0
    run.finish()
    assert np.array_equal(read(run).images("np")[0].to_numpy(), original)


def test_a_list_of_images_under_one_key_keeps_its_order_and_steps(start):
    frames = [_image() for _ in range(3)]
    run = start()
    run.log({"samples": [tracklet.Image(f, caption=str(i)) for i, f in enumerate(frames)]})
    run.log({"samples": [tracklet.Image(frames[0])], "acc": 1.0})
    run.finish()
    images = read(run).images("samples")
    assert [(i.step, i.index, i.count, i.caption) for i in images] == [
        (0, 0, 3, "0"), (0, 1, 3, "1"), (0, 2, 3, "2"), (1, 0, 1, "")]
    assert all(np.array_equal(i.to_numpy(), f) for i, f in zip(images, [*frames, frames[0]]))


def test_the_same_image_twice_is_one_blob(start, root):
    pixels = _image((300, 200, 3))
    run = start()
    run.log({"a": tracklet.Image(pixels)})
    run.log({"a": tracklet.Image(pixels.copy()), "b": tracklet.Image(pixels)})
    run.finish()
    images = read(run).images()
    assert len(images) == 3 and len({i.digest for i in images}) == 1
    # one image blob and one thumbnail blob (the image is larger than 256 px)
    assert len(_blobs(root)) == 2
    thumbnail = PILImage.open(images[0].thumbnail_path)
    assert thumbnail.size == (171, 256)


def test_a_thumbnail_is_the_picture_scaled_down(start):
    """The 256 px thumbnail of a large image (a box reduction, then bicubic) shows the same picture
    as Pillow's full-quality Lanczos resample of it, to a few levels per pixel."""
    y, x = np.mgrid[0:600, 0:900]
    pixels = np.stack([x * 255 // 899, y * 255 // 599, (x // 100 % 2) * 255], -1).astype(np.uint8)
    recorded = _log_and_read(start, {"big": tracklet.Image(pixels)})
    (image,) = recorded.images("big")
    small = np.asarray(PILImage.open(image.thumbnail_path)).astype(np.float64)
    assert small.shape == (171, 256, 3)
    fair = np.asarray(PILImage.fromarray(pixels).resize((256, 171), PILImage.Resampling.LANCZOS)).astype(np.float64)
    assert np.abs(small - fair)[..., :2].mean() < 1  # smooth gradients: nearly exact
    assert np.abs(small - fair).mean() < 2  # stripes: their edges differ a little


def test_masks_and_boxes_round_trip(start):
    pixels = _image((40, 60, 3))
    mask = np.zeros((40, 60), dtype=np.int64)
    mask[10:20, 5:25] = 1
    mask[30:, 40:] = 300  # above 255: stored as 16-bit
    boxes = {"predictions": {
        "box_data": [
            {"position": {"minX": 0.1, "maxX": 0.4, "minY": 0.2, "maxY": 0.5}, "class_id": 1, "box_caption": "cat",
             "scores": {"acc": 0.9, "loss": 0.1}},
            {"position": {"middle": [30, 20], "width": 10, "height": 8}, "domain": "pixel", "class_id": 2},
        ],
        "class_labels": {1: "cat", 2: "dog"}}}
    recorded = _log_and_read(start, {"seg": tracklet.Image(pixels, masks={
        "truth": {"mask_data": mask, "class_labels": {0: "bg", 1: "cat", 300: "dog"}}}, boxes=boxes)})
    (image,) = recorded.images("seg")
    truth = image.masks["truth"]
    assert np.array_equal(truth.to_numpy(), mask) and truth.class_labels == {0: "bg", 1: "cat", 300: "dog"}
    first, second = image.boxes["predictions"].boxes
    assert (first.min_x, first.max_x, first.min_y, first.max_y, first.pixel) == (0.1, 0.4, 0.2, 0.5, False)
    assert (first.class_id, first.label, first.caption, first.scores) == (1, "cat", "cat", {"acc": 0.9, "loss": 0.1})
    assert (second.min_x, second.max_x, second.min_y, second.max_y, second.pixel, second.label) == (
        25, 35, 16, 24, True, "dog")


# ---------------------------------------------------------------- bad input


def _warnings_of(function):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        function()
    return [str(w.message) for w in caught if issubclass(w.category, tracklet.TrackletWarning)]


def test_a_float_image_out_of_range_is_clipped_with_one_warning_naming_key_and_step(start):
    rgba = np.full((8, 8, 4), 0.5, dtype=np.float32)
    rgba[0, 0] = [-3.0, 7.5, 300.0, 1.0]
    run = start()

    def log():
        run.log({"acc": 1.0})
        run.log({"rgba": tracklet.Image(rgba), "acc": 2.0})
        run.log({"rgba": tracklet.Image(rgba), "acc": 3.0})
        run.finish()

    caught = [w for w in _warnings_of(log) if "'rgba'" in w]
    assert len(caught) == 1 and "step 1" in caught[0] and "clipped to [0, 255]" in caught[0], caught
    recorded = read(run)
    images = recorded.images("rgba")
    assert [i.step for i in images] == [1, 2] and images[0].mode == "RGBA"
    assert images[0].to_numpy()[0, 0].tolist() == [0, 8, 255, 1] and images[0].to_numpy()[1, 1].tolist() == [0] * 4
    assert recorded.history()["acc"] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("bad, why", [
    (np.zeros((5, 5, 2), dtype=np.uint8), "shape (5, 5, 2)"),
    (np.zeros((2, 3, 4, 5), dtype=np.uint8), "shape (2, 3, 4, 5)"),
    (np.array([["a", "b"]]), "dtype <U1"),
    (np.zeros((0, 4), dtype=np.uint8), "not empty"),
])
def test_an_image_of_the_wrong_shape_or_type_is_refused_naming_key_and_step(start, bad, why):
    run = start()

    def log():
        run.log({"x": 0.0})
        run.log({"bad": tracklet.Image(bad), "good": tracklet.Image(_image()), "x": 1.0})
        run.finish()

    caught = [w for w in _warnings_of(log) if "'bad'" in w]
    assert len(caught) == 1 and "step 1" in caught[0] and why in caught[0], caught
    recorded = read(run)
    assert recorded.images("bad") == [] and len(recorded.images("good")) == 1
    assert recorded.history()["x"] == [0.0, 1.0]


def test_a_corrupt_media_file_is_warned_about_and_the_row_kept(start, tmp_path):
    broken_png = tmp_path / "broken.png"
    broken_png.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    broken_wav = tmp_path / "broken.wav"
    broken_wav.write_bytes(b"RIFF\x00\x00")
    run = start()

    def log():
        run.log({"photo": tracklet.Image(str(broken_png)), "sound": tracklet.Audio(str(broken_wav)),
                 "missing": tracklet.Image(str(tmp_path / "nope.png")), "loss": 0.25})
        run.finish()

    caught = _warnings_of(log)
    for key, fragment in (("photo", "broken.png"), ("sound", "broken.wav"), ("missing", "nope.png")):
        matching = [w for w in caught if f"key {key!r} at step 0" in w]
        assert len(matching) == 1 and fragment in matching[0], (key, caught)
    recorded = read(run)
    assert recorded.media() == [] and recorded.history()["loss"] == [0.25]


def test_a_list_holding_something_else_keeps_its_media(start):
    run = start()

    def log():
        run.log({"mixed": [tracklet.Image(_image()), "not media", tracklet.Image(_image())]})
        run.finish()

    caught = _warnings_of(log)
    assert any("'mixed'" in w and "str" in w for w in caught), caught
    assert [i.index for i in read(run).images("mixed")] == [0, 2]


def test_media_under_a_key_set_first_logged_with_plain_values_are_recorded(start):
    # The fast path skips the type scan for a key set first seen with plain values only: the
    # image reaches the sender's encoder, which hands it to the media worker.
    run = start()
    pixels = _image()

    def log():
        run.log({"img": 1.0})
        run.log({"img": tracklet.Image(pixels)})
        run.finish()

    assert _warnings_of(log) == []
    recorded = read(run)
    (image,) = recorded.images("img")
    assert image.step == 1 and np.array_equal(image.to_numpy(), pixels)
    assert recorded.history()["img"] == [1.0, None]


def test_strict_mode_accepts_media(start):
    recorded = _log_and_read(start, {"img": tracklet.Image(_image()), "x": 1}, strict=True)
    assert len(recorded.images("img")) == 1


# ---------------------------------------------------------------- audio, video, files


def test_audio_round_trips_as_wav(start, tmp_path):
    tone = np.sin(np.linspace(0, 2 * np.pi * 440, 8000)).astype(np.float32) * 0.5
    stereo = RNG.integers(-32768, 32767, (4000, 2)).astype(np.int16)
    wav_file = tmp_path / "clip.wav"
    with wave.open(str(wav_file), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(stereo[:, 0].tobytes())
    recorded = _log_and_read(start, {
        "tone": tracklet.Audio(tone, sample_rate=8000, caption="A4"),
        "stereo": tracklet.Audio(stereo, sample_rate=16000),
        "file": tracklet.Audio(str(wav_file)),
    })
    (a,) = recorded.media("tone")
    assert (a.kind, a.format, a.mime, a.sample_rate, a.channels, a.duration, a.caption) == (
        "audio", "wav", "audio/wav", 8000, 1, 1.0, "A4")
    assert np.array_equal(a.to_numpy(), np.rint(tone * 32767).astype(np.int16))
    (s,) = recorded.media("stereo")
    assert s.channels == 2 and np.array_equal(s.to_numpy(), stereo)
    (f,) = recorded.media("file")
    assert f.digest == hashlib.sha256(wav_file.read_bytes()).hexdigest() and f.duration == 0.25


def test_audio_as_flac_round_trips_losslessly_and_falls_back_to_wav_saying_why(start, tmp_path):
    pytest.importorskip("av")
    from tracklet.media.audio import encode_flac

    flac_file = tmp_path / "clip.flac"
    flac_file.write_bytes(encode_flac(np.zeros((1600, 2), np.int16), 16000))
    tone = np.sin(np.linspace(0, 2 * np.pi * 440, 8000)).astype(np.float32) * 0.5
    stereo = RNG.integers(-32768, 32767, (4001, 2)).astype(np.int16)
    wide = RNG.integers(-2**31, 2**31 - 1, 500).astype(np.int32)
    run = start()

    def log():
        run.log({"tone": tracklet.Audio(tone, sample_rate=8000, format="flac"),
                 "stereo": tracklet.Audio(stereo, sample_rate=16000, format="FLAC"),
                 "wide": tracklet.Audio(wide, sample_rate=8000, format="flac"),
                 "ogg": tracklet.Audio(tone, sample_rate=8000, format="ogg"),
                 "file": tracklet.Audio(str(flac_file))})
        run.finish()

    warned = _warnings_of(log)
    recorded = read(run)
    (a,) = recorded.media("tone")
    assert (a.format, a.mime, a.sample_rate, a.channels, a.duration) == ("flac", "audio/flac", 8000, 1, 1.0)
    assert a.path.read_bytes()[:4] == b"fLaC"
    assert np.array_equal(a.to_numpy(), np.rint(tone * 32767).astype(np.int16))
    (s,) = recorded.media("stereo")
    assert (s.format, s.channels) == ("flac", 2) and np.array_equal(s.to_numpy(), stereo)
    assert s.path.read_bytes()[:4] == b"fLaC"
    (w,) = recorded.media("wide")  # 32-bit samples: FFmpeg's FLAC would keep 24 bits of them
    assert w.format == "wav" and np.array_equal(w.to_numpy(), wide)
    assert any("'wide'" in m and "stored as WAV, not FLAC" in m and "int32" in m for m in warned)
    assert recorded.media("ogg") == [] and any("'ogg'" in m and "format must be wav or flac" in m for m in warned)
    (f,) = recorded.media("file")  # a FLAC file: stored as it is, described from its header
    assert (f.format, f.sample_rate, f.channels, f.duration) == ("flac", 16000, 2, 0.1)
    assert f.digest == hashlib.sha256(flac_file.read_bytes()).hexdigest() and f.to_numpy().shape == (1600, 2)


def test_audio_without_a_sample_rate_is_refused_naming_key_and_step(start):
    run = start()

    def log():
        run.log({"sound": tracklet.Audio(np.zeros(10))})
        run.finish()

    (warning,) = [w for w in _warnings_of(log) if "'sound'" in w]
    assert "step 0" in warning and "sample_rate" in warning


def test_video_frames_become_a_gif(start):
    frames = np.zeros((5, 3, 16, 24), dtype=np.uint8)  # T×C×H×W, W&B's layout
    for t in range(5):
        frames[t, t % 3, :, t * 4:(t + 1) * 4] = 255
    recorded = _log_and_read(start, {"clip": tracklet.Video(frames, fps=10, caption="moving")})
    (video,) = recorded.media("clip")
    assert (video.format, video.mime, video.frames, video.fps, video.width, video.height, video.duration) == (
        "gif", "image/gif", 5, 10.0, 24, 16, 0.5)
    assert np.array_equal(video.to_numpy(), frames.transpose(0, 2, 3, 1))  # few colours: the GIF is exact
    assert PILImage.open(video.thumbnail_path).size == (24, 16)
    # a video file is stored as it is
    clip = video.path.parent.parent.parent.parent.parent / "clip.gif"
    clip.write_bytes(video.path.read_bytes())
    (again,) = _log_and_read(start, {"file": tracklet.Video(str(clip))}).media("file")
    assert (again.format, again.digest, again.frames) == ("gif", video.digest, 5)


def test_mp4_without_pyav_is_stored_as_a_gif_with_a_warning(start, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed: importing it fails
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    frames[1, 2:5] = 255
    run = start()

    def log():
        run.log({"clip": tracklet.Video(frames, format="mp4", fps=5)})
        run.finish()

    assert any("PyAV is not installed" in w and "'clip'" in w for w in _warnings_of(log))
    (video,) = read(run).media("clip")
    assert (video.format, video.mime, video.frames, video.fps, video.width, video.height) == (
        "gif", "image/gif", 2, 5.0, 8, 8)
    assert np.array_equal(video.to_numpy(), frames)


def _moving_square(count: int, height: int, width: int) -> np.ndarray:
    """T×C×H×W frames (W&B's layout): a bright square moving over a gradient (compresses like video)."""
    frames = np.empty((count, 3, height, width), dtype=np.uint8)
    gradient = np.linspace(0, 160, width, dtype=np.float32)[None, :].repeat(height, 0)
    for t in range(count):
        frames[t] = gradient.astype(np.uint8)
        frames[t, :, 4:12, 2 + 2 * t:10 + 2 * t] = 250
    return frames


@pytest.mark.parametrize("file_format", ["mp4", "webm"])
def test_video_round_trips_through_pyav(start, file_format):
    av = pytest.importorskip("av")
    frames = _moving_square(8, 32, 48)
    recorded = _log_and_read(start, {"clip": tracklet.Video(frames, format=file_format, fps=8)})
    (video,) = recorded.media("clip")
    assert (video.format, video.mime, video.frames, video.fps, video.width, video.height, video.duration) == (
        file_format, f"video/{file_format}", 8, 8.0, 48, 32, 1.0)
    with av.open(str(video.path)) as container:  # the stored file, read by FFmpeg itself
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height, stream.average_rate) == (48, 32, 8)
        assert sum(1 for _ in container.decode(video=0)) == 8
    decoded = video.to_numpy()
    assert decoded.shape == (8, 32, 48, 3)
    # lossy, but the same pictures: the square is where it was logged, frame by frame
    error = np.abs(decoded.astype(np.int16) - frames.transpose(0, 2, 3, 1).astype(np.int16))
    assert float(error.mean()) < 8
    assert PILImage.open(video.thumbnail_path).size == (48, 32)


def test_mp4_of_odd_dimensions_is_cropped_to_even_ones_with_a_warning(start):
    pytest.importorskip("av")
    run = start()

    def log():
        run.log({"clip": tracklet.Video(_moving_square(3, 31, 33), format="mp4", fps=3)})
        run.finish()

    assert any("even dimensions" in w and "'clip'" in w for w in _warnings_of(log))
    (video,) = read(run).media("clip")
    assert (video.width, video.height, video.frames) == (32, 30, 3)
    assert video.to_numpy().shape == (3, 30, 32, 3)


def test_html_object3d_and_molecule_are_stored_as_files(start, tmp_path):
    points = RNG.normal(size=(100, 6)).astype(np.float32)
    obj = tmp_path / "cube.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    pdb = tmp_path / "water.pdb"
    pdb.write_text("ATOM      1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00           O\nEND\n")
    page = tmp_path / "report.html"
    page.write_text("<h1>from a file</h1>")
    recorded = _log_and_read(start, {
        "page": tracklet.Html("<b>hello</b>"),
        "page_file": tracklet.Html(str(page)),
        "cloud": tracklet.Object3D(points),
        "mesh": tracklet.Object3D(str(obj)),
        "mesh_stream": tracklet.Object3D(io.StringIO(obj.read_text()), file_type="obj"),
        "scene": tracklet.Object3D.from_point_cloud(points[:, :3], boxes=[{"corners": [[0, 0, 0]] * 8}]),
        "water": tracklet.Molecule(str(pdb)),
    })
    (page_item,) = recorded.media("page")
    assert page_item.read_bytes() == b"<b>hello</b>" and page_item.mime == "text/html"
    assert recorded.media("page_file")[0].read_bytes() == b"<h1>from a file</h1>"
    assert np.array_equal(recorded.media("cloud")[0].to_numpy(), points)
    mesh, stream = recorded.media("mesh")[0], recorded.media("mesh_stream")[0]
    assert mesh.format == stream.format == "obj" and mesh.digest == stream.digest
    scene = recorded.media("scene")[0]
    assert scene.format == "pts.json" and b"lidar/beta" in scene.read_bytes()
    water = recorded.media("water")[0]
    assert (water.kind, water.format, water.read_bytes()) == ("molecule", "pdb", pdb.read_bytes())
    assert {m.kind for m in recorded.media()} == {"html", "object3d", "molecule"}


def test_a_point_cloud_of_the_wrong_shape_is_refused(start):
    run = start()

    def log():
        run.log({"cloud": tracklet.Object3D(np.zeros((10, 5)))})
        run.finish()

    assert any("'cloud'" in w and "N×3" in w for w in _warnings_of(log))


# ---------------------------------------------------------------- the worker


class _Blocked(Media):
    """A media item whose encoding waits for ``release``: keeps the worker busy on purpose."""

    _kind = "test"

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def _fill(self, context, where, media):
        self.release.wait(60)
        self._store(context, media, b"blocked %d" % where.step, "bin")


def test_a_full_media_queue_drops_counted_and_never_blocks_the_caller(start):
    release = threading.Event()
    run = start(settings={"media_queue": 3, "media_workers": 1})
    logged = threading.Event()

    def train():
        for step in range(20):
            run.log({"blocked": _Blocked(release), "loss": float(step)})
        logged.set()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = threading.Thread(target=train)
        trainer.start()
        # The worker can't finish a single item until release is set: if log() waited for room,
        # it would never return.
        assert logged.wait(60)
        worker = run._logged
        assert (worker.dropped, worker.recorded) == (17, 0)
        release.set()
        run.finish()
    full = [str(w.message) for w in caught if "media queue is full" in str(w.message)]
    assert len(full) == 1 and "step 3" in full[0]
    assert any("17 media item(s) were dropped" in str(w.message) for w in caught)
    recorded = read(run)
    assert [m.step for m in recorded.media("blocked")] == [0, 1, 2]
    assert recorded.history()["loss"] == [float(s) for s in range(20)]  # every row's history is kept


def test_finish_waits_for_pending_media(start):
    run = start(settings={"media_workers": 1})
    pictures = [_image((64, 64, 3)) for _ in range(40)]
    for picture in pictures:
        run.log({"img": tracklet.Image(picture)})
    run.finish()
    images = read(run).images("img")
    assert [i.step for i in images] == list(range(40))
    assert all(np.array_equal(i.to_numpy(), p) for i, p in zip(images, pictures))


def test_the_worker_bounds_bytes_too(tmp_path):
    release = threading.Event()
    put, dropped_warnings = [], []
    worker = LoggedWorker(tmp_path, put.append, lambda token, message: dropped_warnings.append(message),
                          workers=1, max_pending=100, max_pending_bytes=3 * 24 * 32 * 3)
    blocked = _Blocked(release)
    worker.submit(0, 0.0, "b", [blocked])
    for step in range(1, 6):
        worker.submit(step, 0.0, "img", [tracklet.Image(_image())])
    assert worker.dropped == 2  # three images fit under the byte bound, two don't
    release.set()
    assert worker.close(30)
    assert worker.recorded == 4 and len(put) == 4


KILL_SCRIPT = """
import sys, time
import numpy as np
import tracklet
run = tracklet.init(project="killed", settings={"flush_interval": 0.5, "capture_environment": False,
                                                "console": "off", "system_metrics": False})
print(run.path, flush=True)
rng = np.random.default_rng(0)
step = 0
while True:
    run.log({"img": tracklet.Image(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)), "t": time.time()})
    print(step, time.time(), flush=True)
    step += 1
    time.sleep(0.01)
"""


def test_kill_9_while_encoding_leaves_no_damaged_blob_and_keeps_earlier_media(root):
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        path = child.stdout.readline().strip()
        logged = []
        for line in child.stdout:
            step, when = line.split()
            logged.append((int(step), float(when)))
            if logged[-1][1] - logged[0][1] >= 2.5:
                break
        killed_at = time.time()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    recorded = tracklet.Api(root).run(path)
    assert recorded.state == "crashed"
    steps = {image.step for image in recorded.images("img")}
    due = [step for step, when in logged if when < killed_at - 1.0]
    assert due and set(due) <= steps
    for image in recorded.images("img"):
        assert image.to_numpy().shape == (128, 128, 3)  # reads (and checks its digest)
    blobs = _blobs(root)
    assert blobs
    for blob in blobs:  # every blob visible under its digest is whole
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def test_a_media_record_naming_a_path_instead_of_a_digest_is_left_out(start, tmp_path):
    # A record log is read from disk: a digest is made into a path under the blob store, so one
    # that is not a sha256 must never reach the file system.
    from tracklet.core.recordlog import RecordLogWriter
    from tracklet.proto import records_pb2 as pb

    run = start()
    run.log({"img": tracklet.Image(_image())})
    run.finish()
    writer = RecordLogWriter(Path(run.dir) / "run.tlog", resume=True)
    forged = pb.Record()
    forged.media.key, forged.media.kind, forged.media.step = "img", "image", 5
    forged.media.digest = "../../../../etc/passwd"
    writer.write(forged.SerializeToString())
    writer.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = read(run).images("img")
    assert [i.step for i in images] == [0]
    assert any("not a sha256 digest" in str(w.message) for w in caught)


def test_jax_arrays_are_images_too(start):
    jnp = pytest.importorskip("jax.numpy")
    pixels = _image((8, 8, 3))
    recorded = _log_and_read(start, {"img": tracklet.Image(jnp.asarray(pixels))})
    assert np.array_equal(recorded.images("img")[0].to_numpy(), pixels)


def test_logged_digests_names_every_media_blob_for_garbage_collection(start, root):
    from tracklet.media.read import logged_digests

    mask = np.zeros((300, 280), dtype=np.uint8)
    mask[:10] = 1
    run = start()
    run.log({"big": tracklet.Image(_image((300, 280, 3)), masks={"m": {"mask_data": mask}}), "x": 1.0})
    run.log({"sound": tracklet.Audio(np.zeros(100, dtype=np.int16), sample_rate=100)})
    run.finish()
    other = start(project="other")
    other.log({"page": tracklet.Html("<p>x</p>")})
    other.finish()
    # Every blob in the store is a media file, thumbnail or mask: all of them are named.
    assert logged_digests(root) == {blob.name for blob in _blobs(root)}
    assert len(logged_digests(root)) == 5


def test_a_blob_store_that_cannot_be_written_costs_only_the_media(start, root):
    # The artifacts directory is a file: every blob write fails (as on a full or read-only disk).
    root.mkdir(parents=True, exist_ok=True)
    (root / "artifacts").write_text("not a directory")
    run = start()

    def log():
        for step in range(3):
            run.log({"img": tracklet.Image(_image()), "loss": float(step)})
        run.finish()

    caught = [w for w in _warnings_of(log) if "'img'" in w]
    assert len(caught) == 1 and "step 0" in caught[0] and "could not be recorded" in caught[0], caught
    recorded = read(run)
    assert recorded.state == "finished" and recorded.history()["loss"] == [0.0, 1.0, 2.0]
    assert recorded.media() == []


def test_the_store_indexes_media_and_refuses_forged_digests(start, root):
    from tracklet.core.recordlog import RecordLogWriter
    from tracklet.proto import records_pb2 as pb
    from tracklet.store import Store

    run = start()
    run.log({"samples": [tracklet.Image(_image(), caption="one"), tracklet.Image(_image((300, 20, 3)))]})
    run.log({"sound": tracklet.Audio(np.zeros(800, dtype=np.int16), sample_rate=8000), "x": 1.0})
    run.finish()
    writer = RecordLogWriter(Path(run.dir) / "run.tlog", resume=True)
    forged = pb.Record()
    forged.media.key, forged.media.kind, forged.media.step = "k" * 5000, "image\x00" * 10, 9
    forged.media.digest, forged.media.time, forged.media.duration = "../../x", float("nan"), float("inf")
    writer.write(forged.SerializeToString())
    writer.close()
    with Store(root=root) as store:
        store.index()
        rows = store.media(run.project, run.id)
        samples = store.media(run.project, run.id, "samples")
    assert [(r["key"], r["step"], r["idx"], r["kind"]) for r in rows[:3]] == [
        ("samples", 0, 0, "image"), ("samples", 0, 1, "image"), ("sound", 1, 0, "audio")]
    images = read(run).images("samples")
    assert [r["digest"] for r in samples] == [i.digest for i in images] and samples[0]["caption"] == "one"
    assert samples[1]["thumbnail"] == images[1].thumbnail_digest != ""
    assert rows[2]["duration"] == 0.1 and rows[2]["mime"] == "audio/wav"
    forged_row = rows[3]
    assert forged_row["digest"] == "" and forged_row["time"] == 0.0 and forged_row["duration"] == 0.0
    assert len(forged_row["key"]) <= 1024 and "\x00" not in forged_row["kind"]
