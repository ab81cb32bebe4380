"""The run page's 3-D viewer (web/src/viewer3d.ts) in a real headless Chromium, against `tracklet ui`
over runs that logged `tracklet.Object3D` point clouds: drawn with WebGL (Chromium's SwiftShader:
no GPU here) and with the 2-D canvas fallback (WebGL disabled), checked on the pixels of a
screenshot of the drawing."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import random
import struct
from pathlib import Path

import pytest
from conftest import QUIET
from test_dashboard import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, STATIC, playwright_api, start_live_writer, start_ui

import tracklet

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]

RENDERERS = {"webgl": ["--enable-unsafe-swiftshader"], "2d": ["--disable-webgl"]}
BACKGROUND = (21, 23, 28)
# For a test of what reading a file finds (its errors, the info line's counts, the notes on what was left
# out), never of how it is drawn: the file is read (scene3d.ts, gltf.ts) before the viewer chooses a
# renderer, so one renderer (WebGL, what users get) runs it. A test whose file could be read but fail
# to draw (test_randomly_damaged_gltf_files_...) or that looks at the drawing runs with both.
reading_only = pytest.mark.parametrize("browser", ["webgl"], indirect=True)


@pytest.fixture(scope="module", params=sorted(RENDERERS))
def browser(request):
    """Chromium drawing with WebGL or without it (the 2-D fallback): each test runs with both unless it
    is marked ``reading_only``."""
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + RENDERERS[request.param])
        chromium.renderer = request.param
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh page; fails the test on any browser console error or uncaught exception."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(30_000)
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert errors == [], f"browser console errors: {errors}"


def drawing(tab, selector: str):
    """The viewer's drawing as the page shows it (WebGL canvas, or 2-D canvas, plus the labels), as RGB."""
    tab.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    png = tab.locator(f"{selector} .viewer3d-stage").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def pixels_near(picture, colour, tolerance: int = 40) -> int:
    return int((np.abs(picture - np.array(colour)).max(axis=2) <= tolerance).sum())


def centroid(picture, colour) -> tuple[float, float]:
    """Where pixels of `colour` lie on average (x, y): steady across a screenshot's subpixel offset."""
    ys, xs = np.nonzero(np.abs(picture - np.array(colour)).max(axis=2) <= 40)
    return float(xs.mean()), float(ys.mean())


def near(a, b, pixels: float) -> bool:
    return abs(a[0] - b[0]) <= pixels and abs(a[1] - b[1]) <= pixels


def cube_corners(centre, half):
    # W&B's example order, which is not an edge walk: the viewer finds the edges itself
    signs = [(-1, -1, -1), (-1, 1, -1), (-1, -1, 1), (1, -1, -1), (1, 1, -1), (-1, 1, 1), (1, -1, 1), (1, 1, 1)]
    return [[c + s * h for c, s, h in zip(centre, sign, half)] for sign in signs]


def test_point_cloud_with_boxes_is_drawn_in_its_colours_and_turns_when_dragged(root, browser, page):
    rng = np.random.default_rng(0)
    red = np.column_stack([rng.normal(0, 1, (3000, 3)), np.tile([255, 0, 0], (3000, 1))])
    blue = np.column_stack([rng.normal(0, 0.5, (3000, 3)) + [6, 0, 0], np.tile([0, 0, 255], (3000, 1))])
    points = np.vstack([red, blue]).astype(np.float32)
    boxes = [{"corners": cube_corners([6, 0, 0], [1.5, 1.5, 1.5]), "label": "car", "color": [0, 255, 0]},
             {"corners": [[0, 0, 0]], "label": "broken"}]
    categories = np.column_stack([rng.uniform(-5, 5, (500, 3)), np.full(500, 1)])  # N×4: class 1's colour
    run = tracklet.init(project="clouds", id="lidar", dir=str(root), settings=QUIET)
    run.log({"scene": tracklet.Object3D.from_point_cloud(points.tolist(), boxes, vectors=[{"start": [0, 0, 0], "end": [0, 0, 4]}]),
             "cloud": tracklet.Object3D(points), "classes": tracklet.Object3D(categories),
             "half": tracklet.Object3D(points.astype(np.float16))})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/lidar?token=" + token)
        scene = ".media-panel[data-key='scene']"
        page.wait_for_function("() => document.querySelectorAll(\".viewer3d[data-state='drawn']\").length === 4")
        assert page.get_attribute(f"{scene} .viewer3d-view", "data-renderer") == browser.renderer
        info = page.text_content(f"{scene} .viewer3d-info")
        assert info.startswith("6,000 points") and "1 boxes" in info and "1 vectors" in info, info
        assert "box 1" in page.text_content(f"{scene} .viewer3d-note")  # the malformed box, left out and named
        before = drawing(page, scene)
        # the logged colours where the points are, the box in its colour, the rest background
        assert pixels_near(before, (255, 0, 0)) > 200 and pixels_near(before, (0, 0, 255)) > 200
        assert pixels_near(before, (0, 255, 0), tolerance=60) > 100
        assert pixels_near(before, BACKGROUND, tolerance=4) > before.shape[0] * before.shape[1] // 2
        # a drag turns it: the picture changes, and "reset" brings the first one back
        box = page.locator(f"{scene} .viewer3d-overlay").bounding_box()
        page.mouse.move(box["x"] + 200, box["y"] + 180)
        page.mouse.down()
        page.mouse.move(box["x"] + 320, box["y"] + 120, steps=5)
        page.mouse.up()
        turned = drawing(page, scene)
        changed = (np.abs(turned - before).max(axis=2) > 30).sum()
        assert changed > 500, changed
        page.mouse.move(box["x"] + 200, box["y"] + 180)
        page.mouse.wheel(0, -400)  # zooming in makes the cloud cover more pixels
        zoomed = drawing(page, scene)
        assert pixels_near(zoomed, BACKGROUND, tolerance=4) < pixels_near(turned, BACKGROUND, tolerance=4)
        assert not near(centroid(turned, (0, 0, 255)), centroid(before, (0, 0, 255)), 10)
        page.click(f"{scene} .viewer3d-reset")
        again = drawing(page, scene)
        assert near(centroid(again, (0, 0, 255)), centroid(before, (0, 0, 255)), 1.5)
        assert near(centroid(again, (255, 0, 0)), centroid(before, (255, 0, 0)), 1.5)
        # the same points as an N×6 array (.npy): the same colours
        cloud = ".media-panel[data-key='cloud']"
        page.wait_for_selector(f"{cloud} .viewer3d[data-state='drawn']")
        npy = drawing(page, cloud)
        assert pixels_near(npy, (255, 0, 0)) > 200 and pixels_near(npy, (0, 0, 255)) > 200
        page.wait_for_selector(".media-panel[data-key='half'] .viewer3d[data-state='drawn']")  # float16
        half = drawing(page, ".media-panel[data-key='half']")
        for colour in ((255, 0, 0), (0, 0, 255)):  # the same picture, to float16's rounding
            assert abs(pixels_near(half, colour) - pixels_near(npy, colour)) < pixels_near(npy, colour) * 0.1
        # N×4: the category's colour (class 1 of the image masks' palette)
        classes = ".media-panel[data-key='classes']"
        page.wait_for_selector(f"{classes} .viewer3d[data-state='drawn']")
        assert pixels_near(drawing(page, classes), (230, 25, 75), tolerance=30) > 100
    finally:
        ui.terminate()
        ui.wait(timeout=10)


@reading_only
def test_a_damaged_point_file_shows_an_error_and_the_page_goes_on(root, tmp_path, page):
    truncated = tmp_path / "cut.pts.json"
    whole = json.dumps({"type": "lidar/beta", "points": [[i, i, i] for i in range(100)]})
    truncated.write_text(whole[: len(whole) // 2])
    wrong = tmp_path / "wrong.pts.json"
    wrong.write_text(json.dumps({"type": "lidar/beta", "points": [[0, 0, 0], [1, "a", 2]]}))
    run = tracklet.init(project="clouds", id="damaged", dir=str(root), settings=QUIET)
    run.log({"cut": tracklet.Object3D(str(truncated)), "wrong": tracklet.Object3D(str(wrong)),
             "good": tracklet.Object3D(np.eye(3, dtype=np.float32)), "loss": 1.0,
             "short": tracklet.Object3D(np.ones((1000, 3), dtype=np.float32))})
    run.finish()

    def cut_large_npy(route):  # an .npy cut short on the way (a dropped connection, a proxy's limit)
        response = route.fetch()
        body = response.body()
        route.fulfill(response=response, body=body[:6000] if body.startswith(b"\x93NUMPY") and len(body) > 10_000 else body)

    page.route("**/media/*", cut_large_npy)
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/damaged?token=" + token)
        page.wait_for_selector(".media-panel[data-key='good'] .viewer3d[data-state='drawn']")
        cut = page.wait_for_selector(".media-panel[data-key='cut'] .viewer3d[data-state='error']")
        assert "not valid JSON" in cut.text_content() and "truncated" in cut.text_content()
        wrong_text = page.text_content(".media-panel[data-key='wrong'] .viewer3d-error")
        assert 'point 1 of the scene is [1,"a",2]' in wrong_text, wrong_text
        assert page.text_content(".media-panel[data-key='good'] .viewer3d-info").startswith("3 points")
        short = page.wait_for_selector(".media-panel[data-key='short'] .viewer3d[data-state='error']").text_content()
        assert "the .npy file is truncated: 1,000 points declared, 489 present" in short, short
        # the file is still there to download, byte for byte
        with page.expect_download() as download:
            page.click(".media-panel[data-key='cut'] .viewer3d-download")
        assert Path(download.value.path()).read_bytes() == truncated.read_bytes()
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_a_large_cloud_waits_for_load_and_is_thinned_to_what_is_drawn(root, browser, page):
    points = np.random.default_rng(1).normal(0, 10, (3_000_000, 3)).astype(np.float32)  # 36 MB
    run = tracklet.init(project="clouds", id="large", dir=str(root), settings=QUIET)
    run.log({"big": tracklet.Object3D(points)})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/large?token=" + token)
        panel = ".media-panel[data-key='big']"
        button = page.wait_for_selector(f"{panel} .viewer3d-load")
        assert button.text_content() == "load (3,000,000 points, 34 MB)"
        button.click()
        page.wait_for_selector(f"{panel} .viewer3d[data-state='drawn']", timeout=120_000)
        info = page.text_content(f"{panel} .viewer3d-info")
        assert info.startswith("1,500,000 points (1 in 2 of 3,000,000)"), info
        # SwiftShader (WebGL without a GPU) is slower than the JavaScript projection on a large cloud
        assert page.get_attribute(f"{panel} .viewer3d-view", "data-renderer") == "2d"
        if browser.renderer == "webgl":
            assert "software renderer" in page.text_content(f"{panel} .viewer3d-note")
        assert pixels_near(drawing(page, panel), BACKGROUND, tolerance=4) < 360 * 480 * 0.9
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_points_that_are_not_finite_are_left_out_and_the_rest_drawn(root, tmp_path, page):
    """A LiDAR scan with NaN for "no return" (and a stray infinity, a value past float32's range):
    those points are left out and counted, the others drawn in view (one of them made the view's
    centre NaN: nothing was drawn)."""
    points = np.random.default_rng(2).normal(0, 1, (3000, 3)).astype(np.float32)
    points[::10] = np.nan
    points[5] = [np.inf, 0, 0]
    points[7, 2] = -np.inf
    scene = tmp_path / "far.pts.json"  # 1e39 is a JSON number, past float32's range
    scene.write_text(json.dumps({"type": "lidar/beta", "points": [[0, 0, 0], [1, 1, 1], [1e39, 0, 0], [2, 0, 1]]}))
    run = tracklet.init(project="clouds", id="nan", dir=str(root), settings=QUIET)
    run.log({"scan": tracklet.Object3D(points), "far": tracklet.Object3D(str(scene))})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/nan?token=" + token)
        for key, drawn, left_out, lit in (("scan", 2698, 302, 2000), ("far", 3, 1, 5)):
            panel = f".media-panel[data-key='{key}']"
            page.wait_for_selector(f"{panel} .viewer3d[data-state='drawn']")
            info = page.text_content(f"{panel} .viewer3d-info")
            assert info.startswith(f"{drawn:,} points") and "NaN" not in info and "Infinity" not in info, info
            assert f"{left_out} point" in page.text_content(f"{panel} .viewer3d-note")
            picture = drawing(page, panel)[:360]  # the points, in view: pixels not the background's
            assert picture.size // 3 - pixels_near(picture, BACKGROUND, tolerance=4) > lit
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_a_scene_of_more_boxes_than_are_drawn_draws_the_first_and_says_so(root, tmp_path, page):
    rng = np.random.default_rng(4)
    centres = rng.uniform(-50, 50, (12_000, 3))
    scene = tmp_path / "crowd.pts.json"
    scene.write_text(json.dumps({"type": "lidar/beta", "points": rng.normal(0, 20, (500, 3)).tolist(),
                                 "boxes": [{"corners": cube_corners(c.tolist(), [0.5, 0.5, 0.5])} for c in centres],
                                 "vectors": [{"end": c.tolist()} for c in centres]}))
    run = tracklet.init(project="clouds", id="crowd", dir=str(root), settings=QUIET)
    run.log({"crowd": tracklet.Object3D(str(scene))})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/crowd?token=" + token)
        panel = ".media-panel[data-key='crowd']"
        page.wait_for_selector(f"{panel} .viewer3d[data-state='drawn']")
        info = page.text_content(f"{panel} .viewer3d-info")
        assert "10000 boxes" in info.replace(",", "") and "10000 vectors" in info.replace(",", ""), info
        notes = " ".join(page.locator(f"{panel} .viewer3d-note").all_text_contents())
        assert "2,000 boxes past the first 10,000" in notes and "2,000 vectors past the first 10,000" in notes, notes
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def cube_stl() -> bytes:
    """A unit cube as a binary STL (12 triangles)."""
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float32)
    faces = [(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
             (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)]
    body = b"".join(np.zeros(3, np.float32).tobytes() + corners[list(face)].tobytes() + b"\0\0" for face in faces)
    return b"\0" * 80 + np.uint32(len(faces)).tobytes() + body


def test_meshes_are_drawn_shaded_and_a_cut_mesh_shows_its_error(root, tmp_path, browser, page):
    stl = tmp_path / "cube.stl"
    stl.write_bytes(cube_stl())
    cut = tmp_path / "cut.stl"
    cut.write_bytes(cube_stl()[:300])
    obj = tmp_path / "pyramid.obj"
    obj.write_text("# a square pyramid\nv 0 0 0\nv 2 0 0\nv 2 2 0\nv 0 2 0\nv 1 1 2\n"
                   "f 1 2 3 4\nf 1/1 2/2 5/5\nf 2 3 5\nf 3 4 5\nf -5 -1 -2\n")
    run = tracklet.init(project="clouds", id="meshes", dir=str(root), settings=QUIET)
    run.log({"cube": tracklet.Object3D(str(stl)), "pyramid": tracklet.Object3D(str(obj)), "cut": tracklet.Object3D(str(cut))})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/meshes?token=" + token)
        for key, triangles in (("cube", 12), ("pyramid", 6)):
            panel = f".media-panel[data-key='{key}']"
            page.wait_for_selector(f"{panel} .viewer3d[data-state='drawn']")
            assert page.get_attribute(f"{panel} .viewer3d-view", "data-renderer") == browser.renderer
            assert page.text_content(f"{panel} .viewer3d-info").startswith(f"{triangles} triangles")
            picture = drawing(page, panel)
            lit = (np.abs(picture - np.array(BACKGROUND)).max(axis=2) > 30)
            assert lit.sum() > 360 * 480 * 0.1, lit.sum()  # the solid covers a good part of the view
            shades = {tuple(p) for p in picture[lit].tolist()}
            assert len(shades) >= 2  # faces turned differently are shaded differently
        error = page.wait_for_selector(".media-panel[data-key='cut'] .viewer3d[data-state='error']").text_content()
        assert "not an STL file" in error or "truncated" in error, error
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_a_pdb_molecule_is_its_atoms_in_element_colours(root, tmp_path, page):
    atom = "ATOM  {:5d}  {:<3s} ALA A   1    {:8.3f}{:8.3f}{:8.3f}  1.00  0.00          {:>2s}\n"
    pdb = tmp_path / "ala.pdb"
    pdb.write_text("HEADER    TEST\n" + "".join(atom.format(i + 1, element, x, y, 0.0, element) for i, (element, x, y) in
                                               enumerate([("N", 0, 0), ("C", 1.5, 0), ("C", 2, 1.4), ("O", 3.2, 1.6)]))
                   + "END\n")
    pqr = tmp_path / "ala.pqr"  # PQR: whitespace-separated, charge and radius after x y z
    pqr.write_text("ATOM      1  N   ALA     1      -0.677  -1.230  -0.491  -0.3000 1.8240\n"
                   "ATOM      2  O   ALA     1       1.200   0.500   0.100  -0.5000 1.6612\nEND\n")
    run = tracklet.init(project="clouds", id="molecule", dir=str(root), settings=QUIET)
    run.log({"ala": tracklet.Molecule(str(pdb)), "pqr": tracklet.Molecule(str(pqr))})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/molecule?token=" + token)
        panel = ".media-panel[data-key='ala']"
        page.wait_for_selector(f"{panel} .viewer3d[data-state='drawn']")
        assert page.text_content(f"{panel} .viewer3d-info").startswith("4 atoms · 3 bonds (by distance) · ")
        picture = drawing(page, panel)
        for colour in ((48, 80, 248), (144, 144, 144), (255, 13, 13)):  # N, C, O (CPK)
            assert pixels_near(picture, colour, tolerance=20) >= 4, colour
        page.wait_for_selector(".media-panel[data-key='pqr'] .viewer3d[data-state='drawn']")
        info = page.text_content(".media-panel[data-key='pqr'] .viewer3d-info")
        assert info.startswith("2 atoms · 0 bonds (by distance) · x -0.677…1.2 · y -1.23…0.5 · z -0.491…0.1"), info
        picture = drawing(page, ".media-panel[data-key='pqr']")
        assert pixels_near(picture, (48, 80, 248), tolerance=20) >= 4 and pixels_near(picture, (255, 13, 13), tolerance=20) >= 4
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_more_clouds_than_the_browser_keeps_webgl_contexts_are_all_drawn(root, browser, page):
    rng = np.random.default_rng(2)
    run = tracklet.init(project="clouds", id="many", dir=str(root), settings=QUIET)
    run.log({f"c{i:02d}": tracklet.Object3D(np.column_stack([rng.normal(0, 1, (500, 3)), np.tile([255, 255, 0], (500, 1))]))
             for i in range(20)})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/many?token=" + token)
        page.wait_for_function("() => document.querySelectorAll(\".viewer3d[data-state='drawn']\").length === 20")
        page.wait_for_timeout(500)  # Chromium takes back the oldest contexts as new ones are made
        renderers = page.eval_on_selector_all(".viewer3d-view", "views => views.map(v => v.dataset.renderer)")
        if browser.renderer == "webgl":  # Chromium keeps 16 WebGL contexts a page: the oldest went to 2-D canvases
            assert "2d" in renderers and "webgl" in renderers, renderers
        for i in range(20):
            picture = drawing(page, f".media-panel[data-key='c{i:02d}']")
            assert pixels_near(picture, (255, 255, 0)) > 100, i
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_a_live_run_logging_more_media_keeps_the_cloud_and_its_view(root, tmp_path, page):


    go, stop, ready = tmp_path / "go", tmp_path / "stop", tmp_path / "ready"
    code = f"""
        import os, time, numpy as np, tracklet
        run = tracklet.init(project="clouds", id="live", dir={str(root)!r},
                            settings={{"console": "off", "system_metrics": False, "flush_interval": 0.1}})
        def wait(path):
            while not os.path.exists(path):
                time.sleep(0.02)
        rng = np.random.default_rng(3)
        red = np.column_stack([rng.normal(0, 1, (2000, 3)), np.tile([255, 0, 0], (2000, 1))])
        blue = np.column_stack([rng.normal(0, 0.5, (2000, 3)) + [6, 0, 0], np.tile([0, 0, 255], (2000, 1))])
        cloud = np.vstack([red, blue])
        run.log({{"cloud": tracklet.Object3D(cloud), "pair": [tracklet.Object3D(cloud), tracklet.Object3D(cloud[::2])]}})
        run.flush()
        open({str(ready)!r}, "w").close()
        wait({str(go)!r})
        run.log({{"picture": tracklet.Image(np.zeros((8, 8, 3), dtype=np.uint8))}})
        wait({str(stop)!r})
        run.finish()
    """
    writer = start_live_writer(code, ready)
    media: list[str] = []
    page.on("request", lambda request: media.append(request.url) if "/media/" in request.url else None)
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/live?token=" + token)
        panel = ".media-panel[data-key='cloud']"
        page.wait_for_selector(f"{panel} .viewer3d[data-state='drawn']")
        home = drawing(page, panel)
        box = page.locator(f"{panel} .viewer3d-overlay").bounding_box()
        page.mouse.move(box["x"] + 200, box["y"] + 180)
        page.mouse.down()
        page.mouse.move(box["x"] + 300, box["y"] + 100, steps=4)
        page.mouse.up()
        turned = drawing(page, panel)
        assert not near(centroid(turned, (0, 0, 255)), centroid(home, (0, 0, 255)), 10)
        cloud_url = media[0]
        go.touch()
        page.wait_for_selector(".media-panel[data-key='picture'] img.media-image")
        page.wait_for_selector(f"{panel} .viewer3d[data-state='drawn']")
        assert media.count(cloud_url) == 1, media  # the panel was drawn again from the scene kept
        again = drawing(page, panel)  # in the view it was turned to
        assert near(centroid(again, (0, 0, 255)), centroid(turned, (0, 0, 255)), 1.5)
        for index in (0, 1):  # a list's viewers, made again from kept scenes before the panel is attached, all draw
            figure = f".media-panel[data-key='pair'] figure[data-index='{index}']"
            assert pixels_near(drawing(page, figure), (255, 0, 0)) > 100, index
    finally:
        go.touch()
        stop.touch()
        writer.wait(timeout=30)
        # the page polls a live run: stop the server only once it has seen the run finish (else a poll
        # between the two fails in the console)
        with contextlib.suppress(Exception):  # (a failure above is the one to report)
            page.wait_for_selector("span.state[data-state='finished']", timeout=15_000)
        page.goto("about:blank")
        ui.terminate()
        ui.wait(timeout=10)


# --- glTF ---------------------------------------------------------------------------------------------

FLOAT, UINT8, UINT16, UINT32 = 5126, 5121, 5123, 5125


def cube(half=0.5):
    """A cube's 24 corners (4 a face, so each face has its own normal), normals and 36 indices."""
    positions, normals, indices = [], [], []
    for axis in range(3):
        for sign in (-1, 1):
            u, v = (axis + 1) % 3, (axis + 2) % 3
            base = len(positions)
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = [0.0, 0.0, 0.0]
                p[axis], p[u], p[v] = sign * half, a * half, b * half
                positions.append(p)
                normals.append([float(sign) if c == axis else 0.0 for c in range(3)])
            indices += [base, base + 1, base + 2, base, base + 2, base + 3]
    return np.array(positions, np.float32), np.array(normals, np.float32), np.array(indices)


class Gltf:
    """A glTF document under construction: its JSON and its one buffer's bytes."""

    def __init__(self):
        self.data = bytearray()
        self.doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": []}], "nodes": [], "meshes": [],
                    "materials": [], "accessors": [], "bufferViews": [], "buffers": []}

    def view(self, raw: bytes, stride: int | None = None) -> int:
        while len(self.data) % 4:
            self.data += b"\0"
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(raw)}
        if stride:
            view["byteStride"] = stride
        self.data += raw
        self.doc["bufferViews"].append(view)
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, view: int, component: int, count: int, kind: str, offset: int = 0, **extra) -> int:
        self.doc["accessors"].append({"bufferView": view, "byteOffset": offset, "componentType": component, "count": count,
                                      "type": kind, **extra})
        return len(self.doc["accessors"]) - 1

    def material(self, rgba) -> int:
        self.doc["materials"].append({"pbrMetallicRoughness": {"baseColorFactor": rgba}})
        return len(self.doc["materials"]) - 1

    def mesh(self, *primitives) -> int:
        self.doc["meshes"].append({"primitives": list(primitives)})
        return len(self.doc["meshes"]) - 1

    def node(self, root=True, **node) -> int:
        self.doc["nodes"].append(node)
        at = len(self.doc["nodes"]) - 1
        if root:
            self.doc["scenes"][0]["nodes"].append(at)
        return at

    def glb(self) -> bytes:
        self.doc["buffers"] = [{"byteLength": len(self.data)}]
        text = json.dumps(self.doc).encode()
        text += b" " * (-len(text) % 4)
        data = bytes(self.data) + b"\0" * (-len(self.data) % 4)
        body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(data), 0x004E4942) + data
        return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body

    def gltf(self) -> str:
        uri = "data:application/octet-stream;base64," + base64.b64encode(bytes(self.data)).decode()
        self.doc["buffers"] = [{"byteLength": len(self.data), "uri": uri}]
        return json.dumps(self.doc)


RED, BLUE = [1, 0, 0, 1], [0, 0, 1, 1]
PARENT = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, -2, 0, 0, 1]  # column-major: a translation by -2 along x
CHILD = {"translation": [4, 0, 0], "rotation": [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)], "scale": [1, 3, 1]}


def hierarchy() -> Gltf:
    """A red cube under a parent node (a matrix) and a blue one under its child (translation, rotation, scale):
    positions and normals interleaved (byteStride 24), unsigned short indices, shared by both meshes."""
    doc = Gltf()
    positions, normals, indices = cube()
    interleaved = doc.view(np.hstack([positions, normals]).tobytes(), stride=24)
    position = doc.accessor(interleaved, FLOAT, 24, "VEC3", min=[-0.5] * 3, max=[0.5] * 3)
    normal = doc.accessor(interleaved, FLOAT, 24, "VEC3", offset=12)
    index = doc.accessor(doc.view(indices.astype(np.uint16).tobytes()), UINT16, 36, "SCALAR")
    red = doc.mesh({"attributes": {"POSITION": position, "NORMAL": normal}, "indices": index, "material": doc.material(RED)})
    blue = doc.mesh({"attributes": {"POSITION": position, "NORMAL": normal}, "indices": index, "material": doc.material(BLUE)})
    doc.node(matrix=PARENT, mesh=red, children=[1])
    doc.node(root=False, mesh=blue, **CHILD)
    return doc


def flattened() -> Gltf:
    """The same two cubes, their corners moved where the hierarchy puts them, at the root without
    transforms: no normals (computed), unsigned int and unsigned byte indices, the red one's colour
    as COLOR_0 (normalized unsigned bytes) instead of a material."""
    doc = Gltf()
    positions, _, indices = cube()
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    scaled = positions * [1, 3, 1]
    child = np.column_stack([c * scaled[:, 0] - s * scaled[:, 1], s * scaled[:, 0] + c * scaled[:, 1], scaled[:, 2]])
    red_at = (positions + [-2, 0, 0]).astype(np.float32)
    blue_at = (child + [4 - 2, 0, 0]).astype(np.float32)
    red = doc.accessor(doc.view(red_at.tobytes()), FLOAT, 24, "VEC3")
    colour = doc.accessor(doc.view(np.tile([255, 0, 0, 255], (24, 1)).astype(np.uint8).tobytes()), UINT8, 24, "VEC4", normalized=True)
    blue = doc.accessor(doc.view(blue_at.tobytes()), FLOAT, 24, "VEC3")
    wide = doc.accessor(doc.view(indices.astype(np.uint32).tobytes()), UINT32, 36, "SCALAR")
    narrow = doc.accessor(doc.view(indices.astype(np.uint8).tobytes()), UINT8, 36, "SCALAR")
    doc.node(mesh=doc.mesh({"attributes": {"POSITION": red, "COLOR_0": colour}, "indices": wide}))
    doc.node(mesh=doc.mesh({"attributes": {"POSITION": blue}, "indices": narrow, "material": doc.material(BLUE)}))
    return doc


def hue(picture, channel: int):
    """Pixels whose `channel` (0 red, 2 blue) stands out of the others: a face of that colour however lit."""
    others = np.delete(picture, channel, axis=2).max(axis=2)
    return picture[:, :, channel] - others > 40


def test_gltf_and_glb_meshes_are_drawn_through_their_node_hierarchy_in_their_materials(root, tmp_path, browser, page):
    from test_dashboard_viewer3d_formats import TEXTURE, quad, textured

    square = Gltf()  # a square in an image's colours: red on the left, green on the right
    material = textured(square, {"bufferView": square.view(TEXTURE), "mimeType": "image/png"})
    square.node(mesh=square.mesh({**quad(square, 0), "material": material}))
    files = {"glb": (tmp_path / "tree.glb", hierarchy().glb()), "gltf": (tmp_path / "tree.gltf", hierarchy().gltf().encode()),
             "flat": (tmp_path / "flat.gltf", flattened().gltf().encode()), "textured": (tmp_path / "square.glb", square.glb())}
    for path, content in files.values():
        path.write_bytes(content)
    run = tracklet.init(project="clouds", id="gltf", dir=str(root), settings=QUIET)
    run.log({key: tracklet.Object3D(str(path)) for key, (path, _) in files.items()})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/gltf?token=" + token)
        # a texture: drawn as an image with WebGL, each triangle in the image's colour at its middle without
        page.wait_for_selector(".media-panel[data-key='textured'] .viewer3d[data-state='drawn']")
        picture = drawing(page, ".media-panel[data-key='textured']")
        red, green = hue(picture, 0), hue(picture, 1)
        assert red.sum() > 1000 and green.sum() > 1000 and np.nonzero(red)[1].mean() < np.nonzero(green)[1].mean()
        pictures = {}
        for key in ("glb", "gltf", "flat"):
            panel = f".media-panel[data-key='{key}']"
            page.wait_for_selector(f"{panel} .viewer3d[data-state='drawn']")
            assert page.get_attribute(f"{panel} .viewer3d-view", "data-renderer") == browser.renderer
            # the bounds, in the file's own axes: the red cube at x -2.5…-1.5; the blue one scaled 3× along y,
            # turned 90° about z (so 3 long along x), moved by 4 then by its parent's -2: x 0.5…3.5
            info = page.text_content(f"{panel} .viewer3d-info")
            assert info == "24 triangles · x -2.5…3.5 · y -0.5…0.5 · z -0.5…0.5", (key, info)
            notes = page.eval_on_selector_all(f"{panel} .viewer3d-note", "notes => notes.map(n => n.textContent)")
            assert not [note for note in notes if note.startswith("left out")], (key, notes)
            pictures[key] = drawing(page, panel)
        glb = pictures["glb"]
        red, blue = hue(glb, 0), hue(glb, 2)
        assert red.sum() > 500 and blue.sum() > 1.2 * red.sum(), (red.sum(), blue.sum())  # 3 long, though farther
        assert np.nonzero(red)[1].mean() + 60 < np.nonzero(blue)[1].mean()  # red on the left (-x), blue on the right
        assert len({tuple(p) for p in glb[blue].tolist()}) >= 2  # faces turned differently, shaded differently
        for key in ("gltf", "flat"):  # the same scene embedded in JSON, and flattened: the same picture
            for channel in (0, 2):
                mine, theirs = hue(pictures[key], channel), hue(glb, channel)
                assert abs(int(mine.sum()) - int(theirs.sum())) < theirs.sum() * 0.03, (key, channel, mine.sum(), theirs.sum())
                where = [(float(np.nonzero(m)[1].mean()), float(np.nonzero(m)[0].mean())) for m in (mine, theirs)]
                assert near(*where, 1.5), (key, channel, where)
    finally:
        ui.terminate()
        ui.wait(timeout=10)


@reading_only
def test_a_damaged_or_incomplete_gltf_shows_its_error_in_place_of_the_drawing(root, tmp_path, page):
    glb = hierarchy().glb()
    out_of_range = hierarchy()
    out_of_range.doc["accessors"][0]["count"] = 10**9  # more vertices than the bytes hold
    bad_index = hierarchy()
    bad_index.data[bad_index.doc["bufferViews"][1]["byteOffset"]] = 200  # an index past the 24 vertices
    cyclic = hierarchy()
    cyclic.doc["nodes"][1]["children"] = [0]
    external = json.loads(hierarchy().gltf())
    external["buffers"][0]["uri"] = "tree.bin"
    deep = Gltf()
    deep.doc["nodes"] = [{"children": [i + 1]} for i in range(999)] + [{}]
    deep.doc["scenes"][0]["nodes"] = [0]
    files = {"cut": ("cut.glb", glb[: len(glb) // 2]), "range": ("range.glb", out_of_range.glb()),
             "index": ("index.gltf", bad_index.gltf().encode()), "cycle": ("cycle.gltf", cyclic.gltf().encode()),
             "external": ("external.gltf", json.dumps(external).encode()), "deep": ("deep.gltf", deep.gltf().encode()),
             "good": ("good.glb", glb)}
    for name, content in files.values():
        (tmp_path / name).write_bytes(content)
    run = tracklet.init(project="clouds", id="badgltf", dir=str(root), settings=QUIET)
    run.log({key: tracklet.Object3D(str(tmp_path / name)) for key, (name, _) in files.items()})
    run.finish()
    expected = {
        "cut": f"a GLB declaring {len(glb):,} bytes is {len(glb) // 2:,} bytes: truncated",
        "range": "accessor 0 (mesh 0 primitive 0's POSITION): 1,000,000,000 elements of 12 bytes from byte 0 need",
        "index": "an index of 200 in a primitive of 24 vertices: out of range",
        "cycle": "node 0 is its own ancestor: the glTF's node hierarchy has a cycle",
        "external": 'buffer 0: "tree.bin" is not among run badgltf\'s files',  # looked for beside it: not there
        "deep": "nodes nested more than 256 deep",
    }
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/badgltf?token=" + token)
        page.wait_for_selector(".media-panel[data-key='good'] .viewer3d[data-state='drawn']")
        for key, message in expected.items():
            error = page.wait_for_selector(f".media-panel[data-key='{key}'] .viewer3d[data-state='error']").text_content()
            assert error.startswith("this object3d can't be drawn: ") and message in error, (key, error)
        assert "out of range" in page.text_content(".media-panel[data-key='range'] .viewer3d-error")
        with page.expect_download() as download:  # the file itself is kept, byte for byte
            page.click(".media-panel[data-key='cut'] .viewer3d-download")
        assert Path(download.value.path()).read_bytes() == glb[: len(glb) // 2]
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_randomly_damaged_gltf_files_each_end_drawn_or_with_a_named_error(root, tmp_path, page):
    """Any bytes or JSON values at all: each file ends drawn or as an error naming the problem, never an
    exception escaping into the page or a panel left loading (a seeded sample: the same files every run)."""
    rng = random.Random(7)
    glb = hierarchy().glb()
    doc = json.loads(flattened().gltf())
    numeric = []

    def walk(value, path):
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            walk(item, (*path, key))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            numeric.append(path)

    walk(doc, ())
    files = {}
    for i in range(20):  # bytes of a GLB changed at random
        damaged = bytearray(glb)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        files[f"b{i}"] = ("glb", bytes(damaged))
    for i in range(20):  # numbers of a .gltf's JSON replaced by others, or by other types
        changed = json.loads(json.dumps(doc))
        for _ in range(rng.randint(1, 3)):
            *parents, last = rng.choice(numeric)
            holder = changed
            for key in parents:
                holder = holder[key]
            holder[last] = rng.choice([-1, 0, 1, 3, 255, 4096, 2**31, 2**53, 1e308, 0.5, None, "x", [], {}])
        files[f"j{i}"] = ("gltf", json.dumps(changed).encode())
    for key, (ext, content) in files.items():
        (tmp_path / f"{key}.{ext}").write_bytes(content)
    run = tracklet.init(project="clouds", id="fuzz", dir=str(root), settings=QUIET)
    run.log({key: tracklet.Object3D(str(tmp_path / f"{key}.{ext}")) for key, (ext, _) in files.items()})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/fuzz?token=" + token)
        page.wait_for_function("n => document.querySelectorAll(\".viewer3d[data-state='drawn'], .viewer3d[data-state='error']\")"
                               ".length === n", arg=len(files))
        errors = page.eval_on_selector_all(".viewer3d-error", "errors => errors.map(e => e.textContent)")
        assert len(errors) >= len(files) // 2  # most damage is found (some changes leave a drawable file)
        for error in errors:
            assert error.startswith("this object3d can't be drawn: "), error
            assert not any(word in error for word in ("Cannot read", "is not a function", "RangeError", "Offset is outside")), error
    finally:
        ui.terminate()
        ui.wait(timeout=10)


# --- molecules' bonds ---------------------------------------------------------------------------------

PDB_ATOM = "HETATM{:5d}  {:<3s} EOH A   1    {:8.3f}{:8.3f}{:8.3f}  1.00  0.00          {:>2s}\n"
# ethanol, CH3-CH2-OH: 9 atoms, 8 bonds (C-C, C-O, O-H, 5 C-H); no two unbonded atoms within bonding reach
ETHANOL = [("C1", "C", 0, 0, 0), ("C2", "C", 1.52, 0, 0), ("O", "O", 2.0, 1.35, 0), ("HO", "H", 2.93, 1.65, 0),
           ("H11", "H", -0.36, 1.03, 0), ("H12", "H", -0.36, -0.51, 0.89), ("H13", "H", -0.36, -0.51, -0.89),
           ("H21", "H", 1.88, -0.51, 0.89), ("H22", "H", 1.88, -0.51, -0.89)]
ETHANOL_BONDS = [(1, 2), (2, 3), (3, 4), (1, 5), (1, 6), (1, 7), (2, 8), (2, 9)]


def pdb(atoms, bonds=()) -> str:
    lines = [PDB_ATOM.format(i + 1, name, x, y, z, element) for i, (name, element, x, y, z) in enumerate(atoms)]
    for a, b in bonds:  # each bond from both of its atoms, as PDB files list them
        lines += [f"CONECT{a:5d}{b:5d}\n", f"CONECT{b:5d}{a:5d}\n"]
    return "".join(lines) + "END\n"


def test_a_molecules_bonds_come_from_conect_records_or_else_from_distances(root, tmp_path, page):
    far = [("CA", "C", -2.5, 0, 0), ("CB", "C", 2.5, 0, 0)]  # 5 Å apart: no bond by distance
    crowd = ETHANOL + [("X", "C", 50, 50, 50)] * 3000  # atoms piled on one spot: no molecule
    files = {"inferred": pdb(ETHANOL), "conect": pdb(ETHANOL, ETHANOL_BONDS), "far": pdb(far),
             "linked": pdb(far, [(1, 2)]), "crowd": pdb(crowd)}
    for key, text in files.items():
        (tmp_path / f"{key}.pdb").write_text(text)
    run = tracklet.init(project="clouds", id="bonds", dir=str(root), settings=QUIET)
    run.log({key: tracklet.Molecule(str(tmp_path / f"{key}.pdb")) for key in files})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/bonds?token=" + token)
        page.wait_for_function("() => document.querySelectorAll(\".viewer3d[data-state='drawn']\").length === 5")
        info = {key: page.text_content(f".media-panel[data-key='{key}'] .viewer3d-info") for key in files}
        assert info["inferred"].startswith("9 atoms · 8 bonds (by distance)"), info
        assert info["conect"].startswith("9 atoms · 8 bonds (CONECT)"), info
        assert info["far"].startswith("2 atoms · 0 bonds (by distance)"), info
        assert info["linked"].startswith("2 atoms · 1 bonds (CONECT)"), info
        assert info["crowd"].startswith("3,009 atoms · 8 bonds (by distance)"), info
        note = page.text_content(".media-panel[data-key='crowd'] .viewer3d-note")
        assert "bonds by distance for 3,000 atoms packed closer than a molecule's" in note, note

        def middle(key):  # the drawing's centre: midway between the two carbons, on the line between them
            picture = drawing(page, f".media-panel[data-key='{key}']")
            y, x = picture.shape[0] // 2, picture.shape[1] // 2
            return picture[y - 4:y + 5, x - 4:x + 5]

        carbon = (144, 144, 144)
        assert pixels_near(middle("linked"), carbon, tolerance=30) >= 1  # the CONECT bond, in its atoms' colour
        assert pixels_near(middle("far"), carbon, tolerance=30) == 0
        picture = drawing(page, ".media-panel[data-key='inferred']")
        assert pixels_near(picture, (255, 13, 13), tolerance=20) >= 4  # O's colour, at its atom and its bonds' halves
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def drawn(page, panel: str, timeout: int = 60_000) -> None:
    """Waits for the viewer in `panel` to draw, clicking "load" where the file waits for it."""
    page.wait_for_selector(f"{panel} .viewer3d[data-state='drawn'], {panel} .viewer3d-load", timeout=timeout)
    if page.query_selector(f"{panel} .viewer3d-load"):
        page.click(f"{panel} .viewer3d-load")
    page.wait_for_selector(f"{panel} .viewer3d[data-state='drawn']", timeout=timeout)


# (WebGL on SwiftShader hands a million points to the 2-D drawing as --disable-webgl does: one path)
@reading_only
def test_a_vertex_only_obj_is_thinned_and_a_molecule_past_the_limit_says_how_many_atoms_are_drawn(root, tmp_path, page):
    """The point limit (2,000,000) holds for an OBJ of vertices alone (thinned, as an .npy cloud is:
    before, it was drawn whole, bounded only by the file size) and for a PDB/PQR (its first atoms,
    saying so: before, the info line named the atoms drawn as if they were all)."""
    rows = 2_000_001
    obj = tmp_path / "cloud.obj"
    with obj.open("w") as out:
        out.writelines(f"v {i % 1000} {i // 1000} 0\n" for i in range(rows))
    pqr = tmp_path / "crowd.pqr"  # serial 1 throughout, element X (no covalent radius: no bonds to infer)
    with pqr.open("w") as out:
        out.writelines(f"ATOM 1 X X 1 {i % 1000} {i // 1000} 0 0 1\n" for i in range(rows))
    run = tracklet.init(project="clouds", id="limits", dir=str(root), settings=QUIET)
    run.log({"cloud": tracklet.Object3D(str(obj)), "crowd": tracklet.Molecule(str(pqr))})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/limits?token=" + token)
        for key in ("cloud", "crowd"):
            drawn(page, f".media-panel[data-key='{key}']", timeout=180_000)
        info = page.text_content(".media-panel[data-key='cloud'] .viewer3d-info")
        assert info.startswith("1,000,001 points (1 in 2 of 2,000,001) · x 0…998 · y 0…2000"), info
        info = page.text_content(".media-panel[data-key='crowd'] .viewer3d-info")
        assert info.startswith("2,000,000 of 2,000,001 atoms · 0 bonds"), info
        assert "1 atoms past the first 2,000,000" in page.text_content(".media-panel[data-key='crowd'] .viewer3d-note")
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_zooming_without_end_stops_at_a_bound_and_the_mesh_stays_drawn(root, tmp_path, page):
    """Zooming out (or in) as far as the wheel goes: before, the distance overflowed to infinity and
    nothing was drawn again until "reset"."""
    stl = tmp_path / "cube.stl"
    stl.write_bytes(cube_stl())
    run = tracklet.init(project="clouds", id="zoom", dir=str(root), settings=QUIET)
    run.log({"cube": tracklet.Object3D(str(stl))})
    run.finish()
    panel = ".media-panel[data-key='cube']"
    wheel = """([selector, delta, times]) => { const overlay = document.querySelector(selector + ' .viewer3d-overlay');
      for (let i = 0; i < times; i++) overlay.dispatchEvent(new WheelEvent('wheel', {deltaY: delta, cancelable: true, bubbles: true})); }"""
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/zoom?token=" + token)
        drawn(page, panel)

        def lit():
            picture = drawing(page, panel)
            return int((np.abs(picture - np.array(BACKGROUND)).max(axis=2) > 30).sum())

        home = lit()
        page.evaluate(wheel, [panel, 1000, 1000])  # out, e times a step: e^1000 overflows a double
        assert lit() < home / 100
        page.evaluate(wheel, [panel, -1000, 5])  # and back in a few steps: the cube fills more than the first view
        assert lit() > home
        page.evaluate(wheel, [panel, -1000, 2000])  # in, e^-2000: zero in a double
        page.evaluate(wheel, [panel, 1000, 7])  # and out a few steps: about the first view
        assert 0.7 * home < lit() < 1.1 * home
        page.dblclick(f"{panel} .viewer3d-overlay")
        assert lit() == home
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_mesh_triangles_with_a_corner_not_finite_are_left_out_and_the_rest_drawn(root, tmp_path, page):
    """STL (binary, ASCII), OBJ and glTF: the triangles touching a non-finite vertex are dropped and
    counted under the drawing, as non-finite points are (before, the whole mesh was refused)."""
    body = bytearray(cube_stl())
    body[84 + 12:84 + 16] = np.float32(np.nan).tobytes()  # the first triangle's first corner's x
    facets = "".join(f"facet normal 0 0 1\nouter loop\nvertex {a} 0 0\nvertex 1 {b} 0\nvertex 0 1 0\nendloop\nendfacet\n"
                     for a, b in (("0", "0"), ("nan", "0"), ("1e39", "0"), ("0", "-inf"), ("2", "0")))
    obj = ("v 0 0 0\nv 2 0 0\nv 2 2 0\nv 0 2 0\nv nan 1 2\nv 1 1 2\n"
           "f 1 2 3 4\nf 1 2 5\nf 2 3 6\nf 3 4 6\nf 4 1 6\nf 1 2 6\n")
    doc = Gltf()
    positions, _, indices = cube()
    positions[0] = [np.nan, 0, 0]  # in the first face's two triangles
    position = doc.accessor(doc.view(positions.tobytes()), FLOAT, 24, "VEC3")
    index = doc.accessor(doc.view(indices.astype(np.uint16).tobytes()), UINT16, 36, "SCALAR")
    doc.node(mesh=doc.mesh({"attributes": {"POSITION": position}, "indices": index, "material": doc.material(RED)}))
    nothing = cube_stl()[:84] + b"".join(b"\0" * 12 + np.full(9, np.inf, np.float32).tobytes() + b"\0\0" for _ in range(12))
    files = {"binary": ("stl", bytes(body)), "ascii": ("stl", f"solid x\n{facets}endsolid x\n".encode()),
             "obj": ("obj", obj.encode()), "glb": ("glb", doc.glb()), "nothing": ("stl", nothing)}
    for key, (ext, data) in files.items():
        (tmp_path / f"{key}.{ext}").write_bytes(data)
    run = tracklet.init(project="clouds", id="finite", dir=str(root), settings=QUIET)
    run.log({key: tracklet.Object3D(str(tmp_path / f"{key}.{ext}")) for key, (ext, _) in files.items()})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/finite?token=" + token)
        for key, kept, left_out in (("binary", 11, "1 triangle "), ("ascii", 2, "3 triangles "), ("obj", 6, "1 triangle "),
                                    ("glb", 10, "2 triangles ")):
            panel = f".media-panel[data-key='{key}']"
            drawn(page, panel)
            info = page.text_content(f"{panel} .viewer3d-info")
            assert info.startswith(f"{kept} triangles") and "NaN" not in info and "Infinity" not in info, (key, info)
            note = page.text_content(f"{panel} .viewer3d-note")
            assert f"left out: {left_out}with a corner whose coordinates are not finite numbers" in note, (key, note)
            picture = drawing(page, panel)
            assert (np.abs(picture - np.array(BACKGROUND)).max(axis=2) > 30).sum() > 1000, key
        error = page.wait_for_selector(".media-panel[data-key='nothing'] .viewer3d[data-state='error']").text_content()
        assert "no triangle whose coordinates are all finite numbers" in error, error
    finally:
        ui.terminate()
        ui.wait(timeout=10)


@reading_only
def test_a_pdb_ensemble_draws_its_first_model_and_the_first_of_alternate_locations(root, tmp_path, page):
    """An NMR entry's MODEL records: the first model is drawn, "model 1 of 3" (before, all of them
    overlaid, bonded by distance to each other); an atom at alternate locations (altLoc A, B) is
    drawn at the first (before, both, and bonds between and from them)."""
    def model(number, shift):
        lines = [PDB_ATOM.format(i + 1, name, x + shift, y, z, element) for i, (name, element, x, y, z) in enumerate(ETHANOL)]
        at = 2  # the oxygen, at two locations 0.3 Å apart
        lines[at] = lines[at][:16] + "A" + lines[at][17:]
        lines.insert(at + 1, PDB_ATOM.format(10, "O", 2.3 + shift, 1.35, 0, "O")[:16] + "B" + PDB_ATOM.format(10, "O", 2.3 + shift, 1.35, 0, "O")[17:])
        return f"MODEL     {number:4d}\n" + "".join(lines) + "ENDMDL\n"

    (tmp_path / "nmr.pdb").write_text("".join(model(n, 0.4 * (n - 1)) for n in (1, 2, 3)) + "END\n")
    run = tracklet.init(project="clouds", id="nmr", dir=str(root), settings=QUIET)
    run.log({"nmr": tracklet.Molecule(str(tmp_path / "nmr.pdb"))})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/clouds/runs/nmr?token=" + token)
        drawn(page, ".media-panel[data-key='nmr']")
        info = page.text_content(".media-panel[data-key='nmr'] .viewer3d-info")
        assert info.startswith("9 atoms (model 1 of 3) · 8 bonds (by distance) · x -0.36…2.93 "), info
    finally:
        ui.terminate()
        ui.wait(timeout=10)
