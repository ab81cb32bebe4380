"""A check, not a benchmark (issue #15, docs/artifacts.md "Durability"): a real ``tracklet server
--dev`` runs under ``strace`` while an online run logs a directory (small files, sent as a batch
and packed, and a file stored as chunks); the trace must show every blob and pack renamed into
place ``fsync``'d before its rename (as its temporary) and its directory ``fsync``'d before the
server's next database write. The unit test (``tests/test_artifacts_durability.py``) checks the
same in process at every commit; this one checks the real server process's system calls.

    python benchmarks/artifacts_durability_trace.py [WORKDIR]    (needs strace; exit 1 on a problem)
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

FINAL = re.compile(r"/(blobs/sha256/../|packs/../)[0-9a-f]{64}")
FSYNC = re.compile(r"f(?:data)?sync\(\d+<([^>]+)>\)\s+= 0")
RENAME = re.compile(r'rename(?:at2?)?\((?:AT_FDCWD(?:<[^>]*>)?, )?"([^"]+)", (?:AT_FDCWD(?:<[^>]*>)?, )?"([^"]+)"')
DB_WRITE = re.compile(r"(?:pwrite64|write)\(\d+<([^>]+\.(?:sqlite|db)(?:-wal|-journal)?)>")


def check(lines: list[str]) -> tuple[int, list[str]]:
    """(renames into place seen, problems) in an ``strace -f -y`` log."""
    synced: set[str] = set()
    pending: set[str] = set()  # renamed into place; its directory not fsync'd yet
    problems: list[str] = []
    renames = 0
    for line in lines:
        if match := FSYNC.search(line):
            synced.add(match.group(1))
            pending = {path for path in pending if os.path.dirname(path) != match.group(1)}
        elif (match := RENAME.search(line)) and FINAL.search(match.group(2)):
            renames += 1
            if match.group(1) not in synced:
                problems.append(f"not fsync'd before its rename: {match.group(2)}")
            pending.add(match.group(2))
        elif (match := DB_WRITE.search(line)) and pending:
            problems += [f"a write to {match.group(1)} before the directory of {path} was fsync'd" for path in pending]
            pending = set()
    return renames, problems


def main() -> int:
    if shutil.which("strace") is None:
        print("strace is not installed: nothing checked")
        return 0
    import tracklet
    from serverproc import Server

    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    server = Server(work / "server")
    log = work / "strace.log"
    server.args = ["strace", "-f", "-y", "-qq", "-o", str(log), "-e",
                   "trace=fsync,fdatasync,rename,renameat,renameat2,pwrite64,write", *server.args]
    server.spawn()
    try:
        server.wait_ready(timeout=180)
        files = work / "files"
        files.mkdir(exist_ok=True)
        for number in range(5):
            (files / f"f{number}.bin").write_bytes(os.urandom(30_000 + number))
        (files / "big.bin").write_bytes(os.urandom(3 << 20))
        os.environ["TRACKLET_ARTIFACT_CHUNK_THRESHOLD"] = "1MiB"
        run = tracklet.init(project="trace", dir=str(work / "root"), mode="online", settings={"base_url": server.url})
        artifact = tracklet.Artifact("data", "dataset")
        artifact.add_dir(files)
        run.log_artifact(artifact).wait()
        run.finish()
    finally:
        server.stop()
    renames, problems = check(log.read_text().splitlines())
    print(f"blobs and packs renamed into place: {renames}; problems: {len(problems)}")
    for problem in problems:
        print(" ", problem)
    return 1 if problems or not renames else 0


if __name__ == "__main__":
    sys.exit(main())
