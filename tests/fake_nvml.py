"""A realistic fake of NVIDIA's NVML, installed at the ``pynvml`` function boundary.

The fake replaces *functions* of the real ``pynvml`` module (nvidia-ml-py) with
``monkeypatch.setattr``; everything else stays real: the ``NVMLError`` class and
its generated subclasses (``pynvml.NVMLError(code)`` still maps a code to
``NVMLError_NotSupported``, ``NVMLError_GpuIsLost``, ...), the ``NVML_*``
constants, and the ctypes structures the real wrappers return
(``c_nvmlMemory_t``, ``c_nvmlMemory_v2_t``, ``c_nvmlUtilization_t``,
``nvmlFriendlyObject`` process entries, ``c_nvmlDevice_t`` handles).

Usage from any test file (``tests/`` is on ``sys.path`` through conftest.py)::

    from fake_nvml import fake_nvml, h100_sxm, rtx_4090, GiB

    def test_something(monkeypatch):
        nvml = fake_nvml(monkeypatch, [h100_sxm(0), rtx_4090(1)])
        nvml.gpus[0].gpu_util = 97
        nvml.gpus[0].processes = [(os.getpid(), 3 * GiB)]
        ...                                   # code under test calls pynvml.*
        nvml.lose(1)                          # GPU 1 falls off the bus
        assert nvml.calls["nvmlDeviceGetFanSpeed"] == 1

Behaviour reproduced from the real library:

* every call other than ``nvmlInit``/``nvmlInitWithFlags`` raises
  ``NVMLError_Uninitialized`` while the init reference count is zero; init is
  reference counted (n inits need n shutdowns); ``nvmlShutdown`` with nothing
  initialised raises ``NVMLError_Uninitialized``;
* ``mode="no_library"``: ``nvmlInit`` raises ``NVMLError_LibraryNotFound``
  (what this machine's real pynvml does), ``mode="driver_not_loaded"``:
  ``NVMLError_DriverNotLoaded``; ``mode`` may be changed at run time;
* handles are real ``pynvml.c_nvmlDevice_t`` pointers, one stable address per
  device: like the real ones they are a fresh object on every
  ``nvmlDeviceGetHandleByIndex`` call, compare unequal to each other (ctypes
  compares by identity), are *unhashable*, and remain valid across
  shutdown/init sessions; out-of-range indices and anything that is not a
  handle of this fake raise ``NVMLError_InvalidArgument``;
* per device, query names in ``FakeGpu.unsupported`` raise
  ``NVMLError_NotSupported`` and ``FakeGpu.errors`` maps a query name to any
  NVML error code (e.g. ``NVML_ERROR_NO_PERMISSION`` for process lists);
* ``FakeNvml.lose(i)``: every call on that device's handles, and
  ``nvmlDeviceGetHandleByIndex(i)``, raise ``NVMLError_GpuIsLost``;
  ``nvmlDeviceGetCount`` still counts it (as the real driver does);
* invalid sensor / clock / PCIe counter / ECC enum values raise
  ``NVMLError_InvalidArgument``.

Checks order on every device call (as NVML does): uninitialised, invalid
handle, lost, ``errors``, ``unsupported``, invalid enum argument.

Strictness: ``install`` also patches pynvml's private ``_nvmlGetFunctionPointer``
and ``_LoadNvmlLibrary`` so that any real pynvml wrapper the fake does not
provide (or one bound early with ``from pynvml import ...``) raises
``UnfakedNvmlCall`` (an ``AssertionError``, never swallowed as an NVMLError) and
is recorded in ``FakeNvml.unfaked`` -- so tests never reach a real driver even
on a GPU machine.

Units are NVML's: bytes for memory, percent for utilisation and fan, milliwatts
for power, degrees C, MHz for clocks, KB/s for PCIe throughput.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import hashlib
import threading
import time
import uuid as _uuid
from typing import Any

import pynvml

KiB = 1024
MiB = 1024**2
GiB = 1024**3

#: ``gpuInstanceId`` / ``computeInstanceId`` of a process entry when MIG is off.
NO_MIG_INSTANCE = 0xFFFFFFFF

#: The per-device queries the fake implements; the names accepted in
#: ``FakeGpu.unsupported`` and ``FakeGpu.errors``.
DEVICE_QUERIES = frozenset(
    {
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetClockInfo",
        "nvmlDeviceGetFanSpeed",
        "nvmlDeviceGetPcieThroughput",
        "nvmlDeviceGetTotalEccErrors",
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetGraphicsRunningProcesses",
    }
)

#: Every pynvml function the fake replaces.
FAKED_FUNCTIONS = DEVICE_QUERIES | {
    "nvmlInit",
    "nvmlInitWithFlags",
    "nvmlShutdown",
    "nvmlErrorString",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
}

MODES = ("ok", "no_library", "driver_not_loaded")

# Messages of codes that NVMLError.__str__ does not know itself (it asks nvmlErrorString).
_EXTRA_ERROR_STRINGS = {
    pynvml.NVML_ERROR_IN_USE: "In use by another client",
    pynvml.NVML_ERROR_NO_DATA: "No data",
    pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES: "Insufficient resources",
    pynvml.NVML_ERROR_NOT_READY: "System is not ready",
    pynvml.NVML_ERROR_GPU_NOT_FOUND: "GPU not found",
}


class UnfakedNvmlCall(AssertionError):
    """A real pynvml wrapper that the fake does not implement was called."""


@dataclasses.dataclass
class FakeGpu:
    """One GPU's state. Every field may be changed at any time; the next query sees it."""

    name: str
    uuid: str
    memory_total: int  # bytes
    memory_used: int  # bytes, as nvmlDeviceGetMemoryInfo (v1) reports it: includes memory_reserved
    memory_reserved: int = 0  # bytes held by the driver/firmware; reported separately only by the v2 struct
    gpu_util: int = 0  # %  (c_nvmlUtilization_t.gpu)
    mem_util: int = 0  # %  (c_nvmlUtilization_t.memory: memory-controller busy time, not capacity)
    power_mw: int = 0
    power_limit_mw: int = 0
    temperature_c: int = 30
    clock_graphics_mhz: int = 0
    clock_sm_mhz: int = 0
    clock_mem_mhz: int = 0
    clock_video_mhz: int = 0
    fan_pct: int = 0
    pcie_tx_kbps: int = 0
    pcie_rx_kbps: int = 0
    ecc_corrected_volatile: int = 0
    ecc_uncorrected_volatile: int = 0
    ecc_corrected_aggregate: int = 0
    ecc_uncorrected_aggregate: int = 0
    #: compute processes: (pid, usedGpuMemory bytes or None when NVML cannot tell)
    processes: list[tuple[int, int | None]] = dataclasses.field(default_factory=list)
    #: graphics processes, same shape
    graphics_processes: list[tuple[int, int | None]] = dataclasses.field(default_factory=list)
    #: query names (see DEVICE_QUERIES) that raise NVMLError_NotSupported on this device
    unsupported: set[str] = dataclasses.field(default_factory=set)
    #: query name -> NVML error code raised instead (e.g. pynvml.NVML_ERROR_NO_PERMISSION)
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    lost: bool = False


def gpu_uuid(seed: str) -> str:
    """A deterministic UUID in NVML's format: ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``."""
    return "GPU-" + str(_uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16]))


def _preset(model: str, index: int, defaults: dict[str, Any], overrides: dict[str, Any]) -> FakeGpu:
    unknown = set(overrides) - {f.name for f in dataclasses.fields(FakeGpu)}
    if unknown:
        raise TypeError(f"unknown FakeGpu fields: {sorted(unknown)}")
    values = {"uuid": gpu_uuid(f"{model}/{index}"), **defaults, **overrides}
    return FakeGpu(**values)


def h100_sxm(index: int = 0, **overrides: Any) -> FakeGpu:
    """H100 SXM5 80 GB at idle: 81559 MiB (what NVML reports), 700 W limit, ECC, no fan (NotSupported).

    ``index`` seeds the UUID (same model and index give the same UUID); it should
    match the position the GPU gets in ``FakeNvml.gpus``.
    """
    return _preset(
        "h100_sxm",
        index,
        {
            "name": "NVIDIA H100 80GB HBM3",
            "memory_total": 81559 * MiB,
            "memory_used": 531 * MiB,
            "memory_reserved": 531 * MiB,
            "power_mw": 69_500,
            "power_limit_mw": 700_000,
            "temperature_c": 31,
            "clock_graphics_mhz": 345,
            "clock_sm_mhz": 345,
            "clock_mem_mhz": 2619,
            "clock_video_mhz": 765,
            "pcie_tx_kbps": 210,
            "pcie_rx_kbps": 470,
            "unsupported": {"nvmlDeviceGetFanSpeed"},
        },
        overrides,
    )


def a100_pcie(index: int = 0, **overrides: Any) -> FakeGpu:
    """A100 80 GB PCIe at idle: 81920 MiB, 300 W limit, ECC, passively cooled (fan NotSupported)."""
    return _preset(
        "a100_pcie",
        index,
        {
            "name": "NVIDIA A100 80GB PCIe",
            "memory_total": 81920 * MiB,
            "memory_used": 627 * MiB,
            "memory_reserved": 627 * MiB,
            "power_mw": 43_100,
            "power_limit_mw": 300_000,
            "temperature_c": 34,
            "clock_graphics_mhz": 210,
            "clock_sm_mhz": 210,
            "clock_mem_mhz": 1512,
            "clock_video_mhz": 795,
            "pcie_tx_kbps": 120,
            "pcie_rx_kbps": 300,
            "unsupported": {"nvmlDeviceGetFanSpeed"},
        },
        overrides,
    )


def rtx_4090(index: int = 0, **overrides: Any) -> FakeGpu:
    """GeForce RTX 4090 at idle: 24564 MiB, 450 W limit, fan reported, no ECC (NotSupported)."""
    return _preset(
        "rtx_4090",
        index,
        {
            "name": "NVIDIA GeForce RTX 4090",
            "memory_total": 24564 * MiB,
            "memory_used": 395 * MiB,
            "memory_reserved": 306 * MiB,
            "power_mw": 21_400,
            "power_limit_mw": 450_000,
            "temperature_c": 36,
            "clock_graphics_mhz": 210,
            "clock_sm_mhz": 210,
            "clock_mem_mhz": 405,
            "clock_video_mhz": 1185,
            "fan_pct": 30,
            "pcie_tx_kbps": 90,
            "pcie_rx_kbps": 150,
            "unsupported": {"nvmlDeviceGetTotalEccErrors"},
        },
        overrides,
    )


def _raise(code: int) -> None:
    raise pynvml.NVMLError(code)  # the real class maps the code to its real subclass


def _check_percent(what: str, value: int) -> int:
    if not 0 <= value <= 100:
        raise ValueError(f"FakeGpu.{what}={value} is not a percentage")
    return value


class FakeNvml:
    """The fake library state: GPUs, init reference count, mode and call counters.

    ``calls`` counts every call of a faked function by name (failed calls too);
    ``device_calls`` counts device queries by ``(name, index)``; ``unfaked``
    lists real wrappers that were reached (strict mode). ``latency`` maps a
    function name to seconds slept per call (the real nvmlDeviceGetPcieThroughput
    takes about 20 ms, for instance); off by default. ``blocks`` maps a function
    name to an Event each call waits for once counted (a driver call that hangs
    until the test sets it: ``calls`` says when a call is inside it).
    """

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        driver: str = "550.54.15",
        cuda: int = 12040,
        mode: str = "ok",
        latency: dict[str, float] | None = None,
        blocks: dict[str, threading.Event] | None = None,
        strict: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.gpus: list[FakeGpu] = list(gpus) if gpus is not None else []
        self.driver = driver
        self.cuda = cuda
        self.mode = mode
        self.latency: dict[str, float] = dict(latency or {})
        self.blocks: dict[str, threading.Event] = dict(blocks or {})
        self.strict = strict
        self.calls: collections.Counter[str] = collections.Counter()
        self.device_calls: collections.Counter[tuple[str, int]] = collections.Counter()
        self.unfaked: list[str] = []
        self._refcount = 0
        self._lock = threading.Lock()
        # One small buffer per device index; its address is the device's handle value.
        self._handle_buffers: dict[int, ctypes.Array] = {}
        self._index_by_address: dict[int, int] = {}

    # ----- test-facing API -------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self._refcount > 0

    @property
    def refcount(self) -> int:
        return self._refcount

    def lose(self, index: int) -> None:
        """The GPU at ``index`` falls off the bus: every call on it raises NVMLError_GpuIsLost."""
        self.gpus[index].lost = True

    def install(self, monkeypatch: Any) -> FakeNvml:
        """Patch the pynvml functions (undone by ``monkeypatch`` at test teardown)."""
        for gpu in self.gpus:
            bad = (set(gpu.unsupported) | set(gpu.errors)) - DEVICE_QUERIES
            if bad:
                raise ValueError(f"{gpu.name}: unknown query names {sorted(bad)}; known: {sorted(DEVICE_QUERIES)}")
        for name in sorted(FAKED_FUNCTIONS):
            monkeypatch.setattr(pynvml, name, getattr(self, "_" + name))
        if self.strict:
            monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer", self._unfaked_pointer)
            monkeypatch.setattr(pynvml, "_LoadNvmlLibrary", self._unfaked_load)
        return self

    # ----- machinery -------------------------------------------------------

    def _enter(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1
        delay = self.latency.get(name)
        if delay:
            time.sleep(delay)
        gate = self.blocks.get(name)
        if gate is not None:
            gate.wait()

    def _require_init(self) -> None:
        if self._refcount == 0:
            _raise(pynvml.NVML_ERROR_UNINITIALIZED)

    def _handle(self, index: int) -> Any:
        buffer = self._handle_buffers.get(index)
        if buffer is None:
            buffer = ctypes.create_string_buffer(8)
            self._handle_buffers[index] = buffer
            self._index_by_address[ctypes.addressof(buffer)] = index
        return ctypes.cast(ctypes.c_void_p(ctypes.addressof(buffer)), pynvml.c_nvmlDevice_t)

    def _device(self, name: str, handle: Any) -> FakeGpu:
        """Common prologue of every device query: count, init, handle, lost, injected errors."""
        self._enter(name)
        self._require_init()
        index = None
        if isinstance(handle, pynvml.c_nvmlDevice_t) and handle:
            index = self._index_by_address.get(ctypes.cast(handle, ctypes.c_void_p).value)
        if index is None or index >= len(self.gpus):
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        with self._lock:
            self.device_calls[(name, index)] += 1
        gpu = self.gpus[index]
        if gpu.lost:
            _raise(pynvml.NVML_ERROR_GPU_IS_LOST)
        if name in gpu.errors:
            _raise(gpu.errors[name])
        if name in gpu.unsupported:
            _raise(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def _unfaked_pointer(self, name: str) -> Any:
        self.unfaked.append(name)
        raise UnfakedNvmlCall(f"fake_nvml: the real pynvml wrapper for {name!r} was called; fake it or avoid it")

    def _unfaked_load(self) -> None:
        self.unfaked.append("_LoadNvmlLibrary")
        raise UnfakedNvmlCall(
            "fake_nvml: the real NVML library would be loaded (a real nvmlInit bound before install?)"
        )

    # ----- library ---------------------------------------------------------

    def _nvmlInitWithFlags(self, flags: int) -> None:
        self._enter("nvmlInitWithFlags")
        self._init()

    def _nvmlInit(self) -> None:
        self._enter("nvmlInit")
        self._init()

    def _init(self) -> None:
        if self.mode == "no_library":
            _raise(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        if self.mode == "driver_not_loaded":
            _raise(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
        with self._lock:
            self._refcount += 1

    def _nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        with self._lock:
            if self._refcount == 0:
                _raise(pynvml.NVML_ERROR_UNINITIALIZED)
            self._refcount -= 1

    def _nvmlErrorString(self, result: int) -> str:
        self._enter("nvmlErrorString")
        return pynvml.NVMLError._errcode_to_string.get(result) or _EXTRA_ERROR_STRINGS.get(result, "Unknown Error")

    def _nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        self._require_init()
        return self.driver

    def _nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        self._require_init()
        return self.cuda

    def _nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        self._require_init()
        return len(self.gpus)

    def _nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._enter("nvmlDeviceGetHandleByIndex")
        index = ctypes.c_uint(index).value  # as the real wrapper does: -1 becomes 4294967295
        self._require_init()
        if index >= len(self.gpus):
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if self.gpus[index].lost:
            _raise(pynvml.NVML_ERROR_GPU_IS_LOST)
        return self._handle(index)

    # ----- device queries --------------------------------------------------

    def _nvmlDeviceGetName(self, handle: Any) -> str:
        return self._device("nvmlDeviceGetName", handle).name

    def _nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._device("nvmlDeviceGetUUID", handle).uuid

    def _nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        gpu = self._device("nvmlDeviceGetMemoryInfo", handle)
        if not 0 <= gpu.memory_reserved <= gpu.memory_used <= gpu.memory_total:
            raise ValueError(f"FakeGpu memory fields inconsistent: {gpu}")
        free = gpu.memory_total - gpu.memory_used
        if not version:
            return pynvml.c_nvmlMemory_t(total=gpu.memory_total, free=free, used=gpu.memory_used)
        if version != pynvml.nvmlMemory_v2:
            _raise(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return pynvml.c_nvmlMemory_v2_t(
            version=version,
            total=gpu.memory_total,
            reserved=gpu.memory_reserved,
            free=free,
            used=gpu.memory_used - gpu.memory_reserved,
        )

    def _nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        gpu = self._device("nvmlDeviceGetUtilizationRates", handle)
        return pynvml.c_nvmlUtilization_t(
            gpu=_check_percent("gpu_util", gpu.gpu_util), memory=_check_percent("mem_util", gpu.mem_util)
        )

    def _nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return ctypes.c_uint(self._device("nvmlDeviceGetPowerUsage", handle).power_mw).value

    def _nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return ctypes.c_uint(self._device("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit_mw).value

    def _nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        gpu = self._device("nvmlDeviceGetTemperature", handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return ctypes.c_uint(gpu.temperature_c).value

    def _nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:
        gpu = self._device("nvmlDeviceGetClockInfo", handle)
        clocks = {
            pynvml.NVML_CLOCK_GRAPHICS: gpu.clock_graphics_mhz,
            pynvml.NVML_CLOCK_SM: gpu.clock_sm_mhz,
            pynvml.NVML_CLOCK_MEM: gpu.clock_mem_mhz,
            pynvml.NVML_CLOCK_VIDEO: gpu.clock_video_mhz,
        }
        if type not in clocks:
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return ctypes.c_uint(clocks[type]).value

    def _nvmlDeviceGetFanSpeed(self, handle: Any) -> int:
        return _check_percent("fan_pct", self._device("nvmlDeviceGetFanSpeed", handle).fan_pct)

    def _nvmlDeviceGetPcieThroughput(self, device: Any, counter: int) -> int:
        gpu = self._device("nvmlDeviceGetPcieThroughput", device)
        if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES:
            return ctypes.c_uint(gpu.pcie_tx_kbps).value
        if counter == pynvml.NVML_PCIE_UTIL_RX_BYTES:
            return ctypes.c_uint(gpu.pcie_rx_kbps).value
        _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def _nvmlDeviceGetTotalEccErrors(self, handle: Any, errorType: int, counterType: int) -> int:
        gpu = self._device("nvmlDeviceGetTotalEccErrors", handle)
        counts = {
            (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC): gpu.ecc_corrected_volatile,
            (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC): gpu.ecc_uncorrected_volatile,
            (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_AGGREGATE_ECC): gpu.ecc_corrected_aggregate,
            (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_AGGREGATE_ECC): gpu.ecc_uncorrected_aggregate,
        }
        if (errorType, counterType) not in counts:
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return ctypes.c_ulonglong(counts[(errorType, counterType)]).value

    @staticmethod
    def _process_entries(entries: list[tuple[int, int | None]]) -> list[Any]:
        # The real wrapper converts each c_nvmlProcessInfo_v3_t to an nvmlFriendlyObject and
        # turns the NVML_VALUE_NOT_AVAILABLE_ulonglong sentinel into None.
        return [
            pynvml.nvmlFriendlyObject(
                {
                    "pid": pid,
                    "usedGpuMemory": used,
                    "gpuInstanceId": NO_MIG_INSTANCE,
                    "computeInstanceId": NO_MIG_INSTANCE,
                }
            )
            for pid, used in entries
        ]

    def _nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        return self._process_entries(self._device("nvmlDeviceGetComputeRunningProcesses", handle).processes)

    def _nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> list[Any]:
        return self._process_entries(self._device("nvmlDeviceGetGraphicsRunningProcesses", handle).graphics_processes)


def fake_nvml(monkeypatch: Any, gpus: list[FakeGpu] | None = None, **kwargs: Any) -> FakeNvml:
    """Install a FakeNvml for the current test (plain function; call it from a test or fixture).

    ``gpus=None`` gives one idle ``h100_sxm(0)``; pass ``[]`` for a driver with no GPUs.
    ``kwargs`` go to ``FakeNvml`` (driver, cuda, mode, latency, blocks, strict).
    """
    return FakeNvml([h100_sxm(0)] if gpus is None else gpus, **kwargs).install(monkeypatch)


__all__ = [
    "DEVICE_QUERIES",
    "FAKED_FUNCTIONS",
    "NO_MIG_INSTANCE",
    "FakeGpu",
    "FakeNvml",
    "GiB",
    "KiB",
    "MiB",
    "UnfakedNvmlCall",
    "a100_pcie",
    "fake_nvml",
    "gpu_uuid",
    "h100_sxm",
    "rtx_4090",
]
