"""Views of logged tables the dashboard's table panel asks for (docs/tables.md, "In the dashboard"):
a group-by with counts and means, and two tables joined on a key column (predictions of two runs
side by side). Both run one DuckDB statement over ``TableQuery.relation()`` subqueries, so the
filters already on a query apply, only the columns used are read, and what comes back is bounded
(``MAX_GROUPS`` groups; a page of joined rows).

A join needs its key unique on at least one side: then a full outer join holds at most as many
rows as both tables together (no side can multiply the other), so counting and sorting it is
bounded by the tables' size.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tracklet.errors import FilterSyntaxError
from tracklet.media.query import ORDER_COLUMN, TableQuery
from tracklet.media.query_filter import check_sort_column, column_kind, compile_filter, quote_identifier

MAX_GROUPS = 1000  # groups one group-by answers (the largest first)
MAX_MEANS = 32  # number columns averaged per group
_GROUPABLE = ("number", "text", "bool", "time")
LEFT, RIGHT = "a", "b"  # the joined columns' prefixes: a.<column>, b.<column>


@dataclasses.dataclass(frozen=True)
class Grouped:
    """Groups of rows sharing a value of ``by``: each ``(value, count, {column: mean})``."""

    by: str
    means_of: list[str]
    groups: list[tuple[Any, int, dict[str, float | None]]]
    total_groups: int  # groups there are (only the ``MAX_GROUPS`` largest are listed)
    rows: int  # rows grouped (matching the query's filters)


def group_by(query: TableQuery, by: str, limit: int = MAX_GROUPS) -> Grouped:
    """``query``'s rows grouped by column ``by``: the count and the mean of every number column
    per group, largest groups first (ties: by value, nulls last)."""
    types = query.schema
    check_sort_column(by, types)
    if column_kind(types[by]) not in _GROUPABLE:
        raise FilterSyntaxError(f"column {by!r} ({types[by]}) can't be grouped by", by, 0,
                                "group by a number, text, bool or date/time column")
    means_of = [name for name, kind in types.items() if name != by and column_kind(kind) == "number"][:MAX_MEANS]
    inner, params = query.relation([by, *means_of])
    quoted = quote_identifier(by)
    means = "".join(f", avg({quote_identifier(name)}::DOUBLE)" for name in means_of)
    sql = (f"SELECT {quoted}, count(*) AS n{means}, count(*) OVER () AS __groups, sum(count(*)) OVER () AS __rows "
           f"FROM ({inner}) AS g GROUP BY {quoted} ORDER BY n DESC, {quoted} ASC NULLS LAST LIMIT ?")
    result = query.run_sql(sql, [*params, max(1, min(int(limit), MAX_GROUPS))], lambda relation: relation.fetchall())
    groups = [(row[0], int(row[1]), {name: _mean(value) for name, value in zip(means_of, row[2:2 + len(means_of)])})
              for row in result]
    total = int(result[0][-2]) if result else 0
    rows = int(result[0][-1]) if result else 0
    return Grouped(by, means_of, groups, total, rows)


def _mean(value: Any) -> float | None:
    return None if value is None else float(value)


class TableJoin:
    """Two tables joined on a key column: one row per key value found in either (a full outer
    join), the key first, then the left table's other columns as ``a.<name>`` and the right's as
    ``b.<name>``. ``filter``, ``sort`` and ``page`` take the joined column names (bare names may
    hold dots: ``a.score > b.score``)."""

    def __init__(self, left: TableQuery, right: TableQuery, on: str) -> None:
        left_types, right_types = left.schema, right.schema
        for side, types in ((LEFT, left_types), (RIGHT, right_types)):
            if on not in types:
                raise FilterSyntaxError(f"table {side} has no column {on!r} to join on", on[:80], 0,
                                        f"its columns: {', '.join(sorted(types)[:20])}")
        kinds = column_kind(left_types[on]), column_kind(right_types[on])
        if kinds[0] not in _GROUPABLE or kinds[0] != kinds[1]:
            raise FilterSyntaxError(f"column {on!r} can't join these tables: it is {left_types[on]} in one and "
                                    f"{right_types[on]} in the other", on[:80], 0,
                                    "join on a number, text, bool or date/time column of the same kind in both")
        self._left, self._right, self.on = left, right, on
        self._left_columns = [name for name in left_types if name != on]
        self._right_columns = [name for name in right_types if name != on]
        self.types: dict[str, str] = {on: left_types[on]}
        self.types.update({f"{LEFT}.{name}": left_types[name] for name in self._left_columns})
        self.types.update({f"{RIGHT}.{name}": right_types[name] for name in self._right_columns})
        self._where: list[tuple[str, list[Any]]] = []
        self._order: tuple[str, bool] | None = None
        self._checked = False

    @property
    def columns(self) -> list[str]:
        return list(self.types)

    def filter(self, expression: str) -> "TableJoin":
        sql, params = compile_filter(expression, self.types)
        self._where.append((sql, params))
        return self

    def sort(self, column: str, descending: bool = False) -> "TableJoin":
        check_sort_column(column, self.types)
        self._order = (column, bool(descending))
        return self

    def _check_unique(self) -> None:
        """The key must be unique on at least one side (see the module's docstring)."""
        if self._checked:
            return
        on = quote_identifier(self.on)
        duplicated = []
        for query in (self._left, self._right):
            inner, params = query.relation([self.on])
            sql = f"SELECT count({on}) - count(DISTINCT {on}) FROM ({inner}) AS s"
            duplicated.append(int(query.run_sql(sql, params, lambda relation: relation.fetchall())[0][0]))
        if all(duplicated):
            raise FilterSyntaxError(f"column {self.on!r} repeats values in both tables ({duplicated[0]} and "
                                    f"{duplicated[1]} repeats), so a join could multiply rows", self.on[:80], 0,
                                    "join on a column whose values are unique in at least one of the tables")
        self._checked = True

    def _statement(self, projection: str, *, ordered: bool) -> tuple[str, list[Any]]:
        left_sql, left_params = self._left.relation([self.on, *self._left_columns])
        right_sql, right_params = self._right.relation([self.on, *self._right_columns])
        on = quote_identifier(self.on)
        picked = [f"coalesce(l.{on}, r.{on}) AS {on}"]
        picked += [f"l.{quote_identifier(name)} AS {quote_identifier(f'{LEFT}.{name}')}" for name in self._left_columns]
        picked += [f"r.{quote_identifier(name)} AS {quote_identifier(f'{RIGHT}.{name}')}" for name in self._right_columns]
        picked += [f"l.{ORDER_COLUMN} AS __tracklet_left", f"r.{ORDER_COLUMN} AS __tracklet_right"]
        joined = (f"SELECT {', '.join(picked)} FROM ({left_sql}) AS l FULL OUTER JOIN ({right_sql}) AS r "
                  f"ON l.{on} = r.{on}")
        sql = f"SELECT {projection} FROM ({joined}) AS j"
        params = [*left_params, *right_params]
        if self._where:
            sql += " WHERE " + " AND ".join(condition for condition, _ in self._where)
            for _, values in self._where:
                params.extend(values)
        if ordered:
            keys = []
            if self._order is not None:
                keys.append(f"{quote_identifier(self._order[0])} {'DESC' if self._order[1] else 'ASC'} NULLS LAST")
            sql += " ORDER BY " + ", ".join([*keys, "__tracklet_left ASC NULLS LAST", "__tracklet_right ASC"])
        return sql, params

    def count(self) -> int:
        """Joined rows matching the filters."""
        self._check_unique()
        sql, params = self._statement("count(*)", ordered=False)
        return int(self._left.run_sql(sql, params, lambda relation: relation.fetchall())[0][0])

    def page(self, offset: int, limit: int) -> Any:
        """Joined rows ``offset`` to ``offset + limit`` as a ``pyarrow.Table``."""
        self._check_unique()
        projection = ", ".join(quote_identifier(name) for name in self.columns)
        sql, params = self._statement(projection, ordered=True)
        sql += " LIMIT ? OFFSET ?"
        return self._left.run_sql(sql, [*params, int(limit), int(offset)], lambda relation: relation.to_arrow_table())
