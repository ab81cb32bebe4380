"""Pins the realism that tests/fake_nvml.py promises: real pynvml errors, structs and handle semantics."""

from __future__ import annotations

import os
import re
import threading

import pynvml
import pytest
from fake_nvml import (
    DEVICE_QUERIES,
    NO_MIG_INSTANCE,
    FakeNvml,
    GiB,
    MiB,
    UnfakedNvmlCall,
    a100_pcie,
    fake_nvml,
    h100_sxm,
    rtx_4090,
)

UUID_RE = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _device_calls(handle):
    """One call of every device query the fake implements, with valid arguments."""
    return {
        "nvmlDeviceGetName": lambda: pynvml.nvmlDeviceGetName(handle),
        "nvmlDeviceGetUUID": lambda: pynvml.nvmlDeviceGetUUID(handle),
        "nvmlDeviceGetMemoryInfo": lambda: pynvml.nvmlDeviceGetMemoryInfo(handle),
        "nvmlDeviceGetUtilizationRates": lambda: pynvml.nvmlDeviceGetUtilizationRates(handle),
        "nvmlDeviceGetPowerUsage": lambda: pynvml.nvmlDeviceGetPowerUsage(handle),
        "nvmlDeviceGetEnforcedPowerLimit": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle),
        "nvmlDeviceGetTemperature": lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
        "nvmlDeviceGetClockInfo": lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
        "nvmlDeviceGetFanSpeed": lambda: pynvml.nvmlDeviceGetFanSpeed(handle),
        "nvmlDeviceGetPcieThroughput": lambda: pynvml.nvmlDeviceGetPcieThroughput(
            handle, pynvml.NVML_PCIE_UTIL_TX_BYTES
        ),
        "nvmlDeviceGetTotalEccErrors": lambda: pynvml.nvmlDeviceGetTotalEccErrors(
            handle, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC
        ),
        "nvmlDeviceGetComputeRunningProcesses": lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(handle),
        "nvmlDeviceGetGraphicsRunningProcesses": lambda: pynvml.nvmlDeviceGetGraphicsRunningProcesses(handle),
    }


def test_device_call_table_covers_every_query():
    assert set(_device_calls(None)) == DEVICE_QUERIES


def test_no_driver_modes_raise_the_real_error_subclasses(monkeypatch):
    nvml = fake_nvml(monkeypatch, mode="no_library")
    with pytest.raises(pynvml.NVMLError_LibraryNotFound) as err:
        pynvml.nvmlInit()
    assert type(err.value) is pynvml.NVMLError_LibraryNotFound
    assert isinstance(err.value, pynvml.NVMLError)
    assert err.value.value == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    assert str(err.value) == "NVML Shared Library Not Found"
    # A failed init leaves the library uninitialised, as the real one does.
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()

    nvml.mode = "driver_not_loaded"
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded) as err:
        pynvml.nvmlInit()
    assert err.value.value == pynvml.NVML_ERROR_DRIVER_NOT_LOADED

    nvml.mode = "ok"
    pynvml.nvmlInit()
    assert pynvml.nvmlDeviceGetCount() == 1
    assert nvml.calls["nvmlInit"] == 3


def test_no_library_mode_matches_real_pynvml_without_a_driver():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        pass
    else:  # a machine with a driver: nothing to compare against
        pynvml.nvmlShutdown()
        pytest.skip("NVML is present on this machine")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()


def test_calls_before_init_raise_uninitialized(monkeypatch):
    fake_nvml(monkeypatch, [h100_sxm(0)])
    for call in [
        pynvml.nvmlDeviceGetCount,
        pynvml.nvmlSystemGetDriverVersion,
        pynvml.nvmlSystemGetCudaDriverVersion,
        pynvml.nvmlShutdown,
        lambda: pynvml.nvmlDeviceGetHandleByIndex(0),
    ]:
        with pytest.raises(pynvml.NVMLError_Uninitialized) as err:
            call()
        assert err.value.value == pynvml.NVML_ERROR_UNINITIALIZED


def test_init_is_reference_counted_and_handles_survive_sessions(monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(0)])
    pynvml.nvmlInit()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    pynvml.nvmlShutdown()
    assert nvml.refcount == 1
    assert pynvml.nvmlDeviceGetName(handle) == "NVIDIA H100 80GB HBM3"  # still initialised
    pynvml.nvmlShutdown()
    assert not nvml.initialized
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetName(handle)
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlShutdown()  # one shutdown too many
    pynvml.nvmlInit()
    assert pynvml.nvmlDeviceGetName(handle) == "NVIDIA H100 80GB HBM3"  # handle from the previous session


def test_handles_are_real_opaque_device_pointers(monkeypatch):
    fake_nvml(monkeypatch, [h100_sxm(0), rtx_4090(1)])
    pynvml.nvmlInit()
    first = pynvml.nvmlDeviceGetHandleByIndex(0)
    again = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(first, pynvml.c_nvmlDevice_t)
    assert not isinstance(first, int)
    assert first is not again and first != again  # like ctypes pointers from the real library
    with pytest.raises(TypeError):
        hash(first)  # real handles cannot be dict keys either
    assert pynvml.nvmlDeviceGetUUID(first) == pynvml.nvmlDeviceGetUUID(again)

    for bad_index in (2, 99, -1):
        with pytest.raises(pynvml.NVMLError_InvalidArgument) as err:
            pynvml.nvmlDeviceGetHandleByIndex(bad_index)
        assert err.value.value == pynvml.NVML_ERROR_INVALID_ARGUMENT
    for bad_handle in (0, 1, None, pynvml.c_nvmlDevice_t()):
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetName(bad_handle)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetTemperature(first, 7)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetClockInfo(first, pynvml.NVML_CLOCK_COUNT)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetPcieThroughput(first, pynvml.NVML_PCIE_UTIL_COUNT)


def test_return_types_match_the_real_structs(monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(0)], driver="550.54.15", cuda=12040)
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    assert pynvml.nvmlSystemGetDriverVersion() == "550.54.15"
    assert pynvml.nvmlSystemGetCudaDriverVersion() == 12040
    assert type(pynvml.nvmlDeviceGetName(handle)) is str
    assert UUID_RE.match(pynvml.nvmlDeviceGetUUID(handle))

    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    assert isinstance(memory, pynvml.c_nvmlMemory_t)
    assert [f for f, _ in type(memory)._fields_] == ["total", "free", "used"]
    assert memory.total == 81559 * MiB and memory.free + memory.used == memory.total
    assert all(type(v) is int for v in (memory.total, memory.free, memory.used))
    memory_v2 = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
    assert isinstance(memory_v2, pynvml.c_nvmlMemory_v2_t)
    assert memory_v2.reserved + memory_v2.used + memory_v2.free == memory_v2.total

    nvml.gpus[0].gpu_util, nvml.gpus[0].mem_util = 97, 41
    util = pynvml.nvmlDeviceGetUtilizationRates(handle)
    assert isinstance(util, pynvml.c_nvmlUtilization_t)
    assert (util.gpu, util.memory) == (97, 41)

    assert pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) == 700_000  # mW
    assert 0 < pynvml.nvmlDeviceGetPowerUsage(handle) < 700_000
    assert type(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)) is int
    assert pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM) == 2619
    assert type(pynvml.nvmlDeviceGetPcieThroughput(handle, pynvml.NVML_PCIE_UTIL_RX_BYTES)) is int
    nvml.gpus[0].ecc_uncorrected_volatile = 2
    assert (
        pynvml.nvmlDeviceGetTotalEccErrors(handle, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC)
        == 2
    )


def test_processes_are_friendly_objects_with_pid_and_used_memory(monkeypatch):
    me, child = os.getpid(), os.getpid() + 1
    gpu = h100_sxm(0, processes=[(me, 3 * GiB), (child, None)], graphics_processes=[])
    fake_nvml(monkeypatch, [gpu, rtx_4090(1, errors={"nvmlDeviceGetComputeRunningProcesses": 4})])
    pynvml.nvmlInit()
    procs = pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(0))
    assert all(isinstance(p, pynvml.nvmlFriendlyObject) for p in procs)
    assert [(p.pid, p.usedGpuMemory) for p in procs] == [(me, 3 * GiB), (child, None)]
    assert procs[0].gpuInstanceId == procs[0].computeInstanceId == NO_MIG_INSTANCE
    assert pynvml.nvmlDeviceGetGraphicsRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(0)) == []
    with pytest.raises(pynvml.NVMLError_NoPermission):
        pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(1))


def test_not_supported_is_per_device_and_counted(monkeypatch):
    nvml = fake_nvml(
        monkeypatch, [h100_sxm(0), rtx_4090(1), a100_pcie(2, unsupported={"nvmlDeviceGetEnforcedPowerLimit"})]
    )
    pynvml.nvmlInit()
    h100, rtx, a100 = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(3))

    with pytest.raises(pynvml.NVMLError_NotSupported) as err:
        pynvml.nvmlDeviceGetFanSpeed(h100)
    assert type(err.value) is pynvml.NVMLError_NotSupported
    assert err.value.value == pynvml.NVML_ERROR_NOT_SUPPORTED
    assert (
        pynvml.nvmlDeviceGetTotalEccErrors(h100, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC) == 0
    )

    assert pynvml.nvmlDeviceGetFanSpeed(rtx) == 30
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetTotalEccErrors(rtx, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC)
    assert pynvml.nvmlDeviceGetMemoryInfo(rtx).total == 24564 * MiB
    assert pynvml.nvmlDeviceGetEnforcedPowerLimit(rtx) == 450_000

    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetEnforcedPowerLimit(a100)
    assert pynvml.nvmlDeviceGetPowerUsage(a100) > 0

    assert nvml.calls["nvmlDeviceGetFanSpeed"] == 2
    assert nvml.device_calls[("nvmlDeviceGetFanSpeed", 0)] == 1
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 3
    uuids = {pynvml.nvmlDeviceGetUUID(h) for h in (h100, rtx, a100)}
    assert len(uuids) == 3 and all(UUID_RE.match(u) for u in uuids)


def test_lost_gpu_raises_gpu_is_lost_everywhere(monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(0), h100_sxm(1)])
    pynvml.nvmlInit()
    lost = pynvml.nvmlDeviceGetHandleByIndex(1)
    nvml.lose(1)
    for name, call in _device_calls(lost).items():
        with pytest.raises(pynvml.NVMLError_GpuIsLost) as err:
            call()
        assert err.value.value == pynvml.NVML_ERROR_GPU_IS_LOST, name
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByIndex(1)
    assert pynvml.nvmlDeviceGetCount() == 2  # the driver still counts it
    healthy = pynvml.nvmlDeviceGetHandleByIndex(0)
    for name, call in _device_calls(healthy).items():
        if name in nvml.gpus[0].unsupported:
            continue
        call()


def test_unfaked_functions_fail_loudly(monkeypatch):
    nvml = fake_nvml(monkeypatch)
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(UnfakedNvmlCall):
        pynvml.nvmlDeviceGetSerial(handle)
    assert nvml.unfaked == ["nvmlDeviceGetSerial"]


def test_fake_is_undone_with_the_monkeypatch():
    real_init = pynvml.nvmlInit
    with pytest.MonkeyPatch.context() as mp:
        fake_nvml(mp)
        assert pynvml.nvmlInit is not real_init
    assert pynvml.nvmlInit is real_init


def test_misconfiguration_is_reported(monkeypatch):
    with pytest.raises(ValueError, match="unknown query names"):
        fake_nvml(monkeypatch, [h100_sxm(0, unsupported={"nvmlDeviceGetFanSpeeed"})])
    with pytest.raises(TypeError):
        h100_sxm(0, utilisation=5)
    with pytest.raises(ValueError):
        FakeNvml([], mode="nope")


def test_counters_are_thread_safe(monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(0)])
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    def sample():
        for _ in range(500):
            pynvml.nvmlDeviceGetUtilizationRates(handle)

    threads = [threading.Thread(target=sample) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert nvml.calls["nvmlDeviceGetUtilizationRates"] == 2000
