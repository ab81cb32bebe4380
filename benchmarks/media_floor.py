"""Where the per-step caller cost of ``log({"img": Image(uint8 224×224×3)})`` goes, and what a
different copy could save: after each numpy "training step" (``--step-ms``, default 20 ms of CPU),
one timed call, in turn (so each is as cold as the others):

- ``image``: ``log({"img": tracklet.Image(a)})`` as shipped (the pooled copy);
- ``image_copy_false``: ``log({"img": tracklet.Image(a, copy=False)})``: the array itself is
  handed to the worker (README's lifetime rule: unchanged until ``flush()``), no copy;
- ``log_float``: ``log({"loss": 0.5})``;
- ``memcpy_4k``: a bare copy of the image into a reused buffer in 4 KiB pages (the pool's case);
- ``memcpy_huge``: the same into a reused buffer backed by a transparent huge page (where the
  kernel gives one: ``AnonHugePages`` is printed), i.e. what a pool of huge-page buffers would save
  in TLB misses on the destination side;
- ``noop``: a call that does nothing (the machine's floor for a cold call).

    python benchmarks/media_floor.py [--calls 200] [--step-ms 20]

Medians and 90th percentiles in µs, with the load average: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tracklet  # noqa: E402
from benchmarks.media import SHAPE, _make_step, photo  # noqa: E402

HUGE = 4 << 20  # numpy asks for transparent huge pages (madvise) for allocations this large


def _huge_buffer(nbytes: int) -> tuple[np.ndarray, int]:
    """A reused destination of ``nbytes`` inside a 2 MiB-aligned region of a large numpy array, and
    the AnonHugePages (kB) of the process once it is touched."""
    arena = np.empty(2 * HUGE, np.uint8)
    offset = (-arena.ctypes.data) % (2 << 20)
    region = arena[offset:offset + HUGE]
    region.fill(1)
    huge_kb = 0
    try:
        with open("/proc/self/smaps") as smaps:
            huge_kb = sum(int(line.split()[1]) for line in smaps if line.startswith("AnonHugePages:"))
    except OSError:
        pass
    return region[:nbytes], huge_kb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--step-ms", type=float, default=20.0)
    args = parser.parse_args()
    step, repeats = _make_step(args.step_ms)
    images = [photo(i) for i in range(8)]
    nbytes = int(np.prod(SHAPE))
    small = np.empty(nbytes, np.uint8)
    small.fill(1)
    huge, huge_kb = _huge_buffer(nbytes)
    run = tracklet.init(project="bench-media-floor", dir=tempfile.mkdtemp(),
                        settings={"console": "off", "capture_environment": False, "system_metrics": False,
                                  "media_queue": 4 * args.calls + 1})
    log, image = run.log, tracklet.Image

    def noop(data) -> None:
        return None

    calls = {
        "image": lambda data: log({"img": image(data)}),
        "image_copy_false": lambda data: log({"img": image(data, copy=False)}),
        "log_float": lambda data: log({"loss": 0.5}),
        "memcpy_4k": lambda data: memoryview(small).__setitem__(slice(None), memoryview(data).cast("B")),
        "memcpy_huge": lambda data: memoryview(huge).__setitem__(slice(None), memoryview(data).cast("B")),
        "noop": noop,
    }
    samples: dict[str, list[int]] = {name: [] for name in calls}
    clock = time.perf_counter_ns
    for i in range(args.calls):
        data = images[i % 8]
        for name, call in calls.items():
            step(repeats)
            start = clock()
            call(data)
            samples[name].append(clock() - start)
    run.finish()
    print(f"after each {args.step_ms:.0f} ms numpy step, {args.calls} calls each; AnonHugePages {huge_kb} kB")
    for name, values in samples.items():
        values.sort()
        print(f"  {name:16s} p50 {values[len(values) // 2] / 1000:7.1f} us   p90 "
              f"{values[int(len(values) * 0.9)] / 1000:7.1f} us")
    print("load average (1, 5, 15 min): " + ", ".join(f"{value:.1f}" for value in os.getloadavg()))


if __name__ == "__main__":
    main()
