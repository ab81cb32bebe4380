"""Garbage collection on a tracking server (issue #15): blobs, packs and chunked files that an
upload sent but never committed are removed after the grace period (`tracklet admin artifact-gc`,
`server/artifact_gc.py`); nothing a committed version references is, whatever its age, and a blob
another project still holds stays."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import blake3
import pytest
import serverproc

from tracklet.artifacts.chunking import FileRecipe
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.artifacts.packs import build_pack
from tracklet.server.artifact_blobs import ServerArtifacts
from tracklet.server.artifact_gc import collect
from tracklet.store import Store

HOUR = 3600.0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b3(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def _chunked_file(artifacts: ServerArtifacts, project: str, chunks: list[bytes], digest_of=_b3
                  ) -> tuple[str, bytes, str, str]:
    """Send ``chunks`` in one pack, the recipe, and register the file: (its digest: BLAKE3, or with
    ``digest_of=_sha`` the sha256 of a client from before, bytes, pack id, recipe digest)."""
    ids = [blake3.blake3(c).digest() for c in chunks]
    pack_id, pack = build_pack(list(zip(ids, chunks)))
    artifacts.store_pack(project, pack_id, pack)
    data = b"".join(chunks)
    digest = digest_of(data)
    recipe = FileRecipe(size=len(data), digest=digest, chunks=tuple(zip(ids, map(len, chunks)))).to_json().encode()
    artifacts.store_small(project, [(_sha(recipe), recipe)])
    assert artifacts.register_file(project, digest, len(data), _sha(recipe))
    return digest, data, pack_id, _sha(recipe)


def _read(artifacts: ServerArtifacts, project: str, digest: str) -> bytes:
    handle, _ = artifacts.open_blob(project, digest)
    with handle:
        return handle.read()


def _objects(root: Path) -> set[str]:
    base = root / "artifacts"
    return {p.relative_to(base).as_posix() for sub in ("blobs", "packs") for p in (base / sub).rglob("*") if p.is_file()}


@pytest.mark.parametrize("old_digests", [False, True], ids=["blake3", "sha256"])
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_what_no_version_references_goes_after_the_grace_period(tmp_path, request, database, old_digests):
    """``old_digests``: the chunked files named by their sha256, as before BLAKE3 named them."""
    digest_of = _sha if old_digests else _b3
    root = tmp_path / "server"
    root.mkdir()
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{root / 'store.sqlite'}"
    store = Store(url, root=root)
    artifacts = ServerArtifacts(root, engine=store.engine)

    # A committed version: a small file and a chunked file (one of whose chunks a later orphan repeats).
    small = os.urandom(3000)
    artifacts.store_small("p", [(_sha(small), small)])
    kept_chunks = [os.urandom(40_000 + i) for i in range(4)]
    kept_digest, kept_data, kept_pack, _ = _chunked_file(artifacts, "p", kept_chunks, digest_of)
    manifest = Manifest({"small.bin": ManifestEntry("small.bin", _sha(small), len(small)),
                         "model.ckpt": ManifestEntry("model.ckpt", kept_digest, len(kept_data))}).to_bytes()
    artifacts.store_small("p", [(_sha(manifest), manifest)])
    artifacts.commit("p", "ckpt", type="model", manifest_digest=_sha(manifest), description="", metadata={},
                     aliases=[], logged_by=None)

    # Uploads that never committed: a blob, a pack of chunks never registered, a registered chunked
    # file (its own pack, and one chunk shared with the committed file), and a blob project q
    # committed too (the store keeps one copy for both).
    orphan = os.urandom(2000)
    artifacts.store_small("p", [(_sha(orphan), orphan)])
    loose = [os.urandom(30_000), os.urandom(31_000)]
    loose_pack, loose_bytes = build_pack([(blake3.blake3(c).digest(), c) for c in loose])
    artifacts.store_pack("p", loose_pack, loose_bytes)
    orphan_digest, _, orphan_pack, orphan_recipe = _chunked_file(artifacts, "p", [os.urandom(45_000), kept_chunks[1]],
                                                                digest_of)
    shared = os.urandom(1000)
    artifacts.store_small("p", [(_sha(shared), shared)])
    artifacts.store_small("q", [(_sha(shared), shared)])
    q_manifest = Manifest({"shared": ManifestEntry("shared", _sha(shared), len(shared))}).to_bytes()
    artifacts.store_small("q", [(_sha(q_manifest), q_manifest)])
    artifacts.commit("q", "data", type="dataset", manifest_digest=_sha(q_manifest), description="", metadata={},
                     aliases=[], logged_by=None)
    before = _objects(root)

    young = collect(artifacts, grace=HOUR)  # everything is younger than the grace period
    assert (young.blobs, young.packs, young.grants, young.chunks) == (0, 0, 0, 0)
    assert _objects(root) == before

    later = time.time() + 2 * HOUR
    dry = collect(artifacts, grace=HOUR, now=later, dry_run=True)
    assert _objects(root) == before
    report = collect(artifacts, grace=HOUR, now=later)
    assert sorted(report.removed) == sorted(dry.removed)
    gone = before - _objects(root)
    assert gone == {f"blobs/sha256/{d[:2]}/{d}" for d in (_sha(orphan), orphan_recipe)} | {
        f"packs/{d[:2]}/{d}.pack" for d in (loose_pack, orphan_pack)}
    assert (report.blobs, report.packs, report.files) == (2, 2, 1)
    assert report.blob_bytes >= len(orphan)
    # Nothing a committed version references went; the shared blob stays for q (p's grant went).
    assert _read(artifacts, "p", kept_digest) == kept_data
    assert _read(artifacts, "p", _sha(small)) == small
    assert _read(artifacts, "q", _sha(shared)) == shared
    assert artifacts.missing("p", [_sha(orphan), orphan_digest, _sha(shared), kept_digest, _sha(small)]) == [
        _sha(orphan), orphan_digest, _sha(shared)]
    assert f"packs/{kept_pack[:2]}/{kept_pack}.pack" in _objects(root)
    chunk_ids = [blake3.blake3(c).hexdigest() for c in [*loose, *kept_chunks]]
    assert artifacts.missing_chunks("p", chunk_ids) == chunk_ids[:2]
    again = collect(artifacts, grace=HOUR, now=later)
    assert (again.blobs, again.packs, again.grants, again.files, again.chunks) == (0, 0, 0, 0, 0)

    # The same through the command line, with --grace 0: a new orphan goes, the versions stay.
    another = os.urandom(500)
    artifacts.store_small("p", [(_sha(another), another)])
    store.close()
    ran = serverproc.cli("admin", "--dir", str(root), "--store", url, "artifact-gc", "--grace", "0")
    assert ran.returncode == 0, ran.stderr
    assert f"removed {root / 'artifacts' / 'blobs'}" in ran.stdout and _sha(another) in ran.stdout
    assert "removed 1 blob(s)" in ran.stdout
    store = Store(url, root=root)
    artifacts = ServerArtifacts(root, engine=store.engine)
    assert _read(artifacts, "p", kept_digest) == kept_data
    store.close()


def _age(root: Path, artifacts: ServerArtifacts, seconds: float) -> None:
    """Make every row and object of the server's artifacts ``seconds`` older (an upload abandoned
    that long ago)."""

    from tracklet.server.schema import artifact_blobs, artifact_chunks, artifact_files, artifact_packed_blobs

    with artifacts.engine.begin() as connection:
        for table in (artifact_blobs, artifact_chunks, artifact_files, artifact_packed_blobs):
            connection.execute(table.update().values(created_at=table.c.created_at - seconds))
    then = time.time() - seconds
    for path in (root / "artifacts").rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_upload_in_flight_keeps_what_the_server_said_it_holds(tmp_path, request, database):
    """A client asks which blobs and chunks the project holds, is told "these", and so doesn't send
    them; a collection running before the client commits must not remove them. Here they were sent
    by an upload abandoned two hours ago (older than the one-hour grace, referenced by no version):
    the questions themselves mark them used."""
    root = tmp_path / "server"
    root.mkdir()
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{root / 'store.sqlite'}"
    store = Store(url, root=root)
    artifacts = ServerArtifacts(root, engine=store.engine)
    chunks = [os.urandom(40_000 + i) for i in range(3)]
    digest, data, _, recipe = _chunked_file(artifacts, "p", chunks)  # sent, registered, never committed
    small = os.urandom(3000)
    artifacts.store_small("p", [(_sha(small), small)])
    loose = [os.urandom(30_000), os.urandom(31_000)]  # a pack sent, its file never registered
    loose_pack, loose_bytes = build_pack([(blake3.blake3(c).digest(), c) for c in loose])
    artifacts.store_pack("p", loose_pack, loose_bytes)
    _age(root, artifacts, 2 * HOUR)

    # The retry: everything is held, so nothing is sent.
    assert artifacts.missing("p", [digest, recipe, _sha(small)]) == []
    loose_ids = [blake3.blake3(c).hexdigest() for c in loose]
    assert artifacts.missing_chunks("p", loose_ids) == []

    report = collect(artifacts, grace=HOUR)  # the collection runs before the client goes on
    assert (report.blobs, report.packs, report.grants, report.files, report.chunks) == (0, 0, 0, 0, 0)

    loose_data = b"".join(loose)
    loose_recipe = FileRecipe(size=len(loose_data), digest=_sha(loose_data), chunks=tuple(
        (blake3.blake3(c).digest(), len(c)) for c in loose)).to_json().encode()
    artifacts.store_small("p", [(_sha(loose_recipe), loose_recipe)])
    assert artifacts.register_file("p", _sha(loose_data), len(loose_data), _sha(loose_recipe))
    manifest = Manifest({"model.ckpt": ManifestEntry("model.ckpt", digest, len(data)),
                         "small.bin": ManifestEntry("small.bin", _sha(small), len(small)),
                         "loose.bin": ManifestEntry("loose.bin", _sha(loose_data), len(loose_data))}).to_bytes()
    artifacts.store_small("p", [(_sha(manifest), manifest)])
    artifacts.commit("p", "ckpt", type="model", manifest_digest=_sha(manifest), description="", metadata={},
                     aliases=[], logged_by=None)
    assert _read(artifacts, "p", digest) == data
    assert _read(artifacts, "p", _sha(small)) == small
    assert _read(artifacts, "p", _sha(loose_data)) == loose_data
    store.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_pack_sent_again_refreshes_the_chunks_an_abandoned_upload_left(tmp_path, request, database):
    """The same pack sent again (a resumed upload that didn't ask first) must mark its chunks used,
    not leave the abandoned upload's old rows for the collection to delete under it (each database's
    upsert: the rows go to the driver as they are)."""
    root = tmp_path / "server"
    root.mkdir()
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{root / 'store.sqlite'}"
    store = Store(url, root=root)
    artifacts = ServerArtifacts(root, engine=store.engine)
    chunks = [os.urandom(30_000), os.urandom(31_000)]
    pack_id, pack = build_pack([(blake3.blake3(c).digest(), c) for c in chunks])
    artifacts.store_pack("p", pack_id, pack)
    _age(root, artifacts, 2 * HOUR)
    artifacts.store_pack("p", pack_id, pack)  # sent again now
    collect(artifacts, grace=HOUR)
    data = b"".join(chunks)
    recipe = FileRecipe(size=len(data), digest=_sha(data), chunks=tuple(
        (blake3.blake3(c).digest(), len(c)) for c in chunks)).to_json().encode()
    artifacts.store_small("p", [(_sha(recipe), recipe)])
    assert artifacts.register_file("p", _sha(data), len(data), _sha(recipe))
    assert _read(artifacts, "p", _sha(data)) == data
    store.close()


def test_the_report_says_how_many_bytes_a_repack_would_reclaim(tmp_path):
    """A pack kept for one live chunk also holds a chunk nothing references: the collection keeps
    the pack and reports exactly what a pack of only the live chunk would save."""
    from tracklet.artifacts.packs import ENTRY

    root = tmp_path / "server"
    root.mkdir()
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    artifacts = ServerArtifacts(root, engine=store.engine)
    live, dead = os.urandom(40_000), os.urandom(25_000)
    pack_id, pack = build_pack([(blake3.blake3(live).digest(), live), (blake3.blake3(dead).digest(), dead)])
    artifacts.store_pack("p", pack_id, pack)
    recipe = FileRecipe(size=len(live), digest=_sha(live), chunks=((blake3.blake3(live).digest(), len(live)),))
    recipe_bytes = recipe.to_json().encode()
    artifacts.store_small("p", [(_sha(recipe_bytes), recipe_bytes)])
    assert artifacts.register_file("p", _sha(live), len(live), _sha(recipe_bytes))
    manifest = Manifest({"live.bin": ManifestEntry("live.bin", _sha(live), len(live))}).to_bytes()
    artifacts.store_small("p", [(_sha(manifest), manifest)])
    artifacts.commit("p", "m", type="model", manifest_digest=_sha(manifest), description="", metadata={},
                     aliases=[], logged_by=None)
    _age(root, artifacts, 2 * HOUR)

    dry = collect(artifacts, grace=HOUR, dry_run=True)
    report = collect(artifacts, grace=HOUR)
    assert report.chunks == 1 and report.packs == 0  # the dead chunk's row went, the pack stays
    assert (dry.mixed_packs, dry.reclaimable_bytes) == (report.mixed_packs, report.reclaimable_bytes) == (
        1, len(dead) + ENTRY.size)
    assert report.pack_bytes_kept == len(pack)
    assert "1 pack(s) kept for their live chunks hold" in report.summary()
    assert _read(artifacts, "p", _sha(live)) == live
    store.close()


def test_repack_rewrites_a_mixed_pack_with_its_live_chunks_and_the_next_collection_frees_the_old(tmp_path):
    from tracklet.artifacts.packs import ENTRY

    root = tmp_path / "server"
    root.mkdir()
    url = f"sqlite:///{root / 'store.sqlite'}"
    store = Store(url, root=root)
    artifacts = ServerArtifacts(root, engine=store.engine)
    live, dead = os.urandom(40_000), os.urandom(60_000)
    old_pack, pack = build_pack([(blake3.blake3(dead).digest(), dead), (blake3.blake3(live).digest(), live)])
    artifacts.store_pack("p", old_pack, pack)
    artifacts.store_pack("q", old_pack, pack)  # q holds the live chunk too: its rows move as well
    recipe = FileRecipe(size=len(live), digest=_sha(live), chunks=((blake3.blake3(live).digest(), len(live)),))
    recipe_bytes = recipe.to_json().encode()
    for project in ("p", "q"):
        artifacts.store_small(project, [(_sha(recipe_bytes), recipe_bytes)])
        assert artifacts.register_file(project, _sha(live), len(live), _sha(recipe_bytes))
        manifest = Manifest({"live.bin": ManifestEntry("live.bin", _sha(live), len(live))}).to_bytes()
        artifacts.store_small(project, [(_sha(manifest), manifest)])
        artifacts.commit(project, "m", type="model", manifest_digest=_sha(manifest), description="", metadata={},
                         aliases=[], logged_by=None)
    _age(root, artifacts, 2 * HOUR)

    first = collect(artifacts, grace=HOUR, repack=0.5)  # 60% of the pack is the dead chunk
    assert first.chunks == 2 and first.repacked == 1 and first.repack_bytes == len(pack)
    new_pack = build_pack([(blake3.blake3(live).digest(), live)])[0]
    assert set(artifacts.packs.list_packs()) == {old_pack, new_pack}
    for project in ("p", "q"):
        assert _read(artifacts, project, _sha(live)) == live  # read from the new pack now
    second = collect(artifacts, grace=HOUR)
    assert second.packs == 1 and second.pack_bytes == len(pack)  # the old copy, no row names it
    assert artifacts.packs.list_packs() == [new_pack]
    assert (second.mixed_packs, second.reclaimable_bytes) == (0, 0)
    assert second.pack_bytes_kept == len(live) + ENTRY.size + 20
    for project in ("p", "q"):
        assert _read(artifacts, project, _sha(live)) == live
    store.close()
    ran = serverproc.cli("admin", "--dir", str(root), "--store", url, "artifact-gc", "--repack", "0.3", "--dry-run")
    assert ran.returncode == 0, ran.stderr
    assert "0 pack(s) kept for their live chunks hold 0 bytes" in ran.stdout


def _server_and_gc(tmp_path: Path, request, backend: str,
                   database: str = "sqlite") -> tuple[Path, Store, ServerArtifacts, ServerArtifacts]:
    """A server's root and store over ``database``, and its artifacts over ``backend`` (its disk,
    or s3rver) twice: the server process's and, on the same data, ``tracklet admin artifact-gc``'s."""
    root = tmp_path / "server"
    root.mkdir()
    store = Store(request.getfixturevalue("pg_url") if database == "postgresql" else
                  f"sqlite:///{root / 'store.sqlite'}", root=root)
    url, options = None, None
    if backend == "s3":
        import uuid

        from s3server import BUCKET, S3_KEY, S3_SECRET

        url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
        options = {"endpoint_url": request.getfixturevalue("s3rver"), "key": S3_KEY, "secret": S3_SECRET}
    return (root, store, ServerArtifacts(root, url, options, engine=store.engine),
            ServerArtifacts(root, url, options, engine=store.engine))


def _retry_during_collection(kind: str, backend: str, moment: int, tmp_path: Path, request,
                             database: str = "sqlite") -> None:
    root, store, server, admin = _server_and_gc(tmp_path, request, backend, database)
    pieces = [os.urandom(3000), os.urandom(3300)]
    ids = [blake3.blake3(piece).digest() for piece in pieces]
    pack_id, pack = build_pack(list(zip(ids, pieces)))
    server.write_pack(pack_id, pack)  # then the server was killed: no rows, no grants, the client told nothing

    def retry() -> None:  # the client sends the same batch (or pack) again: the same members, the same pack id
        if kind == "packed":
            server.store_small("p", [(_sha(piece), piece) for piece in pieces])
        else:
            server.store_pack("p", pack_id, pack)

    fired = []
    fs = admin.fs

    def hooked(name: str):
        real = getattr(fs, name)

        def call(*args, **kwargs):
            if not fired and any(pack_id in str(arg) for arg in args):
                if len([c for c in calls if c]) == moment:
                    fired.append(name)
                    retry()
                calls.append(name)
            return real(*args, **kwargs)
        return call

    calls: list[str] = []
    if moment < 0:  # the whole collection runs inside the retry: after its write_pack found the pack, before its rows
        write_pack = server.write_pack

        def then_collect(*args) -> None:
            write_pack(*args)
            if not fired:
                fired.append("write_pack")
                collect(admin, grace=HOUR, now=time.time() + 2 * HOUR)

        server.write_pack = then_collect  # type: ignore[method-assign]
        retry()
        server.write_pack = write_pack  # type: ignore[method-assign]
    else:
        originals = {name: getattr(fs, name) for name in ("mv", "rm", "rm_file")}
        try:
            for name in originals:
                setattr(fs, name, hooked(name))
            collect(admin, grace=HOUR, now=time.time() + 2 * HOUR)  # the pack sat unclaimed past the grace
        finally:
            for name, method in originals.items():
                setattr(fs, name, method)
        if not fired:
            retry()  # the collection was done with the pack before the retry arrived
    # What the retry was told is stored reads back: the pack its rows name is there.
    if kind == "packed":
        assert [_read(server, "p", _sha(piece)) for piece in pieces] == pieces
    else:
        data = b"".join(pieces)
        recipe = FileRecipe(size=len(data), digest=_sha(data),
                            chunks=tuple(zip(ids, map(len, pieces)))).to_json().encode()
        server.store_small("p", [(_sha(recipe), recipe)])
        assert server.register_file("p", _sha(data), len(data), _sha(recipe))
        assert _read(server, "p", _sha(data)) == data
    assert server.packs.list_packs() == [pack_id]
    # A later collection within the grace period keeps it; nothing is left set aside.
    collect(admin, grace=HOUR)
    assert server.packs.list_packs() == [pack_id]
    assert not [name for name in (server.fs.ls(server.packs.tmp_dir, detail=False)
                                  if server.fs.exists(server.packs.tmp_dir) else []) if "collected" in str(name)]
    store.close()


@pytest.mark.parametrize(("kind", "backend", "moment", "database"), [
    ("packed", "local", 0, "sqlite"), ("packed", "local", 1, "sqlite"), ("packed", "local", 2, "sqlite"),
    ("packed", "local", -1, "sqlite"), ("chunks", "local", 0, "sqlite"), ("chunks", "local", -1, "sqlite"),
    ("packed", "s3", 0, "sqlite"), ("chunks", "s3", 1, "sqlite"), ("chunks", "s3", -1, "sqlite"),
    ("packed", "local", 1, "postgresql"), ("chunks", "local", 0, "postgresql"), ("chunks", "s3", -1, "postgresql")])
def test_a_retry_during_a_collection_never_names_a_removed_pack(kind, backend, moment, database, tmp_path, request):
    """A pack written by a server killed before its rows sat unclaimed past the grace period; the
    client's retry (same members, same pack id) arrives while a collection is removing it: at the
    collection's first, second or third step on that pack, or with the whole collection between the
    retry's check that the pack is there and its rows (moment -1). The retry finds the pack in place and
    writes nothing, so without care its rows named a pack the collection then removed (blobs and
    chunks the client was told are stored, gone). Whichever comes first, the pack is there after."""
    _retry_during_collection(kind, backend, moment, tmp_path, request, database)


def test_a_pack_a_dead_collection_left_set_aside_goes_back_if_named(tmp_path):
    """A collection killed between setting a pack aside and deleting or restoring it: the next one
    puts back a pack some row names (an upload claimed it meanwhile) and deletes one none does."""
    from tracklet.server.artifact_gc import SET_ASIDE

    root = tmp_path / "server"
    root.mkdir()
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    artifacts = ServerArtifacts(root, engine=store.engine)
    claimed = [os.urandom(2000), os.urandom(2200)]
    claimed_digest, _, claimed_pack, _ = _chunked_file(artifacts, "p", claimed)
    lost_id, lost = build_pack([(blake3.blake3(b"x" * 100).digest(), b"x" * 100)])
    artifacts.write_pack(lost_id, lost)
    aside = Path(artifacts.packs.tmp_dir)
    aside.mkdir(parents=True, exist_ok=True)
    for pack_id in (claimed_pack, lost_id):
        os.replace(artifacts.packs.pack_path(pack_id), aside / f"{pack_id}.0123{SET_ASIDE}")
    collect(artifacts, grace=HOUR)
    assert artifacts.packs.list_packs() == [claimed_pack] and not list(aside.iterdir())
    assert b"".join(claimed) == _read(artifacts, "p", claimed_digest)
    store.close()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_an_ungranted_blob_sent_again_while_a_collection_looks_at_it_stays(backend, tmp_path, request):
    """A blob object no project holds (a server killed between writing and granting it), past the
    grace period: a collection takes it for garbage. An upload of the same bytes arriving after the
    collection listed it (the server finds the object there, writes nothing and grants it) keeps
    it: the grants are checked again before anything is removed."""
    root, store, server, admin = _server_and_gc(tmp_path, request, backend)
    data, lone = os.urandom(5000), os.urandom(6000)
    for blob in (data, lone):  # written, then the server was killed: no grant
        path = server.blobs._path(_sha(blob))
        server.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        server.fs.pipe_file(path, blob)
    sent = []
    modified = admin.fs.modified

    def upload_meanwhile(path, *args, **kwargs):
        if not sent and _sha(data) in str(path):
            sent.append(server.store_small("p", [(_sha(data), data)]))
        return modified(path, *args, **kwargs)

    admin.fs.modified = upload_meanwhile  # type: ignore[method-assign]
    try:
        report = collect(admin, grace=HOUR, now=time.time() + 2 * HOUR)
    finally:
        admin.fs.modified = modified  # type: ignore[method-assign]
    assert sent and _read(server, "p", _sha(data)) == data
    assert report.blobs == 1 and not server.fs.exists(server.blobs._path(_sha(lone)))
    store.close()


@pytest.mark.parametrize(("database", "backend", "origin"), [
    ("sqlite", "local", "ungranted"), ("sqlite", "local", "collected"), ("sqlite", "local", "large"),
    ("sqlite", "s3", "ungranted"), ("sqlite", "s3", "collected"),
    ("postgresql", "local", "ungranted"), ("postgresql", "local", "collected"), ("postgresql", "local", "large"),
    ("postgresql", "s3", "collected")])
def test_an_upload_as_a_collection_removes_the_same_blob_never_leaves_a_grant_without_it(database, backend, origin,
                                                                                        tmp_path, request):
    """A blob object nobody holds past the grace period (never granted: a server killed between
    writing and granting it; or granted by an abandoned upload, its grant collected first): the
    collection checks the grants again and removes it. An upload of the same bytes that got as far
    as granting them (it found the object stored and wrote nothing, or wrote it again just before)
    when the collection checks and removes: without care its grant named a removed object, so a
    commit of it passed and its files were gone. Whichever comes first, the bytes read back, or
    (a large blob streamed, found stored: its bytes are not kept) the upload is told to send them
    again and nothing is granted."""
    import threading

    from tracklet.errors import BlobCollected

    root, store, server, admin = _server_and_gc(tmp_path, request, backend, database)
    data, other = os.urandom(9 << 20 if origin == "large" else 5000), os.urandom(4000)
    digest = _sha(data)
    server.pack_small = False
    if origin == "collected":
        server.store_small("abandoned", [(digest, data)])  # granted, never committed
    else:  # written, then the server was killed: no grant
        path = server.blobs._path(digest)
        server.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        server.fs.pipe_file(path, data)
    assert server.blobs.has(digest)

    granting = threading.Event()  # the upload decided what to write and is about to grant
    sync = server.blobs.sync

    def about_to_grant() -> int:
        granting.set()
        return sync()

    server.blobs.sync = about_to_grant  # type: ignore[method-assign]
    outcome: list[object] = []

    def upload() -> None:
        try:
            if origin == "large":
                outcome.append(server.store_chunks("p", digest, iter([data[:1 << 20], data[1 << 20:]])))
            else:  # with another blob, each an object of its own: checked together
                outcome.append(server.store_small("p", [(digest, data), (_sha(other), other)]))
        except BlobCollected as error:
            outcome.append(error)

    uploader = threading.Thread(target=upload)
    fs = admin.fs
    rm = fs.rm

    def rm_meanwhile(path, *args, **kwargs):  # the collection decided: the upload gets as far as its grant
        if digest in str(path) and not uploader.is_alive() and not outcome:
            uploader.start()
            assert granting.wait(60)
        return rm(path, *args, **kwargs)

    sweep = admin.sweep_uploads

    def upload_done_first(*args, **kwargs):  # the collection's next step: its clock is 2 h ahead (temporaries)
        if uploader.is_alive():
            uploader.join(60)
        return sweep(*args, **kwargs)

    fs.rm = rm_meanwhile  # type: ignore[method-assign]
    admin.sweep_uploads = upload_done_first  # type: ignore[method-assign]
    try:
        report = collect(admin, grace=HOUR, now=time.time() + 2 * HOUR)
    finally:
        fs.rm = rm  # type: ignore[method-assign]
        server.blobs.sync = sync  # type: ignore[method-assign]
    uploader.join(60)
    # The other blob may go too: the collection lists a prefix when it gets to it, and by its clock
    # (2 h ahead) the object the upload wrote meanwhile is old; the upload writes it again then.
    assert admin.blobs._path(digest) in report.removed and len(outcome) == 1
    if isinstance(outcome[0], BlobCollected):
        assert origin == "large" and not server.holds("p", digest)  # nothing granted: the client sends it again
        assert digest in str(outcome[0])
        server.store_chunks("p", digest, iter([data]))
    assert _read(server, "p", digest) == data
    if origin != "large":
        assert _read(server, "p", _sha(other)) == other
    manifest = Manifest({"f.bin": ManifestEntry("f.bin", digest, len(data))}).to_bytes()
    server.store_small("p", [(_sha(manifest), manifest)])
    server.commit("p", "ds", type="dataset", manifest_digest=_sha(manifest), description="", metadata={},
                  aliases=[], logged_by=None)
    assert _read(server, "p", digest) == data
    store.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_grant_left_naming_removed_bytes_is_dropped_so_the_blob_is_sent_again(database, tmp_path, request):
    """A server from before an upload's grant checked its objects could, racing a collection, leave
    a grant naming a removed object: the project's query said it held the blob, so a client never
    sent it again and a commit passed without its bytes. A collection finds such grants (no object,
    no placement), whatever their age or use, drops them and names the committed blobs affected;
    the next query says the blob is missing, and once sent again it reads back. Nothing else goes."""
    root = tmp_path / "server"
    root.mkdir()
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{root / 'store.sqlite'}"
    artifacts = ServerArtifacts(root, engine=Store(url, root=root).engine)
    artifacts.pack_small = False
    lost, kept = os.urandom(5000), os.urandom(5000)
    artifacts.store_small("p", [(_sha(lost), lost), (_sha(kept), kept)])
    artifacts.store_small("q", [(_sha(lost), lost)])
    manifest = Manifest({"lost.bin": ManifestEntry("lost.bin", _sha(lost), len(lost)),
                         "kept.bin": ManifestEntry("kept.bin", _sha(kept), len(kept))}).to_bytes()
    artifacts.store_small("p", [(_sha(manifest), manifest)])
    artifacts.commit("p", "ckpt", type="model", manifest_digest=_sha(manifest), description="", metadata={},
                     aliases=[], logged_by=None)
    artifacts.fs.rm(artifacts.blobs._path(_sha(lost)))  # what the old race left: grants, no bytes
    assert artifacts.missing("p", [_sha(lost)]) == []  # ... and the query says it is held (used now)
    before = _objects(root)

    dry = collect(artifacts, grace=HOUR, dry_run=True)
    assert dry.dangling_grants == 2 and dry.dangling_live == [_sha(lost)]
    assert artifacts.missing("p", [_sha(lost)]) == []
    report = collect(artifacts, grace=HOUR)
    assert report.dangling_grants == 2 and report.dangling_live == [_sha(lost)]
    assert "2 grant(s) named a blob whose bytes are gone" in report.summary()
    assert (report.blobs, report.packs, report.grants) == (0, 0, 0) and _objects(root) == before
    assert artifacts.missing("p", [_sha(lost), _sha(kept)]) == [_sha(lost)]
    assert artifacts.missing("q", [_sha(lost)]) == [_sha(lost)]
    artifacts.store_small("p", [(_sha(lost), lost)])  # the client sends it again
    assert _read(artifacts, "p", _sha(lost)) == lost
    assert collect(artifacts, grace=HOUR).dangling_grants == 0


@pytest.mark.parametrize("times", [1, 3])
@pytest.mark.parametrize("backend", ["disk", "s3"])
def test_an_upload_session_completing_as_a_collection_takes_its_blob_finishes_without_resending(
        backend, times, tmp_path, request):
    """An upload session's blob is published, then granted; a collection in between (the object
    unheld, past its grace period) removes it, ``times`` times in a row. The completion (called
    again while answered 503, as the client does) ends with the blob stored and granted,
    byte-exact, and no part sent twice; on S3 the multipart upload the first call completed is not
    needed again (its temporary object stays until the grant)."""

    from tracklet.errors import BlobCollected

    root, store, server, admin = _server_and_gc(tmp_path, request, backend)
    part = 5 << 20
    data = os.urandom(2 * part + 1000)
    digest = _sha(data)
    session = server.start("p", digest, len(data), part)
    for number in range(1, session.part_count + 1):
        server.put_part(session, number, data[(number - 1) * part:number * part], None)
    put_part = server.put_part
    server.put_part = None  # type: ignore[assignment,method-assign]  # nothing is sent twice
    collections = []
    sync = server.blobs.sync

    def collected_before_the_grant() -> int:  # published, about to grant: a collection runs first
        if len(collections) < times:
            collections.append(collect(admin, grace=HOUR, now=time.time() + 2 * HOUR))
        return sync()

    server.blobs.sync = collected_before_the_grant  # type: ignore[method-assign]
    size, answers = None, []
    try:
        while size is None and len(answers) < 5:
            try:
                size = server.complete(server.session("p", session.id))
            except BlobCollected as error:  # answered 503: the client completes again
                answers.append(error)
    finally:
        server.blobs.sync = sync  # type: ignore[method-assign]
        server.put_part = put_part  # type: ignore[method-assign]
    assert [report.blobs for report in collections] == [1] * times  # each took the published blob
    assert size == len(data) and server.holds("p", digest)
    assert _read(server, "p", digest) == data
    leftovers = admin.fs.find(f"{admin.blobs.base}/tmp")  # the session's temporary went with it
    assert not [path for path in leftovers if session.id in str(path)]
    store.close()


def test_an_upload_retried_after_a_collection_checks_every_object_it_grants(tmp_path, request):
    """An upload of two stored blobs whose first grant found one removed by a collection rolls
    back both grants and writes that one again; the other, ungranted again meanwhile, may go with
    the collection's next batch. The retry's grant checks both objects, so it never names the
    removed one: it is written again too and both read back."""
    root, store, server, _ = _server_and_gc(tmp_path, request, "disk")
    server.pack_small = False
    first, second = os.urandom(5000), os.urandom(5000)
    for data in (first, second):  # stored before (a killed server's): no grant
        path = server.blobs._path(_sha(data))
        server.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        server.fs.pipe_file(path, data)
    grant = server._grant_objects
    calls = []

    def collected_meanwhile(project, sizes, objects):  # what collections do between the upload's steps
        calls.append(list(objects))
        if len(calls) <= 2:
            server.fs.rm(server.blobs._path(_sha(first if len(calls) == 1 else second)))
        return grant(project, sizes, objects)

    server._grant_objects = collected_meanwhile  # type: ignore[method-assign]
    try:
        assert server.store_small("p", [(_sha(first), first), (_sha(second), second)]) == []
    finally:
        server._grant_objects = grant  # type: ignore[method-assign]
    assert len(calls) == 3 and sorted(calls[1]) == sorted([_sha(first), _sha(second)])
    assert _read(server, "p", _sha(first)) == first and _read(server, "p", _sha(second)) == second
    store.close()
