"""A throwaway PostgreSQL cluster (Debian's postgresql package: trust auth, fsync off, C locale)
on a free loopback port: conftest.py's ``postgres_url`` fixture and ``benchmarks/attacks.py``."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from serverproc import _free_port


class Unavailable(Exception):
    """PostgreSQL can't be started here (not installed, or root without a 'postgres' user)."""


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster, yield its URL without a database, stop and remove it after.
    ``Unavailable`` if it can't run here; ``RuntimeError`` (with its log) if it fails to start."""
    initdb = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        raise Unavailable("PostgreSQL is not installed (apt-get install postgresql)")
    bin_dir = initdb.parent
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no 'postgres' user to run PostgreSQL as") from None
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not under a private tmp dir: the server runs as user postgres.
    base = Path(tempfile.mkdtemp(prefix="tracklet-pg-"))
    data, log = base / "data", base / "server.log"
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    port = _free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=60)

    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
           "--locale=C", "--no-sync")
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
           f"-c listen_addresses=127.0.0.1 -c port={port} -c fsync=off -c unix_socket_directories={base}",
           "start")
    except subprocess.CalledProcessError as error:
        server_log = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {error.stderr}\n{server_log}") from None
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        try:
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(base, ignore_errors=True)


def create_database(cluster_url: str, name: str, *, drop: tuple[str, ...] = ()) -> str:
    """A new, empty database ``name`` in the cluster; its URL. ``drop``: databases to drop first (with
    whatever connections to them are still open).

    Copied from the template as files (PostgreSQL 15's default writes the template's ~7 MB into the
    WAL too); a test suite that drops each database soon after never has its files written to disk,
    where one that keeps hundreds (~10 MB each) spent seconds removing them at its end."""
    import sqlalchemy as sa

    admin = sa.create_engine(f"{cluster_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        version = connection.dialect.server_version_info
        for old in drop:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {old}" + (" WITH (FORCE)" if version >= (13,) else "")))
        strategy = " STRATEGY FILE_COPY" if version >= (15,) else ""
        connection.execute(sa.text(f"CREATE DATABASE {name}{strategy}"))
    admin.dispose()
    return f"{cluster_url}/{name}"


def drop_database(cluster_url: str, name: str) -> None:
    """Drop database ``name`` of the cluster, with whatever connections to it are still open."""
    import sqlalchemy as sa

    admin = sa.create_engine(f"{cluster_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        force = " WITH (FORCE)" if connection.dialect.server_version_info >= (13,) else ""
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{force}"))
    admin.dispose()
