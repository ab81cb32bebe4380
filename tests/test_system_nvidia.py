"""The NVML sampler against a fake at the pynvml function boundary (tests/fake_nvml.py): real
NVMLError classes and ctypes structs, fake devices. Everything above pynvml is the real code."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

pynvml = pytest.importorskip("pynvml")

import tracklet  # noqa: E402
from tracklet.core.system.nvidia import NvidiaGpuSampler  # noqa: E402
from tracklet.core.system.processes import forget_process_tree  # noqa: E402

from conftest import read, wait_for_system_sample  # noqa: E402
from fake_nvml import GiB, MiB, a100_pcie, fake_nvml, h100_sxm, rtx_4090  # noqa: E402

GPU_METRICS = {
    "utilization_percent", "memory_utilization_percent", "memory_used_bytes", "memory_total_bytes",
    "memory_percent", "power_watts", "power_limit_watts", "power_percent", "temperature_celsius",
    "sm_clock_mhz", "memory_clock_mhz", "ecc_corrected_errors", "ecc_uncorrected_errors",
    "process_memory_used_bytes",
}
PCIE_METRICS = {"pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s"}


def _started(environ=None, **kw):
    warned = []
    sampler = NvidiaGpuSampler(report=lambda token, message: warned.append(message), environ=environ or {}, **kw)
    info = sampler.start()
    return sampler, info, warned


def test_eight_h100s_give_every_metric_in_the_documented_units(monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(i, gpu_util=10 * i, power_mw=350_000) for i in range(8)])
    nvml.gpus[3].memory_used = 40 * GiB
    nvml.gpus[3].pcie_tx_kbps = 2048
    nvml.gpus[3].ecc_corrected_volatile = 2
    sampler, info, warned = _started(pcie=True)
    values = sampler.sample()
    for index in range(8):
        assert {k.removeprefix(f"gpu.{index}.") for k in values if k.startswith(f"gpu.{index}.")} == \
            GPU_METRICS | PCIE_METRICS
        assert values[f"gpu.{index}.utilization_percent"] == 10 * index
    assert values["gpu.3.memory_used_bytes"] == 40 * GiB
    assert values["gpu.3.memory_total_bytes"] == 81559 * MiB
    assert values["gpu.3.memory_percent"] == pytest.approx(100 * 40 * GiB / (81559 * MiB))
    assert values["gpu.3.power_watts"] == 350.0 and values["gpu.3.power_limit_watts"] == 700.0
    assert values["gpu.3.power_percent"] == 50.0
    assert values["gpu.3.pcie_tx_bytes_per_s"] == 2048 * 1024
    assert values["gpu.3.ecc_corrected_errors"] == 2 and values["gpu.3.temperature_celsius"] == 31
    assert values["gpu.3.process_memory_used_bytes"] == 0
    assert "gpu.3.fan_percent" not in values  # an SXM board has no fan to report
    assert info.fields["driver_version"] == "550.54.15" and info.fields["cuda_driver_version"] == "12.4"
    assert info.fields["physical_gpu_count"] == 8
    assert [g["name"] for g in info.gpus] == ["NVIDIA H100 80GB HBM3"] * 8
    assert len({g["uuid"] for g in info.gpus}) == 8
    assert warned == [] and nvml.unfaked == []
    sampler.close()
    assert not nvml.initialized


def test_pcie_throughput_is_asked_only_when_turned_on_and_never_in_the_sample_finish_waits_for(monkeypatch):
    """The driver measures PCIe throughput by sampling for 20 ms per direction (measured on an H200:
    42 ms of a 42.4 ms sample, 1.9 of its 2.2 ms of CPU), so it is opt-in and left out of the last
    sample, which ``finish()`` waits for."""
    nvml = fake_nvml(monkeypatch, [h100_sxm(0), h100_sxm(1)], latency={"nvmlDeviceGetPcieThroughput": 0.02})
    sampler, _, _ = _started()
    assert not PCIE_METRICS & {k.removeprefix("gpu.0.") for k in sampler.sample()}
    assert nvml.calls["nvmlDeviceGetPcieThroughput"] == 0
    sampler.close()
    sampler, _, _ = _started(pcie=True)
    assert PCIE_METRICS <= {k.removeprefix("gpu.1.") for k in sampler.sample()}
    assert nvml.calls["nvmlDeviceGetPcieThroughput"] == 4  # two directions on two GPUs
    final = sampler.final_sample()
    assert nvml.calls["nvmlDeviceGetPcieThroughput"] == 4
    assert {k.removeprefix("gpu.1.") for k in final if k.startswith("gpu.1.")} == GPU_METRICS
    sampler.close()


def test_a_run_records_pcie_throughput_with_system_pcie(start, monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(0)])
    nvml.gpus[0].pcie_rx_kbps = 4096
    run = start(settings={"system_metrics": True, "system_interval": 0.05, "system_window": 0.1,
                          "system_pcie": True, "capture_wait": 60})
    wait_for_system_sample(run)
    run.finish()
    assert set(read(run).system_metrics()["gpu.0.pcie_rx_bytes_per_s"]) == {4096 * 1024.0}


def test_not_supported_drops_one_metric_on_one_gpu_and_is_not_asked_again(monkeypatch):
    nvml = fake_nvml(monkeypatch, [rtx_4090(0), h100_sxm(1)])
    sampler, _, warned = _started()
    for _ in range(3):
        values = sampler.sample()
    assert "gpu.0.fan_percent" in values and "gpu.1.fan_percent" not in values
    assert "gpu.0.ecc_corrected_errors" not in values and "gpu.1.ecc_corrected_errors" in values
    assert nvml.device_calls[("nvmlDeviceGetFanSpeed", 1)] == 1  # asked once, then remembered
    assert nvml.device_calls[("nvmlDeviceGetTotalEccErrors", 0)] == 2  # corrected and uncorrected, once each
    assert nvml.device_calls[("nvmlDeviceGetFanSpeed", 0)] == 3
    assert warned == []


def test_a_gpu_that_vanishes_is_reported_once_and_the_others_go_on(monkeypatch):
    nvml = fake_nvml(monkeypatch, [a100_pcie(0), a100_pcie(1), a100_pcie(2)])
    sampler, _, warned = _started()
    assert "gpu.1.utilization_percent" in sampler.sample()
    nvml.lose(1)
    for _ in range(3):
        values = sampler.sample()
    assert not any(k.startswith("gpu.1.") for k in values)
    assert "gpu.0.utilization_percent" in values and "gpu.2.utilization_percent" in values
    (message,) = warned
    assert "GPU 1" in message and nvml.gpus[1].uuid in message and "NVMLError_GpuIsLost" in message


@pytest.mark.parametrize("mode, error", [("no_library", "LibraryNotFound"), ("driver_not_loaded", "DriverNotLoaded")])
def test_no_driver_means_no_gpu_metrics_and_one_note(monkeypatch, mode, error):
    fake_nvml(monkeypatch, [h100_sxm(0)], mode=mode)
    sampler, info, warned = _started()
    assert not sampler.enabled and warned == []
    (note,) = info.notes
    assert note.startswith(f"GPU metrics off: no usable NVIDIA driver (NVMLError_{error}")


def test_cuda_visible_devices_by_index_and_by_uuid(monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(i, gpu_util=i) for i in range(4)])
    sampler, info, _ = _started({"CUDA_VISIBLE_DEVICES": f"3,{nvml.gpus[1].uuid[:12]}"})
    values = sampler.sample()
    assert values["gpu.0.utilization_percent"] == 3 and values["gpu.1.utilization_percent"] == 1
    assert not any(k.startswith("gpu.2.") for k in values)
    assert [(g["index"], g["nvml_index"], g["uuid"]) for g in info.gpus] == [
        (0, 3, nvml.gpus[3].uuid),
        (1, 1, nvml.gpus[1].uuid),
    ]
    assert info.fields["physical_gpu_count"] == 4
    assert info.fields["cuda_visible_devices"] == f"3,{nvml.gpus[1].uuid[:12]}"


def test_no_visible_gpu_turns_the_sampler_off(monkeypatch):
    fake_nvml(monkeypatch, [h100_sxm(0)])
    sampler, info, _ = _started({"CUDA_VISIBLE_DEVICES": ""})
    assert not sampler.enabled and info.gpus == []


def test_process_memory_counts_this_process_and_its_children_only(monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        nvml = fake_nvml(monkeypatch, [h100_sxm(0), h100_sxm(1)])
        nvml.gpus[0].processes = [(os.getpid(), 3 * GiB), (child.pid, 1 * GiB), (1, 20 * GiB)]
        nvml.gpus[0].graphics_processes = [(os.getpid(), 3 * GiB)]  # listed twice: counted once
        nvml.gpus[1].processes = [(os.getpid(), None)]  # NVML can't tell (e.g. under MPS)
        forget_process_tree()  # the child is new: list the tree now, not at the next 10 s refresh
        sampler, _, _ = _started()
        values = sampler.sample()
    finally:
        child.communicate(b"")
    assert values["gpu.0.process_memory_used_bytes"] == 4 * GiB
    assert values["gpu.1.process_memory_used_bytes"] == 0


def test_process_lists_without_permission_are_not_asked_again(monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(0)])
    no_permission = pynvml.NVML_ERROR_NO_PERMISSION
    nvml.gpus[0].errors = {
        "nvmlDeviceGetComputeRunningProcesses": no_permission,
        "nvmlDeviceGetGraphicsRunningProcesses": no_permission,
    }
    sampler, _, warned = _started()
    for _ in range(3):
        values = sampler.sample()
    assert "gpu.0.process_memory_used_bytes" not in values and "gpu.0.utilization_percent" in values
    assert nvml.calls["nvmlDeviceGetComputeRunningProcesses"] == 1 and warned == []


def test_a_transient_error_costs_one_sample_of_one_metric(monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(0)])
    sampler, _, warned = _started()
    nvml.gpus[0].errors = {"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_TIMEOUT}
    values = sampler.sample()
    assert "gpu.0.power_watts" not in values and "gpu.0.power_percent" not in values
    assert "gpu.0.utilization_percent" in values
    nvml.gpus[0].errors = {}
    assert sampler.sample()["gpu.0.power_watts"] == 69.5
    assert warned == []


def test_a_run_records_gpu_metrics_and_gpu_info(start, monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(0, gpu_util=97), rtx_4090(1, gpu_util=40)])
    nvml.gpus[0].processes = [(os.getpid(), 5 * GiB)]
    run = start(settings={"system_metrics": True, "system_interval": 0.05, "system_window": 0.1,
                          "capture_environment": True, "capture_wait": 60})
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)})
    wait_for_system_sample(run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing about the GPUs deserves a warning
        run.finish()
    recorded = read(run)
    metrics = recorded.system_metrics()
    assert set(metrics["gpu.0.utilization_percent"]) == {97.0}
    assert set(metrics["gpu.1.utilization_percent"]) == {40.0}
    assert set(metrics["gpu.0.process_memory_used_bytes"]) == {5 * GiB}
    assert "cpu.percent" in metrics and "gpu.1.fan_percent" in metrics
    info = recorded.system_info
    assert [g["name"] for g in info["gpus"]] == ["NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"]
    assert info["driver_version"] == "550.54.15" and info["notes"] == []
    assert recorded.metadata["gpus"] == ["NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"]
    run._monitor._thread.join(30)  # it shuts NVML down after finish() returned
    assert nvml.unfaked == [] and not nvml.initialized  # every init was matched by a shutdown


def test_a_crashing_nvml_wrapper_never_reaches_the_training_loop(start, monkeypatch):
    nvml = fake_nvml(monkeypatch, [h100_sxm(0)])

    def broken(handle):
        raise OSError("ctypes blew up")

    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", broken)
    # The monitor thread may sample (and warn) as soon as the run starts: catch from before that.
    with pytest.warns(tracklet.TrackletWarning, match="nvidia system metrics failed.*ctypes blew up"):
        run = start(settings={"system_metrics": True, "system_interval": 0.02, "system_window": 0.04,
                              "capture_wait": 60})
        for step in range(3):
            run.log({"x": step})
        wait_for_system_sample(run)
        run.finish()
    recorded = read(run)
    assert recorded.state == "finished" and recorded.history()["x"] == [0, 1, 2]
    assert "cpu.percent" in recorded.system_metrics()  # the host sampler went on
    assert nvml.unfaked == []


def test_the_last_sample_never_lists_the_process_tree(monkeypatch, tmp_path):
    """The sample ``finish()`` waits for uses the process tree as last listed, however old: listing
    it walks ``/proc`` (62-68 ms on a GPU node with many processes), which a run older than the
    tree's 10 s refresh paid inside ``finish()``. The samples before it refresh the tree as ever."""
    import psutil

    from tracklet.core.system import processes
    from tracklet.core.system.host import HostSampler

    walks = []
    children = psutil.Process.children
    monkeypatch.setattr(psutil.Process, "children", lambda self, **kw: walks.append(self.pid) or children(self, **kw))
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        nvml = fake_nvml(monkeypatch, [h100_sxm(0)])
        nvml.gpus[0].processes = [(os.getpid(), 3 * GiB), (child.pid, 1 * GiB)]
        gpu, _, _ = _started()
        host = HostSampler(tmp_path)
        host.start()
        # The tree as listed long ago, before the child started: older than any refresh interval.
        monkeypatch.setattr(processes, "_cached", (-1e9, frozenset({os.getpid()})))
        last = {**host.final_sample(), **gpu.final_sample()}
        assert walks == []
        assert last["gpu.0.process_memory_used_bytes"] == 3 * GiB and last["process.rss_bytes"] > 0
        assert gpu.sample()["gpu.0.process_memory_used_bytes"] == 4 * GiB  # a regular sample lists it anew
        assert walks == [os.getpid()]
    finally:
        child.communicate(b"")
        processes.forget_process_tree()
