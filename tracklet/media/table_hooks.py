"""What the core calls for tables (through ``core/extensions.py``, as ``"tables"``): the run's
table writer (``log()`` of a ``tracklet.Table``, core/logged.py) and ``RecordedRun.table()``."""

from tracklet.media.table_read import open_table, table_keys
from tracklet.media.table_writer import start_worker

__all__ = ["open_table", "start_worker", "table_keys"]
