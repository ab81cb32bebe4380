"""The system monitor thread: samples every ``interval`` seconds, emits one ``SystemStats`` record
per ``window`` holding each metric's mean and max.

Why 2 s and 10 s by default: a 2 s sample sees a GPU that idles for a few seconds while the input
pipeline catches up (the mean drops, the max does not), which a single reading every 15 s (W&B's
default) mostly misses; a 10 s record keeps a day-long run at 8,640 records. Each sample costs
about a millisecond of CPU on this thread, never on the training thread.

The monitor starts its samplers (importing psutil and NVML: ~20-50 ms of CPU that a short run's
threads would otherwise share one GIL with) only when its first sample is due, ``FIRST_SAMPLE_AFTER``
seconds after the run starts (or one ``interval``, if that is shorter), and ``stop()`` never waits
for a monitor that has not taken that sample: a run that ends sooner records no system metrics
(neither ``SystemInfo`` nor ``SystemStats``) and never imports psutil or NVML for them.

Stopping a sampled monitor waits for its last records only: the last sample (each sampler's
``final_sample``: no 20 ms PCIe reading, no ``/proc`` walk for the process tree) and the partial
window, queued before the run's exit record. Closing the samplers (``nvmlShutdown``) happens after
that on the monitor's thread, which ``finish()`` does not wait for.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tracklet.core import threads
from tracklet.core.system.host import HostSampler
from tracklet.core.system.nvidia import NvidiaGpuSampler
from tracklet.core.system.sampler import Sampler, SamplerInfo

if TYPE_CHECKING:  # protobuf and logging are imported on the monitor's thread, not by init()
    from tracklet.proto import records_pb2 as pb

# Seconds from the start to the first sample (at most one interval): when the samplers start.
FIRST_SAMPLE_AFTER = 1.0


def default_samplers(run_dir: str | Path, *, per_core: bool, report: Callable[[Any, str], None],
                     pcie: bool = False) -> list[Sampler]:
    return [HostSampler(run_dir, per_core=per_core, report=report), NvidiaGpuSampler(report=report, pcie=pcie)]


class _Window:
    """Running mean and max of every metric since the window started."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.sums: dict[str, float] = {}
        self.maxima: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, float]) -> None:
        sums, maxima, counts = self.sums, self.maxima, self.counts
        for name, value in values.items():
            if name in sums:
                sums[name] += value
                counts[name] += 1
                if value > maxima[name]:
                    maxima[name] = value
            else:
                sums[name] = value
                maxima[name] = value
                counts[name] = 1

    def record(self, end: float) -> pb.Record | None:
        if not self.sums:
            return None
        from tracklet.proto import records_pb2 as pb

        record = pb.Record()
        stats = record.stats
        stats.time = end
        stats.window_start = self.start
        for name in sorted(self.sums):
            entry = stats.values.add()
            entry.name = name
            entry.value = self.sums[name] / self.counts[name]
            entry.max = self.maxima[name]
            entry.samples = self.counts[name]
        return record


class SystemMonitor:
    """Owns the sampling thread. ``put`` takes the records it produces (the run's sender queue)."""

    def __init__(
        self,
        samplers: list[Sampler],
        put: Callable[[Any], None],
        *,
        interval: float = 2.0,
        window: float = 10.0,
        report: Callable[[Any, str], None] | None = None,
        clock: Callable[[], float] = time.time,
        first_sample_after: float | None = None,
    ) -> None:
        """``first_sample_after``: seconds from ``start()`` (the gate) to the first sample; by
        default ``FIRST_SAMPLE_AFTER`` or ``interval``, whichever is shorter."""
        if interval <= 0 or window < interval:
            raise ValueError(f"system metrics need 0 < interval <= window; got interval={interval}, window={window}")
        self.samplers = samplers
        self._put = put
        self._interval = interval
        self._window_length = window
        self._first_sample_after = min(interval, FIRST_SAMPLE_AFTER) if first_sample_after is None \
            else first_sample_after
        self._report = report or (lambda token, message: None)
        self._clock = clock
        self._stop = threading.Event()
        # Whether the first sample was taken (and the SystemInfo queued), or the run ended before
        # it (abandoned: nothing is queued after that). Both change under the lock, so a run has
        # either both records or neither.
        self._lock = threading.Lock()
        self._sampled = False
        self._abandoned = False
        # Set once the last records are queued (or none will be): what stop() waits for.
        self._last_queued = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tracklet-system-monitor", daemon=True)
        self._gate: threading.Event | None = None
        self.samples_taken = 0
        self.sample_cpu_seconds = 0.0

    def start(self, gate: threading.Event | None = None) -> None:
        """Start the thread; with ``gate``, the wait for the first sample begins once the gate is
        set (``init()`` sets it as it returns)."""
        self._gate = gate
        threads.start(self._thread)

    @property
    def sampled(self) -> bool:
        """True once the first sample was taken (and the ``SystemInfo`` record queued)."""
        return self._sampled

    def request_stop(self) -> None:
        """Have the thread take its last sample now, without waiting for it (``finish()`` calls
        this first and ``stop`` later, so the last sample overlaps what finish() does between)."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop now (not at the next interval): take a last sample and emit the partial window,
        and return once they are queued (at most ``timeout`` seconds); the samplers are closed
        after that, on the monitor's thread (``nvmlShutdown`` is not waited for).

        A monitor that has not taken its first sample yet (still waiting for it, or starting its
        samplers: importing psutil, opening the NVIDIA driver) is not waited for: it queues
        nothing, and the run has no system metrics."""
        self._stop.set()
        with self._lock:
            if not self._sampled:
                self._abandoned = True
                return
        threads.wait(self._last_queued, timeout)  # in slices: a Ctrl-C is seen (core/threads.py)

    def _run(self) -> None:
        if self._gate is not None:
            self._gate.wait()
        if self._stop.wait(self._first_sample_after):
            return  # ended before the first sample was due: nothing started, nothing imported
        try:
            infos = self._start_samplers()
            if self._stop.is_set():  # the run ended while they started: it is not waiting for them
                return
            window = _Window(self._clock())
            window.add(self._sample())
            info = self._info_record(infos)
            with self._lock:
                if self._abandoned:
                    return
                self._put(info)
                self._sampled = True
            next_sample = time.monotonic()
            stopping = False
            while True:  # each turn: the clock read after a sample, then the next sample
                now = self._clock()
                if stopping or now - window.start >= self._window_length:
                    record = window.record(now)
                    if record is not None:
                        self._put(record)
                    window = _Window(now)
                if stopping:
                    break
                next_sample += self._interval
                if next_sample < time.monotonic():  # fell behind (a suspended VM): don't catch up in a burst
                    next_sample = time.monotonic() + self._interval
                stopping = self._stop.wait(max(0.0, next_sample - time.monotonic()))
                window.add(self._sample(final=stopping))
        except Exception as error:  # contained: system metrics must never take the run down
            self._report(("system-monitor", type(error)), f"tracklet: the system monitor stopped: {error!r}")
        finally:
            self._last_queued.set()  # nothing is queued after this: stop() returns
            for sampler in self.samplers:
                try:
                    sampler.close()
                except Exception:
                    pass

    def _start_samplers(self) -> list[SamplerInfo]:
        import logging

        logger = logging.getLogger("tracklet")
        infos = []
        for sampler in self.samplers:
            try:
                info = sampler.start()
            except Exception as error:
                sampler.enabled = False
                info = SamplerInfo(notes=[f"{sampler.name} metrics off: starting failed ({error!r})"])
            if info is not None:
                infos.append(info)
                for note in info.notes:  # e.g. "GPU metrics off: no usable NVIDIA driver (...)": one line each
                    logger.info("tracklet: %s", note)
        return infos

    def _info_record(self, infos: list[SamplerInfo]) -> pb.Record:
        from tracklet.proto import records_pb2 as pb

        record = pb.Record()
        info = record.system_info
        info.SetInParent()
        for part in infos:
            info.notes.extend(part.notes)
            for key in ("driver_version", "cuda_driver_version", "cuda_visible_devices"):
                if part.fields.get(key):
                    setattr(info, key, part.fields[key])
            if "physical_gpu_count" in part.fields:
                info.physical_gpu_count = part.fields["physical_gpu_count"]
            for gpu in part.gpus:
                device = info.gpus.add()
                device.index = gpu["index"]
                device.nvml_index = gpu["nvml_index"]
                device.name = gpu["name"]
                device.uuid = gpu["uuid"]
                device.memory_total_bytes = gpu["memory_total_bytes"]
        return record

    def _sample(self, final: bool = False) -> dict[str, float]:
        started = time.thread_time()
        values: dict[str, float] = {}
        for sampler in self.samplers:
            if not sampler.enabled:
                continue
            try:
                values.update(sampler.final_sample() if final else sampler.sample())
            except Exception as error:
                sampler.enabled = False
                self._report(
                    ("sampler", sampler.name),
                    f"tracklet: {sampler.name} system metrics failed and are off for this run: {error!r}",
                )
        self.samples_taken += 1
        self.sample_cpu_seconds += time.thread_time() - started
        return values
