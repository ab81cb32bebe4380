"""A server on SQLite checkpoints its write-ahead log in a thread of its own, never in a request's
COMMIT (server/wal_checkpoint.py: the checkpoint about one alias move in 35-50 paid), unless
``TRACKLET_SERVER_WAL_CHECKPOINT=commit``; the log stays bounded while writes keep coming (a
PASSIVE checkpoint alone never restarts it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from tracklet.server import wal_checkpoint
from tracklet.server.wal_checkpoint import RESTART_FRAMES, Checkpointer, wanted
from tracklet.store import Store


def _write_pages(engine: sa.Engine, rows: int) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO filler (blob) VALUES (:blob)"),
                           [{"blob": b"x" * 3000} for _ in range(rows)])  # about a page each


def test_sqlite_servers_checkpoint_in_a_thread_unless_asked_for_sqlites_own(store_url, tmp_path, monkeypatch):
    store = Store(store_url, root=tmp_path)
    monkeypatch.delenv("TRACKLET_SERVER_WAL_CHECKPOINT", raising=False)
    assert wanted(store.engine) == store_url.startswith("sqlite")
    monkeypatch.setenv("TRACKLET_SERVER_WAL_CHECKPOINT", "commit")  # SQLite's own, in the COMMIT
    assert not wanted(store.engine)
    store.close()


def test_commits_never_checkpoint_and_the_checkpointer_keeps_the_log_bounded(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=tmp_path)
    wal = Path(f"{tmp_path / 'store.sqlite'}-wal")
    with store.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE filler (id INTEGER PRIMARY KEY, blob BLOB)"))
    checkpointer = Checkpointer(store.engine)  # not started: each checkpoint below is called
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    _write_pages(store.engine, 1500)  # past SQLite's 1,000-page autocheckpoint: no commit copied it back
    assert _backfilled(store.engine) == 0  # nothing checkpointed by the commits
    assert checkpointer.pending() >= 1500  # what the thread looks at before it checkpoints
    assert checkpointer.checkpoint()[2] >= 1500
    assert checkpointer.pending() == 0
    for _ in range(3):  # writes keep coming between checkpoints: PASSIVE copies, RESTART bounds the file
        _write_pages(store.engine, RESTART_FRAMES // 2)
        checkpointer.checkpoint()
        _write_pages(store.engine, RESTART_FRAMES // 2 + 100)
        checkpointer.checkpoint()
    _write_pages(store.engine, 10)
    assert wal.stat().st_size <= wal_checkpoint.JOURNAL_SIZE_LIMIT + 64 * 4096
    store.close()


def _backfilled(engine: sa.Engine) -> int:
    """Frames the log's checkpoints copied so far, read without checkpointing (asking SQLite would
    checkpoint): the WAL index's nBackfill, at byte 96 of the -shm file (SQLite's file format)."""
    shm = Path(str(engine.url.database) + "-shm").read_bytes()
    return int.from_bytes(shm[96:100], "little")


def _locks_on(path: Path) -> list[str]:
    """This process's POSIX locks on ``path`` (``/proc/locks``: the file's device and inode)."""
    stat = path.stat()
    inode = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    return sorted(line.split(":", 1)[1].strip() for line in Path("/proc/locks").read_text().splitlines()
                  if f" {os.getpid()} " in line and f" {inode} " in line)


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="/proc/locks is Linux's")
def test_looking_at_the_log_keeps_sqlites_locks_on_its_index(tmp_path):
    """Closing any descriptor of a file drops every POSIX lock the process holds on it: a look at the
    WAL index that opened and closed the -shm file dropped SQLite's own lock on it, so the delivery
    process, opening the database, took itself for the first, truncated the index, and the server
    died of SIGBUS (benchmarks/registry_move.py, 3 runs in 4). The look keeps SQLite's locks, also
    after SQLite made a new index file."""
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=tmp_path)
    with store.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE filler (id INTEGER PRIMARY KEY, blob BLOB)"))
    checkpointer = Checkpointer(store.engine)
    shm = Path(f"{tmp_path / 'store.sqlite'}-shm")
    for _ in range(2):  # the second time: SQLite removed the index at its last close and made it anew
        with store.engine.connect() as connection:  # a connection SQLite holds its index locks through
            _write_pages(store.engine, 10)
            held = _locks_on(shm)
            assert held, "SQLite holds no lock on its WAL index: nothing to check"
            for _ in range(3):
                assert checkpointer.pending() >= 0
            assert _locks_on(shm) == held
        store.engine.dispose()
    store.close()
