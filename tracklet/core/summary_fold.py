"""A run's summary as its live ``SummaryTracker`` would have it, recomputed from its record log.

A live run writes its summary at most every few seconds (``sender.SUMMARY_INTERVAL``), so the
last ``SummaryUpdate`` of a run that was killed can be far behind its history. Readers therefore
fold the log through a ``SummaryTracker`` of their own, in log order: ``define_metric`` records
define, every history column is observed, and every ``SummaryUpdate`` is applied as a set (an
explicit ``run.summary[key] = value`` reaches the log only that way, and wins over history logged
before it, as it did live). For a run that ended cleanly this gives its last written summary; for
a crashed or running one, the summary of all the history it has.
"""

from __future__ import annotations

from typing import Any

from tracklet.core.encoder import SummaryTracker, mode_names
from tracklet.core.values import from_value_message, histogram_from_message, parse_big_int
from tracklet.proto import records_pb2 as pb

_NUMERIC_FIELDS = ("floats", "ints", "bools")


class SummaryFold:
    """Feed it records in log order; ``values`` is the summary."""

    def __init__(self) -> None:
        self.tracker = SummaryTracker()
        self.key_names: dict[int, str] = {}

    @property
    def values(self) -> dict[str, Any]:
        return self.tracker.values

    def apply(self, record: pb.Record) -> None:
        kind = record.WhichOneof("kind")
        if kind == "history":
            self.history(record.history)
        elif kind == "summary":
            self.summary(record.summary)
        elif kind == "metric_definition":
            definition = record.metric_definition
            self.tracker.define(definition.name, mode_names(definition.summary), definition.summary_as_dict)
        elif kind == "run_start":
            self.session(record.run_start)

    def session(self, start: pb.RunStart) -> None:
        """A resumed session's tracker starts from the summary so far, without the earlier
        sessions' definitions or running aggregates (as ``Run._start`` does)."""
        if start.resumed:
            tracker = SummaryTracker()
            tracker.values.update(self.tracker.values)
            self.tracker = tracker

    def summary(self, update: pb.SummaryUpdate) -> None:
        items = {entry.key: from_value_message(entry.value) for entry in update.items}
        self.tracker.set(items, list(update.removed))

    def history(self, batch: pb.HistoryBatch) -> None:
        """Observe each key's values in this batch, in the order the live encoder did: column by
        column, several columns of one key in one batch (values of several types) merged by row."""
        for definition in batch.new_keys:
            self.key_names[definition.id] = definition.name
        by_key: dict[int, list[pb.Column]] = {}
        for column in batch.columns:
            by_key.setdefault(column.key, []).append(column)
        for key_id, columns in by_key.items():
            name = self.key_names.get(key_id)
            if name is None:
                continue
            if len(columns) == 1:
                values = _observed(columns[0])
            else:
                values = _merged(columns)
            if values:
                self.tracker.observe(name, values)
        self.tracker.dirty.clear()  # what a live sender would write next: nothing to a reader


def _observed(column: pb.Column) -> Any:
    for field in _NUMERIC_FIELDS:
        data = getattr(column, field)
        if len(data):
            return data
    if len(column.strings):
        return column.strings
    if len(column.histograms):
        # Only a "last" summary can hold a histogram: the aggregates ignore non-numbers.
        return [histogram_from_message(column.histograms[-1])]
    if len(column.values):  # likewise a structured value (a list)
        return [from_value_message(column.values[-1])]
    if len(column.big_ints):
        return [value for value in map(parse_big_int, column.big_ints) if value is not None]
    return ()


def _merged(columns: list[pb.Column]) -> list[Any]:
    pairs: list[tuple[int, Any]] = []
    for column in columns:
        if len(column.histograms):
            values: Any = [histogram_from_message(column.histograms[-1])]
            rows = [column.rows[-1] if column.rows else len(column.histograms) - 1]
        elif len(column.values):
            values = [from_value_message(column.values[-1])]
            rows = [column.rows[-1] if column.rows else len(column.values) - 1]
        elif len(column.big_ints):
            values = list(map(parse_big_int, column.big_ints))
            rows = list(column.rows) if column.rows else list(range(len(values)))
        else:
            values = _observed(column)
            rows = list(column.rows) if column.rows else list(range(len(values)))
        pairs.extend((row, value) for row, value in zip(rows, values) if value is not None)
    pairs.sort(key=lambda pair: pair[0])
    return [value for _, value in pairs]
