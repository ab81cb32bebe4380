"""``SyncClient``: upload record logs to a tracking server by byte offset (docs/server.md).

For each run: ask the server where its copy ends, then send the local log's whole, intact frames
after that point in gzip-compressed chunks of up to ``chunk_bytes``. Connection errors, timeouts
and 5xx answers are retried with bounded, jittered exponential backoff (``RetryPolicy``) until
``give_up_after`` seconds pass; a 409 carries the server's offset, and sending resumes from there.
Only complete frames are sent, so a run that is still being written (or whose writer crashed
mid-frame) uploads what is intact now and the rest on the next sync. Online mode's uploader
(``uploader.py``) uses this class too. Requests, retries and refusals go through ``HttpClient``
(``http.py``) with ``SyncError`` as the error class.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Callable
from pathlib import Path

import httpx

from tracklet.client.artifacts import ArtifactClient
from tracklet.client.files import FileSync
from tracklet.client.http import HttpClient, RetryPolicy
from tracklet.client.media_sync import MediaBlobSync
from tracklet.core.layout import RunPaths, iter_logs
from tracklet.core.parsecost import record_parse_problem
from tracklet.core.recordlog import (FRAME_HEADER, MAGIC, Damage, RecordLogError, gap_frame,
                                     read_log_from, scan, scan_frames, writer_alive)
from tracklet.errors import SyncError

DEFAULT_CHUNK_BYTES = 4 << 20
BASE_URL_ENV = "TRACKLET_BASE_URL"
MEDIA_UPLOAD_WORKERS = 2  # media/table blob requests at once (online mode shares the training process)


@dataclasses.dataclass
class SyncResult:
    path: str  # project/run_id
    sent_bytes: int  # log bytes the server newly stored
    requests: int  # PUT requests made (0 when the server already had everything)
    offset: int  # the server's copy size at the end
    files_sent: int = 0  # run files (files/) uploaded because the server lacked them or held others
    gaps: list[Damage] = dataclasses.field(default_factory=list)  # local damage passed this time (gap records sent)
    media_sent: int = 0  # media and table blobs uploaded (the server lacked them), before the records naming them
    media_bytes: int = 0
    media_queries: int = 0  # "which blobs are missing?" requests
    media_unreadable: int = 0  # blobs the records name that the local store lacks (not sent)

    def describe_gaps(self) -> list[str]:
        return [f"{self.path}: the local record log is damaged at byte {d.offset:,} ({d.reason}): {d.length:,} "
                "byte(s) replaced by a gap record in the server's copy; every intact record after it was uploaded"
                for d in self.gaps]


@dataclasses.dataclass
class LocalDamage:
    """Why a run's local log could not be uploaded whole: what the server has, what it doesn't."""

    path: str  # project/run_id
    uploaded: int  # bytes of the log the server holds (the intact prefix)
    size: int  # the local log's size
    reason: str  # the first damage after the uploaded prefix
    records_left: int  # intact records after the damage, which could not be uploaded
    torn_tail: bool  # only an incomplete last frame: what kill -9 leaves; nothing intact was left out

    def describe(self) -> str:
        left = self.size - self.uploaded
        if self.torn_tail:
            return (f"{self.path}: uploaded {self.uploaded:,} of {self.size:,} bytes; the last {left:,} byte(s) are "
                    f"an incomplete last record ({self.reason}), what a killed writer leaves; not uploaded")
        records = f", holding {self.records_left} intact record(s)," if self.records_left else ""
        return (f"{self.path}: the local record log is damaged at byte {self.uploaded:,} ({self.reason}): "
                f"uploaded bytes 0-{self.uploaded:,} of {self.size:,}; the other {left:,} byte(s){records} "
                "were NOT uploaded (the server keeps an exact copy and takes only intact frames)")


def local_damage(paths: RunPaths, uploaded: int) -> LocalDamage | None:
    """What keeps the local log from being uploaded past byte ``uploaded`` (the server's copy
    size after a sync), or ``None``: all of it is uploaded, or the rest is a live writer's
    half-written frame. Reads the log from ``uploaded`` on, once."""
    log_file = paths.log_file
    size = log_file.stat().st_size
    if uploaded >= size:
        return None
    result = read_log_from(log_file, uploaded, resync=True)
    if result.damage is None:
        return None  # the log grew while syncing: the next sync sends the rest
    if result.damage.offset > uploaded:
        return None  # intact frames after what was uploaded: the log grew
    torn = result.damage.torn_tail and not result.payloads
    if torn and writer_alive(log_file):
        return None
    return LocalDamage(f"{paths.project}/{paths.run_id}", uploaded, size, result.damage.reason,
                       len(result.payloads), torn)


def local_runs(root: Path) -> list[RunPaths]:
    """Every run with a record log under data root ``root``, each followed by its parts (a
    shared run's secondary writers' logs, docs/shared-runs.md)."""
    return list(iter_logs(Path(root)))


def _chunk(path: Path, start: int, limit: int, max_bytes: int) -> tuple[bytes, Damage | None]:
    """Whole, intact frames of the log at ``path`` from ``start`` (a frame boundary or 0; from 0
    the header comes first), up to about ``max_bytes`` (more when one frame is bigger) and never
    past ``limit``; empty when no complete frame is there (yet). With a ``Damage``: a gap frame
    standing in for the intact frame at ``start`` whose record is too costly to parse (the server
    refuses it and every reader skips it: the log keeps it, the upload goes on), made from the
    frame as read here."""
    available = limit - start
    header = len(MAGIC) if start == 0 else 0
    window = min(max(max_bytes, header + 1), available)
    with open(path, "rb") as handle:
        while True:
            handle.seek(start)
            data = handle.read(window)
            try:
                result = scan(data) if start == 0 else scan_frames(data, 0)
            except RecordLogError as error:
                raise SyncError(f"{path}: {error}") from None
            end = result.end_offset if result.end_offset >= header else 0
            costly = _first_costly(result.payloads)
            if costly is not None and costly[0] < end:
                at, size, problem = costly
                if at > 0:
                    return data[:at], None  # up to a frame the server would refuse
                reason = "record too costly to parse: " + problem
                filler = gap_frame(FRAME_HEADER.size + size, reason)
                stop = start + FRAME_HEADER.size + size
                return (filler, Damage(start, stop, reason, end=stop)) if filler is not None else (b"", None)
            if end > header or (end and window >= available):
                return data[:end], None
            if result.damage is not None and result.damage.torn_tail and window < available:
                window = min(window * 2, available)  # one frame bigger than the window: read it whole
                continue
            return data[:end], None  # nothing complete (yet), or a damaged frame: stop here


def _first_costly(payloads: list[tuple[int, bytes]]) -> tuple[int, int, str] | None:
    """The first frame whose record would take more memory to parse than any reader or server
    spends on one (``core/parsecost.py``): its offset, its payload's size and why; or ``None``."""
    for offset, payload in payloads:
        problem = record_parse_problem(payload)
        if problem is not None:
            return offset, len(payload), problem
    return None


def _gap(path: Path, start: int, limit: int, max_bytes: int) -> tuple[bytes, Damage] | None:
    """Where the log has a damaged region at ``start`` (no intact frame) followed by an intact
    frame: gap frames of the region's exact length, which stand in for it on the server so the
    frames after it upload at their own offsets (an intact frame too costly to parse: ``_chunk``).
    ``None`` at the log's header, when nothing intact follows (yet: a live writer's torn last
    frame), or when no gap record fits."""
    if start < len(MAGIC):
        return None
    window = max(max_bytes, 1 << 20)
    with open(path, "rb") as handle:
        while True:
            handle.seek(start)
            data = handle.read(min(window, limit - start))
            result = scan_frames(data, 0, base=start, resync=True)
            first = result.damages[0] if result.damages else None
            if first is not None and first.offset == start and first.end is not None:
                filler = gap_frame(first.end - start, first.reason)
                return (filler, first) if filler is not None else None
            if start + window >= limit:
                return None
            window *= 4


class SyncClient:
    """Uploads record logs to the server at ``base_url`` (default ``$TRACKLET_BASE_URL``)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        give_up_after: float = 300.0,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        api_key: str | None = None,
        blob_dir: Path | None = None,
        upload_state_dir: Path | None = None,
        check_media: bool = False,
    ) -> None:
        base_url = base_url or os.environ.get(BASE_URL_ENV)
        if not base_url:
            raise ValueError(f"no server URL: pass --url or set {BASE_URL_ENV}")
        self.chunk_bytes = chunk_bytes
        self._http = HttpClient(
            base_url, api_key=api_key, timeout=timeout, transport=transport, error=SyncError,
            retry=RetryPolicy(base=backoff_base, cap=backoff_cap, give_up_after=give_up_after),
            advice="; run `tracklet sync` again when the server is reachable (it resumes where it stopped)",
        )
        self.base_url = self._http.base_url
        self._files = FileSync(self._http.request)  # the run's files/, after its log (files.py)
        self._retention_sent: dict[Path, int] = {}  # a run's media-retention.json -> its mtime when sent
        # Media and table blobs, before the records naming them (media_sync.py); ``blob_dir`` is the
        # local artifacts directory (artifact_dir(data root)), ``upload_state_dir`` keeps resumable uploads.
        # ``check_media``: look at every record's blobs, not only those of the frames being sent (a run
        # whose log was uploaded before its blobs were: by a tracklet that sent no media).
        self.check_media = check_media
        self._media: MediaBlobSync | None = None
        if blob_dir is not None:
            self._media = MediaBlobSync(ArtifactClient(self._http, upload_state_dir, workers=MEDIA_UPLOAD_WORKERS),
                                        Path(blob_dir))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    @staticmethod
    def _url(paths: RunPaths, suffix: str) -> str:
        return f"/api/v1/runs/{paths.project}/{paths.run_id}/log{suffix}"

    @staticmethod
    def _part(paths: RunPaths) -> dict[str, str]:
        """The query naming a shared run's part (its secondary writer's label); {} for a run's own log."""
        return {} if paths.part is None else {"part": paths.part}

    def _refused(self, response: httpx.Response) -> Exception:
        return self._http.refusal(response, what="the upload")

    def server_offset(self, paths: RunPaths) -> int:
        """Where the server's copy of the run ends (0 when it has none)."""
        response = self._http.request("GET", self._url(paths, "/offset"), params=self._part(paths))
        if response.status_code != 200:
            raise self._refused(response)
        answer = response.json()
        if paths.part is not None and answer.get("part") != paths.part:
            # a server that predates shared runs ignores part= and answers of the run's own log: the
            # part's bytes would be stored as (or appended to) the primary's log there
            raise SyncError(f"{paths.project}/{paths.run_id} part {paths.part}: the server keeps no shared runs' "
                            "parts (an older version?): the part stays complete locally; upgrade the server, then "
                            "`tracklet sync` sends it")
        return int(answer["offset"])

    # ------------------------------------------------------------------ sync

    def _sync_retention(self, paths: RunPaths) -> None:
        """The run's media retention (``tracklet media prune`` applied locally), sent once per
        change of its file: the server then hides the same retired items (it only moves forward)."""
        from tracklet.core.extensions import load

        media = load("media")  # tracklet.media.read (the layer above: tests/test_layers.py)
        file = paths.run_dir / media.RETENTION_FILE
        try:
            stamp = file.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if self._retention_sent.get(file) == stamp:
            return
        try:
            cutoffs = media.read_cutoffs(paths.run_dir)
        except ValueError as error:
            raise SyncError(f"{paths.project}/{paths.run_id}: {error}") from None
        response = self._http.request("PUT", f"/api/v1/runs/{paths.project}/{paths.run_id}/media/retention",
                                      json={"keys": cutoffs, "policy": {"from": "tracklet sync"}})
        if response.status_code != 200:
            raise self._refused(response)
        self._retention_sent[file] = stamp

    def sync_run(self, paths: RunPaths, *, progress: Callable[[int, int], None] | None = None) -> SyncResult:
        """Upload the run's intact frames the server doesn't have yet, after the media and table
        blobs their records name (with ``blob_dir``: ``media_sync.py``). ``progress(offset, total)``
        is called after each acknowledged chunk (and once at the start)."""
        log_file = paths.log_file
        offset = self.server_offset(paths)
        # Read the size after asking the server: another uploader of this run (a live run's own
        # online uploader, another `tracklet sync`) may move the server on at any moment, but only
        # to bytes already in the log. A live run's later frames go on the next sync.
        total = log_file.stat().st_size
        path = f"{paths.project}/{paths.run_id}" + (f" part {paths.part}" if paths.part is not None else "")
        if offset > total:
            raise SyncError(
                f"{path}: the server has {offset} bytes but the local log has {total}: "
                "was the local run recorded again from scratch?"
            )
        sent = requests = conflicts = 0
        gaps: list[Damage] = []
        media = None
        if self._media is not None and (offset < total or self.check_media):
            media = self._media.send(paths, 0 if self.check_media else offset, total)
        if progress:
            progress(offset, total)
        while offset < total:
            body, costly = _chunk(log_file, offset, total, self.chunk_bytes)
            gap = (body, costly) if costly is not None else None
            if not body:
                gap = _gap(log_file, offset, total, self.chunk_bytes)
                if gap is None:
                    break  # an incomplete last frame (a live or crashed writer): next time
                body = gap[0]
            requests += 1
            response = self._http.request(
                "PUT", self._url(paths, ""), params={"offset": offset, **self._part(paths)},
                content=gzip.compress(body, 1),
                headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
            )
            if response.status_code == 409:
                conflicts += 1
                new_offset = int(response.json()["offset"])
                if conflicts > 3 or new_offset > total:
                    raise SyncError(f"{path}: the server's copy doesn't match the local log: {response.json().get('detail')}")
                offset = new_offset
                continue
            if response.status_code != 200:
                raise self._refused(response)
            data = response.json()
            sent += int(data.get("appended", 0))
            if gap is not None and int(data["offset"]) > offset:
                gaps.append(gap[1])
            offset = int(data["offset"])
            conflicts = 0
            if progress:
                progress(offset, total)
        # files of a run the server knows; a part's are the run's files parts/<label>/... (client/files.py)
        files_sent = self._sync_files(paths) if offset > 0 else 0
        if offset > 0 and paths.part is None:  # a part has no retention of its own: the run's is the primary's
            self._sync_retention(paths)
        result = SyncResult(path=path, sent_bytes=sent, requests=requests, offset=offset, files_sent=files_sent,
                            gaps=gaps)
        if media is not None:
            result.media_sent, result.media_bytes = media.sent, media.sent_bytes
            result.media_queries, result.media_unreadable = media.requests, len(media.unreadable)
        return result

    def _sync_files(self, paths: RunPaths) -> int:
        """Upload the run's changed files; a failure other than the server staying unreachable
        (``SyncError``) is a warning, never an exception: the log is already uploaded."""
        try:
            return self._files.sync(paths)
        except SyncError:
            raise
        except Exception as error:
            import warnings

            from tracklet.errors import TrackletWarning

            warnings.warn(f"tracklet: uploading the files of {paths.project}/{paths.run_id} failed: {error!r}",
                          TrackletWarning, stacklevel=3)
            return 0
