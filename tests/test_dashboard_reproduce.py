"""The run page's Reproduce button and the two-run comparison page (#21) in a real headless
Chromium (test_dashboard.py's fixtures) against `tracklet ui` over a data root whose two runs were
recorded in a real git repository made in the test (the second with a changed config)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dashboard import ARTIFACTS, CHROMIUM, STATIC, allowed_errors, browser, page, start_ui  # noqa: F401

import tracklet

from test_reproduce import SIMPLE, _committed_repo, git, record

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]


SEEDED = SIMPLE.replace("import tracklet\n", "import random\nimport tracklet\nimport numpy\nrandom.seed(3)\n"
                                             "numpy.random.seed(4)\n")


def test_reproduce_shows_the_command_and_compare_shows_the_config_difference(root, tmp_path, page):  # noqa: F811
    repo = _committed_repo(tmp_path)
    (repo / "train.py").write_text(SEEDED)  # an uncommitted change: the runs seed
    record(repo)
    (repo / "train.py").write_text(SEEDED.replace("'lr': 0.1", "'lr': 0.2"))
    record(repo)
    first, second = sorted(tracklet.Api(root).runs("repro"), key=lambda r: r.created_at or 0)
    commit = git(repo, "rev-parse", "HEAD").strip()
    ui, url, token = start_ui(root)
    try:
        page.goto(f"{url}projects/repro/runs/{first.id}?token={token}")
        page.click("button.reproduce")
        command = page.wait_for_selector(".reproduce-plan .reproduce-command")
        assert command.text_content() == f"tracklet --dir {root} reproduce repro/{first.id}"
        assert page.get_attribute(".reproduce-plan", "data-ok") == "true"
        assert f"at {commit[:12]}" in page.text_content(".reproduce-steps")
        seeds = page.query_selector_all(".reproduce-seeds table.seeds tbody tr")
        assert [(row.query_selector("td.api").text_content(), row.query_selector("td.value").text_content())
                for row in seeds] == [("random.seed", "3"), ("numpy.random.seed", "4")]
        assert "Not known: any seed given to random before `import tracklet`" in page.text_content(".reproduce-seeds")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator(".reproduce-card").screenshot(path=str(ARTIFACTS / "reproduce-card.png"))

        page.wait_for_selector(f"select.compare-with option[value='{second.id}']", state="attached")
        page.select_option("select.compare-with", second.id)
        page.wait_for_url(f"**/projects/repro/run-diff?a={first.id}&b={second.id}")
        row = page.wait_for_selector(".diff-config tr[data-key='lr']")
        assert (row.query_selector("td.a").text_content(), row.query_selector("td.b").text_content()) == ("0.1", "0.2")
        assert "+run = tracklet.init(project='repro', config={'lr': 0.2})" in page.text_content(".code-diff")
        page.reload()  # the comparison's address lands on the same page
        page.wait_for_selector(".diff-config tr[data-key='lr']")
    finally:
        ui.terminate()
        ui.wait(timeout=10)
