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

import math
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


def table_edge(run: tuple[str, str], table: Any) -> Edge:
    """The ``logged`` edge of a ``TableLogged`` record of run ``run`` ((project, run_id)): the run
    table ``run-<id>-<key>`` (``core/run_tables.py``), its version numbered by ``edge_rows``."""
    ref = SimpleNamespace(project=run[0], name=table_artifact_name(run[1], table.key), type=RUN_TABLE_TYPE,
                          version=TABLE_VERSION, digest="", version_plus_one=table.version_plus_one)
    return ("logged", SimpleNamespace(artifact=ref, time=table.time, aliases=[]))


def edge_rows(run_pk: int, edges: list[Edge], after: int = 0, tables: dict[str, int] | None = None,
              taken: dict[str, set[int]] | None = None) -> list[dict[str, Any]]:
    """``artifact_edges`` rows for a run's edges, numbered on from its edge ``after``; a run
    table's log numbered by ``core/run_tables.version_numbers``: its writer's number where the
    run's table doesn't have it yet, else the lowest number it doesn't have. What the run has:
    ``tables`` (name -> a number below which it has all) and ``taken`` (name -> other numbers)."""
    table_refs = [message.artifact for _, message in edges
                  if message.artifact.version == TABLE_VERSION and message.artifact.type == RUN_TABLE_TYPE]
    numbers = iter(version_numbers(
        [SimpleNamespace(key=clean_text(ref.name, 128), version_plus_one=getattr(ref, "version_plus_one", 0))
         for ref in table_refs], {name: set(numbers) for name, numbers in (taken or {}).items()}, dict(tables or {})))
    rows = []
    for offset, (direction, message) in enumerate(edges, start=1):
        ref = message.artifact
        version = ref.version
        if version == TABLE_VERSION and ref.type == RUN_TABLE_TYPE:
            version = next(numbers)
        rows.append({
            "run_pk": run_pk, "seq": after + offset, "direction": direction,
            "project": clean_text(ref.project, 128), "name": clean_text(ref.name, 128), "version": version,
            "type": clean_text(ref.type, 128), "digest": clean_text(ref.digest, 64),
            "time": message.time if math.isfinite(message.time) else 0.0,
            "aliases": [clean_text(a, 128) for a in getattr(message, "aliases", [])][:100],
        })
    return rows


def write_edges(connection: sa.Connection, run_pk: int, edges: list[Edge]) -> None:
    """Append a run's new edges after its last stored one."""
    last = connection.execute(sa.select(sa.func.max(artifact_edges.c.seq))
                              .where(artifact_edges.c.run_pk == run_pk)).scalar() or 0
    tables: dict[str, int] = {}
    taken: dict[str, set[int]] = {}
    if any(message.artifact.version == TABLE_VERSION for _, message in edges):  # its run tables' versions
        logged_tables = (artifact_edges.c.run_pk == run_pk, artifact_edges.c.direction == "logged",
                         artifact_edges.c.type == RUN_TABLE_TYPE)
        names = sorted({clean_text(message.artifact.name, 128) for _, message in edges
                        if message.artifact.version == TABLE_VERSION})
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
    connection.execute(artifact_edges.insert(), edge_rows(run_pk, edges, last, tables, taken))


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
