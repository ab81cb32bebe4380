"""A chart drawn from a logged table's columns, recorded with the table (``TableLogged.chart``).

W&B's ``wandb.plot.line``, ``scatter``, ``bar``, ``histogram``, ``line_series``,
``confusion_matrix``, ``pr_curve`` and ``roc_curve`` each build a table plus a Vega chart over its
columns; the compat layer (``tracklet/compat/wandb/plot.py``) logs the table as a
``tracklet.Table`` and this description of the chart with it, so the data stay queryable with
``run.table(key)`` and a reader (the dashboard, ``TableQuery.chart``) knows what to draw.

:class:`ChartedTable` is what ``log()`` is handed: the table, whose snapshot carries the chart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tracklet.core.logged import LoggedObject

#: The kinds a reader knows how to draw; "custom" is W&B's ``plot_table`` with another spec.
KINDS = ("line", "scatter", "bar", "histogram", "line_series", "confusion_matrix", "pr_curve", "roc_curve", "custom")


@dataclasses.dataclass(frozen=True)
class TableChart:
    """What to draw from a table: the chart's ``kind`` and the columns that play each role
    (``x``, ``y``, ``series`` splitting lines or curves, ``value`` for a confusion matrix's
    counts), the titles, and W&B's own spec name and field settings as given."""

    kind: str
    title: str = ""
    x: str = ""
    y: str = ""
    series: str = ""
    value: str = ""
    x_title: str = ""
    y_title: str = ""
    spec: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    chart_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The chart as JSON data (``TableQuery.chart``, the server's table response)."""
        data = dataclasses.asdict(self)
        data["fields"] = dict(self.fields)
        return data


def write_chart(chart: TableChart, message: Any) -> None:
    """Fill the ``TableChart`` proto ``message`` from ``chart``."""
    for field in dataclasses.fields(chart):
        if field.name != "fields":
            setattr(message, field.name, getattr(chart, field.name))
    for role, column in chart.fields:
        message.fields[role] = column


def read_chart(logged: Any) -> TableChart | None:
    """The chart a ``TableLogged`` record carries, or None."""
    if not logged.HasField("chart"):
        return None
    message = logged.chart
    values = {field.name: getattr(message, field.name) for field in dataclasses.fields(TableChart)
              if field.name != "fields"}
    return TableChart(**values, fields=tuple(sorted(message.fields.items())))


class ChartedTable(LoggedObject):
    """A table logged with a chart: ``log()`` takes the table's snapshot as it would alone and
    adds the chart to it; a snapshot a full queue dropped comes back here, so the table logged
    at ``finish()`` keeps its chart."""

    __slots__ = ("table", "chart")
    _kind = "table"
    _snapshot_at_log = True

    def __init__(self, table: Any, chart: TableChart) -> None:
        self.table = table
        self.chart = chart

    def _at_log(self, key: str, step: int) -> LoggedObject:
        snapshot = self.table._at_log(key, step)
        return dataclasses.replace(snapshot, chart=self.chart, source=self)

    def _take_back(self, snapshot: Any) -> None:
        self.table._take_back(snapshot)


__all__ = ["KINDS", "ChartedTable", "TableChart", "read_chart", "write_chart"]
