"""Where the indexer finds record logs: the ``LogSource`` contract and its local-files version.

The indexer needs five things of a log store: which runs exist, how big a run's log is, its
intact frames after an offset, whether its writer is alive, and a location to show. A data root
on disk answers them from files (``LocalLogs``); a scaled-out server answers them from segments
in object storage indexed in PostgreSQL (``tracklet/server/segments.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Protocol

from tracklet.core.layout import RunPaths, iter_runs
from tracklet.core.recordlog import (FRAME_HEADER, MAGIC, MAX_RECORD_BYTES, Damage, ScanResult,
                                     read_log_from, scan, scan_frames, writer_alive)


class LogSource(Protocol):
    def runs(self) -> Iterator[RunPaths]:
        """Every run that has a log."""

    def parts(self, paths: RunPaths) -> list[str]:
        """The labels of the run's parts (a shared run's secondary writers' logs,
        docs/shared-runs.md), in name order: ``RunPaths.part_paths(label)`` is each one's paths,
        which every other method takes as it takes a run's."""

    def size(self, paths: RunPaths) -> int:
        """The log's size in bytes (0 when it has none)."""

    def read_from(self, paths: RunPaths, offset: int, limit: int | None = None, *,
                  bound: int | None = None) -> ScanResult:
        """The intact frames after ``offset`` (a frame boundary, or 0 for the whole log); a
        source may skip damaged regions to the next intact frame (``ScanResult.damages``). With
        ``limit``, only the frames within ``limit`` bytes of ``offset``, or more when no intact
        frame fits in that (``read_window``), but never more than ``bound`` bytes in all."""

    def alive(self, paths: RunPaths) -> bool | None:
        """Whether the run's writer is alive; None when that can't be known."""

    def location(self, paths: RunPaths) -> str:
        """Where the log is, for people (the store's ``runs.log_path``)."""


def read_window(read: Callable[[int, int], bytes], start: int, end: int, size: int, *,
                resync: bool = False, bound: int | None = None) -> ScanResult:
    """The intact frames of a log of ``size`` bytes in [start, end) (``start``: 0 or a frame
    boundary), read through ``read(start, end)``; with ``resync``, past damaged regions as
    ``scan_frames`` does. A frame cut by the window's end is left for the next window. When no
    intact frame lies within the window: the first frame alone if it is bigger than the window,
    else (damage longer than the window) everything to the log's end, as an unbounded read.
    ``bound``: read at most that many bytes from ``start`` (for offsets a client chose, which may
    be no frame boundary): past it, no frames and a damage at ``start``."""

    def within(stop: int) -> bool:
        return bound is None or stop - start <= bound

    def frames(data: bytes) -> ScanResult:
        return scan(data, resync=resync) if start <= 0 else scan_frames(data, 0, base=start, resync=resync)

    if end >= size:
        return frames(read(start, size))
    result = frames(read(start, end))
    if result.payloads:
        kept = [damage for damage in result.damages if damage.offset < result.end_offset]
        return ScanResult(result.payloads, result.end_offset, kept[0] if kept else None, kept)
    at = max(start, len(MAGIC))  # the first frame (after the header, from 0)
    head = read(at, at + FRAME_HEADER.size)
    if len(head) == FRAME_HEADER.size:
        length = FRAME_HEADER.unpack(head)[0]
        if 0 < length <= MAX_RECORD_BYTES and at + FRAME_HEADER.size + length > end \
                and within(at + FRAME_HEADER.size + length):
            whole = frames(read(start, at + FRAME_HEADER.size + length))
            if whole.payloads:
                return whole
    if not within(size):
        return ScanResult([], start, Damage(start, size, f"no intact frame within {bound} bytes"))
    return frames(read(start, size))


class LocalLogs:
    """Record logs under a data root on disk (``<root>/projects/<project>/runs/<id>/run.tlog``).
    ``liveness(log_file)`` says whether a writer is alive: by default, whether a process holds
    the log's writer lock; a server's copies, which no local process writes, use heartbeats.

    ``part_only_runs``: a shared run whose primary never started (its parts but no ``run.tlog``;
    docs/shared-runs.md) is a run of its own, listed from its parts. Where the writers' locks say
    who is alive (the recording machine's data root: the default liveness); a server's copies
    keep a part waiting for its run's log, as its uploads decide."""

    def __init__(self, root: str | Path, liveness: Callable[[Path], bool | None] = writer_alive,
                 part_only_runs: bool | None = None) -> None:
        self.root = Path(root)
        self._liveness = liveness
        self.part_only_runs = liveness is writer_alive if part_only_runs is None else part_only_runs

    def runs(self) -> Iterator[RunPaths]:
        return iter_runs(self.root, parts=self.part_only_runs)

    def parts(self, paths: RunPaths) -> list[str]:
        return paths.parts()

    def size(self, paths: RunPaths) -> int:
        try:
            return paths.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def copy_stats(self, paths: RunPaths, known: Collection[str] = ()) -> dict[str, tuple[int, tuple[int, int] | None]]:
        """The run's copies: ``parts.PRIMARY`` (its own log, always listed: size 0 and no
        identity when it has none) and each part's label, with its log's size and (device,
        inode): one listing of the parts and one ``stat`` per copy (the size and identity from
        the same call). A part gone between the listing and its ``stat`` is not listed.
        ``known``: labels the caller checked already (the others are checked here)."""
        from tracklet.core.layout import PART_SUFFIX, is_valid_name
        from tracklet.core.parts import PRIMARY

        found: dict[str, tuple[int, tuple[int, int] | None]] = {PRIMARY: (0, None)}
        try:
            stat = os.stat(paths.log_file)
            found[PRIMARY] = (stat.st_size, (stat.st_dev, stat.st_ino))
        except OSError:
            pass
        try:
            entries = os.scandir(paths.parts_dir)
        except OSError:  # none (the usual case), or unreadable
            return found
        with entries:
            for entry in entries:
                name = entry.name
                label = name[: -len(PART_SUFFIX)]
                if not name.endswith(PART_SUFFIX) or (label not in known and not is_valid_name(label)):
                    continue
                try:
                    stat = os.stat(entry.path)
                except OSError:
                    continue
                found[label] = (stat.st_size, (stat.st_dev, stat.st_ino))
        return found

    def read_from(self, paths: RunPaths, offset: int, limit: int | None = None, *,
                  bound: int | None = None) -> ScanResult:
        if limit is None:
            return read_log_from(paths.log_file, offset, resync=True)  # every intact frame, past damage
        with open(paths.log_file, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size

            def read(start: int, end: int) -> bytes:
                handle.seek(start)
                return handle.read(max(0, min(end, size) - start))

            return read_window(read, offset, offset + limit, size, resync=True, bound=bound)

    def alive(self, paths: RunPaths) -> bool | None:
        return self._liveness(paths.log_file)

    def started_at(self, paths: RunPaths) -> float | None:
        """The start time in the log's first record (its ``RunStart``), reading only that record:
        a log recorded again from scratch under the same id has another one. None if unreadable."""
        from tracklet.core.parsecost import parse_record
        from tracklet.core.recordlog import read_first_payload

        try:
            payload = read_first_payload(paths.log_file)
            record = parse_record(payload) if payload is not None else None  # bounded memory
        except Exception:  # unreadable head: the size and offset checks decide alone
            return None
        if record is None or record.WhichOneof("kind") != "run_start":
            return None
        return record.run_start.start_time

    def location(self, paths: RunPaths) -> str:
        return str(paths.log_file)


def heartbeat_liveness(lapse: float) -> Callable[[Path], bool]:
    """Liveness for logs no local process writes (a server's copies): alive while the log grew
    within the last ``lapse`` seconds. A live run's log grows at least every system-stats window
    (10 s by default), so a lapse of a minute or more marks only dead clients' runs crashed."""

    def alive(log_file: Path) -> bool:
        try:
            return time.time() - log_file.stat().st_mtime < lapse
        except FileNotFoundError:
            return False

    return alive
