"""The 3-D viewer's other files (web/src/gltf.ts, web/src/scene3d.ts, web/src/viewer3d.ts) in a real
headless Chromium against one `tracklet ui` over one data root: .gltf files whose buffers and
textures are files beside them (among a run's files, a media item's run's files, an artifact
version's files), strips, fans, sparse accessors, vertex colours and textures; crafted files that
must end as a named error; molecules in SDF/MOL (V2000, V3000), MOL2, GRO and mmCIF; the pan's
bound. One browser (WebGL on SwiftShader: the renderer does not change what these test, but for the
textures, which only the WebGL path draws as images) and one page for the module."""

from __future__ import annotations

import base64
import io
import json
import struct
from pathlib import Path

import pytest
from conftest import QUIET
from test_dashboard import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, STATIC, playwright_api, start_ui
from test_dashboard_viewer3d import BACKGROUND, ETHANOL, ETHANOL_BONDS, FLOAT, UINT8, UINT16, Gltf, cube, drawing, hue

import tracklet

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]

RED, GREEN, BLUE = [1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]


def png(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.array(pixels, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


TEXTURE = png([[[255, 0, 0], [0, 200, 0]], [[255, 0, 0], [0, 200, 0]]])  # left red, right green


def quad(doc: Gltf, x0: float, mode: int = 4, **attributes) -> dict:
    """A 2×2 square in glTF's x-y plane (facing +z: the viewer's first view) from x0, as triangles,
    a strip or a fan, with u, v from 0 to 1 (v down, as images)."""
    corners = {4: [(0, 0), (1, 0), (1, 1), (0, 0), (1, 1), (0, 1)], 5: [(0, 0), (1, 0), (0, 1), (1, 1)],
               6: [(0, 0), (1, 0), (1, 1), (0, 1)]}[mode]
    positions = np.array([[x0 + 2 * u, 2 * v, 0] for u, v in corners], np.float32)
    uvs = np.array([[u, 1 - v] for u, v in corners], np.float32)
    position = doc.accessor(doc.view(positions.tobytes()), FLOAT, len(corners), "VEC3",
                            min=positions.min(axis=0).tolist(), max=positions.max(axis=0).tolist())
    uv = doc.accessor(doc.view(uvs.tobytes()), FLOAT, len(corners), "VEC2")
    return {"attributes": {"POSITION": position, "TEXCOORD_0": uv, **attributes}, "mode": mode}


def textured(doc: Gltf, image: dict) -> int:
    doc.doc["images"] = [image]
    doc.doc["textures"] = [{"source": 0}]
    doc.doc["materials"].append({"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}})
    return len(doc.doc["materials"]) - 1


def external(doc: Gltf, uri: str) -> str:
    """The document with its buffer as a file named `uri` beside it."""
    doc.doc["buffers"] = [{"byteLength": len(doc.data), "uri": uri}]
    return json.dumps(doc.doc)


def scene_beside_its_files(bin_uri="scene.bin", image_uri="wood%5Fgrain.png") -> tuple[str, bytes]:
    """A textured square (its image a file beside it, its uri percent-encoded: run files are letters, digits, ".", "_" and "-") and a blue one."""
    doc = Gltf()
    material = textured(doc, {"uri": image_uri})
    doc.node(mesh=doc.mesh({**quad(doc, -2.5), "material": material}))
    doc.node(mesh=doc.mesh({**quad(doc, 0.5), "material": doc.material(BLUE)}))
    return external(doc, bin_uri), bytes(doc.data)


def shapes() -> Gltf:
    """A strip and a fan (2 triangles each), in red and in green vertex colours times a blue-green
    factor; a sparse cube (one corner moved to x = 5 by a sparse substitution); a points primitive."""
    doc = Gltf()
    colours = doc.accessor(doc.view(np.tile([255, 255, 255, 255], (4, 1)).astype(np.uint8).tobytes()), UINT8, 4, "VEC4",
                           normalized=True)
    strip = quad(doc, -6, mode=5, COLOR_0=colours)
    fan = quad(doc, -3, mode=6)
    del strip["attributes"]["TEXCOORD_0"], fan["attributes"]["TEXCOORD_0"]
    positions, _, indices = cube()
    base = doc.view(positions.tobytes())
    moved = doc.view(struct.pack("<H", 5)), doc.view(struct.pack("<fff", 5, 0.5, 0.5))
    sparse = doc.accessor(base, FLOAT, 24, "VEC3", sparse={
        "count": 1, "indices": {"bufferView": moved[0], "componentType": UINT16}, "values": {"bufferView": moved[1]}})
    index = doc.accessor(doc.view(indices.astype(np.uint16).tobytes()), UINT16, 36, "SCALAR")
    points = doc.accessor(doc.view(np.zeros((3, 3), np.float32).tobytes()), FLOAT, 3, "VEC3")
    doc.node(mesh=doc.mesh({**strip, "material": doc.material(RED)}, {**fan, "material": doc.material([0, 1, 0, 1])}))
    doc.node(mesh=doc.mesh({"attributes": {"POSITION": sparse}, "indices": index, "material": doc.material(BLUE)},
                           {"attributes": {"POSITION": points}, "mode": 0}))
    return doc


def crafted() -> dict[str, tuple[str, bytes, str]]:
    """Files that must end as a named error (key: file name, bytes, what the error says)."""
    files: dict[str, tuple[str, bytes, str]] = {}

    def sparse_doc(**change) -> Gltf:
        doc = shapes()
        sparse = doc.doc["accessors"][next(i for i, a in enumerate(doc.doc["accessors"]) if "sparse" in a)]["sparse"]
        sparse.update(change.get("sparse", {}))
        if "index" in change:
            doc.data[doc.doc["bufferViews"][sparse["indices"]["bufferView"]]["byteOffset"]] = change["index"]
        return doc

    files["sparserange"] = ("sr.glb", sparse_doc(index=200).glb(), "sparse index 200 is out of range (the accessor has 24 elements)")
    files["sparsecount"] = ("sc.glb", sparse_doc(sparse={"count": 2**31}).glb(), "sparse count is 2,147,483,648: 1 to its count of 24")
    past = shapes()
    past.doc["bufferViews"][0]["byteOffset"] = 10**9
    files["pastend"] = ("pe.glb", past.glb(), "bufferView 0 (bytes 1,000,000,000 to")
    zeros = shapes()
    zeros.doc["accessors"].append({"componentType": FLOAT, "count": 2**40, "type": "VEC3"})
    zeros.doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"] = len(zeros.doc["accessors"]) - 1
    files["zeros"] = ("z.glb", zeros.glb(), "has no bufferView and a count of 1,099,511,627,776: more than the 6,000,000 vertices")
    draco = json.loads(shapes().gltf())
    draco["extensionsUsed"] = draco["extensionsRequired"] = ["KHR_draco_mesh_compression"]
    files["draco"] = ("d.gltf", json.dumps(draco).encode(), "compressed with Draco (KHR_draco_mesh_compression): not supported")
    meshopt = json.loads(shapes().gltf())
    meshopt["extensionsUsed"] = meshopt["extensionsRequired"] = ["EXT_meshopt_compression"]
    files["meshopt"] = ("m.gltf", json.dumps(meshopt).encode(), "compressed with meshopt (EXT_meshopt_compression)")
    for key, uri, message in (("parent", "../other/scene.bin", 'leaves the .gltf\'s folder ("..")'),
                              ("url", "http://169.254.169.254/scene.bin", "is a URL"),
                              ("absolute", "/etc/passwd", "is an absolute path"),
                              ("encoded", "..%2Fscene.bin", 'leaves the .gltf\'s folder ("..")'),
                              ("missing", "nowhere.bin", "\"nowhere.bin\" is not among run formats's files")):
        text, _ = scene_beside_its_files(bin_uri=uri)
        files[key] = (f"{key}.gltf", text.encode(), message)
    return files


def huge_png() -> bytes:
    """A real 1×1 PNG whose header claims 100,000 × 100,000 pixels (its CRC fixed up to match)."""
    real = bytearray(png([[[255, 0, 0]]]))
    real[16:24] = struct.pack(">II", 100_000, 100_000)
    import zlib
    real[29:33] = struct.pack(">I", zlib.crc32(bytes(real[12:29])))
    return bytes(real)


SDF_ETHANOL = ["C", "C", "O", "H", "H", "H", "H", "H", "H"]


def molfile(atoms=ETHANOL, bonds=ETHANOL_BONDS, name="ethanol", counts=None) -> str:
    lines = [name, "  tracklet-test", ""]
    lines.append(counts or f"{len(atoms):3d}{len(bonds):3d}  0  0  0  0  0  0  0  0999 V2000")
    lines += [f"{x:10.4f}{y:10.4f}{z:10.4f} {element:<3} 0  0  0  0  0  0  0  0  0  0  0  0" for _, element, x, y, z in atoms]
    lines += [f"{a:3d}{b:3d}  1  0" for a, b in bonds]
    return "\n".join(lines) + "\nM  END\n"


def molfile_v3000(atoms=ETHANOL, bonds=ETHANOL_BONDS) -> str:
    lines = ["ethanol", "  tracklet-test", "", "  0  0  0     0  0            999 V3000", "M  V30 BEGIN CTAB",
             f"M  V30 COUNTS {len(atoms)} {len(bonds)} 0 0 0", "M  V30 BEGIN ATOM"]
    lines += [f"M  V30 {i + 1} {element} {x} {y} {z} 0" for i, (_, element, x, y, z) in enumerate(atoms)]
    lines += ["M  V30 END ATOM", "M  V30 BEGIN BOND"]
    lines += [f"M  V30 {i + 1} 1 {a} {b}" for i, (a, b) in enumerate(bonds)]
    return "\n".join(lines + ["M  V30 END BOND", "M  V30 END CTAB", "M  END"]) + "\n"


def mol2(atoms=ETHANOL, bonds=ETHANOL_BONDS) -> str:
    lines = ["@<TRIPOS>MOLECULE", "ethanol", f" {len(atoms)} {len(bonds)} 0 0 0", "SMALL", "NO_CHARGES", "", "@<TRIPOS>ATOM"]
    types = {"C": "C.3", "O": "O.3", "H": "H"}
    lines += [f"{i + 1:7d} {name:<4} {x:9.4f} {y:9.4f} {z:9.4f} {types[element]:<5} 1 EOH 0.0000"
              for i, (name, element, x, y, z) in enumerate(atoms)]
    lines.append("@<TRIPOS>BOND")
    lines += [f"{i + 1:6d} {a:5d} {b:5d} 1" for i, (a, b) in enumerate(bonds)]
    return "\n".join(lines) + "\n"


def gro(atoms=ETHANOL) -> str:
    lines = ["ethanol", f"{len(atoms):5d}"]
    lines += [f"{1:5d}{'EOH':<5}{name:>5}{i + 1:5d}{x / 10:8.3f}{y / 10:8.3f}{z / 10:8.3f}" for i, (name, _, x, y, z) in enumerate(atoms)]
    return "\n".join(lines + ["   1.00000   1.00000   1.00000"]) + "\n"


def gro_chloride() -> str:
    """A .gro naming its element nowhere: CL1 of ligand MCL is chlorine (2.1 Å from C1: bonded as
    C-Cl, too far for C-C); CA of ALA is carbon (1.9 Å from C1: bonded), not calcium."""
    atoms = [(1, "MCL", "C1", 0.0), (1, "MCL", "CL1", 0.21), (2, "ALA", "CA", -0.19)]
    lines = ["chloride", f"{len(atoms):5d}"]
    lines += [f"{n:5d}{res:<5}{name:>5}{i + 1:5d}{x:8.3f}{0:8.3f}{0:8.3f}" for i, (n, res, name, x) in enumerate(atoms)]
    return "\n".join(lines + ["   1.00000   1.00000   1.00000"]) + "\n"


def cif(atoms=ETHANOL) -> str:
    lines = ["data_EOH", "#", "loop_", "_atom_site.group_PDB", "_atom_site.id", "_atom_site.type_symbol",
             "_atom_site.label_atom_id", "_atom_site.label_alt_id", "_atom_site.Cartn_x", "_atom_site.Cartn_y",
             "_atom_site.Cartn_z", "_atom_site.pdbx_PDB_model_num"]
    lines += [f"HETATM {i + 1} {element} '{name}' . {x} {y} {z} 1" for i, (name, element, x, y, z) in enumerate(atoms)]
    lines += [f"HETATM {len(atoms) + i + 1} {element} {name} . {x + 50} {y} {z} 2" for i, (name, element, x, y, z) in enumerate(atoms)]
    return "\n".join(lines + ["#"]) + "\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One data root: run "formats" (media and run files), an artifact version with a .gltf beside
    its files; one `tracklet ui` over it; one browser page. Yields (page, base URL, the ui's token)."""
    base = tmp_path_factory.mktemp("formats")
    root, scratch = base / "data", base / "scratch"
    scratch.mkdir()
    scene, scene_bin = scene_beside_its_files()
    media: dict[str, tuple[str, bytes | str]] = {
        "beside": ("beside.gltf", scene), "shapes": ("shapes.glb", shapes().glb()),
        "sdf": ("ethanol.sdf", molfile() + "> <name>\nethanol\n\n$$$$\n" + molfile(name="again") + "$$$$\n"),
        "mol": ("ethanol.mol", molfile_v3000()), "mol2": ("ethanol.mol2", mol2()), "gro": ("ethanol.gro", gro()),
        "grocl": ("chloride.gro", gro_chloride()),
        "cif": ("ethanol.cif", cif()), "mmtf": ("ethanol.mmtf", b"\xde\x00\x01\xa4name"),
        "sdflies": ("lies.sdf", molfile(counts="999  8  0  0  0  0  0  0  0  0999 V2000")),
        "sdfbond": ("bond.sdf", molfile(bonds=[*ETHANOL_BONDS, (1, 42)])),
        "mol2bond": ("bond.mol2", mol2(bonds=[*ETHANOL_BONDS, (3, 77)])),
    }
    huge = Gltf()
    material = textured(huge, {"bufferView": huge.view(huge_png()), "mimeType": "image/png"})
    huge.node(mesh=huge.mesh({**quad(huge, 0), "material": material}))
    media["hugetexture"] = ("huge.glb", huge.glb())
    embedded = Gltf()
    material = textured(embedded, {"uri": "data:image/png;base64," + base64.b64encode(TEXTURE).decode()})
    embedded.node(mesh=embedded.mesh({**quad(embedded, 0, mode=5), "material": material}))
    media["embedded"] = ("embedded.gltf", embedded.gltf())
    for key, (name, content, _) in crafted().items():
        media[key] = (name, content)
    for name, content in media.values():
        (scratch / name).write_bytes(content.encode() if isinstance(content, str) else content)
    run = tracklet.init(project="formats", id="formats", dir=str(root), settings=QUIET)
    run.log({key: (tracklet.Molecule if name.endswith(("sdf", "mol", "mol2", "gro", "cif", "mmtf")) else tracklet.Object3D)(
        str(scratch / name)) for key, (name, _) in media.items()})
    # the media item "beside" names scene.bin and "wood_grain.png": among the run's files, at their top;
    # the run file models/scene.gltf names the same, beside it in models/
    files = Path(run.dir) / "files"
    for folder in (files, files / "models"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "scene.bin").write_bytes(scene_bin)
        (folder / "wood_grain.png").write_bytes(TEXTURE)
    (files / "models" / "scene.gltf").write_text(scene)
    (files / "models" / "ethanol.sdf").write_text(molfile())
    artifact = tracklet.Artifact("scenes", type="model")
    (scratch / "art" / "models").mkdir(parents=True)
    lost = scene.replace("scene.bin", "lost.bin").encode()  # names a file the version lacks
    for name, content in (("scene.gltf", scene.encode()), ("scene.bin", scene_bin), ("wood_grain.png", TEXTURE),
                          ("lost.gltf", lost)):
        (scratch / "art" / "models" / name).write_bytes(content)
    artifact.add_dir(str(scratch / "art"))
    run.log_artifact(artifact)
    run.finish()
    ui, url, token = start_ui(root)
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + ["--enable-unsafe-swiftshader"])
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        tab = context.new_page()
        errors: list[str] = []
        tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.set_default_timeout(60_000)
        tab.goto(url + "projects/formats/runs/formats?token=" + token)
        try:
            yield tab, url, token
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / "viewer3d-formats.png"), full_page=True)
            chromium.close()
            ui.terminate()
            ui.wait(timeout=10)
    assert errors == [], f"browser console errors: {errors}"


def panel(key: str) -> str:
    return f".media-panel[data-key='{key}']"


def drawn(tab, where: str) -> str:
    """Waits for the viewer in `where` to end drawn or as an error; its info line, or its error."""
    tab.wait_for_selector(f"{where} .viewer3d[data-state='drawn'], {where} .viewer3d[data-state='error']")
    if tab.query_selector(f"{where} .viewer3d[data-state='error']"):
        return "error: " + tab.text_content(f"{where} .viewer3d-error")
    return tab.text_content(f"{where} .viewer3d-info")


def notes(tab, where: str) -> list[str]:
    return tab.eval_on_selector_all(f"{where} .viewer3d-note", "notes => notes.map(n => n.textContent)")


def assert_textured_scene(tab, where: str) -> None:
    """The textured square on the left (red and green halves, from the image) and the blue one."""
    info = drawn(tab, where)
    assert info.startswith("4 triangles · x -2.5…2.5 · y 0…2"), info
    assert notes(tab, where) == []
    picture = drawing(tab, where)
    red, green, blue = hue(picture, 0), hue(picture, 1), hue(picture, 2)
    assert red.sum() > 300 and green.sum() > 300 and blue.sum() > 300, (red.sum(), green.sum(), blue.sum())
    columns = [float(np.nonzero(mask)[1].mean()) for mask in (red, green, blue)]
    assert columns[0] < columns[1] < columns[2], columns  # red | green, then the blue square


def test_a_gltf_beside_its_buffer_and_texture_is_drawn_from_a_runs_files_and_an_artifact_version(site):
    tab, url, token = site
    assert_textured_scene(tab, panel("beside"))  # a media item: its files among the run's, at their top
    tab.click(".files tr[data-name='models/scene.gltf'] button.file-view")  # a run file: beside it, in models/
    assert_textured_scene(tab, ".files tr[data-name='models/scene.gltf'] + tr.viewer3d-row")
    tab.click(".files tr[data-name='models/ethanol.sdf'] button.file-view")
    assert drawn(tab, ".files tr[data-name='models/ethanol.sdf'] + tr.viewer3d-row").startswith("9 atoms · ")
    tab.goto(url + "projects/formats/artifacts/scenes/v0?dir=models")
    try:
        artifact_file(tab, url, token)
    finally:
        tab.goto(url + "projects/formats/runs/formats")


def artifact_file(tab, url: str, token: str) -> None:
    """The version page's file browser: a .gltf drawn from the version's files; its file route."""
    tab.click("tr.file[data-path='models/scene.gltf'] button.file-view")
    assert_textured_scene(tab, ".file-browser .viewer3d-row")
    assert tab.query_selector("tr.file[data-path='models/scene.bin'] button.file-view") is None
    # the version's file route: a path is looked up in its manifest, never joined onto a directory
    fetched = [tab.request.get(f"{url}api/v1/projects/formats/artifacts/scenes/versions/v0/files/{path}",
                               headers={"Authorization": f"Bearer {token}"})
               for path in ("models/scene.bin", "models/..%2F..%2Fregistry.json", "models/nowhere.bin", "scene.bin")]
    assert fetched[0].status == 200 and fetched[0].body() == scene_beside_its_files()[1], fetched[0].text()[:300]
    assert [response.status for response in fetched[1:]] == [404, 404, 404]
    assert "has no file 'models/nowhere.bin'" in fetched[2].text()
    # a .gltf naming a file the version lacks: named, looked up in the version's list first (no
    # failed request: the module's browser console stays free of errors)
    tab.click("tr.file[data-path='models/lost.gltf'] button.file-view")
    error = drawn(tab, ".file-browser tr.file[data-path='models/lost.gltf'] + tr.viewer3d-row")
    assert error.startswith("error: ") and '"models/lost.bin" is not among scenes:v0\'s files' in error, error


def test_strips_fans_sparse_accessors_colours_and_textures_are_drawn(site):
    tab, _, _ = site
    info = drawn(tab, panel("shapes"))
    # 2 (strip) + 2 (fan) + 12 (cube): the sparse substitution moved a corner of the cube to x = 5; and
    # the points primitive's 3 (test_dashboard_viewer3d_primitives.py: points and lines drawn)
    assert info.startswith("16 triangles · 3 points · x -6…5 · "), info
    assert notes(tab, panel("shapes")) == []
    picture = drawing(tab, panel("shapes"))
    assert hue(picture, 0).sum() > 300 and hue(picture, 1).sum() > 300 and hue(picture, 2).sum() > 300
    info = drawn(tab, panel("embedded"))  # a strip with its texture as a data: URI
    assert info.startswith("2 triangles"), info
    picture = drawing(tab, panel("embedded"))
    red, green = hue(picture, 0), hue(picture, 1)
    assert red.sum() > 1000 and green.sum() > 1000 and np.nonzero(red)[1].mean() < np.nonzero(green)[1].mean()
    # an image claiming 100,000² pixels is not decoded: the square in its material's colour, and why
    assert drawn(tab, panel("hugetexture")).startswith("2 triangles")
    assert notes(tab, panel("hugetexture")) == [
        "left out: image 0 claims 100,000 × 100,000 pixels: more than the 16,777,216 decoded here: drawn in its material's base colour"]


def test_crafted_gltf_files_end_as_an_error_naming_the_problem(site):
    tab, _, _ = site
    for key, (_, _, message) in crafted().items():
        error = drawn(tab, panel(key))
        assert error.startswith("error: this object3d can't be drawn: ") and message in error, (key, error)


def test_molecules_in_sdf_mol_mol2_gro_and_mmcif_are_drawn_with_their_bonds(site):
    tab, _, _ = site
    expected = {"sdf": "9 atoms · 8 bonds (from the file)", "mol": "9 atoms · 8 bonds (from the file)",
                "mol2": "9 atoms · 8 bonds (from the file)", "gro": "9 atoms · 8 bonds (by distance)",
                "cif": "9 atoms (model 1 of 2) · 8 bonds (by distance)"}
    for key, start in expected.items():
        info = drawn(tab, panel(key))
        assert info.startswith(start), (key, info)
        assert "x -0.36…2.93" in info, (key, info)  # gro's nm read as Å
    assert drawn(tab, panel("grocl")).startswith("3 atoms · 2 bonds (by distance)")  # CL1 chlorine, CA carbon
    assert notes(tab, panel("sdf")) == ["left out: molecules 2 to 2 of the file's 2 (SDF records): the first is drawn"]
    picture = drawing(tab, panel("sdf"))
    assert hue(picture, 0).sum() > 20  # the oxygen, red
    assert (np.abs(picture - np.array(BACKGROUND)).max(axis=2) > 30).sum() > 200
    errors = {"sdflies": "the counts line declares 999 atoms and 8 bonds; the record has 19 lines after it",
              "sdfbond": "a bond between atoms 1 and 42 of 9: not a bond line",
              "mol2bond": "a bond between atoms 3 and 77, which the file does not have"}
    for key, message in errors.items():
        error = drawn(tab, panel(key))
        assert error.startswith("error: this molecule can't be drawn: ") and message in error, (key, error)
    # W&B's MMTF (binary) stays a download, saying so
    assert "MMTF (binary MessagePack) is not drawn here" in tab.text_content(f"{panel('mmtf')} .viewer3d-undrawn")


def test_panning_stops_at_the_scenes_bounds_and_reset_goes_back(site):
    tab, _, _ = site
    where = panel("shapes")
    drawn(tab, where)
    first = drawing(tab, where)
    box = tab.locator(f"{where} .viewer3d-overlay").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    tab.keyboard.down("Shift")
    for _ in range(3):  # dragged far beyond the scene, three times
        tab.mouse.move(x, y)
        tab.mouse.down()
        tab.mouse.move(x + 2000, y + 1500, steps=4)
        tab.mouse.up()
    tab.keyboard.up("Shift")
    panned = drawing(tab, where)
    lit = (np.abs(panned - np.array(BACKGROUND)).max(axis=2) > 30).sum()
    assert lit > 1000, lit  # the model is still in view
    assert not np.array_equal(panned, first)
    tab.click(f"{where} .viewer3d-reset")
    assert np.abs(drawing(tab, where) - first).max() <= 2
