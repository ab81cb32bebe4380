"""What the dashboard's table panel asks of a logged table beyond a page of rows
(``routes_tables.py``; docs/tables.md, "In the dashboard"): the versions a key was logged at, a
group-by with counts and means, two tables joined on a key column, and the blobs of media cells.

Every parameter is bounded (pages of at most ``MAX_PAGE`` rows, ``MAX_GROUPS`` groups) and every
filter passes the table filter language (400 naming the problem). A cell's blob is served only if
the table under that key names it in a media column: a run's readers reach no other blob.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from tracklet.core.jsonsafe import json_safe
from tracklet.errors import TableError, TableNotFound
from tracklet.server.media_blobs import blob_response
from tracklet.server.models import TableColumn, TableRowsResponse, errors
from tracklet.server.routes_tables import (ASK_AGAIN, MAX_PAGE, MAX_VERSIONS, PAGE_VERSIONS, _records, chosen_records,
                                            fragment_source, scan, version_choice)
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1", tags=["read"])

_ERRORS = errors(400, 404)
_DIGEST = re.compile(r"[0-9a-f]{64}")
_LABEL = re.compile(r"[A-Za-z0-9._-]{1,256}")
_MODES = {1: "IMMUTABLE", 2: "MUTABLE", 3: "INCREMENTAL"}
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
         "wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg", "mp4": "video/mp4",
         "webm": "video/webm", "html": "text/html; charset=utf-8"}


class TableVersion(BaseModel):
    step: int
    log_mode: str
    rows: int  # rows of the version read at this step (INCREMENTAL: every increment up to it)
    time: float = 0.0  # when it was logged (seconds since the epoch): W&B's run_table artifacts are listed by it
    version: int = 0  # n of run-<id>-<key>:v<n> (docs/tables.md#lineage; core/run_tables.version_numbers)


class TableVersionsResponse(BaseModel):
    """The versions of a table key, as the run's logs list them (its own, then each part's):
    `version` is its run-table number, which `GET .../tables/{key}?version=` reads (`?step=`
    reads the last one logged at a step: a shared run's writers may log a key at one step).
    Without `limit` or `cursor`: the last 10,000, and `next_cursor` where versions logged later
    start (a live view asks from it). With either: a page from the first version (or from
    `cursor`), in that order, and `next_cursor`, where the next page starts: a page shorter than
    `limit` is the last for now, and its `next_cursor` where versions logged later start."""

    key: str
    versions: list[TableVersion]
    total: int  # versions logged (without `limit` or `cursor`, only the last 10,000 are listed)
    next_cursor: str | None = None  # pass as `cursor` for the next page (after the last 10,000: where later ones start)


class TableGroup(BaseModel):
    value: Any  # the group's value (null: rows without one)
    count: int
    means: dict[str, float | None]  # mean of each number column (NaN as "NaN")


class TableGroupsResponse(BaseModel):
    """Rows grouped by a column: largest groups first (at most 1,000; `total_groups` there are)."""

    key: str
    step: int
    by: str
    means_of: list[str]
    groups: list[TableGroup]
    total_groups: int
    rows: int


def _open(request: Request, project: str, run_id: str, key: str, step: int | None, version: int | None = None) -> Any:
    """Table ``key``'s version at ``step`` (default: the latest), or run-table version
    ``version`` by its record (a shared run's writers may log the key at one step)."""
    from tracklet.media.table_read import open_table

    records, step = chosen_records(request, project, run_id, key, step, version)
    try:
        return open_table(request.app.state.tracklet.root, records, key, step, **fragment_source(request, project))
    except (TableNotFound, TableError) as error:
        raise HTTPException(status_code=404, detail=str(error)) from None


def _rows(page: Any) -> tuple[list[TableColumn], list[list[Any]]]:
    names = page.column_names
    types = {field.name: str(field.type) for field in page.schema}
    rows = [json_safe([row[name] for name in names]) for row in page.to_pylist()]
    return [TableColumn(name=name, type=types[name]) for name in names], rows


@router.get("/runs/{project}/{run_id}/table-versions/{key:path}", response_model=TableVersionsResponse,
            responses=_ERRORS, summary="The versions (steps) a table key was logged at")
def get_table_versions(
    request: Request,
    project: str,
    run_id: str,
    key: str,
    limit: int | None = Query(None, ge=1, le=MAX_VERSIONS, description="Versions at most in a page (with a cursor, "
                              f"default {PAGE_VERSIONS:,}); without it or a cursor: the last 10,000"),
    cursor: str | None = Query(None, max_length=400, description="Where the page starts: the last page's "
                               "`next_cursor` (default: the first version)"),
) -> TableVersionsResponse:
    """One entry per log of `key`: its step, log mode and the rows the version at that step has.
    A page costs what it lists (and a bisection per writer), not every version of the key: the
    numbers come from the writers' (docs/tables.md#version-numbers)."""
    start = _cursor(cursor) if cursor is not None else None
    page = _records(request, project, run_id).versions_page(
        key, start, limit if limit is not None or cursor is None else PAGE_VERSIONS)
    if page is None:
        raise HTTPException(status_code=404, detail=f"no table {key!r} in this run")
    entries, total, following = page
    versions = [_version(tables, place, number, rows) for tables, place, number, rows in entries]
    return TableVersionsResponse(key=key, versions=versions, total=total, next_cursor=f"{following[1]}:{following[0]}")


def _version(tables: Any, place: int, number: int, rows: int) -> TableVersion:
    when = tables.times[place]
    return TableVersion(step=tables.steps[place], log_mode=_MODES.get(tables.modes[place], "IMMUTABLE"), rows=rows,
                        time=when if math.isfinite(when) else 0.0, version=number)


def _cursor(text: str) -> tuple[str, int]:
    """A ``next_cursor``: ``<n>:<label>``, the n-th entry of writer ``label`` (the run's own log: empty)."""
    at, colon, label = text.partition(":")
    if not colon or not at.isdigit() or len(at) > 18 or (label and not _LABEL.fullmatch(label)):
        raise HTTPException(status_code=400, detail=f"cursor {text!r} is not a table-versions next_cursor")
    return label, int(at)


@router.get("/runs/{project}/{run_id}/table-groups/{key:path}", response_model=TableGroupsResponse,
            responses={**_ERRORS, **ASK_AGAIN}, summary="A logged table's rows grouped by a column: counts and means")
def get_table_groups(
    request: Request,
    project: str,
    run_id: str,
    key: str,
    by: str = Query(..., max_length=1024, description="The column to group by"),
    step: int | None = Query(None, ge=0, le=2**63 - 1, description="The version at this step (default: the latest)"),
    filter: str | None = Query(None, max_length=4096, description="Only rows matching (the table filter language)"),
    limit: int = Query(100, ge=1, le=1000, description="Groups at most (the largest first)"),
    version: int | None = Query(None, ge=0, le=2**62, description="The version v<n> (`table-versions`' `version`), "
                                "instead of `step`"),
) -> TableGroupsResponse:
    from tracklet.media.table_views import group_by

    query = _open(request, project, run_id, key, step, version)
    if filter:
        query = query.filter(filter)
    grouped = group_by(query, by, limit)
    return TableGroupsResponse(
        key=key, step=query.step, by=by, means_of=grouped.means_of,
        groups=[TableGroup(value=json_safe(value), count=count, means=json_safe(means))
                for value, count, means in grouped.groups],
        total_groups=grouped.total_groups, rows=grouped.rows)


@router.get("/projects/{project}/table-join", response_model=TableRowsResponse, responses={**_ERRORS, **ASK_AGAIN},
            summary="Two logged tables joined on a key column, a page at a time")
def get_table_join(
    request: Request,
    project: str,
    a_run: str = Query(..., max_length=256, description="The left table's run"),
    a_key: str = Query(..., max_length=1024, description="The left table's key"),
    b_run: str = Query(..., max_length=256, description="The right table's run"),
    b_key: str = Query(..., max_length=1024, description="The right table's key"),
    on: str = Query(..., max_length=1024, description="The column both tables have to join on"),
    a_step: int | None = Query(None, ge=0, le=2**63 - 1, description="The left version's step (default: latest)"),
    b_step: int | None = Query(None, ge=0, le=2**63 - 1, description="The right version's step (default: latest)"),
    filter: str | None = Query(None, max_length=4096, description="On the joined columns: a.score > b.score"),
    sort: str | None = Query(None, max_length=1024, description="A joined column to sort by"),
    descending: bool = Query(False, description="Sort descending"),
    offset: int = Query(0, ge=0, le=2**62, description="Rows to skip"),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description="Rows at most"),
    a_version: int | None = Query(None, ge=0, le=2**62, description="The left table's version v<n>, instead of a_step"),
    b_version: int | None = Query(None, ge=0, le=2**62, description="The right table's version v<n>, instead of b_step"),
) -> TableRowsResponse:
    """A full outer join of table `a_key` of run `a_run` and `b_key` of `b_run` on column `on`:
    the key, then `a.<column>` and `b.<column>` for the others; rows in the left table's order,
    then the right's rows it lacks. `on` must be unique in at least one of the tables."""
    from tracklet.media.table_views import TableJoin

    left = _open(request, project, a_run, a_key, a_step, a_version)
    right = _open(request, project, b_run, b_key, b_step, b_version)
    joined = TableJoin(left, right, on)
    if filter:
        joined.filter(filter)
    if sort:
        joined.sort(sort, descending)
    total = joined.count()
    columns, rows = _rows(joined.page(offset, limit))
    types = joined.types
    columns = [TableColumn(name=column.name, type=types.get(column.name, column.type)) for column in columns]
    return TableRowsResponse(key=f"{a_key} ⋈ {b_key}", step=left.step, log_mode="IMMUTABLE", columns=columns,
                             total=total, offset=offset, rows=rows)


@router.get("/runs/{project}/{run_id}/table-blobs/{digest}", responses={**_ERRORS, **ASK_AGAIN, 200: {"content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    response_class=Response, summary="The file of a media cell of a logged table (by sha256)")
def get_table_blob(request: Request, project: str, run_id: str,
                   digest: str = Path(..., description="The sha256 of a media cell's file, thumbnail or mask"),
                   key: str = Query(..., max_length=1024, description="The table key whose cells name it"),
                   version: int | None = Query(None, ge=0, le=2**62, description="Only if version v<n> of the table "
                                               "(`table-versions`' `version`) names it"),
                   step: int | None = Query(None, ge=0, le=2**63 - 1, description="Only if the version at this step "
                                            "names it (`version` wins)")) -> Response:
    """A media cell's file, thumbnail or mask, only if table `key` names it: version `version`
    (or the version at `step`; for an INCREMENTAL table every increment up to it), else the key's
    latest version (every increment of an INCREMENTAL one) or one of its last 1,024 logs (newest
    first; an older version's cell needs `version`)."""

    if not _DIGEST.fullmatch(digest):
        raise HTTPException(status_code=400, detail="a media file is named by its sha256 (64 lowercase hex digits)")
    fmt = _cell_format(request, project, run_id, key, digest, step, version)
    if fmt is None:
        which = (f"its latest version and its last {MAX_BLOB_RECORDS:,} logs (pass `version` for an older one)"
                 if step is None and version is None else "that version")
        raise HTTPException(status_code=404, detail=f"table {key!r} of run {project}/{run_id} names no file {digest} "
                            f"in {which}")
    return blob_response(request, project, digest, _MIME.get(fmt, "application/octet-stream"), "media file",
                         missing="")


MAX_BLOB_RECORDS = 1024  # a media cell is looked for in the key's last logs this many (without a version)
BLOB_BATCH = 32  # records read and queried at a time, newest first


def _cell_format(request: Request, project: str, run_id: str, key: str, digest: str, step: int | None = None,
                 version: int | None = None) -> str | None:
    """The format of ``digest`` as a media cell of table ``key`` names it (``png`` for a thumbnail
    or a mask), or None: in the records of version ``version`` (or the version at ``step``), else
    of the key's latest version (whole: an INCREMENTAL table's increments, as the dashboard shows it
    without a version) and then its last ``MAX_BLOB_RECORDS`` logs, newest first, read and queried ``BLOB_BATCH`` at a
    time (one statement per media column over a batch's fragments not queried yet), stopping at the
    first that names it: a request holds one batch of records and reads at most what it searches,
    however many versions the key has."""
    from tracklet.media.table_read import open_every_version
    from tracklet.server.routes_tables import version_refs

    root = request.app.state.tracklet.root
    where = fragment_source(request, project)
    seen: set[str] = set()

    if step is None and version is None:
        def pick(index: Any) -> list[Any]:
            refs = index.last_of_key(key, MAX_BLOB_RECORDS)  # (only those made: newest first)
            if not refs:
                version_refs(index, key)  # TableNotFound naming the keys there are
            # The latest version first, whole: what the dashboard shows without a version (an
            # INCREMENTAL table's every increment, however many logs came since its first).
            latest = index.at_step(key, None)[::-1]
            taken = {(id(ref.tables), ref.offset) for ref in latest}
            return [*latest, *(ref for ref in refs if (id(ref.tables), ref.offset) not in taken)]
    else:
        chosen = version_choice(project, run_id, key, step, version)

        def pick(index: Any) -> list[Any]:
            return chosen(index)[::-1]

    def consume(records: list[Any]) -> str | None:
        query = open_every_version(root, records, key, seen=seen, **where)
        return None if query is None else _named(query, digest)

    try:
        found: str | None = scan(request, project, run_id, pick, consume, batch=BLOB_BATCH)
        return found
    except (TableNotFound, TableError) as error:
        raise HTTPException(status_code=404, detail=str(error)) from None


def _named(query: Any, digest: str) -> str | None:
    """The format of ``digest`` as a media cell of ``query``'s rows names it, or None: one
    statement per media column."""
    from tracklet.media.query_filter import quote_identifier

    media = [name for name, kind in query.schema.items()
             if kind.startswith("struct<") and "digest:" in kind and "thumbnail:" in kind]
    for name in media:
        inner, params = query.relation([name])
        column = quote_identifier(name)
        masks = ""  # an image cell's masks (PNGs), in cells written with them (media/table_cells.py)
        arguments = [digest, *params, digest, digest]
        if "masks:" in query.schema[name]:
            masks = f" OR EXISTS (SELECT 1 FROM (SELECT unnest(s.{column}.masks) AS m) WHERE m.digest = ?)"
            arguments.append(digest)
        sql = (f"SELECT CASE WHEN s.{column}.digest = ? THEN s.{column}.format ELSE 'png' END FROM ({inner}) AS s "
               f"WHERE s.{column}.digest = ? OR s.{column}.thumbnail = ?{masks} LIMIT 1")
        found = query.run_sql(sql, arguments, lambda relation: relation.fetchall())
        if found:
            return str(found[0][0] or "")
    return None
