"""A data root where real runs logged and used real artifacts, for the artifact routes and pages:

    prep --logged--> mnist:v0 --used--> train --logged--> model:v0 --used--> evaluate --logged--> report:v0
    (evaluate also used report:v0, which it logged: a cycle)
    (project "chain"; mnist:v1, logged later by `refresh`, is used by nobody; `other` has no artifacts;
    project "secret": run `spy` used chain/mnist:v0; project "bulk": shards:v0, 205 files, no run)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import QUIET

import tracklet

# path -> bytes of mnist:v0 (sizes the pages must show)
MNIST_FILES = {
    "labels.csv": b"id,label\n1,cat\n2,dog\n",
    "images/train/0.bin": bytes(range(256)) * 4,  # 1,024 bytes
    "images/train/1.bin": b"\x01" * 2048,
    "images/test/0.bin": b"\x02" * 100,
    "README.md": b"# digits\n",
}


SHARDS = 205  # files of bulk/shards:v0, all in parts/ (the file browser pages 200 at a time)


def _write(base: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (time.time() - 60, time.time() - 60))  # not "racily" recent (hashing.RACY_NS)
    return base


def record_chain(root: Path, scratch: Path) -> None:
    """Record the chain above under data root ``root`` (``scratch``: where the source files go)."""
    root, scratch = Path(root), Path(scratch)
    prep = tracklet.init(project="chain", id="prep", name="prepare-data", dir=str(root), job_type="data",
                         settings=QUIET)
    dataset = tracklet.Artifact("mnist", type="dataset", description="28x28 digits", metadata={"rows": 3, "split": [2, 1]})
    dataset.add_dir(_write(scratch / "mnist", MNIST_FILES))
    prep.log_artifact(dataset, aliases=["raw"])
    prep.finish()

    train = tracklet.init(project="chain", id="train", name="train-cnn", dir=str(root), job_type="train",
                          settings=QUIET)
    used = train.use_artifact("mnist:raw")
    assert used.version == "v0"
    train.log({"loss": 0.5})
    model = tracklet.Artifact("model", type="model", metadata={"accuracy": 0.97})
    model.add_file(str(_write(scratch / "model", {"weights.pt": b"\x07" * 5000}) / "weights.pt"))
    train.log_artifact(model, aliases=["best"])
    train.finish()

    evaluate = tracklet.init(project="chain", id="evaluate", name="evaluate", dir=str(root), job_type="eval",
                             settings=QUIET)
    assert evaluate.use_artifact("model:best").version == "v0"
    report = tracklet.Artifact("report", type="results")
    report.add_file(str(_write(scratch / "report", {"scores.json": b'{"acc": 0.97}'}) / "scores.json"))
    evaluate.log_artifact(report)
    evaluate.use_artifact(report)  # a run that uses what it logged: a cycle in the graph
    evaluate.finish()

    refresh = tracklet.init(project="chain", id="refresh", name="refresh-data", dir=str(root), settings=QUIET)
    newer = tracklet.Artifact("mnist", type="dataset")
    newer.add_dir(_write(scratch / "mnist2", {**MNIST_FILES, "labels.csv": b"id,label\n1,cat\n"}))
    refresh.log_artifact(newer, aliases=["latest-refresh"])
    refresh.finish()

    other = tracklet.init(project="chain", id="other", name="other", dir=str(root), settings=QUIET)
    other.log({"x": 1})
    other.finish()

    spy = tracklet.init(project="secret", id="spy", name="spy", dir=str(root), settings=QUIET)
    assert spy.use_artifact("chain/mnist:v0").version == "v0"
    spy.finish()

    shards = tracklet.Artifact("shards", type="dataset")  # project "bulk": more files than a page
    shards.add_dir(_write(scratch / "shards", {f"parts/{n:03d}.txt": b"x" * n for n in range(SHARDS)}))
    shards.save("bulk", root=root)
