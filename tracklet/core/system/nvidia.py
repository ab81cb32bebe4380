"""NVIDIA GPU metrics through NVML (the ``pynvml`` module of nvidia-ml-py).

Every NVML call is guarded. ``NVMLError_NotSupported`` on a query turns that metric off for that
device only (and it is not asked again); a device that vanishes (``NVMLError_GpuIsLost`` and
kin) is reported once and skipped from then on; no driver or no library means no GPU metrics and
one note in ``SystemInfo``, never an exception. Only the devices ``CUDA_VISIBLE_DEVICES`` lets
this process use are sampled, keyed by their visible index (what ``torch.cuda`` calls device
``i``), with their NVML index and UUID in ``SystemInfo``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Mapping, Sequence

from tracklet.core.system.processes import process_tree
from tracklet.core.system.sampler import Sampler, SamplerInfo

# NVML errors after which a device is gone for good (rather than a metric being unavailable).
_DEVICE_GONE = ("NVMLError_GpuIsLost", "NVMLError_NotFound", "NVMLError_Uninitialized", "NVMLError_LostDevice")


# What a Linux machine with a loaded NVIDIA driver has: the control device (bare metal and
# containers run with the NVIDIA runtime), WSL2's GPU device, or the driver's proc entry.
DRIVER_SIGNS = ("/dev/nvidiactl", "/dev/dxg", "/proc/driver/nvidia")


def no_driver_in_sight(signs: Sequence[str] = DRIVER_SIGNS) -> bool:
    """True on Linux when none of ``signs`` exists: NVML can't work there, so importing pynvml
    (~50 ms of a short run's startup, ctypes and subprocess included) and asking it would only
    confirm that. False where pynvml is already imported (the user's code or a test's fake
    NVML), and on other systems, where NVML itself is asked."""
    if "pynvml" in sys.modules or not sys.platform.startswith("linux"):
        return False
    return not any(os.path.exists(sign) for sign in signs)


def visible_devices(spec: str | None, uuids: list[str]) -> tuple[list[int], list[str]]:
    """NVML indices of the devices ``CUDA_VISIBLE_DEVICES=spec`` makes visible, in visible order.

    As CUDA does: unset means all; entries are indices or (prefixes of) ``GPU-`` UUIDs; the first
    invalid entry ends the list. Returns the indices and notes on anything ignored.
    """
    if spec is None:
        return list(range(len(uuids))), []
    chosen: list[int] = []
    notes: list[str] = []
    for raw in spec.split(","):
        token = raw.strip()
        if not token:
            break
        if token.startswith("MIG-"):
            notes.append(f"CUDA_VISIBLE_DEVICES entry {token!r}: MIG instances are not sampled individually")
            break
        if token.startswith("GPU-"):
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(token)]
            index = matches[0] if len(matches) == 1 else None
        else:
            try:
                index = int(token)
            except ValueError:
                index = None
            if index is not None and not 0 <= index < len(uuids):
                index = None
        if index is None:
            notes.append(f"CUDA_VISIBLE_DEVICES entry {token!r} matches no GPU; it and later entries are ignored")
            break
        if index in chosen:
            notes.append(f"CUDA_VISIBLE_DEVICES lists GPU {token!r} twice; the repeat is ignored")
            continue
        chosen.append(index)
    return chosen, notes


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Device:
    __slots__ = ("index", "nvml_index", "handle", "uuid", "unsupported", "lost")

    def __init__(self, index: int, nvml_index: int, handle: Any, uuid: str) -> None:
        self.index = index
        self.nvml_index = nvml_index
        self.handle = handle
        self.uuid = uuid
        self.unsupported: set[str] = set()
        self.lost = False


# Queries during which the driver samples for a while (nvmlDeviceGetPcieThroughput: 20 ms each).
SLOW_QUERIES = frozenset({"pcie_tx", "pcie_rx"})


class NvidiaGpuSampler(Sampler):
    name = "nvidia"

    def __init__(self, report: Callable[[Any, str], None] | None = None,
                 environ: Mapping[str, str] | None = None, driver_signs: Sequence[str] = DRIVER_SIGNS,
                 *, pcie: bool = False) -> None:
        """``pcie``: also ask each GPU for its PCIe throughput. Off by default: the driver measures
        it by sampling for 20 ms per direction, so on a real H200 the two calls took 42 ms of wall
        time and 1.9 of the 2.2 ms of CPU of a whole sample (the other ten queries: ~0.05 ms)."""
        super().__init__(report)
        self._pcie = pcie
        self._environ = os.environ if environ is None else environ
        self._driver_signs = driver_signs
        self._devices: list[_Device] = []
        self._nvml: Any = None
        self._queries: list[tuple[str, Callable[[Any], dict[str, float]]]] = []

    def start(self) -> SamplerInfo:
        info = SamplerInfo()
        if no_driver_in_sight(self._driver_signs):
            self.enabled = False
            info.notes.append("GPU metrics off: no NVIDIA driver on this machine (none of "
                              + ", ".join(self._driver_signs) + " exists)")
            return info
        try:
            import pynvml
        except ImportError:
            self.enabled = False
            info.notes.append("GPU metrics off: nvidia-ml-py is not installed (pip install nvidia-ml-py)")
            return info
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            self.enabled = False
            info.notes.append(f"GPU metrics off: no usable NVIDIA driver ({type(error).__name__}: {error})")
            return info
        self._nvml = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            uuids = [_text(pynvml.nvmlDeviceGetUUID(h)) for h in handles]
        except pynvml.NVMLError as error:
            self.close()
            self.enabled = False
            info.notes.append(f"GPU metrics off: listing GPUs failed ({type(error).__name__}: {error})")
            return info
        spec = self._environ.get("CUDA_VISIBLE_DEVICES")
        chosen, notes = visible_devices(spec, uuids)
        info.notes.extend(notes)
        info.fields["physical_gpu_count"] = count
        info.fields["cuda_visible_devices"] = spec or ""
        info.fields["driver_version"] = self._guarded_static(lambda: _text(pynvml.nvmlSystemGetDriverVersion()))
        cuda = self._guarded_static(pynvml.nvmlSystemGetCudaDriverVersion)
        info.fields["cuda_driver_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else ""
        for visible_index, nvml_index in enumerate(chosen):
            handle = handles[nvml_index]
            self._devices.append(_Device(visible_index, nvml_index, handle, uuids[nvml_index]))
            memory = self._guarded_static(pynvml.nvmlDeviceGetMemoryInfo, handle)
            info.gpus.append({
                "index": visible_index,
                "nvml_index": nvml_index,
                "name": self._guarded_static(lambda h: _text(pynvml.nvmlDeviceGetName(h)), handle) or "",
                "uuid": uuids[nvml_index],
                "memory_total_bytes": float(memory.total) if memory is not None else 0.0,
            })
        self._queries = self._build_queries(pynvml, pcie=self._pcie)
        if not self._devices:
            self.enabled = False
        return info

    def _guarded_static(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except self._nvml.NVMLError:
            return None

    @staticmethod
    def _build_queries(nvml: Any, *, pcie: bool = False) -> list[tuple[str, Callable[[Any], dict[str, float]]]]:
        """(query name, handle → {metric suffix: value}); one NVML call each, so a NotSupported
        answer turns off exactly the metrics that call provides."""

        def utilization(h: Any) -> dict[str, float]:
            rates = nvml.nvmlDeviceGetUtilizationRates(h)
            return {"utilization_percent": float(rates.gpu), "memory_utilization_percent": float(rates.memory)}

        def memory(h: Any) -> dict[str, float]:
            info = nvml.nvmlDeviceGetMemoryInfo(h)
            values = {"memory_used_bytes": float(info.used), "memory_total_bytes": float(info.total)}
            if info.total:
                values["memory_percent"] = 100.0 * info.used / info.total
            return values

        def clock(kind: int, name: str) -> Callable[[Any], dict[str, float]]:
            return lambda h: {name: float(nvml.nvmlDeviceGetClockInfo(h, kind))}

        def pcie_throughput(counter: int, name: str) -> Callable[[Any], dict[str, float]]:
            return lambda h: {name: float(nvml.nvmlDeviceGetPcieThroughput(h, counter)) * 1024.0}  # KB/s

        def ecc(kind: int, name: str) -> Callable[[Any], dict[str, float]]:
            return lambda h: {name: float(nvml.nvmlDeviceGetTotalEccErrors(h, kind, nvml.NVML_VOLATILE_ECC))}

        queries = [
            ("utilization", utilization),
            ("memory", memory),
            ("power", lambda h: {"power_watts": nvml.nvmlDeviceGetPowerUsage(h) / 1000.0}),
            ("power_limit", lambda h: {"power_limit_watts": nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0}),
            ("temperature", lambda h: {"temperature_celsius": float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))}),
            ("sm_clock", clock(nvml.NVML_CLOCK_SM, "sm_clock_mhz")),
            ("memory_clock", clock(nvml.NVML_CLOCK_MEM, "memory_clock_mhz")),
            ("fan", lambda h: {"fan_percent": float(nvml.nvmlDeviceGetFanSpeed(h))}),
            ("ecc_corrected", ecc(nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, "ecc_corrected_errors")),
            ("ecc_uncorrected", ecc(nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, "ecc_uncorrected_errors")),
        ]
        if pcie:
            queries += [("pcie_tx", pcie_throughput(nvml.NVML_PCIE_UTIL_TX_BYTES, "pcie_tx_bytes_per_s")),
                        ("pcie_rx", pcie_throughput(nvml.NVML_PCIE_UTIL_RX_BYTES, "pcie_rx_bytes_per_s"))]
        return queries

    def sample(self) -> dict[str, float]:
        return self._sample_devices(skip=frozenset())

    def final_sample(self) -> dict[str, float]:
        """The sample ``finish()`` waits for: without the 20 ms PCIe measurements, and with the
        process tree as last listed (no ``/proc`` walk)."""
        return self._sample_devices(skip=SLOW_QUERIES, refresh=False)

    def _sample_devices(self, skip: frozenset[str], refresh: bool = True) -> dict[str, float]:
        nvml = self._nvml
        values: dict[str, float] = {}
        tree: frozenset[int] | None = None
        for device in self._devices:
            if device.lost:
                continue
            prefix = f"gpu.{device.index}."
            found: dict[str, float] = {}
            for name, query in self._queries:
                if name in device.unsupported or name in skip:
                    continue
                try:
                    found.update(query(device.handle))
                except nvml.NVMLError_NotSupported:
                    device.unsupported.add(name)
                except nvml.NVMLError as error:
                    if type(error).__name__ in _DEVICE_GONE:
                        self._lose(device, error)
                        break
                    # Anything else (a timeout, an unknown error) costs this metric this sample only.
            if device.lost:
                continue
            if "power_watts" in found and found.get("power_limit_watts"):
                found["power_percent"] = 100.0 * found["power_watts"] / found["power_limit_watts"]
            if "processes" not in device.unsupported:
                if tree is None:
                    tree = process_tree(refresh=refresh)
                used = self._process_memory(device, tree)
                if used is not None:
                    found["process_memory_used_bytes"] = used
            for suffix, value in found.items():
                values[prefix + suffix] = value
        return values

    def _process_memory(self, device: _Device, tree: frozenset[int]) -> float | None:
        """GPU memory used by this process and its children on ``device``."""
        nvml = self._nvml
        used: dict[int, float] = {}
        answered = False
        for query in (nvml.nvmlDeviceGetComputeRunningProcesses, nvml.nvmlDeviceGetGraphicsRunningProcesses):
            try:
                entries = query(device.handle)
            except (nvml.NVMLError_NotSupported, nvml.NVMLError_NoPermission):
                continue
            except nvml.NVMLError as error:
                if type(error).__name__ in _DEVICE_GONE:
                    self._lose(device, error)
                return None
            answered = True
            for entry in entries:
                if entry.pid in tree and entry.usedGpuMemory is not None:
                    used[entry.pid] = max(used.get(entry.pid, 0.0), float(entry.usedGpuMemory))
        if not answered:  # neither list is available on this device: stop asking
            device.unsupported.add("processes")
            return None
        return sum(used.values())

    def _lose(self, device: _Device, error: Exception) -> None:
        device.lost = True
        self._report(
            ("gpu-lost", device.uuid),
            f"tracklet: GPU {device.index} ({device.uuid}) stopped answering ({type(error).__name__}); "
            "its metrics are no longer recorded",
        )

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
            self._nvml = None


def gpu_names() -> list[str]:
    """Model names of the visible NVIDIA GPUs; empty without a driver. For environment capture."""
    return gpus_and_driver()[0]


def gpus_and_driver() -> tuple[list[str], str]:
    """Model names of the visible NVIDIA GPUs and the driver's version; empty without a driver."""
    sampler = NvidiaGpuSampler()
    try:
        info = sampler.start()
        return [str(gpu["name"]) for gpu in info.gpus], str(info.fields.get("driver_version") or "")
    except Exception:
        return [], ""
    finally:
        sampler.close()
