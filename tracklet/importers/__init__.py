"""Importers: other trackers' run files → tracklet runs in a data root.

    tracklet.importers.import_wandb("wandb/")            # W&B offline runs (run-*.wandb)
    tracklet.importers.import_tensorboard("runs/")       # TensorBoard event files
    tracklet.importers.import_mlflow("mlruns/")          # an MLflow store: mlruns/, mlflow.db, http://

Each source run becomes a normal tracklet run (record log, layout, store) with its original
steps and times. Importing again is a no-op: the tracklet run id comes from the source's
identity, and ``files/import.json`` in the run remembers which source bytes it came from.
One module per source; the record-log writing they share is in :mod:`.writer`. docs/import.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tracklet.importers.writer import ImportedRun, SourceError


def data_root(root: str | os.PathLike | None) -> Path:
    """The data root an import writes to: ``root``, else ``$TRACKLET_DIR``, else the per-user one
    (the same rule as ``tracklet.Api()``)."""
    from tracklet.core.settings import default_data_root

    if root is None:
        root = os.environ.get("TRACKLET_DIR") or default_data_root()
    return Path(root).expanduser()


def import_wandb(path: str | os.PathLike, root: str | os.PathLike | None = None, project: str | None = None,
                 **kwargs: Any) -> list[ImportedRun]:
    """Import W&B offline runs; see :func:`tracklet.importers.wandb.import_wandb`."""
    from tracklet.importers.wandb import import_wandb as run

    return run(path, root=root, project=project, **kwargs)


def import_tensorboard(path: str | os.PathLike, root: str | os.PathLike | None = None, project: str | None = None,
                       **kwargs: Any) -> list[ImportedRun]:
    """Import TensorBoard logs; see :func:`tracklet.importers.tensorboard.import_tensorboard`."""
    from tracklet.importers.tensorboard import import_tensorboard as run

    return run(path, root=root, project=project, **kwargs)


def import_mlflow(location: str | os.PathLike, root: str | os.PathLike | None = None, project: str | None = None,
                  **kwargs: Any) -> list[ImportedRun]:
    """Import an MLflow tracking store's runs; see :func:`tracklet.importers.mlflow.import_mlflow`."""
    from tracklet.importers.mlflow import import_mlflow as run

    return run(location, root=root, project=project, **kwargs)


__all__ = ["ImportedRun", "SourceError", "data_root", "import_mlflow", "import_tensorboard", "import_wandb"]
