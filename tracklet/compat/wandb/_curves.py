"""The curves ``wandb.plot.pr_curve`` and ``roc_curve`` draw, computed with numpy alone.

W&B computes them with scikit-learn (``precision_recall_curve``, ``roc_curve`` with its default
``drop_intermediate=True``) and then, for the PR curve, makes precision monotone and reads it at
``interp_size`` evenly spaced recall points. The same definitions are here, so the tables match
W&B's without the scikit-learn dependency: one class against the rest, one threshold per distinct
score (highest first), counting the true and false positives at or above it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from tracklet.compat.wandb._messages import warn_once

Curve = Callable[[Any, Any], tuple[Any, Any]]


def positives_above(positives: Any, scores: Any) -> tuple[Any, Any]:
    """``(false positives, true positives)`` at each distinct score taken as the threshold,
    highest first (scikit-learn's ``_binary_clf_curve``)."""
    import numpy as np

    order = np.argsort(-scores, kind="mergesort")
    ordered, hits = scores[order], positives[order].astype(np.float64)
    last_of_each = np.r_[np.where(np.diff(ordered))[0], hits.size - 1]
    true_positives = np.cumsum(hits)[last_of_each]
    return 1 + last_of_each - true_positives, true_positives


def interpolated_pr(positives: Any, scores: Any, points: int) -> tuple[Any, Any]:
    """``(precision, recall)`` at ``points`` recall values from 1 down to 0, as W&B's pr_curve:
    precision is made non-increasing in recall (the best precision at any higher recall), then
    read at the first curve point whose recall reaches each value."""
    import numpy as np

    false_positives, true_positives = positives_above(positives, scores)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / true_positives[-1] if true_positives[-1] else np.ones_like(true_positives)
    # scikit-learn's order (recall falling), ending at recall 0 with precision 1
    precision, recall = np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]
    precision = np.maximum.accumulate(precision)[::-1]
    recall = recall[::-1]
    wanted = np.linspace(0, 1, points)[::-1]
    return precision[np.searchsorted(recall, wanted, side="left")], wanted


def roc(positives: Any, scores: Any) -> tuple[Any, Any]:
    """``(false positive rate, true positive rate)`` from (0, 0), leaving out the points on a
    straight segment (scikit-learn's ``drop_intermediate``); NaN rates for a class with no
    negatives (or positives), as scikit-learn gives."""
    import numpy as np

    false_positives, true_positives = positives_above(positives, scores)
    if false_positives.size > 2:
        corners = np.r_[True, np.logical_or(np.diff(false_positives, 2), np.diff(true_positives, 2)), True]
        false_positives, true_positives = false_positives[corners], true_positives[corners]
    false_positives, true_positives = np.r_[0, false_positives], np.r_[0, true_positives]
    with np.errstate(divide="ignore", invalid="ignore"):
        return false_positives / false_positives[-1], true_positives / true_positives[-1]


def per_class(y_true: Any, y_probas: Any, labels: Sequence[str] | None, classes_to_plot: Any, what: str,
              curve: Curve) -> list[list[Any]] | None:
    """``[class, a, b]`` rows of ``curve`` for each class of ``y_true`` (those in
    ``classes_to_plot``), scored by its column of ``y_probas`` (the class's place among the
    sorted classes), rounded to 3 places as W&B's; a class is named ``labels[class]`` when the
    classes are integers. None, with a warning, when values are missing (W&B returns None too)."""
    import numpy as np

    if y_true is None or y_probas is None:
        warn_once(f"plot-missing-{what}", f"wandb.plot.{what}() needs y_true and y_probas; nothing was plotted "
                  "(it returned None, as W&B's does)")
        return None
    truth = np.asarray(y_true)
    try:
        probas = np.asarray(y_probas, dtype=np.float64)
    except (TypeError, ValueError):
        probas = None
    if probas is None or (truth.dtype == object and any(value is None for value in truth.ravel())) \
            or np.isnan(probas).any():
        warn_once(f"plot-missing-{what}", f"wandb.plot.{what}(): y_true or y_probas holds missing values; nothing "
                  "was plotted (it returned None, as W&B's does)")
        return None
    classes = np.unique(truth)
    if probas.ndim != 2 or probas.shape[0] != truth.shape[0] or probas.shape[1] < classes.size:
        raise ValueError(f"wandb.plot.{what}: y_probas must have shape (n_samples, n_classes), one column per class "
                         f"of y_true ({truth.shape[0]} samples, {classes.size} classes); got shape {probas.shape}")
    wanted = classes if classes_to_plot is None else classes_to_plot
    integer_classes = np.issubdtype(classes.dtype, np.integer)
    rows: list[list[Any]] = []
    for index in np.where(np.isin(classes, wanted))[0]:
        value = classes[index].item()
        name = labels[value] if labels is not None and integer_classes else value
        first, second = curve(truth == classes[index], probas[:, index])
        rounded = np.round(np.vstack([first, second]), 3).tolist()  # as W&B's DataFrame.round(3)
        rows.extend([name, a, b] for a, b in zip(rounded[0], rounded[1]))
    return rows


def thin(rows: list[list[Any]], limit: int) -> list[list[Any]]:
    """About ``limit`` of ``rows``: evenly spaced within each class (its first and last kept)."""
    import numpy as np

    by_class: dict[Any, list[list[Any]]] = {}
    for row in rows:
        by_class.setdefault(row[0], []).append(row)
    kept: list[list[Any]] = []
    for members in by_class.values():
        count = max(2, len(members) * limit // len(rows))
        chosen = np.unique(np.linspace(0, len(members) - 1, min(count, len(members))).round().astype(int))
        kept.extend(members[index] for index in chosen)
    return kept


__all__ = ["interpolated_pr", "per_class", "positives_above", "roc", "thin"]
