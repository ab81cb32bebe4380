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
        with pytest.raises(Exception, match="takes a Table or a media object"):
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
