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

from tracklet.compat.wandb_system_names import MIB, tracklet_name
from tracklet.proto import records_pb2 as pb

_DISK_IO = re.compile(r"^disk\.[^/]+\.(in|out)$")
# Cumulative counters: W&B name pattern → (tracklet rate name, factor to bytes)
_COUNTERS = {"network.sent": ("network.sent_bytes_per_s", 1.0), "network.recv": ("network.received_bytes_per_s", 1.0)}


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
