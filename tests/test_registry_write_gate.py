"""The write gate of a server's SQLite database (server/write_gate.py): writers of the server and
of its delivery process queue for each other's write transactions and are woken when they end,
instead of meeting SQLite's lock and sleeping in its busy handler (an alias move's p99, issue #18).

Every engine here has ``busy_timeout=0``: a writer that met SQLite's write lock would fail at
once with "database is locked", so each write that succeeds beside another one waited at the
gate."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from serverproc import cli_process

from tracklet.server import write_gate
from tracklet.server.auth import Accounts
from tracklet.store import Store

REPO = Path(__file__).resolve().parents[1]


def _gated_store(tmp_path: Path) -> tuple[Store, write_gate.WriteGate]:
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=tmp_path)

    def no_busy_wait(connection: object, record: object) -> None:  # after the store's own pragmas
        connection.execute("PRAGMA busy_timeout=0")  # type: ignore[attr-defined]

    sa.event.listen(store.engine, "connect", no_busy_wait)
    store.engine.dispose()
    with store.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE moves (who TEXT)")
    gate = write_gate.install(store.engine)
    assert gate is not None
    return store, gate


def _write(engine: sa.Engine, who: str, failures: list[BaseException]) -> None:
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO moves (who) VALUES (:who)"), {"who": who})
    except BaseException as error:  # noqa: BLE001 - the test reports it
        failures.append(error)


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def _who(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return [row.who for row in connection.exec_driver_sql("SELECT who FROM moves ORDER BY rowid")]


# Another process's gated writer (the delivery process): it holds its write transaction open
# until told to commit.
_OTHER = """
import sys
import sqlalchemy as sa
from tracklet.server import write_gate
from tracklet.server.auth import Accounts
engine = sa.create_engine(sys.argv[1])
write_gate.install(engine)
with engine.begin() as connection:
    connection.exec_driver_sql("INSERT INTO moves (who) VALUES ('delivery process')")
    print("holding", flush=True)
    sys.stdin.readline()
"""


def test_a_server_write_waits_at_the_gate_for_the_delivery_processs_and_then_commits(tmp_path):
    store, gate = _gated_store(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", _OTHER, str(store.engine.url)], cwd=REPO, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline() == "holding\n"  # its transaction holds SQLite's write lock
        failures: list[BaseException] = []
        move = threading.Thread(target=_write, args=(store.engine, "server", failures))
        move.start()
        _until(lambda: gate.waits == 1 or not move.is_alive(), "the server's write never came to the gate")
        assert move.is_alive() and not failures  # waiting, not failed on SQLite's lock
        other.stdin.write("commit\n")
        other.stdin.flush()
        move.join(timeout=30)
        assert not failures, failures
        assert other.wait(timeout=30) == 0
    finally:
        other.kill()
    assert _who(store.engine) == ["delivery process", "server"]
    store.close()


def test_threads_of_the_server_queue_at_the_gate_and_a_rollback_lets_it_go(tmp_path):
    store, gate = _gated_store(tmp_path)
    holding, done = threading.Event(), threading.Event()

    def long_write() -> None:
        with store.engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO moves (who) VALUES ('first')")
            holding.set()
            done.wait(30)

    first = threading.Thread(target=long_write)
    first.start()
    assert holding.wait(30)
    failures: list[BaseException] = []
    second = threading.Thread(target=_write, args=(store.engine, "second", failures))
    second.start()
    _until(lambda: gate.waits == 1 or not second.is_alive(), "the second writer never came to the gate")
    assert second.is_alive() and not failures
    done.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert not failures, failures
    # A transaction that fails hands the gate back with its ROLLBACK: the next writer goes straight in.
    with pytest.raises(sa.exc.OperationalError), store.engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO moves (who) VALUES ('rolled back')")
        connection.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")
    _write(store.engine, "third", failures)
    assert not failures and gate.waits == 1
    assert _who(store.engine) == ["first", "second", "third"]
    store.close()


def test_a_thread_writing_on_a_second_connection_gets_sqlites_answer_not_a_deadlock(tmp_path):
    store, gate = _gated_store(tmp_path)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO moves (who) VALUES ('outer')")
        failures: list[BaseException] = []
        _write(store.engine, "inner", failures)  # this thread holds the gate: SQLite's lock decides
        assert len(failures) == 1 and "locked" in str(failures[0])
    assert gate.waits == 0 and _who(store.engine) == ["outer"]
    store.close()


def _waiting_for_flock(pid: int, inode: int) -> bool:
    """Whether process ``pid`` waits for a ``flock`` on the file with ``inode`` (``/proc/locks``:
    a blocked request is listed with ``->``)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields:
            rest = fields[fields.index("->") + 1:]
            if len(rest) >= 5 and rest[3] == str(pid) and rest[4].rsplit(":", 1)[-1] == str(inode):
                return True
    return False


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads /proc/locks (Linux)")
def test_tracklet_admin_on_a_live_servers_database_writes_through_its_write_gate(tmp_path):
    """`tracklet admin` writing to a server's SQLite database queues at the server's write gate
    like the server's own writers: while a server writer holds the gate, the admin's write waits
    for it (no busy-handler sleeps beside it), then commits."""
    root = tmp_path / "server"
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    Accounts(store).create_user("root", admin=True)  # the server's database, as its first admin leaves it
    gate = write_gate.install(store.engine)
    assert gate is not None and gate.acquire()  # a server writer's transaction
    with cli_process("admin", "--dir", str(root), "create-user", "bob", cwd=REPO) as waiting:
        try:
            inode = (root / f"store.sqlite{write_gate.SUFFIX}").stat().st_ino
            deadline = time.monotonic() + 300  # the CLI's start on a loaded machine
            while not _waiting_for_flock(waiting.pid, inode) and waiting.poll() is None:
                assert time.monotonic() < deadline, "tracklet admin never came to the gate"
                time.sleep(0.01)
            assert waiting.poll() is None, "tracklet admin wrote while a server writer held the gate"
        finally:
            gate.release()
        out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    assert out.startswith("tlk_")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT name FROM users ORDER BY name").scalars().all() == ["bob", "root"]
    store.close()
