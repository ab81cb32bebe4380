"""The sweep pages of the dashboard in real Chromium (issue #17), over a real local sweep: a grid of
6 trials run by `tracklet agent`'s code with two workers (two agents), one trial failing, served by
`tracklet ui`. The charts are read from their SVG and from `window.__tracklet.probe("sweep")`.
Fixtures (browser, page, the ui process) are tests/test_dashboard.py's."""

from __future__ import annotations

import textwrap

import pytest
import test_dashboard
from conftest import QUIET, REPO
from test_dashboard import probe, start_ui

import tracklet

pytest.importorskip("optuna", reason="pip install 'tracklet[sweeps]'")
pytestmark = [*test_dashboard.pytestmark, pytest.mark.slow]
browser, page, allowed_errors = test_dashboard.browser, test_dashboard.page, test_dashboard.allowed_errors  # fixtures

PROGRAM = """
    import sys, tracklet
    run = tracklet.init()
    f = run.config["lr"] * 100 + {"adam": 0, "sgd": 1, "rmsprop": 2}[run.config["opt"]]
    run.log({"f": f})
    if run.config["opt"] == "rmsprop" and run.config["lr"] == 0.01:
        sys.exit(1)  # diverged: a failed trial
"""
CONFIG = {"method": "grid", "metric": {"name": "f", "goal": "minimize"},
          "parameters": {"opt": {"values": ["adam", "sgd", "rmsprop"]}, "lr": {"values": [0.001, 0.01]}}}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A data root with project `sw`: the grid sweep's 6 trial runs (one failed) and a plain run."""
    from tracklet.sweeps.agent import Agent
    from tracklet.sweeps.controller import LocalController, create_sweep

    root = tmp_path_factory.mktemp("sweeps") / "data"
    program = root.parent / "train.py"
    program.write_text(textwrap.dedent(PROGRAM))
    sweep_id = create_sweep(root, {**CONFIG, "program": str(program)}, project="sw")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"PYTHONPATH": str(REPO), "TRACKLET_CONSOLE": "off", "TRACKLET_SYSTEM_METRICS": "false",
                            "TRACKLET_CAPTURE_ENVIRONMENT": "false"}.items():
            patch.setenv(name, value)
        report = Agent(LocalController(root, sweep_id), gpus=["0", "1"], gpus_per_trial=1,
                       log=lambda line: None).run_commands()
    assert sorted(result.state for result in report.results) == ["complete"] * 5 + ["failed"]
    plain = tracklet.init(project="sw", id="plain", dir=str(root), settings=QUIET)
    plain.log({"f": 9.0})
    plain.finish()
    return root, sweep_id


@pytest.fixture
def ui(swept):
    root, _ = swept
    process, url, token = start_ui(root)
    yield url, token
    process.terminate()
    process.wait(timeout=10)


def test_sweep_page_shows_trials_parallel_coordinates_best_so_far_and_agent_lanes(swept, ui, page):
    _, sweep_id = swept
    url, token = ui
    page.goto(url + "projects/sw?token=" + token)
    link = page.wait_for_selector(f".sweeps-list li[data-sweep='{sweep_id}'] a")
    assert "grid, 6 trials, best f 0.1" in page.text_content(f".sweeps-list li[data-sweep='{sweep_id}']")
    link.click()
    page.wait_for_selector("table.trials tbody tr")
    assert page.url == f"{url}projects/sw/sweeps/{sweep_id}"
    assert page.locator("table.trials tbody tr").count() == 6
    states = page.eval_on_selector_all("table.trials tbody tr", "rows => rows.map(r => r.dataset.state)")
    assert sorted(states) == ["complete"] * 5 + ["failed"]
    assert page.text_content(".sweep-overview [data-field='best']").startswith("0.1 (trial")

    # parallel coordinates: a polyline per trial; the categorical axis in the spec's order, then lr, then f
    assert page.locator("svg.sweep-parcoords polyline.trial").count() == 6
    axes = page.eval_on_selector_all("svg.sweep-parcoords g.axis", "axes => axes.map(a => [a.dataset.key, "
                                     "a.dataset.kind, [...a.querySelectorAll('.tick')].map(t => t.textContent)])")
    assert axes == [["opt", "category", ["adam", "sgd", "rmsprop"]], ["lr", "number", ["0.001", "0.01"]],
                    ["", "number", ["0.1", "2.1"]]]
    points = page.eval_on_selector_all("svg.sweep-parcoords polyline.trial", "lines => lines.map(l => "
                                       "[l.dataset.state, l.getAttribute('points').split(' ').length])")
    assert sorted(points) == [["complete", 3]] * 5 + [["failed", 2]]  # a failed trial has no metric point
    drawn = probe(page, "sweep")
    assert drawn["trials"] == 6 and len(drawn["lines"]) == 6

    # best so far: one point per complete trial, never worse than before
    best = drawn["best"]
    assert len(best["values"]) == 5 and page.locator("svg.best-so-far circle.trial-point").count() == 5
    assert best["best"] == [min(best["values"][:i + 1]) for i in range(5)]
    assert all(later <= earlier for earlier, later in zip(best["best"], best["best"][1:]))
    assert best["best"][-1] == pytest.approx(0.1)

    # the timeline: one lane per agent, every trial a bar in its agent's lane
    lanes = page.eval_on_selector_all("svg.timeline g.lane", "lanes => lanes.map(l => [l.dataset.agent, "
                                      "l.querySelectorAll('rect.trial-bar').length])")
    assert len(lanes) == 2 and sum(count for _, count in lanes) == 6
    assert {agent[-2:] for agent, _ in lanes} == {"-0", "-1"}  # the agent's two workers
    assert [lane["agent"] for lane in drawn["lanes"]] == [agent for agent, _ in lanes]

    page.wait_for_selector(".importance-row")
    assert sorted(page.eval_on_selector_all(".importance-row", "rows => rows.map(r => r.dataset.name)")) == ["lr", "opt"]

    # sorting the trials by value: best first, the failed trial (no value) last either way
    page.click("table.trials th[data-col='value']")
    values = page.eval_on_selector_all("table.trials tbody td[data-col='value']", "cells => cells.map(c => c.textContent)")
    assert values[0] == "0.1" and values[-1] == "" and "sort=value" in page.url
    page.click("table.trials th[data-col='value']")
    values = page.eval_on_selector_all("table.trials tbody td[data-col='value']", "cells => cells.map(c => c.textContent)")
    assert values[0] == "2.1" and values[-1] == ""
    test_dashboard.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(test_dashboard.ARTIFACTS / "sweep-page.png"), full_page=True)
    page.click("table.trials tbody tr:first-child td[data-col='run'] a")
    page.wait_for_selector(".overview [data-field='state']")
    assert f"/projects/sw/runs/{sweep_id}-" in page.url
    page.click("a.run-sweep")  # the run page links back to its sweep
    page.wait_for_selector("table.trials tbody tr")
    assert page.url == f"{url}projects/sw/sweeps/{sweep_id}"


def test_runs_table_groups_runs_by_sweep(swept, ui, page):
    _, sweep_id = swept
    url, token = ui
    page.goto(url + "projects/sw?token=" + token)
    page.wait_for_selector(".tr[data-run='plain']")
    page.wait_for_selector("select.group-by option[value='@sweep']", state="attached")
    page.select_option("select.group-by", "@sweep")
    page.wait_for_selector(".group-row")
    groups = page.eval_on_selector_all(".group-row", "rows => rows.map(r => r.textContent)")
    assert len(groups) == 2 and f"sweep {sweep_id}" in groups[0] and "6" in groups[0] and "no sweep" in groups[1]
    assert "group=%40sweep" in page.url or "group=@sweep" in page.url
    page.goto(url + f"projects/sw/sweeps/{sweep_id}")
    page.click("a.sweep-runs")
    page.wait_for_function("() => document.querySelectorAll('.tr').length === 6")
    assert page.eval_on_selector(".filter", "input => input.value") == f'tags contains "sweep:{sweep_id}"'


def test_an_unknown_sweep_says_so(swept, ui, page, allowed_errors):
    allowed_errors.append("status of 404")
    url, token = ui
    page.goto(url + "projects/sw/sweeps/nosuchsweep?token=" + token)
    page.wait_for_selector("p.error")
    assert "no sweep 'nosuchsweep' in project 'sw' (HTTP 404)" in page.text_content("p.error")


def test_a_running_sweep_updates_without_a_reload(root, monkeypatch, page):
    from tracklet.sweeps.controller import LocalController, create_sweep

    sweep_id = create_sweep(root, {"method": "random", "seed": 2, "metric": {"name": "loss"},
                                   "parameters": {"lr": {"min": 0.0, "max": 1.0}}}, project="live")
    controller = LocalController(root, sweep_id)
    first = controller.next_trial("agent-a", ttl=600)
    process, url, token = start_ui(root)
    try:
        page.goto(url + f"projects/live/sweeps/{sweep_id}?token=" + token)
        page.wait_for_selector("table.trials tbody tr[data-trial='0'][data-state='running']")
        assert page.locator("svg.timeline rect.trial-bar[data-state='running']").count() == 1
        assert page.text_content("svg.best-so-far") == "No complete trial yet."
        monkeypatch.setenv("TRACKLET_SWEEP_ID", sweep_id)  # what the agent gives a trial's process
        monkeypatch.setenv("TRACKLET_SWEEP_TRIAL", "0")
        run = tracklet.init(dir=str(root), settings=QUIET)
        run.log({"loss": 0.5})
        run.finish()
        assert controller.finish(first, 0).state == "complete"
        controller.next_trial("agent-b", ttl=600)
        page.wait_for_selector("table.trials tbody tr[data-trial='0'][data-state='complete']")
        page.wait_for_function("() => document.querySelectorAll('svg.timeline g.lane').length === 2")
        assert probe(page, "sweep")["best"]["best"] == [0.5]
        assert page.locator("table.trials tbody tr").count() == 2
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_trial_suggested_at_random_while_the_gp_imported_is_marked_in_the_trials_table(root, tmp_path, monkeypatch,
                                                                                         page):
    """A bayes trial past the start-up trials that was suggested at random because the GP's
    modules were still importing (``random_while_gp_imports``) carries a "random" mark in the
    sweep page's trials table; the start-up trials and the GP's own don't. One of the imports here
    blocks until the test releases it (tests/gp_gate.py), so trial 10 is such a trial."""
    from gp_gate import block_gp_imports, trials_while_blocked

    from tracklet.sweeps.controller import Lease, LocalController, create_sweep

    release = block_gp_imports(tmp_path, monkeypatch)
    sweep_id = create_sweep(root, {"method": "bayes", "seed": 0, "metric": {"name": "f"},
                                   "parameters": {"x": {"min": 0.0, "max": 1.0}}}, project="gp")
    controller = LocalController(root, sweep_id)
    loading = controller.prepare()
    assert loading is not None

    def run_trial() -> None:
        lease = controller.next_trial("agent")
        assert isinstance(lease, Lease)
        controller.tell(lease, (lease.config["x"] - 0.3) ** 2)

    trials_while_blocked(run_trial, 11, release, loading)  # 10 start-up trials, 1 the GP would fit; then the GP's
    process, url, token = start_ui(root)
    try:
        page.goto(url + f"projects/gp/sweeps/{sweep_id}?token=" + token)
        page.wait_for_selector("table.trials tbody tr[data-trial='11']")
        marked = page.eval_on_selector_all("table.trials tbody tr:has(.gp-importing)", "rows => rows.map(r => r.dataset.trial)")
        assert marked == ["10"]
        mark = page.locator("tr[data-trial='10'] td[data-col='state'] .gp-importing")
        assert mark.text_content() == "random"
        assert "still importing" in mark.get_attribute("title")
    finally:
        process.terminate()
        process.wait(timeout=10)
