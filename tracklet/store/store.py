"""``Store``: open (and migrate) a store, ingest the data root into it, query it."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from tracklet.core import forksafe
from tracklet.errors import QueryTimeout
from tracklet.store.engine import create_engine, migrate, store_url
from tracklet.store.ingest import LOCK_FILE, Indexer, IndexerBusy, IndexReport
from tracklet.store.logsource import LogSource
from tracklet.store.run_data_queries import RunDataQueries
from tracklet.store.schema import project_id_of, projects, runs, series
from tracklet.store.text import fit, store_text

__all__ = ["LIST_FIELDS", "LOCK_FILE", "RUN_FIELDS", "JoinedFields", "JoinedSort", "Store"]

RUN_FIELDS = (
    "run_id", "name", "state", "tags", "group_name", "job_type", "notes", "host", "created_at", "updated_at",
    "heartbeat_at", "exit_code", "config", "summary", "keys", "last_step", "metadata",
)
# What a listing returns unless asked for more: everything but the (possibly long) key list and
# the run's metadata (command, git, GPUs...: the run page's).
LIST_FIELDS = tuple(field for field in RUN_FIELDS if field not in ("keys", "metadata"))
# A filtered page is read through its alternatives' index lookups (Store._alternatives_are_few)
# while they select at most this many runs per row the page needs (offset + limit).
UNION_PER_PAGE_ROW = 10
# On PostgreSQL, a page sorted by a config or summary key that reaches past this share of the
# project's runs (offset + limit) is read by the one JSON sort of every run, not in parts
# (Store._by_sort_values): each run skipped in parts costs an index entry and a run read by id,
# and past a third of the project that is more than the sort's one read of each run.
JSON_SORT_PAST = 1 / 3
#: Seconds a listing with a filter may spend in one statement before it fails as ``QueryTimeout``
#: (``Store.filter_timeout``; ``$TRACKLET_STORE_FILTER_TIMEOUT``, 0 for none): PostgreSQL's
#: ``statement_timeout`` for the listing's transaction, SQLite's progress handler over the listing's
#: statements. A backstop for filters that read every run slowly (regular expressions, deep config
#: paths, on a large project): the statement stops, the worker is free, the error names the filter.
FILTER_TIMEOUT = 5.0
FILTER_TIMEOUT_ENV = "TRACKLET_STORE_FILTER_TIMEOUT"
# SQLite calls the progress handler every this many virtual-machine instructions (~1 ms or less).
_SQLITE_CHECK_EVERY = 10_000


@dataclass(frozen=True)
class JoinedFields:
    """Fields of a project's runs that live outside the store's tables (a server's verified ``user``),
    for filters, sorts and listings alike.

    ``join(runs_from, run_id)`` gives ``runs_from`` (the store's runs, as a FROM clause) with LEFT
    OUTER JOINs of the owner's tables added on ``run_id`` (the runs table's column), each matching at
    most one row per run, so a join never repeats nor drops a run. ``columns``: each field as an
    expression over those tables, never NULL (a text field is "" for a run without a row). The store
    joins once per query, and only when the query names one of these fields: a filter or sort on it
    costs one join (index lookups or a hash join), not a subquery per run."""

    join: Callable[[sa.FromClause, sa.ColumnElement[str]], sa.FromClause]
    columns: Mapping[str, sa.ColumnElement[Any]]
    #: How a sort whose first key is one of these fields reads its page in an index's order.
    sorts: Mapping[str, JoinedSort] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class JoinedSort:
    """How a page sorted first by a joined field is read in an index's order: a LEFT OUTER JOIN
    ordered by a column of its inner side is sorted whole by any planner, so the store reads the
    runs that have a row (``join``: ``runs_from`` INNER JOINed to the owner's table, which names
    every column of ``JoinedFields.columns``), ordered by ``key`` then the other sort keys then
    ``run_id`` (the owner's copy of the run id, so an index on (..., key, run_id) gives the
    order), then the runs without one (``missing``, a condition over ``JoinedFields.join``'s
    source), ordered by the other keys: they sort last in either direction, as missing values do.
    ``rows``: the owner's rows of the project, a condition on its table alone that an index of it
    starts with (a page past them is told so by that index, not by reading them), or None."""

    join: Callable[[sa.FromClause, sa.ColumnElement[str]], sa.FromClause]
    key: sa.ColumnElement[Any]
    run_id: sa.ColumnElement[str]
    missing: sa.ColumnElement[bool]
    rows: sa.ColumnElement[bool] | None = None


def _engine_in_this_process(parents: Any) -> Any:
    """The engine, with a pool of this process's own (SQLAlchemy's advice for a forked child: the
    parent's connections are left alone, never closed here)."""
    parents.dispose(close=False)
    return parents


class Store(RunDataQueries):
    """The runs of one data root, indexed. ``url`` picks the database (default ``$TRACKLET_STORE``,
    else SQLite at ``<root>/store.sqlite``); ``root`` is the data root whose record logs feed it."""

    #: What filter, sort and list fields without a column of the runs table mean in a project
    #: (``JoinedFields``), or None; default: the store's own (``filters.user_column``). A server with
    #: keys sets it (create_app: its verified creators, run_creators.joined_fields) so that every
    #: query of runs (the runs list, reports' run sets and freezes) filters and sorts ``user`` by the
    #: creator a key verified, never by the client-recorded ``metadata.username``.
    project_joined_fields: Callable[[str], JoinedFields] | None = None

    # A forked child holding the store (a Pool worker's Api, a report backend) opens its own
    # connections: the parent's pool is left alone, never closed there (core/forksafe.own).
    engine = forksafe.own(lambda store, parents: _engine_in_this_process(parents))
    _span_writer = forksafe.own(lambda store, parents: None)
    _span_writer_lock = forksafe.own(lambda store, parents: threading.Lock())

    def __init__(self, url: str | None = None, *, root: str | Path | None = None) -> None:
        if root is None:
            from tracklet.core.settings import default_data_root

            root = os.environ.get("TRACKLET_DIR") or default_data_root()
        self.root = Path(root).expanduser()
        self.url = url or os.environ.get("TRACKLET_STORE") or store_url(self.root)
        #: ``FILTER_TIMEOUT`` for this store (None: no limit).
        self.filter_timeout: float | None = _filter_timeout(os.environ.get(FILTER_TIMEOUT_ENV))
        self.engine = create_engine(self.url)
        migrate(self.engine)
        self._span_writer = None
        self._span_writer_lock = threading.Lock()

    @property
    def read_only(self) -> bool:
        """Whether this user can't write the store (a SQLite file of a read-only data root:
        ``core/readonly.py``); it is then read as it was last indexed, and ``index`` refuses."""
        from tracklet.store.engine import is_read_only

        return is_read_only(self.engine)

    def indexer(self, *, liveness: Callable[[Path], bool | None] | None = None,
                source: LogSource | None = None) -> Indexer:
        """The store's writer over the data root's record logs (``source``: another ``LogSource``,
        such as a server's segments; ``liveness``: how a running run is told from a crashed one)."""
        if liveness is None:
            return Indexer(self.engine, self.root, source=source)
        return Indexer(self.engine, self.root, liveness=liveness, source=source)

    def index(self, *, wait: float = 0.0, on_wait: Callable[[], None] | None = None,
              rebuild: bool = False, source: LogSource | None = None) -> IndexReport:
        """Ingest every record log under the data root that grew since the last time.

        Only one process indexes a data root at a time: if another holds the lock, wait up to
        ``wait`` seconds for it (``on_wait()`` is called once when waiting starts), then give up
        with ``report.busy`` set; the other process is bringing the store up to date, and queries
        answer from what it has committed. Runs that fail to index are in ``report.failed``.

        ``rebuild``: empty the tables derived from the record logs (runs, series, blocks, console
        lines, alerts) and index every log from its first byte; users, API keys, project members
        and a server's segment tables are not the store's and are never touched (docs/store.md).
        ``source``: where the logs are, when not under the data root (a server's segments)."""
        try:
            return self.indexer(source=source).index(wait=wait, on_wait=on_wait, rebuild=rebuild)
        except IndexerBusy:
            return IndexReport(busy=True)

    def runs(
        self,
        project: str,
        *,
        filter: str | None = None,
        order_by: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        fields: tuple[str, ...] = LIST_FIELDS,
        run_ids: tuple[str, ...] | list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """A project's runs as dicts of ``fields`` (any of ``RUN_FIELDS``) plus ``path``, newest
        first unless ``order_by`` says otherwise; ``filter`` is an expression (docs/store.md);
        ``run_ids``: only these runs (bound parameters); fields without a column of the runs table
        (``user``) mean what ``project_joined_fields`` says, and ``fields`` may name those too.
        ``fields`` may also name ``username``: the OS user name the run recorded
        (``metadata.username``, "" without one), read without reading the whole metadata."""
        joined = self.project_joined_fields(project) if self.project_joined_fields is not None else None
        joined_columns = joined.columns if joined is not None else {}
        unknown = set(fields) - set(RUN_FIELDS) - {"username"} - set(joined_columns)
        if unknown:
            raise ValueError(f"unknown run field(s) {', '.join(sorted(unknown))}; choose from {', '.join(RUN_FIELDS)}")
        named: set[str] = set()  # the columns the filter and sort name
        where = sort = parsed = None
        in_project: sa.ColumnElement[bool] = runs.c.project_id == project_id_of(project)
        project_only = in_project
        if filter:
            from tracklet.store.filters import compile_filter, indexed_alternatives, named_columns, parse_filter

            parsed = parse_filter(filter)
            named |= named_columns(parsed)
            now = time.time()
            where = compile_filter(parsed, runs, now=now, columns=joined_columns)
            alternatives = indexed_alternatives(parsed)
            if alternatives and self._alternatives_are_few(project, alternatives, now, limit, offset):
                # The project's runs that meet each alternative, by that one's index: a planner
                # reads an `or` as every run of the project (the dashboard's 2 s poll).
                in_project = runs.c.id.in_(sa.union(*(
                    sa.select(runs.c.id).where(runs.c.project_id == project_id_of(project),
                                               compile_filter(alternative, runs, now=now))
                    for alternative in alternatives)))
        keys: list[Any] = []
        if order_by:
            from tracklet.store.filters import compile_sort, parse_sort

            keys = parse_sort(order_by)
            named |= {field.column for field, _ in keys}
            sort = compile_sort(keys, runs, columns=joined_columns)
        # Newest first (as ``-created``), runs without a creation time last on both backends (as
        # any sort puts missing values), ties by run id, descending as every sort's tie-breaker
        # follows its last key: PostgreSQL reads ix_runs_project_created_desc in this order.
        order = sort if sort is not None else [runs.c.created_at.desc().nulls_last(), runs.c.run_id.desc()]
        listed_joined = [field for field in dict.fromkeys(fields) if field in joined_columns]
        columns = [_username(runs) if field == "username" else runs.c[field]
                   for field in dict.fromkeys(("run_id", *fields)) if field not in joined_columns]
        join_first = joined is not None and bool(named & set(joined_columns))

        def select(source: sa.FromClause, order: list[Any], conditions: list[Any], offset: int,
                   limit: int | None, *, in_project_by: bool = False) -> sa.Select[Any]:
            # ``in_project_by``: ``conditions`` hold the runs to the project already (a key's
            # entries of it, each its run's project: run_sort_values' copy), so the runs' own
            # condition on it is left out where it says no more: PostgreSQL multiplied its share
            # of the runs into the join's estimate a second time (1/projects squared).
            listed = [*columns]
            keyed = joined is not None and bool(listed_joined) and not join_first
            if joined is not None and join_first:
                listed += [joined_columns[field].label(field) for field in listed_joined]
            elif keyed:
                # Listed only: join the page's rows, not every run the sort goes through, and order
                # the page again by its sort keys, carried as columns. (A window numbering the rows
                # made both databases sort every run the filter selects, where the page's own
                # ORDER BY ... LIMIT keeps only its rows: PostgreSQL's top-N heapsort.)
                listed += [_sort_key(clause)[0].label(f"_key{i}") for i, clause in enumerate(order)]
            held = [] if in_project_by and in_project is project_only else [in_project]
            stmt = (sa.select(*listed).select_from(source)
                    .where(*held, runs.c.deleted.is_(False), *conditions))
            if run_ids is not None:
                stmt = stmt.where(runs.c.run_id.in_(list(run_ids)))
            if where is not None:
                stmt = stmt.where(where)
            stmt = stmt.order_by(*order).offset(offset)
            if limit is not None:
                stmt = stmt.limit(limit)
            if joined is not None and keyed:
                page = stmt.subquery("page")
                again = [_sort_key(clause)[1](page.c[f"_key{i}"]) for i, clause in enumerate(order)]
                stmt = (sa.select(*(column for column in page.c if not column.name.startswith("_key")),
                                  *(joined_columns[field].label(field) for field in listed_joined))
                        .select_from(joined.join(page, page.c.run_id)).order_by(*again))
            return stmt

        joined_sort = joined.sorts.get(keys[0][0].name) if joined is not None and keys else None
        source: sa.FromClause = joined.join(runs, runs.c.run_id) if joined is not None and join_first else runs
        with self.engine.connect() as connection:
            if (keys and keys[0][0].kind == "json") or joined_sort is not None:
                # a page read in parts reads what one statement would; first: PostgreSQL sets a
                # transaction's isolation before any other statement (the time limit's SET LOCAL)
                _one_snapshot(connection)
            with self._time_limit(connection, project, filter, order_by):
                path = None
                project_ref: Any = project_id_of(project)
                if keys and keys[0][0].kind == "json":
                    from tracklet.store.sort_values import sort_path

                    if connection.dialect.name == "postgresql":
                        # The project's id as a constant PostgreSQL's planner sees (an integer read
                        # here, in the page's snapshot, never user text): compared with the subquery,
                        # it took a key's entries (and the project's runs) for 1/projects of them
                        # and read a whole part again for a page past half of that (docs/store.md).
                        found_id = connection.execute(
                            sa.select(projects.c.id).where(projects.c.name == project)).scalar()
                        if found_id is not None:
                            project_ref = sa.literal_column(str(int(found_id)), sa.Integer)
                            if in_project is project_only:
                                in_project = project_only = runs.c.project_id == project_ref
                    path = sort_path(connection, project_ref, keys[0][0])
                if joined is not None and joined_sort is not None:
                    listed = self._by_joined_sort(connection, select, joined, joined_sort, keys, offset, limit)
                else:
                    by_values = None if path is None else self._by_sort_values(
                        connection, select, source, project_ref, path, keys, parsed, joined_columns, offset, limit)
                    listed = by_values if by_values is not None else [
                        dict(row) for row in connection.execute(select(source, order, [], offset, limit)).mappings()]
        prefix = project + "/"
        for row in listed:
            row["path"] = prefix + row["run_id"]
        return listed

    @contextlib.contextmanager
    def _time_limit(self, connection: sa.Connection, project: str, filter: str | None,
                    order_by: str | None) -> Iterator[None]:
        """A filtered listing's statements, each stopped past ``filter_timeout`` seconds (SQLite:
        all of them together) with ``QueryTimeout`` naming the filter, not left to hold a worker."""
        seconds = self.filter_timeout if filter else None
        if seconds is None:
            yield
            return
        fired = False
        driver: Any = None
        if connection.dialect.name == "sqlite":
            deadline = time.monotonic() + seconds

            def check() -> int:
                nonlocal fired
                fired = fired or time.monotonic() > deadline
                return int(fired)

            driver = connection.connection.driver_connection
            driver.set_progress_handler(check, _SQLITE_CHECK_EVERY)
        else:  # for this listing's transaction only
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, round(seconds * 1000))}")
        try:
            yield
        except sa.exc.OperationalError as error:
            origin = getattr(error, "orig", None)
            if not (fired or getattr(origin, "sqlstate", None) == "57014" or getattr(origin, "pgcode", None) == "57014"):
                raise
            raise QueryTimeout(
                f"listing the runs of {project!r} with filter {filter!r}" + (f" sorted by {order_by!r}" if order_by else "")
                + f" took longer than the store's limit of {seconds:g} s for one query ({FILTER_TIMEOUT_ENV}): "
                "narrow the filter (a regular expression or a config path is evaluated for each run it reads), "
                "or compare an indexed field (state, created, name) first") from None
        finally:
            if driver is not None:
                driver.set_progress_handler(None, 0)

    @staticmethod
    def _by_joined_sort(connection: sa.Connection, select: Callable[..., sa.Select[Any]], joined: JoinedFields,
                        joined_sort: JoinedSort, keys: list[Any], offset: int,
                        limit: int | None) -> list[dict[str, Any]]:
        """A page sorted first by a joined field (``JoinedSort``): the runs with a row in the
        owner's table in its index's order, then, once those run out, the runs without one."""
        from tracklet.store.filters import compile_sort

        (_, descending), others = keys[0], keys[1:]
        rest = compile_sort(others, runs, columns=joined.columns, tie_break=False)
        last = keys[-1][1]
        ties = not any(field.name == "run_id" for field, _ in keys)

        def tie(column: sa.ColumnElement[str]) -> list[Any]:
            return [column.desc() if last else column.asc()] if ties else []

        first = [joined_sort.key.desc() if descending else joined_sort.key.asc(), *rest, *tie(joined_sort.run_id)]
        with_row = joined_sort.join(runs, runs.c.run_id)
        listed: list[dict[str, Any]] = []
        past_rows = False
        if offset and joined_sort.rows is not None:
            # The owner's rows of the project no more than the offset (its index alone, stopped at
            # the entry past the offset): the page starts past the runs with a row, which are
            # counted below, not read at the offset first (each one's run read by id), then counted.
            entry = sa.select(sa.literal(1)).where(joined_sort.rows).limit(1).offset(offset)
            past_rows = connection.execute(entry).first() is None
        if not past_rows:
            listed = [dict(row) for row in connection.execute(select(with_row, first, [], offset, limit)).mappings()]
        if limit is not None and len(listed) >= limit:
            return listed
        skip = 0
        if offset and not listed:  # the page starts past the runs with a row: how many there are
            counted = select(with_row, [], [], 0, None).with_only_columns(sa.func.count()).order_by(None)
            skip = max(0, offset - connection.execute(counted).scalar_one())
        without = joined.join(runs, runs.c.run_id)
        more = None if limit is None else limit - len(listed)
        listed += [dict(row) for row in connection.execute(
            select(without, [*rest, *tie(runs.c.run_id)], [joined_sort.missing], skip, more)).mappings()]
        return listed

    @staticmethod
    def _by_sort_values(connection: sa.Connection, select: Callable[..., sa.Select[Any]], source: sa.FromClause,
                        project_id: Any, path: str, keys: list[Any], parsed: Any, joined_columns: Mapping[str, Any],
                        offset: int, limit: int | None) -> list[dict[str, Any]] | None:
        """A page sorted first by a config or summary key, read in the order of
        ``ix_run_sort_values_order`` (``store/sort_values.py``): the runs whose value at ``path`` is a
        number, by number, then those whose value is a string, by string, then the others (missing
        values last in either direction), each part ordered by the other sort keys next and the run
        id last, as ``filters.compile_sort`` orders them all; a part is read only once the ones
        before it run out. A page at an offset past the numbers (their index entries say so) is
        empty past every run of the project, read as the JSON sort (None: the caller's reading)
        where the numbers are most of the runs before it, else starts after them, counted, not
        read; the last part is never counted (docs/store.md)."""
        from tracklet.store.filters import compile_sort
        from tracklet.store.sort_values import NUMBER, SOURCES, STRING, key_ranges, missing, sort_values as values

        (field, descending), others = keys[0], keys[1:]
        rest = compile_sort(others, runs, columns=joined_columns, tie_break=False)
        last = keys[-1][1]
        ties = not any(key.name == "run_id" for key, _ in keys)
        code = SOURCES[field.name]

        def tie(column: sa.ColumnElement[str]) -> list[Any]:
            return [column.desc() if last else column.asc()] if ties else []

        def direction(column: sa.ColumnElement[Any]) -> Any:
            # Plain ASC / DESC: the index's order read forwards or backwards on both backends (num
            # is NULL for a string, text for a number: constant within a part).
            return column.desc() if descending else column.asc()

        with_value = source.join(values, values.c.run_pk == runs.c.id)
        at = [values.c.project_id == project_id, values.c.source == code, values.c.path == path]
        order = [direction(values.c.num), direction(values.c.text), *rest, *tie(values.c.run_id)]
        # The source and rank are plain values in every part: PostgreSQL's extended statistics on
        # (source, path, rank) (store migration 0017) tell its planner how many entries a key's
        # numbers and strings are, which it applies to constants only (docs/store.md).
        at_strings = [*at, values.c.rank == STRING]
        parts = [(with_value, order, [*at, values.c.rank == NUMBER]),
                 (with_value, order, at_strings),
                 (source, [*rest, *tie(runs.c.run_id)], [missing(code, path, per_run=connection.dialect.name == "postgresql")])]
        ranges = key_ranges(parsed, field) if parsed is not None else None
        if ranges is not None:  # only runs whose value is of one kind can match the filter
            rank, conditions = ranges
            parts = [(with_value, order, [*at, values.c.rank == rank, *conditions])]
        listed: list[dict[str, Any]] = []
        skip = offset

        def at_most(bound: int, *conditions: Any) -> bool:
            # Whether the index entries ``conditions`` select are no more than ``bound``: a read of
            # the index alone (no table), stopped at the entry past ``bound``.
            past = sa.select(sa.literal(1)).where(*conditions).limit(1).offset(bound)
            return connection.execute(past).first() is None

        in_project = runs.c.project_id == project_id
        runs_counted: tuple[int, int] | None = None  # (the project's runs, up to a bound; the bound)

        def runs_at_most(bound: int) -> bool:  # the project's runs, whatever the filter selects
            if runs_counted is not None:
                found, counted_to = runs_counted
                if found <= counted_to or bound < found:  # told by the count already made
                    return found <= bound
            return at_most(bound, in_project)

        if offset and len(parts) > 1 and connection.dialect.name == "postgresql":
            # A far page on PostgreSQL: the project's runs, counted in their index up to the runs
            # that make the page reach past JSON_SORT_PAST of them (a read of the index alone).
            # None past the offset: the page is empty. Few enough: the page is read as the JSON
            # sort (None: the caller's reading), one read of each run, where reading in parts
            # would read an index entry and the run for each run skipped, and PostgreSQL's planner
            # reads a whole part, joined to every run, at a large offset into it (docs/store.md).
            bound = offset if limit is None else max(offset, int((offset + limit) / JSON_SORT_PAST))
            counted = connection.execute(sa.select(sa.func.count()).select_from(
                sa.select(sa.literal(1)).where(in_project).limit(bound + 1).subquery())).scalar_one()
            if counted <= offset:
                return []
            if limit is None or counted <= bound:
                return None
            runs_counted = (int(counted), bound)

        for at_part, (part_from, part_order, conditions) in enumerate(parts):
            more = None if limit is None else limit - len(listed)
            if more is not None and more <= 0:
                break
            last = at_part == len(parts) - 1

            def count(part_from: sa.FromClause = part_from, conditions: list[Any] = conditions) -> int:
                counted = select(part_from, [], conditions, 0, None, in_project_by=part_from is not source
                                 ).with_only_columns(sa.func.count()).order_by(None)
                return int(connection.execute(counted).scalar_one())

            if at_part == 0 and skip and not last and at_most(skip, *conditions):
                # The page starts past the key's numbers (the runs that hold one are no more than
                # its offset). Past every run of the project, it is empty: the project's index says
                # so, where reading the parts went through each twice. Where the numbers are at
                # least half the runs before the page, it is read as before (the JSON sort of the
                # runs the filter selects): the runs without a number would be found among them by
                # id, after an exact count of the numbers (a join of each to its run), which
                # together cost more than that one read (docs/store.md). (PostgreSQL's far pages
                # went to that sort above: here the page is within the first JSON_SORT_PAST of the
                # project's runs, and the numbers fewer still.)
                if runs_at_most(offset):
                    return []
                if runs_counted is None and not at_most(offset // 2, *conditions):
                    return None
                skip -= count()
                continue
            if last and at_part and not skip and runs_at_most(offset + len(listed)):
                # Every run of the project is listed before this part (the runs lacking the key,
                # read by id until the page fills): none lacks it, and none is read to find out.
                break
            found = [dict(row) for row in connection.execute(
                select(part_from, part_order, conditions, skip, more, in_project_by=part_from is not source)).mappings()]
            if skip and not found and not last:  # the page starts past this part: how many runs it holds
                skip = max(0, skip - count())
            else:
                skip = 0
            listed += found
        return listed

    def _alternatives_are_few(self, project: str, alternatives: tuple[Any, ...], now: float,
                              limit: int | None, offset: int) -> bool:
        """Whether a page is cheaper read through the union of ``alternatives``' index lookups
        (``filters.indexed_alternatives``) than in the listing's order with the whole filter.

        The union reads every run an alternative selects (M), then sorts them; the listing's order
        reads runs until ``offset + limit`` of them match: at least that many, at most every run
        of the project. Without a limit that order reads every run of the project and the union
        only the matches: it is taken. With one, it is taken when M is at most UNION_PER_PAGE_ROW
        times the rows the page needs, as counted by each alternative's index (at most that many
        + 1 entries each): where nearly every run finished, ``state = "finished" or created > X``
        read every run of the project for a page of 50 (docs/performance.md, session 25)."""
        if limit is None:
            return True
        from tracklet.store.filters import compile_filter

        bound = UNION_PER_PAGE_ROW * (offset + limit)
        counts = [
            sa.select(sa.func.count()).select_from(
                sa.select(sa.literal(1)).where(runs.c.project_id == project_id_of(project),
                                               compile_filter(alternative, runs, now=now))
                .limit(bound + 1).subquery()).scalar_subquery()
            for alternative in alternatives]
        total: sa.ColumnElement[int] = counts[0]
        for count in counts[1:]:
            total = total + count
        with self.engine.connect() as connection:
            return connection.execute(sa.select(total)).scalar_one() <= bound

    def run(self, project: str, run_id: str, *, fields: tuple[str, ...] = RUN_FIELDS) -> dict[str, Any] | None:
        """One run's row as ``runs()`` gives it (every field by default), or None if the store has
        no such run (or it was deleted). The id is a bound parameter, never filter text."""
        rows = self.runs(project, fields=fields, run_ids=(run_id,))
        return rows[0] if rows else None

    def project_exists(self, project: str) -> bool:
        """Whether the store knows ``project`` (it may have no runs)."""
        return self.project_id(project) is not None

    def project_id(self, project: str) -> int | None:
        """The project's id (what a server's project members refer to), or None if unknown."""
        with self.engine.connect() as connection:
            return connection.execute(sa.select(projects.c.id).where(projects.c.name == project)).scalar()

    def add_project(self, project: str,
                    with_project: Callable[[sa.Connection, int], None] | None = None) -> tuple[int, bool]:
        """The project's id, creating the project if it is unknown; and whether this call created
        it (of several processes creating one project at once, exactly one does). ``with_project
        (connection, id)`` runs in the creating transaction, so what it writes (a server's first
        project member) commits with the project or not at all."""
        try:
            with self.engine.begin() as connection:
                insert = projects.insert().values(name=project).returning(projects.c.id)
                project_id = connection.execute(insert).scalar_one()
                if with_project is not None:
                    with_project(connection, project_id)
            return project_id, True
        except sa.exc.IntegrityError:  # it exists (perhaps created a moment ago by another process)
            existing = self.project_id(project)
            if existing is None:  # a constraint other than the name's failed
                raise
            return existing, False

    def project_names(self, ids: list[int]) -> dict[int, str]:
        """Project names by id, for the ids that name a project."""
        found: dict[int, str] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(ids), 500):
                stmt = sa.select(projects.c.id, projects.c.name).where(projects.c.id.in_(ids[start : start + 500]))
                found.update({row.id: row.name for row in connection.execute(stmt)})
        return found

    def projects(self) -> list[tuple[str, int]]:
        """Every project's name and number of (not deleted) runs, by name."""
        stmt = (
            sa.select(projects.c.name, sa.func.count(runs.c.id))
            .select_from(projects.outerjoin(runs, sa.and_(runs.c.project_id == projects.c.id,
                                                          runs.c.deleted.is_(False))))
            .group_by(projects.c.name).order_by(projects.c.name)
        )
        with self.engine.connect() as connection:
            return [(name, count) for name, count in connection.execute(stmt)]

    def metric_keys(self, project: str, run_ids: list[str] | None = None) -> list[str]:
        """The union of the metric keys with numeric points that ``run_ids`` (default: every run
        of ``project``) logged, sorted; internal keys (``_timestamp``...) left out."""
        chosen = sa.select(runs.c.id).where(runs.c.project_id == project_id_of(project), runs.c.deleted.is_(False))
        if run_ids is not None:
            chosen = chosen.where(runs.c.run_id.in_(run_ids))
        stmt = (sa.select(series.c.key).distinct()
                .where(series.c.run_pk.in_(chosen.scalar_subquery()), series.c.kind == "number"))
        with self.engine.connect() as connection:
            return sorted(key for (key,) in connection.execute(stmt) if not key.startswith("_"))

    def artifact_edges(self, *, runs: Sequence[tuple[str, str]] = (), versions: Sequence[tuple[str, str, int]] = (),
                       limit: int = 1000) -> tuple[list[dict[str, Any]], bool]:
        """Lineage: the artifact edges of ``runs`` ((project, run_id)) and ``versions`` ((project,
        name, version)), at most ``limit``, and whether more were left out (``lineage.edges_touching``)."""
        from tracklet.store.lineage import edges_touching

        return edges_touching(self.engine, list(runs), list(versions), limit)

    def run_table_last(self, project: str, name: str) -> int | None:
        """The last logged version of run table ``name`` (``run-<id>-<key>``, W&B's ``run_table``
        artifact) of ``project``, from the lineage edges; None if no run logged it."""
        from tracklet.store.lineage import run_table_last

        return run_table_last(self.engine, project, name)

    def media(self, project: str, run_id: str, key: str | None = None) -> list[dict[str, Any]]:
        """A run's logged media (every key, or ``key``'s) as indexed: key, step, idx, kind, digest,
        format, mime, size_bytes, width, height, duration, caption, thumbnail, time, extra; by step
        (``tracklet.store.media``)."""
        from tracklet.store.media import media_of_run

        return media_of_run(self.engine, project, run_id, key)

    def media_keys_of_runs(self, project: str, run_ids: list[str], retired: dict[str, dict[str, int]],
                           limit: int) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """Per (run, key) of the runs' media: items, steps, first and last step, kind; and the runs
        found (``tracklet.store.media.media_keys_of_runs``; ``retired``: retention's first kept steps)."""
        from tracklet.store.media import media_keys_of_runs

        return media_keys_of_runs(self.engine, project, run_ids, retired, limit)

    def media_grid(self, project: str, run_ids: list[str], key: str, step: int | None,
                   retired: dict[str, dict[str, int]], *, offset: int = 0, limit: int = 8,
                   with_steps: bool = True) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """Each run's items of ``key`` at the latest step at or before ``step``, a page of them, and
        its steps (``tracklet.store.media.media_grid``): index seeks, never a run's whole list."""
        from tracklet.store.media import media_grid

        return media_grid(self.engine, project, run_ids, key, step, retired, offset, limit, with_steps)

    @staticmethod
    def media_key(key: str) -> str:
        """A media key as the store keeps it (NUL as U+FFFD, at most 1,024 characters): what a row's
        ``key`` is compared with, e.g. a retention's keys, which are as logged."""
        from tracklet.store.media import stored_key

        return stored_key(key)

    def media_naming(self, project: str, run_id: str, digest: str) -> list[dict[str, Any]]:
        """A run's media rows that may name ``digest`` (``tracklet.store.media.media_naming``)."""
        from tracklet.store.media import media_naming

        return media_naming(self.engine, project, run_id, digest)

    def traces(self, project: str, *, run_id: str | None = None, filters: dict[str, Any] | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
        """The project's latest traces, newest first, each with its ``spans`` (``tracklet.store.spans``),
        costs from the data root's price table (``tracklet.store.prices``)."""
        from tracklet.store.spans import traces

        return traces(self.engine, project, run_id=run_id, filters=filters, limit=limit, prices=self.price_table())

    def price_table(self) -> Any:
        """The LLM price table: built-in prices and the data root's ``prices.json`` (re-read when it
        changes). ``PricesError`` names a bad entry."""
        from tracklet.store.prices import PRICES_FILE, PriceTable, load_prices

        try:
            stat = (self.root / PRICES_FILE).stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        cached = getattr(self, "_prices", None)
        if cached is None or cached[0] != stamp:
            cached = self._prices = (stamp, PriceTable(load_prices(self.root)))
        return cached[1]

    def add_spans(self, project: str, rows: list[dict[str, Any]]) -> int:
        """Store spans received over OTLP (``tracklet.store.spans.span_row`` rows, each with its
        ``run_id`` or ""), creating the project if needed; how many were received (a span the
        project already holds, by trace and span id, is kept as it was)."""
        from tracklet.store.spans import received_tuple

        for row in rows:
            row["run_id"] = fit(store_text(str(row.get("run_id") or "")), 128)
        return self.add_received_spans(project, [received_tuple(row) for row in rows])

    def add_received_spans(self, project: str, rows: list[tuple[Any, ...]],
                           in_transaction: Callable[[sa.Connection], Any] | None = None, arrival: Any = None) -> int:
        """``add_spans`` for rows as the OTLP decoder makes them (``spans.received_row`` tuples):
        written by the store's one span-writer thread, in a transaction shared with other callers'
        spans (``in_transaction(connection)`` runs in it); returns once it committed.
        ``SpanWriterBusy`` when too many spans wait already. ``arrival``: from
        ``span_writer().arriving()``, announced while the rows were decoded."""
        return int(self.span_writer().write(project, rows, in_transaction=in_transaction, arrival=arrival))

    def span_writer(self) -> Any:
        """The store's ``tracklet.store.spans_writer.SpanWriter`` (made on first use);
        ``ReadOnlyDataRoot`` for a store this user can't write (nothing would be kept)."""
        if self.read_only:
            from tracklet.core.readonly import read_only_error

            raise read_only_error(self.root, "storing spans writes the store", "its traces can be read; send spans "
                                  "to a tracklet ui or server over a data root you can write")
        with self._span_writer_lock:
            if self._span_writer is None:
                from tracklet.store.spans_writer import SpanWriter

                self._span_writer = SpanWriter(self.engine, lambda name: self.add_project(name)[0])
            return self._span_writer

    def indexed_runs(self) -> dict[tuple[str, str], tuple[int, str]]:
        """Every indexed run's (bytes of log ingested, state), by (project, run id): one query."""
        stmt = sa.select(projects.c.name, runs.c.run_id, runs.c.log_offset, runs.c.state).join(
            projects, projects.c.id == runs.c.project_id)
        with self.engine.connect() as connection:
            return {(row.name, row.run_id): (row.log_offset, row.state) for row in connection.execute(stmt)}

    def part_labels(self, project: str, run_id: str) -> list[str]:
        """The labels of the run's parts (a shared run's secondary writers' logs) indexed here, in
        name order (one query by the run's key and ``run_parts``' key: no scan of other runs)."""
        from tracklet.store.schema import run_parts

        stmt = (sa.select(run_parts.c.label).join(runs, runs.c.id == run_parts.c.run_pk)
                .join(projects, projects.c.id == runs.c.project_id)
                .where(projects.c.name == project, runs.c.run_id == run_id))
        with self.engine.connect() as connection:
            return sorted(connection.execute(stmt).scalars())

    def indexed_keys(self, project: str, run_id: str) -> tuple[int, int] | None:
        """(bytes of the run's log ingested, how many metric keys they define), or None if the
        store has no such run."""
        stmt = (sa.select(runs.c.log_offset, runs.c["keys"]).join(projects, projects.c.id == runs.c.project_id)
                .where(projects.c.name == project, runs.c.run_id == run_id))
        with self.engine.connect() as connection:
            row = connection.execute(stmt).first()
        return None if row is None else (row[0] or 0, len(row[1] or ()))

    def gc(self) -> int:
        """Remove runs whose record logs are gone from the data root (and their series and
        blocks). Returns how many were removed. ``ReadOnlyDataRoot`` for a store this user can't write."""
        if self.read_only:
            from tracklet.core.readonly import read_only_error

            raise read_only_error(self.root, "removing deleted runs writes the store",
                                  "run `tracklet gc` as a user who can write it")
        from tracklet.store.ingest import forget_run
        from tracklet.store.schema import runs as runs_table

        removed = 0
        with self.engine.begin() as connection:
            for row in connection.execute(sa.select(runs_table.c.id, runs_table.c.log_path)).all():
                if not Path(row.log_path).is_file():
                    forget_run(connection, row.id)
                    removed += 1
        return removed

    def close(self) -> None:
        with self._span_writer_lock:
            writer, self._span_writer = self._span_writer, None
        if writer is not None:
            writer.close()
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_DIRECTIONS: dict[Any, Callable[[Any], Any]] = {
    operators.asc_op: lambda x: x.asc(), operators.desc_op: lambda x: x.desc(),
    operators.nulls_first_op: lambda x: x.nulls_first(), operators.nulls_last_op: lambda x: x.nulls_last(),
}


def _sort_key(clause: Any) -> tuple[Any, Callable[[Any], Any]]:
    """An ORDER BY clause's expression, and how to order another expression the same way
    (``x.desc().nulls_last()`` gives ``x`` and ``lambda y: y.desc().nulls_last()``)."""
    modifiers = []
    while isinstance(clause, UnaryExpression) and clause.modifier in _DIRECTIONS:
        modifiers.append(clause.modifier)
        clause = clause.element

    def again(column: Any) -> Any:
        for modifier in reversed(modifiers):
            column = _DIRECTIONS[modifier](column)
        return column

    return clause, again


def _filter_timeout(text: str | None) -> float | None:
    """``$TRACKLET_STORE_FILTER_TIMEOUT`` as seconds (unset: ``FILTER_TIMEOUT``; 0: no limit)."""
    if text is None or not text.strip():
        return FILTER_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{FILTER_TIMEOUT_ENV}={text!r}: not a number of seconds (0 for no limit)") from None
    if seconds != seconds or seconds < 0:
        raise ValueError(f"{FILTER_TIMEOUT_ENV}={text!r}: not a number of seconds (0 for no limit)")
    return seconds or None


def _username(runs_table: sa.Table) -> sa.ColumnElement[str]:
    from tracklet.store.filters import user_column

    return user_column(runs_table).label("username")


def _one_snapshot(connection: sa.Connection) -> None:
    """Make the statements ``connection`` runs next read one snapshot of the database, as a single
    statement reads it (a page read in parts: ``Store._by_sort_values``, ``_by_joined_sort``): a transaction at
    REPEATABLE READ on PostgreSQL (its default, READ COMMITTED, takes a snapshot per statement), an
    explicit deferred BEGIN on SQLite (the driver starts none before a SELECT: each read its own).
    The transaction ends with the connection (rolled back: it only read)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    elif connection.dialect.name == "sqlite" and not getattr(connection.connection.dbapi_connection,
                                                             "in_transaction", True):
        connection.exec_driver_sql("BEGIN")  # (not inside one already: one connection a thread, :memory:)
