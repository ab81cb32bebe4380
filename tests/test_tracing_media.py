"""Media in op arguments and results (issue #19): images, audio, PIL images, image-shaped arrays
and long bytes are stored once in the blob store, the span holding a reference; read back
locally, through ``tracklet ui``'s and a server's trace blob route, and over ``Api(base_url=)``
after ``tracklet sync``. Payloads far above 1 MB are never refused."""

from __future__ import annotations

import io
import json
import subprocess

import httpx
import numpy as np
import pytest
import serverproc

import tracklet
from tracklet.artifacts.storage import artifact_dir
from tracklet.core.reader import replay

PIL = pytest.importorskip("PIL.Image")

BIG = 3 * 1024 * 1024  # far above the ~1 MB other tracers refuse


def _pixels(seed: int, shape: tuple[int, ...] = (48, 40, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


@tracklet.op(name="segment")
def segment(image, mask_png: bytes, voice):
    return {"overlay": tracklet.Image(image[::-1], caption="flipped"), "raw": bytes(BIG)}


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(PIL.open(io.BytesIO(data)))


def _record(start, project: str = "seg") -> tuple[tracklet.Run, dict]:
    run = start(project=project)
    image = _pixels(1)
    png = io.BytesIO()
    PIL.fromarray(_pixels(2, (64, 64, 3))).save(png, format="PNG")
    mask_png = png.getvalue() + bytes(10_000)  # over the 8 KiB at which bytes are stored, not described
    voice = tracklet.Audio(np.sin(np.linspace(0, 440, 16_000)).astype(np.float32), sample_rate=16_000)
    segment(image, mask_png, voice)
    segment(image, mask_png, voice)  # the same media again: stored once
    run.finish()
    return run, {"image": image, "mask_png": mask_png}


def _check(trace_span, given: dict) -> None:
    inputs, output = trace_span.inputs, trace_span.output
    image, mask, voice = inputs["image"], inputs["mask_png"], inputs["voice"]
    assert (image["_type"], image["kind"], image["mime"], image["width"], image["height"]) == (
        "tracklet.media", "image", "image/png", 40, 48)
    assert np.array_equal(_decoded(trace_span.blob(image["sha256"])), given["image"])
    assert (mask["kind"], mask["mime"], mask["size"]) == ("bytes", "image/png", len(given["mask_png"]))
    assert trace_span.blob(mask["sha256"]) == given["mask_png"]
    assert (voice["kind"], voice["mime"], voice["sample_rate"]) == ("audio", "audio/wav", 16_000)
    assert trace_span.blob(voice["sha256"])[:4] == b"RIFF"
    overlay, raw = output["overlay"], output["raw"]
    assert overlay["caption"] == "flipped"
    assert np.array_equal(_decoded(trace_span.blob(overlay["sha256"])), given["image"][::-1])
    assert (raw["kind"], raw["size"]) == ("bytes", BIG) and trace_span.blob(raw["sha256"]) == bytes(BIG)
    assert [m["sha256"] for m in trace_span.media] == [image["sha256"], mask["sha256"], voice["sha256"],
                                                       overlay["sha256"], raw["sha256"]]
    with pytest.raises(KeyError):
        trace_span.blob("0" * 64)  # only blobs the span names


def test_media_arguments_and_results_are_stored_once_and_read_back(start, root):
    run, given = _record(start)
    spans = replay(run._paths.log_file).spans
    assert len(spans) == 2
    references = [json.loads(span.input.json) for span in spans]
    assert references[0] == references[1]  # the same media: the same blobs
    blobs = artifact_dir(root) / "blobs" / "sha256"
    stored = {path.name for path in blobs.rglob("*") if path.is_file()}
    named = {digest for span in spans for entry in span.attributes if entry.key == "tracklet.media"
             for digest in (item.string_value for item in entry.value.list_value.items)}
    assert len(named) == 5 and named <= stored
    traces = tracklet.Api(root).traces("seg")
    assert len(traces) == 2
    _check(traces[0].spans[0], given)


def test_pil_images_and_image_shaped_arrays_only(start, root):
    @tracklet.op(name="look")
    def look(picture, small, floats, tokens):
        return picture

    run = start(project="look")
    picture = PIL.fromarray(_pixels(3, (300, 200, 3)))
    look(picture, _pixels(4, (8, 8, 3)), np.zeros((64, 64, 3), dtype=np.float32), np.zeros((32, 4), dtype=np.uint8))
    run.finish()
    span = tracklet.Api(root).traces("look")[0].spans[0]
    reference = span.inputs["picture"]
    assert (reference["kind"], reference["width"], reference["height"]) == ("image", 200, 300)
    assert "thumbnail" in reference and span.blob(reference["thumbnail"])[:4] == b"\x89PNG"
    assert np.array_equal(_decoded(span.blob(reference["sha256"])), np.asarray(picture))
    assert span.output == reference
    # too small to be a picture, not uint8, or not image-shaped: described as arrays, as before
    assert span.inputs["small"]["_type"] == "ndarray" and span.inputs["floats"]["_type"] == "ndarray"
    assert span.inputs["tokens"]["_type"] == "ndarray"


def test_a_medium_that_cannot_be_encoded_is_described_and_the_span_kept(start, root):
    @tracklet.op(name="broken")
    def broken(image):
        return 1

    run = start(project="broken")
    assert broken(tracklet.Image(np.zeros((20, 20), dtype=object))) == 1
    run.finish()
    span = tracklet.Api(root).traces("broken")[0].spans[0]
    assert "error" in span.inputs["image"] and span.output == 1 and span.status == "ok"


@pytest.mark.parametrize("hook", [False, True])  # the batched bytes path, and span_record's
def test_a_blob_store_that_fails_costs_the_value_not_the_span(start, root, monkeypatch, hook):
    from tracklet.tracing import record, set_redaction_hook

    class Full:
        def put_bytes(self, data):
            raise OSError(28, "No space left on device")

    @tracklet.op(name="save")
    def save(image, blob: bytes):
        return "saved"

    @tracklet.op(name="essay")
    def essay(text: str):
        return text

    run = start(project="full")
    monkeypatch.setattr(record, "_blob_store", lambda root: Full())
    if hook:
        set_redaction_hook(lambda value, part, name: value)
    try:
        save(_pixels(5), bytes(20_000))
        essay("word " * 5_000)  # 25 KB of JSON each way: payload blobs
        run.finish()
    finally:
        set_redaction_hook(None)
    monkeypatch.undo()
    spans = {t.root.name: t.root for t in tracklet.Api(root).traces("full")}
    span = spans["save"]
    assert span.status == "ok" and span.output == "saved"
    assert "No space left" in span.inputs["image"]["error"] and "No space left" in span.inputs["blob"]["error"]
    assert "tracklet.media" not in span.attributes
    essay_span = spans["essay"]
    assert essay_span.status == "ok" and not essay_span.input_blob
    for payload in (essay_span.inputs, essay_span.output):
        assert payload["_type"] == "payload" and payload["size"] > 25_000 and "No space left" in payload["error"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args)


def test_media_reach_a_server_with_sync_and_read_back_over_http(start, root, servers, tmp_path):
    run, given = _record(start, project="seg")
    server = servers(tmp_path / "server")
    synced = _cli("--dir", str(root), "sync", f"seg/{run.id}", "--url", server.url, "-q")
    assert synced.returncode == 0, synced.stderr
    traces = tracklet.Api(base_url=server.url).traces("seg")
    assert len(traces) == 2
    span = traces[0].spans[0]
    _check(span, given)
    image = span.inputs["image"]["sha256"]
    base = f"{server.url}/api/v1/projects/seg/traces/{span.trace_id}/blobs"
    answer = httpx.get(f"{base}/{image}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.headers["x-content-type-options"] == "nosniff"
    # a blob the trace doesn't name, a bad digest, a trace that doesn't exist
    other = traces[1].spans[0].trace_id
    assert httpx.get(f"{base}/{'a' * 64}").status_code == 404
    assert httpx.get(f"{base}/not-a-digest").status_code == 400
    assert httpx.get(f"{server.url}/api/v1/projects/seg/traces/{'0' * 32}/blobs/{image}").status_code == 404
    assert httpx.get(f"{server.url}/api/v1/projects/seg/traces/{other}/blobs/{image}").status_code == 200


def test_a_large_json_payload_is_readable_over_http_too(start, root, servers, tmp_path):
    @tracklet.op(name="long")
    def long(text):
        return text.upper()

    run = start(project="long")
    long("word " * 100_000)  # 500 KB of JSON: a payload blob
    run.finish()
    server = servers(tmp_path / "server")
    assert _cli("--dir", str(root), "sync", f"long/{run.id}", "--url", server.url, "-q").returncode == 0
    span = tracklet.Api(base_url=server.url).traces("long")[0].spans[0]
    assert span.input_blob and span.inputs == {"text": "word " * 100_000}
    assert span.output == "WORD " * 100_000
