"""Read API for a run's tables (``tracklet.Table``, docs/tables.md): the keys, and a page of a
table version filtered and sorted by DuckDB over its Parquet fragments (``RecordedRun.table``).

The filter is the table filter language (``tracklet/media/query_filter.py``): parsed against the
table's columns and compiled with bound parameters, bounded in size; a bad one is 400 naming the
problem. Tables are read from the server's data root: its record log copies and, for fragments,
its artifacts' blob store (``media_blobs.py``: on a tracking server only fragments the run's project
holds, which ``tracklet sync`` and online mode send; ``tracklet ui`` serves the local data root,
where both are). A run's
table records are folded out of its logs (a shared run's every writer's) and kept, and a log that
grew is read on from where the last request stopped (``log_fold.LogFolds``), so a live run's table panel polls cheaply.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Query, Request

from tracklet.core.jsonsafe import json_safe
from tracklet.errors import TableError, TableNotFound
from tracklet.server.log_fold import LogFolds, run_fold
from tracklet.server.media_blobs import media_blobs
from tracklet.server.models import TableChart, TableColumn, TableKeysResponse, TableRowsResponse, errors
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1/runs", tags=["read"])

_ERRORS = errors(400, 404)
MAX_PAGE = 1000


def _fold_tables(records: list[Any], record: Any) -> None:
    if record.WhichOneof("kind") == "table_logged":
        records.append(record.table_logged)


_FOLDS: LogFolds[list[Any]] = LogFolds(list, _fold_tables, size=64)  # runs kept


def _records(request: Request, project: str, run_id: str) -> list[Any]:
    """The run's table records, as the log reader lists them: its own log's, then each shared-run
    part's by label (docs/shared-runs.md); 404 unless the server knows the run (its store has it:
    a file under the root alone is not enough, so access follows the project's members)."""
    # (a copy: the folds go on as the logs grow; every writer's log read on from where it stopped)
    return run_fold(_FOLDS, request, project, run_id,
                    lambda run: [record for records in run.writers.values() for record in records])


def fragment_source(request: Request, project: str) -> dict[str, Any]:
    """Where a query of ``project``'s tables finds its Parquet fragments (``open_table``'s
    ``locate``/``where``): the server's blob store, only fragments the project holds."""
    blobs = media_blobs(request)
    return {"locate": lambda digest: blobs.local_file(project, digest),
            "where": f"the server's blob store for project {project} (not uploaded yet? `tracklet sync` sends it)"}


@router.get("/{project}/{run_id}/tables", response_model=TableKeysResponse, responses=_ERRORS,
            summary="The keys a run logged tables under")
def get_table_keys(request: Request, project: str, run_id: str) -> TableKeysResponse:
    from tracklet.media.table_read import table_keys

    return TableKeysResponse(keys=table_keys(_records(request, project, run_id)))


@router.get("/{project}/{run_id}/tables/{key:path}", response_model=TableRowsResponse, responses=_ERRORS,
            summary="A page of a logged table, filtered and sorted")
def get_table(
    request: Request,
    project: str,
    run_id: str,
    key: str,
    step: int | None = Query(None, ge=0, le=2**63 - 1, description="The version at this step (default: the latest)"),
    filter: str | None = Query(None, max_length=4096, description="e.g. score > 0.9 and label = 'cat' "
                               "(docs/tables.md: the filter language)"),
    sort: str | None = Query(None, max_length=1024, description="A column to sort by"),
    descending: bool = Query(False, description="Sort descending"),
    offset: int = Query(0, ge=0, le=2**62, description="Rows to skip"),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description="Rows at most"),
    version: int | None = Query(None, ge=0, le=2**62, description="The version v<n> of run table run-<id>-<key> "
                                "(docs/tables.md#lineage), instead of `step`"),
) -> TableRowsResponse:
    """Rows `offset` to `offset + limit` of the table logged under `key` (its version at `step`,
    or run-table version `version`; for an INCREMENTAL table every increment up to it), after
    `filter` and `sort` (ties and no sort: the order rows were added; nulls last)."""
    from tracklet.core.run_tables import records_of_version
    from tracklet.media.table_read import open_table

    records = _records(request, project, run_id)
    if version is not None:  # by its record: a shared run's writers may log the key at one step
        chosen = records_of_version(records, key, version)
        if chosen is None:
            raise HTTPException(status_code=404, detail=f"no version v{version} of table {key!r} in this run")
        records, step = chosen, None
    try:
        query = open_table(request.app.state.tracklet.root, records, key, step, **fragment_source(request, project))
    except TableNotFound as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
    except TableError as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
    if filter:
        query = query.filter(filter)  # FilterSyntaxError: a ValueError, 400 naming the problem
    if sort:
        query = query.sort(sort, descending=descending)
    total = query.count()
    page = query.page(offset, limit).to_arrow()
    names = page.column_names
    rows = [json_safe([row[name] for name in names]) for row in page.to_pylist()]
    schema = query.schema
    return TableRowsResponse(key=key, step=query.step, log_mode=query.log_mode,  # type: ignore[arg-type]
                             columns=[TableColumn(name=name, type=schema[name]) for name in names],
                             total=total, offset=offset, rows=rows,
                             chart=TableChart(**query.chart) if query.chart else None)
