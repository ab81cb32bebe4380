"""A running trial's metric as its run logs it: the new ``(step, value)`` points since the last look.

The agent watches a running trial for pruning by reading the run's record log (the core's
readers, no store): each :meth:`MetricTail.new_points` reads only the frames appended since the
previous call (from the byte where the last intact frame ended; a torn tail being written is
read again next time), folds them into the run's state, and returns the metric's points at steps
not returned before, with the run's real step (``_step``). Non-numeric and non-finite values are
not points.
"""

from __future__ import annotations

import math
from pathlib import Path


class MetricTail:
    """The points of metric ``name`` in the record log at ``path``, read incrementally."""

    def __init__(self, path: Path | str, name: str) -> None:
        from tracklet.core.decode import RecordDecoder
        from tracklet.core.reader import RunState

        self.path = Path(path)
        self.name = name
        self._offset = 0
        self._state = RunState()
        self._decoder = RecordDecoder()
        self._last_step: int | None = None

    def new_points(self) -> list[tuple[int, float]]:
        from tracklet.core.recordlog import read_log_from

        try:
            result = read_log_from(self.path, self._offset)
        except FileNotFoundError:
            return []  # the trial's process hasn't created its run yet
        if not result.payloads:
            return []
        self._offset = result.end_offset
        batches = len(self._state.batches)
        self._decoder.fold(result.payloads, self._state.apply)
        if len(self._state.batches) == batches or self.name not in self._state.key_ids:
            return []
        history = self._state.history([self.name])
        points = []
        for step, value in zip(history["_step"], history[self.name]):
            if (self._last_step is not None and step <= self._last_step) or value is None:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                points.append((int(step), float(value)))
        if points:
            self._last_step = points[-1][0]
        return points
