"""Media retention on a tracking server (docs/media.md, "Retention"): ``tracklet media prune`` run
against the server, and a synced run's retention reaching it.

The server holds each run's record log under its data root, as a local data root does, so the
policy is the same code (``tracklet.media.retention``): ``plan`` over the server's logs, each run's
``media-retention.json`` beside its log (the media routes leave retired items out), and a retired
item's blob removed only when nothing else names it. What differs is the blob store
(``ServerMediaBlobs``): the server's artifacts store (``<dir>/artifacts`` or ``--artifacts
s3://...``), where a blob belongs to the projects holding a grant of it (``artifact_blobs``):

- the pruned project's grant is dropped only if it was not used within ``grace`` seconds (an
  upload asking "which are missing?" marks the blobs it was told are there as used: it won't send
  them, so they must stay), with the same age condition in the ``DELETE``;
- the object is removed only when no grant of it is left in any project (another project that
  sent the same bytes keeps them), and nothing else names it: no record of any run on the server
  (kept media, tables, spans; the raw search of ``retention``), no table cell, no artifact
  version (``artifact_gc.live_set``);
- a blob stored inside a pack (small blobs are packed) loses the grant only: the pack is
  reclaimed by ``tracklet admin artifact-gc --repack``;
- the object is removed holding the grants table locked, its grants checked again in that
  transaction (``artifact_gc._lock_grants``, as ``tracklet admin artifact-gc`` does): an upload's
  grant checks that its objects are there in its own, so a run running meanwhile that sends the
  same bytes either keeps the object (its grant came first) or finds it gone and sends it again;
  prunes run while runs run;
- a blob no project ever held (written into the server's data root by a run recorded there, not
  uploaded: nothing to re-check) is kept while any run of the server is running (``running``).

On a server whose logs are segments in shared storage (``--logs``, ``segments.SegmentCopies``:
several processes, each with its own ``--dir``), ``SegmentRunLogs`` stands for the data root's
logs and retention files: the plan reads each of the project's runs (its own log and its parts')
from the segments, one run at a time in a scratch copy under the process's ``--dir``; each run's
retention is moved forward in the object beside its segments (``SegmentCopies.merge_media_cutoffs``),
which every process's media routes read; and the blob rules above take the running runs, the
digests named and the tables from one pass over every run's segments.

``media_references`` is what ``tracklet admin artifact-gc`` keeps for runs: the blobs the runs of
each project name (media, tables and their cells, spans), which are granted like artifact files
but referenced by no artifact version.
"""

from __future__ import annotations

import collections
import io
import time
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracklet.server.artifact_blobs import ServerArtifacts
    from tracklet.store import Store

DEFAULT_GRACE = 3600.0  # seconds: a grant used more recently is kept (an upload may rely on it)


class ServerMediaBlobs:
    """``retention``'s blob store on a tracking server (see the module): removes ``project``'s
    blobs from the server's artifacts store (local or S3) when no other grant holds them."""

    def __init__(self, artifacts: ServerArtifacts, store: Store, project: str, grace: float = DEFAULT_GRACE) -> None:
        self.artifacts = artifacts
        self.store = store
        self.project = project
        self.grace = grace
        self.kept_granted = 0  # blobs another project (or a recent upload) still holds
        self.grants_dropped = 0
        self.running = ""  # a run of the server running now (``retention`` says): ungranted blobs stay
        self.kept_running = 0

    def refusal(self) -> str:
        return ""  # runs may run: uploads are re-checked under the grants lock (``remove``)

    def while_running(self, run: str) -> None:
        """``run`` is running: keep the blobs no project holds (see the module)."""
        self.running = run

    def artifact_references(self, digests: set[str]) -> set[str]:
        if not digests:
            return set()
        from tracklet.server.artifact_gc import live_set

        problems: dict[str, list[str]] = {}
        live = live_set(self.artifacts, problems)
        if self.project in problems:  # what this project's versions reference is incomplete: nothing removed
            raise RuntimeError(problems[self.project][0])
        return digests & set().union(*live.values()) if live else set()

    def read_fragment_columns(self, digest: str, columns: list[str] | None) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            data = bytes(self.artifacts.blobs.read_bytes(digest))
        except Exception as error:
            raise RuntimeError(f"table fragment {digest} can't be read ({error}): which blobs its cells name can't "
                               "be known") from None
        source = pa.BufferReader(data)
        return pq.read_schema(source) if columns is None else pq.read_table(io.BytesIO(data), columns=columns)

    def remove(self, digest: str) -> int | None:
        from tracklet.server.artifact_gc import _lock_grants, _still_granted

        dropped, held = self.artifacts.release(self.project, digest, time.time() - self.grace)
        self.grants_dropped += dropped
        if held:
            self.kept_granted += 1
            return None
        if not dropped and self.running:  # no grant: a run in the data root wrote it, and one is running
            self.kept_running += 1
            return None
        fs = self.artifacts.fs
        path = self.artifacts.blobs._path(digest)
        with self.artifacts.engine.begin() as connection:
            _lock_grants(connection)
            if _still_granted(connection, {digest}, set()):  # an upload granted it again meanwhile
                self.kept_granted += 1
                return None
            try:
                size = int(fs.size(path))
                fs.rm(path)
            except FileNotFoundError:  # packed (artifact-gc --repack reclaims it), or gone already
                return None
        return size


def prune(root: Path, artifacts: ServerArtifacts, store: Store, project: str, *, keep_last: int | None,
          max_bytes: int | None, keys: list[str] | None, dry_run: bool, keep_blobs: bool,
          grace: float = DEFAULT_GRACE, logs: Any = None) -> tuple[Any, ServerMediaBlobs]:
    """``tracklet media prune`` on the server's data root ``root`` for ``project`` (see the module):
    the plans (``retention.RunPrune``) and, unless ``dry_run``, the ``PruneReport``. ``logs``: the
    server's ``SegmentCopies`` when its logs are segments (``--logs``)."""
    from tracklet.media import retention

    source = None if logs is None else SegmentRunLogs(logs, Path(root))
    plans = retention.plan(root, project, keep_last, keys, max_bytes=max_bytes,
                           runs=None if source is None else source.runs(project))
    blobs = ServerMediaBlobs(artifacts, store, project, grace)
    if dry_run:
        return retention.PruneReport(plans), blobs
    return retention.apply(root, plans, keep_last=keep_last, max_bytes=max_bytes, remove_blobs=not keep_blobs,
                           store=blobs, logs=source), blobs


class SegmentRunLogs:
    """A ``--logs`` server's runs for ``retention`` (see the module): their logs read from the
    segments (``copies``, a ``SegmentCopies``) into scratch copies under ``root``, their retention
    the objects beside the segments."""

    def __init__(self, copies: Any, root: Path) -> None:
        self.copies = copies
        self.root = root

    def runs(self, project: str) -> Iterator[tuple[Any, dict[str, int]]]:
        """``retention.plan``'s runs: each of ``project``'s runs with a log of its own (a part's
        whose primary hasn't arrived waits for it, as under a data root), its parts beside it, and
        its retention now. A damaged retention object stops the prune (ValueError), as a file does."""
        for paths, fetch in _segment_run_logs(self.copies, self.root, project):
            logs = fetch()
            if logs and logs[0].part is None:
                yield paths, self.copies.media_cutoffs(project, paths.run_id, fresh=True)

    def write(self, run: Any, policy: dict[str, Any]) -> None:
        """Move ``run``'s (a ``retention.RunPrune``) retention forward to its cutoffs."""
        self.copies.merge_media_cutoffs(run.project, run.run_id, run.cutoffs, policy)

    def seen(self, digests: set[str]) -> Any:
        """``retention.runs_seen`` over every run's segments (every project's, every writer's)."""
        from tracklet.media.retention import runs_seen

        return runs_seen(_segment_run_logs(self.copies, self.root), digests)


def media_references(root: Path, artifacts: ServerArtifacts, problems: dict[str, list[str]] | None = None,
                     sink: Callable[[str, set[str]], None] | None = None, logs: Any = None) -> dict[str, set[str]]:
    """Per project, every blob digest the server's runs of it name: any digest in their record
    logs (media, thumbnails, masks, table fragments, span payloads: a raw search, so nothing a
    record kind adds is missed) and every blob their tables' media cells name. A log or fragment
    that can't be read: with ``problems``, its project maps there to what went wrong (what its
    runs name is then incomplete: a collection keeps all of that project's rows) and the other
    runs are read on; without, ``RuntimeError``. ``sink``: each run's are handed to it instead
    (``sink(project, digests)``; nothing is returned), so only one run's are held at a time.
    ``logs``: the server's log copies when they are segments in shared storage
    (``segments.SegmentCopies``, ``--logs``): each run's logs (its own and its parts', its
    primary's uploaded or not) are read from there, one run at a time, copied into a scratch
    folder under ``root`` that is removed after each run; else the logs under ``root``."""
    from tracklet.core.layout import iter_run_logs

    found: dict[str, set[str]] = collections.defaultdict(set)
    reader = ServerMediaBlobs(artifacts, None, "")  # type: ignore[arg-type]  # reads fragments only
    runs = (((paths, lambda logs=logs: logs) for paths, logs in iter_run_logs(Path(root))) if logs is None
            else _segment_run_logs(logs, Path(root)))
    for paths, fetch in runs:  # a shared run's parts too, its primary uploaded or not
        names: set[str] = set() if sink is not None else found[paths.project]
        try:
            _run_references(paths, fetch(), reader, names)
        except (OSError, RuntimeError) as error:
            message = f"what run {paths.project}/{paths.run_id} names can't be read: {error}"
            if problems is None:
                raise RuntimeError(message) from None
            problems.setdefault(paths.project, []).append(message)
            continue
        if sink is not None:
            sink(paths.project, names)
    return dict(found)


def _run_references(paths: Any, logs: list[Any], reader: ServerMediaBlobs, names: set[str]) -> None:
    """Add to ``names`` the digests run ``paths``' logs (``logs``: its own, then its parts') name."""
    from tracklet.core.api import RecordedRun
    from tracklet.media.retention import _DIGEST, cell_digests

    for log in logs:
        with open(log.log_file, "rb") as handle:
            tail = b""
            while block := handle.read(16 << 20):
                data = tail + block
                names.update(match.decode() for match in _DIGEST.findall(data))
                tail = data[-63:]
    # the run's tables read merged with its parts (RecordedRun); a part's alone before its primary's log
    fragments = {fragment.digest for read in ([paths] if logs[0].part is None else logs)
                 for record in RecordedRun(read)._read.tables for fragment in record.fragments}
    if fragments:
        names |= cell_digests(fragments, reader)


def _segment_run_logs(logs: Any, root: Path, project: str | None = None
                      ) -> Iterator[tuple[Any, Callable[[], list[Any]]]]:
    """``iter_run_logs`` of a server's segment copies (of ``project``'s runs, or all): each run's
    paths, and what copies its logs into a scratch data root under ``root`` (one run's at a time,
    removed before the next run's) and returns their paths there."""
    import shutil
    import tempfile

    from tracklet.core.layout import RunPaths

    root.mkdir(parents=True, exist_ok=True)
    for run, copies in logs.run_logs():
        if project is not None and run.project != project:
            continue
        scratch = Path(tempfile.mkdtemp(prefix=".gc-logs-", dir=root))
        local = RunPaths(scratch, run.project, run.run_id)

        def fetch(local: Any = local, copies: list[Any] = copies) -> list[Any]:
            here = []
            for copy in copies:
                target = local if copy.part is None else local.part_paths(copy.part)
                target.log_file.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with open(target.log_file, "wb") as handle:
                        for block in logs.iter_bytes(copy):
                            handle.write(block)
                except OSError as error:  # named: one run's missing segment keeps every blob
                    label = f" (part {copy.part})" if copy.part is not None else ""
                    raise OSError(f"the log segments of run {copy.project}/{copy.run_id}{label} can't be read "
                                  f"from {logs.location(copy)}: {error}") from error
                here.append(target)
            return here

        try:
            yield local, fetch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
