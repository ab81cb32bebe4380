"""Shared fixtures: every test gets its own data root; runs are read back through the public Api."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tracklet
from tracklet.core import lifecycle

REPO = Path(__file__).resolve().parents[1]
QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A fresh data root, also set as TRACKLET_DIR so subprocesses and the CLI find it."""
    data = tmp_path / "data"
    monkeypatch.setenv("TRACKLET_DIR", str(data))
    for name in [k for k in os.environ if k.startswith("TRACKLET_") and k != "TRACKLET_DIR"]:
        monkeypatch.delenv(name)
    return data


@pytest.fixture(autouse=True)
def _finish_leftover_runs():
    yield
    for run in lifecycle.active_runs():
        run.finish()
    lifecycle.set_current(None)


@pytest.fixture
def start(root):
    """Start a quiet run (no console or environment capture) under the test's data root."""

    def _start(**kwargs) -> tracklet.Run:
        settings = {**QUIET, **kwargs.pop("settings", {})}
        kwargs.setdefault("project", "test")
        return tracklet.init(dir=str(root), settings=settings, **kwargs)

    return _start


def read(run: tracklet.Run) -> "tracklet.RecordedRun":
    return tracklet.Api(Path(run.dir).parents[3]).run(run.path)


def run_script(code: str, *, env: dict | None = None, cwd: Path | None = None, check: bool = False,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter that imports this checkout's tracklet."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        check=check,
        timeout=timeout,
    )
