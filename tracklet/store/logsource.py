"""Where the indexer finds record logs: the ``LogSource`` contract and its local-files version.

The indexer needs five things of a log store: which runs exist, how big a run's log is, its
intact frames after an offset, whether its writer is alive, and a location to show. A data root
on disk answers them from files (``LocalLogs``); a scaled-out server answers them from segments
in object storage indexed in PostgreSQL (``tracklet/server/segments.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from tracklet.core.layout import RunPaths, projects_dir
from tracklet.core.recordlog import LOG_FILE_NAME, ScanResult, read_log_from, writer_alive


class LogSource(Protocol):
    def runs(self) -> Iterator[RunPaths]:
        """Every run that has a log."""

    def size(self, paths: RunPaths) -> int:
        """The log's size in bytes (0 when it has none)."""

    def read_from(self, paths: RunPaths, offset: int) -> ScanResult:
        """The intact frames after ``offset`` (a frame boundary, or 0 for the whole log); a
        source may skip damaged regions to the next intact frame (``ScanResult.damages``)."""

    def alive(self, paths: RunPaths) -> bool | None:
        """Whether the run's writer is alive; None when that can't be known."""

    def location(self, paths: RunPaths) -> str:
        """Where the log is, for people (the store's ``runs.log_path``)."""


class LocalLogs:
    """Record logs under a data root on disk (``<root>/projects/<project>/runs/<id>/run.tlog``).
    ``liveness(log_file)`` says whether a writer is alive: by default, whether a process holds
    the log's writer lock; a server's copies, which no local process writes, use heartbeats."""

    def __init__(self, root: str | Path, liveness: Callable[[Path], bool | None] = writer_alive) -> None:
        self.root = Path(root)
        self._liveness = liveness

    def runs(self) -> Iterator[RunPaths]:
        base = projects_dir(self.root)
        if not base.is_dir():
            return
        for project in sorted(p for p in base.iterdir() if (p / "runs").is_dir()):
            for run_dir in sorted((project / "runs").iterdir()):
                if (run_dir / LOG_FILE_NAME).is_file():
                    yield RunPaths(self.root, project.name, run_dir.name)

    def size(self, paths: RunPaths) -> int:
        try:
            return paths.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def read_from(self, paths: RunPaths, offset: int) -> ScanResult:
        return read_log_from(paths.log_file, offset, resync=True)  # every intact frame, past damage

    def alive(self, paths: RunPaths) -> bool | None:
        return self._liveness(paths.log_file)

    def location(self, paths: RunPaths) -> str:
        return str(paths.log_file)
