"""Artifact references (tracklet/artifacts/references.py): s3:// against a real S3-speaking server
(s3rver, tests/s3server.py), gs:// against a real GCS-speaking one (gcp-storage-emulator,
tests/gcsserver.py), http(s):// against a real HTTP server on loopback (http.server in a
thread, with ETag and Last-Modified written here), file:// on disk. Bytes are never copied into the
store; ``download()`` fetches them and refuses, naming the URI, a reference that changed or is gone.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gcsserver import gcs_filesystem
from s3server import BUCKET, S3_KEY, S3_SECRET, s3_filesystem

import tracklet
from tracklet.errors import ArtifactError, ArtifactVerifyError


def _blob_count(root: Path) -> int:
    return sum(1 for p in (root / "artifacts" / "blobs" / "sha256").rglob("*") if p.is_file())


def _tree(base: Path) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- s3:// (s3rver)


@pytest.fixture
def s3(s3rver, monkeypatch) -> Iterator[tuple[object, str]]:
    """The s3rver bucket through the standard AWS variables, and a prefix of this test's own."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3rver)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield s3_filesystem(s3rver), f"{BUCKET}/refs-{uuid.uuid4().hex[:8]}"


def test_s3_references_record_etag_and_size_never_copy_and_download_byte_exact(start, root, s3, tmp_path):
    fs, prefix = s3
    objects = {"data/a.bin": os.urandom(200_000), "data/deep/b.txt": b"bee\n", "data/empty": b"",
               "database.csv": b"not under data/\n", "single.bin": os.urandom(5000)}
    for key, payload in objects.items():
        fs.pipe(f"{prefix}/{key}", payload)
    run = start()
    artifact = tracklet.Artifact("s3refs", "dataset")
    names = artifact.add_reference(f"s3://{prefix}/data", name="train")
    assert names == ["train/a.bin", "train/deep/b.txt", "train/empty"]  # the directory, not a string prefix
    assert artifact.add_reference(f"s3://{prefix}/single.bin") == ["single.bin"]
    run.log_artifact(artifact).wait()
    run.finish()

    entry = artifact.manifest["train/a.bin"]
    assert entry.ref == f"s3://{prefix}/data/a.bin" and entry.size == 200_000
    assert entry.extra["etag"] == hashlib.md5(objects["data/a.bin"]).hexdigest()  # s3rver's ETag: the MD5
    assert _blob_count(root) == 1  # the manifest only: no referenced bytes were copied
    out = Path(artifact.download(tmp_path / "out"))
    assert _tree(out) == {"train/a.bin": objects["data/a.bin"], "train/deep/b.txt": b"bee\n", "train/empty": b"",
                          "single.bin": objects["single.bin"]}
    artifact.verify(out)
    assert artifact.download(tmp_path / "out") == str(out)  # again: fetched and checked again, same bytes
    assert _tree(out)["single.bin"] == objects["single.bin"]
    with open(out / "single.bin", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ArtifactVerifyError, match="single.bin: size mismatch"):
        artifact.verify(out)

    # Changed since it was recorded: refused, naming the URI; nothing half-written is left.
    fs.pipe(f"{prefix}/data/deep/b.txt", b"changed\n")
    fs.rm(f"{prefix}/single.bin")
    with pytest.raises(ArtifactVerifyError) as raised:
        artifact.download(tmp_path / "out2")
    problems = raised.value.problems
    assert set(problems) == {"train/deep/b.txt", "single.bin"}
    assert f"s3://{prefix}/data/deep/b.txt changed: its ETag is now" in problems["train/deep/b.txt"]
    assert f"s3://{prefix}/single.bin can't be reached" in problems["single.bin"]
    leftovers = [p.name for p in (tmp_path / "out2").rglob("*") if p.name.endswith(".partial")]
    assert leftovers == []


def _three_objects_past_max_objects_then_within(fs, base: str) -> tracklet.Artifact:
    """Three objects under ``base``/many (``base``: ``scheme://bucket[/prefix]``, ``fs`` its
    filesystem): a reference to the prefix with ``max_objects=2`` is refused naming it, adding
    nothing; with 3 all are added. The artifact holding them."""
    for index in range(3):
        fs.pipe(f"{base.partition('://')[2]}/many/{index}.txt", b"%d" % index)
    artifact = tracklet.Artifact("bounded", "dataset")
    with pytest.raises(ArtifactError, match=rf"{base}/many has more than max_objects=2 objects"):
        artifact.add_reference(f"{base}/many", max_objects=2)
    assert artifact.files() == []  # nothing half-added
    assert len(artifact.add_reference(f"{base}/many", max_objects=3)) == 3
    return artifact


def test_s3_prefix_bounded_by_max_objects_and_unreachable_references_are_clear_errors(start, s3, monkeypatch):
    fs, prefix = s3
    artifact = _three_objects_past_max_objects_then_within(fs, f"s3://{prefix}")
    with pytest.raises(ArtifactError, match=rf"s3://{prefix}/nothing-here can't be reached"):
        artifact.add_reference(f"s3://{prefix}/nothing-here")
    with pytest.raises(ArtifactError, match="s3://no-such-bucket-xyz/key can't be reached"):
        artifact.add_reference("s3://no-such-bucket-xyz/key")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # no credentials at all: botocore's own error, named
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    with pytest.raises(ArtifactError, match=rf"s3://{prefix}/many/0.txt can't be reached: NoCredentialsError"):
        artifact.add_reference(f"s3://{prefix}/many/0.txt", name="again.txt")


def test_s3_reference_without_checksum_records_the_uri_alone(start, root, s3, tmp_path):
    fs, prefix = s3
    fs.pipe(f"{prefix}/loose.bin", b"first")
    run = start()
    artifact = tracklet.Artifact("loose", "dataset")
    assert artifact.add_reference(f"s3://{prefix}/loose.bin", checksum=False) == ["loose.bin"]
    run.log_artifact(artifact).wait()
    run.finish()
    assert artifact.manifest["loose.bin"].extra == {"checksum": False}
    fs.pipe(f"{prefix}/loose.bin", b"second, longer")  # nothing was recorded to check against
    out = Path(artifact.download(tmp_path / "out"))
    assert (out / "loose.bin").read_bytes() == b"second, longer"
    artifact.verify(out)


@pytest.fixture
def versioned_s3(monkeypatch) -> Iterator[object]:
    """A bucket with versioning on, in moto's S3 server (s3rver keeps no versions). moto is not a
    test dependency: without it this is skipped."""
    server_module = pytest.importorskip("moto.server", reason="pip install 'moto[server]' to test S3 versions")
    from serverproc import _free_port

    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, version_aware=True)
        fs.mkdir("versioned")
        fs.call_s3("put_bucket_versioning", Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
        yield fs
    finally:
        server.stop()


def test_s3_references_in_a_versioned_bucket_pin_the_version_recorded(start, root, versioned_s3, tmp_path):
    fs = versioned_s3
    fs.pipe("versioned/model.bin", b"version one")
    fs.pipe("versioned/set/a.txt", b"a1")
    run = start()
    artifact = tracklet.Artifact("pinned", "model")
    artifact.add_reference("s3://versioned/model.bin")
    artifact.add_reference("s3://versioned/set", name="set")
    run.log_artifact(artifact).wait()
    run.finish()
    recorded = artifact.manifest["model.bin"].extra["versionID"]
    assert recorded == fs.info("versioned/model.bin")["VersionId"]
    assert artifact.manifest["set/a.txt"].extra["versionID"] == fs.info("versioned/set/a.txt")["VersionId"]
    fs.pipe("versioned/model.bin", b"version two, overwritten")  # the recorded version is still there
    fs.pipe("versioned/set/a.txt", b"a2")
    out = Path(artifact.download(tmp_path / "out"))
    assert _tree(out) == {"model.bin": b"version one", "set/a.txt": b"a1"}
    fs.call_s3("delete_object", Bucket="versioned", Key="model.bin", VersionId=recorded)
    with pytest.raises(ArtifactVerifyError, match=rf"s3://versioned/model.bin changed: .*version {recorded} is gone"):
        artifact.download(tmp_path / "out2")


# ---------------------------------------------------------------- http(s):// (http.server)


class _Site:
    """What the loopback HTTP server serves: path -> bytes, with an ETag and a Last-Modified."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modified: dict[str, float] = {}
        self.send_etag = True
        self.head_refusal: int | None = None  # answer HEAD with this status
        self.requests: list[str] = []

    def put(self, path: str, payload: bytes, modified: float | None = None) -> None:
        self.files[path] = payload
        self.modified[path] = modified if modified is not None else time.time()


@pytest.fixture
def site() -> Iterator[tuple[_Site, str]]:
    served = _Site()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bool) -> None:
            payload = served.files.get(self.path)
            if payload is None:
                self.send_error(404)
                return
            self.send_response(200)
            if served.send_etag:
                self.send_header("ETag", f'"{hashlib.sha256(payload).hexdigest()[:16]}"')
            self.send_header("Last-Modified", formatdate(served.modified[self.path], usegmt=True))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 (http.server's names)
            served.requests.append(f"GET {self.path}")
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            served.requests.append(f"HEAD {self.path}")
            if served.head_refusal is not None:
                self.send_error(served.head_refusal)
                return
            self._answer(False)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_http_references_record_validators_and_download_checks_them(start, root, site, tmp_path):
    served, base = site
    weights = os.urandom(300_000)
    served.put("/models/weights.bin", weights)
    served.put("/vocab.txt", b"a\nb\n", modified=1_700_000_000)
    run = start()
    artifact = tracklet.Artifact("webrefs", "model")
    assert artifact.add_reference(f"{base}/models/weights.bin") == ["weights.bin"]
    served.send_etag = False
    served.head_refusal = 405  # answered with a GET's headers
    assert artifact.add_reference(f"{base}/vocab.txt", name="meta/vocab.txt") == ["meta/vocab.txt"]
    assert served.requests == ["HEAD /models/weights.bin", "HEAD /vocab.txt", "GET /vocab.txt"]
    served.head_refusal = 403  # a presigned GET URL refuses HEAD so
    assert tracklet.Artifact("x", "model").add_reference(f"{base}/vocab.txt") == ["vocab.txt"]
    served.head_refusal = None
    run.log_artifact(artifact).wait()
    run.finish()

    entry = artifact.manifest["weights.bin"]
    assert entry.ref == f"{base}/models/weights.bin" and entry.size == 300_000
    assert entry.extra["etag"] == f'"{hashlib.sha256(weights).hexdigest()[:16]}"'
    assert entry.extra["content_length"] == 300_000 and "last_modified" in entry.extra
    vocab = artifact.manifest["meta/vocab.txt"]
    assert "etag" not in vocab.extra and vocab.extra["last_modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert _blob_count(root) == 1  # the manifest only

    served.send_etag = True
    out = Path(artifact.download(tmp_path / "out"))
    assert _tree(out) == {"weights.bin": weights, "meta/vocab.txt": b"a\nb\n"}

    served.put("/models/weights.bin", weights[:-1] + bytes([weights[-1] ^ 0xFF]))  # same length, new ETag
    served.put("/vocab.txt", b"a\nb\n", modified=1_800_000_000)  # no ETag recorded: Last-Modified is checked
    with pytest.raises(ArtifactVerifyError) as raised:
        artifact.download(tmp_path / "out2")
    assert f"{base}/models/weights.bin changed: ETag is now" in raised.value.problems["weights.bin"]
    assert f"{base}/vocab.txt changed: Last-Modified is now" in raised.value.problems["meta/vocab.txt"]
    del served.files["/models/weights.bin"]
    served.put("/vocab.txt", b"a\nb\n", modified=1_700_000_000)
    with pytest.raises(ArtifactVerifyError, match=rf"{base}/models/weights.bin can't be reached: HTTP 404"):
        artifact.download(tmp_path / "out3")
    # W&B's allow_missing_references: a reference whose object is gone is skipped, the rest fetched.
    out4 = Path(artifact.download(tmp_path / "out4", allow_missing_references=True))
    assert _tree(out4) == {"meta/vocab.txt": b"a\nb\n"}
    served.put("/vocab.txt", b"a\nb\n", modified=1_900_000_000)  # changed is not missing: still an error
    with pytest.raises(ArtifactVerifyError, match="vocab.txt changed"):
        artifact.download(tmp_path / "out5", allow_missing_references=True)
    with pytest.raises(ArtifactError, match=rf"{base}/gone can't be reached: HTTP 404"):
        tracklet.Artifact("x", "dataset").add_reference(f"{base}/gone")
    with pytest.raises(ArtifactError, match="http://127.0.0.1:9/x can't be reached"):
        tracklet.Artifact("x", "dataset").add_reference("http://127.0.0.1:9/x")


# ---------------------------------------------------------------- gs:// and file://


def test_gs_references_need_gcsfs_and_say_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if it were not installed (import raises ImportError)
    with pytest.raises(ArtifactError, match=r"gs:// references need gcsfs, which is not installed"):
        tracklet.Artifact("gcs", "dataset").add_reference("gs://bucket/object")
    artifact = tracklet.Artifact("gcs", "dataset")  # without a checksum, nothing is looked up
    assert artifact.add_reference("gs://bucket/dir/object.bin", checksum=False) == ["object.bin"]


@pytest.fixture
def gcs(gcs_emulator, monkeypatch, tmp_path) -> Iterator[tuple[object, str]]:
    """The session's gcp-storage-emulator (tests/gcsserver.py) through ``STORAGE_EMULATOR_HOST``,
    as gcsfs finds it, and a bucket of this test's own. No Google credentials are looked for: not a
    developer's gcloud ones (``CLOUDSDK_CONFIG``), nor the metadata server's (``NO_GCE_CHECK``);
    gcsfs goes on anonymously."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    fs = gcs_filesystem(gcs_emulator)
    bucket = f"refs-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    yield fs, bucket


def test_gs_references_record_etag_and_generation_never_copy_and_download_byte_exact(start, root, gcs, tmp_path):
    fs, bucket = gcs
    objects = {"data/a.bin": os.urandom(300_000), "data/sub/b.bin": b"bee", "data/empty": b"",
               "database.csv": b"not under data/\n", "single.txt": b"single"}
    for key, payload in objects.items():
        fs.pipe(f"{bucket}/{key}", payload)
    run = start()
    artifact = tracklet.Artifact("gcsrefs", "dataset")
    # the directory, not a string prefix
    assert artifact.add_reference(f"gs://{bucket}/data", name="d") == ["d/a.bin", "d/empty", "d/sub/b.bin"]
    assert artifact.add_reference(f"gs://{bucket}/single.txt") == ["single.txt"]
    run.log_artifact(artifact).wait()
    run.finish()
    for name, key in (("d/a.bin", "data/a.bin"), ("single.txt", "single.txt"), ("d/empty", "data/empty")):
        entry, info = artifact.manifest[name], fs.info(f"{bucket}/{key}")
        assert entry.ref == f"gs://{bucket}/{key}" and entry.size == len(objects[key])
        assert entry.extra == {"etag": info["etag"].strip('"'), "versionID": str(info["generation"])}
        assert entry.extra["etag"] and entry.extra["versionID"]
    assert _blob_count(root) == 1  # the manifest only: no referenced bytes were copied
    out = Path(artifact.download(tmp_path / "out"))
    assert _tree(out) == {"d/a.bin": objects["data/a.bin"], "d/sub/b.bin": b"bee", "d/empty": b"",
                          "single.txt": b"single"}
    artifact.verify(out)
    assert artifact.download(tmp_path / "out") == str(out)  # again: fetched and checked again, same bytes
    with open(out / "single.txt", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ArtifactVerifyError, match="single.txt: size mismatch"):
        artifact.verify(out)

    # Gone since it was recorded: skipped where missing references are allowed (W&B's
    # allow_missing_references); changed too: refused, naming the URIs; nothing half-written is left.
    fs.rm(f"{bucket}/single.txt")
    out2 = Path(artifact.download(tmp_path / "out2", allow_missing_references=True))
    assert _tree(out2) == {"d/a.bin": objects["data/a.bin"], "d/sub/b.bin": b"bee", "d/empty": b""}
    fs.pipe(f"{bucket}/data/sub/b.bin", b"changed")
    with pytest.raises(ArtifactVerifyError) as raised:
        artifact.download(tmp_path / "out3")
    problems = raised.value.problems
    assert set(problems) == {"d/sub/b.bin", "single.txt"}
    assert f"gs://{bucket}/data/sub/b.bin changed: its ETag is now" in problems["d/sub/b.bin"]
    recorded = artifact.manifest["single.txt"].extra["versionID"]
    assert f"gs://{bucket}/single.txt (version {recorded}) can't be reached: no such object" in problems["single.txt"]
    assert [p.name for p in (tmp_path / "out3").rglob("*") if p.name.endswith(".partial")] == []


def test_gs_missing_objects_and_buckets_and_too_many_objects_are_clear_errors(gcs):
    fs, bucket = gcs
    artifact = _three_objects_past_max_objects_then_within(fs, f"gs://{bucket}")
    with pytest.raises(ArtifactError, match=rf"reference gs://{bucket}/nothing-here can't be reached: no object "
                                            r"'nothing-here' and nothing under 'nothing-here/'"):
        artifact.add_reference(f"gs://{bucket}/nothing-here")
    with pytest.raises(ArtifactError, match="reference gs://no-such-bucket-xyz/key can't be reached"):
        artifact.add_reference("gs://no-such-bucket-xyz/key")
    assert len(artifact.files()) == 3


def test_gs_reference_without_checksum_records_the_uri_alone(start, root, gcs, tmp_path):
    fs, bucket = gcs
    fs.pipe(f"{bucket}/loose.bin", b"first")
    run = start()
    artifact = tracklet.Artifact("loose", "dataset")
    assert artifact.add_reference(f"gs://{bucket}/loose.bin", checksum=False) == ["loose.bin"]
    run.log_artifact(artifact).wait()
    run.finish()
    assert artifact.manifest["loose.bin"].extra == {"checksum": False}
    fs.pipe(f"{bucket}/loose.bin", b"second, longer")  # nothing was recorded to check against
    out = Path(artifact.download(tmp_path / "out"))
    assert (out / "loose.bin").read_bytes() == b"second, longer"
    artifact.verify(out)


def test_unchecksummed_file_references_are_checked_by_size_and_mtime(start, root, tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 1000)
    run = start()
    artifact = tracklet.Artifact("filerefs", "dataset")
    artifact.add_reference(source.as_uri(), checksum=False)
    run.log_artifact(artifact).wait()
    run.finish()
    out = Path(artifact.download(tmp_path / "out"))
    artifact.verify(out)  # checked by size: the digest is not a hash of the bytes
    # The download did not teach the stat cache a digest that is not the file's sha256.
    copy = tracklet.Artifact("copy", "dataset")
    copy.add_file(out / "big.bin")
    copy.save("p")
    assert copy.manifest["big.bin"].digest == hashlib.sha256(b"x" * 1000).hexdigest()
    source.write_bytes(b"y" * 1001)
    with pytest.raises(ArtifactVerifyError, match=r"big.bin: file://.*big.bin changed: 1,001 bytes"):
        artifact.download(tmp_path / "out2")


def test_wandb_log_model_of_a_url_records_a_reference_and_use_model_fetches_it(root, site, tmp_path, monkeypatch):
    # W&B's log_model/log_artifact take "s3://bucket/path"-style references as well as local paths.
    import tracklet.compat.wandb as wandb

    served, base = site
    weights = os.urandom(40_000)
    served.put("/release/weights.bin", weights)
    monkeypatch.chdir(tmp_path)
    settings = {"console": "off", "x_disable_stats": True, "disable_git": True}
    producer = wandb.init(project="urls", settings=settings)
    wandb.log_model(f"{base}/release/weights.bin", aliases=["prod"])
    wandb.finish()
    name = f"run-{producer.id}-weights.bin"
    version = tracklet.Api(root).artifact(f"urls/{name}:prod")
    assert version.type == "model" and version.files()[0].ref == f"{base}/release/weights.bin"
    assert _blob_count(root) == 1  # the manifest only
    consumer = wandb.init(project="urls", settings=settings, reinit="finish_previous")
    path = wandb.use_model(f"{name}:prod")
    assert os.path.basename(path) == "weights.bin" and Path(path).read_bytes() == weights
    wandb.finish()
    assert [run.id for run in tracklet.Api(root).artifact(f"urls/{name}").used_by()] == [consumer.id]
    with pytest.raises(ValueError, match="must be a file, directory or external reference"):
        wandb.init(project="urls", settings=settings).log_artifact(str(tmp_path / "missing"))
    wandb.finish()


def test_run_log_artifact_of_a_url_records_it_as_a_reference(start, root, site, tmp_path):
    served, base = site
    served.put("/data/table.csv", b"a,b\n1,2\n")
    run = start()
    artifact = run.log_artifact(f"{base}/data/table.csv", type="dataset").wait()
    run.finish()
    assert (artifact.name, artifact.type) == ("table.csv", "dataset")
    assert artifact.manifest["table.csv"].ref == f"{base}/data/table.csv" and _blob_count(root) == 1
    assert (Path(artifact.download(tmp_path / "out")) / "table.csv").read_bytes() == b"a,b\n1,2\n"


def test_a_wandb_snapshot_that_fails_falls_back_to_reading_the_file_later(start, root, tmp_path, monkeypatch):
    # Lightning and Keras ask for policy="mutable" from training callbacks: a temporary directory
    # that can't take the snapshot must not stop training.
    import tempfile
    import warnings

    import tracklet.compat.wandb as wandb

    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"weights")
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_directory))
    with pytest.raises(ArtifactError, match="can't snapshot"):
        tracklet.Artifact("plain", "model").add_file(checkpoint, policy="mutable")  # tracklet's own API says so
    artifact = wandb.Artifact("model", "model")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert artifact.add_file(str(checkpoint), name="model.ckpt", policy="mutable").path == "model.ckpt"
    assert any("read when the artifact is stored instead" in str(w.message) for w in caught)
    monkeypatch.setattr(tempfile, "tempdir", None)
    run = start()
    run.log_artifact(artifact).wait()
    run.finish()
    assert (Path(artifact.download(tmp_path / "out")) / "model.ckpt").read_bytes() == b"weights"
