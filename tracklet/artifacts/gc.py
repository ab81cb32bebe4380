"""Garbage collection of the local artifact store: remove what no version needs any more.

Deleting a version (``tracklet artifact rm``) only drops its registry entry (leaving a tombstone);
its bytes stay until a collection (``tracklet artifact gc``), which

1. counts references (mark): every live version's manifest blob, each file entry's blob or recipe
   blob, every chunk of each referenced recipe, and the digests that other users of the blob store
   declare live (``register_live_digests``);
2. removes (sweep) the blobs no live version references and no run record log of the data root
   names (media and tables keep their blobs in the same store and name them in run logs, which are
   scanned for the candidates' digests): those deleted versions referenced, and those no version
   ever did (a failed or killed commit's), the latter only from the data root's own store and
   with no table cell naming them (``_orphans``). It also removes every pack none
   of whose chunks a live version needs. Nothing
   written within the grace period (default a day: ``grace=``) is removed, and no blob written or
   claimed since the start of a run of the data root that is running (``_running_since``: a
   running run names only blobs it wrote after it started or claimed, ``FsspecBlobStore.claim``,
   which sets their time; each blob is moved aside and its time checked again before it goes,
   so a claim either came first and keeps it, or finds it missing and writes it again:
   ``_set_aside``); a pack at least half of whose
   bytes are unreferenced is repacked (its live chunks copied into a new pack, checked against
   their ids, the index moved to it, the old pack removed); a pack with fewer dead bytes is kept
   whole (they are reported);
3. removes temporaries (``blobs/tmp``, ``packs/tmp``) older than the grace period and than the
   start of every running run (its media worker may be writing one), which killed writers left.

It holds the store's ``gc.lock`` exclusively: commits and downloads hold it shared, so no commit in
flight can be relying on a blob or chunk that is being removed. Something that can't be read is
named in the report (``problems``) and keeps only what it could reference, and the rest of the
collection goes on: a live version's manifest (its blobs and recipes are unknown, and blobs are
shared by content, so no blob and no pack goes this time), a recipe (its chunks are unknown: no
pack goes), a run's record log (what it names is unknown: no blob goes), a pack to repack (it is
kept as it is, the others are repacked).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tracklet.artifacts.blobs import FsspecBlobStore
from tracklet.artifacts.manifest import Manifest, is_sha256
from tracklet.artifacts.registry import DELETED
from tracklet.artifacts.storage import CHUNK_INDEX_FILE, ArtifactStore, Progress, recipe_of, store_lock
from tracklet.errors import ArtifactError, PackCorrupt

DEFAULT_GRACE_SECONDS = 24 * 3600
#: Seconds a blob's time (the file system's clock) may read behind a run's recorded start.
CLOCK_SLACK_SECONDS = 60.0
#: A blob moved aside by a collection, to be removed once its time is checked (``_set_aside``).
ASIDE_SUFFIX = ".gc-aside"
#: A pack whose unreferenced chunks take at least this share of its data bytes is rewritten.
REPACK_DEAD_SHARE = 0.5

_live_sources: list[Callable[[ArtifactStore], Iterable[str]]] = []

#: ``check(store, digests)``: of blobs no artifact version ever referenced (old enough to go),
#: those that must stay (other users of the store name them), and why when all of them stay for a
#: reason ("" otherwise). Supplied from above this layer (runs' media and tables).
OrphanCheck = Callable[[ArtifactStore, set[str]], tuple[set[str], str]]


def register_live_digests(source: Callable[[ArtifactStore], Iterable[str]]) -> None:
    """Declare blobs that something other than an artifact manifest keeps in this store (media
    files of runs, say): ``source(store)`` yields their sha256 digests, which ``collect`` keeps."""
    if source not in _live_sources:
        _live_sources.append(source)


@dataclasses.dataclass
class GcReport:
    """What a collection found and removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    versions: int = 0
    referenced_blobs: int = 0
    referenced_chunks: int = 0
    blobs_removed: int = 0
    blob_bytes: int = 0
    packs_removed: int = 0
    pack_bytes: int = 0
    chunks_removed: int = 0
    temporaries_removed: int = 0
    temporary_bytes: int = 0
    kept_in_grace: int = 0  # unreferenced, but written within the grace period
    dead_bytes_in_live_packs: int = 0  # unreferenced chunks kept in packs that still hold live ones
    packs_repacked: int = 0  # packs mostly unreferenced, whose live chunks were copied to new packs
    repack_bytes: int = 0  # bytes of those old packs (freed) ...
    repack_written: int = 0  # ... and of the new packs written for their live chunks
    orphans_kept: int = 0  # blobs no version ever referenced, kept for ``orphans_note``
    orphans_note: str = ""
    running_run: str = ""  # the running run started first, if any (no blob it may name goes)
    kept_for_running: int = 0  # unreferenced blobs kept, written or claimed since ``running_run`` started
    damaged_packs: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)  # what couldn't be read, and what it kept
    removed: list[str] = dataclasses.field(default_factory=list)  # paths, relative to the store

    @property
    def freed_bytes(self) -> int:
        return self.blob_bytes + self.pack_bytes + self.temporary_bytes + self.repack_bytes - self.repack_written


@dataclasses.dataclass
class Unreadable:
    """What ``reference_counts`` couldn't read: versions whose manifest (so every blob and chunk is
    possibly theirs) and recipes whose chunk list (so every chunk) is unknown; each names why."""

    manifests: list[str] = dataclasses.field(default_factory=list)
    recipes: list[str] = dataclasses.field(default_factory=list)


def reference_counts(store: ArtifactStore, unreadable: Unreadable | None = None
                     ) -> tuple[collections.Counter[str], set[bytes], int]:
    """(references to each blob by the versions' manifests and entries, the set of live chunk
    ids, the number of versions). A manifest or recipe that can't be read: with ``unreadable``,
    named there and skipped (the counts are then incomplete); without, ``ArtifactError``."""
    counts: collections.Counter[str] = collections.Counter()
    recipes: set[str] = set()
    versions = 0
    registry = store.registry
    for project in registry.projects():
        for name in registry.collections(project):
            for info in registry.versions(project, name):
                versions += 1
                counts[info.manifest] += 1
                if info.incremental_base:  # an incremental version's base manifest: what a later send diffs
                    counts[info.incremental_base] += 1
                try:
                    manifest = store.manifest(info)
                    entries = [(recipe_of(entry), entry) for entry in manifest]
                except ArtifactError as error:
                    if unreadable is None:
                        raise ArtifactError(f"gc stopped, nothing removed: can't read the manifest of "
                                            f"{info.qualified_name}: {error}") from None
                    unreadable.manifests.append(f"can't read the manifest of {info.qualified_name}: {error}")
                    continue
                for recipe, entry in entries:
                    if recipe is not None:
                        counts[recipe] += 1
                        recipes.add(recipe)
                    elif entry.ref is None:
                        counts[entry.digest] += 1
    for source in _live_sources:
        counts.update(source(store))
    chunks: set[bytes] = set()
    for recipe in sorted(recipes):
        try:
            chunks.update(store.read_recipe(recipe, f"recipe blob {recipe}").chunk_ids)
        except ArtifactError as error:
            if unreadable is None:
                raise ArtifactError(f"gc stopped, nothing removed: {error}") from None
            unreadable.recipes.append(f"can't read recipe blob {recipe}: {error}")
    return counts, chunks, versions


def deleted_references(store: ArtifactStore) -> set[str]:
    """The blobs that deleted versions (tombstones) referenced: their manifests, the files'
    blobs, the recipes. A tombstone whose manifest is gone or unreadable contributes what it can."""
    candidates: set[str] = set()
    projects = store.registry.root / "projects"
    for tombstone in sorted(projects.glob(f"*/*/versions/*{DELETED}")) if projects.is_dir() else []:
        try:
            manifest_blob = json.loads(tombstone.read_bytes())["manifest"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not is_sha256(manifest_blob):
            continue
        candidates.add(manifest_blob)
        try:
            manifest = Manifest.from_bytes(store.blobs.read_bytes(manifest_blob))
        except ArtifactError:
            continue
        for entry in manifest:
            try:
                recipe = recipe_of(entry)
            except ArtifactError:
                continue
            if recipe is not None:
                candidates.add(recipe)
            elif entry.ref is None:
                candidates.add(entry.digest)
    return candidates


def named_in_run_logs(data_root: Path, digests: set[str], unreadable: list[str] | None = None) -> set[str]:
    """Those of ``digests`` that appear in a run record log under ``data_root``: the raw bytes are
    searched (records are uncompressed protobuf, so a digest field is its hex text), which finds the
    references of every record kind, media and tables included, without decoding. A log that
    can't be read is named in ``unreadable`` (what it names is then unknown)."""
    from tracklet.core.layout import iter_logs

    found: set[str] = set()
    wanted = {digest.encode() for digest in digests}
    if not wanted:
        return found
    pattern = re.compile(rb"[0-9a-f]{64}")
    overlap = 63
    for paths in iter_logs(data_root):  # a shared run's parts name blobs too (docs/shared-runs.md)
        try:
            with open(paths.log_file, "rb") as handle:
                tail = b""
                while block := handle.read(16 << 20):
                    data = tail + block
                    if len(wanted) <= 16:
                        found.update(d.decode() for d in wanted if d in data)
                    else:
                        found.update(m.decode() for m in pattern.findall(data) if m in wanted)
                    wanted -= {d.encode() for d in found}
                    tail = data[-overlap:]
                    if not wanted:
                        return found
        except OSError as error:
            if unreadable is not None:
                unreadable.append(f"can't read the record log of run {paths.project}/{paths.run_id}: {error}")
            continue
    return found


def collect(store: ArtifactStore, *, grace: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False,
            progress: Progress | None = None, now: float | None = None,
            orphan_check: OrphanCheck | None = None) -> GcReport:
    """Remove what no version references (see the module's docstring); what was (or would be) freed.
    ``orphan_check``: which blobs no version ever referenced must stay anyway (``OrphanCheck``;
    ``tracklet artifact gc`` passes ``tracklet.media.retention.unversioned_blobs_in_use``); without
    one, every such blob stays."""
    report = GcReport(dry_run=dry_run)
    with store_lock(store.directory, exclusive=True):
        if not dry_run:
            restore_set_aside(store)
        unreadable = Unreadable()
        counts, live_chunks, report.versions = reference_counts(store, unreadable)
        report.problems += [f"{problem} (no blob and no pack removed)" for problem in unreadable.manifests]
        report.problems += [f"{problem} (no pack removed)" for problem in unreadable.recipes]
        report.referenced_blobs, report.referenced_chunks = len(counts), len(live_chunks)
        now = time.time() if now is None else now
        cutoff = now - grace
        # Before the logs are searched: a run that ends after this has its records in its log.
        blob_cutoff = cutoff
        running = _running_since(store.data_root)
        if running is not None:
            report.running_run = running[0]
            blob_cutoff = min(cutoff, running[1] - CLOCK_SLACK_SECONDS)
        candidates = {digest for digest in deleted_references(store) if not counts[digest]}
        candidates |= _orphans(store, counts, candidates, cutoff, blob_cutoff, report, orphan_check)
        unread_logs: list[str] = []
        candidates -= named_in_run_logs(store.data_root, candidates, unread_logs)
        report.problems += [f"{problem} (no blob removed)" for problem in unread_logs]
        if unreadable.manifests or unread_logs:  # any blob may be one they name
            candidates = set()
        sparse: list[str] = []
        doomed = _dead_blobs(store, candidates, cutoff, blob_cutoff, report)
        if not (unreadable.manifests or unreadable.recipes):  # else any chunk may be one they list
            doomed += _dead_packs(store, live_chunks, cutoff, report, sparse)
        # A running run's media worker may be writing a temporary now (its time is its last write):
        # those written since the first running run started stay, as its blobs do.
        doomed += _stale_temporaries(store, blob_cutoff, report)
        if sparse:
            doomed += _repack(store, sparse, live_chunks, report, dry_run)
        aside: dict[Path, Path] = {}
        if not dry_run:
            doomed = _set_aside(store, doomed, blob_cutoff, report, aside)
        if progress is not None:
            progress.start(len(doomed), sum(size for _, size, _ in doomed))
        if not dry_run:
            # The index forgets a pack before its file goes: killed in between, a pack without
            # rows is re-indexed and removed next time; the other order would leave the index
            # naming chunks in a missing pack, which a commit would then skip writing.
            _forget(store, doomed)
        base = store.directory
        for path, size, _kind in doomed:
            report.removed.append(path.relative_to(base).as_posix())
            if not dry_run:
                try:
                    aside.get(path, path).unlink()
                except FileNotFoundError:
                    pass
            if progress is not None:
                progress.advance(1, size)
    return report


def _running_since(data_root: Path) -> tuple[str, float] | None:
    """The running run of ``data_root`` that started first and its start (its first session's,
    for a resumed run: earlier, so more is kept), or None when no run is running. A run names
    only blobs it wrote after it started or claimed (``FsspecBlobStore.claim``: their time is set
    then), so no blob older than this is one a running run may be about to name."""
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import iter_run_logs
    from tracklet.core.recordlog import writer_alive

    first: tuple[str, float] | None = None
    for paths, logs in iter_run_logs(data_root):
        for part in logs:  # a shared run's live secondary writers (docs/shared-runs.md), its primary started or not
            if part.part is not None and writer_alive(part.log_file) \
                    and (started := RecordedRun(part).created_at) is not None and (first is None or started < first[1]):
                first = (f"{paths.project}/{paths.run_id} part {part.part}", started)
        if logs[0].part is not None:  # no run.tlog yet: its parts alone
            continue
        alive = writer_alive(paths.log_file)  # a live writer: running (its log is not replayed)
        if alive is False:
            continue
        run = RecordedRun(paths)
        if alive is None and run.state != "running":
            continue
        started = run.created_at
        if started is None:  # no start record yet: it is starting now
            started = time.time()
        if first is None or started < first[1]:
            first = (f"{paths.project}/{paths.run_id}", started)
    return first


def _set_aside(store: ArtifactStore, doomed: list[tuple[Path, int, str]], blob_cutoff: float, report: GcReport,
               aside: dict[Path, Path]) -> list[tuple[Path, int, str]]:
    """Move each doomed blob aside (``blobs/tmp/<digest>.gc-aside``, one rename) and check its
    time again: a blob a run claimed meanwhile (``FsspecBlobStore.claim`` sets its time; one
    claimed after the move finds it missing and is written again) goes back. ``aside`` maps each
    blob still doomed to where it lies now. Killed in between, the next collection puts every
    blob it finds aside back first (``restore_set_aside``)."""
    folder = Path(store.blobs.base) / "tmp"
    kept = []
    for entry in doomed:
        path, size, kind = entry
        if kind != "blob":
            kept.append(entry)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        moved = folder / (path.name + ASIDE_SUFFIX)
        try:
            os.rename(path, moved)
        except FileNotFoundError:
            continue  # removed meanwhile
        if moved.stat().st_mtime >= blob_cutoff:
            _put_back(moved, path)
            report.blobs_removed -= 1
            report.blob_bytes -= size
            report.kept_for_running += 1
            continue
        aside[path] = moved
        kept.append(entry)
    return kept


def _put_back(moved: Path, path: Path) -> None:
    """A blob moved aside back under its name (a writer may have stored it again meanwhile: the
    same bytes, so either copy will do)."""
    if path.exists():
        moved.unlink()
    else:
        os.replace(moved, path)


def restore_set_aside(store: ArtifactStore) -> int:
    """Put back the blobs a collection killed midway left aside (``_set_aside``); how many."""
    return restore_blobs_set_aside(store.blobs)


def restore_blobs_set_aside(blobs: FsspecBlobStore) -> int:
    """``restore_set_aside`` for a blob store (``tracklet media prune`` sets blobs aside too)."""
    folder = Path(blobs.base) / "tmp"
    restored = 0
    for moved in sorted(folder.glob("*" + ASIDE_SUFFIX)) if folder.is_dir() else []:
        path = blobs.local_path(moved.name[: -len(ASIDE_SUFFIX)])
        if path is None or not is_sha256(path.name):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        _put_back(moved, path)
        restored += 1
    return restored


def _orphans(store: ArtifactStore, counts: collections.Counter[str], deleted: set[str], cutoff: float,
             blob_cutoff: float, report: GcReport, check: OrphanCheck | None) -> set[str]:
    """Blobs older than ``blob_cutoff`` that no version, live or deleted, references (a commit
    that failed or was killed midway left them), less those ``check`` keeps (media and tables of
    runs name blobs too: ``tracklet.media.retention.unversioned_blobs_in_use``); all of them are
    kept without a check. The run logs are searched by the caller."""
    base = store.blobs.local_path("0" * 64)
    if base is None:
        return set()
    old: set[str] = set()
    for path in _files(base.parent.parent):
        digest = path.name
        if not is_sha256(digest) or counts[digest] or digest in deleted:
            continue
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue
        if mtime < blob_cutoff:
            old.add(digest)
        elif mtime < cutoff:
            report.kept_for_running += 1
        else:
            report.kept_in_grace += 1
    if not old:
        return old
    if check is None:
        kept, note = old, "blobs kept: no check of which blobs runs' media and tables name was given"
    else:
        kept, note = check(store, old)
    if note:
        report.orphans_kept, report.orphans_note = len(kept), note
    return old - kept


def _dead_blobs(store: ArtifactStore, candidates: set[str], cutoff: float, blob_cutoff: float,
                report: GcReport) -> list[tuple[Path, int, str]]:
    doomed = []
    for digest in sorted(candidates):
        path = store.blobs.local_path(digest)
        if path is None:
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # collected already
        if stat.st_mtime >= cutoff:
            report.kept_in_grace += 1
            continue
        if stat.st_mtime >= blob_cutoff:
            report.kept_for_running += 1
            continue
        doomed.append((path, stat.st_size, "blob"))
        report.blobs_removed += 1
        report.blob_bytes += stat.st_size
    return doomed


def _dead_packs(store: ArtifactStore, live: set[bytes], cutoff: float, report: GcReport,
                sparse: list[str]) -> list[tuple[Path, int, str]]:
    """Packs with no live chunk (to remove); those mostly dead are appended to ``sparse``."""
    if not (store.directory / "packs").is_dir():
        return []
    doomed = []
    with store._chunk_lock:
        packs, index = store.chunks()
        try:
            index.rebuild(packs)  # packs a killed writer renamed into place but never indexed
        except PackCorrupt as error:
            report.damaged_packs.append(str(error))
        for pack_id, size in sorted(index.packs().items()):
            chunks = index.pack_chunks(pack_id)
            dead = sum(length for cid, length in chunks if cid not in live)
            path = Path(packs.pack_path(pack_id))
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:  # indexed but gone: only the index rows are left to drop
                doomed.append((path, 0, f"pack:{pack_id}"))
                continue
            total = sum(length for _, length in chunks)
            if chunks and dead < total:
                if dead >= REPACK_DEAD_SHARE * total and mtime < cutoff:
                    sparse.append(pack_id)
                else:
                    report.dead_bytes_in_live_packs += dead
                continue
            if mtime >= cutoff:
                report.kept_in_grace += 1
                continue
            doomed.append((path, size, f"pack:{pack_id}"))
            report.packs_removed += 1
            report.pack_bytes += size
            report.chunks_removed += len(chunks)
    return doomed


def _repack(store: ArtifactStore, pack_ids: list[str], live: set[bytes], report: GcReport,
            dry_run: bool) -> list[tuple[Path, int, str]]:
    """Copy the live chunks of mostly dead packs into new packs and point the index at them; the
    old packs, to remove. Crash-safe in any order: a new pack not yet indexed has no chunk rows
    once re-indexed (its chunks are placed elsewhere), an old pack whose rows moved has none left;
    either is then removed as dead by the next collection."""
    from tracklet.artifacts.packs import PackWriter, _blake3

    doomed = []
    with store._chunk_lock:
        packs, index = store.chunks()
        sizes = index.packs()
        if dry_run:
            for pack_id in pack_ids:
                chunks = index.pack_chunks(pack_id)
                live_bytes = sum(length for cid, length in chunks if cid in live)
                report.packs_repacked += 1
                report.repack_bytes += sizes[pack_id]
                report.repack_written += live_bytes + 44 * sum(1 for cid, _ in chunks if cid in live) + 20
                doomed.append((Path(packs.pack_path(pack_id)), sizes[pack_id], f"pack:{pack_id}"))
            return doomed
        repacked = []
        with PackWriter(packs, None) as writer:  # no index: these chunks are indexed, in the old packs
            for pack_id in pack_ids:
                placed = {cid for cid, _ in index.pack_chunks(pack_id)}
                try:  # all of a pack's live chunks read and checked before any is copied
                    data = memoryview(packs.fs.cat_file(packs.pack_path(pack_id)))
                    pieces = [(cid, data[offset:offset + length]) for cid, offset, length in packs.read_entries(pack_id)
                              if cid in live and cid in placed]
                    for cid, piece in pieces:
                        if _blake3(piece) != cid:
                            raise PackCorrupt(f"chunk {cid.hex()} in pack {pack_id} is damaged")
                except (OSError, PackCorrupt) as error:  # that pack stays as it is; the others are repacked
                    report.problems.append(f"pack {pack_id} not repacked: {error}")
                    continue
                for cid, piece in pieces:
                    writer.add_chunk(cid, piece)
                repacked.append(pack_id)
        for info in writer.packs:
            index.move_chunks(info)
            report.repack_written += info.size
        for pack_id in repacked:
            report.packs_repacked += 1
            report.repack_bytes += sizes[pack_id]
            doomed.append((Path(packs.pack_path(pack_id)), sizes[pack_id], f"pack:{pack_id}"))
    return doomed


def _stale_temporaries(store: ArtifactStore, cutoff: float, report: GcReport) -> list[tuple[Path, int, str]]:
    doomed = []
    for folder in (Path(store.blobs.base) / "tmp", store.directory / "packs" / "tmp"):
        for path in _files(folder):
            if path.name.endswith(ASIDE_SUFFIX):  # a blob, put back first (``restore_set_aside``)
                continue
            stat = path.stat()
            if stat.st_mtime < cutoff:
                doomed.append((path, stat.st_size, "temporary"))
                report.temporaries_removed += 1
                report.temporary_bytes += stat.st_size
    return doomed


def _forget(store: ArtifactStore, doomed: list[tuple[Path, int, str]]) -> None:
    """Drop removed packs from the chunk index, and shortcuts to removed recipe blobs."""
    pack_ids = [kind.split(":", 1)[1] for _, _, kind in doomed if kind.startswith("pack:")]
    blobs = [path.name for path, _, kind in doomed if kind == "blob"]
    if not pack_ids and not (blobs and (store.directory / CHUNK_INDEX_FILE).exists()):
        return
    with store._chunk_lock:
        _, index = store.chunks()
        index.remove_packs(pack_ids)
        index.forget_recipes(blobs)


def _files(base: Path) -> Iterable[Path]:
    if not base.is_dir():
        return []
    return [Path(folder, name) for folder, _, names in os.walk(base) for name in names]


def summary(report: GcReport) -> str:
    """One line saying what was (or would be) freed."""
    verb = "would free" if report.dry_run else "freed"
    text = (f"{verb} {report.freed_bytes:,} bytes: {report.blobs_removed:,} blob(s) ({report.blob_bytes:,} B), "
            f"{report.packs_removed:,} pack(s) of {report.chunks_removed:,} chunk(s) ({report.pack_bytes:,} B), "
            f"{report.temporaries_removed:,} stale temporary file(s) ({report.temporary_bytes:,} B); "
            f"{report.versions:,} version(s) keep {report.referenced_blobs:,} blob(s) and "
            f"{report.referenced_chunks:,} chunk(s)")
    if report.kept_in_grace:
        text += f"; {report.kept_in_grace:,} unreferenced file(s) kept, younger than the grace period"
    if report.packs_repacked:
        text += (f"; {report.packs_repacked:,} mostly unreferenced pack(s) rewritten: {report.repack_bytes:,} B "
                 f"replaced by {report.repack_written:,} B")
    if report.kept_for_running:
        text += (f"; {report.kept_for_running:,} unreferenced blob(s) kept, written or used since run "
                 f"{report.running_run} (running) started")
    if report.orphans_kept:
        text += f"; {report.orphans_kept:,} blob(s) no version ever referenced kept ({report.orphans_note})"
    if report.dead_bytes_in_live_packs:
        text += f"; {report.dead_bytes_in_live_packs:,} B of unreferenced chunks stay in packs with live ones"
    if report.problems:
        text += f"; {len(report.problems)} problem(s), see the warnings"
    return text
