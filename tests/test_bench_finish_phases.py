"""``benchmarks/overhead.py --targets`` explains a cold ``finish()`` from one run on another
machine (benchmarks/finish_phases.py): these tests run its cold script for real and check that
what it reports is what happened in the process (an inventory cache miss then a hit, the
phases of ``finish()``, every part of the capture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO))

from benchmarks import overhead  # noqa: E402


def _cold(data: str, settings: dict, env: dict | None = None) -> tuple[list[float], dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    done = subprocess.run([sys.executable, "-c", overhead._COLD_SCRIPT, data, json.dumps(settings)], cwd=REPO,
                          env=env, capture_output=True, text=True, check=True, timeout=120)
    *_, figures, phases = done.stdout.strip().splitlines()
    return json.loads(figures), json.loads(phases)


def test_the_cold_script_reports_where_finish_went_and_a_cache_miss_then_a_hit(tmp_path):
    data = str(tmp_path / "data")
    _, first = _cold(data, {"capture_wait": 60})  # no inventory cache yet: it scans, and waits for it
    figures, second = _cold(data, {"capture_wait": 60})
    assert first["inventory"] == "miss" and first["scans"] and first["scans"][0]["packages"] > 10
    assert second["inventory"] == "hit" and second["scans"] == []
    for sample in (first, second):
        assert sample["environment_running_after_wait"] is False and sample["incomplete"] == []
        assert set(sample["parts"]) >= {"prepare", "host", "git", "packages", "code"}
        assert set(sample["phases"]) == {"environment", "monitor", "drain", "close", "other"}
        assert sample["fsync_ms"] > 0  # finish() fsyncs the record log
    wall, cpu = second["total"]
    # Timed inside the finish() the script timed: never longer than it (how much shorter depends on
    # what preempts the process between the two clocks: no bound on a shared machine).
    assert 0 < wall <= figures[2] * 1000 + 0.5
    rows = overhead.finish_phase_rows([first, second])
    shown = {row[0]: row[1] for row in rows}
    assert shown["  package inventory from its cache"] == "1/2"
    assert shown["  capture still running after capture_wait"] == "0/2"


def test_the_first_cold_run_after_an_install_brings_the_inventory_cache_up_to_date_without_a_scan(tmp_path):
    """``pip install`` changes a watched directory: the next run reads only the new entry into
    the cache (``updated``), and records the package, with no full scan."""
    site = tmp_path / "site-packages"  # a site directory on sys.path is watched even while empty
    site.mkdir()
    data, env = str(tmp_path / "data"), {"PYTHONPATH": f"{REPO}{os.pathsep}{site}"}
    _, first = _cold(data, {"capture_wait": 60}, env)
    info = site / "tracklet_fake_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tracklet-fake-pkg\nVersion: 1.0\n")
    _, second = _cold(data, {"capture_wait": 60}, env)
    assert first["inventory"] == "miss" and first["scans"]
    assert second["inventory"] == "updated" and second["scans"] == [] and len(second["updates"]) == 1
    assert second["incomplete"] == []
    assert sum("tracklet-fake-pkg==1.0" in path.read_text() for path in (tmp_path / "data").rglob("requirements.txt")) == 1
    shown = {row[0]: row[2] for row in overhead.finish_phase_rows([first, second])}
    assert shown["  package inventory from its cache"].startswith("1 brought up to date after an install")


def test_a_capture_cut_short_by_capture_wait_is_reported_with_its_missing_parts(tmp_path):
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "git").write_text("#!/bin/sh\nsleep 60\n")  # a git that outlasts any capture_wait
    (slow / "git").chmod(0o755)
    _, sample = _cold(str(tmp_path / "data"), {"capture_wait": 0.5},
                      env={"PATH": f"{slow}:{os.environ['PATH']}"})
    assert sample["environment_running_after_wait"] is True
    assert "git" in sample["incomplete"] and "code" in sample["incomplete"]
    rows = overhead.finish_phase_rows([sample])
    (ran_out,) = [row for row in rows if row[0] == "  capture still running after capture_wait"]
    assert ran_out[1] == "1/1" and ran_out[2].startswith("incomplete: ")
