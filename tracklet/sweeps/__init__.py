"""Sweeps: hyperparameter search over W&B's sweep configs with Optuna 5 as the engine.

``spec`` validates a config, ``space`` maps its distributions to Optuna's, ``controller`` runs one
study per sweep through ask/tell and hands trials out as leases, ``agent`` runs trials (a command
per trial, or a function in-process for ``wandb.agent``). Nothing here is imported by
``tracklet.core``; Optuna is imported only when a sweep is created or served. docs/sweeps.md.
"""

from __future__ import annotations

from tracklet.errors import SweepError, SweepNotFound, SweepSpecError

__all__ = ["SweepError", "SweepNotFound", "SweepSpecError"]
