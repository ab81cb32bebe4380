"""Make ``import wandb`` (and ``wandb.*``) resolve to :mod:`tracklet.compat.wandb` in this process
(and ``import weave`` to :mod:`tracklet.compat.weave`).

:func:`install` puts a :class:`WandbRedirect` first on ``sys.meta_path``, so it wins over a real
``wandb`` package installed in the same environment. It answers two questions the frameworks ask:

- *where is module ``wandb.X``?* An alias of ``tracklet.compat.wandb.X``: the same module object
  under both names, so ``isinstance`` checks across them hold (``importlib.util.find_spec`` finds it
  too, which is how Hugging Face decides W&B is available);
- *which version of the ``wandb`` distribution is installed?* The compat layer's
  (``importlib.metadata.version("wandb")``, which Lightning's ``WandbLogger`` checks).

With ``propagate=True`` the ``TRACKLET_WANDB_COMPAT`` switch and the directory of tracklet's
``sitecustomize`` go into ``os.environ``, so Python subprocesses (DDP workers, spawned launchers)
install the redirect at startup too. Nothing here imports the compat module itself until
``import wandb`` runs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

from tracklet.compat import ENV_SWITCH

# The W&B release whose public API the compat layer follows (a real release, so version checks
# in frameworks, e.g. Lightning's ``wandb>=0.12.10``, pass).
WANDB_VERSION = "0.21.0"
TARGET = "tracklet.compat.wandb"
# Top-level names the redirect answers for, and the compat package each resolves to: W&B's SDK and
# its tracing library Weave (whose op / init / Evaluation map onto tracklet's, docs/tracing.md).
TARGETS = {"wandb": TARGET, "weave": "tracklet.compat.weave"}
LAUNCH_DIR = Path(__file__).resolve().parents[1] / "integrations" / "_launch"
# W&B's integrations the compat layer does not provide: ``import wandb.<name>`` raises
# ModuleNotFoundError saying so and what to use instead (rather than "No module named ...", which
# reads as a broken W&B install). docs/wandb-compat.md, "Frameworks".
_LOGGED_BY_HAND = "log its metrics with wandb.log() from a callback of your own"
NOT_PROVIDED = {
    "sklearn": ("scikit-learn", "log wandb.plot.confusion_matrix(), wandb.plot.roc_curve() or wandb.plot.pr_curve() "
                "(numpy only) instead"),
    "xgboost": ("XGBoost", _LOGGED_BY_HAND),
    "lightgbm": ("LightGBM", _LOGGED_BY_HAND),
    "catboost": ("CatBoost", _LOGGED_BY_HAND),
    "sb3": ("Stable-Baselines3", _LOGGED_BY_HAND),
    "ultralytics": ("Ultralytics", _LOGGED_BY_HAND),
    "fastai": ("fastai", _LOGGED_BY_HAND),
    "tensorboard": ("TensorBoard", "`tracklet import tensorboard LOGDIR` records TensorBoard event files as a run"),
    "keras": ("Keras", "W&B's old path wandb.keras is gone: import WandbMetricsLogger, WandbModelCheckpoint or "
              "WandbCallback from wandb.integration.keras"),
}
# importlib's default for find_distributions: a query for every distribution.
_ALL_DISTRIBUTIONS = importlib.metadata.DistributionFinder.Context()


class _AliasLoader(importlib.abc.Loader):
    """Loads ``wandb.X`` as the already importable ``tracklet.compat.wandb.X`` module object."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._original_spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        module = importlib.import_module(self._target)
        self._original_spec = getattr(module, "__spec__", None)
        return module

    def get_code(self, fullname: str) -> Any:
        """The target module's code: what ``python -m wandb`` runs (runpy asks for it, as
        ``__main__``), i.e. ``tracklet.compat.wandb.__main__``'s."""
        spec = importlib.util.find_spec(self._target)
        loader = getattr(spec, "loader", None)
        return loader.get_code(self._target) if loader is not None and hasattr(loader, "get_code") else None

    def exec_module(self, module: Any) -> None:
        # The import system set ``__spec__`` to the alias's spec; the module keeps its own, so it
        # still reloads and pickles as ``tracklet.compat.wandb.X``.
        if self._original_spec is not None:
            module.__spec__ = self._original_spec


class _CompatDistribution(importlib.metadata.Distribution):
    """The metadata of a ``wandb`` distribution at :data:`WANDB_VERSION`, provided by tracklet."""

    def read_text(self, filename: str) -> str | None:
        if filename in ("METADATA", "PKG-INFO"):
            return (
                "Metadata-Version: 2.1\nName: wandb\n"
                f"Version: {WANDB_VERSION}\nSummary: tracklet's W&B compatibility layer (tracklet.compat.wandb)\n"
            )
        return None

    def locate_file(self, path: Any) -> Path:
        return Path(__file__).resolve().parent / "wandb" / str(path)


def _is_wandb_name(name: str | None) -> bool:
    return name is not None and re.sub(r"[-_.]+", "-", name).lower() == "wandb"


class WandbRedirect(importlib.abc.MetaPathFinder):
    """A meta path finder for ``wandb`` and ``wandb.*`` that answers with the compat modules."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        target = TARGETS.get(top)
        if target is None:
            return None
        alias = target + fullname[len(top):]
        try:
            found = importlib.util.find_spec(alias)
        except ModuleNotFoundError:
            found = None
        if found is None and top == "wandb":
            _refuse_integration(fullname)
        if found is None:
            # Not part of the compat layer: the path finders then look only in the compat package's
            # directory, so ``import wandb.X`` fails as for a missing module rather than reaching a
            # real wandb installed alongside.
            return None
        return importlib.util.spec_from_loader(
            fullname, _AliasLoader(alias), is_package=found.submodule_search_locations is not None
        )

    def find_distributions(self, context: Any = _ALL_DISTRIBUTIONS) -> Iterator[Any]:
        if _is_wandb_name(getattr(context, "name", None)):
            yield _CompatDistribution()


def _refuse_integration(fullname: str) -> None:
    """ModuleNotFoundError naming a W&B integration the compat layer does not provide
    (``wandb.sklearn``, ``wandb.integration.xgboost``, ...) and what to use instead."""
    parts = fullname.split(".")
    name = parts[2] if len(parts) > 2 and parts[1] == "integration" else parts[1] if len(parts) > 1 else ""
    if name in NOT_PROVIDED:
        what, instead = NOT_PROVIDED[name]
        raise ModuleNotFoundError(f"{fullname} (W&B's {what} integration) is not provided by tracklet's W&B layer "
                                  f"(docs/wandb-compat.md, Frameworks); {instead}", name=fullname)


_redirect: WandbRedirect | None = None


def installed() -> bool:
    """Whether the redirect is on in this process."""
    return _redirect is not None and _redirect in sys.meta_path


def install(*, propagate: bool = True) -> None:
    """Put the redirect first on ``sys.meta_path`` (once). A real ``wandb`` imported before this
    keeps being used by this process, with a warning."""
    global _redirect
    if not installed():
        _redirect = WandbRedirect()
        sys.meta_path.insert(0, _redirect)
    existing = sys.modules.get("wandb")  # any state: the real wandb mid-import is still the real one
    if existing is not None and not getattr(existing, "_tracklet_compat", False):
        from tracklet.core.encoder import TrackletWarning

        warnings.warn(
            "tracklet: the real wandb package was imported before tracklet's W&B compatibility layer was "
            "installed, so this process keeps using it; install the layer first (tracklet run --wandb, or "
            "tracklet.compat.install_wandb() before anything imports wandb)",
            TrackletWarning,
            stacklevel=3,
        )
    if propagate:
        os.environ[ENV_SWITCH] = "1"
        entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(LAUNCH_DIR) not in entries:
            os.environ["PYTHONPATH"] = os.pathsep.join([str(LAUNCH_DIR), *entries])


def uninstall() -> None:
    """Take the redirect off ``sys.meta_path`` and the switch out of ``os.environ``."""
    global _redirect
    if _redirect is not None and _redirect in sys.meta_path:
        sys.meta_path.remove(_redirect)
    _redirect = None
    os.environ.pop(ENV_SWITCH, None)
