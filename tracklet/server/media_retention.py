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
several processes, each with its own ``--dir``), a prune is answered in pages (``prune_page``),
each of which reads at most a bounded number of runs (``PRUNE_PAGE_RUNS``, ``PRUNE_PAGE_BYTES``),
one at a time in a scratch copy under the process's ``--dir``: first the project's runs, each
planned and its retention moved forward in the object beside its segments
(``SegmentCopies.merge_media_cutoffs``, which every process's media routes read); then every run's
segments searched for the retired items' digests (the running runs, the digests named and the
tables' cells, as ``retention._remove_blobs``); then the blobs removed by the rules above. What a
later page needs is kept in the database (``media_prune_states``, ``media_prune_digests``: server
migration s0025), each page adding its own counts, under a token the cursor names (any process
takes any page; a prune left, or finished, for ``PRUNE_STATE_TTL`` is removed by the next), with
the page's answer (s0026), which the same cursor sent again is answered (a client that lost it
retries; nothing is done twice), and the prune's start, after which no grant used is dropped. A run's retention is moved forward as its page goes: a damaged retention object
stops the prune at that run (400, naming it), after the runs before it were retired; run the
prune again once it is fixed (retention only moves forward: nothing is retired twice).

``media_references`` is what ``tracklet admin artifact-gc`` keeps for runs: the blobs the runs of
each project name (media, tables and their cells, spans), which are granted like artifact files
but referenced by no artifact version.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import threading
import time
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

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
        self.since: float | None = None  # a paged prune's start: a grant used after it is kept, whatever ``grace``

    def refusal(self) -> str:
        return ""  # runs may run: uploads are re-checked under the grants lock (``remove``)

    def while_running(self, run: str) -> None:
        """``run`` is running: keep the blobs no project holds (see the module)."""
        self.running = run

    def artifact_references(self, digests: set[str]) -> set[str]:
        return digests & self.artifact_referenced() if digests else set()

    def artifact_referenced(self) -> set[str]:
        """Every digest an artifact version references (``artifact_references``, read once for a
        paged prune's candidates, which are then checked a chunk at a time)."""
        from tracklet.server.artifact_gc import live_set

        problems: dict[str, list[str]] = {}
        live = live_set(self.artifacts, problems)
        if self.project in problems:  # what this project's versions reference is incomplete: nothing removed
            raise RuntimeError(problems[self.project][0])
        return set().union(*live.values()) if live else set()

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

        cutoff = time.time() - self.grace
        if self.since is not None:
            cutoff = min(cutoff, self.since)
        dropped, held = self.artifacts.release(self.project, digest, cutoff)
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
          grace: float = DEFAULT_GRACE) -> tuple[Any, ServerMediaBlobs]:
    """``tracklet media prune`` on the server's data root ``root`` for ``project`` (see the module),
    in one request: the plans (``retention.RunPrune``) and, unless ``dry_run``, the
    ``PruneReport``. A server whose logs are segments (``--logs``) prunes in pages: ``prune_page``."""
    from tracklet.media import retention

    plans = retention.plan(root, project, keep_last, keys, max_bytes=max_bytes)
    blobs = ServerMediaBlobs(artifacts, store, project, grace)
    if dry_run:
        return retention.PruneReport(plans), blobs
    return retention.apply(root, plans, keep_last=keep_last, max_bytes=max_bytes, remove_blobs=not keep_blobs,
                           store=blobs), blobs


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


def _segment_run_logs(logs: Any, root: Path, project: str | None = None, after: tuple[str, str] | None = None
                      ) -> Iterator[tuple[Any, Callable[[], list[Any]]]]:
    """``iter_run_logs`` of a server's segment copies (of ``project``'s runs, or all; after run
    ``after``, (project, run id), in their order: ``SegmentCopies.run_logs``): each run's
    paths, and what copies its logs into a scratch data root under ``root`` (one run's at a time,
    removed before the next run's) and returns their paths there."""
    import shutil
    import tempfile

    from tracklet.core.layout import RunPaths

    root.mkdir(parents=True, exist_ok=True)
    for run, copies in logs.run_logs(project, after):  # (a page of heads at a time: segments.RUN_LOGS_BATCH)
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


# ---------------------------------------------------------------------- a --logs server's prune, in pages

PRUNE_PAGE_RUNS = 100  # runs one request reads at most (a request may ask for fewer: ``max_runs``)
PRUNE_PAGE_BYTES = 256 << 20  # log bytes one request reads at most (past them, the page ends after that run)


@dataclasses.dataclass
class PrunePage:
    """What one request of a paged prune did (``prune_page``): the runs it planned (those with
    media retired), the prune's totals so far, and the cursor of the next request (None: done)."""

    runs: list[Any]
    phase: str  # "retire" (the project's runs planned and retired), "seen" (every run's logs searched), "remove"
    done: int  # what the phase has gone through so far: runs read (retire, seen), blobs decided (remove)
    next: str | None
    blobs_removed: int = 0
    bytes_freed: int = 0
    blobs_kept_shared: int = 0
    grants_dropped: int = 0
    note: str = ""


def prune_page(copies: Any, root: Path, artifacts: ServerArtifacts, store: Store, project: str, *,
               keep_last: int | None, max_bytes: int | None, keys: list[str] | None, dry_run: bool,
               keep_blobs: bool, grace: float = DEFAULT_GRACE, cursor: str | None = None,
               max_runs: int = PRUNE_PAGE_RUNS, prune_id: str | None = None) -> PrunePage:
    """One request of ``tracklet media prune --url`` on a ``--logs`` server (``copies``: its
    ``SegmentCopies``), resumed at ``cursor`` (None: the first): the same prune as ``prune``, in
    pages that each read at most ``max_runs`` runs' logs (and about ``PRUNE_PAGE_BYTES``), so that
    no request holds or reads every run:

    1. ``retire``: the project's runs, in order, each planned and its retention moved forward;
       the digests its retired items name are counted;
    2. ``seen`` (unless ``dry_run`` or ``keep_blobs``, and only when something is retired):
       every run's logs (every project's, every writer's) searched for those digests, its tables'
       cells read, and whether it is running; then the candidates are those the retired items
       alone name and no artifact version references (``_remove_named_only_by_retired``);
    3. ``remove``: the candidates removed (``ServerMediaBlobs.remove``), a page at a time.

    What the later pages need is kept in the database (``_PruneState``: the digests counted and the
    candidates, each page adding its own; every process reads the same; the digests removed by the
    last page, the rest by the next prune once no page came for ``PRUNE_STATE_TTL``), which the
    cursor names; a request whose policy differs from its cursor's is refused.

    A page sent again (its answer lost on the way: the client retries with the same cursor, or
    for the first page the same ``prune_id``, a token the client chose) is answered with the
    answer it had, stored with the state (server migration s0026), doing nothing again: nothing
    is counted, retired or removed twice; also when the two requests come at once (the second
    waits for the first: ``_page_lock``, then is answered its answer). The last page's answer is kept too,
    until the state expires. Only the page answered last can be asked again: an older cursor is
    refused (its client had the next answer). A grant used after the prune began is never dropped
    (``ServerMediaBlobs.since``): a run created behind the ``seen`` phase's cursor, whose logs that
    phase never reads, asks about (or sends) its blobs after the start, so they stay whatever the
    grace period."""
    # One request at a time per prune (a retry sent while the first still runs waits for it, then
    # is answered its answer): a page's work is not all in its answer's transaction (a run's
    # retention is moved forward as the page goes), so a second request doing the page at once
    # found those runs retired already and, its answer written first, lost their blobs' counts.
    with _page_lock(copies.engine, prune_id if cursor is None else _cursor_token(cursor)):
        return _prune_page(copies, root, artifacts, store, project, keep_last=keep_last, max_bytes=max_bytes,
                           keys=keys, dry_run=dry_run, keep_blobs=keep_blobs, grace=grace, cursor=cursor,
                           max_runs=max_runs, prune_id=prune_id)


_PAGE_LOCKS: dict[str, Any] = {}  # token -> [its lock, the requests holding or waiting for it] (SQLite: this process)
_PAGE_LOCKS_LOCK = threading.Lock()


@contextlib.contextmanager
def _page_lock(engine: Any, token: str | None) -> Iterator[None]:
    """Hold prune ``token``'s page lock (none for a prune the server named: no request can share
    it): on PostgreSQL an advisory lock in a transaction of its own, open until the page is
    answered (requests through any process wait for it); else this process's lock of it."""
    if token is None:
        yield
        return
    if engine.dialect.name == "postgresql":
        from tracklet.server.schema import hold_xact_lock

        with engine.begin() as connection:  # (open for the page: the lock goes with its transaction)
            hold_xact_lock(connection, "media-prune", token)
            yield
        return
    with _PAGE_LOCKS_LOCK:
        held = _PAGE_LOCKS.setdefault(token, [threading.Lock(), 0])
        held[1] += 1
    try:
        with held[0]:
            yield
    finally:
        with _PAGE_LOCKS_LOCK:
            held[1] -= 1
            if not held[1]:
                _PAGE_LOCKS.pop(token, None)


def _cursor_token(cursor: str) -> str | None:
    """The prune token ``cursor`` names (None where it is no cursor: ``_PruneState.load`` refuses it)."""
    import base64
    import json

    try:
        token = json.loads(base64.urlsafe_b64decode(cursor.encode()))["token"]
    except (ValueError, KeyError, TypeError):
        return None
    return token if _check_token(token) else None


def _prune_page(copies: Any, root: Path, artifacts: ServerArtifacts, store: Store, project: str, *,
                keep_last: int | None, max_bytes: int | None, keys: list[str] | None, dry_run: bool,
                keep_blobs: bool, grace: float, cursor: str | None, max_runs: int, prune_id: str | None) -> PrunePage:
    from tracklet.media.retention import _digests_of, _plan_run
    from tracklet.core.api import RecordedRun

    policy = {"keep_last": keep_last, "max_bytes": max_bytes, "keys": keys, "dry_run": dry_run,
              "keep_blobs": keep_blobs, "grace": grace}
    state = (_PruneState.start(copies.engine, project, policy, prune_id) if cursor is None
             else _PruneState.load(copies.engine, cursor, project, policy))
    if isinstance(state, PrunePage):  # a page answered already: its answer again
        return state
    page = PrunePage([], state.phase, 0, None)
    budget = _Budget(max(1, min(max_runs, PRUNE_PAGE_RUNS)))
    if state.phase == "retire":
        written = {"keep_last": keep_last, "max_bytes": max_bytes}
        after = (project, state.after) if state.after else None
        for paths, fetch in _segment_run_logs(copies, root, project, after=after):
            if budget.spent():
                break
            logs = fetch()
            budget.take(logs)
            state.after = paths.run_id
            state.done += 1
            if not logs or logs[0].part is not None:  # a part's whose primary hasn't arrived waits for it
                continue
            run = _plan_run(paths, copies.media_cutoffs(project, paths.run_id, fresh=True), keep_last, keys,
                            max_bytes, RecordedRun)
            if run is None:
                continue
            if run.newly_retired and not dry_run:
                copies.merge_media_cutoffs(project, run.run_id, run.cutoffs, written)
            for message in run.retired if not (dry_run or keep_blobs) else ():  # (no blob goes: not counted)
                for digest in _digests_of(message):
                    state.wanted[digest] += 1
            run.retired = []  # (counted: not answered)
            page.runs.append(run)
        else:
            state.next_phase("seen" if state.has_wanted() else "")
    elif state.phase == "seen":
        _seen_page(copies, root, artifacts, store, state, budget)
    elif state.phase == "remove":
        _remove_page(artifacts, store, state, budget)
    page.done = state.done if page.phase == state.phase else state.phase_done
    return state.answer(page)


class _Budget:
    """What one page may read: runs, and log bytes."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.bytes = 0

    def spent(self) -> bool:
        return self.runs <= 0 or self.bytes >= PRUNE_PAGE_BYTES

    def take(self, logs: list[Any]) -> None:
        self.runs -= 1
        self.bytes += sum(log.log_file.stat().st_size for log in logs)


def _seen_page(copies: Any, root: Path, artifacts: ServerArtifacts, store: Store, state: _PruneState,
               budget: _Budget) -> None:
    """Search a page of every run's logs (as ``retention._remove_blobs`` searches a data root's) for the
    digests counted (each block's digests looked up in the prune's rows); after the last, decide the
    candidates (``_PruneState.answer``). Anything that can't be read ends the prune's blob part with a
    note naming it (no blob removed), as an unpaged prune."""
    from tracklet.media.retention import _is_running, cell_digests
    from tracklet.core.api import RecordedRun

    fragments: set[str] = set()
    blobs = ServerMediaBlobs(artifacts, store, state.project, state.policy["grace"])
    after = tuple(state.after.split("/", 1)) if state.after else None
    try:
        for paths, fetch in _segment_run_logs(copies, root, after=after):  # type: ignore[arg-type]
            if budget.spent():
                break
            logs = fetch()
            budget.take(logs)
            state.after = f"{paths.project}/{paths.run_id}"
            state.done += 1
            if not logs:
                continue
            if not state.running and _is_running(paths, logs):
                state.running = f"{paths.project}/{paths.run_id}"
            for log in logs:
                _count_wanted(log.log_file, state.members, state.named)
            for read in [paths] if logs[0].part is None else logs:
                fragments.update(fragment.digest for record in RecordedRun(read)._read.tables
                                 for fragment in record.fragments)
        else:
            budget.runs = -1  # every run read: the candidates next
        state.shared.update(cell_digests(fragments, blobs))
    except (OSError, ValueError, RuntimeError) as error:
        state.note = f"blobs kept: {error}"
        state.next_phase("")
        return
    if budget.runs == -1:
        state.decide = blobs
        state.next_phase("remove")


def _count_wanted(log_file: Path, members: Callable[[set[str]], set[str]], counts: collections.Counter[str]) -> None:
    """Add to ``counts`` how many times the log names each digest the retired items name
    (``retention._count_named``), a block at a time: ``members`` says which of a block's digests
    those are (the prune's rows), so nothing but a block's digests is held."""
    from tracklet.media.retention import _DIGEST

    with open(log_file, "rb") as handle:  # OSError: nothing is removed
        tail = b""
        while block := handle.read(16 << 20):
            data = tail + block
            found = collections.Counter(_DIGEST.findall(data))
            found.subtract(collections.Counter(_DIGEST.findall(tail)))
            named = {digest.decode(): count for digest, count in found.items() if count > 0}
            wanted = members(set(named))
            counts.update({digest: count for digest, count in named.items() if digest in wanted})
            tail = data[-63:]


def _remove_page(artifacts: ServerArtifacts, store: Store, state: _PruneState, budget: _Budget) -> None:
    """Remove a page of the candidates (as many as a page reads runs), in digest order."""
    blobs = ServerMediaBlobs(artifacts, store, state.project, state.policy["grace"])
    blobs.since = state.started
    if state.running:
        blobs.while_running(state.running)
    page = max(0, budget.runs)
    candidates = state.candidates(page + 1)
    for digest in candidates[:page]:
        size = blobs.remove(digest)
        state.decided.append(digest)
        if size is not None:
            state.removed += 1
            state.freed += size
    state.done += len(state.decided)
    state.kept_shared += blobs.kept_granted
    state.grants += blobs.grants_dropped
    state.kept_running += blobs.kept_running
    if len(candidates) <= page:
        state.next_phase("")


PRUNE_STATE_TTL = 86400.0  # seconds: a paged prune's state no page touched for longer is removed by the next prune
_IN_CHUNK = 1000  # digests per IN (...) of the prune's rows


@dataclasses.dataclass
class _AnsweredRun:
    """A run of a page answered already (``PrunePage.runs`` replayed): what the answer said of it."""

    run_id: str
    newly_retired: int
    newly_retired_bytes: int
    cutoffs: dict[str, int]


def _page_json(page: PrunePage) -> str:
    """``page`` as stored with the prune's state (``media_prune_states.answer``): the runs it
    answered (those with media retired), the totals, the next cursor."""
    import json

    runs = [{"run_id": run.run_id, "newly_retired": run.newly_retired, "newly_retired_bytes": run.newly_retired_bytes,
             "cutoffs": run.cutoffs} for run in page.runs if run.newly_retired]
    return json.dumps({**{field.name: getattr(page, field.name) for field in dataclasses.fields(page)}, "runs": runs})


def _page_of(answer: str) -> PrunePage:
    import json

    fields = json.loads(answer)
    return PrunePage(**{**fields, "runs": [_AnsweredRun(**run) for run in fields["runs"]]})


def _check_token(token: Any) -> bool:
    return isinstance(token, str) and len(token) == 32 and all(c in "0123456789abcdef" for c in token)


@dataclasses.dataclass
class _PruneState:
    """A paged prune's state between its requests (``prune_page``): a row of ``media_prune_states``
    (the totals, the phase and where it is), and one of ``media_prune_digests`` per digest the
    retired items name (how many times they and every run's logs name it, whether a table cell
    does); a page reads the rows it needs and adds its own changes (``answer``), so its work is
    bounded by the page, not by the number of retired blobs."""

    engine: Any
    token: str
    project: str
    policy: dict[str, Any]
    phase: str = "retire"
    step: int = 0  # pages answered (0: none; the row is written by the first page that isn't the last)
    after: str = ""  # the last run read in this phase (retire: its id; seen: project/run id)
    done: int = 0  # runs read in this phase (remove: blobs decided)
    running: str = ""
    note: str = ""
    removed: int = 0
    freed: int = 0
    kept_shared: int = 0
    grants: int = 0
    kept_running: int = 0
    started: float | None = None  # when the prune began (a grant used since is kept; None: a state before s0026)
    kept: bool = False  # the client named the prune (``prune_id``): its first page is kept even if it is the last
    # this page's changes (not kept as such: ``answer`` adds them to the rows)
    phase_done: int = 0  # what the phase this request ended went through
    wanted: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    named: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    shared: set[str] = dataclasses.field(default_factory=set)
    decided: list[str] = dataclasses.field(default_factory=list)  # candidates this page removed or kept
    decide: Any = None  # the last "seen" page: the candidates to decide (a ServerMediaBlobs, for artifacts)

    _COLUMNS = ("phase", "step", "after", "done", "running", "note", "removed", "freed", "kept_shared", "grants",
                "kept_running")

    @classmethod
    def start(cls, engine: Any, project: str, policy: dict[str, Any], prune_id: str | None = None
              ) -> _PruneState | PrunePage:
        """A new prune (``prune_id``: the token the client chose, else a new one), or, if the
        client's token is a prune's whose first page was answered, that answer."""
        import uuid

        from tracklet.errors import BadRequest
        from tracklet.server.schema import media_prune_states as states

        cls.expire(engine)
        if prune_id is None:
            return cls(engine, uuid.uuid4().hex, project, policy, started=time.time())
        if not _check_token(prune_id):
            raise BadRequest("prune_id: 32 lowercase hex digits (a new prune's id, chosen by the client)")
        with engine.connect() as connection:
            row = connection.execute(sa.select(states).where(states.c.token == prune_id)).first()
        if row is None:
            return cls(engine, prune_id, project, policy, started=time.time(), kept=True)
        return cls._resumed(engine, row, 0, project, policy)

    @staticmethod
    def expire(engine: Any, now: float | None = None) -> int:
        """Remove the states no page touched for ``PRUNE_STATE_TTL`` (a client that stopped
        midway, or never sent the last cursor back); how many."""
        from tracklet.server.schema import media_prune_digests as digests, media_prune_states as states

        cutoff = (time.time() if now is None else now) - PRUNE_STATE_TTL
        old = sa.select(states.c.token).where(states.c.updated_at < cutoff)
        with engine.begin() as connection:
            connection.execute(digests.delete().where(digests.c.token.in_(old)))
            return connection.execute(states.delete().where(states.c.updated_at < cutoff)).rowcount

    @classmethod
    def load(cls, engine: Any, cursor: str, project: str, policy: dict[str, Any]) -> _PruneState | PrunePage:
        import base64
        import json

        from tracklet.errors import BadRequest
        from tracklet.server.schema import media_prune_states as states

        try:
            sent = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            token, step = sent["token"], sent["step"]
            if not (_check_token(token) and isinstance(step, int)):
                raise ValueError(token)
        except (ValueError, KeyError, TypeError):
            raise BadRequest("cursor: not one a prune of this server answered; start the prune again without it") from None
        with engine.connect() as connection:
            row = connection.execute(sa.select(states).where(states.c.token == token)).first()
        if row is None or row.updated_at < time.time() - PRUNE_STATE_TTL:
            raise BadRequest(f"cursor: prune {token} is unknown here, or was left for more than "
                             f"{PRUNE_STATE_TTL:.0f} s (expired); start the prune again") from None
        return cls._resumed(engine, row, step, project, policy)

    @classmethod
    def _resumed(cls, engine: Any, row: Any, step: int, project: str, policy: dict[str, Any]
                 ) -> _PruneState | PrunePage:
        """The prune of state ``row`` at page ``step`` (what the cursor sent names), or the
        answer that page had, if it is the one answered last (a retry)."""
        import json

        from tracklet.errors import BadRequest

        stored = json.loads(row.policy)
        if row.project != project or stored != policy:
            raise BadRequest(f"cursor: prune {row.token} is of project {row.project} with policy {stored}; "
                             "send the same project and options with its cursor")
        if row.step == step + 1 and row.answer is not None:
            return _page_of(row.answer)
        if not row.phase:
            raise BadRequest(f"cursor: prune {row.token} is over (its last answer had no cursor); page {step} of it "
                             f"is not the one answered last (page {row.step - 1}): start a new prune if need be")
        if row.step != step:
            raise BadRequest(f"cursor: page {step} of prune {row.token} was answered already (it is at page {row.step}); "
                             "send the newest cursor, or start the prune again")
        return cls(engine, row.token, project, policy, **{name: getattr(row, name) for name in cls._COLUMNS},
                   started=row.started)

    def members(self, found: set[str]) -> set[str]:
        """Those of ``found`` the retired items name (the prune's rows)."""
        from tracklet.server.schema import media_prune_digests as digests

        members: set[str] = set()
        ordered = sorted(found)
        with self.engine.connect() as connection:
            for start in range(0, len(ordered), _IN_CHUNK):
                members.update(connection.execute(sa.select(digests.c.digest).where(
                    digests.c.token == self.token, digests.c.digest.in_(ordered[start:start + _IN_CHUNK]))).scalars())
        return members

    def has_wanted(self) -> bool:
        """Whether the retired items name any blob (this page's, or an earlier page's)."""
        from tracklet.server.schema import media_prune_digests as digests

        if self.wanted:
            return True
        with self.engine.connect() as connection:
            return connection.execute(sa.select(digests.c.digest).where(digests.c.token == self.token).limit(1)
                                      ).first() is not None

    def candidates(self, limit: int) -> list[str]:
        """The next ``limit`` candidates to remove, in digest order."""
        from tracklet.server.schema import media_prune_digests as digests

        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(digests.c.digest).where(digests.c.token == self.token)
                                           .order_by(digests.c.digest).limit(limit)).scalars())

    def next_phase(self, phase: str) -> None:
        """Go on to ``phase`` ("": the prune is over)."""
        self.phase_done = self.done  # (what the phase that ended went through, for its page)
        self.phase, self.after, self.done = phase, "", 0

    def answer(self, page: PrunePage) -> PrunePage:
        """``page`` with the totals and the next cursor; this page's changes written with it (the
        answer kept for a retry; over: the prune's digest rows removed, its state kept with its
        last answer until it expires), in one transaction. A page answered meanwhile from the same
        cursor (a client's retry while this one ran) wins: its answer is this one's too, and this
        one's counts are not added."""
        import base64
        import json

        page.blobs_removed, page.bytes_freed, page.grants_dropped = self.removed, self.freed, self.grants
        page.blobs_kept_shared, page.note = self.kept_shared, self.note
        if not page.note and self.kept_running:
            page.note = (f"{self.kept_running} blob(s) no project holds kept: run {self.running} is still running "
                         "(it may be storing the same bytes); prune again when no run is")
        if self.phase:
            page.next = base64.urlsafe_b64encode(json.dumps(
                {"token": self.token, "phase": self.phase, "step": self.step + 1}).encode()).decode()
        try:
            written = self._answer(_page_json(page))
        except sa.exc.IntegrityError:  # a first page named by the client (prune_id), answered meanwhile
            written = False
        return page if written else self._answered_meanwhile()

    def _answer(self, answer: str) -> bool:
        """Write this page's changes and ``answer``; False (nothing written) if another request
        from the same cursor answered the page first."""
        import json

        from tracklet.server.schema import media_prune_digests as digests, media_prune_states as states

        with self.engine.begin() as connection:
            if self.step:
                moved = connection.execute(states.update().where(states.c.token == self.token,
                                                                 states.c.step == self.step)
                                           .values(step=self.step + 1, updated_at=time.time()))
                if moved.rowcount != 1:
                    return False  # (the transaction wrote nothing)
            elif self.phase or self.kept:
                connection.execute(states.insert().values(
                    token=self.token, project=self.project, policy=json.dumps(self.policy), updated_at=time.time(),
                    **{name: getattr(self, name) for name in self._COLUMNS if name != "step"}, step=1,
                    started=self.started))
            if self.step or self.phase:
                self._write(connection)
            if not self.phase:
                connection.execute(digests.delete().where(digests.c.token == self.token))
            connection.execute(states.update().where(states.c.token == self.token).values(
                **{name: getattr(self, name) for name in self._COLUMNS if name != "step"}, answer=answer))
        return True

    def _answered_meanwhile(self) -> PrunePage:
        """The answer of this page given meanwhile by another request from the same cursor."""
        from tracklet.errors import BadRequest
        from tracklet.server.schema import media_prune_states as states

        with self.engine.connect() as connection:
            row = connection.execute(sa.select(states.c.step, states.c.answer).where(states.c.token == self.token)
                                     ).first()
        if row is None or row.step != self.step + 1 or row.answer is None:
            raise BadRequest(f"cursor: page {self.step} of prune {self.token} was answered meanwhile and the prune "
                             "went on (or it expired); send the newest cursor, or start the prune again")
        return _page_of(row.answer)

    def _write(self, connection: Any) -> None:
        """Add this page's changes to the prune's digest rows (and decide the candidates after the
        last "seen" page)."""
        from sqlalchemy.dialects.postgresql import insert

        from tracklet.server.schema import media_prune_digests as digests

        token = digests.c.token == self.token
        wanted = sorted(self.wanted.items())
        for start in range(0, len(wanted), _IN_CHUNK):
            rows = [{"token": self.token, "digest": digest, "wanted": count, "named": 0, "shared": False}
                    for digest, count in wanted[start:start + _IN_CHUNK]]
            upsert = insert(digests).values(rows)
            connection.execute(upsert.on_conflict_do_update(index_elements=[digests.c.token, digests.c.digest],
                                                            set_={"wanted": digests.c.wanted + upsert.excluded.wanted}))
        if self.named:
            connection.execute(digests.update().where(token, digests.c.digest == sa.bindparam("found"))
                               .values(named=digests.c.named + sa.bindparam("count")),
                               [{"found": digest, "count": count} for digest, count in sorted(self.named.items())])
        shared = sorted(self.shared)
        for start in range(0, len(shared), _IN_CHUNK):
            connection.execute(digests.update().where(token, digests.c.digest.in_(shared[start:start + _IN_CHUNK]))
                               .values(shared=True))
        for start in range(0, len(self.decided), _IN_CHUNK):
            connection.execute(digests.delete().where(token, digests.c.digest.in_(self.decided[start:start + _IN_CHUNK])))
        if self.decide is not None:
            self._decide(connection, self.decide)

    def _decide(self, connection: Any, blobs: ServerMediaBlobs) -> None:
        """The candidates: the digests the retired items alone name (every run's logs name them as
        many times) and no table cell or artifact version does; the others' rows removed."""
        from tracklet.server.schema import media_prune_digests as digests

        token = digests.c.token == self.token
        count = sa.select(sa.func.count()).select_from(digests).where(token)
        wanted = connection.execute(count).scalar_one()
        connection.execute(digests.delete().where(token, sa.or_(digests.c.named != digests.c.wanted, digests.c.shared)))
        if connection.execute(count).scalar_one():
            try:
                referenced = blobs.artifact_referenced()
            except RuntimeError as error:
                self.note = f"blobs kept: {error}"
                self.next_phase("")
                return
            position = ""
            while chunk := list(connection.execute(sa.select(digests.c.digest).where(token, digests.c.digest > position)
                                                   .order_by(digests.c.digest).limit(_IN_CHUNK)).scalars()):
                position = chunk[-1]
                if kept := [digest for digest in chunk if digest in referenced]:
                    connection.execute(digests.delete().where(token, digests.c.digest.in_(kept)))
        self.kept_shared = wanted - connection.execute(count).scalar_one()
