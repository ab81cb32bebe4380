"""The Compare tab's media grid (docs/dashboard.md) in a real headless Chromium (test_dashboard.py's
browser and page fixtures) against a real `tracklet ui` over runs logged by tracklet: a column per
selected run shows that run's image at the latest step at or before the slider's, with the logged
pixels as the browser decoded them; a logged list is paged; audio plays; the view survives a reload;
a live run's new steps appear without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import QUIET
from test_dashboard import CHROMIUM, STATIC, allowed_errors, browser, page, start_live_writer, start_ui  # noqa: F401

import tracklet

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]

A_STEPS = list(range(10))
B_STEPS = [0, 3, 6, 9]


def _colour(run: str, step: int) -> list[int]:
    return [20 * step, 0, 100] if run == "a" else [0, 20 * step, 200]


def _solid(run: str, step: int) -> np.ndarray:
    return np.full((16, 24, 3), _colour(run, step), dtype=np.uint8)


def _record(root: Path) -> None:
    """a (alpha): `pred` at steps 0-9, a list of 6 `samples` at step 5, a 600x300 `wide` at step 0; b (beta):
    `pred` at 0, 3, 6, 9, `speech`."""
    run = tracklet.init(project="mc", id="a", name="alpha", dir=str(root), settings=QUIET)
    for step in A_STEPS:
        row = {"pred": tracklet.Image(_solid("a", step), caption=f"alpha {step}"), "loss": 1.0}
        if step == 5:
            row["samples"] = [tracklet.Image(_solid("b", i), caption=f"sample {i}") for i in range(6)]
        if step == 0:
            row["wide"] = tracklet.Image(np.full((300, 600, 3), (10, 200, 30), dtype=np.uint8))
        run.log(row, step=step)
    run.finish()
    run = tracklet.init(project="mc", id="b", name="beta", dir=str(root), settings=QUIET)
    for step in B_STEPS:
        row = {"pred": tracklet.Image(_solid("b", step), caption=f"beta {step}"), "loss": 2.0}
        if step == 9:
            row["speech"] = tracklet.Audio(np.sin(np.arange(8000) / 10).astype(np.float32), sample_rate=8000)
        run.log(row, step=step)
    run.finish()


_COLOUR_AT = ("sel => { const img = document.querySelector(sel + ' img.media-image'); "
              "const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight; "
              "const g = c.getContext('2d'); g.drawImage(img, 0, 0); return Array.from(g.getImageData(3, 3, 1, 1).data); }")


def _column(run: str) -> str:
    return f".mc-grid[data-key='pred'] .mc-col[data-run='{run}']"


def _shown(tab, run: str, step: int) -> list[int]:
    """Wait until run's column shows its item of ``step`` decoded, and answer its pixel colour."""
    column = _column(run)
    tab.wait_for_selector(f"{column}[data-step='{step}'] figure[data-step='{step}'] img.media-image")
    tab.wait_for_function("sel => { const i = document.querySelector(sel + ' img.media-image'); "
                          "return i && i.complete && i.naturalWidth === 24 }", arg=f"{column}[data-step='{step}']")
    return tab.evaluate(_COLOUR_AT, column)


def _slide(tab, index: int) -> None:
    tab.eval_on_selector(".compare-media input.mc-step",
                         "(s, i) => { s.value = String(i); s.dispatchEvent(new Event('input')); }", index)


def test_the_media_grid_shows_each_runs_image_at_the_slider_step(root, page):  # noqa: F811
    _record(root)
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "?token=" + token)
        page.wait_for_selector("ul.projects a:text('mc')")
        page.goto(url + "projects/mc?sel=a,b&tab=compare")
        # By default the first key and each run's last step.
        page.wait_for_selector(".compare-media button.mc-key.on[data-key='pred']")
        assert sorted(page.eval_on_selector_all(".compare-media button.mc-key", "b => b.map(x => x.dataset.key)")) == [
            "pred", "samples", "speech", "wide"]
        assert _shown(page, "a", 9)[:3] == _colour("a", 9) and _shown(page, "b", 9)[:3] == _colour("b", 9)
        assert page.eval_on_selector_all(".mc-grid .mc-col", "cs => cs.map(c => [c.dataset.run, "
                                         "c.querySelector('.mc-name').textContent])") == [["a", "alpha"], ["b", "beta"]]
        swatches = page.eval_on_selector_all(".mc-grid .mc-col .swatch", "s => s.map(x => x.style.background)")
        assert len(set(swatches)) == 2  # each run in its own colour

        # The slider runs over the union of the steps: 0-9. At 4, b shows its step 3 and says so.
        assert page.eval_on_selector(".compare-media input.mc-step", "s => Number(s.max)") == 9
        _slide(page, 4)
        assert _shown(page, "a", 4)[:3] == _colour("a", 4)
        assert _shown(page, "b", 3)[:3] == _colour("b", 3)
        assert page.text_content(f"{_column('b')} .mc-shown") == "step 3 (latest at or before 4)"
        assert page.text_content(f"{_column('a')} figcaption") == "alpha 4"
        assert page.text_content(".compare-media .mc-step-label") == "step 4 (5 of 10 steps)"
        _slide(page, 7)
        assert _shown(page, "a", 7)[:3] == _colour("a", 7) and _shown(page, "b", 6)[:3] == _colour("b", 6)
        assert "mkey=pred" in page.url and "mstep=7" in page.url

        # The view is in the URL: a reload shows step 7 again.
        page.reload()
        assert _shown(page, "a", 7)[:3] == _colour("a", 7) and _shown(page, "b", 6)[:3] == _colour("b", 6)

        # A logged list: its count and pages; a run without the key says so.
        page.click(".compare-media button.mc-key[data-key='samples']")
        list_col = ".mc-grid[data-key='samples'] .mc-col[data-run='a']"
        page.wait_for_selector(f"{list_col}[data-step='5'] .mc-pager")
        assert page.text_content(f"{list_col} .mc-range") == "1–4 of 6"
        assert page.eval_on_selector_all(f"{list_col} figure", "f => f.map(x => x.dataset.index)") == ["0", "1", "2", "3"]
        assert page.text_content(".mc-grid[data-key='samples'] .mc-col[data-run='b'] .mc-shown") == "no samples logged"
        page.click(f"{list_col} button.mc-next")
        page.wait_for_function("sel => document.querySelector(sel + ' .mc-range').textContent === '5–6 of 6'", arg=list_col)
        assert page.eval_on_selector_all(f"{list_col} figure", "f => f.map(x => x.dataset.index)") == ["4", "5"]
        assert page.eval_on_selector_all(f"{list_col} figcaption", "f => f.map(x => x.textContent)") == [
            "sample 4", "sample 5"]

        # Audio plays: the browser decoded the logged second.
        page.click(".compare-media button.mc-key[data-key='speech']")
        audio = ".mc-grid[data-key='speech'] .mc-col[data-run='b'] audio"
        page.wait_for_function("sel => { const a = document.querySelector(sel); return a && a.readyState >= 1 }", arg=audio)
        assert abs(page.eval_on_selector(audio, "a => a.duration") - 1.0) < 0.01

        # A large image is shown by its thumbnail (256 px wide); a click gives the logged pixels.
        page.click(".compare-media button.mc-key[data-key='wide']")
        big = ".mc-grid[data-key='wide'] .mc-col[data-run='a'] img.media-image"
        loaded = "([sel, w]) => { const i = document.querySelector(sel); return i && i.complete && i.naturalWidth === w }"
        page.wait_for_function(loaded, arg=[f"{big}[data-file='thumbnail']", 256])
        page.click(big)
        page.wait_for_function(loaded, arg=[f"{big}[data-file='file']", 600])
        colour = page.evaluate(_COLOUR_AT.replace(" img.media-image", ""), big)
        assert colour == [10, 200, 30, 255]
    finally:
        page.goto("about:blank")  # no poll of the project page may meet the ui stopped (a console error)
        ui.terminate()
        ui.wait(timeout=10)


def test_the_media_grid_follows_a_live_runs_new_steps(root, tmp_path, page):  # noqa: F811
    go, stop, ready = tmp_path / "go", tmp_path / "stop", tmp_path / "ready"
    code = f"""
        import os, time
        import numpy as np
        import tracklet
        run = tracklet.init(project="live", id="growing", dir={str(root)!r},
                            settings={{"console": "off", "system_metrics": False, "flush_interval": 0.1}})
        def wait(path):
            while not os.path.exists(path):
                time.sleep(0.02)
        def log(step):
            run.log({{"pred": tracklet.Image(np.full((16, 24, 3), {_colour("a", 0)!r}, np.uint8) + np.uint8(20 * step))}},
                    step=step)
        for step in range(3):
            log(step)
        run.flush()
        open({str(ready)!r}, "w").close()
        wait({str(go)!r})
        for step in range(3, 5):
            log(step)
        wait({str(stop)!r})
        run.finish()
    """
    writer = start_live_writer(code, ready)
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/live?token=" + token)
        page.wait_for_selector(".tr[data-run='growing'] .state[data-state='running']")
        page.goto(url + "projects/live?sel=growing&tab=compare")
        column = ".mc-grid[data-key='pred'] .mc-col[data-run='growing']"
        page.wait_for_selector(f"{column}[data-step='2'] img.media-image")
        go.touch()  # two more steps: the grid, following the last step, shows step 4 without a reload
        page.wait_for_selector(f"{column}[data-step='4'] img.media-image")
        page.wait_for_function("sel => { const i = document.querySelector(sel + ' img.media-image'); "
                               "return i && i.complete && i.naturalWidth === 24 }", arg=f"{column}[data-step='4']")
        assert page.evaluate(_COLOUR_AT, column)[:3] == [80, 80, 180]  # (0, 0, 100) + 20 x step 4
        assert page.eval_on_selector(".compare-media input.mc-step", "s => [s.max, s.value]") == ["4", "4"]
        stop.touch()
        page.wait_for_selector(".tr[data-run='growing'] .state[data-state='finished']")
    finally:
        page.goto("about:blank")  # no poll of the project page may meet the ui stopped (a console error)
        go.touch()
        stop.touch()
        writer.wait(timeout=30)
        ui.terminate()
        ui.wait(timeout=10)


BIG_STEPS = [2**53 - 1, 2**53, 2**53 + 1, 2**62 + 7]  # 2**53 + 1 is no float: JSON.parse read it as 2**53


def test_steps_past_2_53_are_exact_in_the_grid_and_on_the_run_page(root, page):  # noqa: F811
    run = tracklet.init(project="big", id="c", dir=str(root), settings=QUIET)
    for i, step in enumerate(BIG_STEPS):
        run.log({"pred": tracklet.Image(_solid("a", i), caption=f"c {i}")}, step=step)
    run.finish()
    ui, url, token = start_ui(root)
    try:
        # the JSON: a step past 2**53 - 1 as a string of its digits, smaller ones as numbers
        import httpx

        grid = httpx.get(f"{url}api/v1/projects/big/media", params={"runs": "c", "key": "pred"},
                         headers={"Authorization": f"Bearer {token}"}).json()
        (column,) = grid["runs"]
        assert column["steps"] == [2**53 - 1, *(str(step) for step in BIG_STEPS[1:])]
        assert (column["step"], column["first_step"], column["last_step"]) == (str(2**62 + 7), 2**53 - 1, str(2**62 + 7))
        assert column["items"][0]["step"] == str(2**62 + 7)
        page.goto(url + "?token=" + token)
        page.wait_for_selector("ul.projects a:text('big')")
        # the Compare tab's grid: the slider over the 4 steps, each shown and named exactly
        page.goto(url + "projects/big?sel=c&tab=compare")
        page.wait_for_selector(f".mc-grid .mc-col[data-step='{2**62 + 7}'] figcaption")
        assert page.text_content(".compare-media .mc-step-label") == f"step {2**62 + 7} (4 of 4 steps)"
        assert page.eval_on_selector(".compare-media input.mc-step", "s => Number(s.max)") == 3
        for index in (2, 1):
            _slide(page, index)
            where = f".mc-grid .mc-col[data-step='{BIG_STEPS[index]}']"
            page.wait_for_selector(f"{where} figure[data-step='{BIG_STEPS[index]}'] figcaption")
            assert page.text_content(f"{where} figcaption") == f"c {index}"
            assert page.text_content(f"{where} .mc-shown") == f"step {BIG_STEPS[index]}"
            assert page.text_content(".compare-media .mc-step-label") == f"step {BIG_STEPS[index]} ({index + 1} of 4 steps)"
            assert f"mstep={BIG_STEPS[index]}" in page.url
        page.goto(url + f"projects/big?sel=c&tab=compare&mkey=pred&mstep={2**53 + 1}")  # a link to a step, exactly
        page.wait_for_selector(f".mc-grid .mc-col[data-step='{2**53 + 1}'] figcaption")
        assert page.text_content(".mc-grid .mc-col figcaption") == "c 2"
        # the run page's media panel
        page.goto(url + "projects/big/runs/c")
        panel = ".media-panel[data-key='pred']"
        page.wait_for_selector(f"{panel}[data-step='{2**62 + 7}']")
        assert page.text_content(f"{panel} .media-head span") == f"step {2**62 + 7} (4 of 4)"
        for index in (2, 1):
            page.eval_on_selector(f"{panel} input.media-step", "(s, i) => { s.value = String(i); s.dispatchEvent(new Event('input')); }",
                                  index)
            page.wait_for_selector(f"{panel}[data-step='{BIG_STEPS[index]}'] figure[data-step='{BIG_STEPS[index]}'] figcaption")
            assert page.text_content(f"{panel} figcaption") == f"c {index}"
            assert page.text_content(f"{panel} .media-head span") == f"step {BIG_STEPS[index]} ({index + 1} of 4)"
    finally:
        page.goto("about:blank")
        ui.terminate()
        ui.wait(timeout=10)
