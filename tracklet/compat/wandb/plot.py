"""``wandb.plot``: W&B's preset charts, each a table plus a chart over its columns.

As in W&B, ``wandb.log({"pr": wandb.plot.pr_curve(...)})`` records the chart's data as a table
under ``"pr_table"`` (``"Custom Chart Tables/pr_table"`` with ``split_table=True``): a
``tracklet.Table``, read back with ``run.table("pr_table")``, ``wandb.Api().run(path)`` or
``api.artifact("project/run-<id>-pr_table:latest").get("pr_table")``. The chart itself (its
kind, the columns on each axis, the title) is recorded with the table (``TableLogged.chart``,
``tracklet/media/table_chart.py``) for the dashboard to draw.

``pr_curve`` and ``roc_curve`` compute their curves as W&B does (with scikit-learn's definitions),
here with numpy alone: ``_curves.py``.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from tracklet.compat.wandb import _curves
from tracklet.compat.wandb._messages import warn_once
from tracklet.compat.wandb.data_types import Table, WBValue
from tracklet.compat.wandb.errors import Error
from tracklet.media.table import Table as _TrackletTable
from tracklet.media.table_chart import ChartedTable, TableChart

#: The table rows W&B keeps for a chart (``wandb.Table.MAX_ROWS``); longer curves are thinned.
MAX_ROWS = 10000

#: W&B's Vega spec names for the presets: kind, and the fields that play x, y, series, value.
_PRESETS: dict[str, tuple[str, str, str, str, str]] = {
    "wandb/line/v0": ("line", "x", "y", "stroke", ""),
    "wandb/scatter/v0": ("scatter", "x", "y", "", ""),
    "wandb/bar/v0": ("bar", "label", "value", "", ""),
    "wandb/histogram/v0": ("histogram", "value", "", "", ""),
    "wandb/lineseries/v0": ("line_series", "step", "lineVal", "lineKey", ""),
    "wandb/confusion_matrix/v1": ("confusion_matrix", "Predicted", "Actual", "", "nPredictions"),
    "wandb/area-under-curve/v0": ("area_under_curve", "x", "y", "class", ""),
}


class CustomChart(WBValue):
    """What every ``wandb.plot`` function returns (W&B's ``CustomChart``): ``table``, the
    ``wandb.Table`` of the chart's data, and ``spec`` (``spec_name``, ``fields``,
    ``string_fields``, ``split_table``, ``key``). Logged, it records the table under
    ``<key>_table`` with the chart."""

    _recorded = True

    def __init__(self, table: Any, spec_name: str, fields: dict[str, Any], string_fields: dict[str, Any],
                 split_table: bool, kind: str | None = None) -> None:
        self.table = table
        self.spec = _Spec(spec_name, fields, string_fields, split_table)
        self._kind = kind

    @property
    def _type_name(self) -> str:
        return "wandb.plot chart"

    def set_key(self, key: str) -> None:
        self.spec.key = key

    def table_key(self, key: str) -> str:
        """The key the chart's table is recorded under when the chart is logged under ``key``."""
        return f"Custom Chart Tables/{key}_table" if self.spec.split_table else f"{key}_table"

    def to_tracklet(self, key: str) -> ChartedTable:
        """What ``log()`` records under :meth:`table_key`: the table with its chart."""
        return ChartedTable(self.table, self.chart(key))

    def chart(self, key: str) -> TableChart:
        """The chart description recorded with the table."""
        spec = self.spec
        preset = _PRESETS.get(spec.spec_name)
        fields = {str(role): str(column) for role, column in spec.fields.items() if column is not None}
        strings = {str(name): "" if value is None else str(value) for name, value in spec.string_fields.items()}
        if preset is None:
            kind, x, y, series, value = "custom", fields.get("x", ""), fields.get("y", ""), "", ""
        else:
            kind, *roles = preset
            x, y, series, value = (fields.get(role, "") if role else "" for role in roles)
        return TableChart(kind=self._kind or kind, title=strings.get("title", ""), x=x, y=y, series=series,
                          value=value, x_title=strings.get("x-axis-title", strings.get("xname", "")),
                          y_title=strings.get("y-axis-title", ""), spec=spec.spec_name,
                          fields=tuple(sorted(fields.items())), chart_key=key)


class _Spec:
    """W&B's ``CustomChartSpec``: the Vega spec's name and settings."""

    def __init__(self, spec_name: str, fields: dict[str, Any], string_fields: dict[str, Any],
                 split_table: bool) -> None:
        self.spec_name, self.fields, self.string_fields = spec_name, dict(fields), dict(string_fields)
        self.split_table, self.key = bool(split_table), ""


def plot_table(vega_spec_name: str, data_table: Any, fields: dict[str, Any],
               string_fields: dict[str, Any] | None = None, split_table: bool = False,
               *, _kind: str | None = None) -> CustomChart:
    """``wandb.plot_table``: a chart of ``data_table`` with a Vega spec. W&B's preset specs are
    recorded as their kind; another spec as ``"custom"`` (its fields kept; the dashboard shows
    the table)."""
    if not isinstance(data_table, _TrackletTable):
        raise Error(f"Expected `data_table` to be `wandb.Table` type, instead got {type(data_table).__name__}")
    return CustomChart(data_table, vega_spec_name, fields, string_fields or {}, split_table, _kind)


def line(table: Any, x: str, y: str, stroke: str | None = None, title: str = "",
         split_table: bool = False) -> CustomChart:
    """A line of column ``y`` against column ``x`` (one per value of ``stroke``)."""
    return plot_table("wandb/line/v0", table, {"x": x, "y": y, "stroke": stroke}, {"title": title}, split_table)


def scatter(table: Any, x: str, y: str, title: str = "", split_table: bool = False) -> CustomChart:
    """Points of column ``y`` against column ``x``."""
    return plot_table("wandb/scatter/v0", table, {"x": x, "y": y}, {"title": title}, split_table)


def bar(table: Any, label: str, value: str, title: str = "", split_table: bool = False) -> CustomChart:
    """A bar of ``value`` per ``label``."""
    return plot_table("wandb/bar/v0", table, {"label": label, "value": value}, {"title": title}, split_table)


def histogram(table: Any, value: str, title: str = "", split_table: bool = False) -> CustomChart:
    """A histogram of column ``value``."""
    return plot_table("wandb/histogram/v0", table, {"value": value}, {"title": title}, split_table)


def line_series(xs: Any, ys: Any, keys: Iterable[str] | None = None, title: str = "", xname: str = "x",
                split_table: bool = False) -> CustomChart:
    """Several lines in one chart: ``ys[i]`` against ``xs[i]`` (or every ``ys[i]`` against one
    ``xs``), named ``keys[i]`` (default ``line_<i>``); the table is W&B's ``step``, ``lineKey``,
    ``lineVal``."""
    first = xs[0]
    if not isinstance(first, Iterable) or isinstance(first, (str, bytes)):
        xs = [xs] * len(ys)
    if len(xs) != len(ys):
        raise ValueError(f"Number of x-series ({len(xs)}) must match y-series ({len(ys)}).")
    names = [f"line_{index}" for index in range(len(ys))] if keys is None else list(keys)
    if len(names) != len(ys):
        raise ValueError(f"Number of keys ({len(names)}) must match y-series ({len(ys)}).")
    data = [[x, names[index], y] for index, (line_xs, line_ys) in enumerate(zip(xs, ys))
            for x, y in zip(line_xs, line_ys)]
    table = Table(columns=["step", "lineKey", "lineVal"], data=data)
    return plot_table("wandb/lineseries/v0", table, {"step": "step", "lineKey": "lineKey", "lineVal": "lineVal"},
                      {"title": title, "xname": xname}, split_table)


def confusion_matrix(probs: Sequence[Sequence[float]] | None = None, y_true: Sequence[Any] | None = None,
                     preds: Sequence[Any] | None = None, class_names: Sequence[str] | None = None,
                     title: str = "Confusion Matrix Curve", split_table: bool = False) -> CustomChart:
    """Counts of each (actual, predicted) pair, as W&B's: the table ``Actual``, ``Predicted``,
    ``nPredictions`` with a row for every pair of classes. ``preds`` or ``probs`` (argmax taken);
    with ``class_names`` the labels are class indices, else the classes are the sorted labels
    seen, named ``Class_1``, ``Class_2``, ..."""
    import numpy as np

    if probs is not None and preds is not None:
        raise ValueError("Only one of `probs` or `preds` should be provided, not both.")
    if probs is not None:
        preds = np.argmax(np.asarray(probs), axis=1).tolist()
    if preds is None or y_true is None:
        raise ValueError("confusion_matrix needs y_true and one of preds or probs")
    preds, y_true = _plain(preds), _plain(y_true)
    if len(preds) != len(y_true):
        raise ValueError("The number of predictions and true labels must be equal.")
    if class_names is not None:
        names = list(class_names)
        if len(set(preds)) > len(names):
            raise ValueError("The number of unique predicted classes exceeds the number of class names.")
        if len(set(y_true)) > len(names):
            raise ValueError("The number of unique true labels exceeds the number of class names.")
        indices: Iterable[Any] = range(len(names))
    else:
        indices = set(preds) | set(y_true)
        names = [f"Class_{number + 1}" for number in range(len(indices))]
    mapping = {label: index for index, label in enumerate(sorted(indices))}
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    for actual, predicted in zip(y_true, preds):
        if actual not in mapping or predicted not in mapping:
            bad = actual if actual not in mapping else predicted
            raise ValueError(f"confusion_matrix: label {bad!r} is not a class index 0..{len(names) - 1} "
                             f"of class_names ({len(names)} names)")
        counts[mapping[actual], mapping[predicted]] += 1
    data = [[names[i], names[j], int(counts[i, j])] for i in range(len(names)) for j in range(len(names))]
    table = Table(columns=["Actual", "Predicted", "nPredictions"], data=data)
    return plot_table("wandb/confusion_matrix/v1", table,
                      {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
                      {"title": title}, split_table)


def pr_curve(y_true: Any = None, y_probas: Any = None, labels: Sequence[str] | None = None,
             classes_to_plot: Sequence[Any] | None = None, interp_size: int = 21,
             title: str = "Precision-Recall Curve", split_table: bool = False) -> CustomChart | None:
    """Precision against recall per class, as W&B's: precision made monotone, read at
    ``interp_size`` recall points from 1 to 0; the table ``class``, ``precision``, ``recall``
    (rounded to 3 places). None, with a warning, when the inputs hold missing values."""
    rows = _curves.per_class(y_true, y_probas, labels, classes_to_plot, "pr_curve",
                             lambda positives, scores: _curves.interpolated_pr(positives, scores, interp_size))
    if rows is None:
        return None
    table = Table(columns=["class", "precision", "recall"], data=_thin(rows, "pr_curve"))
    return plot_table("wandb/area-under-curve/v0", table, {"x": "recall", "y": "precision", "class": "class"},
                      {"title": title, "x-axis-title": "Recall", "y-axis-title": "Precision"}, split_table,
                      _kind="pr_curve")


def roc_curve(y_true: Any = None, y_probas: Any = None, labels: Sequence[str] | None = None,
              classes_to_plot: Sequence[Any] | None = None, title: str = "ROC Curve",
              split_table: bool = False) -> CustomChart | None:
    """True positive rate against false positive rate per class, as W&B's (scikit-learn's
    ``roc_curve`` with its default ``drop_intermediate``): the table ``class``, ``fpr``, ``tpr``
    (rounded to 3 places). None, with a warning, when the inputs hold missing values."""
    rows = _curves.per_class(y_true, y_probas, labels, classes_to_plot, "roc_curve", _curves.roc)
    if rows is None:
        return None
    table = Table(columns=["class", "fpr", "tpr"], data=_thin(rows, "roc_curve"))
    return plot_table("wandb/area-under-curve/v0", table, {"x": "fpr", "y": "tpr", "class": "class"},
                      {"title": title, "x-axis-title": "False positive rate", "y-axis-title": "True positive rate"},
                      split_table, _kind="roc_curve")


def _thin(rows: list[list[Any]], what: str) -> list[list[Any]]:
    """At most ``MAX_ROWS`` rows, as W&B keeps: evenly spaced ones, each class's first and last
    kept (W&B samples at random), with a warning."""
    if len(rows) <= MAX_ROWS:
        return rows
    warn_once(f"plot-thinned-{what}", f"wandb.plot.{what}: {len(rows)} points; the chart's table keeps "
              f"{MAX_ROWS} of them, evenly spaced per class (W&B keeps at most {MAX_ROWS} too)")
    return _curves.thin(rows, MAX_ROWS)


def _plain(values: Any) -> list[Any]:
    """Labels as Python values (numpy scalars and arrays compare and hash as their values)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


__all__ = [
    "CustomChart", "bar", "confusion_matrix", "histogram", "line", "line_series", "plot_table", "pr_curve",
    "roc_curve", "scatter",
]
