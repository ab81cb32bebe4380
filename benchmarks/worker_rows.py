"""Where the sender's worker spends its CPU per history row, stage by stage, on one thread.

    python benchmarks/worker_rows.py             # 200 records of 2,000 rows, 10 fresh floats a row
    python benchmarks/worker_rows.py --records 50

The rows are queued as ``Run.log`` queues them (flat: the key set's marker, the step, the time,
one entry per value) and taken through the worker's own steps for one record each: planning the
slice (``BatchSender._plan``), transposing it into columns (``_Rows.columns``), encoding
(``HistoryEncoder.encode_columns``), serializing, writing to a record log (CRC and buffering;
flushed to the OS every 10 records), the summary (``commit``), and freeing the record and the
rows. Each value is a fresh float, as ``loss.item()`` gives, so freeing the rows frees them too.

Thread CPU time per row (median and minimum over the records): absolute figures move with the
machine, the stages' shares much less. A cold ``finish()`` after a tight loop spends most of its
CPU here (``overhead.py``'s cold rows), in the worker encoding the rows still queued.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table  # noqa: E402
from tracklet.core.encoder import HistoryEncoder, SummaryTracker  # noqa: E402
from tracklet.core.recordlog import RecordLogWriter  # noqa: E402
from tracklet.core.sender import BatchSender, RowKeys, _Rows  # noqa: E402

ROWS = 2_000
KEYS = tuple(f"metric_{i}" for i in range(10))
STAGES = ("plan", "transpose", "encode", "serialize", "write", "summary", "free record", "free rows")


def queued_rows(marker: RowKeys, first_step: int) -> list:
    """``ROWS`` rows as ``Run.log`` queues them, flat."""
    draw = random.random
    items: list = []
    for step in range(first_step, first_step + ROWS):
        items.extend((marker, step, time.time()) + tuple(draw() for _ in KEYS))
    return items


def measure(records: int) -> dict[str, list[float]]:
    clock = time.thread_time_ns
    marker = RowKeys(KEYS)
    encoder = HistoryEncoder(SummaryTracker(), lambda key, text: None)
    took: dict[str, list[float]] = {stage: [] for stage in STAGES}
    with tempfile.TemporaryDirectory() as root:
        writer = RecordLogWriter(Path(root) / "run.tlog")
        for index in range(records + 5):  # the first 5 warm up
            items = queued_rows(marker, index * ROWS)
            marks = [clock()]
            BatchSender._plan(items)
            marks.append(clock())
            rows = _Rows(items)
            rows.add_flat(KEYS, marker.width, 0, ROWS)
            columns = rows.columns()
            marks.append(clock())
            record = encoder.encode_columns(*columns)
            marks.append(clock())
            assert record is not None
            payload = record.SerializeToString()
            marks.append(clock())
            writer.write(payload)
            if index % 10 == 9:
                writer.flush()
            marks.append(clock())
            encoder.commit()
            marks.append(clock())
            del record, columns, rows, payload
            marks.append(clock())
            del items
            marks.append(clock())
            if index >= 5:
                for stage, start, end in zip(STAGES, marks, marks[1:]):
                    took[stage].append((end - start) / ROWS)
        writer.close()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200, help="records of 2,000 rows to measure")
    args = parser.parse_args()
    took = measure(args.records)
    rows = []
    total_median = total_min = 0.0
    for stage, values in took.items():
        values.sort()
        median, low = values[len(values) // 2], values[0]
        total_median += median
        total_min += low
        rows.append((stage, f"{median:.1f} ns", f"{low:.1f} ns"))
    rows.append(("total", f"{total_median:.1f} ns", f"{total_min:.1f} ns"))
    print_table(rows, header=("worker stage, per 10-float row", "median", "min"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
