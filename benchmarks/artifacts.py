"""Artifacts in local mode (docs/artifacts.md): chunk-level dedupe of a new checkpoint version,
re-logging unchanged content, and cached downloads.

    python benchmarks/artifacts.py [--short] [--size-mib 1024] [--files 1000] [--only a2,a3,a4] [--json PATH]

A2: log v1 of a checkpoint of ``--size-mib`` (400 tensors; chunked, since it is over the 64 MiB
threshold), and time it against a plain file copy (``shutil.copyfile``) of the same file measured
in the same run (target: v1 at >= 80% of the copy's throughput). Then change 20 of its 400 tensors
(5% of its bytes) and log v2: the bytes it adds to the store's disk (blobs and packs), as a share
of its size (target <= 10%; whole-file stores such as W&B, MLflow and DVC add 100%). Also reports
``log_artifact``'s cost on the caller's thread (target <= 1 ms: the rest happens in the background).

The v1 ratio is also measured in ``--rounds`` alternating rounds (a copy with fsync, then a first
log into a fresh data root; median of the per-round ratios, and each side's CPU seconds), and the
same for a directory of 4 MiB files (``a2dir``: stored as blobs, one read per new file).

Then both versions are uploaded to a local ``tracklet server --dev`` (``a2_upload``): the bytes of
every request body counted on the wire (target: v2 sends <= 10% of its size; whole-file uploads
such as W&B's send 100%). The copy is also timed with an fsync (the store fsyncs its packs).

``--only a2v1``: the v1 paired rounds alone, with the load average before and after.

A3: log an artifact of one large file (``--size-mib``), then log the same content again. Reports
each log's time (``log_artifact`` + ``wait``) and bytes written to the blob store, and the ratio of
the second to the first. Target (issue #15): the second writes 0 bytes and returns in <= 1 s.

A4: download an already stored artifact of ``--files`` small files (4 kB each) into a fresh
directory, then again into the same directory (files already in place). Target: <= 1 s.

peers: the same first logs by tracklet and, where installed, W&B offline and MLflow to a local file
store (``--only peers``; ``$TRACKLET_BENCH_MLFLOW_PYTHON`` names an interpreter with MLflow).

A1 (``--a1-files 10000``; art-server's section, ``a1``): that many 40 kB files uploaded to a local
server whose blobs go to S3 (s3rver), and to one keeping them on disk; files/s. Target >= 1,000.

``--short`` (or ``--quick``): 128 MiB and 200 files, for a check run. Absolute times on shared
machines drift; the ratios within one run are what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import print_table, write_json  # noqa: E402

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}


def _write_large(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        for _ in range(size >> 20):
            handle.write(os.urandom(1 << 20))  # incompressible, no repeats: nothing dedupes within the file


TENSORS = 400
CHANGED_TENSORS = 20


def _disk_bytes(store: Path) -> int:
    return sum(p.stat().st_size for sub in ("blobs", "packs") for p in (store / sub).rglob("*") if p.is_file())


def _log_timed(run: object, path: Path) -> dict:
    import tracklet

    artifact = tracklet.Artifact("checkpoint", "model")
    artifact.add_file(path, name="model.ckpt")
    started = time.perf_counter()
    run.log_artifact(artifact)  # type: ignore[attr-defined]
    caller = time.perf_counter() - started
    artifact.wait()
    return {"seconds": time.perf_counter() - started, "caller_ms": caller * 1000,
            "bytes_written": artifact.bytes_written, "version": artifact.version}


def _copy_seconds(source: Path, target: Path, repeats: int = 2) -> tuple[float, float]:
    """The best of ``repeats`` times of ``shutil.copyfile`` (page cache), and of a copy that is
    fsync'd (the store fsyncs its packs, so a committed version survives a power cut)."""
    plain, durable = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        shutil.copyfile(source, target)
        plain.append(time.perf_counter() - started)
        target.unlink()
        os.sync()
        started = time.perf_counter()
        shutil.copyfile(source, target)
        descriptor = os.open(target, os.O_RDONLY)
        os.fsync(descriptor)
        os.close(descriptor)
        durable.append(time.perf_counter() - started)
        target.unlink()
        os.sync()
    return min(plain), min(durable)


def _durable_copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    for path in target.rglob("*"):
        descriptor = os.open(path, os.O_RDONLY)
        os.fsync(descriptor)
        os.close(descriptor)


def _paired_rounds(work: Path, source: Path, rounds: int, label: str) -> dict:
    """``rounds`` alternations of a copy with fsync of ``source`` (a file or a directory) and a
    first ``log_artifact`` of it into a fresh data root, each after an ``os.sync()``: the ratio of
    their times per round (the copy's time / the log's: throughput relative to the copy) and the
    median. Alternating keeps both under the same load on a shared machine. Each side's CPU time
    too: on a machine whose cores are busy, wall time follows it."""
    import tracklet

    ratios, copies, logs, cpus, copy_cpus = [], [], [], [], []
    for number in range(rounds):
        target = work / f"{label}-copy"
        os.sync()
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        if source.is_dir():
            _durable_copy_tree(source, target)
        else:
            shutil.copyfile(source, target)
            descriptor = os.open(target, os.O_RDONLY)
            os.fsync(descriptor)
            os.close(descriptor)
        copies.append(time.perf_counter() - started)
        copy_cpus.append(_cpu_seconds() - cpu_before)
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        root = work / f"{label}-root{number}"
        run = tracklet.init(project="bench", dir=str(root), settings=QUIET)
        artifact = tracklet.Artifact(label, "dataset")
        artifact.add_dir(source) if source.is_dir() else artifact.add_file(source)
        os.sync()
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        run.log_artifact(artifact).wait()
        logs.append(time.perf_counter() - started)
        cpus.append(_cpu_seconds() - cpu_before)
        run.finish()
        shutil.rmtree(root / "artifacts")
        ratios.append(copies[-1] / logs[-1])
    return {"copy_seconds": copies, "log_seconds": logs, "ratios": ratios, "median_ratio": statistics.median(ratios),
            "log_cpu_seconds": cpus, "copy_cpu_seconds": copy_cpus}


def _cpu_seconds() -> float:
    """CPU seconds this process has used, all threads (what a loaded machine rations)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def a2_directory(work: Path, size_mib: int, rounds: int) -> dict:
    """v1 of a directory of 4 MiB files (``size_mib`` in all, stored as blobs: below the chunk
    threshold) against a copy of the tree with every file fsync'd, in alternating rounds."""
    data = work / "a2-dir"
    data.mkdir()
    for index in range(max(1, size_mib // 4)):
        (data / f"shard-{index:04d}.bin").write_bytes(os.urandom(4 << 20))
    old = time.time() - 60
    for path in data.iterdir():
        os.utime(path, (old, old))
    return {"files": len(list(data.iterdir())), "size_bytes": sum(p.stat().st_size for p in data.iterdir()),
            **_paired_rounds(work, data, rounds, "shards")}


def a2_v1(work: Path, size_mib: int, rounds: int) -> dict:
    """A2's v1 ratio alone (``--only a2v1``: no v2, no server, a minute on a small machine): the
    paired rounds of a first log of a random checkpoint of ``size_mib`` against a copy with fsync,
    with the load average before and after (on a shared machine the ratio follows the CPU the
    process gets: report them together)."""
    source = work / "a2v1.ckpt"
    _write_large(source, size_mib << 20)
    os.utime(source, (time.time() - 60, time.time() - 60))
    os.sync()
    load_before = os.getloadavg()
    paired = _paired_rounds(work, source, rounds, "v1")
    return {"size_bytes": source.stat().st_size, **paired, "load_before": load_before,
            "load_after": os.getloadavg()}


def a2(work: Path, size_mib: int, rounds: int = 3) -> dict:
    import random

    import tracklet

    data = work / "a2"
    data.mkdir()
    size = size_mib << 20
    tensor = size // TENSORS
    rng = random.Random(2)
    v1 = data / "v1.ckpt"
    with open(v1, "wb") as handle:
        for _ in range(TENSORS):
            handle.write(os.urandom(tensor))
    size = v1.stat().st_size
    os.utime(v1, (time.time() - 60, time.time() - 60))
    os.sync()  # the file's own writeback must not land in a timed copy
    copy_seconds, durable_copy_seconds = _copy_seconds(v1, data / "copy.ckpt")
    paired = _paired_rounds(work, v1, rounds, "checkpoint")
    run = tracklet.init(project="bench", dir=str(work / "root-a2"), settings=QUIET)
    store = work / "root-a2" / "artifacts"
    first = _log_timed(run, v1)
    on_disk = _disk_bytes(store)
    changed = sorted(rng.sample(range(TENSORS), CHANGED_TENSORS))
    v2 = data / "v2.ckpt"
    shutil.copyfile(v1, v2)
    with open(v2, "r+b") as handle:
        for index in changed:
            handle.seek(index * tensor)
            handle.write(os.urandom(tensor))
    os.utime(v2, (time.time() - 60, time.time() - 60))
    second = _log_timed(run, v2)
    added = _disk_bytes(store) - on_disk
    run.finish()
    return {"size_bytes": size, "copy_seconds": copy_seconds, "durable_copy_seconds": durable_copy_seconds,
            "v1": first, "v2": second, "v1_vs_copy_throughput": copy_seconds / first["seconds"],
            "v1_vs_durable_copy_throughput": durable_copy_seconds / first["seconds"], "v2_added_bytes": added,
            "v2_added_share": added / size, "changed_share": CHANGED_TENSORS / TENSORS, "paired": paired,
            "upload": a2_upload(work, work / "root-a2", size)}


def a2_upload(work: Path, root: Path, size: int) -> dict:
    """A2 on a server: v1 and v2 of the checkpoint (logged by ``a2``) uploaded to a local
    ``tracklet server --dev`` (blobs and packs on its disk) with ``upload_version``; the bytes of
    every request body counted on the wire. Target (issue #15): v2 sends <= 10% of its size."""
    import httpx

    from tracklet.artifacts.remote import upload_version
    from tracklet.artifacts.storage import ArtifactStore
    from tracklet.client.artifacts import ArtifactClient
    from tracklet.client.http import HttpClient

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from serverproc import Server

    class Wire(httpx.HTTPTransport):
        body_bytes = 0
        received = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            Wire.body_bytes += int(request.headers.get("content-length", "0"))
            response = super().handle_request(request)
            Wire.received += int(response.headers.get("content-length", "0"))
            return response

    store = ArtifactStore(root)
    server = Server(work / "a2-server")
    server.spawn()
    server.wait_ready(timeout=180)  # a loaded machine can take a while to import the server
    report: dict = {}
    try:
        client = ArtifactClient(HttpClient(server.url, transport=Wire()), work / "a2-state")
        for label in ("v0", "v1"):
            Wire.body_bytes = 0
            started = time.perf_counter()
            upload_version(client, store, store.registry.version("bench", "checkpoint", label), [])
            seconds = time.perf_counter() - started
            report[label] = {"seconds": seconds, "wire_bytes": Wire.body_bytes, "share": Wire.body_bytes / size,
                             "mb_per_s": size / seconds / 1e6}
        client.http.close()
        # Another machine (fresh data root and blob cache) downloads v1, then v2: response bytes.
        from tracklet.artifacts.cache import BlobCache
        from tracklet.artifacts.remote import RemoteArtifacts

        remote = RemoteArtifacts(ArtifactClient(HttpClient(server.url, transport=Wire())), work / "a2-reader",
                                 BlobCache(work / "a2-cache", cap_bytes=4 * size))
        for label in ("v0", "v1"):
            Wire.received = 0
            started = time.perf_counter()
            remote.artifact(f"bench/checkpoint:{label}").download(work / f"a2-download-{label}")
            report[f"download_{label}"] = {"seconds": time.perf_counter() - started, "wire_bytes": Wire.received,
                                           "share": Wire.received / size}
        remote.client.http.close()
    finally:
        server.stop()
    return report


@contextlib.contextmanager
def _s3rver(work: Path) -> Iterator[str | None]:
    """A real s3rver process (tests/s3, needs Node) on a free loopback port, bucket ``tracklet``:
    its endpoint URL, or None when s3rver is not installed. Stopped on exit."""
    import subprocess

    import httpx

    repo = Path(__file__).resolve().parents[1]
    s3rver = repo / "tests" / "s3" / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    node = shutil.which("node")
    if node is None or not s3rver.is_file():
        yield None
        return
    sys.path.insert(0, str(repo / "tests"))
    from serverproc import _free_port

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    s3_dir = work / f"s3-{port}"
    s3_dir.mkdir()
    s3 = subprocess.Popen([node, str(s3rver), "-d", str(s3_dir), "-a", "127.0.0.1", "-p", str(port), "-s",
                           "--configure-bucket", "tracklet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{endpoint}/tracklet", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError("s3rver did not start")
        _s3rver.pid = s3.pid  # type: ignore[attr-defined]
        yield endpoint
    finally:
        s3.terminate()
        s3.wait(timeout=10)


def _process_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by the processes ``pids`` (children not included)."""
    import psutil

    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def a2_server(work: Path, size_mib: int, rounds: int) -> dict:
    """A2 in server mode: v1 of a checkpoint of ``size_mib`` logged by an online run (committed
    locally as chunks, then its packs, recipe and manifest uploaded to a local ``tracklet server``
    whose artifacts live on S3: a real s3rver process on loopback) against a plain upload of the
    same file to the same s3rver (s3fs ``put_file``: multipart, no hashing beyond S3's, no
    tracklet), in ``rounds`` alternating rounds, each after an ``os.sync()``. Each round logs into a
    fresh data root and project, so the server lacks every chunk. CPU seconds of every process
    involved (this one, the tracklet server, s3rver) on each side."""
    import uuid

    import s3fs

    import tracklet
    from tracklet.artifacts.remote import upload_version
    from tracklet.artifacts.storage import ArtifactStore
    from tracklet.client.artifacts import ArtifactClient
    from tracklet.client.http import HttpClient

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from serverproc import Server

    data = work / "a2s"
    data.mkdir()
    source = data / "v1.ckpt"
    _write_large(source, size_mib << 20)
    os.utime(source, (time.time() - 60, time.time() - 60))
    size = source.stat().st_size
    with _s3rver(work) as endpoint:
        if endpoint is None:
            return {"skipped": "s3rver is not installed (npm ci --prefix tests/s3)"}
        options = ("--files-option", f"endpoint_url={endpoint}", "--files-option", "key=S3RVER",
                   "--files-option", "secret=S3RVER")
        server = Server(work / "a2s-server", extra=("--artifacts", f"s3://tracklet/{uuid.uuid4().hex}", *options))
        server.spawn()
        server.wait_ready(timeout=180)
        try:
            assert server.proc is not None
            pids = [server.proc.pid, _s3rver.pid]  # type: ignore[attr-defined]
            direct = s3fs.S3FileSystem(endpoint_url=endpoint, key="S3RVER", secret="S3RVER",
                                       skip_instance_cache=True)
            client = ArtifactClient(HttpClient(server.url), work / "a2s-state")
            plain, plain_cpu, plain_peer_cpu = [], [], []
            logged, uploaded, log_cpu, peer_cpu, ratios = [], [], [], [], []
            for number in range(rounds):
                os.sync()
                cpu_before, peers_before = _cpu_seconds(), _process_cpu(pids)
                started = time.perf_counter()
                direct.put_file(str(source), f"tracklet/plain/{uuid.uuid4().hex}")
                plain.append(time.perf_counter() - started)
                plain_cpu.append(_cpu_seconds() - cpu_before)
                plain_peer_cpu.append(_process_cpu(pids) - peers_before)
                root = work / f"a2s-root{number}"
                run = tracklet.init(project=f"bench{number}", dir=str(root), settings=QUIET)
                artifact = tracklet.Artifact("checkpoint", "model")
                artifact.add_file(source, name="model.ckpt")
                os.sync()
                cpu_before, peers_before = _cpu_seconds(), _process_cpu(pids)
                started = time.perf_counter()
                run.log_artifact(artifact).wait()
                logged.append(time.perf_counter() - started)
                store = ArtifactStore(root)
                upload_version(client, store, store.registry.version(f"bench{number}", "checkpoint", "v0"), [])
                uploaded.append(time.perf_counter() - started)
                log_cpu.append(_cpu_seconds() - cpu_before)
                peer_cpu.append(_process_cpu(pids) - peers_before)
                run.finish()
                shutil.rmtree(root)
                ratios.append(plain[-1] / uploaded[-1])
            client.http.close()
        finally:
            server.stop()
    return {"size_bytes": size, "plain_put_seconds": plain, "plain_client_cpu_seconds": plain_cpu,
            "plain_server_cpu_seconds": plain_peer_cpu, "log_seconds": logged, "log_and_upload_seconds": uploaded,
            "client_cpu_seconds": log_cpu, "server_cpu_seconds": peer_cpu, "ratios": ratios,
            "median_ratio": statistics.median(ratios)}


#: A trivial HTTP receiver (stdlib only, a process of its own): each ``PUT /<name>`` body is read in
#: 1 MiB pieces into a temporary file under ``argv[2]``, fsync'd when ``argv[3]`` is ``1``, renamed to
#: ``<name>``, then answered 200. The floor of moving a file's bytes to another process over loopback
#: and onto its disk: no hashing, no chunking, no database.
_RECEIVER = """
import http.server, os, sys
target, durable = sys.argv[2], sys.argv[3] == "1"
class Put(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_PUT(self):
        left = int(self.headers["Content-Length"])
        path = os.path.join(target, self.path.strip("/"))
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        with open(path + ".partial", "wb") as handle:
            while left:
                got = self.rfile.readinto(view[:min(left, len(buffer))])
                if not got:
                    raise ConnectionError("body cut short")
                handle.write(view[:got])
                left -= got
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(path + ".partial", path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Put).serve_forever()
"""


def _plain_put(url: str, source: Path) -> None:
    """The file's bytes as one HTTP PUT (streamed in 1 MiB reads) to ``url``."""
    import httpx

    def body() -> Iterator[bytes]:
        with open(source, "rb") as handle:
            while piece := handle.read(1 << 20):
                yield piece

    answer = httpx.put(url, content=body(), headers={"Content-Length": str(source.stat().st_size)}, timeout=600)
    answer.raise_for_status()


def a2_loopback(work: Path, size_mib: int, rounds: int, *, durable: bool = True,
                arms: tuple[str, ...] = ("streamed", "after_commit")) -> dict:
    """A2's v1 target as the issue states it (``--only a2loop``): v1 of a checkpoint of ``size_mib``
    logged by an **online run** to a local ``tracklet server --dev`` (disk backend), from
    ``log_artifact`` until ``wait()`` returns (the local commit: the file's BLAKE3, FastCDC, chunk ids, packs;
    then the upload: chunk queries, packs, recipe, the server's checks and writes, the commit),
    against a **plain copy of the same bytes over loopback**: one HTTP PUT of the file, streamed,
    to a trivial receiver process (``_RECEIVER``, stdlib) that writes it to its disk and, with
    ``durable``, fsyncs it before answering (the server keeps what it acknowledged: same bytes,
    same loopback, same durability; a ``cp`` would not cross a socket). Alternating rounds, each
    after an ``os.sync()``, a fresh data root and project per round (the server lacks every
    chunk). Two online arms per round, in alternating order: ``streamed`` (the chunks sent while
    the commit cuts them, no local copy: ``remote.ServerChunks``, the default since session 13; in
    an older tree ``TRACKLET_ARTIFACT_STREAM_CHUNKS=1``'s ``ChunkStreamer`` beside local packs) and
    ``after_commit`` (``TRACKLET_ARTIFACT_STREAM_CHUNKS=0``: stored in local packs, sent once the
    local commit is done, read back from them; the default before). After one untimed warm-up log
    of a 64 MiB chunked file, sent to the receiver too
    (the process's first pays imports and connections, the server's first chunked upload its threads and buffers). Each side's CPU seconds (this process, and the server or the receiver),
    and the load average before and after."""
    import subprocess

    import tracklet

    try:
        from tracklet.artifacts.remote import STREAM_CHUNKS_ENV
    except ImportError:  # an older tree (A/B runs): chunks always went after the commit
        STREAM_CHUNKS_ENV = "TRACKLET_ARTIFACT_STREAM_CHUNKS"

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from serverproc import Server, _free_port

    source = work / "a2loop.ckpt"
    _write_large(source, size_mib << 20)
    os.utime(source, (time.time() - 60, time.time() - 60))
    size = source.stat().st_size
    received = work / "a2loop-received"
    received.mkdir()
    port = _free_port()
    receiver = subprocess.Popen([sys.executable, "-c", _RECEIVER, str(port), str(received), "1" if durable else "0"])
    server = Server(work / "a2loop-server")
    server.spawn()
    report: dict = {"size_bytes": size, "durable": durable, "load_before": os.getloadavg()}
    try:
        server.wait_ready(timeout=180)
        assert server.proc is not None
        _wait_port(port)
        # The process's first online log pays imports, thread starts and connections, and the
        # server's first chunked upload its worker threads, pack buffers and statement caches
        # (3.6-4.6 server CPU s/GiB for a first 256 MiB against ~2.2 after, session 16): not
        # timed. A chunked file (CHUNK_THRESHOLD bytes), so the timed rounds measure a warm server.
        warm = work / "a2loop-warm.bin"
        _write_large(warm, 64 << 20)
        run = tracklet.init(project="loopwarm", dir=str(work / "a2loop-warm"), mode="online",
                            settings={**QUIET, "base_url": server.url})
        run.log_artifact(warm).wait()
        run.finish()
        _plain_put(f"http://127.0.0.1:{port}/warm", warm)
        plain, plain_cpu, plain_peer = [], [], []
        arms: dict[str, dict[str, list[float]]] = {
            arm: {"seconds": [], "client_cpu_seconds": [], "server_cpu_seconds": [], "ratios": []}
            for arm in arms}
        for number in range(rounds):
            os.sync()
            cpu_before, peer_before = _cpu_seconds(), _process_cpu([receiver.pid])
            started = time.perf_counter()
            _plain_put(f"http://127.0.0.1:{port}/copy{number}", source)
            plain.append(time.perf_counter() - started)
            plain_cpu.append(_cpu_seconds() - cpu_before)
            plain_peer.append(_process_cpu([receiver.pid]) - peer_before)
            (received / f"copy{number}").unlink()
            for arm in list(arms) if number % 2 == 0 else list(reversed(arms)):  # neither always second
                results = arms[arm]
                # after_commit: the chunks uploaded once the local commit is done (read back from
                # its packs), as before the chunk streamer; streamed: sent while they are cut.
                os.environ[STREAM_CHUNKS_ENV] = "1" if arm == "streamed" else "0"
                root = work / f"a2loop-root{number}-{arm}"
                run = tracklet.init(project=f"loop{number}{arm.replace('_', '')}", dir=str(root), mode="online",
                                    settings={**QUIET, "base_url": server.url})
                artifact = tracklet.Artifact("checkpoint", "model")
                artifact.add_file(source, name="model.ckpt")
                os.sync()
                cpu_before, peer_before = _cpu_seconds(), _process_cpu([server.proc.pid])
                started = time.perf_counter()
                run.log_artifact(artifact).wait()
                results["seconds"].append(time.perf_counter() - started)
                results["client_cpu_seconds"].append(_cpu_seconds() - cpu_before)
                results["server_cpu_seconds"].append(_process_cpu([server.proc.pid]) - peer_before)
                os.environ.pop(STREAM_CHUNKS_ENV, None)
                if artifact.upload_error is not None:
                    raise RuntimeError(f"the upload failed: {artifact.upload_error}")
                run.finish()
                shutil.rmtree(root)
                results["ratios"].append(plain[-1] / results["seconds"][-1])
    finally:
        server.stop()
        receiver.terminate()
        receiver.wait(timeout=10)
    for results in arms.values():
        results["median_ratio"] = statistics.median(results["ratios"])  # type: ignore[assignment]
    report.update({"plain_put_seconds": plain, "plain_client_cpu_seconds": plain_cpu,
                   "plain_receiver_cpu_seconds": plain_peer, **arms, "load_after": os.getloadavg()})
    return report


def _wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)  # readiness polling only
    raise RuntimeError(f"nothing listens on port {port}")


def a3(work: Path, size_mib: int) -> dict:
    import tracklet
    from tracklet.artifacts import hashing

    data = work / "a3"
    data.mkdir()
    _write_large(data / "model.bin", size_mib << 20)
    # A checkpoint written a while ago: one written this very moment is hashed on each of its first
    # two logs (its mtime is too recent to trust, see tracklet/artifacts/hashing.py RACY_NS).
    os.utime(data / "model.bin", (time.time() - 60, time.time() - 60))
    run = tracklet.init(project="bench", dir=str(work / "root"), settings=QUIET)
    results = {}
    for label in ("first", "again"):
        artifact = tracklet.Artifact("checkpoint", "model")
        artifact.add_file(data / "model.bin")
        hashed = hashing.files_hashed()
        started = time.perf_counter()
        run.log_artifact(artifact)
        caller = time.perf_counter() - started
        artifact.wait()
        results[label] = {"seconds": time.perf_counter() - started, "caller_ms": caller * 1000,
                          "bytes_written": artifact.bytes_written, "files_hashed": hashing.files_hashed() - hashed,
                          "version": artifact.version}
    callers = []
    for _ in range(10):  # the caller-thread cost of logging a 1 GiB file, steady state
        artifact = tracklet.Artifact("checkpoint", "model")
        artifact.add_file(data / "model.bin")
        started = time.perf_counter()
        run.log_artifact(artifact)
        callers.append((time.perf_counter() - started) * 1000)
        artifact.wait()
    run.finish()
    results["caller_ms_median"], results["caller_ms_max"] = statistics.median(callers), max(callers)
    results["size_bytes"] = size_mib << 20
    results["time_ratio"] = results["again"]["seconds"] / results["first"]["seconds"]
    return results


def a4(work: Path, files: int) -> dict:
    import tracklet

    data = work / "a4"
    for index in range(files):
        sub = data / f"part{index % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{index}.bin").write_bytes(os.urandom(4000))
    artifact = tracklet.Artifact("shards", "dataset")
    artifact.add_dir(data)
    artifact.save("bench", root=work / "root")
    version = tracklet.Api(work / "root").artifact("bench/shards:latest")
    target = work / "download"
    started = time.perf_counter()
    version.download(target)
    fresh = time.perf_counter() - started
    started = time.perf_counter()
    version.download(target)
    in_place = time.perf_counter() - started
    started = time.perf_counter()
    version.download(work / "copy", link=False)
    copied = time.perf_counter() - started
    return {"files": files, "fresh_seconds": fresh, "in_place_seconds": in_place, "copy_seconds": copied}


# ---------------------------------------------------------------- peers, offline, same files, same run

_WANDB_OFFLINE = """
import json, os, resource, sys, time
work = sys.argv[1]
for name in ("dir", "cache", "data", "config"):
    os.makedirs(os.path.join(work, name), exist_ok=True)
os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=os.path.join(work, "dir"),
                  WANDB_CACHE_DIR=os.path.join(work, "cache"), WANDB_DATA_DIR=os.path.join(work, "data"),
                  WANDB_CONFIG_DIR=os.path.join(work, "config"))
import wandb

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

run = wandb.init(project="bench")
out = []
for source in sys.argv[2:]:
    os.sync()
    started, cpu_started = time.perf_counter(), cpu()
    artifact = wandb.Artifact("a" + str(len(out)), "dataset")
    artifact.add_dir(source) if os.path.isdir(source) else artifact.add_file(source)
    run.log_artifact(artifact)
    out.append({"seconds": time.perf_counter() - started, "cpu_seconds": cpu() - cpu_started})
run.finish()
print(json.dumps(out))
"""


_MLFLOW_LOCAL = """
import json, os, resource, sys, time
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses a file store otherwise
import mlflow

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

mlflow.set_tracking_uri("file://" + os.path.join(sys.argv[1], "mlruns"))
out = []
with mlflow.start_run():
    for source in sys.argv[2:]:
        os.sync()
        started, cpu_started = time.perf_counter(), cpu()
        mlflow.log_artifacts(source, "d") if os.path.isdir(source) else mlflow.log_artifact(source)
        out.append({"seconds": time.perf_counter() - started, "cpu_seconds": cpu() - cpu_started})
print(json.dumps(out))
"""

#: An interpreter with MLflow for the peers benchmark, when this one lacks it (a venv of its own).
MLFLOW_PYTHON_ENV = "TRACKLET_BENCH_MLFLOW_PYTHON"


def peers(work: Path, size_mib: int, rounds: int) -> dict:
    """The first log of one ``size_mib`` file and of a directory of 4 MiB files (the same bytes)
    by tracklet and by the peers installed here, offline, alternating, each after an ``os.sync()``;
    median seconds and CPU seconds. W&B offline: ``Artifact.add_file``/``add_dir`` +
    ``log_artifact`` (it copies each file into its staging directory and hashes it with MD5; the
    upload waits for ``wandb sync``), in a process of its own (its service process is not timed).
    tracklet: ``log_artifact`` + ``wait`` (BLAKE3, chunks and packs fsync'd for the file; blobs for
    the directory). MLflow: ``log_artifact``/``log_artifacts`` into a local file store (copies,
    no hashing), with this interpreter if it has MLflow, else ``$TRACKLET_BENCH_MLFLOW_PYTHON``."""
    import importlib.util
    import json
    import subprocess

    import tracklet

    data = work / "peers"
    data.mkdir()
    single = data / "model.ckpt"
    single.write_bytes(os.urandom(size_mib << 20))
    tree = data / "shards"
    tree.mkdir()
    for index in range(max(1, size_mib // 4)):
        (tree / f"shard-{index:04d}.bin").write_bytes(os.urandom(4 << 20))
    old = time.time() - 60
    for path in [single, *tree.iterdir()]:
        os.utime(path, (old, old))
    results: dict = {"size_bytes": size_mib << 20, "tracklet": {"file": [], "dir": []}}
    scripts: dict[str, tuple[str, str]] = {}  # peer -> (interpreter, script)
    if importlib.util.find_spec("wandb") is not None:
        scripts["wandb_offline"] = (sys.executable, _WANDB_OFFLINE)
    mlflow_python = os.environ.get(MLFLOW_PYTHON_ENV) or (
        sys.executable if importlib.util.find_spec("mlflow") is not None else None)
    if mlflow_python:
        scripts["mlflow_local"] = (mlflow_python, _MLFLOW_LOCAL)
    for peer in scripts:
        results[peer] = {"file": [], "dir": []}
    warm = work / "peers-warm"  # the process's first log pays imports and thread starts: not timed
    (data / "warm.txt").write_text("warm")
    run = tracklet.init(project="bench", dir=str(warm), settings=QUIET)
    warm_up = tracklet.Artifact("warm", "dataset")
    warm_up.add_file(data / "warm.txt")
    run.log_artifact(warm_up).wait()
    run.finish()
    for number in range(rounds):
        for label, source in (("file", single), ("dir", tree)):
            root = work / f"peers-root{number}-{label}"
            run = tracklet.init(project="bench", dir=str(root), settings=QUIET)
            artifact = tracklet.Artifact(f"peer-{label}", "dataset")
            artifact.add_dir(source) if source.is_dir() else artifact.add_file(source)
            os.sync()
            cpu_started, started = _cpu_seconds(), time.perf_counter()
            run.log_artifact(artifact).wait()
            results["tracklet"][label].append({"seconds": time.perf_counter() - started,
                                               "cpu_seconds": _cpu_seconds() - cpu_started})
            run.finish()
            shutil.rmtree(root)
        for peer, (python, script) in list(scripts.items()):
            scratch = work / f"{peer}{number}"
            scratch.mkdir()
            done = subprocess.run([python, "-c", script, str(scratch), str(single), str(tree)],
                                  capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                results[peer] = {"error": done.stderr[-2000:]}
                del scripts[peer]
            else:
                file_run, dir_run = json.loads(done.stdout.strip().splitlines()[-1])
                results[peer]["file"].append(file_run)
                results[peer]["dir"].append(dir_run)
            shutil.rmtree(scratch, ignore_errors=True)
    for peer in [key for key in results if key not in ("size_bytes",)]:
        for label in ("file", "dir"):
            samples = results[peer].get(label) if isinstance(results[peer], dict) else None
            if samples:
                results[peer][f"{label}_median"] = {
                    "seconds": statistics.median(s["seconds"] for s in samples),
                    "cpu_seconds": statistics.median(s["cpu_seconds"] for s in samples)}
    return results


# ---------------------------------------------------------------- A1: uploads to a server (art-server)


def a1(work: Path, files: int, size: int = 40_000, layouts: tuple[str, ...] = ("objects", "packed")) -> dict:
    """A1: ``files`` small files (``size`` bytes each) committed locally, then uploaded to a local
    ``tracklet server --dev`` whose blobs go to S3 (a real s3rver process: tests/s3, needs Node),
    and to one whose blobs stay on its disk, each with a batch's small blobs stored one object each
    (the old layout) and packed (``server/artifact_packed.py``). Reports each upload's files/s (digest queries, blob
    uploads, manifest, commit), a second upload of the same version (nothing to send), and the
    S3 server's own ceiling: the same objects PUT straight to it, 64 at a time, without tracklet.
    Each first upload also reports the CPU seconds per 1,000 files of this process (the client),
    the tracklet server and s3rver (what each side adds per file). ``layouts`` picks the server
    layouts run (``--a1-layouts``). Target (issue #15): >= 1,000 files/s."""
    import uuid

    from tracklet.artifacts.entries import LocalFile
    from tracklet.artifacts.remote import upload_version
    from tracklet.artifacts.storage import ArtifactStore
    from tracklet.client.artifacts import ArtifactClient
    from tracklet.client.http import HttpClient

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "tests"))
    from serverproc import Server

    data = work / "a1"
    data.mkdir()
    for index in range(files):
        (data / f"{index:06d}.bin").write_bytes(os.urandom(size))
    store = ArtifactStore(work / "a1-root")
    started = time.perf_counter()
    result = store.commit("shards", "dataset", {p.name: LocalFile(str(p)) for p in data.iterdir()}, project="bench",
                          aliases=[])
    report: dict = {"files": files, "file_bytes": size, "local_commit_seconds": time.perf_counter() - started}
    with _s3rver(work) as endpoint:
        if endpoint is None:
            return {"skipped": "s3rver is not installed (npm ci --prefix tests/s3)"}
        options = ("--files-option", f"endpoint_url={endpoint}", "--files-option", "key=S3RVER",
                   "--files-option", "secret=S3RVER")
        for backend in ("s3", "local"):
            # The same upload to a server storing a batch's small blobs one object each (the layout
            # before packed blobs: TRACKLET_ARTIFACT_PACK_SMALL=0) and to one packing them.
            for layout, pack in (("objects", "0"), ("packed", "1")):
                if layout not in layouts:
                    continue
                extra = ("--artifacts", f"s3://tracklet/{uuid.uuid4().hex}", *options) if backend == "s3" else ()
                os.environ["TRACKLET_ARTIFACT_PACK_SMALL"] = pack
                server = Server(work / f"a1-server-{backend}-{layout}", extra=extra)
                server.spawn()
                try:
                    server.wait_ready(timeout=180)
                    client = ArtifactClient(HttpClient(server.url), work / "a1-state")
                    timings: dict = {}
                    assert server.proc is not None
                    peers = {"server": [server.proc.pid], "s3rver": [_s3rver.pid] if backend == "s3" else []}  # type: ignore[attr-defined]
                    for label in ("first", "again"):
                        cpu_before = {"client": _cpu_seconds(), **{k: _process_cpu(v) for k, v in peers.items()}}
                        started = time.perf_counter()
                        answer = upload_version(client, store, result.info, [], result.manifest)
                        timings[label] = {"seconds": time.perf_counter() - started,
                                          "bytes_sent": answer["bytes_sent"]}
                        cpu_after = {"client": _cpu_seconds(), **{k: _process_cpu(v) for k, v in peers.items()}}
                        timings[label]["cpu_seconds_per_1000_files"] = {
                            k: (cpu_after[k] - cpu_before[k]) * 1000 / files for k in cpu_before}
                    client.http.close()
                finally:
                    server.stop()
                    os.environ.pop("TRACKLET_ARTIFACT_PACK_SMALL", None)
                report[f"{backend}_{layout}"] = {**timings, "files_per_second": files / timings["first"]["seconds"]}
        import s3fs

        direct = s3fs.S3FileSystem(endpoint_url=endpoint, key="S3RVER", secret="S3RVER", skip_instance_cache=True)
        prefix = f"tracklet/{uuid.uuid4().hex}"
        objects = {f"{prefix}/{p.name}": p.read_bytes() for p in data.iterdir()}
        started = time.perf_counter()
        direct.pipe(objects, batch_size=64)
        report["s3_ceiling_files_per_second"] = files / (time.perf_counter() - started)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", "--quick", dest="short", action="store_true", help="128 MiB and 200 files")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--only", default="a2,a2dir,a3,a4", help="Which of a2,a2v1,a2server,a2loop,a2dir,a3,a4,peers to run (comma-separated).")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating copy/log rounds for the A2 ratios")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--a2loop-arms", default="streamed,after_commit",
                        help="a2loop: the online arms to run (streamed: chunks sent while cut, the default; "
                             "after_commit: stored locally, then sent)")
    parser.add_argument("--no-fsync", action="store_true",
                        help="a2loop: the loopback receiver does not fsync (compare with a server that doesn't)")
    parser.add_argument("--a1-files", type=int, default=0,
                        help="A1 (uploads to a server, S3 backend): this many 40 kB files (issue: 10000); 0 skips it")
    parser.add_argument("--a1-layouts", default="objects,packed",
                        help="A1: the server layouts to run (objects: one object per small blob; packed)")
    args = parser.parse_args()
    size_mib, files = (128, 200) if args.short else (args.size_mib, args.files)
    only = {name.strip().lower() for name in args.only.split(",")}
    work = Path(tempfile.mkdtemp(prefix="tracklet-bench-artifacts-"))
    results: dict = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}
    try:
        if "a2" in only:
            results["a2"] = a2(work, size_mib, args.rounds)
        if "a2v1" in only:
            results["a2v1"] = a2_v1(work, size_mib, args.rounds)
        if "a2server" in only:
            results["a2server"] = a2_server(work, size_mib, args.rounds)
        if "a2dir" in only:
            results["a2dir"] = a2_directory(work, size_mib, args.rounds)
        if "a2loop" in only:
            results["a2loop"] = a2_loopback(work, size_mib, args.rounds, durable=not args.no_fsync,
                                            arms=tuple(arm.strip() for arm in args.a2loop_arms.split(",")))
        if "a3" in only:
            results["a3"] = a3(work, size_mib)
        if "a4" in only:
            results["a4"] = a4(work, files)
        if "peers" in only:
            results["peers"] = peers(work, size_mib, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    if "a2" in results:
        r = results["a2"]
        rows += [
            ["A2 plain copy", f"{r['copy_seconds']:.3f} s", f"{r['size_bytes']:,} B",
             f"{r['size_bytes'] / r['copy_seconds'] / 1e6:,.0f} MB/s"],
            ["A2 copy + fsync", f"{r['durable_copy_seconds']:.3f} s", f"{r['size_bytes']:,} B",
             f"{r['size_bytes'] / r['durable_copy_seconds'] / 1e6:,.0f} MB/s (the store fsyncs its packs)"],
            ["A2 v1 log (chunked)", f"{r['v1']['seconds']:.3f} s", f"{r['v1']['bytes_written']:,} B written",
             f"{r['size_bytes'] / r['v1']['seconds'] / 1e6:,.0f} MB/s, {r['v1_vs_copy_throughput']:.2f}x the copy's "
             f"throughput (target >= 0.8), {r['v1_vs_durable_copy_throughput']:.2f}x the durable copy's; "
             f"caller {r['v1']['caller_ms']:.2f} ms"],
            ["A2 v2, 5% of tensors changed", f"{r['v2']['seconds']:.3f} s", f"{r['v2_added_bytes']:,} B added",
             f"{r['v2_added_share']:.1%} of its size (target <= 10%); caller {r['v2']['caller_ms']:.2f} ms"],
        ]
        pr = r["paired"]
        rows.append(["A2 v1 vs copy + fsync, paired", f"{statistics.median(pr['log_seconds']):.3f} s",
                     f"copy {statistics.median(pr['copy_seconds']):.3f} s",
                     f"median ratio {pr['median_ratio']:.2f}x (rounds: "
                     + ", ".join(f"{x:.2f}" for x in pr["ratios"]) + "; target >= 0.8); CPU s log/copy "
                     f"{statistics.median(pr['log_cpu_seconds']):.2f}/{statistics.median(pr['copy_cpu_seconds']):.2f}"])
        for label, what in (("v0", "v1 uploaded to a server"), ("v1", "v2 uploaded (5% changed)")):
            u = r["upload"][label]
            rows.append([f"A2 {what}", f"{u['seconds']:.3f} s", f"{u['wire_bytes']:,} B on the wire",
                         f"{u['share']:.1%} of its size, {u['mb_per_s']:,.0f} MB/s"
                         + (" (target <= 10%)" if label == "v1" else "")])
        for label, what in (("download_v0", "v1 downloaded, fresh cache"), ("download_v1", "then v2 downloaded")):
            if label in r["upload"]:
                u = r["upload"][label]
                rows.append([f"A2 {what}", f"{u['seconds']:.3f} s", f"{u['wire_bytes']:,} B received",
                             f"{u['share']:.1%} of its size"])
    if "a2v1" in results:
        r = results["a2v1"]
        rows.append([f"A2 v1 alone vs copy + fsync, paired ({r['size_bytes'] >> 20} MiB)",
                     f"{statistics.median(r['log_seconds']):.3f} s", f"copy {statistics.median(r['copy_seconds']):.3f} s",
                     f"median ratio {r['median_ratio']:.2f}x (rounds: " + ", ".join(f"{x:.2f}" for x in r["ratios"])
                     + f"; target >= 0.8); CPU s log/copy {statistics.median(r['log_cpu_seconds']):.2f}/"
                     f"{statistics.median(r['copy_cpu_seconds']):.2f} (log: "
                     f"{statistics.median(r['log_cpu_seconds']) * (1 << 30) / r['size_bytes']:.2f} CPU s/GiB); "
                     f"load {r['load_before'][0]:.1f}"
                     f" -> {r['load_after'][0]:.1f}"])
    if "a2dir" in results:
        r = results["a2dir"]
        rows.append([f"A2 directory of {r['files']} x 4 MiB, paired", f"{statistics.median(r['log_seconds']):.3f} s",
                     f"copy {statistics.median(r['copy_seconds']):.3f} s",
                     f"median ratio {r['median_ratio']:.2f}x vs copytree + fsync per file (rounds: "
                     + ", ".join(f"{x:.2f}" for x in r["ratios"]) + "); CPU s log/copy "
                     f"{statistics.median(r['log_cpu_seconds']):.2f}/{statistics.median(r['copy_cpu_seconds']):.2f}"])
    if "a2server" in results and "skipped" not in results["a2server"]:
        r = results["a2server"]
        med = statistics.median
        rows.append(["A2 v1 to a server (S3), paired", f"{med(r['log_and_upload_seconds']):.3f} s",
                     f"plain S3 put {med(r['plain_put_seconds']):.3f} s",
                     f"median ratio {r['median_ratio']:.2f}x (rounds: " + ", ".join(f"{x:.2f}" for x in r["ratios"])
                     + f"; target >= 0.8); log alone {med(r['log_seconds']):.3f} s; CPU s client/server+s3rver "
                     f"{med(r['client_cpu_seconds']):.2f}/{med(r['server_cpu_seconds']):.2f} vs plain "
                     f"{med(r['plain_client_cpu_seconds']):.2f}/{med(r['plain_server_cpu_seconds']):.2f}"])
    if "a2loop" in results:
        r = results["a2loop"]
        med = statistics.median
        gib = (1 << 30) / r["size_bytes"]
        for arm, what in (("streamed", "chunks sent while cut"), ("after_commit", "chunks sent after the commit")):
            if arm not in r:
                continue
            a = r[arm]
            rows.append([f"A2 v1 online to a local server, {what} ({r['size_bytes'] >> 20} MiB)",
                         f"{med(a['seconds']):.3f} s", f"plain PUT {med(r['plain_put_seconds']):.3f} s"
                         + (" + fsync" if r["durable"] else ""),
                         f"median ratio {a['median_ratio']:.2f}x (rounds: " + ", ".join(f"{x:.2f}" for x in a["ratios"])
                         + f"; target >= 0.8); CPU s client/server {med(a['client_cpu_seconds']):.2f}/"
                         f"{med(a['server_cpu_seconds']):.2f} vs plain {med(r['plain_client_cpu_seconds']):.2f}/"
                         f"{med(r['plain_receiver_cpu_seconds']):.2f}; client+server CPU s per GiB "
                         f"{med(c + v for c, v in zip(a['client_cpu_seconds'], a['server_cpu_seconds'])) * gib:.2f}"
                         f" (plain {med(c + v for c, v in zip(r['plain_client_cpu_seconds'], r['plain_receiver_cpu_seconds'])) * gib:.2f})"
                         f"; load {r['load_before'][0]:.1f} -> "
                         f"{r['load_after'][0]:.1f}"])
    if "a3" in results:
        r = results["a3"]
        rows += [
            ["A3 first log", f"{r['first']['seconds']:.3f} s", f"{r['first']['bytes_written']:,} B written",
             f"{size_mib} MiB, caller {r['first']['caller_ms']:.2f} ms"],
            ["A3 same content again", f"{r['again']['seconds']:.3f} s", f"{r['again']['bytes_written']:,} B written",
             f"{r['again']['files_hashed']} file(s) re-hashed, ratio {r['time_ratio']:.4f}, caller "
             f"{r['again']['caller_ms']:.2f} ms; target 0 B, <= 1 s"],
            ["log_artifact caller cost", f"{r['caller_ms_median']:.3f} ms", f"{size_mib} MiB file",
             f"median of 10 (max {r['caller_ms_max']:.3f} ms); target <= 1 ms"],
        ]
    if "a4" in results:
        r = results["a4"]
        rows += [
            ["A4 download, fresh dir", f"{r['fresh_seconds']:.3f} s", f"{files} files", "reflink/hardlink"],
            ["A4 download, in place", f"{r['in_place_seconds']:.3f} s", f"{files} files", "target <= 1 s"],
            ["A4 download, copies", f"{r['copy_seconds']:.3f} s", f"{files} files", "link=False"],
        ]
    if "peers" in results:
        r = results["peers"]
        for peer in ("tracklet", "wandb_offline", "mlflow_local"):
            if peer not in r:
                continue
            if "error" in r[peer]:
                rows.append([f"peers: {peer}", "", "", f"failed: {r[peer]['error'][-200:]}"])
                continue
            for label in ("file", "dir"):
                m = r[peer][f"{label}_median"]
                what = "one file" if label == "file" else "a directory of 4 MiB files"
                rows.append([f"peers: {peer}, {what}", f"{m['seconds']:.3f} s", f"{r['size_bytes']:,} B",
                             f"{r['size_bytes'] / m['seconds'] / 1e6:,.0f} MB/s, {m['cpu_seconds']:.2f} CPU s "
                             f"(median of {len(r[peer][label])})"])
    print(f"load average {results['load_average'][0]:.2f} on {results['cpus']} CPUs at the start")
    print_table(rows, header=["benchmark", "time", "bytes/files", "note"])
    if args.a1_files:
        with tempfile.TemporaryDirectory(prefix="tracklet-bench-a1-") as a1_work:
            layouts = tuple(name.strip() for name in args.a1_layouts.split(","))
            results["a1"] = uploads = a1(Path(a1_work), args.a1_files, layouts=layouts)
        if "skipped" in uploads:
            print(f"A1 skipped: {uploads['skipped']}")
        else:
            print_table([[f"A1 upload, {key.replace('_', ' backend, ')}", f"{uploads[key]['first']['seconds']:.2f} s",
                          f"{uploads[key]['files_per_second']:.0f} files/s",
                          f"again: {uploads[key]['again']['seconds']:.2f} s, "
                          f"{uploads[key]['again']['bytes_sent']} B sent; CPU s per 1,000 files: "
                          + ", ".join(f"{side} {seconds:.2f}" for side, seconds
                                      in uploads[key]['first']['cpu_seconds_per_1000_files'].items())]
                         for key in ("s3_objects", "s3_packed", "local_objects", "local_packed") if key in uploads]
                        + [["A1 S3 server alone", "", f"{uploads['s3_ceiling_files_per_second']:.0f} files/s",
                            "the same objects PUT straight to s3rver, 64 at a time"]],
                        header=["benchmark", "time", "rate", "note"])
    write_json(args.json, results)


if __name__ == "__main__":
    main()
