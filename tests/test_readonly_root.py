"""Reading a data root this user can't write (a read-only NFS export, another user's directory, a
container's read-only volume): `tracklet ui`, the CLI's reads and `tracklet.Api()` work without
creating or writing anything under it, and what needs writing is one clear error naming it.

Real processes run as a user who can't write the root: the test process prepares a root (runs with
media and a run file, a chunked artifact, a report) and indexes it, takes write permission away
(files 0444, directories 0555), then starts each child without the privilege to override it. As
root (CI runs as root) a child becomes ``nobody`` where ``nobody`` can run this interpreter and read
this checkout; else (an interpreter under /root, as here) it stays uid 0 with every capability
dropped (an empty bounding set: no ``CAP_DAC_OVERRIDE``) and the root is given to ``nobody``, so to
the child it is another user's directory. Not root, the test user already can't write a 0555
directory. Either way a probe first checks that the child really cannot create a file there.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import QUIET, REPO, run_script

import tracklet

MiB = 1 << 20
BIG = np.random.default_rng(3).integers(0, 256, 3 * MiB + 4321, dtype=np.uint8).tobytes()  # >= the lowered threshold
TOKEN = "read-only-root-token"


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


# Runs a command with an empty capability bounding set, so uid 0's exec gains none (util-linux's setpriv:
# a ``preexec_fn`` dropping them would run Python in the forked child of this threaded process, where a
# finalizer or at-fork hook can wait for ever on a lock another thread held).
DROP_CAPABILITIES = ["setpriv", "--bounding-set=-all", "--"]


class Unprivileged:
    """How children are started without write access to the prepared root: ``how`` says which way."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}
        self.prefix: list[str] = []  # what each command is exec'd through
        self.give_root_to: tuple[int, int] | None = None
        if os.geteuid() != 0:
            self.how = "the test's own non-root user"
            return
        uid, gid = _nobody()
        try:
            probe = subprocess.run([sys.executable, "-c", "import tracklet.cli.main, fastapi, uvicorn"], cwd="/",
                                   env=self.env(Path("/")), user=uid, group=gid, extra_groups=[],
                                   capture_output=True, check=False).returncode
        except OSError:  # the interpreter itself is out of nobody's reach
            probe = -1
        if probe == 0:
            self.how = "user nobody"
            self.options = {"user": uid, "group": gid, "extra_groups": []}
        else:  # this interpreter or checkout is out of nobody's reach: uid 0 without any capability
            self.how = "uid 0 without capabilities (the root owned by nobody)"
            self.prefix = DROP_CAPABILITIES
            self.give_root_to = (uid, gid)
            try:
                subprocess.run([*self.prefix, sys.executable, "-c", ""], check=True, capture_output=True)
            except (OSError, subprocess.SubprocessError) as error:  # no setpriv, or no CAP_SETPCAP (a restricted container)
                pytest.skip(f"root, but nobody can't run {sys.executable} and capabilities can't be dropped: {error}")

    @staticmethod
    def env(home: Path) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKLET_", "XDG_"))}
        return {**keep, "PYTHONPATH": str(REPO), "HOME": str(home), "TMPDIR": str(home),
                "XDG_CACHE_HOME": str(home / ".cache"), "TRACKLET_UI_TOKEN": TOKEN, "PYTHONDONTWRITEBYTECODE": "1"}

    def popen(self, args: list[str], home: Path, **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen([*self.prefix, *args], cwd=home, env=self.env(home), **self.options, **kwargs)

    def run(self, args: list[str], home: Path, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *args], cwd=home, env=self.env(home), capture_output=True, text=True,
                              timeout=timeout, check=False, **self.options)


def _prepare(root: Path, sources: Path) -> int:
    """Runs with media and a run file, a chunked artifact and a report, indexed; the report's id."""
    run = tracklet.init(project="p", id="r1", dir=str(root), settings=QUIET, config={"lr": 0.1})
    for step in range(4):
        run.log({"loss": 1.0 / (step + 1), "picture": tracklet.Image(np.full((8, 8, 3), step * 60, np.uint8))})
    run.log({"samples": tracklet.Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]])})
    sources.mkdir(parents=True)
    (sources / "big.bin").write_bytes(BIG)
    (sources / "notes.txt").write_text("small\n")
    artifact = tracklet.Artifact("model", type="model")
    artifact.add_file(str(sources / "big.bin"))
    artifact.add_file(str(sources / "notes.txt"))
    run.log_artifact(artifact)
    files = Path(run.dir) / "files"
    files.mkdir(exist_ok=True)
    (files / "requirements.txt").write_text("numpy==2.0\n")
    run.finish()
    report = tracklet.Report("p", title="Loss", dir=str(root))
    report.add_text("# Loss")
    report.add_panel({"keys": ["loss"], "x": "step"})
    report.save()
    from tracklet.store import Store

    store = Store(root=root)
    store.index()
    store.engine.dispose()
    return int(report.id)


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root``: (mode, size, mtime_ns)."""
    found = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        found[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return found


def _set_writable(top: Path, writable: bool) -> None:
    for path in [top, *top.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        if writable:
            path.chmod(mode | stat.S_IWUSR)
        else:
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


class Setup:
    def __init__(self, base: Path, root: Path, bare: Path, home: Path, who: Unprivileged, report: int) -> None:
        self.base, self.root, self.bare, self.home, self.who, self.report = base, root, bare, home, who, report
        self.before = _tree(root)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    who = Unprivileged()
    # Not under pytest's 0700 temporary directory: nobody must be able to reach the root.
    base = Path(tempfile.mkdtemp(prefix="tracklet-readonly-"))
    base.chmod(0o755)
    saved = os.environ.get("TRACKLET_ARTIFACT_CHUNK_THRESHOLD")
    os.environ["TRACKLET_ARTIFACT_CHUNK_THRESHOLD"] = "1MiB"
    try:
        root, bare, home = base / "root", base / "bare", base / "home"
        report = _prepare(root, base / "sources")
        # A root nobody indexed: its runs are there, its store isn't.
        shutil.copytree(root, bare, symlinks=True)
        for name in os.listdir(bare):
            if name.startswith("store.sqlite"):
                (bare / name).unlink()
        home.mkdir()
        home.chmod(0o777)  # the child's HOME, TMPDIR and downloads
        for top in (root, bare):
            if who.give_root_to is not None:
                try:
                    for path in [top, *top.rglob("*")]:
                        os.lchown(path, *who.give_root_to)
                except OSError as error:  # a user namespace that maps no nobody
                    pytest.skip(f"can't give the prepared root to nobody: {error}")
            _set_writable(top, False)
        probe = who.run([sys.executable, "-c", f"open({str(root / 'probe')!r}, 'w')"], home)
        if probe.returncode == 0:
            pytest.skip(f"a child started as {who.how} could still write {root}: nothing to test")
        assert "PermissionError" in probe.stderr, probe.stderr
        yield Setup(base, root, bare, home, who, report)
    finally:
        if saved is None:
            os.environ.pop("TRACKLET_ARTIFACT_CHUNK_THRESHOLD", None)
        else:
            os.environ["TRACKLET_ARTIFACT_CHUNK_THRESHOLD"] = saved
        if os.geteuid() != 0:
            _set_writable(base, True)
        shutil.rmtree(base, ignore_errors=os.geteuid() == 0)


class Ui:
    """`tracklet ui` over a root, started unprivileged, and what it printed."""

    def __init__(self, setup: Setup, root: Path) -> None:
        self.out, self.err = setup.home / f"ui-{time.monotonic_ns()}.out", setup.home / f"ui-{time.monotonic_ns()}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = setup.who.popen([sys.executable, "-m", "tracklet", "--dir", str(root), "ui", "--no-open",
                                         "--port", "0"], setup.home, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 180  # a readiness limit (cold imports on a loaded machine), not a check
        while "tracklet ui:" not in self.out.read_text() and self.proc.poll() is None:
            assert time.monotonic() < deadline, self.err.read_text()
            time.sleep(0.05)  # readiness polling only
        self.line = self.out.read_text()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(30)
        return self.err.read_text()


@pytest.fixture(scope="module")
def ui(setup: Setup) -> Iterator[tuple[Ui, httpx.Client]]:
    process = Ui(setup, setup.root)
    assert process.proc.poll() is None, process.err.read_text()
    url = process.line.split("tracklet ui: ", 1)[1].split("?", 1)[0]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        yield process, client
    stderr = process.stop()
    assert "Traceback" not in stderr, stderr


def test_the_ui_serves_every_read_of_a_root_it_cannot_write(setup, ui):
    process, client = ui
    assert "read-only here" in process.line and str(setup.root) in process.line, process.line

    def get(path: str, **options: Any) -> httpx.Response:
        answer = client.get(path, **options)
        assert answer.status_code in (200, 206), (path, answer.status_code, answer.text[:300])
        return answer

    assert [run["run_id"] for run in get("/api/v1/projects/p/runs").json()["runs"]] == ["r1"]
    assert get("/api/v1/runs/p/r1").json()["run"]["summary"]["loss"] == 0.25
    history = get("/api/v1/runs/p/r1/history", params={"keys": "loss"}).content
    assert history
    media = get("/api/v1/runs/p/r1/media").json()["media"]
    assert len(media) == 4
    picture = get(f"/api/v1/runs/p/r1/media/{media[-1]['digest']}")
    assert picture.headers["content-type"] == "image/png" and picture.content.startswith(b"\x89PNG")
    assert client.head(f"/api/v1/runs/p/r1/media/{media[-1]['digest']}").status_code == 200
    assert get("/api/v1/runs/p/r1/files/requirements.txt").content == b"numpy==2.0\n"
    assert client.head("/api/v1/runs/p/r1/files/requirements.txt").status_code == 200
    # The chunked file: found through the chunk index (read-only), read under gc.lock (shared, read-only fd).
    url = "/api/v1/projects/p/artifacts/model/versions/v0/files/big.bin"
    assert get(url).content == BIG
    assert get(url, headers={"Range": "bytes=2000000-2000099"}).content == BIG[2000000:2000100]
    assert get("/api/v1/projects/p/artifacts/model/versions/v0/files/notes.txt").content == b"small\n"
    assert {entry["path"] for entry in get("/api/v1/projects/p/artifacts/model/versions/v0/files").json()["files"]} \
        == {"big.bin", "notes.txt"}
    # Reports (reports.sqlite, read-only) and their panels' data (the store); sweeps read the server's
    # tables, which a root only `tracklet index` wrote doesn't have: empty, not an error.
    assert [item["title"] for item in get("/api/v1/projects/p/reports").json()["reports"]] == ["Loss"]
    assert get(f"/api/v1/projects/p/reports/{setup.report}").json()["title"] == "Loss"
    assert get(f"/api/v1/projects/p/reports/{setup.report}/data").content
    assert get("/api/v1/projects/p/sweeps").json()["sweeps"] == []
    assert get("/api/v1/registries").status_code == 200
    assert get("/api/v1/runs/p/r1/tables/samples").json()["rows"] == [[1, "x"], [2, "y"]]  # DuckDB over the blob
    # The ui's writes (saving a report, OTLP spans) are refused, naming the root: 403, not a 500.
    refused = client.post("/api/v1/projects/p/reports", json={"title": "new", "markdown": "# new"})
    assert refused.status_code == 403 and str(setup.root) in refused.json()["detail"], refused.text
    span = {"traceId": "0" * 31 + "1", "spanId": "0" * 15 + "1", "name": "x", "startTimeUnixNano": "1000",
            "endTimeUnixNano": "2000"}
    refused = client.post("/v1/traces", json={"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]},
                          headers={"x-tracklet-project": "p"})
    assert refused.status_code == 403 and str(setup.root) in refused.json()["detail"], refused.text
    assert _tree(setup.root) == setup.before


def test_cli_and_api_reads_of_a_root_they_cannot_write(setup):
    """The CLI's read commands and `tracklet.Api()` in one unprivileged child (one interpreter start):
    each command through click's runner, in that process; and `tracklet ui` over a root nobody indexed."""
    download = setup.home / "download"
    script = textwrap.dedent(f"""
        import json, os, pathlib
        from click.testing import CliRunner
        import tracklet
        from tracklet.cli.main import main
        root = {str(setup.root)!r}
        out = {{}}
        def cli(*args):
            result = CliRunner().invoke(main, ["--dir", root, *args], catch_exceptions=False)
            return result.exit_code, result.output
        out["show"] = cli("show", "p/r1")
        out["ls"] = cli("artifact", "ls", "p")
        out["get"] = cli("artifact", "get", "p/model:v0", "--root", {str(download)!r})
        out["verify"] = cli("artifact", "verify", "p/model:v0", "--root", {str(download)!r})
        out["reports"] = cli("report", "ls", "p")
        out["index"] = cli("index")
        out["gc"] = cli("gc")
        result = CliRunner().invoke(main, ["--dir", {str(setup.bare)!r}, "ui", "--no-open", "--port", "0"])
        out["bare ui"] = [result.exit_code, result.output]
        api = tracklet.Api(root)
        out["runs"] = [run.id for run in api.runs("p", filter="summary.loss < 1", order_by="-summary.loss")]
        out["history"] = repr(api.history("p/r1", ["loss"]))[:2000]
        fetched = api.artifact("p/model:v0").download(root={str(setup.home / "api")!r})
        out["download"] = sorted(os.listdir(fetched))
        out["big"] = (pathlib.Path(fetched) / "big.bin").read_bytes() == pathlib.Path({str(download / "big.bin")!r}).read_bytes()
        out["report"] = api.report({setup.report}, project="p").title
        try:
            api.index()
        except tracklet.TrackletError as error:
            out["api.index"] = [type(error).__name__, str(error)]
        print(json.dumps(out))
    """)
    done = setup.who.run([sys.executable, "-c", script], setup.home)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["show"][0] == 0 and "loss" in out["show"][1]
    assert out["ls"][0] == 0 and "p/model" in out["ls"][1]
    assert out["get"][0] == 0, out["get"]
    assert (download / "big.bin").read_bytes() == BIG
    assert out["verify"][0] == 0 and "2 files match" in out["verify"][1], out["verify"]
    assert out["reports"][0] == 0 and "Loss" in out["reports"][1]
    # What needs writing is one line naming the root and what to do, exit status 2 (no traceback).
    code, text = out["index"]
    assert code == 2 and str(setup.root) in text and "tracklet index" in text and "Traceback" not in text, text
    code, text = out["gc"]
    assert code == 2 and str(setup.root) in text and "tracklet gc" in text and "Traceback" not in text, text
    assert out["runs"] == ["r1"] and out["download"] == ["big.bin", "notes.txt"] and out["big"]
    assert out["report"] == "Loss"
    # `tracklet ui` over a root nobody indexed: nothing to show until its owner does, and it says so.
    code, text = out["bare ui"]
    assert code == 2 and str(setup.bare) in text and "tracklet index" in text and "Traceback" not in text, text
    assert not (setup.bare / "store.sqlite").exists()
    assert out["api.index"][0] == "ReadOnlyDataRoot" and str(setup.root) in out["api.index"][1]
    assert _tree(setup.root) == setup.before


def test_a_read_only_store_sees_a_live_writers_commits_and_creates_nothing_beside_a_closed_one(tmp_path):
    """``core/readonly.py``'s choice: ``mode=ro`` through the writer's ``-shm`` while one has the file
    open (each commit seen by the next use: no pool), ``immutable`` once nobody has (no ``-shm`` to
    read, none may be created)."""
    import sqlite3

    import sqlalchemy as sa

    from tracklet.core.readonly import sqlite_read_uri
    from tracklet.store.engine import read_only_engine

    path = tmp_path / "live.sqlite"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("INSERT INTO t VALUES (1)")
    engine = read_only_engine(path)

    def count() -> int:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM t")).scalar_one())

    assert "mode=ro" in sqlite_read_uri(path) and "immutable" not in sqlite_read_uri(path)
    assert count() == 1
    writer.execute("INSERT INTO t VALUES (2)")  # committed while the reader is in use
    assert count() == 2
    with engine.connect() as connection, pytest.raises(sa.exc.OperationalError, match="readonly"):
        connection.execute(sa.text("INSERT INTO t VALUES (3)"))
    writer.close()  # the last connection: SQLite checkpoints and removes the -wal and -shm
    assert not Path(f"{path}-shm").exists()
    assert "immutable=1" in sqlite_read_uri(path)
    assert count() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.sqlite"]
    engine.dispose()


def test_commits_a_stopped_writer_left_in_the_wal_are_read_without_writing_the_root(setup):
    """A ``-wal`` holding commits and no ``-shm`` beside it (a root copied, synced or mounted
    without the ``-shm`` its writer left): ``immutable=1`` reads the main file alone, so
    the run in those commits was missing. The unprivileged reader sees it (from a private copy of
    the two files: ``mode=ro`` can't make the ``-shm`` in a directory it can't write), says so once,
    and writes nothing under the root."""
    from tracklet.store import Store

    live, root = setup.base / "wal-live", setup.base / "wal-root"
    for run_id in ("a", "b"):
        tracklet.init(project="w", id=run_id, dir=str(live), settings=QUIET, config={"n": run_id}).finish()
        store = Store(root=live)
        store.index()
        if run_id == "a":
            store.engine.dispose()  # the last connection: checkpointed, no -wal
    assert Path(f"{live}/store.sqlite-wal").stat().st_size > 32  # b's commits, not checkpointed yet
    shutil.copytree(live, root, symlinks=True, ignore=shutil.ignore_patterns("store.sqlite-shm"))  # as if stopped
    store.engine.dispose()
    if setup.who.give_root_to is not None:
        for path in [root, *root.rglob("*")]:
            os.lchown(path, *setup.who.give_root_to)
    _set_writable(root, False)
    before = _tree(root)
    script = textwrap.dedent(f"""
        import json, tracklet
        api = tracklet.Api({str(root)!r})
        print(json.dumps([[run.id, run.config.get("n")] for run in api.runs("w", order_by="+created_at")]))
    """)
    done = setup.who.run([sys.executable, "-c", script], setup.home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [["a", "a"], ["b", "b"]], done.stderr
    assert "store.sqlite-wal holds commits" in done.stderr and "private copy" in done.stderr, done.stderr
    assert _tree(root) == before


def test_a_kept_chunk_index_follows_what_its_owner_writes_after_it_was_opened(setup):
    """The chunk index an artifact store keeps open (``tracklet ui`` reads every chunked file
    through one) over a root nobody had open is read ``immutable``, and such a connection keeps
    what it read: after the owner moved a chunk to another pack (a repack) and closed the index,
    the reader went on placing it in the old pack, which a collection then removes. The index is
    opened again once the file has changed."""
    from tracklet.artifacts.packs import ChunkIndex, PackInfo

    directory = setup.base / "chunks"
    directory.mkdir()
    path = directory / "chunk-index.sqlite"
    chunk = bytes(range(32))
    with ChunkIndex(path) as index:
        index.add_pack(PackInfo("pack-1", 100, ((chunk, 0, 10),)))
    if setup.who.give_root_to is not None:
        for item in (directory, path):
            os.lchown(item, *setup.who.give_root_to)
    _set_writable(directory, False)
    script = textwrap.dedent(f"""
        import json, sys
        from tracklet.artifacts.packs import ChunkIndex
        index = ChunkIndex({str(path)!r})
        print(json.dumps([index.read_only, index.locate([{chunk!r}]).get({chunk!r})]), flush=True)
        sys.stdin.readline()
        print(json.dumps(index.locate([{chunk!r}]).get({chunk!r})), flush=True)
    """)
    child = setup.who.popen([sys.executable, "-c", script], setup.home, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert json.loads(child.stdout.readline() or "null") == [True, ["pack-1", 0, 10]], child.stderr
        _set_writable(directory, True)  # the owner repacks: the chunk moves, the old pack is forgotten
        with ChunkIndex(path) as index:
            index.move_chunks(PackInfo("pack-2", 50, ((chunk, 7, 10),)))
            index.remove_packs(["pack-1"])
        _set_writable(directory, False)
        child.stdin.write("\n")
        child.stdin.flush()
        assert json.loads(child.stdout.readline() or "null") == ["pack-2", 7, 10]
        assert child.wait(60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_wal_without_its_shm_is_read_without_making_anything_beside_it_where_the_directory_is_writable(tmp_path):
    """The same ``-wal`` with no ``-shm``, in a directory this user may write (a root writable but
    its store not, or a group's): its commits are read, and still nothing is made beside the
    database (``mode=ro`` would leave a ``-shm`` of this user's there, which the owner's next writer
    may not be able to write)."""
    from tracklet.core.readonly import connect_read_only

    copied = _a_wal_without_its_shm(tmp_path)
    before = sorted(path.name for path in copied.iterdir())
    assert before == ["db.sqlite", "db.sqlite-wal"]
    reader = connect_read_only(copied / "db.sqlite")
    try:
        assert reader.execute("SELECT x FROM t").fetchall() == [(1,)]
    finally:
        reader.close()
    assert sorted(path.name for path in copied.iterdir()) == before


def _a_wal_without_its_shm(tmp_path: Path) -> Path:
    """A database holding one row only in its ``-wal``, copied without its ``-shm`` (a synced
    root): the case read from a private copy. Returns the copy's directory."""
    import sqlite3

    live, copied = tmp_path / "live", tmp_path / "copied"
    live.mkdir()
    writer = sqlite3.connect(live / "db.sqlite", isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("INSERT INTO t VALUES (1)")
    shutil.copytree(live, copied, ignore=shutil.ignore_patterns("*-shm"))
    writer.close()
    return copied


_KILLED_READER = """
import os, signal, sys
from tracklet.core.readonly import connect_read_only
reader = connect_read_only(sys.argv[1])
assert reader.execute("SELECT x FROM t").fetchall() == [(1,)]
os.kill(os.getpid(), signal.SIGKILL)  # no exit handler runs: its private copy stays behind
"""


def test_a_private_copy_a_killed_reader_left_is_removed_by_the_next_one(tmp_path):
    """A reader killed with its private copy of a ``-wal`` without ``-shm`` open (``kill -9``: no
    exit handler) leaves the copy (the whole database) in the temp dir; the next reader that makes
    one removes it, and never a live process's copy."""
    import signal
    import subprocess
    import sys

    from tracklet.core import readonly

    copied, temp = _a_wal_without_its_shm(tmp_path), tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    left = []
    for _ in range(2):
        killed = subprocess.run([sys.executable, "-c", _KILLED_READER, str(copied / "db.sqlite")], env=env,
                                capture_output=True, text=True, timeout=120)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        left.append(sorted(path.name for path in temp.iterdir()))
    # each killed reader left its copy; the second removed the first's as it made its own
    assert [len(names) for names in left] == [1, 1] and left[0] != left[1]
    assert left[1][0].startswith("tracklet-readonly-copy-")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = temp / f"tracklet-readonly-copy-{alive.pid}-live"  # a live process's copy: kept
        theirs.mkdir()
        readonly._remove_stale_snapshots(str(temp))
        assert sorted(path.name for path in temp.iterdir()) == [theirs.name]
    finally:
        alive.kill()
        alive.wait()


def test_a_forked_child_exiting_leaves_its_parents_private_copy(tmp_path):
    """A child forked by a reader holding a private copy (a ``Pool``, a ``DataLoader`` worker) runs
    exit handlers as it ends: the parent's copy, still in use, stays. (The reader that forks is a
    fresh interpreter: tests never fork pytest's own process.)"""
    copied, temp = _a_wal_without_its_shm(tmp_path), tmp_path / "tmp"
    temp.mkdir()
    done = run_script("""
        import json, os, sys, tempfile
        import forkprobe
        from tracklet.core.readonly import connect_read_only

        database, tempfile.tempdir = sys.argv[1:3]
        reader = connect_read_only(database)
        try:
            made = sorted(os.listdir(tempfile.tempdir))
            pid = os.fork()
            if pid == 0:  # the child: its normal exit would run readonly's exit handler (only that one here)
                code = 0
                try:
                    from tracklet.core import readonly

                    readonly._remove_snapshots()
                except BaseException:
                    code = 1
                os._exit(code)
            code = forkprobe.reap(pid)
            print(json.dumps({"made": made, "code": code, "after": sorted(os.listdir(tempfile.tempdir)),
                              "rows": reader.execute("SELECT x FROM t").fetchall()}))
        finally:
            reader.close()
    """, args=(str(copied / "db.sqlite"), str(temp)), timeout=120)
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(told["made"]) == 1
    assert told["code"] == 0, done.stderr
    assert told["after"] == told["made"] and told["rows"] == [[1]]
