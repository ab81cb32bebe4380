"""Garbage collection of a tracking server's artifact storage (``tracklet admin artifact-gc``).

An upload that never committed (a client killed for good, a run whose commit was refused) leaves
blobs, packs and upload sessions that no version references. ``collect`` removes them once they
are older than a grace period, and never anything a committed version references:

1. the live set, per project: every version's manifest blob and, for each file, its blob or, for
   a file held as chunks, its recipe blob and every chunk the recipe lists;
2. rows older than the grace period that the live set doesn't name are deleted: a project's
   grants of blobs (``artifact_blobs``), registered chunked files (``artifact_files``) and chunks
   (``artifact_chunks``); each ``DELETE`` repeats the age condition, and commits, file
   registrations and uploads refresh the rows they use (``touch``), so a row something used
   meanwhile is kept;
3. a blob object none of whose grants is left (in any project) is removed from the store; a
   packed blob's placement (``artifact_packed_blobs``) older than the grace period whose blob no
   project holds is forgotten (its ``DELETE`` re-checks both), and a pack is removed once no
   project holds a chunk in it and no placement names it (a pack is reclaimable only when none
   of its members is referenced);
4. upload sessions older than the grace period are aborted (their parts removed);
5. blob objects no project ever held (a server killed between writing and granting one) and
   temporaries (``*.partial``) a killed writer left go too, once older than the grace period.
6. a grant naming a blob whose bytes are gone (no object, no placement in a pack: a grant made
   by a server from before an upload's grant checked its objects, racing a collection) is dropped,
   whatever its age, after checking again holding the grants locked (``_drop_dangling_grants``):
   the project's next "which do you have" query then says it is missing and the client sends it
   again, where the grant had it skip the upload and commit a version without its bytes.
   Nothing is removed because of such a grant.

A manifest, recipe or run log that can't be read (missing, damaged), or a row naming something
that is not a digest or pack id, is contained to its project: what it references can't be known,
so none of that project's rows are deleted this time (its grants keep their blobs, its chunk rows
their packs); the report names each one (``problems``) and the collection goes on with the other
projects, the grants whose bytes are gone (6.) included. A pack that can't be read is left out of
the repack and named the same way. Packs
with some live members (chunks or packed blobs) are kept whole: the report says how many hold
members nothing references and how many bytes a repack would reclaim (``repack=`` does it).

Uploads in flight: the "which do you have" queries (blobs and chunks) mark what they answer as
held used now, and a pack sent again refreshes the project's rows for its chunks, so a chunk or
blob a client was told the server holds (and so won't send) is never collected under it. A blob
object is removed holding the grants table locked, its grants checked again in that transaction,
and an upload's grant checks that its objects are there in its own (``_remove_blobs``), so an
upload of the same bytes never ends with a grant naming a removed object; a pack is set aside,
its rows checked again, and put back if an upload claimed it (``_remove_pack``, ``keep_pack``).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from tracklet.artifacts.manifest import Manifest, is_sha256
from tracklet.errors import ArtifactError, RecipeError
from tracklet.server.artifact_blobs import ServerArtifacts
from tracklet.server.schema import (artifact_blobs, artifact_chunks, artifact_files, artifact_packed_blobs,
                                    artifact_versions)

DEFAULT_GRACE = 24 * 3600.0
_BATCH = 1000


@dataclasses.dataclass
class ServerGcReport:
    blobs: int = 0  # blob objects removed
    blob_bytes: int = 0
    packs: int = 0  # pack objects removed
    pack_bytes: int = 0
    grants: int = 0  # rows removed: blob grants, chunked files, chunks, placements of packed blobs
    files: int = 0
    chunks: int = 0
    packed: int = 0
    sessions: int = 0  # stale upload sessions aborted
    temporaries: int = 0  # temporary blobs and packs a killed server left (``*.partial``)
    temporary_bytes: int = 0
    removed: list[str] = dataclasses.field(default_factory=list)  # every object removed (or, dry, to remove)
    # Packs kept for their live chunks that also hold chunks no project holds, and the bytes a
    # repack writing only the live chunks would free (after this collection; dry: as if it ran).
    mixed_packs: int = 0
    reclaimable_bytes: int = 0
    pack_bytes_kept: int = 0  # all packs left, in bytes
    repacked: int = 0  # packs rewritten with only their live chunks (``repack=``)
    repack_bytes: int = 0  # bytes the old ones hold: removed by the next collection
    # Grants naming a blob with no bytes left (dropped: see the module, 6.), and those of them a
    # committed version references (its files can't be read until the blob is sent again).
    dangling_grants: int = 0
    dangling_live: list[str] = dataclasses.field(default_factory=list)
    # What couldn't be read or understood (a manifest, a recipe, a run's log, a row, a pack), each
    # naming the thing at fault, and the projects whose rows were all kept because of them.
    problems: list[str] = dataclasses.field(default_factory=list)
    held_projects: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return (f"removed {self.blobs} blob(s) ({self.blob_bytes:,} bytes) and {self.packs} pack(s) "
                f"({self.pack_bytes:,} bytes) no version references; {self.grants} blob grant(s), {self.files} "
                f"chunked file(s), {self.chunks} chunk(s), {self.packed} packed blob(s) forgotten; {self.sessions} stale upload session(s) aborted; "
                f"{self.temporaries} stale temporary file(s) ({self.temporary_bytes:,} bytes) removed; "
                f"{self.mixed_packs} pack(s) kept for their live chunks hold {self.reclaimable_bytes:,} bytes no "
                f"project references, of {self.pack_bytes_kept:,} pack bytes (a repack would reclaim them)"
                + (f"; repacked {self.repacked} pack(s): their old copies ({self.repack_bytes:,} bytes) go with the "
                   "next collection" if self.repacked else "")
                + (f"; {self.dangling_grants} grant(s) named a blob whose bytes are gone (dropped: it is sent again "
                   f"with the next upload of it)" if self.dangling_grants else "")
                + (f"; committed versions reference {len(self.dangling_live)} of those blobs (their files can't be "
                   f"read until uploaded again), e.g. {self.dangling_live[0]}" if self.dangling_live else "")
                + (f"; {len(self.problems)} problem(s)" + (f", so no row of project(s) {', '.join(self.held_projects)} "
                   "was removed" if self.held_projects else "") + ": " + "; ".join(self.problems)
                   if self.problems else ""))


def _projects(artifacts: ServerArtifacts) -> list[str]:
    registry: Any = artifacts.registry
    if hasattr(registry, "projects"):
        return list(registry.projects())
    with artifacts.engine.connect() as connection:
        return sorted(connection.execute(sa.select(artifact_versions.c.project).distinct()).scalars())


def live_set(artifacts: ServerArtifacts, problems: dict[str, list[str]] | None = None) -> dict[str, set[str]]:
    """Per project, the blob digests committed versions reference (manifests, files, recipes).
    A manifest that can't be read: with ``problems`` given, its project maps there to what went
    wrong (the project's live set is then incomplete: the caller keeps all of its rows) and the
    other versions are read on; without, ``ArtifactError``."""
    live: dict[str, set[str]] = {}
    for project in _projects(artifacts):
        live[project] = set()
    for project, digests in _referenced(artifacts, problems):
        live[project].update(digests)
    return live


def _referenced(artifacts: ServerArtifacts, problems: dict[str, list[str]] | None
                ) -> Iterator[tuple[str, list[str]]]:
    """(project, the digests one version references), a version at a time (``live_set``)."""
    for project in _projects(artifacts):
        for name in artifacts.registry.collections(project):
            try:
                versions = list(artifacts.registry.versions(project, name))
            except (ArtifactError, ValueError, TypeError, KeyError) as error:  # a row it can't make a version of
                message = f"the versions of {project}/{name} can't be read: {error}"
                if problems is None:
                    raise ArtifactError(f"garbage collection stopped, nothing removed: {message}") from None
                problems.setdefault(project, []).append(message)
                continue
            for info in versions:
                names = [info.manifest]
                try:
                    manifest = Manifest.from_bytes(artifacts.blobs.read_bytes(info.manifest),
                                                   what=f"the manifest of {info.qualified_name}")
                except (OSError, ArtifactError, ValueError) as error:
                    message = f"the manifest of {info.qualified_name} can't be read: {error}"
                    if problems is None:
                        raise ArtifactError(f"garbage collection stopped, nothing removed: {message}") from None
                    problems.setdefault(project, []).append(message)
                    yield project, names
                    continue
                for entry in manifest:
                    if entry.ref is None:
                        names.append(entry.digest)
                        if isinstance(entry.extra.get("recipe"), str):
                            names.append(entry.extra["recipe"])
                yield project, names


def _prefixes() -> Iterator[tuple[str, str | None]]:
    """The 256 ``sha256/<xx>/`` folders as digest ranges: (low, high exclusive; None for the last)."""
    names = [f"{number:02x}" for number in range(256)]
    yield from zip(names, [*names[1:], None])


@dataclasses.dataclass
class _Pass:
    """What one collection carries across its prefixes: bounded by packs, not blobs."""

    cutoff: float
    dry_run: bool
    held: set[str]
    grant_projects: list[str]
    candidate_packs: set[str] = dataclasses.field(default_factory=set)
    places_going: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # dry run: ("", digest)


def collect(artifacts: ServerArtifacts, *, grace: float = DEFAULT_GRACE, dry_run: bool = False,
            now: float | None = None, repack: float | None = None, runs_root: Path | None = None,
            on_removed: Callable[[str], None] | None = None, run_logs: Any = None) -> ServerGcReport:
    """Remove what no committed version references and nothing used within ``grace`` seconds
    (see the module); with ``dry_run`` only say what would go (``removed``). ``repack`` (a share,
    0-1): then rewrite each pack whose reclaimable bytes are at least that share of it
    (``repack_packs``). ``runs_root``: the server's data root, whose runs' media, tables and spans
    name blobs too (granted like artifact files): those are live as well
    (``media_retention.media_references``; ``tracklet media prune`` retires them). ``run_logs``:
    the server's log copies when they are segments in shared storage (``segments.SegmentCopies``):
    the runs' logs, parts included, are read from there instead of from ``runs_root``.
    ``on_removed``: each object removed (or, dry, to remove) is passed to it as it goes rather
    than kept in ``removed`` (memory: one prefix's worth).

    Blobs are decided one ``sha256/<xx>/`` prefix at a time: the live set is written to a scratch
    file first (``gc_live.LiveDigests``, in ``<data root>/.gc-scratch``), then for each prefix its live digests, grants (an index
    range of each project's), placements and objects are read, decided and acted on."""
    from tracklet.server.gc_live import LiveDigests, scratch_dir

    cutoff = (time.time() if now is None else now) - grace
    report = ServerGcReport()
    if on_removed is not None:
        report.removed = _Forward(on_removed)
    if not dry_run:
        recover_set_aside(artifacts)
    problems: dict[str, list[str]] = {}  # project -> what of it couldn't be read: its rows all stay
    with LiveDigests(scratch_dir(artifacts.root)) as live:
        for project in _projects(artifacts):
            live.add(project, ())
        for project, digests in _referenced(artifacts, problems):
            live.add(project, digests)
        if runs_root is not None:
            from tracklet.server.media_retention import media_references

            media_references(runs_root, artifacts, problems, sink=live.add, logs=run_logs)
        dead_files, chunk_rows = _files_and_chunks(artifacts, live, problems, cutoff)
        held = set(problems)  # what their live sets miss is unknown: none of their rows go
        report.held_projects = sorted(held)
        report.problems = [message for project in report.held_projects for message in problems[project]]
        dead_files = [row for row in dead_files if row[0] not in held]
        chunk_rows = [row for row in chunk_rows if row[0] not in held]
        for project, chunk_id, pack_id in chunk_rows:
            if not is_sha256(pack_id):
                report.problems.append(f"chunk {chunk_id!r:.80} of project {project} is placed in {pack_id!r:.80}, "
                                       "not a pack id (kept)")
        chunk_rows = [row for row in chunk_rows if is_sha256(row[2])]
        with artifacts.engine.connect() as connection:
            grant_projects = _grant_projects(connection)
            for project in grant_projects:  # rows no prefix range holds: reported, never acted on
                for digest in connection.execute(sa.select(artifact_blobs.c.digest).where(
                        artifact_blobs.c.project == project,
                        sa.or_(artifact_blobs.c.digest < "00", artifact_blobs.c.digest >= "g"))).scalars():
                    report.problems.append(f"a grant in project {project} names {digest!r:.80}, not a sha256 (kept)")
        state = _Pass(cutoff, dry_run, held, grant_projects)
        state.candidate_packs = {pack_id for _, _, pack_id in chunk_rows} | _unheld_packs(artifacts, cutoff)
        if not dry_run:
            with artifacts.engine.begin() as connection:
                report.files = _delete(connection, artifact_files, artifact_files.c.digest, dead_files, cutoff)
                report.chunks = _delete(connection, artifact_chunks, artifact_chunks.c.chunk_id,
                                        [(p, c) for p, c, _ in chunk_rows], cutoff)
        else:
            report.files, report.chunks = len(dead_files), len(chunk_rows)
        fs = artifacts.fs
        base = f"{artifacts.blobs.base}/sha256"
        fs.invalidate_cache(base)
        for low, high in _prefixes():
            _collect_prefix(artifacts, report, state, live.prefix(low, high), low, high, f"{base}/{low}")
    candidate_packs = state.candidate_packs
    with artifacts.engine.connect() as connection:
        going = {(p, c) for p, c, _ in chunk_rows} | state.places_going if dry_run else set()
        kept_packs = _packs_in_use(connection, candidate_packs, going)
    _remove_objects(artifacts, report, set(), candidate_packs - kept_packs, dry_run=dry_run)
    if dry_run:
        _count_reclaimable(artifacts, report, going, candidate_packs - kept_packs)
        _remove_temporaries(artifacts, report, cutoff, dry_run=True)
        return report
    report.sessions = artifacts.sweep_uploads(max_age=grace)
    _remove_temporaries(artifacts, report, cutoff)
    worth = _count_reclaimable(artifacts, report, set(), set(), repack)
    if repack is not None:
        repack_packs(artifacts, report, worth)
    return report


class _Forward(list[str]):
    """``ServerGcReport.removed`` that hands each path on instead of keeping it."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__()
        self.sink = sink

    def append(self, path: str) -> None:
        self.sink(path)


def _files_and_chunks(artifacts: ServerArtifacts, live: Any, problems: dict[str, list[str]], cutoff: float
                      ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """The chunked files no version references, older than ``cutoff`` (to forget), and the chunk
    rows older than it that no kept file's recipe lists; a kept file's recipe is live (added to
    ``live``). A recipe that can't be read is a problem of its project."""
    from tracklet.artifacts.chunking import FileRecipe

    with artifacts.engine.connect() as connection:
        files = connection.execute(sa.select(artifact_files.c.project, artifact_files.c.digest,
                                             artifact_files.c.recipe, artifact_files.c.created_at)).all()
    dead_files = []
    live_chunks: dict[str, set[str]] = {}
    for project, digest, recipe_digest, created_at in files:
        if created_at < cutoff and not live.has(project, digest):
            dead_files.append((project, digest))
            continue
        live.add(project, [recipe_digest])  # a chunked file that stays keeps its recipe and its chunks
        try:
            recipe = FileRecipe.from_json(artifacts.blobs.read_bytes(recipe_digest))
        except (OSError, ArtifactError, RecipeError) as error:
            problems.setdefault(project, []).append(
                f"the recipe {recipe_digest} of file {digest} in project {project} can't be read: {error}")
            continue
        live_chunks.setdefault(project, set()).update(cid.hex() for cid in recipe.chunk_ids)
    with artifacts.engine.connect() as connection:
        chunk_rows = [(project, chunk_id, pack_id) for project, chunk_id, pack_id in connection.execute(
            sa.select(artifact_chunks.c.project, artifact_chunks.c.chunk_id, artifact_chunks.c.pack_id)
            .where(artifact_chunks.c.created_at < cutoff))
            if chunk_id not in live_chunks.get(project, ())]
    return dead_files, chunk_rows


def _in_range(column: Any, low: str, high: str | None) -> Any:
    return column >= low if high is None else sa.and_(column >= low, column < high)


def _collect_prefix(artifacts: ServerArtifacts, report: ServerGcReport, state: _Pass, live: dict[str, set[str]],
                    low: str, high: str | None, folder: str) -> None:
    """Decide and act on the blobs of one prefix (module: 1.-3., 5. and 6. for these digests):
    its grants and placements are read by index range, its objects listed from ``folder``."""
    everywhere = set().union(*live.values()) if live else set()
    objects = _list_folder(artifacts, folder)
    cutoff = state.cutoff
    with artifacts.engine.connect() as connection:
        granted: set[str] = set()  # every grant of the prefix, any age and project
        grants = []  # old grants no version of their project references
        # Every project's grants of the prefix in one range read (ix_artifact_blobs_digest, s0019).
        # Those of a project that had none when the collection started count as held, and are
        # never taken as unreferenced: its live set was read without them.
        known = set(state.grant_projects)
        rows = connection.execute(sa.select(artifact_blobs.c.project, artifact_blobs.c.digest,
                                            artifact_blobs.c.created_at).where(
            _in_range(artifact_blobs.c.digest, low, high)))
        for project, digest, created_at in rows:
            if not is_sha256(digest):
                if project in known:
                    report.problems.append(f"a grant in project {project} names {digest!r:.80}, not a sha256 "
                                           "(kept)")
                continue
            granted.add(digest)
            if created_at < cutoff and project in known and project not in state.held \
                    and digest not in live.get(project, ()):
                grants.append((project, digest))
        places = connection.execute(sa.select(artifact_packed_blobs.c.digest, artifact_packed_blobs.c.pack_id,
                                              artifact_packed_blobs.c.created_at).where(
            _in_range(artifact_packed_blobs.c.digest, low, high))).all()
    placed = {digest for digest, _, _ in places}
    old_places = []
    for digest, pack_id, created_at in places:
        if created_at < cutoff and digest not in everywhere:
            if is_sha256(digest) and is_sha256(pack_id):
                old_places.append((digest, pack_id))
            else:
                report.problems.append(f"a packed blob's placement names {digest!r:.80} in {pack_id!r:.80}: not a "
                                       "sha256 and a pack id (kept)")
    dangling = granted - objects - placed
    report.dangling_live += sorted(dangling & everywhere)
    candidate_blobs = {digest for _, digest in grants} | _ungranted_blobs(artifacts, objects - granted, cutoff,
                                                                          everywhere)
    state.candidate_packs |= {pack_id for _, pack_id in old_places}
    if state.dry_run:
        report.dangling_grants += _count_grants(artifacts, dangling)
        with artifacts.engine.connect() as connection:
            kept_blobs = _still_granted(connection, candidate_blobs, set(grants))
            holding = _still_granted(connection, {digest for digest, _ in old_places}, set(grants))
        going = {("", digest) for digest, _ in old_places if digest not in holding}
        state.places_going |= going
        report.grants += len(grants)
        report.packed += len(going)
        for digest in sorted(candidate_blobs - kept_blobs):
            _remove_blob_object(artifacts, report, digest, dry_run=True)
        return
    report.dangling_grants += _drop_dangling_grants(artifacts, dangling)
    with artifacts.engine.begin() as connection:
        report.grants += _delete(connection, artifact_blobs, artifact_blobs.c.digest, grants, cutoff)
    with artifacts.engine.begin() as connection:  # after the grants: a blob whose last grant just went loses its place
        report.packed += _forget_places(connection, [digest for digest, _ in old_places], cutoff)
    with artifacts.engine.connect() as connection:
        kept_blobs = _still_granted(connection, candidate_blobs, set())
    _remove_blobs(artifacts, report, candidate_blobs - kept_blobs - everywhere)


def repack_packs(artifacts: ServerArtifacts, report: ServerGcReport, packs: dict[str, dict[int, tuple[str, int]]]
                 ) -> None:
    """Rewrite each of ``packs`` (pack id -> its live places: offset -> (chunk id, length)) as a
    new pack of only those chunks, each checked against its blake3 as it is read, then move every
    project's rows for them to the new pack in one transaction. The old pack stays until the next
    collection removes it (no row names it by then, and it is older than the grace period), so a
    download that located chunks in it just before keeps reading them. A pack that can't be read
    or whose chunks don't match their ids stays as it is (named in ``problems``); the others go on."""
    from tracklet.errors import ChunkCorrupt

    for old, places in sorted(packs.items()):
        try:
            _repack_one(artifacts, old, places)
        except (OSError, ChunkCorrupt) as error:
            report.problems.append(f"pack {old} not repacked: {error}")
            continue
        report.repacked += 1
        report.repack_bytes += int(artifacts.fs.size(artifacts.packs.pack_path(old)))


def _repack_one(artifacts: ServerArtifacts, old: str, places: dict[int, tuple[str, int]]) -> None:
    import blake3

    from tracklet.artifacts.packs import build_pack
    from tracklet.errors import ChunkCorrupt

    whole = memoryview(artifacts.fs.cat_file(artifacts.packs.pack_path(old)))  # one GET (packs <= 32 MiB)
    chunks: list[tuple[bytes, bytes | memoryview]] = []
    for offset, (chunk_id, length) in sorted(places.items()):
        piece = whole[offset:offset + length]
        if len(piece) != length or blake3.blake3(piece).hexdigest() != chunk_id:
            raise ChunkCorrupt(f"pack {old}: chunk {chunk_id} at {offset} doesn't match its id; not repacked")
        chunks.append((bytes.fromhex(chunk_id), piece))
    new, packed = build_pack(chunks)
    artifacts.write_pack(new, packed)
    moves = []
    position = 0
    for cid, chunk in chunks:
        moves.append({"old": old, "c": cid.hex(), "new": new, "o": position})
        position += len(chunk)
    statement = artifact_chunks.update().where(
        artifact_chunks.c.pack_id == sa.bindparam("old"), artifact_chunks.c.chunk_id == sa.bindparam("c")
    ).values(pack_id=sa.bindparam("new"), pack_offset=sa.bindparam("o"))
    placed = artifact_packed_blobs.update().where(
        artifact_packed_blobs.c.pack_id == sa.bindparam("old"), artifact_packed_blobs.c.member == sa.bindparam("c")
    ).values(pack_id=sa.bindparam("new"), pack_offset=sa.bindparam("o"))
    artifacts.blobs.sync()  # the new pack's name is durable before rows move to it
    with artifacts.engine.begin() as connection:  # chunks and packed blobs alike
        connection.execute(statement, moves)
        connection.execute(placed, moves)


def _count_reclaimable(artifacts: ServerArtifacts, report: ServerGcReport, going: set[tuple[str, str]],
                       removed: set[str], share: float | None = None) -> dict[str, dict[int, tuple[str, int]]]:
    """Fill the report's ``mixed_packs``, ``reclaimable_bytes`` and ``pack_bytes_kept``: per pack
    left (not in ``removed``), its size against what a pack of only the chunks some project holds
    there and the packed blobs placed there (rows not in ``going``: ``(project, chunk id)``, and
    ``("", digest)`` for placements) would take. Chunk rows are read in pack order, one pack's places
    in memory at a time. Returns the live places of the packs whose reclaimable bytes are at least
    ``share`` of their size (none when ``share`` is None)."""
    worth: dict[str, dict[int, tuple[str, int]]] = {}
    from tracklet.artifacts.packs import ENTRY, FOOTER

    sizes: dict[str, int] = {}
    if artifacts.fs.exists(artifacts.packs.packs_dir):
        for path, info in artifacts.fs.find(artifacts.packs.packs_dir, detail=True).items():
            folder, _, name = str(path).rstrip("/").rpartition("/")
            pack_id = name[: -len(".pack")]
            if name.endswith(".pack") and len(pack_id) == 64 and folder.endswith(f"/{pack_id[:2]}"):
                if pack_id not in removed:
                    sizes[pack_id] = int(info.get("size") or 0)
    report.pack_bytes_kept = sum(sizes.values())

    def tally(pack_id: str | None, places: dict[int, tuple[str, int]]) -> None:
        if pack_id is None or pack_id not in sizes or not places:
            return  # a pack no project holds a chunk of is the collection's own business (after grace)
        needed = sum(length for _, length in places.values()) + ENTRY.size * len(places) + FOOTER.size
        if sizes[pack_id] > needed:
            report.mixed_packs += 1
            report.reclaimable_bytes += sizes[pack_id] - needed
            if share is not None and sizes[pack_id] - needed >= share * sizes[pack_id]:
                worth[pack_id] = places

    current: str | None = None
    places: dict[int, tuple[str, int]] = {}
    chunks, packed = artifact_chunks, artifact_packed_blobs
    members = sa.union_all(  # a pack's live members: chunks some project holds, placements of packed blobs
        sa.select(chunks.c.project.label("project"), chunks.c.chunk_id.label("key"), chunks.c.chunk_id.label("member"),
                  chunks.c.pack_id.label("pack_id"), chunks.c.pack_offset.label("pack_offset"),
                  chunks.c.length.label("length")),
        sa.select(sa.literal("").label("project"), packed.c.digest.label("key"), packed.c.member.label("member"),
                  packed.c.pack_id.label("pack_id"), packed.c.pack_offset.label("pack_offset"),
                  packed.c.length.label("length"))).subquery()
    with artifacts.engine.connect() as connection:
        rows = connection.execute(sa.select(members.c.project, members.c.key, members.c.member, members.c.pack_id,
                                            members.c.pack_offset, members.c.length).order_by(members.c.pack_id))
        for project, key, member, pack_id, offset, length in rows:
            if pack_id != current:
                tally(current, places)
                current, places = pack_id, {}
            if (project, key) not in going:
                places[offset] = (member, length)
        tally(current, places)
    return worth


def _unheld_packs(artifacts: ServerArtifacts, cutoff: float) -> set[str]:
    """Packs older than ``cutoff`` that hold no project's chunk (written, then their rows never
    inserted, or every chunk of theirs held elsewhere already when they arrived)."""
    packs = set(artifacts.packs.list_packs())
    if not packs:
        return set()
    with artifacts.engine.connect() as connection:
        held = _packs_in_use(connection, packs, set())
    old = set()
    for pack_id in packs - held:
        try:
            modified = artifacts.fs.modified(artifacts.packs.pack_path(pack_id))
        except (FileNotFoundError, NotImplementedError):
            continue
        if modified.timestamp() < cutoff:
            old.add(pack_id)
    return old


def _blob_objects(artifacts: ServerArtifacts) -> set[str]:
    """The digests of every blob object in the store now (packed blobs aside), listed one folder
    at a time (``_list_folder``). The collection itself holds one folder's at a time."""
    base = f"{artifacts.blobs.base}/sha256"
    artifacts.fs.invalidate_cache(base)
    found: set[str] = set()
    for low, _ in _prefixes():
        found |= _list_folder(artifacts, f"{base}/{low}")
    return found


def _list_folder(artifacts: ServerArtifacts, folder: str) -> set[str]:
    """The digests of the blob objects in ``folder`` (``sha256/<xx>``) now, only their digests
    kept: fsspec's listing holds every file's details (~650 bytes each), and an object store's
    listing cache would keep them all, so it is dropped."""
    fs = artifacts.fs
    try:
        names = fs.ls(folder, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return set()
    finally:
        fs.invalidate_cache(folder)
    return {name for name in (str(path).rsplit("/", 1)[-1] for path in names) if is_sha256(name)}


def _count_grants(artifacts: ServerArtifacts, digests: set[str]) -> int:
    ordered = sorted(digests)
    count = 0
    with artifacts.engine.connect() as connection:
        projects = _grant_projects(connection) if ordered else []
        for start in range(0, len(ordered), _BATCH):
            count += int(connection.execute(sa.select(sa.func.count()).select_from(artifact_blobs).where(
                artifact_blobs.c.project.in_(projects),
                artifact_blobs.c.digest.in_(ordered[start:start + _BATCH]))).scalar_one())
    return count


def _drop_dangling_grants(artifacts: ServerArtifacts, digests: set[str]) -> int:
    """Delete every project's grants of ``digests`` whose bytes are still gone, checked again in a
    transaction holding the grants locked (an upload writes a blob's object, or its placement,
    before granting it, so one granted meanwhile is found there); how many rows went."""
    ordered = sorted(digests)
    dropped = 0
    for start in range(0, len(ordered), _LOCKED_BATCH):
        batch = ordered[start:start + _LOCKED_BATCH]
        with artifacts.engine.begin() as connection:
            _lock_grants(connection)
            placed = set(connection.execute(sa.select(artifact_packed_blobs.c.digest).where(
                artifact_packed_blobs.c.digest.in_(batch))).scalars())
            gone = [digest for digest in artifacts._missing_objects([d for d in batch if d not in placed])]
            if gone:
                dropped += int(connection.execute(artifact_blobs.delete().where(
                    artifact_blobs.c.project.in_(_grant_projects(connection)),
                    artifact_blobs.c.digest.in_(gone))).rowcount or 0)
    return dropped


def _ungranted_blobs(artifacts: ServerArtifacts, objects: set[str], cutoff: float, live: set[str]) -> set[str]:
    """Blob objects (of ``objects``) older than ``cutoff`` that no project holds (no grant row)
    and nothing live names: a server killed between writing a blob and granting it left them, or
    an upload whose grants were collected before its object could be. Granted blobs are the
    grants' business."""
    fs = artifacts.fs
    digests = objects - live
    if not digests:
        return set()
    with artifacts.engine.connect() as connection:
        digests -= _still_granted(connection, digests, set())
    old = set()
    for digest in digests:
        try:
            modified = fs.modified(artifacts.blobs._path(digest))
        except (FileNotFoundError, NotImplementedError):
            continue
        if modified.timestamp() < cutoff:
            old.add(digest)
    return old


def _remove_temporaries(artifacts: ServerArtifacts, report: ServerGcReport, cutoff: float, *,
                        dry_run: bool = False) -> None:
    """Temporary blobs and packs (``*.partial`` under ``blobs/tmp`` and ``packs/tmp``) older than
    ``cutoff``: a server killed mid-write left them. An upload session's own temporary (named by
    its id) is its session's, removed with it (``sweep_uploads``)."""
    fs = artifacts.fs
    sessions: set[str] = set()
    try:
        fs.invalidate_cache(artifacts.uploads)
        sessions = {str(name).rstrip("/").rsplit("/", 1)[-1] for name in fs.ls(artifacts.uploads, detail=False)}
    except FileNotFoundError:
        pass
    for folder in (f"{artifacts.blobs.base}/tmp", artifacts.packs.tmp_dir):
        fs.invalidate_cache(folder)
        try:
            names = [str(name) for name in fs.ls(folder, detail=False)]
        except FileNotFoundError:
            continue
        for name in names:
            stem = name.rsplit("/", 1)[-1]
            if not stem.endswith(".partial") or stem[: -len(".partial")] in sessions:
                continue
            try:
                if fs.modified(name).timestamp() >= cutoff:
                    continue
                size = fs.size(name)
                if not dry_run:
                    fs.rm(name)
            except (FileNotFoundError, NotImplementedError):
                continue
            report.temporaries += 1
            report.temporary_bytes += size
            report.removed.append(name)


def _delete(connection: sa.Connection, table: sa.Table, column: Any, rows: list[tuple[str, str]],
            cutoff: float) -> int:
    """Delete ``(project, key)`` rows that are still older than ``cutoff``; how many went."""
    if not rows:
        return 0
    statement = table.delete().where(table.c.project == sa.bindparam("p"), column == sa.bindparam("k"),
                                     table.c.created_at < cutoff)
    result = connection.execute(statement, [{"p": project, "k": key} for project, key in rows])
    return int(result.rowcount or 0)


def _grant_projects(connection: sa.Connection) -> list[str]:
    """Every project holding a grant, read as a skip scan of the grants' primary key (project,
    digest): one index probe per project, where ``DISTINCT`` reads every row."""
    table = artifact_blobs.name
    return [project for (project,) in connection.exec_driver_sql(
        f"WITH RECURSIVE projects(project) AS (SELECT MIN(project) FROM {table} UNION ALL "
        f"SELECT (SELECT MIN(project) FROM {table} WHERE project > projects.project) FROM projects "
        "WHERE projects.project IS NOT NULL) SELECT project FROM projects WHERE project IS NOT NULL")]


def _still_granted(connection: sa.Connection, digests: set[str], going: set[tuple[str, str]]) -> set[str]:
    """Of ``digests``, those some project still holds (``going``: grants about to be deleted).
    Looked up by (project, digest), the grants' primary key, for every project holding any (read
    in the same transaction): a database from before s0019 has no index on the digest alone, and
    there a lookup by digest read the whole table each time."""
    held: set[str] = set()
    ordered = sorted(digests)
    projects = _grant_projects(connection) if ordered else []
    for start in range(0, len(ordered), _BATCH):
        rows = connection.execute(sa.select(artifact_blobs.c.project, artifact_blobs.c.digest).where(
            artifact_blobs.c.project.in_(projects), artifact_blobs.c.digest.in_(ordered[start:start + _BATCH])))
        held.update(digest for project, digest in rows if (project, digest) not in going)
    return held


def _packs_in_use(connection: sa.Connection, packs: set[str], going: set[tuple[str, str]]) -> set[str]:
    """Of ``packs``, those holding a chunk some project still holds there, or a packed blob placed
    there (``going``: rows about to be deleted, ``(project, chunk id)`` or ``("", digest)``)."""
    used: set[str] = set()
    ordered = sorted(packs)
    for start in range(0, len(ordered), _BATCH):
        batch = ordered[start:start + _BATCH]
        rows = connection.execute(sa.select(artifact_chunks.c.project, artifact_chunks.c.chunk_id,
                                            artifact_chunks.c.pack_id).where(artifact_chunks.c.pack_id.in_(batch)))
        used.update(pack_id for project, chunk_id, pack_id in rows if (project, chunk_id) not in going)
        placed = connection.execute(sa.select(artifact_packed_blobs.c.digest, artifact_packed_blobs.c.pack_id)
                                    .where(artifact_packed_blobs.c.pack_id.in_(batch)))
        used.update(pack_id for digest, pack_id in placed if ("", digest) not in going)
    return used


def _forget_places(connection: sa.Connection, digests: list[str], cutoff: float) -> int:
    """Delete the placements of ``digests`` that are still older than ``cutoff`` and whose blob no
    project holds (both re-checked in the ``DELETE``: an upload that was told the blob is stored
    refreshed its placement, one that sent it again granted it); how many went."""
    if not digests:
        return 0
    packed = artifact_packed_blobs
    granted = sa.select(artifact_blobs.c.digest).where(artifact_blobs.c.digest == packed.c.digest).exists()
    statement = packed.delete().where(packed.c.digest == sa.bindparam("d"), packed.c.created_at < cutoff, ~granted)
    result = connection.execute(statement, [{"d": digest} for digest in digests])
    return int(result.rowcount or 0)


def _remove_objects(artifacts: ServerArtifacts, report: ServerGcReport, blobs: set[str], packs: set[str], *,
                    dry_run: bool) -> None:
    fs = artifacts.fs
    for digest in sorted(blobs):
        _remove_blob_object(artifacts, report, digest, dry_run=dry_run)
    for pack_id in sorted(packs):
        path = artifacts.packs.pack_path(pack_id)
        try:
            size = fs.size(path)
            if not dry_run and not _remove_pack(artifacts, pack_id):
                continue  # an upload claimed it meanwhile: kept
        except FileNotFoundError:
            continue
        report.packs += 1
        report.pack_bytes += size
        report.removed.append(path)


def _remove_blob_object(artifacts: ServerArtifacts, report: ServerGcReport, digest: str, *, dry_run: bool) -> None:
    """Remove blob ``digest``'s object (with ``dry_run``, only count it) and report it; one
    already gone is not counted."""
    path = artifacts.blobs._path(digest)
    try:
        size = artifacts.fs.size(path)
        if not dry_run:
            artifacts.fs.rm(path)
    except FileNotFoundError:
        return
    report.blobs += 1
    report.blob_bytes += size
    report.removed.append(path)


_LOCKED_BATCH = 100  # blob objects removed per transaction holding the grants locked


def _lock_grants(connection: sa.Connection) -> None:
    """Hold the grants table against writers until ``connection``'s transaction ends: on
    PostgreSQL a table lock every ``INSERT``/``UPDATE`` of it waits for (reads go on); on SQLite
    the database's write lock (a write taken first)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"LOCK TABLE {artifact_blobs.name} IN SHARE ROW EXCLUSIVE MODE")
    else:
        connection.execute(artifact_blobs.update().where(sa.false()).values(created_at=0))


def _remove_blobs(artifacts: ServerArtifacts, report: ServerGcReport, digests: set[str]) -> None:
    """Remove the objects of ``digests`` (no grant named them when the collection looked), a
    batch at a time, each batch in one transaction that holds the grants locked
    (``_lock_grants``), checks again that no project holds them and removes those none does.
    An upload grants a blob and then, in the same transaction, checks that its object is there
    (``ServerArtifacts._grant_objects``): its grant either comes first (seen here: the object
    stays) or waits for this transaction (it finds the object gone and writes it again, or asks
    the client to send it again), so no grant ever names a removed object."""
    ordered = sorted(digests)
    for start in range(0, len(ordered), _LOCKED_BATCH):
        batch = ordered[start:start + _LOCKED_BATCH]
        with artifacts.engine.begin() as connection:
            _lock_grants(connection)
            held = _still_granted(connection, set(batch), set())
            for digest in batch:
                if digest not in held:  # else an upload granted it meanwhile
                    _remove_blob_object(artifacts, report, digest, dry_run=False)


SET_ASIDE = ".collected"  # a pack moved aside by a collection, under packs/tmp/: <pack id>.<uuid>.collected


def _remove_pack(artifacts: ServerArtifacts, pack_id: str) -> bool:
    """Remove pack ``pack_id``, which no row named when the collection looked, unless an upload
    claims it meanwhile: a retry of a batch whose pack was written by a server killed before its
    rows finds the pack in place, writes nothing and inserts rows naming it. So the pack is first
    moved aside (out of readers' and writers' sight), the rows are checked again, and it is put
    back if some row names it now (an upload that found it gone meanwhile wrote it again:
    ``ServerArtifacts.keep_pack``), else deleted. False if it was kept."""
    fs = artifacts.fs
    path = artifacts.packs.pack_path(pack_id)
    aside = f"{artifacts.packs.tmp_dir}/{pack_id}.{uuid.uuid4().hex}{SET_ASIDE}"
    fs.makedirs(artifacts.packs.tmp_dir, exist_ok=True)
    fs.mv(path, aside)
    with artifacts.engine.connect() as connection:
        claimed = bool(_packs_in_use(connection, {pack_id}, set()))
    if claimed:
        _put_back(artifacts, aside, path)
        return False
    fs.rm(aside)
    return True


def _put_back(artifacts: ServerArtifacts, aside: str, path: str) -> None:
    """A pack set aside goes back to ``path``; if an upload wrote it there again meanwhile (the
    same id: the same bytes), the set-aside copy is dropped."""
    fs = artifacts.fs
    fs.invalidate_cache(path)
    if fs.exists(path):
        fs.rm(aside)
    else:
        fs.mv(aside, path)
        if artifacts.blobs.durable:  # rows name it: its name back in place must survive a power cut
            artifacts.blobs.directory_syncs.add(path.rsplit("/", 1)[0])
            artifacts.blobs.sync()


def recover_set_aside(artifacts: ServerArtifacts) -> int:
    """Packs a collection that died left set aside (between moving a pack aside and deleting or
    putting it back): those some row names go back, the others are deleted. How many went back."""
    fs = artifacts.fs
    fs.invalidate_cache(artifacts.packs.tmp_dir)
    try:
        names = fs.ls(artifacts.packs.tmp_dir, detail=False)
    except FileNotFoundError:
        return 0
    aside = {str(name): str(name).rsplit("/", 1)[-1].split(".", 1)[0] for name in names
             if str(name).endswith(SET_ASIDE)}
    if not aside:
        return 0
    with artifacts.engine.connect() as connection:
        claimed = _packs_in_use(connection, set(aside.values()), set())
    restored = 0
    for name, pack_id in sorted(aside.items()):
        if pack_id in claimed:
            _put_back(artifacts, name, artifacts.packs.pack_path(pack_id))
            restored += 1
        else:
            fs.rm(name)
    return restored
