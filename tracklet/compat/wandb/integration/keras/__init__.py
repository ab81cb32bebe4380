"""``wandb.integration.keras`` for Keras 3 (any backend): ``WandbMetricsLogger`` logs the metrics
Keras reports, as W&B's does (``epoch/*`` against ``epoch/epoch``, or ``batch/*`` against
``batch/batch_step`` every ``log_freq`` batches, plus the learning rate); ``WandbModelCheckpoint``
is Keras's ``ModelCheckpoint`` that also logs each saved file as a ``model`` artifact version;
``WandbCallback`` (W&B's legacy callback) logs epoch metrics. Importing this module imports keras.
"""

from __future__ import annotations

from typing import Any

import keras

from tracklet.compat.wandb._messages import not_supported, warn_once
from tracklet.compat.wandb.errors import Error


def _wandb() -> Any:
    import tracklet.compat.wandb as wandb

    return wandb


def _learning_rate(model: Any) -> float | None:
    try:
        rate = model.optimizer.learning_rate
        return float(keras.ops.convert_to_numpy(rate))
    except Exception:
        return None


def _scalars(logs: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in (logs or {}).items()}


class WandbMetricsLogger(keras.callbacks.Callback):
    """Log ``model.fit``'s metrics to the current run: per epoch (default), or per batch with
    ``log_freq="batch"`` or every ``log_freq`` batches."""

    _tracklet_integration = True  # autolog adds no TrackletCallback next to it

    def __init__(self, log_freq: str | int = "epoch", initial_global_step: int = 0, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        wandb = _wandb()
        if wandb.run is None:
            raise Error("You must call `wandb.init()` before WandbMetricsLogger()")
        if log_freq == "batch":
            log_freq = 1
        self.logging_batch_wise = isinstance(log_freq, int)
        self.log_freq: int | None = int(log_freq) if self.logging_batch_wise else None
        self.global_batch = 0
        self.global_step = initial_global_step
        if self.logging_batch_wise:
            wandb.define_metric("batch/batch_step")
            wandb.define_metric("batch/*", step_metric="batch/batch_step")
        else:
            wandb.define_metric("epoch/epoch")
            wandb.define_metric("epoch/*", step_metric="epoch/epoch")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row = _scalars(logs, "epoch/")
        row["epoch/epoch"] = epoch
        rate = _learning_rate(self.model)
        if rate is not None:
            row["epoch/learning_rate"] = rate
        _wandb().log(row)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.global_step += 1
        if self.logging_batch_wise and self.log_freq and batch % self.log_freq == 0:
            row = _scalars(logs, "batch/")
            row["batch/batch_step"] = self.global_batch
            rate = _learning_rate(self.model)
            if rate is not None:
                row["batch/learning_rate"] = rate
            _wandb().log(row)
            self.global_batch += self.log_freq


class WandbModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras's ``ModelCheckpoint`` (same arguments) that logs each checkpoint it saves as a version
    of the ``model`` artifact ``run_<run id>_model``, with W&B's aliases (``latest`` and
    ``epoch_<n>``, or ``epoch_<n>_batch_<b>`` with an integer ``save_freq``), and records it with
    ``run.log_checkpoint`` (path, size, SHA-256, the monitored value). The file is snapshot when
    logged (``policy="mutable"``): Keras overwrites it at the next save."""

    _tracklet_integration = True

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto", save_freq: str | int = "epoch",
                 initial_value_threshold: float | None = None, **kwargs: Any) -> None:
        super().__init__(filepath=filepath, monitor=monitor, verbose=verbose, save_best_only=save_best_only,
                         save_weights_only=save_weights_only, mode=mode, save_freq=save_freq,
                         initial_value_threshold=initial_value_threshold, **kwargs)
        if _wandb().run is None:
            raise Error("You must call `wandb.init()` before WandbModelCheckpoint()")
        if save_best_only and "{" not in str(filepath):
            _wandb().termwarn("When using `save_best_only`, ensure that the `filepath` argument contains formatting "
                              "placeholders like `{epoch:02d}` or `{batch:02d}`. This ensures correct interpretation "
                              "of the logged artifacts.", repeat=False)

    def _save_model(self, epoch: int, batch: int | None, logs: dict[str, Any] | None) -> None:
        super()._save_model(epoch, batch, logs)
        try:
            import os

            wandb = _wandb()
            run = wandb.run
            path = self._get_file_path(epoch, batch, logs)
            if run is None or not os.path.exists(path):
                return
            aliases = ["latest", f"epoch_{epoch}" if batch is None else f"epoch_{epoch}_batch_{batch}"]
            artifact = wandb.Artifact(f"run_{run.id}_model", type="model")
            if os.path.isdir(path):
                artifact.add_dir(path, policy="mutable")
            else:
                artifact.add_file(path, policy="mutable")
            run.log_artifact(artifact, aliases=aliases)
            current = (logs or {}).get(self.monitor)
            run.tracklet_run.log_checkpoint(path, score=None if current is None else float(current),
                                            monitor=self.monitor)
        except Exception as error:
            warn_once("keras-checkpoint", f"WandbModelCheckpoint could not log a checkpoint: {error!r}")


class WandbCallback(keras.callbacks.Callback):
    """W&B's legacy Keras callback: epoch metrics logged under their Keras names with ``epoch``.
    Its model saving, gradient, graph and prediction options are not supported (one warning)."""

    _tracklet_integration = True

    def __init__(self, monitor: str = "val_loss", verbose: int = 0, mode: str = "auto", save_weights_only: bool = False,
                 log_weights: bool = False, log_gradients: bool = False, save_model: bool = True,
                 **kwargs: Any) -> None:
        super().__init__()
        if _wandb().run is None:
            raise Error("You must call wandb.init() before WandbCallback()")
        if log_weights or log_gradients or kwargs.get("generator") is not None or kwargs.get("log_evaluation"):
            not_supported("WandbCallback's weights, gradients and evaluation logging",
                          "only the epoch metrics are recorded")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        _wandb().log({"epoch": epoch, **(logs or {})})


class WandbEvalCallback(keras.callbacks.Callback):
    """W&B's base class for evaluation tables: a subclass fills ``self.data_table`` in
    ``add_ground_truth`` (once, when training begins) and ``self.pred_table`` in
    ``add_model_predictions`` (each epoch). The data table is logged as artifact ``val``
    (``val_data``) and read back as ``self.data_table_ref`` (what predictions refer to); each
    epoch's predictions as a version of ``run_<run id>_pred`` (``eval_data``), as W&B logs them."""

    _tracklet_integration = True

    def __init__(self, data_table_columns: list[str], pred_table_columns: list[str], *args: Any,
                 **kwargs: Any) -> None:
        super().__init__()
        if _wandb().run is None:
            raise Error("You must call wandb.init() before WandbEvalCallback()")
        self.data_table_columns = data_table_columns
        self.pred_table_columns = pred_table_columns
        self.data_table: Any = None
        self.pred_table: Any = None
        self.data_table_ref: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.init_data_table(column_names=self.data_table_columns)
        self.add_ground_truth(logs)
        self.log_data_table()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.init_pred_table(column_names=self.pred_table_columns)
        self.add_model_predictions(epoch, logs)
        self.log_pred_table()

    def add_ground_truth(self, logs: dict[str, Any] | None = None) -> None:
        """Fill ``self.data_table`` (a subclass's)."""
        raise NotImplementedError(f"{type(self).__name__} must define add_ground_truth(logs)")

    def add_model_predictions(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Fill ``self.pred_table`` (a subclass's)."""
        raise NotImplementedError(f"{type(self).__name__} must define add_model_predictions(epoch, logs)")

    def init_data_table(self, column_names: list[str]) -> None:
        self.data_table = _wandb().Table(columns=column_names, allow_mixed_types=True)

    def init_pred_table(self, column_names: list[str]) -> None:
        self.pred_table = _wandb().Table(columns=column_names)

    def log_data_table(self, name: str = "val", type: str = "dataset", table_name: str = "val_data") -> None:
        wandb = _wandb()
        artifact = wandb.Artifact(name, type=type)
        artifact.add(self.data_table, table_name)
        wandb.run.log_artifact(artifact)  # W&B uploads it through use_artifact; here it is logged, then stored
        artifact.wait()
        wandb.run.use_artifact(f"{name}:latest")
        self.data_table_ref = artifact.get(table_name)

    def log_pred_table(self, type: str = "evaluation", table_name: str = "eval_data",
                       aliases: list[str] | None = None) -> None:
        wandb = _wandb()
        artifact = wandb.Artifact(f"run_{wandb.run.id}_pred", type=type)
        artifact.add(self.pred_table, table_name)
        wandb.run.log_artifact(artifact, aliases=aliases or ["latest"])


__all__ = ["WandbCallback", "WandbEvalCallback", "WandbMetricsLogger", "WandbModelCheckpoint"]
