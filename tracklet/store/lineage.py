"""Artifact lineage in the store: ``artifact_edges``, one row per ``ArtifactLogged`` (``logged``:
run -> version) or ``ArtifactUsed`` (``used``: version -> run) record of a run's log, numbered in
log order like alerts, and one ``logged`` edge per ``TableLogged`` record: a run table, which
W&B users know as artifact ``run-<id>-<key>`` of type ``run_table`` (``core/run_tables.py``),
numbered ``v0``, ``v1``... per name and run by its writer's number or as the run logged the key
(``core/run_tables.version_numbers``: the log reader's rule). A run that used one has an
``ArtifactUsed`` record naming it (``used``). Derived from the record logs (``tracklet index
--rebuild`` rebuilds it); artifact versions themselves live in the artifact registry
(docs/artifacts.md), run tables in their run's log (docs/tables.md#lineage)."""

from __future__ import annotations

import json
import math
import operator
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from tracklet.core.run_tables import RUN_TABLE_TYPE, table_artifact_name, version_numbers
from tracklet.store.schema import Json, metadata, projects, runs
from tracklet.store.text import fit, store_text

artifact_edges = sa.Table(
    "artifact_edges",
    metadata,
    sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("direction", sa.String(8), nullable=False),  # "logged" or "used"
    sa.Column("project", sa.String(128), nullable=False),  # the artifact's project
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(128), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("aliases", Json, nullable=False, default=list),
    sa.Index("ix_artifact_edges_version", "project", "name", "version"),
)


def clean_text(text: str, length: int) -> str:
    return fit(store_text(text), length)


Edge = tuple[str, Any]  # (direction, the ArtifactLogged or ArtifactUsed message)
EDGE_KINDS = frozenset({"artifact_logged", "artifact_used"})


def edge_of(kind: str, record: Any) -> Edge:
    message = record.artifact_logged if kind == "artifact_logged" else record.artifact_used
    return ("logged" if kind == "artifact_logged" else "used", message)


TABLE_VERSION = -1  # a table edge's version until ``edge_rows`` numbers it


def table_edge(run: tuple[str, str], table: Any, names: dict[str, str] | None = None) -> Edge:
    """The ``logged`` edge of a ``TableLogged`` record of run ``run`` ((project, run_id)): the run
    table ``run-<id>-<key>`` (``core/run_tables.py``), its version numbered by ``edge_rows``.
    ``names``: key -> name, the names a fold made already (a table logged every step has one)."""
    if names is None:
        name = table_artifact_name(run[1], table.key)
    else:
        found = names.get(table.key)
        name = names[table.key] = table_artifact_name(run[1], table.key) if found is None else found
    ref = SimpleNamespace(project=run[0], name=name, type=RUN_TABLE_TYPE,
                          version=TABLE_VERSION, digest="", version_plus_one=table.version_plus_one)
    return ("logged", SimpleNamespace(artifact=ref, time=table.time, aliases=[]))


def edge_rows(run_pk: int, edges: list[Edge], after: int = 0, tables: dict[str, int] | None = None,
              taken: dict[str, set[int]] | None = None) -> list[dict[str, Any]]:
    """``artifact_edges`` rows for a run's edges, numbered on from its edge ``after``; a run
    table's log numbered by ``core/run_tables.version_numbers``: its writer's number where the
    run's table doesn't have it yet, else the lowest number it doesn't have. What the run has:
    ``tables`` (name -> a number below which it has all) and ``taken`` (name -> other numbers),
    both updated with the numbers given (``version_numbers``), so a caller can keep them for the
    run's next edges (``TableNumbers``)."""
    texts: dict[tuple[str, int], str] = {}  # one clean_text per distinct string (a table's name, logged 1,000s of times)

    def clean(text: str, length: int) -> str:
        found = texts.get((text, length))
        if found is None:
            found = texts[(text, length)] = clean_text(text, length)
        return found

    table_refs = [message.artifact for _, message in edges
                  if message.artifact.version == TABLE_VERSION and message.artifact.type == RUN_TABLE_TYPE]
    numbers = iter(version_numbers(
        [SimpleNamespace(key=clean(ref.name, 128), version_plus_one=getattr(ref, "version_plus_one", 0))
         for ref in table_refs], {} if taken is None else taken, {} if tables is None else tables))
    rows = []
    for offset, (direction, message) in enumerate(edges, start=1):
        ref = message.artifact
        version = ref.version
        if version == TABLE_VERSION and ref.type == RUN_TABLE_TYPE:
            version = next(numbers)
        aliases = getattr(message, "aliases", [])
        rows.append({
            "run_pk": run_pk, "seq": after + offset, "direction": direction,
            "project": clean(ref.project, 128), "name": clean(ref.name, 128), "version": version,
            "type": clean(ref.type, 128), "digest": clean(ref.digest, 64),
            "time": message.time if math.isfinite(message.time) else 0.0,
            "aliases": [clean_text(a, 128) for a in aliases][:100] if aliases else [],
        })
    return rows


class TableNumbers:
    """What one run has of its run tables' version numbers (``edge_rows``' ``tables`` and ``taken``),
    for the names in ``loaded`` (the others: not read yet), as of the run's edge ``last``: kept by an
    indexing pass from one chunk of a run's log to the next, so each chunk reads from the store
    only the names it hasn't seen (a run logging a table every step read all its earlier versions
    again each chunk, a cost growing with what was indexed). ``write_edges`` trusts it only while
    the run's last edge is still ``last`` (a chunk rolled back, a run forgotten: read again)."""

    __slots__ = ("last", "tables", "taken", "loaded")

    def __init__(self) -> None:
        self.last = 0
        self.tables: dict[str, int] = {}
        self.taken: dict[str, set[int]] = {}
        self.loaded: set[str] = set()

    def note(self, rows: list[dict[str, Any]]) -> None:
        """Take in the rows written (their numbers, a logged ``run_table`` edge's explicit version too)."""
        for row in rows:
            if row["direction"] == "logged" and row["type"] == RUN_TABLE_TYPE and row["name"] in self.loaded:
                self.taken.setdefault(row["name"], set()).add(int(row["version"]))
        for name, numbers in self.taken.items():  # v0..v<n-1> all had: kept as n, not n numbers
            start = self.tables.get(name, 0)
            while start in numbers:
                numbers.discard(start)
                start += 1
            if start:
                self.tables[name] = start
        if rows:
            self.last = rows[-1]["seq"]


def new_run_numbers(rows: list[dict[str, Any]]) -> TableNumbers:
    """A new run's ``TableNumbers`` after its first edges ``rows`` (``edge_rows`` with no earlier edges):
    every name is known, the run had no other edges."""
    known = TableNumbers()
    known.loaded.update(row["name"] for row in rows if row["type"] == RUN_TABLE_TYPE)
    known.note(rows)
    return known


def write_edges(connection: sa.Connection, run_pk: int, edges: list[Edge],
                numbers: dict[int, TableNumbers] | None = None) -> None:
    """Append a run's new edges after its last stored one. ``numbers``: what an indexing pass keeps
    of its runs' run table numbers (``TableNumbers``), read and updated here."""
    last = connection.execute(sa.select(sa.func.max(artifact_edges.c.seq))
                              .where(artifact_edges.c.run_pk == run_pk)).scalar() or 0
    known = numbers.pop(run_pk, None) if numbers is not None else None
    if known is None or known.last != last:
        known = TableNumbers()
        known.last = last
    tables, taken = known.tables, known.taken
    if any(message.artifact.version == TABLE_VERSION for _, message in edges):  # its run tables' versions
        logged_tables = (artifact_edges.c.run_pk == run_pk, artifact_edges.c.direction == "logged",
                         artifact_edges.c.type == RUN_TABLE_TYPE)
        names = sorted({clean_text(message.artifact.name, 128) for _, message in edges
                        if message.artifact.version == TABLE_VERSION} - known.loaded)
        for name in names:  # read whole below (what note() kept of an unread name was partial)
            tables.pop(name, None)
            taken.pop(name, None)
        gapped = []
        for start in range(0, len(names), EDGE_CHUNK):
            for name, top, count in connection.execute(
                    sa.select(artifact_edges.c.name, sa.func.max(artifact_edges.c.version),
                              sa.func.count(sa.distinct(artifact_edges.c.version)))
                    .where(*logged_tables, artifact_edges.c.name.in_(names[start:start + EDGE_CHUNK]))
                    .group_by(artifact_edges.c.name)):
                if int(count) == int(top) + 1:  # v0..v<top>, every one: the usual run
                    tables[name] = int(top) + 1
                else:  # a gap (a writer's number ahead of the others, a writer killed after taking one)
                    gapped.append(name)
        for start in range(0, len(gapped), EDGE_CHUNK):  # only these names' numbers are read
            for name, number in connection.execute(
                    sa.select(artifact_edges.c.name, artifact_edges.c.version)
                    .where(*logged_tables, artifact_edges.c.name.in_(gapped[start:start + EDGE_CHUNK]))):
                taken.setdefault(name, set()).add(int(number))
        known.loaded.update(names)
    rows = edge_rows(run_pk, edges, last, tables, taken)
    insert_edges(connection, rows)
    if numbers is not None:
        known.note(rows)
        numbers[run_pk] = known


_EDGE_COLUMNS = tuple(column.name for column in artifact_edges.columns)
_PLAIN_EDGE = operator.itemgetter(*(name for name in _EDGE_COLUMNS if name != "aliases"))
_SQLITE_INSERT = (f"INSERT INTO artifact_edges ({', '.join(name for name in _EDGE_COLUMNS if name != 'aliases')}, "
                  f"aliases) VALUES ({', '.join('?' for _ in _EDGE_COLUMNS)})")


def insert_edges(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert ``edge_rows``' rows. On SQLite as the driver takes them (a tuple a row, the aliases
    serialized as the engine's JSON type does): SQLAlchemy processing each row's parameters was
    most of a first indexing's edge cost for a run logging a table every step (a row a log)."""
    if not rows:
        return
    if connection.dialect.name != "sqlite":
        connection.execute(artifact_edges.insert(), rows)
        return
    dumps = connection.dialect._json_serializer or json.dumps
    empty = dumps([])
    connection.exec_driver_sql(_SQLITE_INSERT, [
        (*_PLAIN_EDGE(row), dumps(row["aliases"]) if row["aliases"] else empty) for row in rows])


def run_table_last(engine: sa.Engine, project: str, name: str) -> int | None:
    """The last version of run table ``name`` of ``project`` the store has a ``logged`` edge of
    (None: none), from the runs' ``TableLogged`` records."""
    stmt = (sa.select(sa.func.max(artifact_edges.c.version))
            .where(artifact_edges.c.project == project, artifact_edges.c.name == name,
                   artifact_edges.c.direction == "logged", artifact_edges.c.type == RUN_TABLE_TYPE))
    with engine.connect() as connection:
        last = connection.execute(stmt).scalar()
    return None if last is None else int(last)


def runs_with_edge(engine: sa.Engine, project: str, name: str, version: int, direction: str) -> list[tuple[str, str]]:
    """(project, run_id) of the runs with a ``direction`` edge to the version, in time order."""
    stmt = (
        sa.select(projects.c.name, runs.c.run_id, sa.func.min(artifact_edges.c.time).label("first"))
        .select_from(artifact_edges.join(runs, runs.c.id == artifact_edges.c.run_pk)
                     .join(projects, projects.c.id == runs.c.project_id))
        .where(artifact_edges.c.project == project, artifact_edges.c.name == name,
               artifact_edges.c.version == version, artifact_edges.c.direction == direction,
               runs.c.deleted.is_(False))
        .group_by(projects.c.name, runs.c.run_id)
        .order_by("first", runs.c.run_id)
    )
    with engine.connect() as connection:
        return [(row[0], row[1]) for row in connection.execute(stmt)]


def edges_of_run(engine: sa.Engine, project: str, run_id: str, direction: str) -> list[dict[str, Any]]:
    """The artifact versions a run logged or used, in the order it did, each once (a run that
    used one version twice has two edges: the first is kept): ``{"project", "name", "version",
    "type", "time"}``."""
    stmt = (
        sa.select(artifact_edges.c.project, artifact_edges.c.name, artifact_edges.c.version, artifact_edges.c.type,
                  artifact_edges.c.time)
        .select_from(artifact_edges.join(runs, runs.c.id == artifact_edges.c.run_pk)
                     .join(projects, projects.c.id == runs.c.project_id))
        .where(projects.c.name == project, runs.c.run_id == run_id, artifact_edges.c.direction == direction)
        .order_by(artifact_edges.c.seq)
    )
    with engine.connect() as connection:
        rows = [dict(row) for row in connection.execute(stmt).mappings()]
    seen: set[tuple[str, str, int]] = set()
    distinct = []
    for row in rows:
        key = (row["project"], row["name"], row["version"])
        if key not in seen:
            seen.add(key)
            distinct.append(row)
    return distinct


EDGE_CHUNK = 200  # runs or versions per statement (bound parameters stay far below every backend's limit)


def edges_touching(engine: sa.Engine, run_keys: list[tuple[str, str]], versions: list[tuple[str, str, int]],
                   limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The edges of the runs ``run_keys`` ((project, run_id)) and of the versions ``versions``
    ((project, name, version)), deleted runs left out, in time order: ``{"run_project", "run_id",
    "run_name", "run_state", "direction", "project", "name", "version", "type", "digest", "time",
    "aliases"}`` each, a run's repeated use of one version once. At most ``limit`` edges; the bool
    says whether more were left out. A lineage graph asks this once per hop with its frontier.
    A run's logs of run tables (``type`` ``run_table``) are among a run's edges only where some
    run used that version: a run that logs a table every epoch has as many versions, and those no
    run read are its tables, not lineage (they would crowd out its artifacts' edges)."""
    columns = (projects.c.name.label("run_project"), runs.c.run_id, runs.c.name.label("run_name"),
               runs.c.state.label("run_state"), artifact_edges.c.direction, artifact_edges.c.project,
               artifact_edges.c.name, artifact_edges.c.version, artifact_edges.c.type, artifact_edges.c.digest,
               artifact_edges.c.time, artifact_edges.c.aliases)
    joined = (artifact_edges.join(runs, runs.c.id == artifact_edges.c.run_pk)
              .join(projects, projects.c.id == runs.c.project_id))
    users = artifact_edges.alias("users")
    read = sa.exists().where(users.c.project == artifact_edges.c.project, users.c.name == artifact_edges.c.name,
                             users.c.version == artifact_edges.c.version, users.c.direction == "used")
    lineage_edge = sa.or_(artifact_edges.c.type != RUN_TABLE_TYPE, artifact_edges.c.direction == "used", read)
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    more = False
    with engine.connect() as connection:
        conditions = [
            *(sa.and_(sa.tuple_(projects.c.name, runs.c.run_id).in_(run_keys[start:start + EDGE_CHUNK]), lineage_edge)
              for start in range(0, len(run_keys), EDGE_CHUNK)),
            *(sa.tuple_(artifact_edges.c.project, artifact_edges.c.name, artifact_edges.c.version)
              .in_(versions[start:start + EDGE_CHUNK]) for start in range(0, len(versions), EDGE_CHUNK)),
        ]
        for condition in conditions:
            stmt = (sa.select(*columns).select_from(joined).where(condition, runs.c.deleted.is_(False))
                    .order_by(artifact_edges.c.time, artifact_edges.c.run_pk, artifact_edges.c.seq)
                    .limit(limit + 1))
            rows = connection.execute(stmt).mappings().all()
            more = more or len(rows) > limit
            for row in rows:
                key = (row["run_project"], row["run_id"], row["direction"], row["project"], row["name"],
                       row["version"])
                if key not in found:
                    found[key] = dict(row)
    edges = sorted(found.values(), key=lambda edge: (edge["time"], edge["run_project"], edge["run_id"]))
    return edges[:limit], more or len(edges) > limit
