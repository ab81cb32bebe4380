"""Artifacts in local mode (docs/artifacts.md): re-logging unchanged content, and cached downloads.

    python benchmarks/artifacts.py [--quick] [--size-mib 1024] [--files 1000] [--json PATH]

A3: log an artifact of one large file (``--size-mib``), then log the same content again. Reports
each log's time (``log_artifact`` + ``wait``) and bytes written to the blob store, and the ratio of
the second to the first. Target (issue #15): the second writes 0 bytes and returns in <= 1 s.

A4: download an already stored artifact of ``--files`` small files (4 kB each) into a fresh
directory, then again into the same directory (files already in place). Target: <= 1 s.
Also reports ``log_artifact``'s time on the caller's thread (the rest happens in the background).

``--quick``: 64 MiB and 200 files, for a smoke run. Absolute times on shared machines drift; the
ratios within one run are what to compare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import print_table, write_json  # noqa: E402

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}


def _write_large(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for _ in range(size >> 20):
            handle.write(block[:1] + os.urandom(15) + block[16:])  # every MiB different


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
    run.finish()
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="64 MiB and 200 files")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    size_mib, files = (64, 200) if args.quick else (args.size_mib, args.files)
    work = Path(tempfile.mkdtemp(prefix="tracklet-bench-artifacts-"))
    try:
        first = a3(work, size_mib)
        second = a4(work, files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table([
        ["A3 first log", f"{first['first']['seconds']:.3f} s", f"{first['first']['bytes_written']:,} B written",
         f"{size_mib} MiB, caller {first['first']['caller_ms']:.2f} ms"],
        ["A3 same content again", f"{first['again']['seconds']:.3f} s",
         f"{first['again']['bytes_written']:,} B written",
         f"{first['again']['files_hashed']} file(s) re-hashed, ratio {first['time_ratio']:.4f}, caller "
         f"{first['again']['caller_ms']:.2f} ms; target 0 B, <= 1 s"],
        ["A4 download, fresh dir", f"{second['fresh_seconds']:.3f} s", f"{files} files", "reflink/hardlink"],
        ["A4 download, in place", f"{second['in_place_seconds']:.3f} s", f"{files} files", "target <= 1 s"],
        ["A4 download, copies", f"{second['copy_seconds']:.3f} s", f"{files} files", "link=False"],
    ], header=["benchmark", "time", "bytes/files", "note"])
    write_json(args.json, {"a3": first, "a4": second})


if __name__ == "__main__":
    main()
