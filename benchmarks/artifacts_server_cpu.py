"""A tracking server's CPU per GiB while it takes an online v1 of a large file, without the
client's cutting and hashing on the same cores (docs/artifacts.md, "Server CPU per byte").

    python benchmarks/artifacts_server_cpu.py [--size-mib 256] [--rounds 6] [--parallel 3]

Each round's requests are made first, untimed, by the real client code (``remote.ServerChunks``
cutting a fresh file of ``--size-mib`` into chunks, segments and 8 MiB packs, recorded instead
of sent), then **replayed** to a local ``tracklet server --dev`` (a fresh project, so it lacks
every chunk) as a streamed upload is sent: each segment's "which chunks do you lack?" query,
then its packs, up to ``--parallel`` segments at once (the client's ``batches``), then the recipe
blob and the registration with the stream. The server process's CPU seconds (user + system, and user alone: the kernel's share, mostly the pack
writes, varies most) from
the first request to the registration's answer, per GiB of file, is the figure; the replaying
client only sends bytes it holds, so the server has a core to itself on a 2-core machine and the
figure is far less noisy than ``artifacts.py --only a2loop``'s. The kernel's share (the pack
writes and their writeback) still varies with the page cache: ``--work-dir /dev/shm`` takes the
disk out, and ``user`` is the figure the code's Python and hashing move. Rounds after ``--warm`` untimed
ones (a server's first chunked uploads pay its threads, buffers and statement caches).

``--baseline PATH`` (another checkout, e.g. ``git worktree add /tmp/base main``) starts a second
server from that tree; both take the same recorded uploads, alternated round by round (each
first in turn), and the median of the per-round CPU ratios is reported: an A/B under the same
load. Say the load.

``--lock`` also reports what stays serial when cores are many (``benchmarks/artifacts_gil.py``):
the seconds per GiB the server held its interpreter lock (py-spy ``--gil`` samples, so py-spy
must be installed) and its busiest thread's CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from benchmarks.artifacts import _write_large  # noqa: E402
from benchmarks.artifacts_gil import LockSampler, busiest, thread_cpu  # noqa: E402


class _Recorder:
    """Stands in for ``ArtifactClient`` under ``ChunkStreamer``: records each segment's query and
    the packs that follow it, and answers that the project lacks every chunk (a fresh project)."""

    def __init__(self) -> None:
        self.segments: dict[int, dict[str, Any]] = {}
        self._current: dict[int, int] = {}  # worker thread -> the segment it sends
        import threading

        self._lock = threading.Lock()

    def missing_chunks(self, project: str, chunk_ids: list[str], *, stream: str | None = None,
                       segment: int = 0) -> set[str]:
        import threading

        with self._lock:
            self.segments[segment] = {"query": {"chunks": chunk_ids, "stream": stream, "segment": segment},
                                      "packs": []}
            self._current[threading.get_ident()] = segment
        return set(chunk_ids)

    def upload_pack(self, project: str, pack_id: str, data: Any) -> int:
        import threading

        body = b"".join(data)  # a pack's chunk runs and trailer (``Pieces``): one request body
        with self._lock:
            self.segments[self._current[threading.get_ident()]]["packs"].append((pack_id, body))
        return len(body)


def record_upload(path: Path) -> dict[str, Any]:
    """The requests a streamed upload of ``path`` makes (segments in order, each its query and packs),
    and the registration's body and recipe blob."""
    from tracklet.artifacts.remote import ServerChunks

    recorder = _Recorder()
    target = ServerChunks(recorder, "recorded")  # type: ignore[arg-type]
    with target:
        recipe = target.write_file(path)
    recipe_bytes = recipe.to_json().encode()
    recipe_digest = hashlib.sha256(recipe_bytes).hexdigest()
    return {"segments": [recorder.segments[n] for n in sorted(recorder.segments)], "recipe": recipe_bytes,
            "register": {"digest": recipe.digest, "size": recipe.size, "recipe": recipe_digest,
                         "stream": next(iter(target.streams.values()))}}


def replay(http: Any, project: str, upload: dict[str, Any], parallel: int) -> None:
    base = f"/api/v1/projects/{project}/artifacts"

    def segment(item: dict[str, Any]) -> None:
        response = http.post(f"{base}/_chunks/missing", json=item["query"])
        response.raise_for_status()
        for pack_id, body in item["packs"]:
            http.put(f"{base}/_packs/{pack_id}", content=body,
                     headers={"Content-Type": "application/octet-stream"}).raise_for_status()

    with ThreadPoolExecutor(parallel) as pool:
        for future in [pool.submit(segment, item) for item in upload["segments"]]:
            future.result()
    http.put(f"{base}/_blobs/{upload['register']['recipe']}", content=upload["recipe"]).raise_for_status()
    response = http.post(f"{base}/_files", json=upload["register"], timeout=600)
    response.raise_for_status()


def _server(root: Path, tree: Path) -> Any:
    """A ``tracklet server --dev`` subprocess running the code of ``tree``."""
    from serverproc import TreeServer

    return TreeServer(root, tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warm", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--parallel", type=int, default=3, help="segments sent at once (the client's batches)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another tree (a checkout): its server takes the same uploads, alternated round by "
                             "round with this tree's, and the ratio of their CPU is reported")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the servers keep their data (e.g. /dev/shm: no disk writeback, whose cost "
                             "varies most here); each round's packs are removed after it")
    parser.add_argument("--lock", action="store_true",
                        help="also the seconds the server held its interpreter lock and its busiest thread's CPU "
                             "per GiB (py-spy --gil, benchmarks/artifacts_gil.py): what stays serial on many cores")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import shutil

    import httpx
    import psutil

    work = Path(tempfile.mkdtemp(prefix="tracklet-bench-server-cpu-", dir=args.work_dir))
    trees = {"this": REPO, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    servers = {name: _server(work / f"server-{name}", tree) for name, tree in trees.items()}
    size = args.size_mib << 20
    per_gib = (1 << 30) / size
    cpu: dict[str, list[float]] = {name: [] for name in servers}
    user: dict[str, list[float]] = {name: [] for name in servers}
    lock: dict[str, list[float]] = {name: [] for name in servers}
    thread: dict[str, list[float]] = {name: [] for name in servers}
    load_before = os.getloadavg()[0]
    try:
        for server in servers.values():
            server.spawn()
        for server in servers.values():
            server.wait_ready(timeout=180)
        clients = {name: httpx.Client(base_url=server.url, timeout=120,
                                      limits=httpx.Limits(max_connections=args.parallel + 1))
                   for name, server in servers.items()}
        for number in range(args.warm + args.rounds):
            source = work / "v1.bin"
            _write_large(source, size)  # fresh random bytes each round: the server lacks every chunk
            upload = record_upload(source)
            source.unlink()
            order = list(servers) if number % 2 == 0 else list(reversed(servers))  # neither always first
            for name in order:
                pid = servers[name].proc.pid
                process = psutil.Process(pid)
                os.sync()
                sampler = LockSampler(pid, work / f"lock-{name}-{number}.txt", 250) if args.lock else None
                with sampler if sampler is not None else contextlib.nullcontext():
                    if sampler is not None:
                        time.sleep(0.3)  # py-spy attaches
                    threads = thread_cpu(pid)
                    before = process.cpu_times()
                    replay(clients[name], f"p{number}", upload, args.parallel)
                    after = process.cpu_times()
                    threads_after = thread_cpu(pid)
                if number >= args.warm:
                    cpu[name].append((after.user + after.system - before.user - before.system) * per_gib)
                    user[name].append((after.user - before.user) * per_gib)
                    thread[name].append(busiest(threads, threads_after) * per_gib)
                    if sampler is not None:
                        lock[name].append(sampler.held()[0] * per_gib)
                for pack in (work / f"server-{name}").rglob("*.pack"):  # never read again: bounded space
                    pack.unlink()
        for client in clients.values():
            client.close()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {"size_mib": args.size_mib, "rounds": args.rounds, "load_before": load_before,
                              "load_after": os.getloadavg()[0]}
    for name, tree in trees.items():
        result[name] = {"tree": str(tree), "cpu_s_per_gib": [round(v, 3) for v in cpu[name]],
                        "median": round(statistics.median(cpu[name]), 3),
                        "user_s_per_gib": [round(v, 3) for v in user[name]],
                        "user_median": round(statistics.median(user[name]), 3),
                        "busiest_thread_median": round(statistics.median(thread[name]), 3)}
        if args.lock:
            result[name].update(lock_s_per_gib=[round(v, 3) for v in lock[name]],
                                lock_median=round(statistics.median(lock[name]), 3))
    if args.baseline:
        result["median_ratio"] = round(statistics.median(a / b for a, b in zip(cpu["this"], cpu["baseline"])), 3)
        result["user_median_ratio"] = round(statistics.median(a / b for a, b in zip(user["this"], user["baseline"])), 3)
        if args.lock:
            result["lock_median_ratio"] = round(statistics.median(
                a / b for a, b in zip(lock["this"], lock["baseline"])), 3)
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
