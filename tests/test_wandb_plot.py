"""``wandb.plot.*`` charts through tracklet's W&B layer: each is recorded as W&B records it, a table
under ``<key>_table`` (queryable with ``run.table``, and readable through ``wandb.Api`` as W&B's
``run-<id>-<key>_table`` artifact) plus the chart over its columns; the PR and ROC curves match
hand-computed points and an independent threshold sweep."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tracklet
import tracklet.compat.wandb as wandb
from tracklet.compat.wandb import _curves

# scikit-learn's documented example: two negatives, two positives
Y_TRUE = [0, 0, 1, 1]
Y_PROBAS = [[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]]


@pytest.fixture
def here(root, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    monkeypatch.chdir(tmp_path)
    return root


def _log_every_chart() -> str:
    with wandb.init(project="charts") as run:
        points = wandb.Table(columns=["epoch", "acc", "model"], data=[[e, e / 10, m] for m in "ab" for e in range(3)])
        wandb.log({
            "acc": wandb.plot.line(points, "epoch", "acc", stroke="model", title="accuracy"),
            "pts": wandb.plot.scatter(points, "epoch", "acc"),
            "per_class": wandb.plot.bar(wandb.Table(columns=["cls", "n"], data=[["cat", 3], ["dog", 5]]), "cls", "n",
                                        title="counts"),
            "hist": wandb.plot.histogram(wandb.Table(columns=["score"], data=[[0.1], [0.5], [0.5]]), "score"),
            "series": wandb.plot.line_series(xs=[0, 1, 2], ys=[[1, 2, 3], [3, 2, 1]], keys=["up", "down"],
                                             title="two", xname="epoch"),
            "cm": wandb.plot.confusion_matrix(y_true=[0, 1, 1, 2], preds=[0, 1, 2, 2], class_names=["a", "b", "c"]),
            "pr": wandb.plot.pr_curve(Y_TRUE, Y_PROBAS, labels=["neg", "pos"], interp_size=5),
            "roc": wandb.plot.roc_curve(Y_TRUE, Y_PROBAS, classes_to_plot=[1]),
            "loss": 0.5,
        })
        wandb.log({"split": wandb.plot.scatter(points, "epoch", "acc", split_table=True),
                   "eval": {"curve": wandb.plot.line(points, "epoch", "acc")}})  # nested: flattened
    return run.id


def test_every_chart_is_recorded_as_its_table_with_the_chart_and_nothing_is_warned(here):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_id = _log_every_chart()
    assert not [str(w.message) for w in caught if "wandb compat" in str(w.message)]
    recorded = tracklet.Api(here).run(f"charts/{run_id}")
    assert set(recorded.table_keys()) == {"acc_table", "pts_table", "per_class_table", "hist_table", "series_table",
                                          "cm_table", "pr_table", "roc_table", "Custom Chart Tables/split_table",
                                          "eval/curve_table"}
    assert next(recorded.history().rows())["loss"] == 0.5  # the rest of the row is history as usual

    charts = {key: recorded.table(key).chart for key in recorded.table_keys()}
    shape = {key: (c["kind"], c["x"], c["y"], c["series"], c["value"], c["title"], c["chart_key"])
             for key, c in charts.items()}
    assert shape == {
        "acc_table": ("line", "epoch", "acc", "model", "", "accuracy", "acc"),
        "pts_table": ("scatter", "epoch", "acc", "", "", "", "pts"),
        "per_class_table": ("bar", "cls", "n", "", "", "counts", "per_class"),
        "hist_table": ("histogram", "score", "", "", "", "", "hist"),
        "series_table": ("line_series", "step", "lineVal", "lineKey", "", "two", "series"),
        "cm_table": ("confusion_matrix", "Predicted", "Actual", "", "nPredictions", "Confusion Matrix Curve", "cm"),
        "pr_table": ("pr_curve", "recall", "precision", "class", "", "Precision-Recall Curve", "pr"),
        "roc_table": ("roc_curve", "fpr", "tpr", "class", "", "ROC Curve", "roc"),
        "Custom Chart Tables/split_table": ("scatter", "epoch", "acc", "", "", "", "split"),
        "eval/curve_table": ("line", "epoch", "acc", "", "", "", "eval/curve"),
    }
    assert charts["series_table"]["x_title"] == "epoch" and charts["pr_table"]["y_title"] == "Precision"
    assert charts["acc_table"]["spec"] == "wandb/line/v0"
    assert charts["acc_table"]["fields"] == {"x": "epoch", "y": "acc", "stroke": "model"}

    series = recorded.table("series_table").to_pandas()
    assert series.values.tolist() == [[0, "up", 1], [1, "up", 2], [2, "up", 3], [0, "down", 3], [1, "down", 2],
                                      [2, "down", 1]]
    cm = recorded.table("cm_table").filter("nPredictions > 0").to_pandas()
    assert cm.values.tolist() == [["a", "a", 1], ["b", "b", 1], ["b", "c", 1], ["c", "c", 1]]
    assert len(recorded.table("cm_table")) == 9  # every (actual, predicted) pair, as W&B's
    # a plain table logged by itself carries no chart
    with wandb.init(project="charts") as run:
        wandb.log({"t": wandb.Table(columns=["a"], data=[[1]])})
    assert tracklet.Api(here).run(f"charts/{run.id}").table("t").chart is None


def test_pr_and_roc_curves_match_hand_computed_points(here):
    run_id = _log_every_chart()
    recorded = tracklet.Api(here).run(f"charts/{run_id}")
    # class 1 ("pos"), thresholds 0.8, 0.4, 0.35, 0.1: precision 1, 1/2, 2/3, 1/2 at recall 1/2, 1/2, 1, 1;
    # made non-increasing in recall and read at recall 1, .75, .5, .25, 0
    pr = recorded.table("pr_table").to_pandas()
    assert pr.values.tolist() == [
        ["neg", 0.667, 1.0], ["neg", 0.667, 0.75], ["neg", 1.0, 0.5], ["neg", 1.0, 0.25], ["neg", 1.0, 0.0],
        ["pos", 0.667, 1.0], ["pos", 0.667, 0.75], ["pos", 1.0, 0.5], ["pos", 1.0, 0.25], ["pos", 1.0, 0.0],
    ]
    # scikit-learn's documented answer: fpr [0, 0, .5, .5, 1], tpr [0, .5, .5, 1, 1]; only class 1 plotted
    roc = recorded.table("roc_table").to_pandas()
    assert roc.values.tolist() == [[1, 0.0, 0.0], [1, 0.0, 0.5], [1, 0.5, 0.5], [1, 0.5, 1.0], [1, 1.0, 1.0]]


def _swept(positives: np.ndarray, scores: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, fpr, tpr) at every distinct score, by counting: an independent reference."""
    out = []
    for threshold in sorted(set(scores.tolist()), reverse=True):
        above = scores >= threshold
        out.append((threshold, (above & ~positives).sum() / (~positives).sum(), (above & positives).sum() / positives.sum()))
    return out


def test_the_curves_agree_with_a_threshold_sweep_on_random_scores():
    rng = np.random.default_rng(7)
    for _ in range(20):
        positives = rng.random(300) < 0.3
        scores = np.round(rng.random(300), 2)  # ties, as real scores have
        swept = _swept(positives, scores)
        fpr, tpr = _curves.roc(positives, scores)
        points = set(zip(np.round(fpr, 9), np.round(tpr, 9)))
        every = {(round(f, 9), round(t, 9)) for _, f, t in swept}
        assert points <= every | {(0.0, 0.0)} and (0.0, 0.0) in points and (1.0, 1.0) in points
        # the corners kept: each point dropped lies on the segment between its kept neighbours
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)

        precision, recall = _curves.interpolated_pr(positives, scores, 11)
        total = positives.sum()
        for p, r in zip(precision, recall):
            # the best precision at any threshold whose recall reaches r (recall 0: precision 1); a recall
            # compares as the float it is, as in W&B (through scikit-learn)
            best = max([(above & positives).sum() / above.sum() for t in set(scores.tolist())
                        for above in [scores >= t] if (above & positives).sum() / total >= r] + [0.0])
            assert p == pytest.approx(1.0 if r == 0 else best)


def test_charts_read_back_through_wandb_api_as_w_and_b_names_them(here):
    run_id = _log_every_chart()
    api = wandb.Api()
    artifact = api.artifact(f"someone/charts/run-{run_id}-cm_table:latest")
    table = artifact.get("cm_table")
    assert isinstance(table, wandb.Table) and table.columns == ["Actual", "Predicted", "nPredictions"]
    assert table.data[:2] == [["a", "a", 1], ["a", "b", 0]]
    assert artifact.version == "v0" and artifact.get("other") is None
    assert api.artifact(f"charts/run-{run_id}-pr_table:v0").get("pr_table").get_column("recall")[:2] == [1.0, 0.75]
    with pytest.raises(wandb.errors.CommError):
        api.artifact(f"charts/run-{run_id}-cm_table:v1")
    with pytest.raises(wandb.errors.CommError):
        api.artifact(f"charts/run-{run_id}-nosuch_table:latest")


def test_bad_chart_input_is_named_as_w_and_b_names_it(here):
    with pytest.raises(wandb.Error, match="Expected `data_table` to be `wandb.Table`"):
        wandb.plot.line(None, "x", "y")
    with pytest.raises(ValueError, match="must be equal"):
        wandb.plot.confusion_matrix(y_true=[0, 1], preds=[0])
    with pytest.raises(ValueError, match="label 5 is not a class index 0..1"):
        wandb.plot.confusion_matrix(y_true=[0, 5], preds=[0, 1], class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"y_probas must have shape \(n_samples, n_classes\)"):
        wandb.plot.roc_curve([0, 1, 1], [0.2, 0.7, 0.9])
    with pytest.warns(tracklet.errors.TrackletWarning, match="missing values") as caught:
        assert wandb.plot.pr_curve([0, 1], [[0.5, np.nan], [0.2, 0.8]]) is None
    assert caught[0].filename == __file__  # the warning points at the script's line


def test_a_server_serves_the_chart_with_the_table(here, servers):
    run_id = _log_every_chart()
    server = servers(here, dev=True)
    table = tracklet.Api(base_url=server.url).run(f"charts/{run_id}").table("roc_table")
    assert table.chart == tracklet.Api(here).run(f"charts/{run_id}").table("roc_table").chart
    assert (table.chart["kind"], table.chart["x"], table.chart["y"]) == ("roc_curve", "fpr", "tpr")
    assert tracklet.Api(base_url=server.url).run(f"charts/{run_id}").table("pts_table").filter("acc > 1").chart[
        "kind"] == "scatter"


def test_a_value_logged_while_another_thread_imports_pandas_is_not_taken_for_a_dataframe(tmp_path, monkeypatch):
    """tracklet's own threads import pandas (pyarrow converting a logged table's rows does) while
    the training thread logs the next value and asks whether it is a DataFrame: ``sys.modules``
    then holds pandas without its names. A ``wandb.plot.confusion_matrix`` logged right after a
    table, in a script that had not imported pandas, was dropped with "partially initialized module
    'pandas' has no attribute 'DataFrame'". Here "pandas" is a real module whose import is still
    running when the check is made."""
    import sys

    from tracklet.compat.wandb.data_types import is_dataframe
    from tracklet.core.modules import loaded

    (tmp_path / "halfway.py").write_text(
        "import sys\n"
        "from tracklet.compat.wandb.data_types import is_dataframe\n"
        "from tracklet.core.modules import loaded\n"
        "SEEN = loaded(__name__)\n"
        "real, sys.modules['pandas'] = sys.modules.get('pandas'), sys.modules[__name__]\n"
        "try:\n"
        "    ANSWER = is_dataframe(object())\n"
        "finally:\n"
        "    sys.modules['pandas'] = real\n"
        "class DataFrame:\n"
        "    pass\n"
    )
    pd = pytest.importorskip("pandas")
    monkeypatch.syspath_prepend(str(tmp_path))
    import halfway

    monkeypatch.delitem(sys.modules, "halfway")
    assert halfway.SEEN is None and halfway.ANSWER is False and loaded(halfway.__name__) is None
    assert sys.modules["pandas"] is pd and is_dataframe(pd.DataFrame({"a": [1]})) and loaded("pandas") is pd
