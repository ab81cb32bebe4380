"""W&B system metrics (``stats`` records) → tracklet ``SystemStats`` windows.

W&B samples the machine and writes one ``stats`` record per sample, with its own metric names
and units (docs: W&B "System metrics"). Those that have a tracklet counterpart
(docs/system-metrics.md) are renamed and converted to its unit; W&B's cumulative counters
(network bytes, disk MB read/written since the run started) become tracklet's per-second rates
between consecutive samples. The rest keep their W&B name under ``wandb.`` so nothing is lost.
Each sample becomes one window whose mean and max are the sample itself.
"""

from __future__ import annotations

import re
from typing import Iterable

from tracklet.proto import records_pb2 as pb

MIB = 1024 * 1024

# W&B name → (tracklet name, factor)
_DIRECT = {
    "cpu": ("process.cpu_percent", 1.0),
    "memory_percent": ("memory.percent", 1.0),
    "proc.memory.availableMB": ("memory.available_bytes", MIB),
    "proc.memory.rssMB": ("process.rss_bytes", MIB),
    "proc.cpu.threads": ("process.threads", 1.0),
    "disk./.usagePercent": ("disk.percent", 1.0),
}
_GPU = {
    "gpu": "utilization_percent",
    "memory": "memory_utilization_percent",
    "memoryAllocated": "memory_percent",
    "memoryAllocatedBytes": "memory_used_bytes",
    "temp": "temperature_celsius",
    "powerWatts": "power_watts",
    "powerPercent": "power_percent",
    "enforcedPowerLimitWatts": "power_limit_watts",
    "smClock": "sm_clock_mhz",
    "memoryClock": "memory_clock_mhz",
    "fanSpeed": "fan_percent",
    "correctedMemoryErrors": "ecc_corrected_errors",
    "uncorrectedMemoryErrors": "ecc_uncorrected_errors",
}
_GPU_NAME = re.compile(r"^gpu\.(\d+)\.(\w+)$")
_CORE_NAME = re.compile(r"^cpu\.(\d+)\.cpu_percent$")
_DISK_IO = re.compile(r"^disk\.[^/]+\.(in|out)$")
# Cumulative counters: W&B name pattern → (tracklet rate name, factor to bytes)
_COUNTERS = {"network.sent": ("network.sent_bytes_per_s", 1.0), "network.recv": ("network.received_bytes_per_s", 1.0)}


def tracklet_name(name: str) -> tuple[str, float] | None:
    """The tracklet name and unit factor of a W&B gauge, or None when it has no counterpart."""
    if name in _DIRECT:
        return _DIRECT[name]
    match = _GPU_NAME.match(name)
    if match and match.group(2) in _GPU:
        return f"gpu.{match.group(1)}.{_GPU[match.group(2)]}", 1.0
    match = _CORE_NAME.match(name)
    if match:
        return f"cpu.{match.group(1)}.percent", 1.0
    return None


_TRACKLET_DIRECT = {tracklet: (wandb, factor) for wandb, (tracklet, factor) in _DIRECT.items()}
_TRACKLET_GPU = {tracklet: wandb for wandb, tracklet in _GPU.items()}
_TRACKLET_GPU_NAME = re.compile(r"^gpu\.(\d+)\.(\w+)$")
_TRACKLET_CORE_NAME = re.compile(r"^cpu\.(\d+)\.percent$")


def wandb_name(name: str) -> tuple[str, float] | None:
    """The W&B gauge a tracklet system metric is (:func:`tracklet_name` backwards), and the factor
    that turns tracklet's unit into W&B's (bytes into MB); None when W&B has no such gauge (its
    counters, such as ``network.sent``, are totals where tracklet keeps rates)."""
    if name in _TRACKLET_DIRECT:
        wandb, factor = _TRACKLET_DIRECT[name]
        return wandb, 1.0 / factor
    match = _TRACKLET_GPU_NAME.match(name)
    if match and match.group(2) in _TRACKLET_GPU:
        return f"gpu.{match.group(1)}.{_TRACKLET_GPU[match.group(2)]}", 1.0
    match = _TRACKLET_CORE_NAME.match(name)
    if match:
        return f"cpu.{match.group(1)}.cpu_percent", 1.0
    return None


def stats_records(samples: Iterable[tuple[float, dict[str, float]]]) -> list[pb.Record]:
    """One ``SystemStats`` record per W&B sample (``(time, {name: value})``, in time order)."""
    records = []
    previous_time: float | None = None
    previous_counters: dict[str, float] = {}
    for when, values in samples:
        record = pb.Record()
        stats = record.stats
        stats.time = when
        stats.window_start = previous_time if previous_time is not None else when
        converted: dict[str, float] = {}
        counters: dict[str, float] = {}
        for name, value in values.items():
            if name in _COUNTERS:
                counters[name] = value
            elif _DISK_IO.match(name):  # per device, MB since start: summed over devices
                direction = "disk.read" if name.endswith(".in") else "disk.write"
                counters[direction] = counters.get(direction, 0.0) + value * MIB
            else:
                mapped = tracklet_name(name)
                if mapped is None:
                    converted[f"wandb.{name}"] = value
                else:
                    converted[mapped[0]] = value * mapped[1]
        if previous_time is not None and when > previous_time:
            elapsed = when - previous_time
            for name, total in counters.items():
                if name in previous_counters:
                    rate = max(0.0, total - previous_counters[name]) / elapsed
                    target = _COUNTERS[name][0] if name in _COUNTERS else f"{name}_bytes_per_s"
                    converted[target] = rate
        previous_counters, previous_time = counters, when
        for name, value in converted.items():
            entry = stats.values.add()
            entry.name = name
            entry.value = value
            entry.max = value
            entry.samples = 1
        records.append(record)
    return records
