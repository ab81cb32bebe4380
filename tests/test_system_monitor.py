"""The system monitor: aggregation, timing, shutdown, psutil for real, and NVML without a driver."""

from __future__ import annotations

import os
import threading
import time

import pytest

import tracklet
from tracklet.core.system import Sampler, SamplerInfo, SystemMonitor
from tracklet.core.system.host import HostSampler
from tracklet.core.system.nvidia import NvidiaGpuSampler, visible_devices
from tracklet.core.system.processes import forget_process_tree

from conftest import read, wait_for_system_sample

HOST_METRICS = {
    "cpu.percent", "memory.percent", "memory.available_bytes", "process.cpu_percent", "process.rss_bytes",
    "process.threads", "disk.percent", "disk.read_bytes_per_s", "disk.write_bytes_per_s",
    "network.sent_bytes_per_s", "network.received_bytes_per_s",
}


class ScriptedSampler(Sampler):
    """A source whose readings the test chooses (the monitor, not the source, is under test)."""

    name = "scripted"

    def __init__(self, readings, fail_at=None):
        super().__init__()
        self.readings = list(readings)
        self.fail_at = fail_at
        self.calls = 0
        self.closed = False

    def start(self):
        return SamplerInfo(notes=["scripted source"])

    def sample(self):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("sensor on fire")
        return self.readings.pop(0) if self.readings else {}

    def close(self):
        self.closed = True


class Collector:
    def __init__(self):
        self.records = []
        self.warnings = []

    def put(self, record):
        self.records.append(record)

    def report(self, token, message):
        self.warnings.append(message)

    def stats(self):
        return [r.stats for r in self.records if r.WhichOneof("kind") == "stats"]


def test_windows_hold_mean_and_max_and_stop_emits_the_partial_window():
    readings = [{"gpu.0.utilization_percent": v, "only_once": 5.0} if v == 10 else {"gpu.0.utilization_percent": v}
                for v in (10.0, 90.0, 20.0, 40.0, 60.0)]
    source = ScriptedSampler(readings)
    out = Collector()
    ticks = iter([0.0, 0.01, 0.02, 0.03, 0.04, 0.05])  # the wall clock read at the start and after each sample

    def wall_clock():
        return 1000.0 + next(ticks, 0.05)

    monitor = SystemMonitor([source], out.put, interval=0.01, window=0.035, clock=wall_clock, report=out.report)
    monitor.start()
    deadline = time.monotonic() + 10
    while source.calls < 5 and time.monotonic() < deadline:
        time.sleep(0.005)  # waiting for the monitor's own timer, which is what is under test
    monitor.stop(timeout=5)
    monitor._thread.join(30)  # the sources are closed after stop() returns, on the monitor's thread
    info = out.records[0].system_info
    assert list(info.notes) == ["scripted source"]
    windows = out.stats()
    assert len(windows) >= 2 and source.closed
    first = {v.name: v for v in windows[0].values}
    assert first["gpu.0.utilization_percent"].value == pytest.approx((10 + 90 + 20 + 40) / 4)
    assert first["gpu.0.utilization_percent"].max == 90.0
    assert first["gpu.0.utilization_percent"].samples == 4
    assert first["only_once"].samples == 1 and first["only_once"].value == 5.0
    assert windows[0].window_start == 1000.0 and windows[0].time == 1000.04
    assert sum(v.samples for w in windows for v in w.values if v.name == "gpu.0.utilization_percent") == 5


def test_stop_is_prompt_even_with_a_long_interval():
    source = ScriptedSampler([{"a": 1.0}, {"a": 3.0}])
    out = Collector()
    monitor = SystemMonitor([source], out.put, interval=3600.0, window=7200.0, first_sample_after=0)
    monitor.start()
    while not monitor.sampled:  # (not source.calls: a stop() between the first sample and this abandons the monitor)
        time.sleep(0.001)
    # A bound for a stuck test, not a timing check: a stop() that waited out the hour-long interval
    # returns after it with nothing queued, and the window below is missing.
    monitor.stop(timeout=60)
    (window,) = out.stats()
    (value,) = window.values
    assert (value.value, value.max, value.samples) == (2.0, 3.0, 2)  # the first sample and the last one


def test_a_failing_sampler_is_reported_once_and_the_others_go_on():
    broken = ScriptedSampler([{"x": 1.0}] * 10, fail_at=2)
    healthy = ScriptedSampler([{"y": float(i)} for i in range(100)])
    out = Collector()
    monitor = SystemMonitor([broken, healthy], out.put, interval=0.005, window=0.02, report=out.report)
    monitor.start()
    while healthy.calls < 6:
        time.sleep(0.002)
    monitor.stop(timeout=5)
    assert broken.calls == 2 and not broken.enabled
    assert len([w for w in out.warnings if "sensor on fire" in w]) == 1
    names = {v.name for w in out.stats() for v in w.values}
    assert names == {"x", "y"}


def test_interval_must_fit_in_the_window():
    with pytest.raises(ValueError, match="interval"):
        SystemMonitor([], lambda r: None, interval=5, window=1)
    with pytest.raises(ValueError, match="system_interval"):
        tracklet.init(mode="offline", settings={"system_interval": 20, "system_window": 10})


def test_host_sampler_reads_real_psutil_values(tmp_path):
    sampler = HostSampler(tmp_path)
    sampler.start()
    first = sampler.sample()
    burn = time.process_time() + 0.05
    while time.process_time() < burn:
        pass
    second = sampler.sample()
    assert "disk.read_bytes_per_s" not in first  # rates need two samples
    assert HOST_METRICS <= set(second)
    assert 0 <= second["cpu.percent"] <= 100 and 0 < second["memory.percent"] < 100
    assert second["process.rss_bytes"] > 10_000_000 and second["process.threads"] >= 1
    assert second["process.cpu_percent"] > 0
    assert second["memory.available_bytes"] > 0 and 0 < second["disk.percent"] < 100


def test_per_core_cpu_is_opt_in(tmp_path):
    sampler = HostSampler(tmp_path, per_core=True)
    sampler.start()
    values = sampler.sample()
    cores = os.cpu_count()
    assert {f"cpu.{k}.percent" for k in range(cores)} <= set(values)


def test_process_tree_includes_children(tmp_path):
    import subprocess
    import sys

    sampler = HostSampler(tmp_path)
    sampler.start()
    alone = sampler.sample()["process.rss_bytes"]
    child = subprocess.Popen([sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        # its interpreter has started (several MB): sampled as it was exec'd, on a loaded machine, it
        # held under 1 MB
        assert child.stdout.readline() == b"up\n"
        assert sampler.sample()["process.rss_bytes"] < alone + 1_000_000  # the tree is listed every 10 s...
        forget_process_tree()  # ...or now
        with_child = sampler.sample()["process.rss_bytes"]
    finally:
        child.communicate(b"")
    assert with_child > alone + 1_000_000


@pytest.fixture
def no_driver():
    """The real pynvml on a machine without an NVIDIA driver (this one and CI)."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return
    pynvml.nvmlShutdown()
    pytest.skip("this machine has an NVIDIA driver")


def test_without_a_driver_a_run_logs_one_info_line(start, caplog, no_driver):
    import logging

    with caplog.at_level(logging.INFO, logger="tracklet"):
        run = start(settings={"system_metrics": True, "system_interval": 0.01, "system_window": 60})
        wait_for_system_sample(run)
        run.finish()
    lines = [r.getMessage() for r in caplog.records if "GPU metrics off" in r.getMessage()]
    assert len(lines) == 1 and "no usable NVIDIA driver" in lines[0]
    assert read(run).state == "finished"


def test_without_a_driver_gpu_metrics_are_off_with_one_note(no_driver):
    sampler = NvidiaGpuSampler()
    info = sampler.start()
    assert not sampler.enabled
    (note,) = info.notes
    assert note.startswith("GPU metrics off: no usable NVIDIA driver (NVMLError_LibraryNotFound")


@pytest.mark.parametrize(
    "spec, expected, note",
    [
        (None, [0, 1, 2, 3], None),
        ("", [], None),
        ("2,0", [2, 0], None),
        (" 1 , 3 ", [1, 3], None),
        ("1,7,2", [1], "'7' matches no GPU"),
        ("1,-1,2", [1], "'-1' matches no GPU"),
        ("GPU-cccc,0", [2, 0], None),
        ("GPU-c", [2], None),
        ("GPU-a", [], "'GPU-a' matches no GPU"),  # ambiguous prefix
        ("0,0", [0], "twice"),
        ("MIG-1234", [], "MIG"),
    ],
)
def test_cuda_visible_devices_follows_cuda_rules(spec, expected, note):
    uuids = ["GPU-aaaa-1", "GPU-aaab-2", "GPU-cccc-3", "GPU-dddd-4"]
    chosen, notes = visible_devices(spec, uuids)
    assert chosen == expected
    if note is None:
        assert notes == []
    else:
        assert any(note in n for n in notes)


def test_a_run_records_system_metrics_and_info(start):
    run = start(settings={"system_metrics": True, "system_interval": 0.05, "system_window": 0.1})
    for step in range(5):
        run.log({"x": step})
    wait_for_system_sample(run)
    run.finish()
    recorded = read(run)
    metrics = recorded.system_metrics()
    assert metrics.num_rows >= 1 and HOST_METRICS - {"disk.read_bytes_per_s", "disk.write_bytes_per_s",
                                                      "network.sent_bytes_per_s", "network.received_bytes_per_s"} <= set(metrics)
    assert all(t > recorded.created_at for t in metrics["_timestamp"])
    peaks = recorded.system_metrics(stat="max")
    for name in ("cpu.percent", "process.rss_bytes"):
        assert all(p >= m for p, m in zip(peaks[name], metrics[name]))
    assert recorded.system_info["gpus"] == [] or recorded.system_info["physical_gpu_count"] >= 1


def test_system_metrics_off_records_none(start):
    run = start(settings={"system_metrics": False})
    run.finish()
    recorded = read(run)
    assert recorded.system_metrics().num_rows == 0 and recorded.system_info == {}
    assert not [t for t in threading.enumerate() if t.name == "tracklet-system-monitor"]


def test_finish_does_not_wait_out_the_interval(start):
    run = start(settings={"system_metrics": True, "system_interval": 3600, "system_window": 7200})
    run.log({"x": 1})
    wait_for_system_sample(run)  # taken FIRST_SAMPLE_AFTER (1 s) after init, not an hour
    finishing = threading.Thread(target=run.finish)
    finishing.start()
    # A bound for a stuck test, not a timing check: a finish() that waited out the hour-long
    # interval is still running, and one that gave up on the monitor (it waits at most 5 s) left
    # the partial window unrecorded.
    finishing.join(120)
    assert not finishing.is_alive() and run.finished
    windows = read(run).system_metrics()
    assert windows.num_rows == 1  # the partial window, recorded at finish


class Blocking(ScriptedSampler):
    """A source whose start() (importing its library, opening a driver) or close()
    (``nvmlShutdown``), as ``at`` says, waits for the test."""

    def __init__(self, readings, at):
        super().__init__(readings)
        self.at = at
        self.entered = threading.Event()
        self.release = threading.Event()

    def _wait(self, where):
        if where == self.at:
            self.entered.set()
            self.release.wait(60)

    def start(self):
        self._wait("start")
        return super().start()

    def close(self):
        self._wait("close")
        super().close()


def test_stop_never_waits_for_a_monitor_that_has_not_taken_its_first_sample():
    """A run that ends while the monitor is still starting its samplers (a driver whose init hangs,
    psutil still importing) is not held up: stop() returns at once, and the monitor queues
    nothing afterwards (no SystemInfo without stats, no late window)."""
    source = Blocking([{"a": 1.0}] * 5, at="start")
    out = Collector()
    monitor = SystemMonitor([source], out.put, interval=0.01, window=1.0, first_sample_after=0)
    monitor.start()
    assert source.entered.wait(30)
    stopper = threading.Thread(target=monitor.stop)  # stop(timeout=None): before, it waited for start()
    stopper.start()
    stopper.join(30)
    stopped_while_starting = not stopper.is_alive()
    source.release.set()
    monitor._thread.join(30)
    assert stopped_while_starting and not monitor.sampled
    assert out.records == [] and source.calls == 0 and source.closed


def test_a_monitor_that_took_its_first_sample_is_stopped_with_a_last_sample_not_its_sources_close():
    """Once sampled, stop() waits for the last sample and the partial window (they precede the
    run's exit record), not for the sources' close (``nvmlShutdown``), which the monitor's thread
    does after."""
    source = Blocking([{"a": 1.0}, {"a": 3.0}], at="close")
    out = Collector()
    monitor = SystemMonitor([source], out.put, interval=60.0, window=600.0, first_sample_after=0)
    monitor.start()
    while not monitor.sampled:
        time.sleep(0.001)
    stopper = threading.Thread(target=monitor.stop)  # stop(timeout=None): before, it waited for close()
    stopper.start()
    stopper.join(30)
    stopped_while_closing = not stopper.is_alive()
    records = list(out.records)  # queued before stop() returned
    source.release.set()
    monitor._thread.join(30)
    assert stopped_while_closing and source.closed
    assert records[0].WhichOneof("kind") == "system_info"
    (window,) = [r.stats for r in records if r.WhichOneof("kind") == "stats"]
    assert [(v.name, v.samples) for v in window.values] == [("a", 2)]


def test_a_run_finished_before_the_first_sample_records_no_system_metrics_and_never_imports_psutil(root):
    """A short script (a test, a notebook cell) ends before the monitor's first sample is due: the
    run has no system metrics (documented), finish() does not wait for the monitor, and neither
    psutil nor pynvml is imported for it (their imports once took ~20-50 ms of such a run's
    CPU). The run's own records are all there."""
    from conftest import run_script

    done = run_script("""
        import sys, tracklet
        run = tracklet.init(project="short", settings={"console": "off", "capture_environment": False,
                                                        "system_metrics": True})
        for step in range(100):
            run.log({"loss": 1.0 / (step + 1)})
        run.finish()
        print("psutil" in sys.modules, "pynvml" in sys.modules)
    """, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
    (recorded,) = tracklet.Api(root).runs("short")
    assert recorded.state == "finished" and len(recorded.history()["loss"]) == 100
    assert recorded.system_info == {} and recorded.system_metrics().num_rows == 0


def test_finish_does_not_wait_for_a_monitor_still_starting(root):
    """A driver whose nvmlInit hangs (a GPU in a bad state) must not hold up finish(): a monitor
    that has not taken its first sample is not waited for; the run is finished and its history whole.

    The fake driver's init blocks until the script lets it go, which it never does (the monitor's
    thread is a daemon): finish() is called once the monitor is inside nvmlInit (its call counted)
    and returns while it is still there (the fake's init count never went up). A finish() that waits
    for the monitor (it did once) would sit in ``SystemMonitor.stop``'s wait for its 5 s cap and
    then return all the same: a thread of the script's watches the main thread's stack for that
    wait while finish() runs, and says so."""
    from conftest import REPO, run_script

    done = run_script(f"""
        import os, sys, threading, time
        sys.path.insert(0, {str(REPO / "tests")!r})
        import pytest, tracklet
        from fake_nvml import fake_nvml, h100_sxm
        never = threading.Event()  # the driver's init never answers
        nvml = fake_nvml(pytest.MonkeyPatch(), [h100_sxm(0)], blocks={{"nvmlInit": never, "nvmlInitWithFlags": never}})
        run = tracklet.init(project="hung", settings={{"console": "off", "capture_environment": False,
                                                       "system_interval": 0.01}})
        for step in range(100):
            run.log({{"loss": 1.0 / (step + 1)}})
        while nvml.calls["nvmlInit"] + nvml.calls["nvmlInitWithFlags"] == 0:
            time.sleep(0.01)  # until the monitor is inside the driver's init

        main, finished, waited = threading.main_thread().ident, threading.Event(), []
        stop = os.path.join("system", "monitor.py")

        def watch():  # is finish() waiting in the monitor's stop()?
            while not finished.wait(0.005):
                frame = sys._current_frames().get(main)
                stack = []
                while frame is not None:
                    stack.append(frame.f_code)
                    frame = frame.f_back
                if stack and stack[0].co_filename.endswith("threading.py") and any(
                        code.co_name == "stop" and code.co_filename.endswith(stop) for code in stack):
                    waited.append(True)

        watcher = threading.Thread(target=watch)
        watcher.start()
        run.finish()
        finished.set()
        watcher.join()
        print(nvml.calls["nvmlInit"] + nvml.calls["nvmlInitWithFlags"], nvml.refcount, bool(waited))
    """, timeout=60)
    assert done.returncode == 0, done.stderr
    # One init entered, none returned (the reference count is still 0) when finish() had returned,
    # and finish() never sat waiting for the monitor.
    assert done.stdout.split() == ["1", "0", "False"], (done.stdout, done.stderr)
    (recorded,) = tracklet.Api(root).runs("hung")
    assert recorded.state == "finished" and len(recorded.history()["loss"]) == 100
    assert recorded.system_info == {}


def test_a_machine_with_no_nvidia_driver_never_imports_pynvml(tmp_path):
    """No driver device or proc entry (a laptop, CPU CI): GPU metrics are off with one note, and
    pynvml (~50 ms of a short run's startup) is never imported. Where one of them exists, NVML
    itself is asked."""
    import subprocess
    import sys
    import textwrap

    present = tmp_path / "nvidiactl"
    present.touch()
    script = textwrap.dedent(f"""
        import sys
        from tracklet.core.system.nvidia import NvidiaGpuSampler
        sampler = NvidiaGpuSampler(driver_signs=[{str(tmp_path / 'absent')!r}, "/nonexistent/dxg"])
        (note,) = sampler.start().notes
        print(note)
        print(sampler.enabled, "pynvml" in sys.modules)
        sampler = NvidiaGpuSampler(driver_signs=[{str(present)!r}])
        print(sampler.start().notes[0][:40], "pynvml" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    note, state, asked = done.stdout.splitlines()
    assert note.startswith("GPU metrics off: no NVIDIA driver on this machine (none of ") and "absent" in note
    assert state == "False False"
    # with a sign of a driver, pynvml is imported and NVML asked (here it finds no library)
    assert asked.endswith(" True")
