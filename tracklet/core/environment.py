"""Environment capture: git state, installed packages, host and hardware, gathered off the caller's
thread by a short-lived daemon thread that queues one ``Environment`` record when done.

Files written to the run's ``files/`` directory: ``diff.patch`` (``git diff HEAD``, tracked changes
only) when the working tree is dirty, and ``requirements.txt`` (``name==version`` per package).
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from tracklet.proto import records_pb2 as pb

GIT_TIMEOUT = 10.0


def _git(args: list[str], cwd: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="replace")


def capture_git(environment: pb.Environment, cwd: str, files_dir: Path) -> None:
    root = _git(["rev-parse", "--show-toplevel"], cwd)
    if root is None:
        return
    environment.git_root = root.strip()
    environment.git_commit = (_git(["rev-parse", "HEAD"], cwd) or "").strip()
    environment.git_branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or "").strip()
    environment.git_remote = (_git(["config", "--get", "remote.origin.url"], cwd) or "").strip()
    diff = _git(["diff", "HEAD", "--binary"], cwd) if environment.git_commit else None
    if diff:
        data = diff.encode("utf-8")
        environment.git_dirty = True
        environment.git_diff_sha256 = hashlib.sha256(data).hexdigest()
        (files_dir / "diff.patch").write_bytes(data)


def capture_packages(environment: pb.Environment, files_dir: Path) -> None:
    seen: dict[str, str] = {}
    for distribution in metadata.distributions():
        name = distribution.metadata.get("Name")
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={distribution.version}"
            package = environment.packages.add()
            package.name = name
            package.version = distribution.version or ""
    (files_dir / "requirements.txt").write_text("".join(line + "\n" for line in sorted(seen.values(), key=str.lower)))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def capture_environment(cwd: str, files_dir: Path) -> pb.Record:
    record = pb.Record()
    environment = record.environment
    environment.SetInParent()
    environment.hostname = socket.gethostname()
    environment.os = platform.platform()
    environment.executable = sys.executable
    environment.cpu_model = _cpu_model()
    environment.cpu_count = os.cpu_count() or 0
    try:
        import psutil

        environment.memory_total_bytes = float(psutil.virtual_memory().total)
    except Exception:
        pass
    from tracklet.core.system.nvidia import gpu_names

    environment.gpus.extend(gpu_names())
    files_dir.mkdir(parents=True, exist_ok=True)
    capture_git(environment, cwd, files_dir)
    capture_packages(environment, files_dir)
    return record


class EnvironmentCapture:
    """Runs :func:`capture_environment` on a daemon thread and queues the record it returns."""

    def __init__(self, cwd: str, files_dir: Path, put: Callable[[Any], None], report: Callable[[Any, str], None]):
        self._cwd = cwd
        self._files_dir = files_dir
        self._put = put
        self._report = report
        self._thread = threading.Thread(target=self._run, name="tracklet-environment", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._put(capture_environment(self._cwd, self._files_dir))
        except Exception as error:
            self._report("environment", f"tracklet: capturing the environment failed: {error!r}")

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)
