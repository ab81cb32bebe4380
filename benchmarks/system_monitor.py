"""CPU time one system-metrics sample costs the monitor's thread (never the training thread).

    python benchmarks/system_monitor.py [--samples 200]

Measures, each as the median thread CPU time of one ``sample()``:
- the host sampler (psutil, for real);
- the NVML sampler over 8 fake H100s (tests/fake_nvml.py at the pynvml function boundary: the
  fake answers instantly, so this is the cost of tracklet's own code per sample);
- the NVML sampler on the real driver, when this machine has one.
Target (issue #3): one full sample with 8 GPUs <= 2 ms of CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.report import print_table  # noqa: E402
from tracklet.core.system.host import HostSampler  # noqa: E402
from tracklet.core.system.nvidia import NvidiaGpuSampler  # noqa: E402


class _Patch:
    """The one method of pytest's monkeypatch that the fake uses, without pytest."""

    def __init__(self) -> None:
        self._undo: list[tuple[object, str, object]] = []

    def setattr(self, target: object, name: str, value: object, raising: bool = True) -> None:
        self._undo.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    def undo(self) -> None:
        for target, name, value in reversed(self._undo):
            setattr(target, name, value)
        self._undo.clear()


def per_sample_ms(sampler, samples: int) -> float:
    sampler.start()
    sampler.sample()  # rates and caches warm up on the first sample
    costs = []
    for _ in range(samples):
        started = time.thread_time()
        sampler.sample()
        costs.append(time.thread_time() - started)
    sampler.close()
    return statistics.median(costs) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as run_dir:
        host = per_sample_ms(HostSampler(run_dir), args.samples)
        rows.append(("host (psutil)", host))

    from fake_nvml import fake_nvml, h100_sxm

    patch = _Patch()
    try:
        fake_nvml(patch, [h100_sxm(i, gpu_util=50) for i in range(8)])
        gpus = per_sample_ms(NvidiaGpuSampler(environ={}), args.samples)
    finally:
        patch.undo()
    rows.append(("NVML, 8 fake H100s", gpus))
    rows.append(("full sample: host + 8 GPUs", host + gpus))

    real = NvidiaGpuSampler()
    info = real.start()
    if real.enabled:
        real.close()
        count = len(info.gpus)
        rows.append((f"NVML, real driver ({count} GPU{'s' if count != 1 else ''})", per_sample_ms(NvidiaGpuSampler(), 20)))
    else:
        rows.append(("NVML, real driver", None))

    print_table([(name, "n/a (no driver)" if cost is None else f"{cost:.3f} ms") for name, cost in rows],
                header=("sampler", "CPU per sample"))
    print("target: full sample with 8 GPUs <= 2 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
