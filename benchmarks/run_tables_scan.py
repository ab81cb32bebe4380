"""Finding a run's logged tables in its record log (``core/run_tables.logged_tables``: what
``use_artifact("run-<id>-<key>:v<n>")`` reads on the caller's thread) without reading the log whole.

    python benchmarks/run_tables_scan.py [--frames 1000000] [--repeat 5] [--json PATH]

Two logs, written with the record log's own writer in a temporary directory:

- tiny: ``--frames`` frames of ~20-byte records (console lines), with 10 table records spread
  among them: the case where one read per frame header dominated (~1 s a million frames);
- large: 2,000 frames of ~20 KB (history records' size) and the same 10 table records: the
  case the lookup exists for, where only ~9 bytes a frame may be read, not the log's size.

For each: the lookup's wall time (median of ``--repeat``, the file in the page cache), frames a
second, the number of reads and the bytes read (through ``run_tables._pread``), against the log's
size. Run it on two trees (``PYTHONPATH=<tree>``) for a before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracklet.core import run_tables  # noqa: E402
from tracklet.core.recordlog import RecordLogWriter  # noqa: E402
from tracklet.proto import records_pb2 as pb  # noqa: E402

TABLES = 10


def write_log(path: Path, frames: int, payload: bytes) -> int:
    """``frames`` frames of ``payload`` with ``TABLES`` table records spread among them."""
    writer = RecordLogWriter(path)
    every = max(1, frames // TABLES)
    table = 0
    for index in range(frames):
        writer.write(payload)
        if index % every == every // 2 and table < TABLES:
            record = pb.Record(table_logged=pb.TableLogged(key="preds", step=index, time=1.0, table_id=f"t{table}"))
            writer.write(record.SerializeToString())
            table += 1
        if index % 10_000 == 9_999:
            writer.flush()
    writer.close()
    return path.stat().st_size


def measure(path: Path, repeat: int) -> dict[str, Any]:
    reads: list[int] = []
    real = run_tables._pread

    def counting(fd: int, length: int, offset: int) -> bytes:
        data = real(fd, length, offset)
        reads.append(len(data))
        return data

    run_tables._pread = counting
    try:
        found = run_tables.logged_tables(path)
    finally:
        run_tables._pread = real
    assert found is not None and [t.table_id for t in found] == [f"t{i}" for i in range(TABLES)], found
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run_tables.logged_tables(path)
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "reads": len(reads), "bytes_read": sum(reads),
            "size": path.stat().st_size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tiny = pb.Record(console=pb.ConsoleOutput(lines=[pb.ConsoleLine(text="step 12 ok")])).SerializeToString()
    large = b"\x1a" + os.urandom(20_000)  # a history record's tag, then its size in bytes (never parsed)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, frames, payload in (("tiny", args.frames, tiny), ("large", 2_000, large)):
            path = Path(scratch) / f"{name}.tlog"
            write_log(path, frames, payload)
            result = measure(path, args.repeat)
            result["frames"] = frames + TABLES
            results[name] = result
            path.unlink()
    print(f"{'log':<8}{'frames':>11}{'size':>12}{'lookup':>11}{'frames/s':>13}{'reads':>10}{'bytes read':>13}")
    for name, r in results.items():
        print(f"{name:<8}{r['frames']:>11,}{r['size'] / 1e6:>10.1f}MB{r['seconds'] * 1000:>9.1f}ms"
              f"{r['frames'] / r['seconds']:>13,.0f}{r['reads']:>10,}{r['bytes_read'] / 1e6:>11.2f}MB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
