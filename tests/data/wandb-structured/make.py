"""Writes offline-run-*/run-structured1.wandb with the real wandb package (0.31.0 wrote the one here):

    WANDB_MODE=offline WANDB_DIR=. python make.py

A history with each kind of value W&B keeps as JSON or text; tests/test_history_structured.py imports it."""

import datetime
import math

import numpy as np
import wandb

run = wandb.init(project="structured", id="structured1", settings=wandb.Settings(
    console="off", x_disable_stats=True, disable_git=True, x_disable_meta=True, save_code=False))
for step in range(2):
    run.log({"loss": 1.0 / (step + 1), "generated": ["a cat", f"dog {step}"], "top_k": [[1, 2], [3, 4]],
             "pair": (1, "x"), "records": [{"label": "cat", "p": 0.5}], "holes": [1, None, "x"],
             "with_nan": ["x", math.nan], "empty": [], "raw": b"caf\xc3\xa9", "z": 1 + 2j,
             "epoch_time": datetime.timedelta(seconds=90 + step), "when": np.datetime64("2024-01-02T03:04:05"),
             "names": np.array(["a", "b"]), "mixed": [0.5, ["a"]][step]})
run.finish()
