"""``TableQuery``: a logged table version, queried lazily with DuckDB over its Parquet fragments.

``run.table("preds")`` returns one; ``.filter(...)``, ``.sort(...)``, ``.page(...)`` and
``.select(...)`` return new ones without reading anything; ``len()``, ``.to_arrow()`` and
``.to_pandas()`` run one statement. DuckDB reads the fragments with ``read_parquet`` (only the
columns asked for; filters pushed into the scan, where row groups' min/max statistics skip what a
filter excludes), sorts with a top-N when paging, and returns Arrow.

Row order: without ``sort`` rows come in the order they were added (across INCREMENTAL
increments too); with ``sort``, rows that tie keep that order, so pages never overlap or skip.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

from tracklet.core import forksafe
from tracklet.errors import FilterSyntaxError, TableError
from tracklet.media.query_filter import check_sort_column, compile_filter, quote_identifier
from tracklet.media.table_arrow import ROW_COLUMN

_FILE = "__tracklet_file"
_BASE = "__tracklet_base"
ORDER_COLUMN = "__tracklet_order"  # relation(): the order rows were added
MAX_PAGE = 1_000_000  # rows one page may ask for (to_arrow() without page() has no limit)


@dataclasses.dataclass(frozen=True)
class Fragment:
    """One Parquet fragment of a table version: its file and the number of rows before it."""

    path: str
    base: int
    rows: int


@dataclasses.dataclass(frozen=True)
class TableSource:
    """What one logged table version is: its fragments, in row order, and its columns."""

    key: str
    step: int
    log_mode: str
    fragments: tuple[Fragment, ...]
    columns: tuple[tuple[str, str], ...]  # (name, Arrow type), in column order
    chart: Any = None  # the ``table_chart.TableChart`` the version was logged with, if any

    @property
    def rows(self) -> int:
        return sum(fragment.rows for fragment in self.fragments)


class TableQuery:
    """A lazy view of a logged table: filter, sort, page, select; then ``len()``, ``to_arrow()``,
    ``to_pandas()``."""

    def __init__(self, source: TableSource, *, where: tuple[tuple[str, tuple[Any, ...]], ...] = (),
                 order: tuple[tuple[str, bool], ...] = (), offset: int = 0, limit: int | None = None,
                 selected: tuple[str, ...] | None = None) -> None:
        self._source = source
        self._where = where
        self._order = order
        self._offset = offset
        self._limit = limit
        self._selected = selected
        self._types = dict(source.columns)

    def _with(self, **changes: Any) -> "TableQuery":
        fields: dict[str, Any] = dict(where=self._where, order=self._order, offset=self._offset, limit=self._limit,
                                      selected=self._selected)
        fields.update(changes)
        return TableQuery(self._source, **fields)

    # ------------------------------------------------------------ building

    @property
    def key(self) -> str:
        return self._source.key

    @property
    def step(self) -> int:
        """The step of the version read (for INCREMENTAL: of its last increment)."""
        return self._source.step

    @property
    def log_mode(self) -> str:
        return self._source.log_mode

    @property
    def chart(self) -> dict[str, Any] | None:
        """The chart this version was logged with (``wandb.plot.*``: ``kind``, ``title``, ``x``,
        ``y``, ``series``, ``value``, ...; docs/wandb-compat.md#charts), or None."""
        chart = self._source.chart
        return None if chart is None else chart.to_dict()

    @property
    def columns(self) -> list[str]:
        """The columns a result has (all, or those ``select`` chose)."""
        return list(self._selected) if self._selected is not None else [name for name, _ in self._source.columns]

    @property
    def schema(self) -> dict[str, str]:
        """Column name -> Arrow type, as logged."""
        return dict(self._source.columns)

    def filter(self, expression: str) -> "TableQuery":
        """Rows matching ``expression`` (``score > 0.9 and label = 'cat'``; the grammar is in
        ``tracklet.media.query_filter``); several filters all apply. A bad filter raises
        ``FilterSyntaxError`` (a ``ValueError``) naming the problem."""
        sql, params = compile_filter(expression, self._types)
        return self._with(where=self._where + ((sql, tuple(params)),))

    def sort(self, column: str, descending: bool = False) -> "TableQuery":
        """Rows ordered by ``column`` (nulls last either way; ties keep the order rows were added)."""
        check_sort_column(column, self._types)
        return self._with(order=((column, bool(descending)),))

    def page(self, offset: int = 0, limit: int = 100) -> "TableQuery":
        """Rows ``offset`` to ``offset + limit`` of the (filtered, sorted) table."""
        if not isinstance(offset, int) or not isinstance(limit, int) or offset < 0 or limit < 0:
            raise FilterSyntaxError(f"page(offset, limit) takes non-negative ints; got ({offset!r}, {limit!r})", "", 0)
        if limit > MAX_PAGE:
            raise FilterSyntaxError(f"a page holds at most {MAX_PAGE} rows; got limit={limit}", "", 0)
        return self._with(offset=offset, limit=limit)

    def select(self, *columns: str) -> "TableQuery":
        """Only ``columns`` in results (DuckDB then reads only those, and those filtered on)."""
        for name in columns:
            if name not in self._types:
                raise FilterSyntaxError(f"unknown column {name!r}", str(name)[:80], 0,
                                        f"the table's columns: {', '.join(sorted(self._types)[:20])}")
        return self._with(selected=tuple(columns))

    # ------------------------------------------------------------ running

    def count(self) -> int:
        """Rows matching the filters (before paging)."""
        sql, params = self._statement(["count(*)"], ordered=False, paged=False)
        rows = self._run(sql, params, lambda relation: relation.fetchall())
        return int(rows[0][0]) if rows else 0

    def __len__(self) -> int:
        """Rows in the result: the filtered rows, within the page if one was asked for."""
        matched = self.count()
        left = max(0, matched - self._offset)
        return left if self._limit is None else min(left, self._limit)

    def to_arrow(self) -> Any:
        """The result as a ``pyarrow.Table``."""
        columns = [quote_identifier(name) for name in self.columns]
        # A table logged with no columns (``Table(columns=[])``, ``select()`` of none) still has
        # its rows: select the row column, then drop it (a SELECT of nothing is DuckDB's parser error).
        sql, params = self._statement(columns or [f"t.{ROW_COLUMN}"], ordered=True, paged=True)
        result = self._run(sql, params, lambda relation: relation.to_arrow_table())
        return self._logged_types(result if columns else result.select([]))

    def _logged_types(self, result: Any) -> Any:
        """``result`` with the logged Arrow types DuckDB doesn't give back (dictionary columns,
        pandas' categoricals, come back as text; timestamps in DuckDB's unit) cast back, from the
        first fragment's schema; a cast that fails leaves DuckDB's type."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        logged = pq.read_schema(self._source.fragments[0].path)
        for index, field in enumerate(result.schema):
            target = logged.field(field.name).type if field.name in logged.names else None
            if target is None or target == field.type:
                continue
            if not (pa.types.is_dictionary(target) or pa.types.is_temporal(target)):
                continue
            try:
                result = result.set_column(index, field.name, result.column(index).cast(target))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                continue
        return result

    def to_pandas(self) -> Any:
        """The result as a pandas DataFrame (through Arrow)."""
        return self.to_arrow().to_pandas()

    def relation(self, columns: Sequence[str]) -> tuple[str, list[Any]]:
        """A SELECT (text and bound parameters) of ``columns`` (which must be the table's) and the
        row's place in the order rows were added as ``__tracklet_order``, filtered, neither ordered
        nor paged: a subquery for group-bys and joins (``tracklet.media.table_views``)."""
        for name in columns:
            if name not in self._types:
                raise FilterSyntaxError(f"unknown column {name!r}", str(name)[:80], 0,
                                        f"the table's columns: {', '.join(sorted(self._types)[:20])}")
        single = len(self._source.fragments) == 1
        order = f"t.{ROW_COLUMN}" if single else f"f.{_BASE} + t.{ROW_COLUMN}"
        return self._statement([*(quote_identifier(name) for name in columns), f"{order} AS {ORDER_COLUMN}"],
                               ordered=False, paged=False)

    def run_sql(self, sql: str, params: list[Any], fetch: Callable[[Any], Any]) -> Any:
        """Run a statement built over ``relation()`` on a connection of its own (DuckDB errors
        become ``TableError``)."""
        return self._run(sql, params, fetch)

    def _statement(self, projection: Sequence[str], *, ordered: bool, paged: bool) -> tuple[str, list[Any]]:
        fragments = self._source.fragments
        params: list[Any] = []
        # A page of rows in the order they were added, unfiltered (the dashboard scrolling a table):
        # rows offset..offset+limit are known by their place, so only the fragments holding them
        # are read, and only the row groups (min/max of the row column) that hold them.
        window = paged and ordered and not self._where and not self._order and self._limit is not None
        if window:
            low, high = self._offset, self._offset + (self._limit or 0)
            fragments = tuple(f for f in fragments if f.base < high and f.base + f.rows > low) or fragments[:1]
        paths = sorted({fragment.path for fragment in fragments})
        single = len(fragments) == 1
        if single:
            source = "read_parquet(?, union_by_name = true) AS t"
            params.append(paths)
            row_order = f"t.{ROW_COLUMN}"
            if window:
                base = fragments[0].base
                return (f"SELECT {', '.join(projection)} FROM {source} WHERE {row_order} >= ? AND {row_order} < ? "
                        f"ORDER BY {row_order}", [*params, low - base, high - base])
        else:
            source = (f"read_parquet(?, filename = '{_FILE}', union_by_name = true) AS t "
                      f"JOIN (SELECT unnest(?::VARCHAR[]) AS {_FILE}, unnest(?::BIGINT[]) AS {_BASE}) AS f "
                      f"USING ({_FILE})")
            params.extend([paths, [fragment.path for fragment in fragments], [fragment.base for fragment in fragments]])
            row_order = f"f.{_BASE} + t.{ROW_COLUMN}"
        sql = f"SELECT {', '.join(projection)} FROM {source}"
        if window:
            return sql + f" WHERE {row_order} >= ? AND {row_order} < ? ORDER BY {row_order}", [*params, low, high]
        if self._where:
            sql += " WHERE " + " AND ".join(condition for condition, _ in self._where)
            for _, values in self._where:
                params.extend(values)
        if ordered:
            keys = [f"{quote_identifier(name)} {'DESC' if descending else 'ASC'} NULLS LAST"
                    for name, descending in self._order]
            sql += " ORDER BY " + ", ".join([*keys, row_order])
        if paged and (self._limit is not None or self._offset):
            sql += " LIMIT ? OFFSET ?"
            params.extend([self._limit if self._limit is not None else 2**62, self._offset])
        return sql, params

    def _run(self, sql: str, params: list[Any], fetch: Callable[[Any], Any]) -> Any:
        """Run ``sql`` on a connection of its own (a cursor of the process's in-memory database:
        it reads only the fragments) and return what ``fetch`` takes from the result."""
        if not self._source.fragments:
            raise TableError(f"table {self.key!r} has no fragments to read")
        duckdb = _duckdb()
        connection = _cursor()
        try:
            return fetch(connection.sql(sql, params=params))
        except duckdb.Error as error:
            raise TableError(f"table {self.key!r}: the query failed: {error}") from error
        finally:
            connection.close()

    def __repr__(self) -> str:
        return (f"<tracklet TableQuery {self.key!r} step={self.step} {self.log_mode} "
                f"columns={len(self._source.columns)} rows={self._source.rows}>")


_DATABASE: tuple[int, Any] | None = None
_DATABASE_LOCK = forksafe.lock()


def _cursor() -> Any:
    """A connection of its own for one statement: a cursor of the process's in-memory DuckDB
    database, made once (again after a fork; a cursor per statement, so per thread, as DuckDB asks).
    A fresh ``duckdb.connect()`` per statement cost ~15 ms of CPU (a database's setup), as much as
    a filtered count of 1M rows; a cursor costs microseconds. Statements hold no state between
    them (no tables, no settings: every one reads Parquet fragments), so sharing it is sharing
    nothing but the setup and DuckDB's buffer pool."""
    global _DATABASE
    with _DATABASE_LOCK:
        if _DATABASE is None or _DATABASE[0] != os.getpid():
            _DATABASE = (os.getpid(), _duckdb().connect())
        return _DATABASE[1].cursor()


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as error:  # pragma: no cover - duckdb is in the tables extra
        from tracklet.errors import MissingDependency

        raise MissingDependency("querying tables needs duckdb: pip install 'tracklet[tables]'") from error
    return duckdb
