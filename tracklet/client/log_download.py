"""Download a run's record log from a tracking server: how an online run resumes on a machine
that doesn't have it (W&B's pattern on preemptible nodes).

The server answers its stored copy in pieces (``GET /api/v1/runs/{project}/{run_id}/log``,
``tracklet/server/routes_log_read.py``). The bytes cross a trust boundary, so each frame is
checked as every reader checks it (length, CRC, then ``core/validate.check_record``) as it
streams in, holding one frame at a time, and written to ``run.tlog.download`` beside where the
log goes; only a complete, checked copy is linked into place as ``run.tlog``. Any failure
removes the partial file (and the run directory when this created it) and raises
``ResumeError`` saying why: a run is never left half-downloaded.
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path
from typing import BinaryIO

import httpx

from tracklet.client.http import HttpClient, RetryPolicy, response_detail
from tracklet.core import threads
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import FRAME_HEADER, MAGIC, MAX_RECORD_BYTES, _fsync_dir
from tracklet.core.settings import Settings
from tracklet.core.validate import RecordRejected, check_record, decode_record
from tracklet.errors import ResumeError

PIECE_BYTES = 4 << 20  # asked per request (the server answers at most 16 MiB)
REACH_TIMEOUT = 30.0  # seconds init() keeps trying an unreachable server before saying so
PIECE_TIMEOUT = 300.0  # seconds one answer may take in all (httpx's timeout bounds each read only)
PARTIAL_SUFFIX = ".download"
SIZE_HEADER = "X-Tracklet-Log-Size"
PART_HEADER = "X-Tracklet-Log-Part"  # the server's echo of part=: the label whose log it answers


def _named(paths: RunPaths) -> str:
    """``project/run_id``, or ``project/run_id part <label>`` for a shared run's part."""
    return f"{paths.project}/{paths.run_id}" + (f" part {paths.part}" if paths.part is not None else "")


def fetch_for_resume(paths: RunPaths, settings: Settings) -> bool:
    """``tracklet.init``'s run fetcher (``tracklet.core.start.RunFetcher``): download the run's
    log (or, for ``paths.part``, that secondary writer's part) from ``settings.base_url`` into
    ``paths.log_file``; False when the server has no such run (or part)."""
    assert settings.base_url is not None
    advice = (f"; {_named(paths)} was not resumed (a new local log would fork the server's): "
              "start again when the server is reachable, or pass another id for a new run")
    with HttpClient(settings.base_url, api_key=settings.api_key, error=ResumeError,
                    retry=RetryPolicy(give_up_after=REACH_TIMEOUT)) as http:
        try:
            return download_log(http, paths)
        except ResumeError as error:
            raise ResumeError(f"{error}{advice}") from None


def download_log(http: HttpClient, paths: RunPaths, *, piece_bytes: int = PIECE_BYTES) -> bool:
    """Download the server's copy of the run's record log to ``paths.log_file`` (which must not
    exist); False when the server has no log of the run. Raises ``ResumeError`` (nothing left
    behind) when the server can't be reached, refuses, or answers anything but intact frames."""
    if paths.log_file.exists():
        raise ResumeError(f"{paths.log_file} already exists: not downloading over it")
    directory = paths.log_file.parent  # the run's directory, or its parts/
    created = _missing_dirs(directory)
    partial = directory / (paths.log_file.name + PARTIAL_SUFFIX)
    where = f"{http.base_url}'s log of {_named(paths)}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as out:
            checker = FrameChecker(out, where)
            size: int | None = None
            while size is None or checker.offset < size:
                answered = _piece(http, paths, checker, piece_bytes)
                if answered is None:  # 404: the server has no log of the run
                    break
                size = answered if size is None else size  # a log still growing: what it held at first
                if checker.piece_bytes == 0 and checker.offset < size:
                    raise ResumeError(f"{where}: the server answered nothing at byte {checker.offset} of {size}")
            else:
                out.flush()
                os.fsync(out.fileno())
                _place(partial, paths.log_file)
                _fsync_dir(directory)
                return True
    except BaseException:
        _remove(partial, created)
        raise
    _remove(partial, created)
    return False


def _piece(http: HttpClient, paths: RunPaths, checker: FrameChecker, piece_bytes: int) -> int | None:
    """Stream one answer from ``checker.offset`` through the checker; the stored log's size, or
    None on 404. Connection failures and 5xx are retried as ``http.retry`` allows, from the
    start of the piece (the checker writes a piece only once it is whole)."""
    url = f"/api/v1/runs/{paths.project}/{paths.run_id}/log"
    params: dict[str, str | int] = {"offset": checker.offset, "limit": piece_bytes}
    if paths.part is not None:
        params["part"] = paths.part
    started, attempts = time.monotonic(), 0
    while True:
        attempts += 1
        try:
            with http.stream("GET", url, params=params) as response:
                if response.status_code == 404 and checker.offset == 0:
                    return None
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code != 200:
                        response.read()
                        raise ResumeError(f"{http.base_url} refused the download of {_named(paths)}'s "
                                          f"log (HTTP {response.status_code}): {response_detail(response)}")
                    if paths.part is not None and response.headers.get(PART_HEADER) != paths.part:
                        # a server from before shared runs ignores part= and answers the primary's log
                        raise ResumeError(f"{http.base_url} serves no shared runs' parts (an older version?): "
                                          f"{_named(paths)} can't be read back from it")
                    return _take(response, checker)
                response.read()
                problem = f"HTTP {response.status_code}: {response_detail(response)}"
        except httpx.TransportError as failure:
            checker.rewind()
            problem = f"{type(failure).__name__}: {failure}"
        elapsed = time.monotonic() - started
        if http.retry.exhausted(attempts, elapsed):
            raise ResumeError(f"cannot download {_named(paths)}'s log from {http.base_url}: gave up "
                              f"after {elapsed:.1f}s and {attempts} attempt(s): {problem}")
        threads.sleep(min(http.retry.backoff(attempts - 1), max(0.0, http.retry.give_up_after - elapsed)))  # sliced on the main thread


def _take(response: httpx.Response, checker: FrameChecker) -> int:
    try:
        size = int(response.headers[SIZE_HEADER])
    except (KeyError, ValueError):
        raise ResumeError(f"{checker.where}: the answer has no valid {SIZE_HEADER} header") from None
    checker.begin()
    deadline = time.monotonic() + PIECE_TIMEOUT
    for chunk in response.iter_bytes():
        checker.feed(chunk)
        if time.monotonic() > deadline:  # a server trickling bytes: never stall init() without end
            raise ResumeError(f"{checker.where}: an answer took more than {PIECE_TIMEOUT:.0f}s (at byte "
                              f"{checker.offset + checker.piece_pending()})")
    checker.end()
    if checker.offset > size:
        raise ResumeError(f"{checker.where}: the server answered {checker.offset} bytes of a {size}-byte log")
    return size


class FrameChecker:
    """Checks a record log's bytes as they arrive and writes them to ``out`` frame by frame: the
    header first, then frames whose length, CRC and record (``check_record``) pass, as every
    reader checks them. Holds at most one frame (bounded by ``MAX_RECORD_BYTES``) unchecked; a
    piece that broke off is cut from ``out`` again (``rewind``)."""

    def __init__(self, out: BinaryIO, where: str) -> None:
        self.out = out
        self.where = where
        self.offset = 0  # bytes of complete pieces checked and written
        self.piece_bytes = 0  # of the last complete piece
        self._known_keys = 0
        self._keys_at_offset = 0
        self._pending = bytearray()
        self._position = 0  # of the next byte of ``_pending`` in the log

    def begin(self) -> None:
        self._pending.clear()
        self._position = self.offset

    def rewind(self) -> None:
        """Forget a piece that broke off: it is asked again from ``offset``."""
        self.out.seek(self.offset)
        self.out.truncate()
        self._known_keys = self._keys_at_offset
        self.begin()

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        if self._position == 0:
            if len(self._pending) < len(MAGIC):
                return
            if bytes(self._pending[: len(MAGIC)]) != MAGIC:
                raise ResumeError(f"{self.where}: not a tracklet record log (bad header {bytes(self._pending[:8])!r})")
            self._accept(len(MAGIC))
        while len(self._pending) >= FRAME_HEADER.size:
            length, checksum = FRAME_HEADER.unpack_from(self._pending)
            if not 0 < length <= MAX_RECORD_BYTES:
                raise ResumeError(f"{self.where}: implausible frame length {length} at byte {self._position}")
            end = FRAME_HEADER.size + length
            if len(self._pending) < end:
                return
            payload = bytes(self._pending[FRAME_HEADER.size:end])
            if zlib.crc32(payload) != checksum:
                raise ResumeError(f"{self.where}: checksum mismatch in the frame at byte {self._position}")
            try:
                self._known_keys = check_record(decode_record(payload), self._known_keys)
            except RecordRejected as error:
                raise ResumeError(f"{self.where}: the frame at byte {self._position} is not a valid record: "
                                  f"{error}") from None
            self._accept(end)

    def piece_pending(self) -> int:
        """Bytes of the current piece checked so far."""
        return self._position - self.offset

    def _accept(self, count: int) -> None:
        self.out.write(self._pending[:count])
        del self._pending[:count]
        self._position += count

    def end(self) -> None:
        """The piece is complete: anything left over is a frame cut short."""
        if self._pending or (self._position == 0 and self.offset == 0):
            raise ResumeError(f"{self.where}: the answer ends inside a frame at byte {self._position} "
                              f"({len(self._pending)} byte(s) of it)")
        self.piece_bytes = self._position - self.offset
        self.offset = self._position
        self._keys_at_offset = self._known_keys


def _place(partial: Path, log_file: Path) -> None:
    """Move the complete download into place, never over a log that appeared meanwhile (a hard
    link fails on an existing name; where links aren't supported, a check then a rename)."""
    try:
        os.link(partial, log_file)
    except FileExistsError:
        raise ResumeError(f"{log_file} appeared while downloading it: not replacing it") from None
    except OSError:
        if log_file.exists():
            raise ResumeError(f"{log_file} appeared while downloading it: not replacing it") from None
        os.replace(partial, log_file)
        return
    partial.unlink()


def _missing_dirs(directory: Path) -> list[Path]:
    """``directory`` and its ancestors that don't exist yet, deepest first."""
    missing = []
    while not directory.exists() and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    return missing


def _remove(partial: Path, created: list[Path]) -> None:
    """Leave nothing of a failed download: the partial file, and the directories made for it
    (a project directory left behind would list an empty project)."""
    partial.unlink(missing_ok=True)
    for directory in created:
        try:
            directory.rmdir()
        except OSError:  # something else was put there meanwhile: keep it
            return


__all__ = ["FrameChecker", "download_log", "fetch_for_resume"]
