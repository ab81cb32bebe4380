"""A tracking server's CPU and reads per ``Range`` request of a large media file, as a browser
seeking through a video sends them (docs/media.md, "Large files and Range requests").

    python benchmarks/media_ranges.py [--size-mib 256] [--requests 20] [--rounds 4] [--baseline DIR]

A run logs a fresh ``--size-mib`` file of random bytes as an mp4 into a data root that a local
``tracklet server --dev`` serves; after one untimed whole read (the file's first check), each
round sends ``--requests`` ``Range`` requests of up to 64 KiB at random offsets and takes the
server process's CPU seconds (user + system, /proc/PID/stat) and the bytes its ``read`` calls
returned (``rchar``, /proc/PID/io) over them, per request.

``--baseline DIR`` (another tree, e.g. ``git archive main tracklet | tar -x -C /tmp/base``) starts
a second server from it on the same data root; rounds alternate between the two (each first in
turn) and the median of the per-round CPU ratios is reported: an A/B under the same load. Say
the load (``uptime``). Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bytes_read(pid: int) -> int:
    """What process ``pid``'s ``read`` calls returned so far (``rchar``)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError(f"no rchar in /proc/{pid}/io")


def _server(root: Path, tree: Path) -> Any:
    """A ``tracklet server --dev`` subprocess on ``root`` running the code of ``tree``."""
    from serverproc import TreeServer

    return TreeServer(root, tree)


def _log_video(root: Path, size: int) -> str:
    """A finished run p/v of ``root`` logging ``size`` random bytes as an mp4: their digest."""
    import tracklet

    source = root.parent / "clip.mp4"
    with open(source, "wb") as handle:
        for _ in range(size >> 20):
            handle.write(os.urandom(1 << 20))
    run = tracklet.init(project="p", id="v", dir=str(root),
                        settings={"console": "off", "capture_environment": False, "system_metrics": False})
    run.log({"clip": tracklet.Video(str(source), format="mp4")})
    run.finish()
    source.unlink()
    (item,) = tracklet.Api(root).run("p/v").media("clip")
    return item.digest


def _round(http: Any, url: str, pid: int, size: int, requests: int, seed: int) -> tuple[float, int]:
    """(CPU seconds, bytes read) of the server over ``requests`` Range requests."""
    spans = random.Random(seed)
    cpu, read = _process_cpu(pid), _bytes_read(pid)
    for _ in range(requests):
        first = spans.randrange(size - (1 << 16))
        last = first + spans.randrange(1 << 16)
        answer = http.get(url, headers={"Range": f"bytes={first}-{last}"})
        if answer.status_code != 206 or len(answer.content) != last - first + 1:
            raise RuntimeError(f"bytes={first}-{last}: {answer.status_code}")
    return _process_cpu(pid) - cpu, _bytes_read(pid) - read


def main() -> None:
    import httpx

    from tracklet.server.verified_files import SETTLED_NS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--baseline", type=Path, default=None, help="another tree's tracklet, alternated with this one")
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="media-ranges-", dir=args.work_dir))
    trees = {"this": REPO, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    servers: dict[str, Any] = {}
    try:
        root = work / "server"
        digest = _log_video(root, size)
        import time

        time.sleep(SETTLED_NS / 1e9)  # the blob settled: its first check is remembered
        for name, tree in trees.items():
            servers[name] = _server(root, tree).start()
        cpu: dict[str, list[float]] = {name: [] for name in trees}
        read: dict[str, list[int]] = {name: [] for name in trees}
        with httpx.Client(timeout=600) as http:
            for name, server in servers.items():  # untimed: each server's first check of the file
                answer = http.get(f"{server.url}/api/v1/runs/p/v/media/{digest}")
                if answer.status_code != 200 or len(answer.content) != size:
                    raise RuntimeError(f"{name}: {answer.status_code}")
            for number in range(args.rounds):
                order = list(servers) if number % 2 == 0 else list(reversed(servers))
                for name in order:
                    server = servers[name]
                    seconds, count = _round(http, f"{server.url}/api/v1/runs/p/v/media/{digest}", server.proc.pid,
                                            size, args.requests, seed=number)
                    cpu[name].append(seconds / args.requests)
                    read[name].append(count // args.requests)
        result: dict[str, Any] = {
            "size_mib": args.size_mib, "requests": args.requests, "rounds": args.rounds,
            "load": os.getloadavg(),
            "cpu_ms_per_request": {name: [round(value * 1000, 2) for value in values] for name, values in cpu.items()},
            "bytes_read_per_request": {name: statistics.median(values) for name, values in read.items()},
        }
        if args.baseline:
            result["median_cpu_ratio"] = round(statistics.median(
                a / b for a, b in zip(cpu["this"], cpu["baseline"])), 5)
        print(json.dumps(result, indent=1))
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
