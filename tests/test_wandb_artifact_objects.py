"""W&B's ``artifact.add(table_or_media, name)`` / ``artifact.get(name)`` (W&B's Tables tutorial:
a predictions table with images logged in an artifact, then read back by another run): stored as
W&B stores them (``<name>.table.json``, media files under ``media/``), read back as a ``Table``
whose image cells are images with the same pixels and captions."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image as PILImage

import tracklet.compat.wandb as wandb
from conftest import read


def test_a_table_with_images_and_an_image_round_trip_through_an_artifact(root, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    pixels = [np.random.default_rng(i).integers(0, 256, (6, 5, 3), dtype=np.uint8) for i in range(3)]
    with wandb.init(project="tables") as run:
        table = wandb.Table(columns=["id", "image", "label", "score"])
        for i, array in enumerate(pixels):
            table.add_data(i, wandb.Image(array, caption=f"pred {i}"), "cat" if i % 2 else "dog", 0.5 + i / 10)
        table.add_data(3, wandb.Image(pixels[0], caption="pred 0"), None, float("nan"))  # same image: one file
        artifact = wandb.Artifact("predictions", type="evaluation")
        artifact.add(table, "eval_table")
        artifact.add(wandb.Image(pixels[2], caption="one"), "sample")
        with pytest.raises(Exception, match="takes a Table, a JoinedTable or a media object"):
            artifact.add({"not": "media"}, "bad")
        run.log_artifact(artifact).wait()

    with wandb.init(project="tables") as reader:
        used = reader.use_artifact("predictions:latest")
        files = sorted(entry.path for entry in used.files())
        assert [f for f in files if not f.startswith("media/")] == ["eval_table.table.json", "sample.image.json"]
        assert len([f for f in files if f.startswith("media/image/")]) == 3 and all(f.endswith(".png") for f in files
                                                                                     if f.startswith("media/"))
        got = used.get("eval_table")
        assert got.columns == ["id", "image", "label", "score"]
        assert got.get_column("id") == [0, 1, 2, 3] and got.get_column("label") == ["dog", "cat", "dog", None]
        assert got.get_column("score")[:3] == pytest.approx([0.5, 0.6, 0.7]) and got.get_column("score")[3] is None
        folder = used.download(str(tmp_path / "downloaded"))
        with open(os.path.join(folder, "eval_table.table.json")) as handle:
            document = json.load(handle)
        for row, expected in zip(document["data"], [*pixels, pixels[0]]):
            cell = row[1]
            assert cell["_type"] == "image-file" and (cell["width"], cell["height"]) == (5, 6)
            assert np.array_equal(np.asarray(PILImage.open(os.path.join(folder, cell["path"]))), expected)
        images = got.get_column("image")  # the media objects, not their text (W&B's get_column)
        assert all(isinstance(image, wandb.Image) for image in images)
        assert [image.caption for image in images] == ["pred 0", "pred 1", "pred 2", "pred 0"]
        sample = used.get("sample")
        assert isinstance(sample, wandb.Image) and sample.caption == "one"
        assert used.get("nosuch") is None


def test_an_image_with_masks_and_boxes_keeps_them_through_an_artifact(root, tmp_path, monkeypatch):
    """W&B's segmentation tutorial: predictions with masks and boxes added to an artifact (alone
    and as table cells); ``get`` gives images whose masks (pixels, labels) and boxes (corners,
    class, caption, scores, labels) are the ones added, stored in W&B's artifact shape."""
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    pixels = np.random.default_rng(7).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), dtype=np.uint8)
    mask[10:20, 5:25] = 1
    mask[30:, 40:] = 2
    box_data = [
        {"position": {"minX": 0.1, "maxX": 0.4, "minY": 0.2, "maxY": 0.5}, "class_id": 1, "box_caption": "cat",
         "scores": {"acc": 0.9}},
        {"position": {"middle": [30, 20], "width": 10, "height": 8}, "domain": "pixel", "class_id": 2},
    ]

    def segmented(caption):
        return wandb.Image(pixels, caption=caption,
                           masks={"truth": {"mask_data": mask, "class_labels": {0: "bg", 1: "cat", 2: "dog"}}},
                           boxes={"predictions": {"box_data": box_data, "class_labels": {1: "kitty", 2: "doggo"}}})

    with wandb.init(project="seg") as run:
        artifact = wandb.Artifact("segmentation", type="evaluation")
        artifact.add(segmented("alone"), "sample")
        table = wandb.Table(columns=["id", "image"])
        table.add_data(0, segmented("in a table"))
        artifact.add(table, "preds")
        run.log_artifact(artifact).wait()

    with wandb.init(project="seg") as reader:
        used = reader.use_artifact("segmentation:latest")
        folder = used.download(str(tmp_path / "downloaded"))
        with open(os.path.join(folder, "sample.image.json")) as handle:
            document = json.load(handle)
        stored_mask = document["masks"]["truth"]
        assert np.array_equal(np.asarray(PILImage.open(os.path.join(folder, stored_mask["path"]))), mask)
        assert document["boxes"]["predictions"][0] == {**box_data[0], "position": box_data[0]["position"]}
        assert document["boxes"]["predictions"][1]["position"] == {"minX": 25, "maxX": 35, "minY": 16, "maxY": 24}
        with open(os.path.join(folder, document["classes"]["path"])) as handle:
            classes = json.load(handle)
        assert classes["_type"] == "classes" and {c["id"] for c in classes["class_set"]} == {0, 1, 2}
        sample = used.get("sample")
        (cell,) = used.get("preds").get_column("image")
        reader.log({"sample": sample, "cell": cell})
        logged = reader._run

    recorded = read(logged)
    for key, caption in (("sample", "alone"), ("cell", "in a table")):
        (image,) = recorded.images(key)
        assert image.caption == caption and np.array_equal(image.to_numpy(), pixels)
        truth = image.masks["truth"]
        assert np.array_equal(truth.to_numpy(), mask) and truth.class_labels == {0: "bg", 1: "cat", 2: "dog"}
        first, second = image.boxes["predictions"].boxes
        assert (first.min_x, first.max_x, first.min_y, first.max_y, first.pixel) == (0.1, 0.4, 0.2, 0.5, False)
        assert (first.class_id, first.label, first.caption, first.scores) == (1, "kitty", "cat", {"acc": 0.9})
        assert (second.min_x, second.max_x, second.min_y, second.max_y, second.pixel, second.label) == (
            25, 35, 16, 24, True, "doggo")


def test_a_plotly_figure_round_trips_through_an_artifact(root, monkeypatch):
    """``artifact.add(wandb.Plotly(fig), name)``: stored as W&B's ``<name>.plotly.json`` reference
    to the figure's JSON under ``media/plotly/``; ``get`` gives a ``wandb.Plotly`` of that figure."""
    go = pytest.importorskip("plotly.graph_objects")
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    with wandb.init(project="figs") as run:
        artifact = wandb.Artifact("plots", type="evaluation")
        artifact.add(wandb.Plotly(go.Figure(go.Bar(x=["a", "b"], y=[3, 1]))), "bars")
        run.log_artifact(artifact).wait()
    with wandb.init(project="figs") as reader:
        used = reader.use_artifact("plots:latest")
        files = sorted(entry.path for entry in used.files())
        assert files[0] == "bars.plotly.json" and files[1].startswith("media/plotly/") and len(files) == 2
        got = used.get("bars")
        assert isinstance(got, wandb.Plotly)
        (bar,) = got.figure["data"]
        assert (bar["type"], bar["x"], bar["y"]) == ("bar", ["a", "b"], [3, 1])


def _log_segmented_table(monkeypatch, root) -> tuple[str, np.ndarray, np.ndarray]:
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    pixels = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:10, 5:15] = 1
    box = {"position": {"minX": 0.1, "maxX": 0.4, "minY": 0.2, "maxY": 0.5}, "class_id": 1, "box_caption": "cat",
           "scores": {"acc": 0.9}}
    with wandb.init(project="seg") as run:
        table = wandb.Table(columns=["id", "image", "label"])
        table.add_data(0, wandb.Image(pixels, caption="first",
                                      masks={"truth": {"mask_data": mask, "class_labels": {0: "bg", 1: "cat"}}},
                                      boxes={"pred": {"box_data": [box], "class_labels": {1: "kitty"}}}), "cat")
        table.add_data(1, wandb.Image(pixels[::-1].copy(), caption="second"), "dog")
        run.log({"preds": table})
        run_id = run.id
    return run_id, pixels, mask


def _check_cells_are_images(api, run_id, pixels, mask) -> None:
    got = api.artifact(f"seg/run-{run_id}-preds:latest").get("preds")
    assert got.get_column("id") == [0, 1] and got.get_column("label") == ["cat", "dog"]
    first, second = got.get_column("image")
    assert isinstance(first, wandb.Image) and isinstance(second, wandb.Image)
    with wandb.init(project="seg") as again:  # what W&B users do with them: log them (or look at them)
        again.log({"first": first, "second": second})
        logged = again._run
    recorded = read(logged)
    (image,) = recorded.images("first")
    assert image.caption == "first" and np.array_equal(image.to_numpy(), pixels)
    assert np.array_equal(image.masks["truth"].to_numpy(), mask)
    assert image.masks["truth"].class_labels == {0: "bg", 1: "cat"}
    (kept,) = image.boxes["pred"].boxes
    assert (kept.min_x, kept.max_x, kept.class_id, kept.label, kept.caption, kept.scores) == (
        0.1, 0.4, 1, "kitty", "cat", {"acc": 0.9})
    (image,) = recorded.images("second")
    assert image.caption == "second" and np.array_equal(image.to_numpy(), pixels[::-1])


def test_a_logged_tables_image_cells_read_back_through_the_w_and_b_api_are_images(root, monkeypatch):
    """W&B's documented way to read a logged table, ``api.artifact("run-<id>-<key>:latest").get(key)``,
    gives its media cells as ``wandb.Image`` objects (they were the stored structs: dicts)."""
    run_id, pixels, mask = _log_segmented_table(monkeypatch, root)
    _check_cells_are_images(wandb.Api(), run_id, pixels, mask)


def test_image_cells_of_a_table_on_a_server_are_images_too(root, monkeypatch, tmp_path, servers):
    from click.testing import CliRunner

    from tracklet.cli.main import main

    run_id, pixels, mask = _log_segmented_table(monkeypatch, root)
    server = servers(tmp_path / "server")
    synced = CliRunner().invoke(main, ["--dir", str(root), "sync", f"seg/{run_id}", "--url", server.url, "--quiet"])
    assert synced.exit_code == 0, synced.output
    monkeypatch.setenv("TRACKLET_ARTIFACT_CACHE_DIR", str(tmp_path / "cache"))
    _check_cells_are_images(wandb.Api(overrides={"base_url": server.url}), run_id, pixels, mask)

    # A cell's file is read from the server streamed, capped at the size expected, by its digest only.
    import tracklet
    from tracklet.errors import ArtifactError

    with tracklet.Api(base_url=server.url) as api:
        remote = api.run(f"seg/{run_id}")
        digest = remote.table("preds").to_arrow().column("image")[0].as_py()["digest"]
        blobs = remote._table_blobs("preds")
        whole = blobs.read_bytes(digest)
        assert blobs.read_bytes(digest, size=len(whole)) == whole
        with pytest.raises(ArtifactError, match=f"more than the {len(whole) - 1} bytes expected"):
            blobs.read_bytes(digest, size=len(whole) - 1)
        with pytest.raises(ArtifactError, match="is not a media file's digest"):
            blobs.read_bytes("../../../etc/passwd")
        # A cell's file larger than what may be read into memory: read_bytes refuses it by the
        # length the server announces; local_path streams it into the blob cache in pieces.
        import tracklet.api.remote as remote_module
        from tracklet.artifacts.cache import BlobCache

        monkeypatch.setattr(remote_module, "MAX_MEDIA_READ_BYTES", len(whole) - 1)
        with pytest.raises(ArtifactError, match=f"announced {len(whole)} bytes, more than the {len(whole) - 1} bytes"):
            blobs.read_bytes(digest)
        fresh = remote._table_blobs("preds")
        fresh._cache = BlobCache(tmp_path / "empty-cache")  # the test's cache holds the file already
        assert fresh.local_path(digest).read_bytes() == whole
        with pytest.raises(ArtifactError, match="is not a media file's digest"):
            fresh.local_path("../../../etc/passwd")


def test_a_cell_whose_file_is_gone_is_none_and_costs_only_itself(root, monkeypatch):
    run_id, pixels, _ = _log_segmented_table(monkeypatch, root)
    import tracklet

    first = tracklet.Api(root).run(f"seg/{run_id}").table("preds").to_arrow().column("image")[0].as_py()
    blob = root / "artifacts" / "blobs" / "sha256" / first["digest"][:2] / first["digest"]
    os.chmod(blob.parent, 0o755)
    blob.unlink()
    with pytest.warns(Warning, match=f"column 'image' is None: its file {first['digest']} can't be read"):
        got = wandb.Api().artifact(f"seg/run-{run_id}-preds:latest").get("preds")
    cells = got.get_column("image")
    assert cells[0] is None and got.get_column("label") == ["cat", "dog"]
    assert isinstance(cells[1], wandb.Image) and cells[1].caption == "second"


def test_w_and_b_segmentation_example_with_classes_and_a_joined_table(root, monkeypatch):
    """W&B's segmentation docs build ``wandb.Classes`` for an image's masks; its tables docs join
    tables with ``wandb.JoinedTable``. Both names were missing (AttributeError): the class set now
    labels the masks, and a joined table is left out of its row with one warning, the rest kept."""
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:5, 2:5] = 1
    class_set = wandb.Classes([{"id": 0, "name": "background"}, {"id": 1, "name": "car"}])
    with wandb.init(project="seg") as run:
        image = wandb.Image(np.zeros((8, 8, 3), dtype=np.uint8), classes=class_set,
                            masks={"prediction": {"mask_data": mask}})
        left, right = wandb.Table(columns=["id", "a"], data=[[1, 2]]), wandb.Table(columns=["id", "b"], data=[[1, 3]])
        with pytest.warns(Warning, match=r"JoinedTable.*store it in an artifact instead \(artifact.add\(joined"):
            run.log({"segmented": image, "joined": wandb.JoinedTable(left, right, "id"), "loss": 0.5})
        logged = run._run
    recorded = read(logged)
    (got,) = recorded.images("segmented")
    assert got.masks["prediction"].class_labels == {0: "background", 1: "car"}
    assert np.array_equal(got.masks["prediction"].to_numpy(), mask)
    assert recorded.summary["loss"] == 0.5 and "joined" not in recorded.summary


def test_a_joined_table_round_trips_through_an_artifact_as_w_and_b_stores_it(root, monkeypatch):
    """W&B's "join tables" guide: ``artifact.add(wandb.JoinedTable(t1, t2, "id"), name)`` and
    ``artifact.get(name)``. Until session 29 ``add`` raised ArtifactError (it took tables and media
    only). Stored as W&B's ``<name>.joined-table.json`` naming the two tables' files: one added
    before is not stored again, one not added is added as ``t<n>_<id>``; a path names a table the
    artifact must hold (W&B's ValueError)."""
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    preds = wandb.Table(columns=["id", "pred"], data=[[1, "cat"], [2, "dog"]])
    labels = wandb.Table(columns=["id", "label"], data=[[1, "cat"], [2, "cat"]])
    with wandb.init(project="joins") as run:
        artifact = wandb.Artifact("eval", type="analysis")
        artifact.add(preds, "preds")
        artifact.add(wandb.JoinedTable(preds, labels, "id"), "joined")
        artifact.add(wandb.JoinedTable("preds.table.json", "preds.table.json", ["id", "id"]), "self_join")
        with pytest.raises(ValueError, match="missing.table.json not found in artifact"):
            artifact.add(wandb.JoinedTable("missing.table.json", labels, "id"), "bad")
        run.log_artifact(artifact).wait()
    with pytest.raises(ValueError, match="table2 should be an artifact path to a table"):
        wandb.JoinedTable(preds, [[1, 2]], "id")

    version = wandb.Api().artifact("joins/eval:latest")
    files = sorted(entry.path for entry in version.files())
    (added,) = [path for path in files if path.startswith("t2_") and path.endswith(".table.json")]
    assert files == sorted(["joined.joined-table.json", "preds.table.json", "self_join.joined-table.json", added])
    with open(version.get_entry("joined.joined-table.json").download(), encoding="utf-8") as handle:
        stored = json.load(handle)
    assert stored == {"_type": "joined-table", "table1": "preds.table.json", "table2": added, "join_key": "id"}
    joined = version.get("joined")
    assert isinstance(joined, wandb.JoinedTable) and joined._join_key == "id"
    assert joined._table1.data == [[1, "cat"], [2, "dog"]] and joined._table2.columns == ["id", "label"]
    assert version.get("self_join")._table2.get_column("pred") == ["cat", "dog"]


def test_a_table_cell_naming_a_path_instead_of_a_digest_reads_no_file(root, tmp_path):
    """A damaged or hostile table file's media cell whose digest is a path (``../../secret``) is
    None with a warning: it read any file the path named, through the blob store's own path."""
    import pandas as pd

    from tracklet.artifacts.blobs import FsspecBlobStore
    from tracklet.compat.wandb.apis._run_tables import media_objects
    from tracklet.errors import ArtifactError

    store_dir = tmp_path / "store"
    (store_dir / "blobs" / "sha256" / "..").mkdir(parents=True, exist_ok=True)
    (tmp_path / "secret.html").write_text("<p>not yours</p>")
    hostile = "../../secret.html"  # blobs/sha256/<hostile[:2]>/<hostile> is tmp_path/secret.html
    assert (store_dir / "blobs" / "sha256" / hostile[:2] / hostile).resolve() == (tmp_path / "secret.html").resolve()
    blobs = FsspecBlobStore(store_dir)
    with pytest.raises(ArtifactError, match="is not a blob's digest"):
        blobs.local_path(hostile)
    frame = pd.DataFrame({"id": [0], "page": [{"kind": "html", "digest": hostile, "caption": None}]})
    with pytest.warns(Warning, match="column 'page' is None"):
        got = media_objects(frame, blobs)
    assert got["page"].tolist() == [None] and got["id"].tolist() == [0]


def test_a_text_cell_naming_a_huge_file_is_none_and_named_not_read_into_memory(tmp_path):
    """A crafted table file's html or plotly cell may name any blob of the store, a huge one too:
    it is read whole (and a figure parsed), so one over ``MAX_TEXT_CELL_BYTES`` is None, with a
    warning naming the table, the row and the column; the column's other cells are read."""
    import hashlib

    import pandas as pd

    from tracklet.artifacts.blobs import FsspecBlobStore
    from tracklet.compat.wandb.apis._run_tables import MAX_TEXT_CELL_BYTES, media_objects

    blobs = FsspecBlobStore(tmp_path / "store")
    small, _ = blobs.put_bytes(b"<p>fine</p>")
    with open(tmp_path / "huge.html", "wb") as handle:
        handle.truncate(MAX_TEXT_CELL_BYTES + 1)  # sparse: a file this size costs no disk
    huge = hashlib.sha256(b"\0" * (MAX_TEXT_CELL_BYTES + 1)).hexdigest()
    blobs.put_file(str(tmp_path / "huge.html"), huge)
    frame = pd.DataFrame({"page": [{"kind": "html", "digest": small, "caption": None},
                                   {"kind": "html", "digest": huge, "caption": None}]})
    with pytest.warns(Warning, match=(r"a media cell of table 'crafted', row 1, column 'page' is None: its file "
                                      f"{huge} can't be read \\(its html file is {MAX_TEXT_CELL_BYTES + 1:,} bytes, "
                                      f"over the {MAX_TEXT_CELL_BYTES:,}-byte cap")):
        got = media_objects(frame, blobs, table="crafted")
    first, second = got["page"].tolist()
    assert isinstance(first, wandb.Html) and b"<p>fine</p>" in first._data and second is None


def test_html_plotly_and_pixel_box_cells_read_back_as_logged(root, monkeypatch):
    """A logged table's html and plotly cells read back through W&B's ``get`` as ``wandb.Html``
    and ``wandb.Plotly``, and a box given in pixels keeps its ``"pixel"`` domain."""
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    box = {"position": {"minX": 1, "maxX": 4, "minY": 2, "maxY": 5}, "domain": "pixel", "class_id": 0}
    with wandb.init(project="cells") as run:
        table = wandb.Table(columns=["page", "chart", "image"])
        table.add_data(wandb.Html("<p>hello</p>"), wandb.Plotly({"data": [{"type": "bar", "x": ["a"], "y": [2]}]}),
                       wandb.Image(np.zeros((8, 8, 3), dtype=np.uint8),
                                   boxes={"pred": {"box_data": [box], "class_labels": {0: "cat"}}}))
        run.log({"cells": table})
        run_id = run.id
    got = wandb.Api().artifact(f"cells/run-{run_id}-cells:latest").get("cells")
    (page,), (chart,), (image,) = got.get_column("page"), got.get_column("chart"), got.get_column("image")
    assert isinstance(page, wandb.Html) and b"<p>hello</p>" in page._data
    assert isinstance(chart, wandb.Plotly) and chart.figure["data"][0]["y"] == [2]
    with wandb.init(project="cells") as again:
        again.log({"boxed": image})
        logged = again._run
    (kept,) = read(logged).images("boxed")[0].boxes["pred"].boxes
    assert (kept.min_x, kept.max_x, kept.min_y, kept.max_y, kept.pixel) == (1, 4, 2, 5, True)


def test_a_run_uses_a_logged_table_by_its_w_and_b_artifact_name_to_add_to_it_when_resumed(root, monkeypatch):
    """W&B's tables guide: ``run.use_artifact("run-<run-id>-<table-name>:<tag>").get("<table-name>")``,
    and "adding data to resumed runs" (load the table, add rows, log it again). Until session 29 only
    ``wandb.Api().artifact`` found such a name; ``run.use_artifact`` raised CommError."""
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    with wandb.init(project="resumed", id="tab1") as run:
        table = wandb.Table(columns=["step", "image", "score"], log_mode="INCREMENTAL")
        for step in range(3):
            table.add_data(step, wandb.Image(np.full((4, 4), step * 40, dtype=np.uint8)), step / 10)
            run.log({"preds": table})
    with wandb.init(project="resumed", id="tab1", resume="must") as run:
        previous = run.use_artifact("run-tab1-preds:latest").get("preds")
        assert [row[0] for row in previous.data] == [0, 1, 2] and isinstance(previous.data[2][1], wandb.Image)
        assert run.use_artifact("resumed/run-tab1-preds:v0").get("preds").data[0][0] == 0
        with pytest.raises(wandb.errors.CommError):
            run.use_artifact("run-tab1-nothing:latest")
        table = wandb.Table(columns=previous.columns, data=previous.data, log_mode="INCREMENTAL")
        table.add_data(3, wandb.Image(np.zeros((4, 4), dtype=np.uint8)), 0.3)
        run.log({"preds": table})
    final = wandb.Api().artifact("resumed/run-tab1-preds:latest").get("preds")
    assert [row[0] for row in final.data] == [0, 1, 2, 3]
    # W&B's Image.image (Pillow) and get_column(convert_to="numpy") (each image's pixels): were missing
    assert final.data[1][1].image.mode == "L" and np.array_equal(np.asarray(final.data[1][1].image), np.full((4, 4), 40))
    pixels = final.get_column("image", convert_to="numpy")
    assert pixels.shape == (4, 4, 4) and [int(p[0, 0]) for p in pixels] == [0, 40, 80, 0]


def _join_sides_artifact(wandb_run, preds, labels) -> None:
    """An artifact joining on each kind of side W&B takes: a Table, a PartitionedTable, an
    entry's path and the entry ``add`` returned."""
    artifact = wandb.Artifact("sides", type="analysis")
    entry = artifact.add(preds, "preds")
    artifact.add(wandb.Table(columns=["id", "label"], data=[[1, "cat"]]), "parts/a")
    artifact.add(wandb.Table(columns=["id", "label"], data=[[2, "dog"]]), "parts/b")
    artifact.add(wandb.JoinedTable(entry, wandb.PartitionedTable("parts"), "id"), "by_entry")
    artifact.add(wandb.JoinedTable("preds.table.json", labels, ["id", "id"]), "by_path")
    artifact.add(wandb.PartitionedTable("parts"), "all_parts")
    image = artifact.add(wandb.Image(np.zeros((2, 2), dtype=np.uint8)), "picture")
    with artifact.new_file("notes.table.json") as handle:
        handle.write('{"_type": "image-file", "path": "x"}')
    with pytest.raises(ValueError, match="table:missing.table.json not found in artifact"):
        artifact.add(wandb.JoinedTable("missing.table.json", labels, "id"), "bad")
    with pytest.raises(ValueError, match=r"table1: 'notes.table.json' in the artifact is not a table \(_type 'image-file'\)"):
        artifact.add(wandb.JoinedTable("notes.table.json", labels, "id"), "bad")
    with pytest.raises(ValueError, match=r"got ArtifactManifestEntry 'picture.image.json', which is not a table's path"):
        wandb.JoinedTable(preds, image, "id")
    with pytest.raises(ValueError, match=r"table2 should be an artifact path to a table .*got list"):
        wandb.JoinedTable(preds, [[1, 2]], "id")
    wandb_run.log_artifact(artifact).wait()


def _check_join_sides(version) -> None:
    files = {entry.path for entry in version.files()}
    assert {"by_entry.joined-table.json", "by_path.joined-table.json", "all_parts.partitioned-table.json"} <= files
    assert not any(path.startswith("bad") for path in files)
    by_entry = version.get("by_entry")
    assert by_entry._table1.data == [[1, "cat"], [2, "dog"]]
    assert isinstance(by_entry._table2, wandb.PartitionedTable) and by_entry._table2.parts_path == "parts"
    assert [row for _, row in by_entry._table2.iterrows()] == [[1, "cat"], [2, "dog"]]
    assert version.get("by_path")._table1.columns == ["id", "pred"] and version.get("by_path")._join_key == ["id", "id"]
    assert [index for index, _ in version.get("all_parts").iterrows()] == [0, 1]
    with open(version.get_entry("by_entry.joined-table.json").download(), encoding="utf-8") as handle:
        stored = json.load(handle)
    assert stored["table1"] == "preds.table.json" and stored["table2"].endswith(".partitioned-table.json")


def test_a_joined_table_takes_a_partitioned_table_and_an_entry_offline_and_online(root, monkeypatch, tmp_path,
                                                                                   module_servers):
    """W&B's JoinedTable takes a Table, a PartitionedTable or a table entry of the artifact (its
    path, or the entry ``add`` returned) on either side; tracklet refused the last two. Each
    round-trips through ``log_artifact`` and ``use_artifact(...).get(name)``, in a data root and
    on a server; a missing entry, one that is no table and a non-table entry are each named."""
    preds = wandb.Table(columns=["id", "pred"], data=[[1, "cat"], [2, "dog"]])
    labels = wandb.Table(columns=["id", "label"], data=[[1, "cat"], [2, "cat"]])
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    with wandb.init(project="sides", settings={"console": "off"}) as run:
        _join_sides_artifact(run, preds, labels)
    with wandb.init(project="sides", settings={"console": "off"}) as run:
        _check_join_sides(run.use_artifact("sides:latest"))

    server = module_servers(tmp_path / "server")
    monkeypatch.setenv("TRACKLET_BASE_URL", server.url)
    monkeypatch.setenv("TRACKLET_MODE", "online")
    with wandb.init(project="sides", settings={"console": "off"}) as run:
        _join_sides_artifact(run, preds, labels)
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "elsewhere"))  # read from the server alone
    with wandb.init(project="sides", settings={"console": "off"}) as run:
        _check_join_sides(run.use_artifact("sides:latest"))


def test_a_partitioned_tables_part_that_is_no_table_is_named_when_read(root, monkeypatch):
    """A partitioned table's parts are the ``.table.json`` files under its directory as the
    artifact holds them: one that is no table (another partitioned table naming that directory, a
    media reference) made ``iterrows()`` fail with an AttributeError from inside tracklet after the
    rows before it; it is named instead, as a part of a join's side is."""
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    with wandb.init(project="parts", settings={"console": "off"}) as run:
        artifact = wandb.Artifact("parted", type="analysis")
        artifact.add(wandb.Table(columns=["id"], data=[[1]]), "parts/a")
        with artifact.new_file("parts/b.table.json") as handle:
            handle.write('{"_type": "partitioned-table", "parts_path": "parts"}')
        artifact.add(wandb.PartitionedTable("parts"), "all")
        run.log_artifact(artifact).wait()
    with wandb.init(project="parts", settings={"console": "off"}) as run:
        rows = run.use_artifact("parted:latest").get("all").iterrows()
        assert next(rows) == (0, [1])
        with pytest.raises(ValueError, match=r"part 'parts/b.table.json' of the artifact is not a table \(a partitioned table\)"):
            next(rows)
