"""``Store``: open (and migrate) a store, ingest the data root into it, query it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa

from tracklet.store.engine import create_engine, migrate, store_url
from tracklet.store.ingest import IndexerBusy, IndexReport, Indexer
from tracklet.store.run_data_queries import RunDataQueries
from tracklet.store.schema import projects, runs

RUN_FIELDS = (
    "run_id", "name", "state", "tags", "group_name", "job_type", "notes", "host", "created_at", "updated_at",
    "heartbeat_at", "exit_code", "config", "summary", "keys", "last_step", "metadata",
)
# What a listing returns unless asked for more: everything but the (possibly long) key list and
# the run's metadata (command, git, GPUs...: the run page's).
LIST_FIELDS = tuple(field for field in RUN_FIELDS if field not in ("keys", "metadata"))


class Store(RunDataQueries):
    """The runs of one data root, indexed. ``url`` picks the database (default ``$TRACKLET_STORE``,
    else SQLite at ``<root>/store.sqlite``); ``root`` is the data root whose record logs feed it."""

    def __init__(self, url: str | None = None, *, root: str | Path | None = None) -> None:
        if root is None:
            from tracklet.core.settings import default_data_root

            root = os.environ.get("TRACKLET_DIR") or default_data_root()
        self.root = Path(root).expanduser()
        self.url = url or os.environ.get("TRACKLET_STORE") or store_url(self.root)
        self.engine = create_engine(self.url)
        migrate(self.engine)

    def index(self, *, wait: float = 0.0, on_wait: Callable[[], None] | None = None,
              rebuild: bool = False) -> IndexReport:
        """Ingest every record log under the data root that grew since the last time.

        Only one process indexes a data root at a time: if another holds the lock, wait up to
        ``wait`` seconds for it (``on_wait()`` is called once when waiting starts), then give up
        with ``report.busy`` set; the other process is bringing the store up to date, and queries
        answer from what it has committed. Runs that fail to index are in ``report.failed``.

        ``rebuild``: empty the tables derived from the record logs (runs, series, blocks, console
        lines, alerts) and index every log from its first byte; users, API keys, project members
        and a server's segment tables are left as they are (docs/store.md)."""
        try:
            return Indexer(self.engine, self.root).index(wait=wait, on_wait=on_wait, rebuild=rebuild)
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
    ) -> list[dict[str, Any]]:
        """A project's runs as dicts of ``fields`` (any of ``RUN_FIELDS``) plus ``path``, newest
        first unless ``order_by`` says otherwise; ``filter`` is an expression (docs/store.md)."""
        unknown = set(fields) - set(RUN_FIELDS)
        if unknown:
            raise ValueError(f"unknown run field(s) {', '.join(sorted(unknown))}; choose from {', '.join(RUN_FIELDS)}")
        columns = [runs.c[field] for field in dict.fromkeys(("run_id", *fields))]
        stmt = (
            sa.select(*columns).join(projects, projects.c.id == runs.c.project_id)
            .where(projects.c.name == project, runs.c.deleted.is_(False))
        )
        if filter:
            from tracklet.store.filters import compile_filter, parse_filter

            stmt = stmt.where(compile_filter(parse_filter(filter), runs))
        if order_by:
            from tracklet.store.filters import compile_sort, parse_sort

            stmt = stmt.order_by(*compile_sort(parse_sort(order_by), runs))
        else:
            stmt = stmt.order_by(runs.c.created_at.desc(), runs.c.run_id)
        stmt = stmt.offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        prefix = project + "/"
        with self.engine.connect() as connection:
            listed = [dict(row) for row in connection.execute(stmt).mappings()]
        for row in listed:
            row["path"] = prefix + row["run_id"]
        return listed

    def gc(self) -> int:
        """Remove runs whose record logs are gone from the data root (and their series and
        blocks). Returns how many were removed."""
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
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
