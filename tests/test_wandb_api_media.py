"""``wandb.Api().run(path).summary``, ``.history()`` and ``.scan_history()`` show logged media,
tables and histograms as W&B's JSON (``{"_type": "image-file", "path", "sha256", ...}``), and
``run.file(path).download()`` fetches the file such a ``path`` names: an analysis script finds an
image in the history and downloads it, from the data root and from a tracking server alike.
tracklet's own ``Api`` keeps its values (histogram objects; media through ``run.media()``)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import yaml

import tracklet
import tracklet.compat.wandb as wandb
from tracklet.core.values import Histogram


@pytest.fixture
def logged(root, monkeypatch) -> str:
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    run = wandb.init(project="media", config={"lr": 0.1, "layers": [64, 64]}, settings=wandb.Settings(silent=True))
    print("training starts")
    for step in range(2):
        pixels = np.full((4, 6, 3), 40 * step, dtype=np.uint8)
        run.log({"loss": 1.0 / (step + 1), "img": wandb.Image(pixels, caption=f"step {step}"),
                 "h": wandb.Histogram([1.0, 2.0, 3.0, float(step)], num_bins=4)}, step=step)
    run.log({"preds": wandb.Table(columns=["id", "score"], data=[[1, 0.5], [2, 0.25]])}, step=1)
    pair = [wandb.Image(np.zeros((2, 2, 3), dtype=np.uint8)), wandb.Image(np.ones((2, 2, 3), dtype=np.uint8))]
    run.log({"pair": pair}, step=2)  # a step that logs media and nothing else
    run.finish()
    return f"media/{run.id}"


@pytest.fixture(params=["local", "server"])
def api(request, root, logged, servers) -> wandb.Api:
    if request.param == "server":
        return wandb.Api(overrides={"base_url": servers(root).url})
    return wandb.Api()


def test_summary_shows_media_tables_and_histograms_as_wandbs_json(api, logged, tmp_path):
    run = api.run(logged)
    image = run.summary["img"]
    assert image["_type"] == "image-file" and image["path"].startswith("media/images/img_1_")
    assert image["path"].endswith(".png") and (image["width"], image["height"]) == (6, 4)
    assert image["caption"] == "step 1" and image["format"] == "png"
    data = open(run.file(image["path"]).download(root=str(tmp_path)).name, "rb").read()
    assert hashlib.sha256(data).hexdigest() == image["sha256"] and len(data) == image["size"]
    assert (tmp_path / image["path"]).read_bytes() == data
    histogram = run.summary["h"]
    assert histogram["_type"] == "histogram" and len(histogram["values"]) == 4 and len(histogram["bins"]) == 5
    table = run.summary["preds"]
    assert table["_type"] == "table-file" and table["path"].startswith("media/table/preds_1_")
    assert (table["nrows"], table["ncols"], table["log_mode"]) == (2, 2, "IMMUTABLE")
    with run.file(table["path"]).download(root=str(tmp_path)) as handle:
        assert json.load(handle) == {"columns": ["id", "score"], "data": [[1, 0.5], [2, 0.25]]}
    pair = run.summary["pair"]
    assert pair["_type"] == "images/separated" and pair["count"] == 2 and len(pair["filenames"]) == 2
    assert run.summary["loss"] == 0.5
    assert json.loads(json.dumps(run.summary_metrics))["img"]["path"] == image["path"]


@pytest.mark.parametrize("where", ["local", "server"])
def test_an_images_masks_and_boxes_are_in_its_json_and_download(root, monkeypatch, servers, tmp_path, where):
    """W&B's image JSON names its masks and boxes (``masks``/``boxes``: ``{name: {"_type":
    "mask"|"boxes2D", "path", "sha256", "size"}}``), and a segmentation notebook downloads the
    mask PNGs and box files from there; they were left out, so ``summary["pred"]["masks"]``
    raised ``KeyError``."""
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[1:3, 2:5] = 1
    position = {"minX": 0.1, "maxX": 0.4, "minY": 0.2, "maxY": 0.6}
    run = wandb.init(project="seg", settings=wandb.Settings(silent=True))
    run.log({"pred": wandb.Image(np.zeros((4, 6, 3), dtype=np.uint8),
                                 masks={"truth": {"mask_data": mask, "class_labels": {0: "bg", 1: "cat"}}},
                                 boxes={"det": {"box_data": [{"position": position, "class_id": 1,
                                                              "box_caption": "cat", "scores": {"conf": 0.5}}],
                                                "class_labels": {1: "cat"}}})})
    run.finish()
    api = wandb.Api(overrides={"base_url": servers(root).url}) if where == "server" else wandb.Api()
    recorded = api.run(f"seg/{run.id}")
    image = recorded.summary["pred"]
    truth = image["masks"]["truth"]
    assert truth["_type"] == "mask" and truth["path"].startswith("media/images/mask/pred_0_")
    recorded.file(truth["path"]).download(root=str(tmp_path))
    data = (tmp_path / truth["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == truth["sha256"] and truth.get("size", len(data)) == len(data)
    from PIL import Image as PILImage

    assert (np.asarray(PILImage.open(tmp_path / truth["path"])) == mask).all()
    det = image["boxes"]["det"]
    assert det["_type"] == "boxes2D" and det["path"].startswith("media/metadata/boxes2D/pred_0_")
    with recorded.file(det["path"]).download(root=str(tmp_path)) as handle:
        boxes = json.load(handle)
    assert boxes["box_data"] == [{"position": position, "class_id": 1, "box_caption": "cat", "scores": {"conf": 0.5}}]
    assert boxes["class_labels"] == {"1": "cat"} and det["size"] == len(json.dumps(boxes, sort_keys=True))
    names = [item.name for item in recorded.files()]
    assert truth["path"] in names and det["path"] in names
    assert recorded.history(keys=["pred"], pandas=False)[0]["pred"]["masks"]["truth"]["path"] == truth["path"]


def test_history_rows_hold_each_steps_media(api, logged, tmp_path):
    run = api.run(logged)
    rows = list(run.scan_history())
    assert [row["_step"] for row in rows] == [0, 1, 2]
    assert rows[0]["img"]["caption"] == "step 0"
    for step, row in zip(range(2), rows):  # as logged, not the dashboard's rebinned histograms
        logged = wandb.Histogram([1.0, 2.0, 3.0, float(step)], num_bins=4)
        assert row["h"] == {"_type": "histogram", "values": list(logged.histogram), "bins": list(logged.bins)}
    assert "h" not in rows[2]
    assert [row["h"]["values"] for row in run.history(keys=["h"], pandas=False)] == [rows[0]["h"]["values"],
                                                                                       rows[1]["h"]["values"]]
    assert rows[1]["preds"]["_type"] == "table-file" and "preds" not in rows[0]
    assert rows[2]["pair"]["_type"] == "images/separated" and "loss" not in rows[2] and "img" not in rows[2]
    images = run.history(keys=["img"], pandas=False)
    assert [row["img"]["caption"] for row in images] == ["step 0", "step 1"]
    first = images[0]["img"]
    data = open(run.file(first["path"]).download(root=str(tmp_path)).name, "rb").read()
    assert hashlib.sha256(data).hexdigest() == first["sha256"] != images[1]["img"]["sha256"]
    for name in rows[2]["pair"]["filenames"]:
        assert run.file(name).download(root=str(tmp_path)).name.endswith(".png")
    assert [row["loss"] for row in run.history(keys=["loss"], pandas=False)] == [1.0, 0.5]


def test_tracklets_own_api_keeps_its_values_and_update_saves_no_media(root, logged, servers):
    own = tracklet.Api(root).run(logged)
    assert "img" not in own.summary and isinstance(own.summary["h"], Histogram)
    histograms = own.history(["h"])["h"]
    assert [isinstance(h, Histogram) for h in histograms] == [True, True, False] and histograms[2] is None
    assert tracklet.Api(base_url=servers(root).url).run(logged).history(["h"])["h"] == histograms  # a server's too
    run = wandb.Api().run(logged)
    run.summary["note"] = "checked"
    run.update()
    after = tracklet.Api(root).run(logged).summary
    assert after["note"] == "checked" and "img" not in after and "preds" not in after
    assert isinstance(after["h"], Histogram)  # not rewritten as W&B's JSON dict
    assert wandb.Api().run(logged).summary["img"]["_type"] == "image-file"


@pytest.mark.parametrize("where", ["local", "server"])
def test_downloads_stay_under_root_whatever_the_name(root, monkeypatch, servers, tmp_path, where):
    """A key with ``..`` folders names a path under ``root`` still; a file name that leads outside
    it (absolute, ``..``: a crafted call or a hostile server's file list) is refused, nothing written."""
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    run = wandb.init(project="media", settings=wandb.Settings(silent=True))
    run.log({"../../../../up": wandb.Image(np.zeros((2, 2, 3), dtype=np.uint8))}, step=0)
    run.finish()
    api = wandb.Api(overrides={"base_url": servers(root).url}) if where == "server" else wandb.Api()
    found = api.run(f"media/{run.id}")
    path = found.summary["../../../../up"]["path"]
    assert ".." not in path.split("/") and path.startswith("media/images/")
    into = tmp_path / "dl" / "a" / "b" / "c"
    written = found.file(path).download(root=str(into), api=api).name  # W&B's api= too
    assert written.startswith(str(into)) and (into / path).is_file()
    outside = tmp_path / "dl" / "outside.txt"
    for name in ("../../../outside.txt", str(outside), "media/../../../../outside.txt", "..\\..\\..\\outside.txt",
                 "../../../../../outside.txt"):
        with pytest.raises(ValueError, match="leads outside"):
            found.file(name).download(root=str(into))
    assert not outside.exists() and sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["a"]


def test_run_files_are_wandbs_and_download_with_its_arguments(api, logged, tmp_path):
    """W&B's ``File.download(root, replace, exist_ok, api)``: a script passing its Api works, for a
    run file and a media file alike; exist_ok keeps the file, replace writes it again.

    ``run.files()`` lists what a W&B run's files hold, so a notebook that fetches ``output.log``,
    ``config.yaml``, ``wandb-summary.json`` or ``wandb-metadata.json``, or downloads every ``.png``
    of a run, works unchanged: each is written in W&B's format, from the data root and from a
    server alike (until session 28 only the run's own ``files/`` were listed, and
    ``run.file("output.log").download()`` raised). (One test: each test here makes a run and a server.)"""
    run = api.run(logged)
    image = run.summary["img"]["path"]
    names = list(dict.fromkeys([image] + [f.name for f in run.files()]))  # files() lists the media too
    if "base_url" not in api.settings:  # a server serves the files `tracklet sync` sent it: none here
        assert "requirements.txt" in names, names  # a media file and the run's files (File)
    for name in names:
        with run.file(name).download(root=str(tmp_path), api=api) as first:
            first.read(0)
        target = tmp_path / name
        target.write_bytes(b"kept")
        assert run.file(name).download(str(tmp_path), False, True, api).read() == "kept"  # exist_ok
        with pytest.raises(ValueError, match="already exists"):
            run.file(name).download(root=str(tmp_path))
        run.file(name).download(root=str(tmp_path), replace=True, api=api).close()
        assert target.read_bytes() != b"kept"

    # W&B's own files and every logged media file and table are listed, in W&B's formats
    assert {"config.yaml", "output.log", "wandb-metadata.json", "wandb-summary.json"} <= set(names), names
    assert {run.summary["img"]["path"], run.summary["preds"]["path"]} <= set(names)
    assert sum(name.endswith(".png") for name in names) == 4  # 2 steps of img, the pair
    assert [f.name for f in run.files(names=["config.yaml", "nothing"])] == ["config.yaml"]

    def read(name: str) -> str:
        with run.file(name).download(root=str(tmp_path), replace=True) as handle:
            text = handle.read()
        assert run.file(name).size == len(text.encode())
        return text

    assert yaml.safe_load(read("config.yaml")) == {"layers": {"value": [64, 64]}, "lr": {"value": 0.1}}  # wandb-core's
    summary = json.loads(read("wandb-summary.json"))
    assert summary["loss"] == 0.5 and summary["img"] == run.summary["img"] and summary["h"]["_type"] == "histogram"
    assert "training starts" in read("output.log").splitlines()
    metadata = json.loads(read("wandb-metadata.json"))
    assert metadata["startedAt"] == run.created_at and metadata["host"] == run.metadata["host"]
    command = run.metadata["command"]
    assert [metadata["program"], *metadata["args"]] == command[1:]  # W&B's sys.argv[0], sys.argv[1:]

    # W&B's docs' run.upload_file(path, root) adds a file to a finished run (its path below root is
    # its name), locally and on a server; File.delete() is refused, naming the file (both raised
    # AttributeError)
    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "sub" / "model.txt").write_text("weights")
    assert run.upload_file(str(tmp_path / "out" / "sub" / "model.txt"), root=str(tmp_path / "out")).name == "sub/model.txt"
    again = api.run(logged)
    assert again.file("sub/model.txt").download(root=str(tmp_path / "dl")).read() == "weights"
    with pytest.raises(ValueError, match="not under root"):
        run.upload_file(str(tmp_path / "out" / "sub" / "model.txt"), root=str(tmp_path / "elsewhere"))
    files = {f.name: f for f in again.files()}
    for name in ("sub/model.txt", "config.yaml", again.summary["img"]["path"]):  # kept, made, logged
        with pytest.raises(wandb.errors.UnsupportedError, match=rf"File.delete\(\) is not supported.*{name}"):
            files[name].delete()


def test_metrics_alone_read_no_media_or_tables(api, logged, monkeypatch):
    """``run.summary["loss"]`` and ``run.history(keys=["loss"])`` read no media list or table: a
    script building a table of many runs' summaries listed each run's every logged image (a
    request per run and 2 per table key on a server: 1.1 s for a run of 2,000 images and 10
    tables, where the summary came with the run). The media JSON is there once a key needs it."""
    reads: list[str] = []
    run = api.run(logged)
    recorded = type(run._recorded)
    for name in ("media", "table_keys"):
        real = getattr(recorded, name)
        monkeypatch.setattr(recorded, name, lambda self, *a, _real=real, _name=name, **k: reads.append(_name) or
                            _real(self, *a, **k))
    assert run.summary["loss"] == 0.5 and run.summary.get("loss") == 0.5 and run.summary.loss == 0.5
    assert [row["loss"] for row in run.history(keys=["loss"], pandas=False)] == [1.0, 0.5]
    assert [row["loss"] for row in run.scan_history(keys=["loss"])] == [1.0, 0.5]
    assert reads == []
    assert run.summary["img"]["_type"] == "image-file" and reads == ["media", "table_keys"]  # read once, when needed
    for whole in (lambda s: "img" in dict(s), lambda s: "img" in {**s}, lambda s: "img" in json.loads(json.dumps(s)),
                  lambda s: "img" in list(s), lambda s: "preds" in s, lambda s: s.get("pair"),
                  lambda s: "img" in s._json_dict, lambda s: "img" in s.keys(), lambda s: len(s) == 5):  # all of it
        view = api.run(logged).summary
        del reads[:]
        assert whole(view), reads
        assert reads == ["media", "table_keys"]
    edited = api.run(logged)
    edited.summary["loss"] = 2.0
    del edited.summary["h"]
    assert set(edited.summary) >= {"img", "preds", "pair"} and "h" not in edited.summary

