"""The store: every run indexed for cross-run queries, metric histories in compact blocks with a
min/max/last/count pyramid so a chart's query reads O(buckets) data, not O(points).

Filled only by ingesting record logs (``Indexer``), by exactly one writer process; training
processes never write it. SQLite (the embedded default, in the data root) and PostgreSQL share
one schema through SQLAlchemy Core.
"""

from tracklet.store.engine import check_read_only_schema, driver_reason, is_read_only, sqlite_migration_lock
from tracklet.store.outage import UNAVAILABLE_ERRORS, is_unavailable
from tracklet.store.query import SeriesHistory, logged_json
from tracklet.store.store import LIST_FIELDS, LOCK_FILE, RUN_FIELDS, JoinedFields, JoinedSort, Store

__all__ = ["LIST_FIELDS", "LOCK_FILE", "RUN_FIELDS", "UNAVAILABLE_ERRORS", "JoinedFields", "JoinedSort", "SeriesHistory", "Store", "check_read_only_schema",
           "driver_reason", "is_read_only", "is_unavailable", "logged_json", "sqlite_migration_lock"]
