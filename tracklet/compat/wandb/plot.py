"""``wandb.plot``: custom charts. Each function returns a value ``log()`` leaves out with one warning;
tracklet draws charts from logged metrics instead."""

from __future__ import annotations

from typing import Any

from tracklet.compat.wandb.data_types import _PlotValue


def _chart(kind: str) -> Any:
    def build(*args: Any, **kwargs: Any) -> _PlotValue:
        return _PlotValue(kind)

    build.__name__ = kind
    build.__doc__ = f"``wandb.plot.{kind}``: accepted, not recorded (tracklet charts logged metrics instead)."
    return build


line = _chart("line")
line_series = _chart("line_series")
scatter = _chart("scatter")
bar = _chart("bar")
histogram = _chart("histogram")
confusion_matrix = _chart("confusion_matrix")
pr_curve = _chart("pr_curve")
roc_curve = _chart("roc_curve")
plot_table = _chart("plot_table")

__all__ = [
    "bar", "confusion_matrix", "histogram", "line", "line_series", "plot_table", "pr_curve", "roc_curve", "scatter",
]
