"""The charts ``wandb.plot.*`` logs, drawn by the dashboard's table panel in a real headless Chromium
(test_dashboard.py's browser and page fixtures) against a real ``tracklet server --dev``: each chart
is checked through the marks in the DOM, whose data-* attributes carry the values drawn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_dashboard import CHROMIUM, STATIC, allowed_errors, browser, page  # noqa: F401

import tracklet.compat.wandb as wandb

pytest.importorskip("duckdb")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]


@pytest.fixture(scope="module")
def charts_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("charts") / "data"
    quiet = wandb.Settings(console="off", x_disable_stats=True, disable_git=True, x_disable_meta=True)
    with wandb.init(project="charts", id="c", dir=str(root), settings=quiet):
        points = wandb.Table(columns=["epoch", "acc", "model"],
                             data=[[2, 0.5, "a"], [0, 0.1, "a"], [1, 0.3, "a"], [0, 0.2, "b"], [1, 0.6, "b"]])
        wandb.log({
            "acc": wandb.plot.line(points, "epoch", "acc", stroke="model", title="accuracy"),
            "pts": wandb.plot.scatter(points, "epoch", "acc"),
            "per_class": wandb.plot.bar(wandb.Table(columns=["cls", "n"], data=[["cat", 3], ["dog", 5]]), "cls", "n"),
            "cm": wandb.plot.confusion_matrix(y_true=[0, 1, 1, 1], preds=[0, 1, 1, 0], class_names=["no", "yes"]),
            "roc": wandb.plot.roc_curve([0, 0, 1, 1], [[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]],
                                        classes_to_plot=[1]),
            "plain": wandb.Table(columns=["x"], data=[[1]]),
        })
    return root


def _show(page, key: str) -> str:  # noqa: F811
    page.select_option(".tables-card select.tp-keys", key)
    figure = f".table-panel[data-key='{key}'] .tp-chart figure.tc"
    page.wait_for_selector(figure)
    return figure


def test_line_scatter_bar_confusion_matrix_and_roc_are_drawn_from_the_table(servers, charts_root, page):  # noqa: F811
    server = servers(charts_root, dev=True)
    page.goto(server.url + "/projects/charts/runs/c")
    page.wait_for_selector(".tables-card select.tp-keys")

    line = _show(page, "acc_table")
    assert page.text_content(f"{line} figcaption").startswith("accuracy")
    drawn = page.eval_on_selector_all(f"{line} path.tc-line",
                                      "paths => paths.map(p => [p.dataset.series, p.dataset.points])")
    # one line per model, its points in x order
    assert [(series, json.loads(points)) for series, points in drawn] == [
        ("a", [[0, 0.1], [1, 0.3], [2, 0.5]]), ("b", [[0, 0.2], [1, 0.6]])]

    scatter = _show(page, "pts_table")
    points = page.eval_on_selector_all(f"{scatter} circle.tc-point", "cs => cs.map(c => [+c.dataset.x, +c.dataset.y])")
    assert sorted(points) == [[0, 0.1], [0, 0.2], [1, 0.3], [1, 0.6], [2, 0.5]]

    bar = _show(page, "per_class_table")
    assert page.eval_on_selector_all(f"{bar} rect.tc-bar", "rs => rs.map(r => [r.dataset.label, +r.dataset.value])") == [
        ["cat", 3], ["dog", 5]]

    matrix = _show(page, "cm_table")
    cells = page.eval_on_selector_all(f"{matrix} rect.tc-cell",
                                      "rs => rs.map(r => [r.dataset.actual, r.dataset.predicted, +r.dataset.count])")
    assert sorted(cells) == [["no", "no", 1], ["no", "yes", 0], ["yes", "no", 1], ["yes", "yes", 2]]

    roc = _show(page, "roc_table")
    (curve,) = page.eval_on_selector_all(f"{roc} path.tc-line", "ps => ps.map(p => p.dataset.points)")
    assert json.loads(curve) == [[0, 0], [0, 0.5], [0.5, 0.5], [0.5, 1], [1, 1]]  # its steps kept in order

    # a table logged without a chart shows its grid alone
    page.select_option(".tables-card select.tp-keys", "plain")
    page.wait_for_selector(".table-panel[data-key='plain'][data-total='1']")
    assert page.is_hidden(".table-panel[data-key='plain'] .tp-chart")
