"""Per-test CPU of the whole process tree, for finding where the suite's time goes.

With ``TRACKLET_TEST_CPU_REPORT=FILE`` set, every test appends one tab-separated line to FILE: node id,
wall seconds, and the CPU seconds (user + system) of the pytest process and all its descendants
(forked servers, CLI subprocesses, scripts, Chromium) spent between the test's setup and teardown.
Wall minus CPU is time the test spent waiting (sleeps, polls, timeouts) on an idle machine; CPU is
what it costs CI's two cores whatever the load.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest


def _tree_cpu() -> float:
    """CPU seconds of this process and every descendant, including reaped children's."""
    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class CpuReport:
    def __init__(self, path: str) -> None:
        self.path = path

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        wall, cpu = time.monotonic(), _tree_cpu()
        yield
        line = f"{item.nodeid}\t{time.monotonic() - wall:.2f}\t{_tree_cpu() - cpu:.2f}\n"
        with open(self.path, "a") as report:
            report.write(line)


def register(config: pytest.Config) -> None:
    path = os.environ.get("TRACKLET_TEST_CPU_REPORT")
    if path:
        config.pluginmanager.register(CpuReport(path), "tracklet-cpu-report")
