"""Media retention: an explicit policy, applied by a command, never by the logging path.

Nothing logged is sampled away while a run records: every image of every step is kept. What a
project keeps afterwards is the user's decision, made with ``tracklet media prune PROJECT
--keep-last N --max-bytes SIZE`` (``plan``): for each run and media key, the media of the last
``N`` steps that key logged stay, then the run's oldest steps go until the rest fits in ``SIZE``;
what is left out is retired.

Retiring writes ``media-retention.json`` in the run's directory (``{"keys": {key: first kept
step}, "policy": {...}, "time": ...}``, replaced atomically; a later prune only moves a key's
first kept step forward). The record log is never rewritten: the read API (``run.media(key)``,
``images``) leaves out items before a key's first kept step, and ``media_retention`` says where
each key starts (the gap is explicit, not silent).

Then the blobs only retired items name are removed, where that is provably safe. Blobs are
deduplicated, so one blob may be named by a kept item, another run, an artifact version, a table
cell, a trace: a retired item's blob (file, thumbnail, masks) is removed only when

- the blob store is this data root's own (``<root>/artifacts``; one set by
  ``$TRACKLET_ARTIFACT_DIR`` may be shared with other data roots: nothing is removed);
- it was not written or claimed since the start of a run of the data root that is running, or
  since the prune began (a run's media worker names an existing blob only after claiming it,
  ``FsspecBlobStore.claim``, which sets its time): each blob is moved aside, its time checked
  again, and put back if a claim came first; a claim that comes after finds it missing and the
  worker writes it again (the artifact collection's protocol, ``tracklet.artifacts.gc``). The
  store's ``gc.lock`` is held meanwhile, so no artifact commit in flight relies on it either;
- every run record log of the data root names the digest exactly as many times as the retired
  items' records do (a raw search of the logs, which finds any record kind's reference: kept
  media, tables, spans, ...);
- no artifact version references it, and no table cell of any run names it (the Parquet
  fragments' media columns are read);

and anything that can't be read (a damaged log, a fragment) stops the removal, not the hiding.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

RETENTION_FILE = "media-retention.json"
_DIGEST = re.compile(rb"[0-9a-f]{64}")


def read_cutoffs(run_dir: Path) -> dict[str, int]:
    """Each key's first kept step in ``run_dir`` (empty without a policy applied). A damaged
    file is an error: guessing would show retired items or hide kept ones."""
    path = Path(run_dir) / RETENTION_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ValueError(f"{path} can't be read ({error}): fix or remove it") from None
    return parse_cutoffs(data, str(path))


def parse_cutoffs(data: bytes, where: str) -> dict[str, int]:
    """A retention file's cutoffs (``read_cutoffs``; ``where``: the file, for the error)."""
    try:
        parsed = json.loads(data)
    except ValueError as error:
        raise ValueError(f"{where} can't be read ({error}): fix or remove it") from None
    keys = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(keys, dict) or not all(isinstance(step, int) for step in keys.values()):
        raise ValueError(f"{where} is not a media retention file")
    return {str(key): int(step) for key, step in keys.items()}


def cutoffs_bytes(cutoffs: dict[str, int], policy: dict[str, Any]) -> bytes:
    """A retention file's contents."""
    return json.dumps({"keys": cutoffs, "policy": policy, "time": time.time()}, indent=1).encode()


def forward(before: dict[str, int], cutoffs: dict[str, int]) -> dict[str, int]:
    """``before`` moved forward to ``cutoffs``: each key's first kept step the later of the two."""
    merged = dict(before)
    for key, step in cutoffs.items():
        merged[key] = max(int(step), before.get(key, int(step)))
    return merged


def retained(messages: Iterable[Any], cutoffs: dict[str, int]) -> list[Any]:
    """The media records a retention policy keeps (all of them without one)."""
    if not cutoffs:
        return list(messages)
    return [m for m in messages if m.step >= cutoffs.get(m.key, m.step)]


@dataclasses.dataclass
class RunPrune:
    """What ``keep_last`` retires in one run: each key's new first kept step and the records retired."""

    project: str
    run_id: str
    run_dir: Path
    cutoffs: dict[str, int]  # every key's first kept step after this prune (earlier ones included)
    retired: list[Any]  # MediaLogged messages before their key's cutoff, earlier prunes' included
    newly_retired: int  # how many of them this prune retires
    newly_retired_bytes: int


@dataclasses.dataclass
class PruneReport:
    runs: list[RunPrune]
    blobs_removed: int = 0
    bytes_freed: int = 0
    blobs_kept_shared: int = 0  # named by something besides the retired items
    blobs_note: str = ""  # why no blob was removed, when none could be
    running_run: str = ""  # the running run started first, if any (no blob it may name goes)
    blobs_kept_running: int = 0  # retired blobs kept: written or claimed since it started (or the prune began)


def plan(root: Path, project: str, keep_last: int | None = None, keys: Sequence[str] | None = None, *,
         max_bytes: int | None = None) -> list[RunPrune]:
    """For each run of ``project`` under data root ``root`` with media retired: what keeping the
    media of the last ``keep_last`` steps of each key (of ``keys``, or all) retires, and then, with
    ``max_bytes``, the oldest steps of those keys until the files they keep are at most that many
    bytes (``size_bytes`` as recorded: thumbnails and masks not counted); with what earlier prunes
    retired (``newly_retired`` counts this one's). (A server whose logs are segments plans run by
    run, ``_plan_run``: ``tracklet.server.media_retention.prune_page``.)"""
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import iter_runs

    if keep_last is None and max_bytes is None:
        raise ValueError("a retention policy needs keep_last or max_bytes")
    if (keep_last is not None and keep_last < 0) or (max_bytes is not None and max_bytes < 0):
        raise ValueError(f"keep_last and max_bytes must be 0 or more; got {keep_last}, {max_bytes}")
    plans = []
    for paths in iter_runs(Path(root), project):
        run = _plan_run(paths, read_cutoffs(paths.run_dir), keep_last, keys, max_bytes, RecordedRun)
        if run is not None:
            plans.append(run)
    return plans


def _plan_run(paths: Any, before: dict[str, int], keep_last: int | None, keys: Sequence[str] | None,
              max_bytes: int | None, recorded: Any) -> RunPrune | None:
    messages = list(recorded(paths)._read.media)
    cutoffs = dict(before)
    steps: dict[str, set[int]] = collections.defaultdict(set)
    for message in messages:
        if keys is None or message.key in keys:
            steps[message.key].add(message.step)
    for key, logged in steps.items():
        if keep_last is None:
            continue
        kept = sorted(logged)[-keep_last:] if keep_last else []
        first_kept = kept[0] if kept else max(logged) + 1
        cutoffs[key] = max(first_kept, before.get(key, first_kept))
    if max_bytes is not None and steps:
        _within_bytes(messages, steps, cutoffs, max_bytes)
    retired = [m for m in messages if m.step < cutoffs.get(m.key, m.step)]
    new = [m for m in retired if m.step >= before.get(m.key, m.step)]
    if not retired:  # (retired earlier only: its blobs may not have been removable then)
        return None
    return RunPrune(paths.project, paths.run_id, paths.run_dir, cutoffs, retired, len(new),
                    sum(m.size_bytes for m in new))


def _within_bytes(messages: list[Any], steps: dict[str, set[int]], cutoffs: dict[str, int], max_bytes: int) -> None:
    """Move the cutoffs of the keys in ``steps`` to the first step from which the media they keep
    add up to at most ``max_bytes`` (the oldest steps go first, across those keys)."""
    by_step: collections.Counter[int] = collections.Counter()
    for message in messages:
        if message.key in steps and message.step >= cutoffs.get(message.key, message.step):
            by_step[message.step] += message.size_bytes
    kept = sum(by_step.values())
    first = min(by_step, default=0)
    for step in sorted(by_step):
        if kept <= max_bytes:
            break
        kept -= by_step[step]
        first = step + 1
    for key, logged in steps.items():
        target = max(cutoffs.get(key, first), first)
        if target > min(logged):  # else nothing of this key is retired: no entry
            cutoffs[key] = target


def apply(root: Path, plans: list[RunPrune], *, keep_last: int | None = None, max_bytes: int | None = None,
          remove_blobs: bool = True, store: Any = None) -> PruneReport:
    """Write each run's retention file, then remove the blobs only retired items name (see the
    module docstring for when that is safe) from ``store`` (the data root's own by default; a
    server passes ``ServerMediaBlobs``)."""
    policy = {"keep_last": keep_last, "max_bytes": max_bytes}
    for run in plans:
        if run.newly_retired:
            _write_cutoffs(run.run_dir, run.cutoffs, policy)
    report = PruneReport(plans)
    if remove_blobs and plans:
        _remove_blobs(Path(root), report, store)
    return report


def merge_cutoffs(run_dir: Path, cutoffs: dict[str, int], policy: dict[str, Any]) -> dict[str, int]:
    """Move ``run_dir``'s retention forward to ``cutoffs`` (another copy's: ``tracklet sync``
    sends a run's), never back: each key's first kept step becomes the later of the two. Returns
    the cutoffs now in force; writes the file only when one moved."""
    before = read_cutoffs(run_dir)
    merged = forward(before, cutoffs)
    if merged != before:
        _write_cutoffs(Path(run_dir), merged, policy)
    return merged


def _write_cutoffs(run_dir: Path, cutoffs: dict[str, int], policy: dict[str, Any]) -> None:
    path = run_dir / RETENTION_FILE
    temporary = path.with_name(f".{RETENTION_FILE}.{os.getpid()}.tmp")
    temporary.write_bytes(cutoffs_bytes(cutoffs, policy))
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _digests_of(message: Any) -> list[str]:
    found = [message.digest, *(mask.digest for mask in message.masks)]
    if message.thumbnail_digest:
        found.append(message.thumbnail_digest)
    return found


class LocalBlobs:
    """Where a local data root's media blobs live and how one is removed (``apply``); the
    server's counterpart is ``tracklet.server.media_retention.ServerMediaBlobs``."""

    def __init__(self, root: Path) -> None:
        from tracklet.artifacts.blobs import FsspecBlobStore
        from tracklet.artifacts.storage import artifact_dir

        self.root = root
        self.store_dir = artifact_dir(root)
        self.blobs = FsspecBlobStore(self.store_dir)
        #: ``remove`` keeps a blob whose time is this or later (claimed by a run meanwhile).
        self.keep_since: float | None = None
        self.kept_since = 0  # blobs ``remove`` kept for that

    def refusal(self) -> str:
        """Why no blob may be removed at all ("" when they may)."""
        if self.store_dir.resolve() != (self.root / "artifacts").resolve():
            return (f"blobs kept: the blob store {self.store_dir} ($TRACKLET_ARTIFACT_DIR) may be shared with "
                    "other data roots")
        return ""

    def artifact_references(self, digests: set[str]) -> set[str]:
        """Those of ``digests`` an artifact version's manifest or files reference."""
        return _artifact_references(self.root, digests)

    def read_fragment_columns(self, digest: str, columns: list[str] | None) -> Any:
        """A table fragment's schema (``columns`` None) or those columns, as Arrow."""
        import pyarrow.parquet as pq

        path = self.blobs.local_path(digest)
        if path is None or not path.is_file():
            raise RuntimeError(f"table fragment {digest} is missing: which blobs its cells name can't be known")
        return pq.read_schema(path) if columns is None else pq.read_table(path, columns=columns)

    def remove(self, digest: str) -> int | None:
        """Remove the blob; the bytes freed, or None when there was none or it was kept: it is
        moved aside first and put back if its time is ``keep_since`` or later (a run claimed it)."""
        from tracklet.artifacts.gc import ASIDE_SUFFIX, _put_back

        path = self.blobs.local_path(digest)
        if path is None:
            return None
        moved = Path(self.blobs.base) / "tmp" / (digest + ASIDE_SUFFIX)
        moved.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, moved)
        except FileNotFoundError:
            return None
        stat = moved.stat()
        if self.keep_since is not None and stat.st_mtime >= self.keep_since:
            _put_back(moved, path)
            self.kept_since += 1
            return None
        moved.unlink()
        return stat.st_size

    def restore_set_aside(self) -> None:
        """Put back what a prune or collection killed midway left aside."""
        from tracklet.artifacts.gc import restore_blobs_set_aside

        restore_blobs_set_aside(self.blobs)


def _remove_blobs(root: Path, report: PruneReport, store: Any = None) -> None:
    """Remove the blobs only ``report``'s retired items name (the module docstring's rules) from
    ``store`` (``LocalBlobs`` of ``root`` by default; a server passes its own), the runs' logs
    read under ``root``."""
    store = LocalBlobs(root) if store is None else store
    report.blobs_note = store.refusal()
    if report.blobs_note:
        return
    if not isinstance(store, LocalBlobs):
        running = _running_runs(root)
        if running and hasattr(store, "while_running"):  # a server's: it re-checks uploads (server/media_retention.py)
            store.while_running(running[0])
        elif running:
            report.blobs_note = (f"blobs kept: run {running[0]} is still running (it may be storing the same "
                                 "bytes); prune again when no run is")
            return
        _remove_named_only_by_retired(root, report, store)
        return
    from tracklet.artifacts.gc import CLOCK_SLACK_SECONDS, _running_since
    from tracklet.artifacts.storage import store_lock

    with store_lock(store.store_dir, exclusive=True):  # no artifact commit in flight relies on a blob
        store.restore_set_aside()
        store.keep_since = time.time()  # before the logs are searched: a run ending after has its records there
        first = _running_since(root)
        if first is not None:
            report.running_run = first[0]
            store.keep_since = min(store.keep_since, first[1] - CLOCK_SLACK_SECONDS)
        _remove_named_only_by_retired(root, report, store)
        report.blobs_kept_running = store.kept_since


def _wanted(report: PruneReport) -> collections.Counter[str]:
    """How many times the retired items name each blob."""
    wanted: collections.Counter[str] = collections.Counter()
    for run in report.runs:
        for message in run.retired:
            wanted.update(_digests_of(message))
    return wanted


def _remove_named_only_by_retired(root: Path, report: PruneReport, store: Any) -> None:
    wanted = _wanted(report)
    try:
        named = _times_named_in_logs(root, set(wanted))
        shared = {digest for digest, count in wanted.items() if named.get(digest, 0) != count}
        candidates = set(wanted) - shared
        candidates -= store.artifact_references(candidates)
        candidates -= _table_cell_digests(root, store)
    except (OSError, ValueError, RuntimeError) as error:
        report.blobs_note = f"blobs kept: {error}"
        return
    report.blobs_kept_shared = len(wanted) - len(candidates)
    for digest in sorted(candidates):
        size = store.remove(digest)
        if size is None:
            continue
        report.blobs_removed += 1
        report.bytes_freed += size


def _running_runs(root: Path) -> list[str]:
    from tracklet.core.layout import iter_run_logs

    return [f"{paths.project}/{paths.run_id}" for paths, logs in iter_run_logs(root) if _is_running(paths, logs)]


def _is_running(paths: Any, logs: list[Any]) -> bool:
    """Whether the run of ``paths`` (its logs: ``logs``) is running."""
    from tracklet.core.api import RecordedRun
    from tracklet.core.recordlog import writer_alive

    if logs[0].part is not None:  # a shared run whose primary hasn't started: running while a part's writer is
        return any(writer_alive(part.log_file) is not False for part in logs)
    run = RecordedRun(paths)  # a shared run runs while any of its writers does
    return run.state == "running" or any(part.get("state") == "running" for part in run.parts.values())


def _times_named_in_logs(root: Path, digests: set[str]) -> dict[str, int]:
    """How many times each of ``digests`` appears in the run record logs under ``root`` (records are
    uncompressed protobuf: a digest field is its hex text, after its length byte). Read in blocks;
    a digest across a block's end is counted once (what the carried tail alone holds is not)."""
    from tracklet.core.layout import iter_logs

    counts: collections.Counter[str] = collections.Counter()
    if not digests:
        return counts
    wanted = {digest.encode() for digest in digests}
    for paths in iter_logs(root):  # a shared run's parts name blobs too (docs/shared-runs.md)
        _count_named(paths.log_file, wanted, counts)
    return counts


def _count_named(log_file: Path, wanted: set[bytes], counts: collections.Counter[str]) -> None:
    """Add to ``counts`` how many times the log names each of ``wanted`` (``_times_named_in_logs``)."""
    if not wanted:
        return

    def named(data: bytes) -> collections.Counter[bytes]:
        return collections.Counter(match for match in _DIGEST.findall(data) if match in wanted)

    with open(log_file, "rb") as handle:  # OSError: nothing is removed
        tail = b""
        while block := handle.read(16 << 20):
            data = tail + block
            found = named(data)
            found.subtract(named(tail))
            counts.update({digest.decode(): count for digest, count in found.items() if count > 0})
            tail = data[-63:]


def _artifact_references(root: Path, digests: set[str]) -> set[str]:
    """Those of ``digests`` an artifact version's manifest or files reference."""
    if not digests:
        return set()
    from tracklet.artifacts.gc import reference_counts
    from tracklet.artifacts.storage import open_store
    from tracklet.errors import ArtifactError

    try:
        counts, _, _ = reference_counts(open_store(root))
    except ArtifactError as error:
        raise RuntimeError(str(error)) from None
    return {digest for digest in digests if counts.get(digest)}


def _table_cell_digests(root: Path, store: Any) -> set[str]:
    """Every blob a media cell of any table fragment under ``root`` names (file, thumbnail,
    masks); the fragments are read through ``store`` (``LocalBlobs``, or a server's)."""
    fragments = {fragment.digest for record in run_tables(root) for fragment in record.fragments}
    return cell_digests(fragments, store)


def run_tables(root: Path) -> Iterator[Any]:
    """The table records of every run under ``root``: each run's merged with its parts
    (``RecordedRun``), and those of parts whose primary hasn't started (docs/shared-runs.md)."""
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import iter_run_logs

    for paths, logs in iter_run_logs(root):
        for read in [paths] if logs[0].part is None else logs:
            yield from RecordedRun(read)._read.tables


def cell_digests(fragments: set[str], store: Any) -> set[str]:
    """Every blob a media cell of these table fragments names, read through ``store``."""
    found: set[str] = set()
    for digest in sorted(fragments):
        schema = store.read_fragment_columns(digest, None)
        media = [field.name for field in schema if str(field.type).startswith("struct<") and
                 "digest" in [child.name for child in field.type]]
        if not media:
            continue
        for column in store.read_fragment_columns(digest, media).columns:
            for cell in column.to_pylist():
                if cell:
                    found.update(value for value in (cell.get("digest"), cell.get("thumbnail")) if value)
                    found.update(mask.get("digest") for mask in cell.get("masks") or () if mask.get("digest"))
    return found


def unversioned_blobs_in_use(store: Any, digests: set[str]) -> tuple[set[str], str]:
    """For ``tracklet.artifacts.gc.collect(orphan_check=)``: of ``digests`` (blobs no artifact
    version ever referenced), those a media cell of a run's table names (the run logs are searched
    by the collection itself), and ``""``; or all of them with the reason while the store may hold
    another data root's media (``$TRACKLET_ARTIFACT_DIR``, or a directory other than
    ``<root>/artifacts``) or a fragment can't be read. Runs running meanwhile are the collection's
    business: it keeps every blob written or claimed since the first of them started."""
    root = Path(store.data_root)
    blobs = LocalBlobs(root)
    note = blobs.refusal()
    if not note and Path(store.directory).resolve() != (root / "artifacts").resolve():
        note = f"blobs kept: the blob store {store.directory} is not the data root's own"
    if note:
        return set(digests), note
    try:
        return digests & _table_cell_digests(root, blobs), ""
    except (OSError, ValueError, RuntimeError) as error:
        return set(digests), f"blobs kept: {error}"
