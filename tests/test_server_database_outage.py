"""The server's PostgreSQL going away and coming back: requests meanwhile are answered 503 with
Retry-After and one line naming the database (clients retry those), never a 500 with a traceback,
and a run uploaded after the database is back arrives whole."""

from __future__ import annotations

import http.client
import socket
import json

import pytest
import sqlalchemy as sa

import tracklet
from serverproc import cli

def _set_connections(pg_url: str, allowed: bool) -> None:
    """Let the test's database take connections again, or refuse new ones and end the open ones:
    to the server, the database is unreachable until allowed again."""
    cluster, name = pg_url.rsplit("/", 1)
    engine = sa.create_engine(f"{cluster}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {str(allowed).lower()}"))
        if not allowed:
            connection.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
    engine.dispose()


def _get(url: str, path: str) -> tuple[int, dict[str, str], dict]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"{}")
    finally:
        connection.close()


def _record(root, project: str) -> str:
    run = tracklet.init(project=project, dir=str(root))
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()
    return run.id


def test_database_outage_is_503_with_retry_after_and_uploads_arrive_after(servers, pg_url, root):
    server = servers(store=pg_url)
    first = _record(root, "outage")
    synced = cli("--dir", str(root), "sync", f"outage/{first}", "--url", server.url)
    assert synced.returncode == 0, synced.stderr

    _set_connections(pg_url, allowed=False)
    try:
        status, headers, body = _get(server.url, "/api/v1/projects/outage/runs")
        assert status == 503, (status, body)
        assert int(headers["retry-after"]) > 0
        assert "database" in body["detail"] and "unavailable" in body["detail"], body
        # An upload meanwhile is refused the same way: the run stays complete locally.
        second = _record(root, "outage")
        refused = cli("--dir", str(root), "sync", f"outage/{second}", "--url", server.url, "--give-up-after", "2")
        assert refused.returncode != 0
        assert "Traceback" not in refused.stderr
    finally:
        _set_connections(pg_url, allowed=True)

    again = cli("--dir", str(root), "sync", f"outage/{second}", "--url", server.url)
    assert again.returncode == 0, again.stderr
    remote = tracklet.Api(base_url=server.url)
    try:
        assert list(remote.run(f"outage/{second}").history()["loss"]) == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    finally:
        remote.close()
    log = server.stderr_text()
    assert "the server's database is unavailable" in log
    # (the servers fixture fails the test on any "Exception in ASGI application" in the log)


def test_sqlite_query_defects_are_not_outages(tmp_path):
    """SQLite says OperationalError for a wrong query as for a locked file: only the second is 503."""
    from tracklet.store import is_unavailable

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}", connect_args={"timeout": 0})
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(sa.exc.OperationalError) as wrong:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT nothing FROM t"))
    assert not is_unavailable(wrong.value)
    holder = engine.connect()
    holder.exec_driver_sql("BEGIN EXCLUSIVE")
    try:
        other = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}", connect_args={"timeout": 0})
        with pytest.raises(sa.exc.OperationalError) as locked:
            with other.begin() as connection:
                connection.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert is_unavailable(locked.value)
        other.dispose()
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()


def test_a_store_that_cannot_be_opened_is_one_line_naming_it(postgres_url, tmp_path):
    """`tracklet server|admin|index --store URL` with nothing listening there, or a database that
    doesn't exist, or a password: one line naming the store (password hidden) and the reason, exit 2."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    nothing = f"postgresql://tracklet:s3cret@127.0.0.1:{port}/tracklet"
    missing = f"{postgres_url}/no_such_database"
    for url, reason in ((nothing, "Connection refused"), (missing, 'database "no_such_database" does not exist')):
        for args in (("admin", "--dir", str(tmp_path / "srv"), "--store", url, "users"),
                     ("server", "--dir", str(tmp_path / "srv"), "--store", url, "--port", "0"),
                     ("--dir", str(tmp_path / "data"), "index", "--store", url)):
            done = cli(*args)
            assert done.returncode == 2, (args, done.stderr)
            assert "Traceback" not in done.stderr and "s3cret" not in done.stderr, done.stderr
            (line,) = done.stderr.strip().splitlines()
            assert line.startswith("tracklet: error: cannot open the store at postgresql"), line
            assert reason in line, line
