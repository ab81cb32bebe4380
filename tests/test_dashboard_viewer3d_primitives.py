"""The 3-D viewer (web/src/gltf.ts, web/src/scene3d.ts, web/src/viewer3d.ts) in a real headless
Chromium against one `tracklet ui` over one data root, drawn with WebGL (SwiftShader) and with the
2-D fallback (WebGL disabled), one page each for the module: a glTF's points, lines, line strips and
loops, alone and with triangles (hidden behind them where they are behind); ions named as force
fields name them (CHARMM's SOD, CLA, POT, CAL, CES; MG, ZN) in PDB and GRO files without element
columns, in their elements' colours; a mesh of more triangles than the 2-D renderer draws a frame."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import QUIET
from test_dashboard import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, STATIC, playwright_api, start_ui
from test_dashboard_viewer3d import BACKGROUND, FLOAT, RENDERERS, UINT8, UINT32, Gltf, drawing, hue, pixels_near

import tracklet

np = pytest.importorskip("numpy")
pytest.importorskip("PIL.Image")

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]

MAX_2D_TRIANGLES = 1_000_000  # web/src/viewer3d.ts


def accessor(doc: Gltf, values, component=FLOAT, kind="VEC3", **extra) -> int:
    array = np.asarray(values, {FLOAT: np.float32, UINT8: np.uint8, UINT32: np.uint32}[component])
    return doc.accessor(doc.view(array.tobytes()), component, len(array), kind, **extra)


def lines_only() -> Gltf:
    """No triangles: 4 green points (mode 0); a red X (lines, mode 1: 2 segments); a blue zigzag (line
    strip, mode 3: 3 segments); a square loop (mode 2: 4 segments, the last closing it) whose corners
    are coloured red, green, blue, white by COLOR_0 under a white material."""
    doc = Gltf()
    points = accessor(doc, [[x, 0, 0] for x in (-3, -2.5, -2, -1.5)])
    cross = accessor(doc, [[0, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0]])
    zigzag = accessor(doc, [[2, 0, 0], [2.5, 1, 0], [3, 0, 0], [3.5, 1, 0]])
    square = accessor(doc, [[-1, -2, 0], [1, -2, 0], [1, -1, 0], [-1, -1, 0]])
    corners = accessor(doc, [[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255], [255, 255, 255, 255]], UINT8, "VEC4",
                       normalized=True)
    doc.node(mesh=doc.mesh({"attributes": {"POSITION": points}, "mode": 0, "material": doc.material([0, 1, 0, 1])},
                           {"attributes": {"POSITION": cross}, "mode": 1, "material": doc.material([1, 0, 0, 1])},
                           {"attributes": {"POSITION": zigzag}, "mode": 3, "material": doc.material([0, 0, 1, 1])},
                           {"attributes": {"POSITION": square, "COLOR_0": corners}, "mode": 2,
                            "material": doc.material([1, 1, 1, 1])}))
    return doc


def mixed() -> Gltf:
    """A grey square (2 triangles, indexed) at z = 0 facing the first view; in front of it (z = 0.5) a
    red line strip across it and a red point; behind it (z = -0.3), well inside its outline, a short
    green line and a green point: hidden."""
    doc = Gltf()
    square = accessor(doc, [[0, 0, 0], [2, 0, 0], [2, 2, 0], [0, 2, 0]])
    indices = accessor(doc, [0, 1, 2, 0, 2, 3], UINT32, "SCALAR")
    front = accessor(doc, [[-0.5, 0.5, 0.5], [1, 1.5, 0.5], [2.5, 0.5, 0.5]])
    dot = accessor(doc, [[1, 1, 0.5]])
    behind = accessor(doc, [[0.8, 1, -0.3], [1.2, 1, -0.3]])
    hidden = accessor(doc, [[1, 0.8, -0.3]])
    red, green = doc.material([1, 0, 0, 1]), doc.material([0, 1, 0, 1])
    doc.node(mesh=doc.mesh({"attributes": {"POSITION": square}, "indices": indices, "material": doc.material([0.5, 0.5, 0.5, 1])},
                           {"attributes": {"POSITION": front}, "mode": 3, "material": red},
                           {"attributes": {"POSITION": dot}, "mode": 0, "material": red},
                           {"attributes": {"POSITION": behind}, "mode": 1, "material": green},
                           {"attributes": {"POSITION": hidden}, "mode": 0, "material": green}))
    return doc


def grid(side: int) -> Gltf:
    """A wavy square of (side - 1)² × 2 triangles, indexed (small on disk: no load button)."""
    doc = Gltf()
    u, v = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side), indexing="ij")
    positions = np.stack([u, v, 0.1 * np.sin(6 * u) * np.cos(6 * v)], -1).reshape(-1, 3).astype(np.float32)
    at = np.arange(side * side, dtype=np.uint32).reshape(side, side)
    a, b, c, d = at[:-1, :-1], at[1:, :-1], at[1:, 1:], at[:-1, 1:]
    indices = np.stack([a, b, c, a, c, d], -1).reshape(-1)
    position = doc.accessor(doc.view(positions.tobytes()), FLOAT, len(positions), "VEC3")
    index = doc.accessor(doc.view(indices.tobytes()), UINT32, len(indices), "SCALAR")
    doc.node(mesh=doc.mesh({"attributes": {"POSITION": position}, "indices": index}))
    return doc


# Ions 4 Å apart (none bonded), as CHARMM writes them (no element column), then an alanine's alpha
# carbon (CA: carbon, not calcium). The element each must be drawn as, by its CPK colour.
IONS = [("SOD", "SOD", "NA"), ("CLA", "CLA", "CL"), ("POT", "POT", "K"), ("CAL", "CAL", "CA"), ("CES", "CES", "CS"),
        ("MG", "MG", "MG"), ("ZN", "ZN2", "ZN"), ("CA", "ALA", "C")]
COLOURS = {"NA": (171, 92, 242), "CL": (31, 240, 31), "K": (143, 64, 212), "CA": (61, 255, 0), "CS": (87, 23, 143),
           "MG": (138, 255, 0), "ZN": (125, 128, 176), "C": (144, 144, 144)}
WRONG = {"S": (255, 200, 50), "P": (255, 128, 0), "pink (unknown)": (255, 20, 147)}


def charmm_pdb() -> str:
    atom = "ATOM  {:5d} {:<4s} {:<4s}I{:4d}    {:8.3f}{:8.3f}{:8.3f}  1.00  0.00      ION\n"
    return "".join(atom.format(i + 1, name, residue, i + 1, 4.0 * i, 0.0, 0.0) for i, (name, residue, _) in enumerate(IONS)) + "END\n"


def ions_gro() -> str:
    lines = ["ions", f"{len(IONS):5d}"]
    lines += [f"{i + 1:5d}{residue:<5}{name:>5}{i + 1:5d}{0.4 * i:8.3f}{0:8.3f}{0:8.3f}" for i, (name, residue, _) in enumerate(IONS)]
    return "\n".join(lines + ["   3.00000   1.00000   1.00000"]) + "\n"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """One data root (run "shapes": the glTF files, the ions; a mesh past the 2-D renderer's
    triangles) and one `tracklet ui` over it. Yields (base URL, token)."""
    base = tmp_path_factory.mktemp("primitives")
    root, scratch = base / "data", base / "scratch"
    scratch.mkdir()
    side = 710  # 709² × 2 = 1,005,362 triangles
    files = {"lines": ("lines.glb", lines_only().glb()), "mixed": ("mixed.glb", mixed().glb()),
             "big": ("big.glb", grid(side).glb()), "pdb": ("ions.pdb", charmm_pdb().encode()),
             "gro": ("ions.gro", ions_gro().encode())}
    for name, content in files.values():
        (scratch / name).write_bytes(content)
    run = tracklet.init(project="shapes", id="shapes", dir=str(root), settings=QUIET)
    run.log({key: (tracklet.Molecule if key in ("pdb", "gro") else tracklet.Object3D)(str(scratch / name))
             for key, (name, _) in files.items()})
    run.finish()
    process, url, token = start_ui(root)
    try:
        yield url, token
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module", params=sorted(RENDERERS))
def tab(request, ui):
    """The run's page in Chromium drawing with WebGL or without it; fails on any console error."""
    url, token = ui
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + RENDERERS[request.param])
        page = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(120_000)
        page.goto(url + "projects/shapes/runs/shapes?token=" + token)
        # every panel drawn before any test looks: one finishing later (the big mesh) moves the others
        # down the page, and a screenshot taken meanwhile caught part of another panel
        page.wait_for_function("() => { const views = [...document.querySelectorAll('.media-panel .viewer3d')]; "
                               "return views.length === 5 && views.every(v => ['drawn', 'error'].includes(v.dataset.state)) }")
        page.renderer = request.param
        try:
            yield page
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"viewer3d-primitives-{request.param}.png"), full_page=True)
            chromium.close()
    assert errors == [], f"browser console errors: {errors}"


def drawn(tab, key: str) -> str:
    """The panel's selector once its viewer is drawn (an error fails, saying it)."""
    panel = f".media-panel[data-key='{key}']"
    tab.wait_for_selector(f"{panel} .viewer3d[data-state='drawn'], {panel} .viewer3d[data-state='error']")
    error = tab.query_selector(f"{panel} .viewer3d-error")
    assert error is None, error.text_content()
    assert tab.get_attribute(f"{panel} .viewer3d-view", "data-renderer") == tab.renderer
    return panel


def notes(tab, panel: str) -> list[str]:
    return tab.eval_on_selector_all(f"{panel} .viewer3d-note", "notes => notes.map(n => n.textContent)")


def test_gltf_points_lines_strips_and_loops_are_drawn_in_their_colours(tab):
    panel = drawn(tab, "lines")
    info = tab.text_content(f"{panel} .viewer3d-info")
    assert info.startswith("4 points · 9 line segments · x -3…3.5 · y -2…1 · "), info
    assert [note for note in notes(tab, panel) if note.startswith("left out")] == []
    picture = drawing(tab, panel)
    red, green, blue = (int(hue(picture, channel).sum()) for channel in (0, 1, 2))
    assert red > 100 and green > 30 and blue > 100, (red, green, blue)
    assert pixels_near(picture, (255, 255, 255), tolerance=30) > 10  # the loop's white corner's segments


def test_points_and_lines_with_triangles_are_hidden_where_behind_them(tab):
    panel = drawn(tab, "mixed")
    info = tab.text_content(f"{panel} .viewer3d-info")
    assert info.startswith("2 triangles · 2 points · 3 line segments · "), info
    picture = drawing(tab, panel)
    lit = (np.abs(picture - np.array(BACKGROUND)).max(axis=2) > 30).sum()
    assert lit > 5000, lit  # the square
    assert hue(picture, 0).sum() > 100  # the red strip and point in front of it
    assert hue(picture, 1).sum() == 0  # the green line and point behind it: hidden


@pytest.mark.parametrize("key", ["pdb", "gro"])
def test_ions_named_as_force_fields_name_them_are_drawn_as_their_elements(tab, key):
    panel = drawn(tab, key)
    info = tab.text_content(f"{panel} .viewer3d-info")
    assert info.startswith(f"{len(IONS)} atoms · 0 bonds (by distance)"), info
    picture = drawing(tab, panel)
    for element, colour in COLOURS.items():
        assert pixels_near(picture, colour, tolerance=8) >= 4, (key, element)
    for element, colour in WRONG.items():  # SOD is not sulfur, POT not phosphorus: none left unknown
        assert pixels_near(picture, colour, tolerance=8) == 0, (key, element)


def test_a_mesh_past_the_2d_renderers_triangles_is_thinned_and_says_so(tab):
    panel = drawn(tab, "big")
    triangles = 709 * 709 * 2
    assert tab.text_content(f"{panel} .viewer3d-info").startswith(f"{triangles:,} triangles"), panel
    picture = drawing(tab, panel)
    lit = (np.abs(picture - np.array(BACKGROUND)).max(axis=2) > 30).sum()
    assert lit > 360 * 480 * 0.1, lit
    thinned = [note for note in notes(tab, panel) if "triangles (evenly spread) are drawn" in note]
    if tab.renderer == "2d":
        assert thinned == [f"without WebGL, {MAX_2D_TRIANGLES:,} of the mesh's {triangles:,} triangles (evenly spread) "
                           "are drawn: download it to see all of it"], notes(tab, panel)
        # as many as the note says (a step of 1.005 triangles, rounded down each time, went through them all)
        assert tab.get_attribute(f"{panel} .viewer3d-view", "data-triangles-drawn") == str(MAX_2D_TRIANGLES)
    else:
        assert thinned == []
