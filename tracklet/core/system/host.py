"""Host metrics through psutil: CPU, memory, the disk holding the run, network, this process tree."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from tracklet.core.system.processes import process_tree
from tracklet.core.system.sampler import Sampler, SamplerInfo


class HostSampler(Sampler):
    """psutil runs for real here. Rates (bytes/s) are deltas between two samples, so the first
    sample has none."""

    name = "host"

    def __init__(self, run_dir: str | Path, *, per_core: bool = False,
                 report: Callable[[Any, str], None] | None = None) -> None:
        super().__init__(report)
        self._run_dir = str(run_dir)
        self._per_core = per_core
        self._processes: dict[int, Any] = {}
        self._disk_name: str | None = None
        self._previous: dict[str, float] = {}
        self._previous_time: float | None = None

    def start(self) -> SamplerInfo:
        import psutil

        self._psutil = psutil
        self._root = psutil.Process(os.getpid())
        self._disk_name = self._disk_for(self._run_dir)
        # Primes the CPU counters: the next call measures since now.
        if self._per_core:
            psutil.cpu_percent(percpu=True)
        else:
            psutil.cpu_percent()
        info = SamplerInfo(fields={"cpu_count": psutil.cpu_count() or 0})
        if self._disk_name is None:
            info.notes.append(f"disk I/O: no per-disk counters for {self._run_dir}; system-wide totals used")
        return info

    def _disk_for(self, path: str) -> str | None:
        """The ``disk_io_counters(perdisk=True)`` key of the device holding ``path``."""
        psutil = self._psutil
        try:
            counters = psutil.disk_io_counters(perdisk=True) or {}
            best = None
            for partition in psutil.disk_partitions(all=False):
                mount = partition.mountpoint.rstrip("/") or "/"
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and (
                    best is None or len(mount) > len(best[0])
                ):
                    best = (mount, os.path.basename(partition.device))
            if best is not None and best[1] in counters:
                return best[1]
        except Exception:
            pass
        return None

    def _tree(self, refresh: bool = True) -> list[Any]:
        """``psutil.Process`` objects for this process tree, kept across samples so that
        ``cpu_percent`` measures since the previous sample. ``refresh=False``: the processes
        listed last (see ``process_tree``)."""
        known = {}
        for pid in process_tree(refresh=refresh):
            process = self._processes.get(pid)
            if process is None:
                try:
                    process = self._root if pid == self._root.pid else self._psutil.Process(pid)
                except self._psutil.Error:
                    continue
            known[pid] = process
        self._processes = known
        return list(known.values())

    def sample(self) -> dict[str, float]:
        return self._sample()

    def final_sample(self) -> dict[str, float]:
        """The sample ``finish()`` waits for: the process tree as last listed (no ``/proc`` walk)."""
        return self._sample(refresh=False)

    def _sample(self, refresh: bool = True) -> dict[str, float]:
        psutil = self._psutil
        now = time.monotonic()
        values: dict[str, float] = {}
        if self._per_core:
            cores = psutil.cpu_percent(percpu=True)
            values["cpu.percent"] = sum(cores) / len(cores) if cores else 0.0
            for index, percent in enumerate(cores):
                values[f"cpu.{index}.percent"] = percent
        else:
            values["cpu.percent"] = psutil.cpu_percent()
        memory = psutil.virtual_memory()
        values["memory.percent"] = memory.percent
        values["memory.available_bytes"] = float(memory.available)

        cpu = rss = 0.0
        for process in self._tree(refresh):
            try:
                with process.oneshot():
                    cpu += process.cpu_percent()
                    rss += process.memory_info().rss
            except psutil.Error:  # exited between listing and reading
                continue
        values["process.cpu_percent"] = cpu
        values["process.rss_bytes"] = rss
        try:
            values["process.open_fds"] = float(self._root.num_fds())
        except (AttributeError, psutil.Error):  # num_fds is POSIX-only
            pass
        values["process.threads"] = float(self._root.num_threads())

        try:
            values["disk.percent"] = psutil.disk_usage(self._run_dir).percent
        except OSError:
            pass
        counters: dict[str, float] = {}
        disk = psutil.disk_io_counters(perdisk=self._disk_name is not None)
        if isinstance(disk, dict):
            disk = disk.get(self._disk_name)
        if disk is not None:
            counters["disk.read_bytes_per_s"] = disk.read_bytes
            counters["disk.write_bytes_per_s"] = disk.write_bytes
        network = psutil.net_io_counters()
        if network is not None:
            counters["network.sent_bytes_per_s"] = network.bytes_sent
            counters["network.received_bytes_per_s"] = network.bytes_recv
        if self._previous_time is not None and now > self._previous_time:
            elapsed = now - self._previous_time
            for name, total in counters.items():
                if name in self._previous:
                    values[name] = max(0.0, (total - self._previous[name]) / elapsed)
        self._previous = counters
        self._previous_time = now
        return values
