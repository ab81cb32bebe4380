"""W&B's Keras ``WandbEvalCallback`` as its docs subclass it, unmodified: the validation data
table is logged once (artifact ``val``, table ``val_data``) and read back as
``data_table_ref``; each epoch's predictions, referring to it, are a version of
``run_<id>_pred`` (table ``eval_data``) with the images as images."""

from __future__ import annotations

import importlib.util

import pytest
from test_wandb_compat import tracklet_run

import tracklet

pytestmark = pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="pip install 'tracklet[keras]'")

SCRIPT = """
import json
import numpy as np
import keras
import wandb
from wandb.integration.keras import WandbEvalCallback


class ImageEval(WandbEvalCallback):
    def __init__(self, data, data_table_columns, pred_table_columns):
        super().__init__(data_table_columns, pred_table_columns)
        self.x, self.y = data

    def add_ground_truth(self, logs=None):
        for idx, (image, label) in enumerate(zip(self.x, self.y)):
            self.data_table.add_data(idx, wandb.Image(image), int(label))

    def add_model_predictions(self, epoch, logs=None):
        preds = self.model.predict(self.x, verbose=0).argmax(axis=1)
        data_table_ref = self.data_table_ref
        for idx in data_table_ref.get_index():
            self.pred_table.add_data(epoch, data_table_ref.data[idx][0], data_table_ref.data[idx][1],
                                     data_table_ref.data[idx][2], int(preds[idx]))


rng = np.random.default_rng(0)
x = rng.integers(0, 256, (6, 4, 4, 3)).astype("uint8")
y = rng.integers(0, 2, 6)
run = wandb.init(project="keras-eval")
model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                          keras.layers.Dense(2, activation="softmax")])
model.compile("sgd", "sparse_categorical_crossentropy")
model.fit(x, y, epochs=2, verbose=0, callbacks=[ImageEval((x, y), ["idx", "image", "label"],
                                                         ["epoch", "idx", "image", "label", "pred"])])
run.finish()
print(json.dumps({"id": run.id}))
"""


def test_wandb_eval_callback_logs_the_data_table_once_and_predictions_each_epoch(root, tmp_path):
    out = tracklet_run(tmp_path, SCRIPT, env={"KERAS_BACKEND": "jax"})
    import tracklet.compat.wandb as wandb

    api = tracklet.Api(root)
    run = api.run(f"keras-eval/{out['id']}")
    assert [(a["name"], a["version"]) for a in run.used_artifacts] == [("val", 0)]
    assert [(a["name"], a["version"]) for a in run.logged_artifacts] == [
        ("val", 0), (f"run_{out['id']}_pred", 0), (f"run_{out['id']}_pred", 1)]
    data = wandb.Artifact._wrap(api.artifact("keras-eval/val:v0")).get("val_data")
    assert data.columns == ["idx", "image", "label"] and data.get_column("idx") == list(range(6))
    for version, epoch in ((0, 0), (1, 1)):
        preds = wandb.Artifact._wrap(api.artifact(f"keras-eval/run_{out['id']}_pred:v{version}")).get("eval_data")
        assert preds.columns == ["epoch", "idx", "image", "label", "pred"]
        assert preds.get_column("epoch") == [epoch] * 6 and preds.get_column("label") == data.get_column("label")
        assert all(isinstance(image, wandb.Image) for image in preds.get_column("image"))
        assert set(preds.get_column("pred")) <= {0, 1}
