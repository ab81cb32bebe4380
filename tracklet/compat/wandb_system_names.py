"""System metric names between W&B and tracklet: W&B's gauges (``gpu.0.gpu``, ``cpu``,
``proc.memory.rssMB``...; docs: W&B "System metrics") and the tracklet metric each is
(docs/system-metrics.md), with the factor between their units. ``tracklet import wandb`` renames
W&B's samples with :func:`tracklet_name` (``importers/wandb_stats.py``); ``wandb.Api()`` gives a
run's system metrics under W&B's names too with :func:`wandb_name` (``compat/wandb/apis/public.py``).
Standard library only: importers and the compat layer both import it."""

from __future__ import annotations

import re

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
_TRACKLET_CORE_NAME = re.compile(r"^cpu\.(\d+)\.percent$")


def wandb_name(name: str) -> tuple[str, float] | None:
    """The W&B gauge a tracklet system metric is (:func:`tracklet_name` backwards), and the factor
    that turns tracklet's unit into W&B's (bytes into MB); None when W&B has no such gauge (its
    counters, such as ``network.sent``, are totals where tracklet keeps rates)."""
    if name in _TRACKLET_DIRECT:
        wandb, factor = _TRACKLET_DIRECT[name]
        return wandb, 1.0 / factor
    match = _GPU_NAME.match(name)  # gpu.N.<name>, in either naming
    if match and match.group(2) in _TRACKLET_GPU:
        return f"gpu.{match.group(1)}.{_TRACKLET_GPU[match.group(2)]}", 1.0
    match = _TRACKLET_CORE_NAME.match(name)
    if match:
        return f"cpu.{match.group(1)}.cpu_percent", 1.0
    return None
